"""The README's results table is generated from a results JSON, never typed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
readme_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_results)


def _scores(ct: float, us: float, agreement: float | None = None) -> dict:
    """dataset_scores-shaped figures: ct has 3 objects (flagged), us 40."""
    extra = {} if agreement is None else {"agreement_dsc": agreement}
    return {
        "by_dataset": {"ct": {"dsc": ct, "nsd": ct, "objects": 3, "flagged": True}, "us": {"dsc": us, "nsd": us, "objects": 40, "flagged": False}},
        "mean_over_datasets": {"dsc": (ct + us) / 2, "nsd": (ct + us) / 2, "datasets": ["ct", "us"]},
        "mean_over_datasets_unflagged": {"dsc": us, "nsd": us, **extra, "datasets": ["us"]},
        "mean_over_objects": {"dsc": (3 * ct + 40 * us) / 43, "nsd": (3 * ct + 40 * us) / 43, **extra, "objects": 43},
    }


def test_reference_table_cells_come_from_the_json() -> None:
    def entry(label: str, role: str, test: dict, fraction: float | None, latency: dict) -> dict:
        return {"label": label, "role": role, "method": "decoupled", "phase": "fine-tuned on ground truth", "runtime": "ONNX Runtime INT8",
                "test": test, "dsc_of_teacher": fraction, "profile": {"encoder_gflops": 6.46}, "latency_p50_ms": latency,
                "volumes": {"objects": 4, "dsc": 0.6, "nsd": 0.75, "hd95": 5.0} if role == "student" else None}  # fmt: skip

    results = {
        "kind": readme_results.REFERENCE_KIND,
        "models": [entry("teacher-export", "teacher", _scores(0.6, 0.9), 1.0, {"encoder": 700.0}), entry("tinyvit-256-int8", "student", _scores(0.5, 0.81, 0.93), 0.9, {"encoder": 80.04})],
    }
    lines = readme_results.table_for(results).splitlines()
    assert lines[0].startswith("| model | method | phase | runtime | DSC ct (3, flagged) | DSC us (40) | DSC mean (datasets) |")
    assert lines[2].endswith("| 0.600 | 0.900 | 0.750 | 0.900 | 0.879 | 0.900 | – | – | – | 6.5 | – |")
    # means 0.655 over datasets, 0.81 without the flagged one, 0.788 over objects; 90% of the teacher
    assert lines[3] == (
        "| `tinyvit-256-int8` | decoupled | fine-tuned on ground truth | ONNX Runtime INT8 | 0.500 | 0.810 | 0.655 | 0.810 | 0.788 | 0.810"
        " | 0.930 | 0.930 | 90.0% | 6.5 | 0.600 / 0.750 (4) |"
    )


def test_speed_table_gives_both_speed_ups() -> None:
    results = {
        "kind": readme_results.SPEED_KIND,
        "entries": [
            {"label": "teacher-export", "graph": "encoder", "precision": "fp32", "p50_ms": 700.0, "p90_ms": 720.0, "speedup_vs_teacher_fp32": 1.0, "int8_speedup_vs_own_fp32": None},
            {"label": "tinyvit-256-int8", "graph": "encoder", "precision": "int8", "p50_ms": 50.0, "p90_ms": 52.25, "speedup_vs_teacher_fp32": 14.0, "int8_speedup_vs_own_fp32": 1.7},
        ],
    }
    lines = readme_results.table_for(results).splitlines()
    assert lines[2] == "| `teacher-export` | encoder | FP32 | 700.0 | 720.0 | 1.00x | – |"
    assert lines[3] == "| `tinyvit-256-int8` | encoder | INT8 | 50.0 | 52.2 | 14.00x | 1.70x |"


def test_a_results_kind_without_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match="no README table"):
        readme_results.table_for({"kind": "medkd.bench.something-else"})


def test_readme_table_matches_its_json() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme_results.BLOCK.search(readme), "README.md has no generated results block"
    assert readme_results.render(readme) == readme, "README.md results differ from their JSON: run benchmarks/readme_results.py"


def test_zero_shot_table_flags_small_datasets_and_gives_both_means() -> None:
    results = {"kind": readme_results.ZERO_SHOT_KIND, "data": {"min_objects": 20}, "variants": {"whole": _scores(0.5, 0.9), "box-crop": _scores(0.7, 0.8)}}
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


def test_federated_table_gives_dsc_per_site_and_bytes_against_full_weights() -> None:
    def run(ct: float, us: float, **extra) -> dict:
        return {"test": {"by_dataset": {"ct": {"dsc": ct, "objects": 3, "flagged": True}, "us": {"dsc": us, "objects": 40, "flagged": False}},
                         "mean_over_datasets": {"dsc": (ct + us) / 2}}, **extra}  # fmt: skip

    sent = {"per_round": [{}, {}], "total_bytes": 4_000_000, "full_model_bytes": 50_000_000, "full_weights_total_bytes": 400_000_000, "fraction_of_full_weights": 0.01}
    results = {
        "kind": readme_results.FEDERATED_KIND,
        "sites": ["ct", "us"],
        "runs": {"zero-shot": run(0.5, 0.9), "federated": run(0.6, 0.8, trainable_params=1234, federated={"communication": sent}), "centralised": run(0.7, 0.9)},
    }
    lines = readme_results.table_for(results).splitlines()
    assert lines[0] == "| site (test objects) | DSC zero-shot | DSC centralised | DSC federated |"
    assert lines[2:5] == ["| ct (3, flagged) | 0.500 | 0.700 | 0.600 |", "| us (40) | 0.900 | 0.900 | 0.800 |", "| *mean over sites* | 0.700 | 0.800 | 0.700 |"]
    assert lines[8] == "| trainable parameters (1,234) | 2.00 MB | 4.00 MB |"
    assert lines[9] == "| full weights instead (50.00 MB a message) | 200.00 MB | 400.00 MB |"
    assert lines[10] == "| *share of full weights* | | 1.00% |"
