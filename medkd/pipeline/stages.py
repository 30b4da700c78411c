"""The stages of a run, in order, as ``medkd`` command lines over one run directory.

Layout of a run ``RUN``::

    RUN/synthetic/            phantoms (data: synthetic)
    RUN/data.jsonl            data manifest
    RUN/recipes/*.yaml        the training sections, as the training commands read them
    RUN/teacher/              adapted teacher (adapt)
    RUN/teacher-deploy/{export,int8}/   the teacher's ONNX and INT8, with ``ship_teacher: true``
    RUN/<student>/student/    student artifact (distill); student/kd/ is the distillation-alone phase
    RUN/<student>/export/     ONNX encoder + decoder (export)
    RUN/<student>/int8/       INT8 Q/DQ ONNX (quantize)
    RUN/eval/<model>.json     test metrics (eval): with export on, of what ships (<model>-export, <model>-int8),
                              else of the PyTorch models; baselines; <student>-kd, the distillation-alone phase
    RUN/bench/<model>.json    latency (bench)
    RUN/<student>.medkd       vendor bundle of RUN/<student> (pack; RUN/teacher.medkd with ship_teacher)
    RUN/report.html           report
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medkd.artifacts import atomic_write_text
from medkd.pipeline.commands import command_line
from medkd.pipeline.recipe import COMMAND_SECTIONS, PipelineRecipe

KINDS = ("synth", "data", "adapt", "distill", "export", "quantize", "eval", "bench", "pack", "report")


@dataclass
class Stage:
    """One command of the run: what it reads (pins its inputs by hash), what it writes."""

    name: str
    kind: str
    line: list[str]
    output: Path
    inputs: list[Path] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    resumable: bool = False


def _write_section(run: Path, name: str, stage: str, section: dict[str, Any]) -> Path:
    """The training section as a one-stage recipe file (what ``--recipe`` reads), rewritten only on change."""
    path = run / "recipes" / f"{name}.yaml"
    text = yaml.safe_dump({"description": f"{stage} section of the pipeline recipe", stage: section}, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return path


def _command(kind: str, name: str, arguments: list[str], options: dict[str, Any], output: Path, inputs: list[Path]) -> Stage:
    line = command_line(COMMAND_SECTIONS[kind], arguments, options)
    return Stage(name, kind, line, output, inputs, options)


def _model_of(stage_name: str) -> str:
    """The model an eval / bench stage measures: ``eval:unet-int8`` -> ``unet``."""
    label = stage_name.split(":", 1)[1]
    return label.removesuffix("-export").removesuffix("-int8")


def plan(recipe: PipelineRecipe, run: Path, data: str | None) -> list[Stage]:
    """Every stage of ``recipe`` over ``run``, in execution order (``data`` overrides the recipe's)."""
    stages: list[Stage] = []
    source = data or recipe.data or "synthetic"
    manifest = run / "data.jsonl"
    if source == "synthetic":
        folder = run / "synthetic"
        synth = {key: str(value) for key, value in recipe.synthetic.items()}
        line = ["data", "synth", "--out", str(folder)] + [item for key, value in synth.items() for item in (f"--{key}", value)]
        stages.append(Stage("synth", "synth", line, folder, [], synth))
        source = str(folder)
    if source.endswith(".jsonl"):
        manifest = Path(source)
    else:
        stages.append(Stage("data", "data", ["data", "index", source, "--out", str(manifest), "--quiet"], manifest, [Path(source)]))

    teacher: list[str] = []
    teacher_inputs: list[Path] = []
    if recipe.adapt is not None:
        section = _write_section(run, "teacher", "adapt", recipe.adapt)
        line = ["adapt", "--recipe", str(section), "--data", str(manifest), "--out", str(run / "teacher"), "--resume"]
        stages.append(Stage("adapt", "adapt", line, run / "teacher", [manifest, section], recipe.adapt, resumable=True))
        teacher, teacher_inputs = ["--teacher-run", str(run / "teacher")], [run / "teacher"]

    for name, section in recipe.students.items():
        recipe_path = _write_section(run, name, "distill", section)
        student = run / name / "student"
        line = ["distill", "--recipe", str(recipe_path), "--data", str(manifest), "--out", str(student), *teacher, "--resume"]
        stages.append(Stage(f"distill:{name}", "distill", line, student, [manifest, recipe_path, *teacher_inputs], section, resumable=True))

    # What ships is what is evaluated: with export on, a deployable model is evaluated as its ONNX
    # export and INT8 (the export is validated against PyTorch), and the teacher as evaluated is the
    # reference of everyone's agreement; the distillation-alone phase and baselines run in PyTorch.
    exporting = recipe.enabled("export")
    deployable: dict[str, tuple[Path, Path]] = {}  # name -> (model artifact, folder of its export and INT8)
    if recipe.adapt is not None and recipe.ship_teacher:
        deployable["teacher"] = (run / "teacher", run / "teacher-deploy")
    for name in recipe.students:
        deployable[name] = (run / name / "student", run / name)
    evaluated: dict[str, Path | str] = {}
    if recipe.adapt is not None and not (exporting and "teacher" in deployable):
        evaluated["teacher"] = run / "teacher"
    for name, (model, folder) in deployable.items():
        if not exporting:
            evaluated[name] = model
            continue
        export = folder / "export"
        options = {"data": str(manifest), **recipe.options("export")}
        stages.append(_command("export", f"export:{name}", [str(model), "--out", str(export)], options, export, [model, manifest]))
        evaluated[f"{name}-export"] = export
        if recipe.enabled("quantize"):
            quant = folder / "int8"
            options = {"calib": str(manifest), **recipe.options("quantize")}
            stages.append(_command("quantize", f"quantize:{name}", [str(export), "--out", str(quant)], options, quant, [export, manifest]))
            evaluated[f"{name}-int8"] = quant
    evaluated.update(recipe.baselines)
    for name, section in recipe.students.items():
        if int(section.get("finetune_steps") or 0) > 0:
            evaluated[f"{name}-kd"] = run / name / "student" / "kd"

    if recipe.enabled("eval"):
        reference = next((label for label in ("teacher", "teacher-export") if label in evaluated), None)
        for label, model in sorted(evaluated.items(), key=lambda item: item[0] != reference):
            output = run / "eval" / f"{label}.json"
            options = {"model": str(model), "data": str(manifest), "out": str(output), **recipe.options("eval")}
            inputs = [model, manifest] if isinstance(model, Path) else [manifest]
            if reference is not None and label != reference:  # agreement with the teacher's masks
                options["against"] = str(evaluated[reference])
                inputs.append(evaluated[reference])  # type: ignore[arg-type]
            stages.append(_command("eval", f"eval:{label}", [], options, output, inputs))
    if recipe.enabled("bench"):
        for label, model in evaluated.items():
            if not label.endswith(("-export", "-int8")):
                continue
            output = run / "bench" / f"{label}.json"
            # ONNX Runtime for FP32 and INT8 alike: a quantized graph may keep everything in float (when
            # the DSC gate reverts every block), which the ort-int8 backend refuses.
            options = {"backend": "ort", "out": str(output), **recipe.options("bench")}
            stages.append(_command("bench", f"bench:{label}", [str(model)], options, output, [model]))  # type: ignore[list-item]
    if recipe.enabled("pack") and recipe.enabled("export"):
        for name, (_, folder) in deployable.items():
            reports = [stage.output for stage in stages if stage.kind in ("eval", "bench") and _model_of(stage.name) == name]
            bundle = run / f"{name}.medkd"
            options = {"out": str(bundle), "report": [str(path) for path in reports], **recipe.options("pack")}
            inputs = [stage.output for stage in stages if stage.output.parent == folder]
            stages.append(_command("pack", f"pack:{name}", [str(folder)], options, bundle, [*inputs, *reports]))
    if recipe.enabled("report"):
        output = run / "report.html"
        options = {"out": str(output), **recipe.options("report")}
        inputs = [stage.output for stage in stages if stage.kind in ("adapt", "distill", "quantize", "eval", "bench")]
        stages.append(_command("report", "report", [str(run)], options, output, inputs))
    return stages
