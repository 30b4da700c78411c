"""Federated against centralised adaptation of the real teacher, the datasets of ../shared/data as
sites: test DSC per site against zero-shot LiteMedSAM, and the bytes sent against full weights.

    MEDKD_CACHE_DIR=runs/cache-ref python benchmarks/federated.py --data runs/reference-cpu/data.jsonl \
        --work runs/federated --zero-shot runs/reference-cpu/eval/litemedsam-zero-shot.json

Both runs start from ``--recipe`` (``recipes/litemedsam-adapt-lora.yaml``: LoRA on the mask decoder,
trained on the cached embeddings, so a site exchanges 0.83 % of the weights) with no warm-up and the
same learning rate: the federated run trains ``--rounds`` rounds of ``--local-steps`` steps at every
site (Flower's FedAvg, or ``--aggregation fedprox``); the centralised run trains as many steps in all
(sites x rounds x local steps) on the pooled training objects, so both see the same number of images.
Evaluation: ``medkd eval`` on the test split, the first ``--limit`` objects of each dataset, box
prompts; ``--zero-shot`` reuses a zero-shot report of the same objects (a reference run's). Finished
steps are skipped on a re-run; the JSON is written once both runs are scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapt_methods import RECIPES, evaluate, results_header, scores_on, timed_adapt  # noqa: E402  (this folder's: the same steps)
from medkd.artifacts import atomic_write_json, read_manifest  # noqa: E402
from medkd.bench import device_info  # noqa: E402
from medkd.bench.suite import portable_cache, results_path  # noqa: E402
from medkd.config import load_yaml  # noqa: E402
from medkd.data import load_manifest  # noqa: E402

KIND = "medkd.bench.federated"


def recipe(work: Path, name: str, args: argparse.Namespace, federated: bool) -> Path:
    """The adapt recipe of one run: ``--recipe`` with this benchmark's budget (no validation)."""
    section = load_yaml(args.recipe)["adapt"]
    section["val_objects"] = 0
    section["train"] = {**section["train"], "lr": args.lr, "warmup_steps": 0, "batch_size": args.batch}
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
    parser.add_argument("--recipe", type=Path, default=RECIPES["lora-decoder"], help="The adapt recipe both runs start from.")
    parser.add_argument("--zero-shot", type=Path, help="A medkd eval report of zero-shot LiteMedSAM on the test split to reuse.")
    parser.add_argument("--aggregation", default="fedavg", choices=("fedavg", "fedprox"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-steps", type=int, default=10, help="Steps at every site in every round.")
    parser.add_argument("--batch", type=int, help="Batch size (default: the recipe's).")
    parser.add_argument("--lr", type=float, help="Learning rate (default: the recipe's).")
    parser.add_argument("--limit", type=int, default=50, help="Test objects per dataset (manifest order).")
    parser.add_argument("--out", type=Path, help="Results JSON (default: benchmarks/results/federated-<recipe>-<date>-<device>.json).")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train = load_yaml(args.recipe)["adapt"]["train"]
    args.batch, args.lr = args.batch or train["batch_size"], args.lr or train["lr"]
    manifest = load_manifest(args.data)
    sites = sorted({row.dataset for row in manifest.select("train")})
    args.sites = len(sites)
    device = device_info()
    method = next((name for name, path in RECIPES.items() if path.resolve() == args.recipe.resolve()), args.recipe.stem)
    out = args.out or results_path(ROOT / "benchmarks" / "results", f"federated-{method}", device)
    results: dict[str, Any] = {
        **results_header(KIND, device, args.limit),
        "sites": sites,
        "recipe": str(args.recipe.resolve().relative_to(ROOT)) if args.recipe.resolve().is_relative_to(ROOT) else args.recipe.name,
        "budget": {
            "method": method,
            "aggregation": args.aggregation,
            "rounds": args.rounds,
            "local_steps": args.local_steps,
            "batch_size": args.batch,
            "lr": args.lr,
            "centralised_steps": args.sites * args.rounds * args.local_steps,
        },
        "runs": {},
    }
    reports = {}
    for name, federated in (("federated", True), ("centralised", False)):
        artifact = f"{method}-{name}"
        seconds = adapt(artifact, args.data, args.work, args, federated)
        reports[name] = evaluate(str(args.work / artifact), args.data, args.work / f"{artifact}.json", args.limit)
        metrics = read_manifest(args.work / artifact).metrics
        results["runs"][name] = {
            "trainable_params": metrics["trainable_params"],
            "total_params": metrics["total_params"],
            "wall_seconds": round(seconds, 1),
            "train_seconds": metrics.get("train_seconds_this_session"),
            "cache": portable_cache(metrics.get("cache")),
            "federated": metrics.get("federated"),
        }
    compared = {record["id"] for record in reports["federated"]["objects"]}
    zero_shot = json.loads(args.zero_shot.read_text()) if args.zero_shot else evaluate("litemedsam", args.data, args.work / "zero-shot.json", args.limit)
    results["runs"] = {"zero-shot": {}, **results["runs"]}
    for name, report in (("zero-shot", zero_shot), *reports.items()):
        results["runs"][name]["test"] = scores_on(report, compared)
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
