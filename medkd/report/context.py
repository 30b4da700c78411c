"""What a run's figures mean, in words: the data, the teacher and how long each model trained.

A reader of a report must not mistake the demo's phantoms for medical data or a student trained for
seconds for a finished model; this section says which they are, from the run's own records (the
pipeline's recipe, the teacher's and students' manifests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medkd.artifacts import read_manifest
from medkd.errors import BadInput
from medkd.pipeline.recipe import load_recipe
from medkd.zoo import get_spec


def _trained(config: dict[str, Any], metrics: dict[str, Any]) -> str:
    train = config.get("train", {})
    seconds = metrics.get("train_seconds_this_session")
    total = sum(seconds.values()) if isinstance(seconds, dict) else seconds
    items = metrics.get("train_items")
    spent = f", {total / 60:.1f} min of training" if isinstance(total, (int, float)) and total else ""
    return f"{train.get('steps')} steps of {train.get('batch_size')} on {items} training objects{spent}"


def _teacher(run: Path) -> str | None:
    if not (run / "teacher" / "manifest.json").is_file():
        return None
    manifest = read_manifest(run / "teacher")
    adapt = manifest.config.get("adapt", {})
    spec = get_spec(adapt.get("teacher", manifest.config["model"]["name"]))
    origin = "its published weights" if spec.packaged else "random initialisation" if not adapt.get("checkpoint") else adapt["checkpoint"]
    return f"Teacher: {spec.name} ({spec.description}), from {origin}, adapted by '{adapt.get('method')}' for {_trained(adapt, manifest.metrics)}."


def _students(run: Path) -> list[str]:
    lines = []
    for path in sorted(run.glob("*/student/manifest.json")):
        manifest = read_manifest(path.parent)
        distill = manifest.config.get("distill", {})
        lines.append(f"Student {path.parent.parent.name}: {distill.get('student')} by '{distill.get('method')}', {_trained(distill, manifest.metrics)}.")
    return lines


def run_context(run: Path) -> list[str]:
    """Sentences about the run's data and training; empty for a directory that no pipeline made."""
    state_path = run / "pipeline.json"
    if not state_path.is_file():
        return []
    state = json.loads(state_path.read_text())
    recipe_path = Path(state.get("recipe", {}).get("path", ""))
    try:
        recipe = load_recipe(recipe_path)
    except (BadInput, OSError):
        return [f"Made by medkd pipeline from {recipe_path.name or 'an unknown recipe'}, which is no longer readable here."]
    sentences = [f"Recipe {recipe_path.name}: {recipe.description}."]
    if (run / "synthetic").is_dir():
        sentences.append(
            "The data are synthetic phantoms (medkd data synth), not medical images: the accuracy figures show that "
            "the stages work together and agree with each other, not what the models can do on patients. "
            "For that, run the reference recipe on the real data (medkd demo --data ../shared/data)."
        )
    else:
        sentences.append(f"The data are those of {recipe.data or 'the manifest given to the pipeline'}, split by subject.")
    teacher = _teacher(run)
    return sentences + ([teacher] if teacher else []) + _students(run)
