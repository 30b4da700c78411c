"""benchmarks/accuracy_latency.py on the tiny run: points from the run's eval and bench results, the
missing latency measured, the plot written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_bench_suites import run_script

pytestmark = pytest.mark.data


def test_accuracy_latency_suite(tmp_path, tiny_run):
    out = tmp_path / "points.json"
    stdout = run_script("accuracy_latency.py", str(tiny_run), "--warmup", "0", "--iters", "2", "--threads", "1", "--out", str(out))
    result = json.loads(out.read_text())
    points = {(p["artifact"], p["backend"]): p for p in result["points"]}
    assert set(points) == {("teacher", "torch"), ("student", "torch"), ("export", "ort"), ("quant", "ort-int8")}
    assert [e["model"] for e in result["bench"]["entries"]] == ["sam-vit-stand-in"] * 2  # only the teacher lacked a latency
    teacher = points[("teacher", "torch")]
    assert teacher["latency_source"] == "decoder + encoder p50" and teacher["accuracy"]["split"] == "test"
    summary = json.loads((tiny_run / "eval-teacher.json").read_text())["summary"]
    assert teacher["accuracy"]["dsc"] == pytest.approx(summary["overall"]["dsc"]["mean"])
    assert Path(out.with_suffix(".png")).stat().st_size > 10_000 and "| quant | export | sam-vit-stand-in | ort-int8 | int8 |" in stdout
