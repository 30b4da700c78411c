"""Embedded default data: small synthetic 2D and 3D phantoms with masks (MONAI's generators).

``make_synthetic(out)`` writes two datasets in layouts ``medkd data index`` recognises:
``synth-2d`` (``images/`` + ``masks/`` PNG, multi-label, with a pixel-size CSV) and ``synth-3d``
(MSD layout: ``dataset.json``, ``imagesTr`` / ``labelsTr`` NIfTI with anisotropic spacing). The
folder is built beside ``out`` and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data.synthetic import create_test_image_2d, create_test_image_3d
from PIL import Image

from medkd.errors import BadInput

SHAPE_2D = (128, 160)
SHAPE_3D = (48, 40, 24)
SPACING_2D = 0.5
SPACING_3D = (1.0, 1.0, 2.0)
CLASSES = 3


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _write_2d(directory: Path, count: int, seed: int) -> None:
    (directory / "images").mkdir(parents=True)
    (directory / "masks").mkdir()
    rows = ["filename,pixel size(mm)"]
    for index in range(count):
        image, labels = create_test_image_2d(
            *SHAPE_2D, num_objs=5, rad_max=20, rad_min=6, noise_max=0.2,
            num_seg_classes=CLASSES, random_state=np.random.RandomState(seed + index),
        )
        name = f"phantom_{index:03d}"
        Image.fromarray(_to_uint8(image)).save(directory / "images" / f"{name}.png")
        Image.fromarray(labels.astype(np.uint8)).save(directory / "masks" / f"{name}_mask.png")
        rows.append(f"{name}.png,{SPACING_2D}")
    (directory / "pixel_size.csv").write_text("\n".join(rows) + "\n")


def _write_3d(directory: Path, count: int, seed: int) -> None:
    (directory / "imagesTr").mkdir(parents=True)
    (directory / "labelsTr").mkdir()
    affine = np.diag([*SPACING_3D, 1.0])
    training = []
    for index in range(count):
        image, labels = create_test_image_3d(
            *SHAPE_3D, num_objs=4, rad_max=10, rad_min=4, noise_max=0.2,
            num_seg_classes=CLASSES, random_state=np.random.RandomState(10_000 + seed + index),
        )
        name = f"phantom_{index:03d}.nii.gz"
        nib.save(nib.Nifti1Image((image * 1000).astype(np.float32), affine), directory / "imagesTr" / name)
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), directory / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    spec = {
        "name": "synthetic 3D phantoms",
        "description": "MONAI create_test_image_3d spheres with noise, made by medkd data synth",
        "modality": {"0": "synthetic"},
        "labels": {"0": "background", **{str(c): f"class {c}" for c in range(1, CLASSES + 1)}},
        "numTraining": count,
        "training": training,
    }
    (directory / "dataset.json").write_text(json.dumps(spec, indent=1) + "\n")


def make_synthetic(out: str | os.PathLike, images_2d: int = 12, volumes_3d: int = 6, seed: int = 0) -> Path:
    """Write the synthetic datasets into ``out`` (which must not exist or be empty)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out} exists and is not an empty directory")
    if images_2d < 1 or volumes_3d < 1:
        raise BadInput("synthetic data needs at least one 2D image and one volume")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_2d(staging / "synth-2d", images_2d, seed)
        _write_3d(staging / "synth-3d", volumes_3d, seed)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
