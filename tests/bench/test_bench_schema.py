"""Results schema: latency quantiles against known answers, and documents that are not results refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medkd.bench import BENCH_SCHEMA, latency_summary, new_document, read_document, write_document
from medkd.errors import BadInput


def test_latency_summary_known_values():
    seconds = [i / 1000 for i in range(1, 101)]  # 1 .. 100 ms
    summary = latency_summary(seconds)
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1)
    assert summary["p99"] == pytest.approx(99.01)
    assert summary["mean"] == pytest.approx(50.5)
    assert (summary["min"], summary["max"]) == pytest.approx((1.0, 100.0))
    assert summary["std"] == pytest.approx(float(np.std(np.arange(1, 101))))


def test_single_iteration_gives_that_value_everywhere():
    assert set(latency_summary([0.25]).values()) == {250.0, 0.0}


def test_document_round_trip(tmp_path):
    entry = {
        "model": "m",
        "backend": "torch",
        "graph": "encoder",
        "latency_ms": latency_summary([0.1]),
        "batch": 1,
        "threads": 2,
        "warmup": 0,
        "iterations": 1,
        "precision": "fp32",
        "inputs": {"image": [1, 3, 8, 8]},
    }
    path = tmp_path / "r.json"
    write_document(path, new_document([entry], {"cpu": {"model": "x"}}, suite="unit"))
    document = read_document(path)
    assert document["schema"] == BENCH_SCHEMA and document["suite"] == "unit" and len(document["load_average"]) == 3
    assert document["entries"][0]["latency_ms"]["p50"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"kind": "medkd.eval"}), "not a medkd benchmark result"),
        (json.dumps({"kind": "medkd.bench", "schema": BENCH_SCHEMA + 1, "device": {}, "entries": []}), "this medkd reads up to"),
        (json.dumps({"kind": "medkd.bench", "schema": 1, "device": {}, "entries": [{"model": "m"}]}), "entry 0 lacks backend"),
    ],
)
def test_bad_documents_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message):
        read_document(path)
