"""The DSC gate: revert the most sensitive blocks to float until the validation DSC drop is within bounds.

The pipeline is first scored with every candidate block quantized. If the drop against FP32 exceeds
``max_dsc_drop``, the one-block-at-a-time sweep (:mod:`medkd.quantize.sensitivity`, run once, lazily)
orders the blocks, and the gate keeps the fewest most-sensitive blocks in float that hold. A step holds
when the drop is within bounds at ``gate_confidence`` (one-sided, from the per-object paired DSC
changes: mean + z * standard error), not by its mean alone: on 16 validation objects of the published
LiteMedSAM the mean rose 0.7 points for a variant that lost 7.5 on test, its masks moved by a quarter.
To find the count the gate tries
1, 2, 4, ... of them, then bisects between the last count that missed and the first that held (about
2 log2(n) scorings instead of up to n, taking the drop as falling with each block kept). The report
says for each kept block why it stayed float.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from medkd.runtime.onnx_runtime import cpu_session
from medkd.quantize.calibration import Objects
from medkd.quantize.measure import MAIN_OUTPUT, output_error, segmentation_scores
from medkd.quantize.options import QuantizeOptions
from medkd.quantize.sensitivity import BlockSensitivity, SweepRecord, sweep
from medkd.quantize.workbench import Workbench

from medkd.data.loading import RowLoader
from medkd.errors import MedkdError


class Gate:
    """Reverts the most sensitive blocks to float until the validation DSC drop is within bounds."""

    def __init__(
        self,
        bench: Workbench,
        val: Objects,
        loader: RowLoader,
        options: QuantizeOptions,
        fp32_val_dsc: float,
        record: SweepRecord | None = None,
        fp32_by_object: dict[str, float] | None = None,
    ) -> None:
        self.bench, self.val, self.loader, self.options, self.record = bench, val, loader, options, record
        self.fp32_dsc, self.fp32_by_object = fp32_val_dsc, fp32_by_object or {}
        self.z = statistics.NormalDist().inv_cdf(options.gate_confidence)
        self.history: list[dict[str, Any]] = []
        self.chosen_step = 0
        self.sensitivity: list[BlockSensitivity] | None = None

    def scores(self, directory: Path) -> tuple[float, float, dict[str, float]]:
        """Validation DSC of an assembled pipeline, its masks' agreement with the FP32 export's and each object's DSC."""
        scores = segmentation_scores(directory, self.val.rows, self.loader, self.options.crop, self.options.threads, reference=self.bench.export_dir)
        return float(scores["dsc"] or 0.0), float(scores["agreement_dsc"] or 0.0), scores["dsc_by_object"]

    def drop_bound(self, drop: float, by_object: dict[str, float]) -> float:
        """The mean DSC drop plus z standard errors of the per-object paired changes."""
        changes = [self.fp32_by_object[key] - value for key, value in by_object.items() if key in self.fp32_by_object]
        if len(changes) < 2:
            return drop
        return drop + self.z * statistics.stdev(changes) / len(changes) ** 0.5

    def measure_block(self, graph: str, block: str) -> tuple[float, float, float]:
        """(validation DSC drop, output error, mask change) with only ``block`` of ``graph`` quantized."""
        threads = self.options.threads
        path = self.bench.quantize(graph, {b for b in self.bench.blocks(graph) if b != block})
        key = f"{graph}:{block}:{path.name}"  # the variant's name says which nodes it quantizes
        if self.record is not None and (known := self.record.get(key)) is not None:
            return known
        dsc, agreement, _ = self.scores(self.bench.assemble({graph: path}, "sweep"))
        expected = self.bench.fp32_outputs(graph, "val", self.val.feeds[graph], threads)
        error = output_error(expected, cpu_session(path, threads), MAIN_OUTPUT[graph], self.val.feeds[graph])
        measured = (self.fp32_dsc - dsc, error, 1.0 - agreement)
        if self.record is not None:
            self.record.add(key, measured)
        return measured

    def run_sweep(self) -> list[BlockSensitivity]:
        if self.sensitivity is None:
            self.sensitivity = sweep({g: self.bench.blocks(g) for g in self.bench.unit_graphs}, self.measure_block, self.options.progress)
        return self.sensitivity

    def hold(self, kept: dict[str, set[str]]) -> dict[str, set[str]]:
        """``kept`` grown by the fewest most-sensitive blocks that hold the gate (``MedkdError`` when
        even all of them in float miss it); ``chosen_step`` names the step of ``history`` it returns."""
        if self.holds(kept):
            return kept
        order = [s for s in self.run_sweep() if s.block not in kept[s.graph]]

        def with_top(count: int) -> dict[str, set[str]]:
            grown = {graph: set(blocks) for graph, blocks in kept.items()}
            for s in order[:count]:
                grown[s.graph].add(s.block)
            return grown

        missed, held, count = 0, None, 1
        while held is None:
            count = min(count, len(order))
            if count and self.holds(with_top(count)):
                held = count
            elif count == len(order):
                raise MedkdError(f"validation DSC drops {self.history[-1]['dsc_drop']:.4f} > {self.options.max_dsc_drop} even with every block in float")
            else:
                missed, count = count, count * 2
        chosen = len(self.history) - 1
        while held - missed > 1:
            middle = (missed + held) // 2
            if self.holds(with_top(middle)):
                held, chosen = middle, len(self.history) - 1
            else:
                missed = middle
        self.chosen_step = chosen
        return with_top(held)

    def holds(self, kept: dict[str, set[str]]) -> bool:
        """Score the pipeline with ``kept`` in float, record the step, and say whether the gate holds."""
        chosen = {g: self.bench.quantize(g, kept[g]) for g in self.bench.unit_graphs}
        dsc, agreement, by_object = self.scores(self.bench.assemble(chosen, f"gate-{len(self.history)}"))
        drop = self.fp32_dsc - dsc
        bound = self.drop_bound(drop, by_object)
        self.history.append(
            {"kept_in_float": sorted(b for g in kept for b in kept[g]), "val_dsc": dsc, "dsc_drop": drop, "dsc_drop_bound": bound, "agreement_with_fp32": agreement}
        )
        limit = self.options.max_dsc_drop
        return limit is None or bound <= limit


def kept_report(kept: dict[str, set[str]], forced: set[str], sensitivity: list[BlockSensitivity] | None) -> list[dict[str, Any]]:
    """One entry per block kept in float: asked for, or reverted by the gate (with its sensitivity)."""
    measured = {(s.graph, s.block): s for s in sensitivity or []}
    report = []
    for graph, blocks in kept.items():
        for block in sorted(blocks):
            entry: dict[str, Any] = {"graph": graph, "block": block}
            if block in forced:
                entry["reason"] = "kept in float by request (--keep-float)"
            else:
                s = measured[(graph, block)]
                entry.update(
                    {"reason": "DSC gate: among the blocks that move the masks most", "mask_change_alone": s.mask_change, "dsc_drop_alone": s.dsc_drop, "output_error_alone": s.output_error}
                )
            report.append(entry)
    return report
