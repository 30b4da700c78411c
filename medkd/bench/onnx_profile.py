"""Where an ONNX graph's time goes on the CPU: ONNX Runtime's profiler, kernel time summed by a key."""

from __future__ import annotations

import collections
import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from medkd.runtime.onnx_runtime import cpu_options


def kernel_times(path: Path, feed: Mapping[str, np.ndarray], key: Callable[[str, str], str], runs: int = 4, threads: int = 2) -> dict[str, float]:
    """Milliseconds per run of kernel time of the graph at ``path`` (medkd's CPU session options, ``runs``
    runs after an untimed one), summed by ``key(node name, operator type)``, largest first."""
    with tempfile.TemporaryDirectory(prefix="medkd-profile-") as scratch:
        options = cpu_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        runner = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            runner.run(None, dict(feed))
        events = json.loads(Path(runner.end_profiling()).read_text())
    spent: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[key(event["name"].removesuffix("_kernel_time"), event["args"]["op_name"])] += event["dur"]
    return {name: microseconds / 1000 / (runs + 1) for name, microseconds in spent.most_common()}
