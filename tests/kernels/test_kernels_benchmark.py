"""benchmarks/kernels.py --quick runs end to end on the CPU and writes a complete JSON report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels.py"


def test_quick_benchmark_writes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("kernels_benchmark", BENCHMARK)
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchmark)
    spec.loader.exec_module(benchmark)

    assert benchmark.main(["--quick", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("kernels-*-cpu.json")
    report = json.loads(path.read_text())
    rows = {(row["case"], row["method"]): row for row in report["results"]}
    assert not [row for row in rows.values() if "error" in row]
    assert {"sam", "sdpa_bias", "sdpa_prebuilt_bias", "fused", "fused_dilation2"} <= {
        m for c, m in rows if c == "tiny_global"
    }
    assert rows["tiny_global", "fused"]["rel_error_vs_fp64"] <= 1e-3
    assert rows["encoder_tiny", "patched"]["rel_error_vs_fp32"] <= 1e-3
    assert rows["encoder_tiny", "patched_dilation2"]["rel_error_vs_fp32"] > 1e-3  # dilation's cost, measured
    assert all(
        row["p50_ms"] > 0 and "speedup_vs_sam" in row
        for (c, m), row in rows.items()
        if c == "tiny_global" and m != "sam"
    )
    assert len(report["targets"]) == 3 and report["precision"]["inputs"] == "float32"
