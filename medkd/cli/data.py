"""``medkd data``: index dataset folders into a manifest, make synthetic phantoms, show a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from medkd.cli.output import stdout_console
from medkd.cli.vocabulary import hidden_alias, one_of, out_option
from medkd.data.readers import DEFAULT_AXIS
from medkd.data.splits import DEFAULT_SEED
from medkd.errors import BadInput

if TYPE_CHECKING:
    from medkd.data.manifest import DataManifest

app = typer.Typer(help="Index medical datasets into manifests; synthetic phantoms; inspect manifests.", no_args_is_help=True)


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise BadInput(f"--fractions must be three comma-separated numbers, not '{text}'") from None
    if len(values) != 3:
        raise BadInput(f"--fractions must be three comma-separated numbers, not '{text}'")
    return values  # type: ignore[return-value]


def _modalities(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, modality = pair.partition("=")
        if not sep or not name or not modality:
            raise BadInput(f"--modality takes DATASET=MODALITY, not '{pair}'")
        parsed[name] = modality
    return parsed


def _print_summary(manifest: DataManifest, show_skipped: bool) -> None:
    from medkd.data.manifest import SPLITS

    console = stdout_console()
    table = Table(title=f"{len(manifest.rows)} objects, split seed {manifest.split_seed}")
    for column in ("dataset", "layout", "modality", "split", "subjects", "images", "objects"):
        table.add_column(column, justify="right" if column in ("subjects", "images", "objects") else "left")
    for dataset, splits in manifest.counts().items():
        info = manifest.datasets[dataset]
        for split in (s for s in SPLITS if s in splits):
            counts = splits[split]
            table.add_row(dataset, info["layout"], info["modality"], split, *(str(counts[k]) for k in ("subjects", "images", "objects")))
    console.print(table)
    if manifest.skipped:
        console.print(f"skipped {len(manifest.skipped)} file(s)" + (":" if show_skipped else " (--skipped lists them)"))
        if show_skipped:
            for entry in manifest.skipped:
                console.print(f"  {entry['path']}: {entry['reason']}", highlight=False, markup=False)


@app.command()
def index(
    directory: Path = typer.Argument(..., help="A dataset folder, or a folder of dataset folders."),
    out: Path = out_option("Manifest to write (JSON Lines)."),
    seed: int = typer.Option(DEFAULT_SEED, help="Seed of the subject-level split."),
    fractions: str = typer.Option("0.7,0.15,0.15", "--fractions", help="Train, val, test fractions of subjects."),
    axis: int = typer.Option(DEFAULT_AXIS, help="NIfTI array axis that volumes are sliced along."),
    modality: list[str] = typer.Option(None, "--modality", help="DATASET=MODALITY override (repeatable)."),
    subject_pattern: str = typer.Option(None, help="Regex whose first group is the subject id of an image stem."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    split: str = hidden_alias("--split"),
) -> None:
    """Index images and masks into one row per object, with subject-level train / val / test splits."""
    from medkd.data import build_manifest, save_manifest

    manifest = build_manifest(
        directory,
        seed=seed,
        fractions=_fractions(split if split is not None else fractions),  # --split: the old spelling
        axis=axis,
        modalities=_modalities(modality or []),
        subject_pattern=subject_pattern,
        progress=not quiet,
    )
    save_manifest(manifest, out)
    _print_summary(manifest, show_skipped=True)
    typer.echo(f"wrote {out}")


@app.command()
def synth(
    out: Path = out_option("Folder to create (must not exist or be empty)."),
    images: int = typer.Option(12, min=1, help="Number of 2D phantoms."),
    volumes: int = typer.Option(6, min=1, help="Number of 3D phantoms."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Make small synthetic 2D and 3D phantoms with masks, indexable like any dataset."""
    from medkd.data import make_synthetic

    make_synthetic(out, images, volumes, seed)
    typer.echo(f"wrote {out} (index it with: medkd data index {out} --out MANIFEST)")


@app.command()
def show(
    manifest: Path = typer.Argument(..., help="Manifest made by 'medkd data index'."),
    data_root: Path = typer.Option(None, "--data-root", help="Where the data lives now, if it moved since indexing."),
    skipped: bool = typer.Option(False, "--skipped", help="List skipped files with reasons."),
    root: Path = hidden_alias("--root"),
) -> None:
    """Summarise a manifest: subjects, images and objects per dataset and split."""
    from medkd.data import load_manifest

    _print_summary(load_manifest(manifest, one_of("--data-root", data_root, root, "--root", required=False)), show_skipped=skipped)
