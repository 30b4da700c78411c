"""The README's results table is generated from a results JSON, never typed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
readme_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_results)


def _entry(name: str, dsc: dict[str, float], nsd: float, p50: float, method: str | None = None, runtime: str = "PyTorch FP32") -> dict:
    by_dataset = {dataset: {"dsc": {"mean": value}, "nsd": {"mean": nsd}} for dataset, value in dsc.items()}
    return {
        "kind": "student" if method else "teacher",
        "runtime": runtime,
        "model": {"name": name},
        "method": method,
        "profile": {"total_params": 6_070_000, "encoder_gflops": 6.07},
        "cpu_latency": {"p50_ms": p50},
        "test": {"by_dataset": by_dataset},
    }


def test_table_cells_come_from_the_json() -> None:
    results = {
        "teacher": _entry("sam-vit-stand-in", {"ct": 0.8, "us": 0.6}, 0.5, 100.0),
        "students": [_entry("tinyvit-256", {"ct": 0.7, "us": 0.63}, 0.4, 20.04, "decoupled", "ONNX Runtime INT8")],
    }
    lines = readme_results.results_table(results).splitlines()
    assert lines[0].startswith("| model | method | runtime | DSC ct | DSC us | DSC mean |")
    teacher, student = lines[2], lines[3]
    assert "| 0.800 | 0.600 | 0.700 | 0.500 | – |" in teacher
    # mean of dataset means 0.665 = 95.0% of the teacher's 0.700
    assert "| `tinyvit-256` | decoupled | ONNX Runtime INT8 | 0.700 | 0.630 | 0.665 | 0.400 | 95.0% | 6.07 | 6.07 | 20.0 |" == student


def test_readme_table_matches_its_json() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_results.BLOCK.search(readme), "README.md has no generated results block"
    assert readme_results.render(readme) == readme, "README.md results differ from their JSON: run benchmarks/readme_results.py"


def test_zero_shot_table_flags_small_datasets_and_gives_both_means() -> None:
    def scores(ct: float, us: float) -> dict:
        return {
            "by_dataset": {"ct": {"dsc": ct, "nsd": ct, "objects": 3, "flagged": True}, "us": {"dsc": us, "nsd": us, "objects": 40, "flagged": False}},
            "mean_over_datasets": {"dsc": (ct + us) / 2, "nsd": (ct + us) / 2, "datasets": ["ct", "us"]},
            "mean_over_datasets_unflagged": {"dsc": us, "nsd": us, "datasets": ["us"]},
            "mean_over_objects": {"dsc": (3 * ct + 40 * us) / 43, "nsd": (3 * ct + 40 * us) / 43, "objects": 43},
        }

    results = {"kind": readme_results.ZERO_SHOT_KIND, "data": {"min_objects": 20}, "variants": {"whole": scores(0.5, 0.9), "box-crop": scores(0.7, 0.8)}}
    lines = readme_results.table_for(results).splitlines()
    assert lines[0] == "| dataset | objects | DSC whole image | NSD whole image | DSC box crops | NSD box crops |"
    assert lines[2] == "| ct (fewer than 20 objects: flagged) | 3 | 0.500 | 0.500 | 0.700 | 0.700 |"
    assert lines[4] == "| *mean over datasets* | 2 | 0.700 | 0.700 | 0.750 | 0.750 |"
    assert lines[5] == "| *mean over datasets, flagged left out* | 1 | 0.900 | 0.900 | 0.800 | 0.800 |"
    assert lines[6] == "| *mean over objects* | 43 | 0.872 | 0.872 | 0.793 | 0.793 |"


def test_volumes_table_cells_come_from_the_json() -> None:
    overall = {"dsc": {"mean": 0.8123, "n": 10}, "nsd": {"mean": 0.9, "n": 10}, "hd95": {"mean": 2.345, "n": 10}}
    timing = {"median_ms": 812.4, "min_ms": 790.2, "max_ms": 850.9}
    results = {"kind": "medkd.bench.volumes", "models": {"student INT8": {"runtime": "OnnxSegmenter", "summary": {"overall": overall}, "startup_s": 0.314, "end_to_end": timing}}}
    lines = readme_results.table_for(results).splitlines()
    assert lines[0].startswith("| model | runtime | objects | 3D DSC |")
    assert lines[2] == "| student INT8 | ONNX Runtime | 10 | 0.812 | 0.900 | 2.35 | 0.31 | 812 | 790–851 |"
