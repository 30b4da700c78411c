"""Held temporaries: the next run removes what a killed process left, never what a running one holds."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from medkd.artifacts import atomic_path, remove_stale_temporaries
from medkd.temporaries import held_directory, held_file, remove_stale

HOLDER = """
import sys, time
from pathlib import Path
from medkd.temporaries import held_directory, held_file
root = Path(sys.argv[1])
with held_file(root, ".model.onnx.") as file, held_directory(root, ".export-") as folder:
    (folder / "encoder.onnx").write_bytes(b"half an export")
    print(file, folder, flush=True)
    time.sleep(600)
"""


def test_what_a_killed_process_held_is_removed_and_nothing_else(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        file, folder = map(Path, holder.stdout.readline().split())  # type: ignore[union-attr]
        kept, leftover = tmp_path / "model.onnx", tmp_path / ".model.onnx.x1y2.tmp"  # leftover: from a run before held temporaries
        kept.write_bytes(b"keep")
        leftover.write_bytes(b"stale")
        patterns = [".export-*", ".*.tmp"]
        assert file.name.startswith(".model.onnx.") and file.suffix == ".tmp" and folder.name.startswith(".export-")
        with held_file(tmp_path, ".mine.") as mine:  # held by this process: another open description is refused the lock
            assert remove_stale(tmp_path, patterns) == [leftover]
            assert mine.exists() and file.exists() and (folder / "encoder.onnx").exists()
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
        assert file.exists() and folder.exists()  # a killed process leaves its temporaries
        assert remove_stale(tmp_path, patterns) == sorted([folder, file])
        assert list(tmp_path.iterdir()) == [kept]
    finally:
        holder.kill()
        holder.wait()


def test_held_temporaries_go_when_their_block_ends(tmp_path: Path) -> None:
    with held_directory(tmp_path, ".export-") as folder:
        (folder / "graph.onnx").write_bytes(b"x")
    with held_file(tmp_path, ".a.") as file:
        file.write_bytes(b"x")
    with atomic_path(tmp_path / "b.json") as tmp:
        tmp.write_text("{}")
        assert remove_stale_temporaries(tmp_path) == []  # the write in progress holds its temporary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
