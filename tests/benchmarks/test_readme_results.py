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
