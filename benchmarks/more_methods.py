"""The distillation methods the reference run leaves out, run once on its teacher: KD-SAM (embedding MSE
plus a perceptual loss, then Dice fine-tuning) and EdgeSAM's prompt-in-the-loop (from the run's
tinyvit-256 student, its decoder learns the teacher's masks under box and point prompts).

    python benchmarks/more_methods.py runs/reference-cpu          # after medkd pipeline recipes/reference-cpu.yaml
    python benchmarks/reference_results.py runs/reference-cpu     # their rows join the results

Each student is trained by ``medkd distill`` with the reference recipe's settings for its kind (same
training objects, the same teacher-target cache: nothing is recomputed for the teacher) and evaluated by
``medkd eval`` on the run's test objects against the teacher's export, into ``RUN/eval/<name>.json``.
Finished steps are skipped on a re-run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.cli import run as medkd  # noqa: E402
from medkd.pipeline.recipe import load_recipe  # noqa: E402


def _section(reference: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The reference tinyvit-256 section with ``changes`` (``train`` merged key by key)."""
    train = {**reference["train"], **changes.pop("train", {})}
    return {**reference, **changes, "train": train}


def methods(reference: dict[str, Any], run: Path) -> dict[str, dict[str, Any]]:
    return {
        "kd-sam": _section(reference, method="kd-sam", perceptual_weight=0.5, perceptual_network="teacher", perceptual_blocks=1, finetune_bce_weight=0.0),
        "prompt-loop": {
            **_section(reference, method="prompt-loop", student=str(run / "tinyvit-256" / "student"), refinements=2, box_fraction=0.5, finetune_steps=0),
            "student_kwargs": {},
            "init_from_teacher": False,
            "train": {**reference["train"], "steps": 60, "batch_size": 4, "lr": 5.0e-5, "bf16": False},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="A finished reference run (medkd pipeline --out).")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "reference-cpu.yaml")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    manifest, teacher = args.run / "data.jsonl", args.run / "teacher"
    against = args.run / "teacher-deploy" / "export"
    eval_options = [f"--{key.replace('_', '-')}={value}" for key, value in recipe.options("eval").items()]
    for name, section in methods(recipe.students["tinyvit-256"], args.run).items():
        out = args.run / name / "student"
        if not (out / "manifest.json").is_file():
            section_file = args.run / "recipes" / f"{name}.yaml"
            section_file.parent.mkdir(parents=True, exist_ok=True)
            section_file.write_text(yaml.safe_dump({"description": f"{name} on the reference teacher", "distill": section}))
            line = ["distill", "--recipe", str(section_file), "--data", str(manifest), "--teacher-run", str(teacher), "--out", str(out), "--resume"]
            if medkd(line) != 0:
                raise SystemExit(f"medkd distill ({name}) failed")
        report = args.run / "eval" / f"{name}.json"
        if not report.is_file():
            line = ["eval", "--model", str(out), "--data", str(manifest), "--against", str(against), "--out", str(report), *eval_options]
            if medkd(line) != 0:
                raise SystemExit(f"medkd eval ({name}) failed")
        print(f"{name}: {report}")


if __name__ == "__main__":
    main()
