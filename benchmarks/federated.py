"""Federated against centralised adaptation of the real teacher, the datasets of ../shared/data as
sites: test DSC per site against zero-shot LiteMedSAM, and the bytes sent against full weights.

    python benchmarks/federated.py --data runs/reference-cpu/data.jsonl --work runs/federated

Both runs start from ``recipes/litemedsam-adapt.yaml`` with ``--method`` (LoRA by default), no
warm-up and the same learning rate: the federated run trains ``--rounds`` rounds of ``--local-steps``
steps at every site (Flower's FedAvg, or ``--aggregation fedprox``); the centralised run trains as
many steps in all (sites x rounds x local steps) on the pooled training objects, so both see the same
number of images. Evaluation: ``medkd eval`` on the test split, the first ``--limit`` objects of each
dataset, box prompts. Finished steps are skipped on a re-run; the JSON is rewritten after each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapt_methods import RECIPE, evaluate, results_header, timed_adapt  # noqa: E402  (this folder's: the same steps)
from medkd.artifacts import atomic_write_json, read_manifest  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import results_path  # noqa: E402
from medkd.config import load_yaml  # noqa: E402
from medkd.data import load_manifest  # noqa: E402
from medkd.evaluation.scores import dataset_scores  # noqa: E402

KIND = "medkd.bench.federated"


def recipe(work: Path, name: str, args: argparse.Namespace, federated: bool) -> Path:
    """The adapt recipe of one run: the repository's, with this benchmark's budget (no validation)."""
    section = load_yaml(RECIPE)["adapt"]
    section.update(method=args.method, val_objects=0)
    section["train"] = {**section["train"], "lr": args.lr, "warmup_steps": 0, "batch_size": args.batch, "bf16": True}
    if federated:
        section["train"]["steps"] = args.local_steps
        section["federated"] = {"rounds": args.rounds, "aggregation": args.aggregation, "sites": "dataset"}
    else:
        section["train"]["steps"] = args.sites * args.rounds * args.local_steps
    path = work / f"{name}.recipe.json"
    atomic_write_json(path, {"adapt": section})
    return path


def adapt(name: str, data: Path, work: Path, args: argparse.Namespace, federated: bool) -> float:
    """Wall seconds of ``medkd adapt`` into ``work/name`` (skipped when done)."""
    return timed_adapt(work / name, "--recipe", str(recipe(work, name, args, federated)), "--data", str(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Data manifest of ../shared/data (medkd data index).")
    parser.add_argument("--work", type=Path, default=Path("runs/federated"), help="Where artifacts and eval reports go.")
    parser.add_argument("--method", default="lora", choices=("lora", "adapter", "decoder", "full"))
    parser.add_argument("--aggregation", default="fedavg", choices=("fedavg", "fedprox"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-steps", type=int, default=3, help="Steps at every site in every round.")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=10, help="Test objects per dataset (manifest order).")
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/federated-<method>-<date>-<device>.json).")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(args.data)
    sites = sorted({row.dataset for row in manifest.select("train")})
    args.sites = len(sites)
    device = device_info()
    out = args.out or results_path(ROOT / "benchmarks" / "results", f"federated-{args.method}", device)
    results: dict[str, Any] = {
        **results_header(KIND, device, args.limit),
        "sites": sites,
        "budget": {
            "method": args.method,
            "aggregation": args.aggregation,
            "rounds": args.rounds,
            "local_steps": args.local_steps,
            "batch_size": args.batch,
            "lr": args.lr,
            "centralised_steps": args.sites * args.rounds * args.local_steps,
        },
        "runs": {},
    }
    zero_shot = evaluate("litemedsam", args.data, args.work / "zero-shot.json", args.limit)
    results["runs"]["zero-shot"] = {"test": dataset_scores(zero_shot["summary"])}
    atomic_write_json(out, results)
    for name, federated in (("federated", True), ("centralised", False)):
        artifact = f"{args.method}-{name}"
        seconds = adapt(artifact, args.data, args.work, args, federated)
        report = evaluate(str(args.work / artifact), args.data, args.work / f"{artifact}.json", args.limit)
        metrics = read_manifest(args.work / artifact).metrics
        results["runs"][name] = {
            "trainable_params": metrics["trainable_params"],
            "total_params": metrics["total_params"],
            "wall_seconds": round(seconds, 1),
            "train_seconds": metrics.get("train_seconds_this_session"),
            "cache": metrics.get("cache"),
            "federated": metrics.get("federated"),
            "test": dataset_scores(report["summary"]),
        }
        atomic_write_json(out, results)
    results["dsc_per_site"] = {
        site: {name: run_["test"]["by_dataset"].get(site, {}).get("dsc") for name, run_ in results["runs"].items()} for site in sites
    }
    atomic_write_json(out, results)
    communication = results["runs"]["federated"]["federated"]["communication"]
    for site, row in results["dsc_per_site"].items():
        print(f"{site:<18}" + "  ".join(f"{name} {value:.3f}" if value is not None else f"{name} -" for name, value in row.items()))
    print(f"sent {communication['total_bytes']:,} bytes in all against {communication['full_weights_total_bytes']:,} for full weights")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
