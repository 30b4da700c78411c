"""``medkd bench MODEL``: every model form and backend this machine has, timings and errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from medkd.bench import BenchOptions, bench_model, read_document
from medkd.bench.timing import TimingOptions, Workload, measure
from medkd.cli import run


def bench(tmp_path, *args: str, name: str = "r.json") -> dict:
    out = tmp_path / name
    assert run(["bench", *args, "--warmup", "1", "--iters", "3", "--threads", "1", "--out", str(out)]) == 0
    return read_document(out)


def test_torch_on_a_model_artifact(tmp_path, tiny_sam):
    document = bench(tmp_path, str(tiny_sam))
    encoder, decoder = document["entries"]
    assert (encoder["graph"], decoder["graph"]) == ("encoder", "decoder")
    assert encoder["model"] == "sam-vit-stand-in" and encoder["artifact_id"].startswith("model-")
    assert encoder["inputs"] == {"image": [1, 3, 256, 256]}
    assert decoder["inputs"] == {"image_embeddings": [1, 256, 16, 16], "point_coords": [1, 2, 2], "point_labels": [1, 2]}
    assert (encoder["threads"], encoder["warmup"], encoder["iterations"], encoder["precision"]) == (1, 1, 3, "fp32")
    latency = encoder["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert encoder["throughput_per_s"] == pytest.approx(1e3 / latency["mean"])
    assert encoder["memory"]["host_peak_rss_mib"] >= encoder["memory"]["host_rss_before_mib"] > 0
    assert document["device"]["cpu"]["logical_cores"] >= 1 and document["software"]["torch"]


def test_zoo_name_batch_and_graph_selection(tmp_path):
    document = bench(tmp_path, "unet", "--batch", "2", "--graph", "unet")
    (entry,) = document["entries"]
    assert entry["inputs"] == {"image": [2, 4, 256, 256]} and entry["batch"] == 2
    assert entry["throughput_per_s"] == pytest.approx(2e3 / entry["latency_ms"]["mean"])
    assert "random weights" in entry["notes"][0]


def test_zoo_name_with_packaged_weights_is_not_called_random(tmp_path):
    (entry,) = bench(tmp_path, "litemedsam", "--graph", "decoder")["entries"]
    assert entry["model"] == "litemedsam" and not any("random" in note for note in entry["notes"])


def test_ort_on_an_export_and_append(tmp_path, sam_export, unet_export):
    bench(tmp_path, str(sam_export), "--backend", "ort")
    out = tmp_path / "r.json"
    assert run(["bench", str(unet_export / "unet.onnx"), "--backend", "ort", "--warmup", "0", "--iters", "2", "--out", str(out), "--append"]) == 0
    entries = read_document(out)["entries"]
    assert [(e["model"], e["graph"], e["file"]) for e in entries] == [
        ("sam-vit-stand-in", "encoder", "encoder.onnx"),
        ("sam-vit-stand-in", "decoder", "decoder.onnx"),
        ("unet", "unet", "unet.onnx"),
    ]
    decoder = entries[1]
    assert decoder["inputs"]["orig_im_size"] == [2] and decoder["inputs"]["point_coords"] == [1, 2, 2]
    assert entries[2]["first_call_ms"] is None and entries[2]["iterations"] == 2


def test_ort_int8_takes_qdq_graphs_only(tmp_path, unet_export):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": np.random.default_rng(i).standard_normal((1, 4, 256, 256)).astype(np.float32)} for i in range(2)])

        def get_next(self):
            return next(self.items, None)

    int8 = tmp_path / "unet.int8.onnx"
    quantize_static(
        str(unet_export / "unet.onnx"),
        str(int8),
        Images(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True},
    )
    (entry,) = bench(tmp_path, str(int8), "--backend", "ort-int8")["entries"]
    assert (entry["backend"], entry["precision"], entry["graph"]) == ("ort-int8", "int8", "unet")
    assert run(["bench", str(unet_export), "--backend", "ort-int8"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sam-vit-x"], "unknown model 'sam-vit-x'"),
        (["unet", "--backend", "ort"], "runs ONNX"),
        (["unet", "--backend", "onnx"], "--backend must be one of"),
        (["unet", "--backend", "torch-compile", "--warmup", "0"], "compiles on its first call"),
        (["unet", "--iters", "0"], "--iters must be at least 1"),
        (["unet", "--threads", "0"], "--threads must be at least 1"),
        (["unet", "--graph", "encoder"], "--graph encoder is not in this model"),
        (["unet", "--power"], "tegrastats"),
        (["missing.plan", "--backend", "tensorrt"], "TensorRT"),
        (["missing.pt2", "--backend", "aoti"], "--backend aoti takes"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys):
    assert run(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_measure_against_a_known_sleep_and_allocation():
    chunk = 64 << 20

    def work() -> None:
        block = np.ones(chunk // 8)  # 64 MiB touched
        time.sleep(0.02)
        del block

    result = measure(Workload("sleep", work, {}, 1), TimingOptions(warmup=1, iterations=5, progress=False), "sleep")
    assert 20 <= result["latency_ms"]["p50"] < 60
    assert result["first_call_ms"] >= 20
    if result["memory"]["host_method"].startswith("VmHWM"):
        assert result["memory"]["host_peak_increase_mib"] >= 60


def test_python_api_returns_entries(tiny_unet):
    entries = bench_model(str(tiny_unet), BenchOptions(warmup=0, iterations=2, threads=1, progress=False))
    assert [e["graph"] for e in entries] == ["unet"] and json.dumps(entries)
