"""The rule for refused input, shared by the corpus tests: one line, the right exit code, no output."""

from __future__ import annotations

from pathlib import Path


def assert_refused(code: int, err: str, outputs: list[Path], expected: int = 2, message: str = "") -> None:
    """Exit ``expected``, one line on stderr (``error:``, or ``warning:`` for exit 1) holding ``message``,
    no traceback, and none of ``outputs`` written."""
    lines = err.splitlines()
    assert code == expected, err
    assert len(lines) == 1 and lines[0].startswith("error: " if expected == 2 else "warning: "), err
    assert message in lines[0] and "Traceback" not in err, err
    assert [path for path in outputs if path.exists()] == []
