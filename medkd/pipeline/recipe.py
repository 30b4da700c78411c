"""Pipeline recipes: which stages run, with what settings, validated on load.

A recipe is YAML with these top-level keys (all optional but ``description``):

- ``data``: a data folder, a manifest, or ``synthetic`` (phantoms made by ``medkd data synth``;
  ``synthetic: {images: 12, volumes: 6}`` sets their number).
- ``adapt``: the teacher stage, the section ``medkd adapt --recipe`` reads (``AdaptConfig``).
- ``distill``: one student, the section ``medkd distill --recipe`` reads (``DistillConfig``); or
  ``students``: several, ``{name: section}``, where a section may start from ``recipe: FILE``
  (that file's ``distill`` section) and override keys of it. Without ``adapt``, the distillation
  teacher comes from its ``teacher_checkpoint``. With ``adapt``, the teacher is the adapted one. The
  ``adapt`` section and each student's may also start from ``recipe: FILE`` (relative to the recipe).
- ``ship_teacher``: ``true`` exports, quantizes, evaluates, benchmarks and packs the adapted teacher
  like a student (its own INT8 and bundle), ``false`` (default) evaluates it in PyTorch only.
- ``baselines``: ``{label: model}``, models evaluated beside the run's own (a zoo name such as the
  teacher before adaptation, or an artifact path), with agreement to the teacher.
- ``export``, ``quantize``, ``eval``, ``bench``, ``pack``, ``report``: options of those commands
  (``medkd export onnx`` etc.), by option name; ``quantize: null`` (or ``pack: null`` ...) skips a stage.

Unknown keys, in any section, are refused with a message that names the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medkd.config import from_mapping, load_yaml, merge
from medkd.errors import BadInput
from medkd.pipeline.commands import check_section

COMMAND_SECTIONS: dict[str, tuple[str, ...]] = {
    "export": ("export", "onnx"),
    "quantize": ("quantize",),
    "eval": ("eval",),
    "bench": ("bench", "run"),
    "pack": ("pack",),
    "report": ("report",),
}
TOP_LEVEL = ("description", "data", "synthetic", "adapt", "ship_teacher", "baselines", "distill", "students", *COMMAND_SECTIONS)
RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class PipelineRecipe:
    """A validated recipe; ``source`` is the file it came from."""

    description: str
    source: Path
    data: str | None = None
    synthetic: dict[str, int] = field(default_factory=dict)
    adapt: dict[str, Any] | None = None
    students: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    ship_teacher: bool = False
    baselines: dict[str, str] = field(default_factory=dict)

    def enabled(self, section: str) -> bool:
        return section in COMMAND_SECTIONS and self.commands.get(section, {}) is not None

    def options(self, section: str) -> dict[str, Any]:
        return dict(self.commands.get(section) or {})


def _section(where: str, section: Any, stage: str, base: Path) -> dict[str, Any]:
    """A training section; ``recipe: FILE`` starts it from that file's ``stage`` section."""
    if not isinstance(section, dict):
        raise BadInput(f"{where}: expected a mapping, got {section!r}")
    section = dict(section)
    if "recipe" in section:
        path = Path(section.pop("recipe"))
        inherited = load_yaml(path if path.is_absolute() or path.exists() else base / path).get(stage, {})
        train = merge(inherited.get("train", {}), section.get("train") or {})
        section = {**merge(inherited, section), "train": train}
    return section


def _check_training(section: dict[str, Any], config_class: type, where: str, fills: dict[str, Any]) -> None:
    """Validate a training section the way its command will (``fills`` stand for values the pipeline adds)."""
    values = merge(fills, section)
    values["train"] = dict(section.get("train") or {})
    from_mapping(config_class, values, where=where)


def load_recipe(path: str | Path) -> PipelineRecipe:
    """Read and validate a pipeline recipe (``BadInput`` naming the first bad key)."""
    from medkd.distill.adapt import AdaptConfig
    from medkd.distill.distill import DistillConfig

    path = Path(path)
    raw = load_yaml(path)
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise BadInput(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(TOP_LEVEL)})")
    if not isinstance(raw.get("description"), str):
        raise BadInput(f"{path}: 'description' must be a string")
    if "distill" in raw and "students" in raw:
        raise BadInput(f"{path}: give 'distill' (one student) or 'students', not both")
    students = {"student": raw["distill"]} if "distill" in raw else dict(raw.get("students") or {})
    base = path.parent
    students = {name: _section(f"{path}: students.{name}", section, "distill", base) for name, section in students.items()}
    adapt = None if raw.get("adapt") is None else _section(f"{path}: adapt", raw["adapt"], "adapt", base)
    if adapt is not None:
        _check_training(adapt, AdaptConfig, f"{path}: adapt", {})
    for name, section in students.items():
        _check_training(section, DistillConfig, f"{path}: students.{name}", {"teacher": "", "student": ""})
        if adapt is None and not section.get("teacher"):
            raise BadInput(f"{path}: students.{name} needs a teacher (or add an 'adapt' section)")
    commands = {name: raw.get(name, {}) for name in COMMAND_SECTIONS}
    for name, section in commands.items():
        if section is not None:
            if not isinstance(section, dict):
                raise BadInput(f"{path}: {name}: expected a mapping of options, got {section!r}")
            check_section(COMMAND_SECTIONS[name], section, f"{path}: {name}")
    data = raw.get("data")
    synthetic = raw.get("synthetic") or {}
    if not isinstance(synthetic, dict) or set(synthetic) - {"images", "volumes", "seed"}:
        raise BadInput(f"{path}: synthetic: only images, volumes and seed can be set")
    ship_teacher = raw.get("ship_teacher", False)
    if not isinstance(ship_teacher, bool) or (ship_teacher and adapt is None):
        raise BadInput(f"{path}: ship_teacher must be true or false, and true needs an 'adapt' section")
    baselines = raw.get("baselines") or {}
    if not isinstance(baselines, dict) or not all(isinstance(v, str) for v in baselines.values()):
        raise BadInput(f"{path}: baselines must map labels to model names or paths")
    clashes = sorted(set(baselines) & {"teacher", *students})
    if clashes:
        raise BadInput(f"{path}: baseline label '{clashes[0]}' is already a model of the run")
    return PipelineRecipe(
        raw["description"], path, None if data is None else str(data), synthetic, adapt, students, commands, ship_teacher, baselines
    )


def recipe_file(name: str) -> Path:
    """A recipe shipped in the project's ``recipes/`` folder, by file name."""
    path = RECIPES_DIR / name
    if not path.is_file():
        raise BadInput(f"recipe {name} not found in {RECIPES_DIR} (medkd is installed without its recipes folder)")
    return path
