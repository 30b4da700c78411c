"""The DSC gate's reverting loop (with stand-in measurements) and the Q/DQ graph fix-ups."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import pytest
from medkd.quantize import gate as gate_module
from medkd.quantize.backends import shapes_off_fusions
from medkd.quantize.calibration import Objects
from medkd.quantize.gate import Gate
from medkd.quantize.options import QuantizeOptions
from medkd.quantize.sensitivity import BlockSensitivity, SweepRecord, most_sensitive_first
from onnx import TensorProto, helper, numpy_helper

from medkd.errors import MedkdError

# Validation DSC lost by each block when quantized (alone, and additively together).
COST = {"/encoder/blocks.0": 0.004, "/encoder/blocks.1": 0.030, "/encoder/blocks.2": 0.001, "/transformer/layers.0": 0.012}
GRAPH_OF = {"/encoder/blocks.0": "encoder", "/encoder/blocks.1": "encoder", "/encoder/blocks.2": "encoder", "/transformer/layers.0": "decoder"}


class Variant(frozenset):
    """The blocks a stand-in variant quantizes, named like a quantized file."""

    @property
    def name(self) -> str:
        return "+".join(sorted(self)) + ".onnx"


class StandInBench:
    """Quantizes nothing: a variant is the set of blocks it quantizes, its DSC the sum of their costs."""

    unit_graphs = ("encoder", "decoder")
    export_dir = Path("export")
    fp32: ClassVar[dict[str, Path]] = {"encoder": Path("encoder.onnx"), "decoder": Path("decoder.onnx")}

    def blocks(self, graph: str) -> dict[str, list[str]]:
        return {b: [f"{b}/MatMul"] for b, g in GRAPH_OF.items() if g == graph}

    def quantize(self, graph: str, kept: set[str]) -> Variant:
        return Variant(b for b in self.blocks(graph) if b not in kept)

    def assemble(self, chosen: dict, name: str) -> dict:
        return chosen

    def fp32_outputs(self, graph: str, split: str, feeds: list, threads: int) -> list:
        return []


@pytest.fixture
def gate(monkeypatch):
    def scores(chosen, rows, loader, crop, threads, reference=None):
        """DSC against ground truth falls by the blocks' costs; the masks move by twice that."""
        quantized = set().union(*chosen.values()) if len(chosen) == 2 else chosen.get("encoder", chosen.get("decoder"))
        cost = sum(COST[b] for b in quantized)
        return {"dsc": 0.8 - cost, "nsd": None, "agreement_dsc": 1.0 - 2 * cost, "dsc_by_object": {"a": 0.8 - cost, "b": 0.8 - cost}}

    monkeypatch.setattr(gate_module, "segmentation_scores", scores)
    monkeypatch.setattr(gate_module, "output_error", lambda *args: 0.0)
    monkeypatch.setattr(gate_module, "cpu_session", lambda *args: None)

    def make(max_drop: float | None, record: SweepRecord | None = None) -> Gate:
        val = Objects(rows=[], feeds={"encoder": [], "decoder": []})
        options = QuantizeOptions(max_dsc_drop=max_drop, progress=False)
        return Gate(StandInBench(), val, None, options, 0.8, record, {"a": 0.8, "b": 0.8})  # type: ignore[arg-type]

    return make


def test_gate_reverts_the_most_sensitive_blocks_until_it_holds(gate):
    g = gate(0.01)
    kept = g.hold({"encoder": set(), "decoder": set()})
    assert kept == {"encoder": {"/encoder/blocks.1"}, "decoder": {"/transformer/layers.0"}}  # 0.047 -> 0.017 -> 0.005
    assert [round(step["dsc_drop"], 3) for step in g.history] == [0.047, 0.017, 0.005]
    assert [s.block for s in g.sensitivity] == ["/encoder/blocks.1", "/transformer/layers.0", "/encoder/blocks.0", "/encoder/blocks.2"]
    assert g.sensitivity[0].dsc_drop == pytest.approx(0.030) and g.sensitivity[0].mask_change == pytest.approx(0.060)
    assert [round(step["agreement_with_fp32"], 3) for step in g.history] == [0.906, 0.966, 0.99]


def test_gate_without_a_limit_quantizes_everything_without_a_sweep(gate):
    g = gate(None)
    assert g.hold({"encoder": set(), "decoder": set()}) == {"encoder": set(), "decoder": set()}
    assert g.sensitivity is None and len(g.history) == 1


def test_gate_that_cannot_hold_fails(gate):
    g = gate(0.0)
    g.fp32_dsc = 0.9  # FP32 better than even the all-float variant (0.8): no zero drop is possible
    with pytest.raises(MedkdError, match="even with every block in float"):
        g.hold({"encoder": set(), "decoder": set()})
    assert [len(step["kept_in_float"]) for step in g.history] == [0, 1, 2, 4]  # then all four: still missed


def test_gate_searches_the_fewest_blocks_that_hold(gate):
    """Counts 1, 2, 4 kept in float, then bisection between the last miss (2) and the first hold (4)."""
    g = gate(0.002)
    kept = g.hold({"encoder": set(), "decoder": set()})
    assert [len(step["kept_in_float"]) for step in g.history] == [0, 1, 2, 4, 3]
    assert [round(step["dsc_drop"], 3) for step in g.history] == [0.047, 0.017, 0.005, 0.0, 0.001]
    assert g.chosen_step == 4
    assert kept == {"encoder": {"/encoder/blocks.1", "/encoder/blocks.0"}, "decoder": {"/transformer/layers.0"}}


def test_a_mean_within_bounds_by_chance_does_not_hold(gate):
    """Per-object changes of +-0.1 around a mean drop of 0.005: within bounds on average, not at 90 %
    confidence (standard error 0.1 / sqrt 2 = 0.07); with identical changes the bound is the mean."""
    g = gate(0.01)
    assert g.drop_bound(0.005, {"a": 0.8 - 0.105, "b": 0.8 + 0.095}) == pytest.approx(0.005 + 1.2816 * 0.1, abs=1e-4)
    assert g.drop_bound(0.005, {"a": 0.795, "b": 0.795}) == pytest.approx(0.005)
    with pytest.raises(Exception, match="gate-confidence"):
        QuantizeOptions(gate_confidence=0.3).check()


def test_interrupted_sweep_resumes_from_its_record(gate, tmp_path, monkeypatch):
    path = tmp_path / "sweep.jsonl"
    first = gate(0.01, SweepRecord(path)).run_sweep()
    with path.open("a") as handle:
        handle.write('{"key": "cut sho')  # what an interruption mid-write leaves
    monkeypatch.setattr(gate_module, "segmentation_scores", lambda *args: pytest.fail("a recorded block was measured again"))
    resumed = gate(0.01, SweepRecord(path)).run_sweep()
    assert resumed == first and len(SweepRecord(path).measured) == 4
    SweepRecord(path).add("encoder:x:y.onnx", (0.5, 0.1, 0.2))
    assert SweepRecord(path).get("encoder:x:y.onnx") == (0.5, 0.1, 0.2) and len(SweepRecord(path).measured) == 5


def test_shape_nodes_read_the_float_tensor_so_ort_can_fuse_the_matmul():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("Shape", ["xd"], ["shape"]),
        helper.make_node("Relu", ["xd"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], [helper.make_tensor_value_info("shape", TensorProto.INT64, [2]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [scale, zero])
    model = helper.make_model(graph)
    assert shapes_off_fusions(model) == 1
    assert model.graph.node[2].input[0] == "x" and model.graph.node[3].input[0] == "xd"
    onnx.checker.check_model(model)


def test_shape_of_a_quantized_convolution_output_reads_its_dequantized_copy():
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
        numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv"),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Relu", ["cd"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("shape", TensorProto.INT64, [4]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert shapes_off_fusions(model) == 1
    assert model.graph.node[3].input[0] == "cd"  # the Conv output now goes to its Q alone
    assert shapes_off_fusions(model) == 0  # and stays there
    onnx.checker.check_model(model)


def test_blocks_rank_by_how_far_they_move_the_masks():
    """Not by the DSC against ground truth, which a few objects make noise (a block moving the
    embeddings by 0.95 can seem to gain), nor by output errors of graphs on different scales."""
    stem = BlockSensitivity("encoder", "stem", 1, dsc_drop=-0.008, output_error=0.95, mask_change=0.12)
    late = BlockSensitivity("encoder", "late", 1, dsc_drop=0.05, output_error=0.34, mask_change=0.04)
    head = BlockSensitivity("decoder", "head", 1, dsc_drop=0.0, output_error=0.01, mask_change=0.04)
    assert most_sensitive_first([head, late, stem]) == [stem, late, head]
