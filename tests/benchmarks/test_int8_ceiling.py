"""benchmarks/int8_ceiling.py's arithmetic and the profile reading it uses, on known answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from medkd.bench.onnx_profile import kernel_times

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("int8_ceiling", ROOT / "benchmarks" / "int8_ceiling.py")
ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ceiling)


def test_amdahl_bounds():
    assert ceiling.amdahl(0.5, 2.0) == pytest.approx(4 / 3)  # half the time twice as fast
    assert ceiling.amdahl(0.45, 1e12) == pytest.approx(1 / 0.45)  # kernels free: one over the rest
    assert ceiling.amdahl(0.0, 3.0) == pytest.approx(3.0)


def test_split_time_counts_float_products_and_integer_kernels_apart_from_the_rest():
    times = {"Conv": 3.0, "FusedMatMul": 1.0, "Gelu": 1.5, "Transpose": 0.5, "MatMulIntegerToFloat": 2.0}
    assert ceiling.split_time(times, ceiling.FLOAT_PRODUCTS) == (4.0, 4.0)
    assert ceiling.split_time(times, (*ceiling.INTEGER_KERNELS, *ceiling.FLOAT_PRODUCTS)) == (6.0, 2.0)


def test_kernel_times_read_the_profiler_by_operator(tmp_path):
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 256])], [weight])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    times = kernel_times(path, {"x": np.ones((64, 256), np.float32)}, lambda _, op: op, runs=2)
    by_node = kernel_times(path, {"x": np.ones((64, 256), np.float32)}, lambda node, _: node, runs=2)
    assert set(times) == {"MatMul", "Relu"} and all(ms > 0 for ms in times.values())
    assert len(by_node) == 2  # one entry per node
