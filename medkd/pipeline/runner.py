"""Run a pipeline's stages in order, skipping what is already done and resuming what was interrupted.

A stage's fingerprint is the hash of its command line and of the content of its inputs (files by
SHA-256, artifact directories by the SHA-256 of their manifest, which lists their files' hashes).
``RUN/pipeline.json`` records each stage's fingerprint when it starts and when it finishes. A stage is
skipped when it finished with the fingerprint it has now and its output is still complete; a stage that
started with this fingerprint but never finished resumes (training stages continue from their last
checkpoint); any other stage starts afresh on an emptied output. A re-run stage writes a new manifest,
so every stage after it sees a changed input and runs again, while stages before it stay skipped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from medkd.artifacts import MANIFEST_NAME, atomic_write_json, sha256_file
from medkd.errors import BadInput
from medkd.pipeline.commands import run_command
from medkd.pipeline.stages import Stage

STATE_FILE = "pipeline.json"


def content_digest(path: Path) -> str | None:
    """SHA-256 of a file, of an artifact's manifest, or of a folder's file listing; ``None`` if absent."""
    if path.is_file():
        return sha256_file(path)
    if (path / MANIFEST_NAME).is_file():
        return sha256_file(path / MANIFEST_NAME)
    if path.is_dir():
        listing = sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return None


def fingerprint(stage: Stage) -> str:
    description = {"line": stage.line, "inputs": {str(p): content_digest(p) for p in stage.inputs}}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def complete(stage: Stage) -> bool:
    """Whether the stage's output is all there (an artifact directory needs its manifest, written last)."""
    output = stage.output
    if stage.kind in ("synth", "data", "eval", "bench", "pack", "report"):
        return output.is_file() or (stage.kind == "synth" and output.is_dir() and any(output.iterdir()))
    return (output / MANIFEST_NAME).is_file()


@dataclass
class StageResult:
    name: str
    status: str  # "skipped" | "ran" | "resumed"
    seconds: float


class PipelineRunner:
    """Runs ``stages`` over the run directory ``run`` and keeps ``RUN/pipeline.json`` up to date."""

    def __init__(self, stages: list[Stage], run: Path, recipe: Path, console: Console | None = None) -> None:
        self.stages, self.run, self.recipe = stages, run, recipe
        self.console = console or Console(stderr=True)
        self.state_path = run / STATE_FILE
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.state.setdefault("stages", {})

    def selected(self, start: str | None, only: str | None) -> tuple[set[str], set[str]]:
        """(stages to consider, stages forced to run) for ``--from`` / ``--only`` (a name or a kind)."""
        names = [stage.name for stage in self.stages]
        wanted = start or only
        if wanted is None:
            return set(names), set()
        matching = [stage.name for stage in self.stages if wanted in (stage.name, stage.kind)]
        if not matching:
            raise BadInput(f"no stage '{wanted}' in this recipe (stages: {', '.join(names)})")
        if only:
            return set(matching), set(matching)
        later = set(names[names.index(matching[0]) :])
        return later, later

    def run_all(self, start: str | None = None, only: str | None = None) -> list[StageResult]:
        considered, forced = self.selected(start, only)
        self.run.mkdir(parents=True, exist_ok=True)
        self.state["recipe"] = {"path": str(self.recipe), "sha256": sha256_file(self.recipe)}
        results = []
        for index, stage in enumerate(self.stages, 1):
            label = f"[{index}/{len(self.stages)}] {stage.name}"
            if stage.name not in considered:
                if not complete(stage):
                    raise BadInput(f"stage {stage.name} has not run yet: run the pipeline without --from / --only first")
                continue
            results.append(self._stage(stage, label, stage.name in forced))
        return results

    def _stage(self, stage: Stage, label: str, force: bool) -> StageResult:
        missing = [str(path) for path in stage.inputs if not path.exists()]
        if missing:
            raise BadInput(f"stage {stage.name} lacks its input {missing[0]}")
        current = fingerprint(stage)
        record = self.state["stages"].get(stage.name, {})
        if not force and record.get("finished") and record.get("fingerprint") == current and complete(stage):
            self.console.print(f"{label}: [green]unchanged, skipped[/]")
            return StageResult(stage.name, "skipped", 0.0)
        resuming = stage.resumable and not force and record.get("fingerprint") == current and not record.get("finished")
        if not resuming:
            _clear(stage.output)
        self._record(stage.name, {"fingerprint": current, "finished": False, "line": stage.line})
        self.console.print(f"{label}: [cyan]{'resuming' if resuming else 'running'}[/]  medkd {' '.join(stage.line)}")
        started = time.monotonic()
        run_command(stage.line)
        seconds = round(time.monotonic() - started, 1)
        if not complete(stage):
            raise BadInput(f"stage {stage.name} finished without writing {stage.output}")
        self._record(stage.name, {"fingerprint": fingerprint(stage), "finished": True, "seconds": seconds, "line": stage.line})
        self.console.print(f"{label}: [green]done[/] in {seconds:.1f} s")
        return StageResult(stage.name, "resumed" if resuming else "ran", seconds)

    def _record(self, name: str, entry: dict[str, Any]) -> None:
        self.state["stages"][name] = entry
        atomic_write_json(self.state_path, self.state)


def _clear(output: Path) -> None:
    if output.is_dir():
        shutil.rmtree(output)
    elif output.exists():
        output.unlink()
