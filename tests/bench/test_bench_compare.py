"""``medkd bench compare`` on made-up results: regression (exit 1), improvement (0), incomparable (2)."""

from __future__ import annotations

import copy
import json

import pytest

from medkd.bench import compare_documents, parse_threshold
from medkd.cli import run
from medkd.errors import BadInput

DEVICE = {"cpu": {"model": "AMD EPYC 7763 64-Core Processor", "logical_cores": 4}, "gpu": None, "jetson": None}


def entry(model: str, graph: str, p50: float, backend: str = "ort", **settings) -> dict:
    return {
        "model": model,
        "backend": backend,
        "graph": graph,
        "precision": "fp32",
        "batch": 1,
        "device": "cpu",
        "threads": 2,
        "warmup": 3,
        "iterations": 20,
        "inputs": {"image": [1, 3, 256, 256]},
        "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50 * 1.02},
        **settings,
    }


def document(entries: list[dict], device: dict = DEVICE) -> dict:
    return {"kind": "medkd.bench", "schema": 1, "device": device, "software": {"onnxruntime": "1.18.0"}, "entries": entries}


BASE = document([entry("tinyvit-256", "encoder", 50.0), entry("tinyvit-256", "decoder", 5.0), entry("unet", "unet", 20.0)])


def write(tmp_path, name: str, value: dict):
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def test_regression_beyond_threshold_exits_1(tmp_path, capsys):
    new = document([entry("tinyvit-256", "encoder", 56.0), entry("tinyvit-256", "decoder", 5.1), entry("unet", "unet", 20.0)])
    summary = tmp_path / "summary.md"
    assert run(["bench", "compare", write(tmp_path, "b.json", BASE), write(tmp_path, "n.json", new), "--summary", str(summary)]) == 1
    captured = capsys.readouterr()
    assert "1 of 3 measurements regressed beyond 10% (worst: tinyvit-256/ort/encoder/fp32/1 1.12x)" in captured.err
    assert "| tinyvit-256 | ort | encoder | fp32 | 1 | 50.0 | 56.0 | 1.120 | slower |" in summary.read_text()
    # the same files pass with a looser gate
    assert run(["bench", "compare", str(tmp_path / "b.json"), str(tmp_path / "n.json"), "--max-regression", "15%"]) == 0


def test_improvement_passes_and_is_reported(tmp_path, capsys):
    new = document([entry("tinyvit-256", "encoder", 30.0), entry("tinyvit-256", "decoder", 5.0), entry("unet", "unet", 20.5)])
    assert run(["bench", "compare", write(tmp_path, "b.json", BASE), write(tmp_path, "n.json", new)]) == 0
    comparison = compare_documents(BASE, new, 0.10)
    verdicts = {row.key[2]: (row.verdict, round(row.ratio, 3)) for row in comparison.rows}
    assert verdicts == {"encoder": ("faster", 0.6), "decoder": ("same", 1.0), "unet": ("same", 1.025)}
    assert "no regression beyond 10% in 3 measurements" in capsys.readouterr().out


def test_load_is_noted(tmp_path, capsys):
    busy = {**document(BASE["entries"]), "load_average": [7.5, 6.0, 5.0]}
    assert run(["bench", "compare", write(tmp_path, "b.json", BASE), write(tmp_path, "n.json", busy)]) == 0
    assert "NEW was measured at load average 7.5 on 4 cores" in capsys.readouterr().out


def test_other_device_is_incomparable(tmp_path, capsys):
    other = copy.deepcopy(DEVICE)
    other["cpu"]["model"] = "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz"
    new = document(BASE["entries"], other)
    assert run(["bench", "compare", write(tmp_path, "b.json", BASE), write(tmp_path, "n.json", new)]) == 2
    assert "different devices: cpu.model 'AMD EPYC 7763 64-Core Processor' vs 'Intel(R) Xeon(R)" in capsys.readouterr().err


def test_other_jetson_power_mode_is_incomparable():
    jetson = {"cpu": {}, "gpu": {"name": "Orin"}, "jetson": {"module": "Jetson AGX Orin", "nvpmodel": {"name": "MAXN", "id": 0}, "jetson_clocks": "on"}}
    slower_mode = copy.deepcopy(jetson)
    slower_mode["jetson"]["nvpmodel"] = {"name": "30W", "id": 2}
    with pytest.raises(BadInput, match="jetson.nvpmodel 'MAXN' vs '30W'"):
        compare_documents(document(BASE["entries"], jetson), document(BASE["entries"], slower_mode))


def test_other_settings_are_incomparable():
    new = document([entry("tinyvit-256", "encoder", 50.0, threads=4)])
    with pytest.raises(BadInput, match="tinyvit-256/ort/encoder/fp32/1: threads 2 vs 4"):
        compare_documents(BASE, new)


def test_nothing_in_common_is_incomparable():
    with pytest.raises(BadInput, match="no measurement of NEW matches"):
        compare_documents(BASE, document([entry("sam-vit-b", "encoder", 900.0)]))


def test_unmatched_entries_are_listed_not_gated():
    new = document([entry("tinyvit-256", "encoder", 50.0), entry("sam-vit-b", "encoder", 900.0)])
    verdicts = {row.key[0] + "/" + row.key[2]: row.verdict for row in compare_documents(BASE, new).rows}
    assert verdicts == {"tinyvit-256/encoder": "same", "tinyvit-256/decoder": "only in base", "unet/unet": "only in base", "sam-vit-b/encoder": "only in new"}


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("0.25", 0.25), ("0%", 0.0)])
def test_threshold_parsing(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["ten", "-5%"])
def test_bad_threshold_exits_2(tmp_path, text):
    path = write(tmp_path, "b.json", BASE)
    assert run(["bench", "compare", path, path, "--max-regression", text]) == 2
