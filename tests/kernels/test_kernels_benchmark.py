"""benchmarks/kernels.py --quick runs end to end on the CPU and writes a complete JSON report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels.py"


@pytest.fixture
def benchmark(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernels_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_failing_case_is_recorded_and_the_run_goes_on(benchmark: ModuleType, tmp_path: Path) -> None:
    run = benchmark.Run(benchmark.argparse.Namespace(dtype=None, quick=True, budget_s=60.0, out=str(tmp_path)))

    def broken() -> dict:
        raise RuntimeError("out of resources")

    benchmark.run_case(run, "attention", "tiny", "fused", {}, broken)
    benchmark.run_case(run, "attention", "tiny", "sam", {}, lambda: {"p50_ms": 1.0})
    report = json.loads(run.out.read_text())
    assert [row.get("error") for row in report["results"]] == ["RuntimeError: out of resources", None]
    run.budget_s = -1.0
    benchmark.run_case(run, "attention", "tiny", "sdpa_bias", {}, lambda: {"p50_ms": 1.0})
    assert run.results[-1]["error"].startswith("skipped: time budget")


def test_quick_benchmark_writes_report(benchmark: ModuleType, tmp_path: Path) -> None:
    assert benchmark.main(["--quick", "--profile", "--out", str(tmp_path)]) == 0
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
    profiles = report["profiles"]["encoder_tiny"]
    assert set(profiles) == {"unpatched", "patched"}
    assert all(p["wall_ms_per_forward"] > 0 and p["top"] and "sync_calls_per_forward" in p for p in profiles.values())
