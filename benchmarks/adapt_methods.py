"""Teacher adaptation methods side by side on the real teacher: test DSC / NSD per dataset against
zero-shot, trainable parameters and wall time on this machine.

    python benchmarks/adapt_methods.py --data runs/reference-cpu/data.jsonl --work runs/adapt-methods
    python benchmarks/adapt_methods.py --run runs/reference-cpu --methods lora adapter full   # reuse the run's

Each method runs ``medkd adapt`` with ``recipes/litemedsam-adapt.yaml`` on the same training objects
(``decoder`` on the cached embeddings with the recipe's budget, ``lora-decoder`` likewise with
``recipes/litemedsam-adapt-lora.yaml``: LoRA on the decoder alone; ``full``, ``lora`` and ``adapter``
train through the encoder, ``--encoder-steps`` of ``--encoder-batch``), then ``medkd eval`` on the test
split (the first ``--limit`` objects per dataset, box prompts, box-centred crops as every model here was
trained); the zero-shot row is the published LiteMedSAM. Run it with the ``MEDKD_CACHE_DIR`` the embeddings were
cached under (a reference run's) to reuse them. With ``--run`` (a reference pipeline run), the
decoder row is that run's adapted teacher (its adapt stage's wall time) and the zero-shot and decoder
evaluations are the run's own, scored on the same objects as the others. Finished steps are skipped on a
re-run (every artifact and report is kept under ``--work``); the JSON is written once every method
is scored, on the objects all of them were evaluated on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.artifacts import atomic_write_json, read_manifest, software_versions  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import portable_cache, results_path  # noqa: E402
from medkd.cli import run  # noqa: E402
from medkd.distill.adapt import stored_adapt_config  # noqa: E402
from medkd.evaluation.scores import MIN_OBJECTS, dataset_scores  # noqa: E402
from medkd.metrics import summarize  # noqa: E402

KIND = "medkd.bench.adapt-methods"
RECIPE = ROOT / "recipes" / "litemedsam-adapt.yaml"
RECIPES = {"lora-decoder": ROOT / "recipes" / "litemedsam-adapt-lora.yaml"}  # the others: RECIPE with --method
CACHED = ("decoder", "lora-decoder")  # methods trained on the cached embeddings, with their recipe's budget
METHODS = ("decoder", "lora-decoder", "lora", "adapter", "full")
LORA_KEYS = ("lora_rank", "lora_encoder", "lora_decoder", "lora_decoder_modules")


def _medkd(*args: str) -> None:
    code = run(list(args))
    if code != 0:
        raise SystemExit(f"medkd {' '.join(args[:2])} exited with {code}")


def timed_adapt(out: Path, *args: str) -> float:
    """Wall seconds of ``medkd adapt ARGS --out OUT``, kept beside ``out`` so that a re-run skips it."""
    wall = out.with_name(f"{out.name}-wall.json")
    if (out / "manifest.json").is_file() and wall.is_file():
        return float(json.loads(wall.read_text())["seconds"])
    started = time.monotonic()
    _medkd("adapt", *args, "--out", str(out))
    seconds = time.monotonic() - started
    atomic_write_json(wall, {"seconds": round(seconds, 1)})
    return seconds


def adapt(method: str, data: Path, out: Path, args: argparse.Namespace) -> float:
    """Wall seconds of ``medkd adapt`` of ``method`` into ``out``."""
    budget = [] if method in CACHED else ["--steps", str(args.encoder_steps), "--batch-size", str(args.encoder_batch), "--bf16"]
    recipe = ["--recipe", str(RECIPES[method])] if method in RECIPES else ["--recipe", str(RECIPE), "--method", method]
    return timed_adapt(out, *recipe, "--data", str(data), "--resume", *budget)


def results_header(kind: str, device: dict[str, Any], limit: int) -> dict[str, Any]:
    """What a results JSON of LiteMedSAM adaptation says first: its kind, when, where, with what."""
    return {
        "kind": kind,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "software": software_versions(),
        "recipe": str(RECIPE.relative_to(ROOT)),
        "data": {"split": "test", "limit_per_dataset": limit, "prompt": "box", "min_objects": MIN_OBJECTS},
    }


def evaluate(model: str, data: Path, out: Path, limit: int) -> dict[str, Any]:
    if not out.is_file():
        _medkd("eval", "--model", model, "--data", str(data), "--split", "test", "--crop", "box", "--limit", str(limit), "--no-volumes", "--out", str(out))
    return json.loads(out.read_text())


def scores_on(report: dict[str, Any], ids: set[str]) -> dict[str, Any]:
    """Per-dataset scores of ``report`` on the objects ``ids`` (a run's larger evaluation, cut to the
    objects every method was evaluated on)."""
    records = [record for record in report["objects"] if record["id"] in ids]
    if len(records) != len(ids):
        raise SystemExit(f"the reused evaluation lacks {len(ids) - len(records)} of the compared objects")
    return dataset_scores(summarize(records))


def reused(run: Path) -> tuple[Path, float, dict[str, Any], dict[str, Any]]:
    """The run's adapted teacher, its adapt stage's seconds, and its zero-shot and teacher evaluations (the
    teacher in PyTorch, or its ONNX export where the run evaluated what ships)."""
    stages = json.loads((run / "pipeline.json").read_text())["stages"]
    evaluated = run / "eval"
    teacher = next(path for path in (evaluated / "teacher.json", evaluated / "teacher-export.json") if path.is_file())
    zero_shot = json.loads((evaluated / "litemedsam-zero-shot.json").read_text())
    return run / "teacher", float(stages["adapt"]["seconds"]), zero_shot, json.loads(teacher.read_text())


def method_entry(artifact: Path, seconds: float, test: dict[str, Any]) -> dict[str, Any]:
    manifest = read_manifest(artifact)
    metrics, stored = manifest.metrics, stored_adapt_config(manifest.config["adapt"])
    return {
        "trainable_params": metrics["trainable_params"],
        "total_params": metrics["total_params"],
        "trainable_fraction": metrics["trainable_params"] / metrics["total_params"],
        "lora": {key: stored[key] for key in LORA_KEYS},
        "train": stored["train"],
        "wall_seconds": round(seconds, 1),
        "train_seconds": metrics.get("train_seconds_this_session"),
        "cache": portable_cache(metrics.get("cache")),
        "test": test,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Data manifest of ../shared/data (medkd data index; default RUN/data.jsonl).")
    parser.add_argument("--run", type=Path, help="A reference pipeline run whose adapted teacher and evaluations are reused.")
    parser.add_argument("--work", type=Path, default=Path("runs/adapt-methods"), help="Where artifacts and eval reports go.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--encoder-steps", type=int, default=60, help="Steps of the methods that train through the encoder.")
    parser.add_argument("--encoder-batch", type=int, default=4)
    parser.add_argument("--limit", type=int, default=30, help="Test objects per dataset (manifest order).")
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/adapt-methods-<date>-<device>.json).")
    args = parser.parse_args()
    if args.data is None and args.run is None:
        parser.error("give --data or --run")
    data = args.data or args.run / "data.jsonl"
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", "adapt-methods", device)
    results: dict[str, Any] = {
        **results_header(KIND, device, args.limit),
        "budget": {"encoder_steps": args.encoder_steps, "encoder_batch": args.encoder_batch},
        "methods": {},
    }
    reports: dict[str, tuple[dict[str, Any], Path | None, float]] = {}
    if args.run:
        teacher, seconds, zero_shot_report, teacher_report = reused(args.run)
        reports["zero-shot"] = (zero_shot_report, None, 0.0)
        reports["decoder"] = (teacher_report, teacher, seconds)
        results["reused_run"] = str(args.run)
    else:
        reports["zero-shot"] = (evaluate("litemedsam", data, args.work / "zero-shot.json", args.limit), None, 0.0)
    for method in args.methods:
        if method in reports:
            continue
        artifact = args.work / method
        seconds = adapt(method, data, artifact, args)
        reports[method] = (evaluate(str(artifact), data, args.work / f"{method}.json", args.limit), artifact, seconds)
    compared = set.intersection(*({record["id"] for record in report["objects"]} for report, _, _ in reports.values()))
    for method, (report, artifact, seconds) in reports.items():
        test = scores_on(report, compared)
        results["methods"][method] = {"trainable_params": 0, "test": test} if artifact is None else method_entry(artifact, seconds, test)
    atomic_write_json(out, results)
    base = results["methods"]["zero-shot"]["test"]["mean_over_datasets"]["dsc"]
    for method, entry in results["methods"].items():
        mean = entry["test"]["mean_over_datasets"]["dsc"]
        print(f"{method:<10} DSC over datasets {mean:.3f} ({100 * (mean - base):+.1f} points) trainable {entry['trainable_params']:,}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
