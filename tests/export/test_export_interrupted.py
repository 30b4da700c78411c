"""A killed ``medkd export onnx`` leaves its staging directory; the next export into the same folder removes it."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from medkd.cli import run

pytestmark = pytest.mark.data

# medkd export onnx, killed (SIGKILL) once its graphs and manifest are staged, before they are validated.
KILLED_EXPORT = """
import os, signal, sys
import medkd.export.onnx_stage as stage
stage.validate_export = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from medkd.cli import run
run(sys.argv[1:])
"""


def test_a_killed_export_leaves_nothing_after_the_next_run(tiny_unet, ct_manifest, tmp_path):
    out = tmp_path / "export"
    argv = ["export", "onnx", str(tiny_unet), "--out", str(out), "--data", str(ct_manifest), "--split", "all", "--validate-samples", "2"]
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, *argv], capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    (staging,) = out.iterdir()
    assert staging.name.startswith(".export-") and sorted(p.name for p in staging.iterdir()) == ["manifest.json", "unet.onnx"]
    assert run(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "unet.onnx"]
