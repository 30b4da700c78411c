"""``medkd pipeline``: recipe validation, skipping unchanged stages, re-running from a deleted artifact."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from medkd.errors import BadInput
from medkd.pipeline.recipe import load_recipe, recipe_file
from medkd.pipeline.runner import STATE_FILE, PipelineRunner
from medkd.pipeline.stages import plan
from tests.conftest import TINY_STAND_IN, TINY_UNET

TINY_TRAIN = {"steps": 2, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "warmup_steps": 1}
TINY_RECIPE = {
    "description": "tiny pipeline on phantoms",
    "data": "synthetic",
    "synthetic": {"images": 6, "volumes": 2},
    "adapt": {"teacher": "sam-vit-stand-in", "model_kwargs": TINY_STAND_IN, "val_objects": 2, "train": TINY_TRAIN},
    "students": {
        "unet": {"student": "unet", "method": "sam2unet", "student_kwargs": TINY_UNET, "val_objects": 2, "train": TINY_TRAIN},
    },
    "export": {},
    "quantize": None,
    "eval": {"split": "test", "limit": 2},
    "bench": None,
    "pack": None,
    "report": None,
}


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_pipeline(recipe_path: Path, run: Path, **selection: str | None):
    recipe = load_recipe(recipe_path)
    return PipelineRunner(plan(recipe, run, None), run, recipe_path).run_all(selection.get("start"), selection.get("only"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"trainer": {}}, "'trainer'"),
        ({"adapt": {"teacher": "sam-vit-stand-in", "lr": 1.0}}, "'lr'"),
        ({"export": {"opset_version": 17}}, "'opset_version'"),
        ({"students": {"s": {"student": "unet", "method": "sam2unet", "tempreature": 2.0}}}, "'tempreature'"),
        ({"adapt": None, "students": {"s": {"student": "unet", "method": "sam2unet"}}}, "needs a teacher"),
    ],
)
def test_recipe_errors_name_the_bad_key(tmp_path: Path, change: dict, named: str) -> None:
    with pytest.raises(BadInput, match=named):
        load_recipe(write_recipe(tmp_path / "r.yaml", {**TINY_RECIPE, **change}))


@pytest.mark.parametrize(
    "name", ["demo.yaml", "reference-cpu.yaml", "litemedsam.yaml", "sam2unet.yaml", "mobilesam.yaml", "kd-sam.yaml", "edgesam.yaml"]
)
def test_shipped_recipes_load(name: str) -> None:
    recipe = load_recipe(recipe_file(name))
    assert recipe.students, name


def test_reference_recipe_plans_every_stage(tmp_path: Path) -> None:
    stages = plan(load_recipe(recipe_file("reference-cpu.yaml")), tmp_path, "../data")
    kinds = [stage.kind for stage in stages]
    assert kinds[:5] == ["data", "adapt", "distill", "distill", "distill"]
    assert {"export", "quantize", "eval", "pack", "report"} <= set(kinds)
    assert "bench" not in kinds  # encoders are timed side by side after the run (benchmarks/reference_speed.py)
    assert kinds.index("report") == len(kinds) - 1
    adapt = next(stage for stage in stages if stage.kind == "adapt")
    assert (adapt.settings["teacher"], adapt.settings["method"]) == ("litemedsam", "decoder")  # the real teacher
    tinyvit = next(stage for stage in stages if stage.name == "distill:tinyvit-256")
    assert tinyvit.settings["student_kwargs"] == {"trunk_grid": 16} and tinyvit.settings["train"]["steps"] > 0
    names = {stage.name for stage in stages}
    # the teacher ships too; what ships is what is evaluated; the published model is the baseline
    assert {"export:teacher", "quantize:teacher", "pack:teacher", "eval:teacher-export", "eval:teacher-int8"} <= names
    assert {"eval:litemedsam-zero-shot", "eval:tinyvit-256-kd", "eval:tinyvit-256-int8"} <= names and "eval:teacher" not in names
    evals = [stage for stage in stages if stage.kind == "eval"]
    assert evals[0].name == "eval:teacher-export" and "--against" not in evals[0].line  # the reference comes first
    assert all(stage.line[stage.line.index("--against") + 1] == str(tmp_path / "teacher-deploy" / "export") for stage in evals[1:])
    zero_shot = next(stage for stage in evals if stage.name == "eval:litemedsam-zero-shot")
    assert zero_shot.line[zero_shot.line.index("--model") + 1] == "litemedsam"


def test_baselines_and_ship_teacher_are_checked(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="needs an 'adapt' section"):
        students = {"unet": {**TINY_RECIPE["students"]["unet"], "teacher": "sam-vit-stand-in"}}
        load_recipe(write_recipe(tmp_path / "r.yaml", {**TINY_RECIPE, "adapt": None, "students": students, "ship_teacher": True}))
    with pytest.raises(BadInput, match="already a model of the run"):
        load_recipe(write_recipe(tmp_path / "r.yaml", {**TINY_RECIPE, "baselines": {"unet": "litemedsam"}}))


@pytest.mark.slow
def test_rerun_skips_and_a_deleted_artifact_reruns_it_and_what_follows(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path / "tiny.yaml", TINY_RECIPE)
    run = tmp_path / "run"
    first = run_pipeline(recipe_path, run)
    names = [result.name for result in first]
    assert names == ["synth", "data", "adapt", "distill:unet", "export:unet", "eval:teacher", "eval:unet-export"]  # what ships is evaluated
    assert all(result.status == "ran" for result in first)
    report = json.loads((run / "eval" / "unet-export.json").read_text())
    assert report["config"]["against"]["source"] == str(run / "teacher")

    assert all(result.status == "skipped" for result in run_pipeline(recipe_path, run))

    shutil.rmtree(run / "unet" / "export")
    time.sleep(1.1)  # manifests time-stamp to the second: a re-export within the same second is byte-identical, and rightly changes nothing after it
    statuses = {result.name: result.status for result in run_pipeline(recipe_path, run)}
    assert [name for name, status in statuses.items() if status == "ran"] == ["export:unet", "eval:unet-export"]

    changed = {**TINY_RECIPE, "eval": {"split": "test", "limit": 1}}
    statuses = {result.name: result.status for result in run_pipeline(write_recipe(recipe_path, changed), run)}
    assert [name for name, status in statuses.items() if status == "ran"] == ["eval:teacher", "eval:unet-export"]

    only = run_pipeline(recipe_path, run, only="export")
    assert [(r.name, r.status) for r in only] == [("export:unet", "ran")]
    state = json.loads((run / STATE_FILE).read_text())
    assert all(entry["finished"] for entry in state["stages"].values())


def test_from_refuses_a_run_whose_earlier_stages_are_missing(tmp_path: Path) -> None:
    recipe_path = write_recipe(tmp_path / "tiny.yaml", TINY_RECIPE)
    with pytest.raises(BadInput, match="has not run yet"):
        run_pipeline(recipe_path, tmp_path / "run", start="export")
    with pytest.raises(BadInput, match="no stage 'nonsense'"):
        run_pipeline(recipe_path, tmp_path / "run", start="nonsense")
