"""The README's command lines name commands and options that exist, in the one vocabulary (no old,
hidden spellings)."""

from __future__ import annotations

import re
import shlex

from tests.cli_calls import call_problems, documented_options
from tests.conftest import REPO_ROOT

BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def _calls() -> list[list[str]]:
    calls = []
    for block in BLOCK.findall((REPO_ROOT / "README.md").read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("medkd ", "make teacher   # = medkd ")):
                words = shlex.split(line.split("medkd ", 1)[1])
                calls.append(words if "..." not in words else words[: words.index("...")])
    return calls


def test_readme_calls_use_existing_commands_and_current_options():
    calls = _calls()
    assert len(calls) >= 40
    problems = [problem for words in calls for problem in call_problems(words)]
    hidden = [f"medkd {' '.join(words)}: {documented_options(words)}" for words in calls if documented_options(words)]
    assert problems == [] and hidden == []
