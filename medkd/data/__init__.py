"""Medical data: readers, dataset indexing into manifests, MedSAM preprocessing, prompts, datasets.

Conventions every stage relies on:

- A manifest row is one object: ``mask == label`` on a 2D image or on slice ``slice`` of a volume.
  NIfTI volumes are sliced along array axis 2 unless ``axis`` says otherwise (DICOM series and NPZ
  volumes along their stacking axis 0). Boxes are x0, y0, x1, y1 in original pixels, ends inclusive.
- Splits are by subject, fixed by a seed (:mod:`medkd.data.splits`).
- Images are normalised as MedSAM does (:mod:`medkd.data.intensity`), then mapped into the model
  input exactly as ``SamPredictor`` does (:mod:`medkd.data.geometry`), so a model trained on these
  inputs runs in ``SamPredictor`` unchanged when given the uint8 image of ``RowLoader.image``.
- ``crop="box"`` (a window of twice the box's longer side, at least 64 px) keeps small structures
  visible at 256 px; its inverse pastes the prediction back into the original frame.
- :class:`Preprocessing` is all of that as one value, recorded with every model artifact.

Typical use::

    manifest = load_manifest("data.jsonl")
    loader = RowLoader(manifest, ArrayCache(default_cache_dir()))
    preprocessing = Preprocessing(input_size=256, mask_size=64, crop="box")
    dataset = ObjectDataset(manifest.select("train"), loader, preprocessing, train=True)
"""

from medkd.data.cache import ArrayCache, default_cache_dir
from medkd.data.datasets import ObjectDataset, geometry_of, make_loader
from medkd.data.preprocessing import Preprocessing, PreprocessingWarning
from medkd.data.geometry import (
    PIXEL_MEAN,
    PIXEL_STD,
    Geometry,
    crop_region,
    plan_geometry,
)
from medkd.data.index import build_manifest
from medkd.data.intensity import normalize_intensity, to_rgb
from medkd.data.loading import RowLoader
from medkd.data.manifest import DataManifest, ManifestRow, load_manifest, save_manifest
from medkd.data.prompts import (
    box_from_mask,
    box_mask,
    centre_point,
    jitter_box,
    jitter_for,
    sample_points,
)
from medkd.data.readers import Decoded, ReadError, read_image, read_mask
from medkd.data.synth import make_synthetic

__all__ = [
    "PIXEL_MEAN",
    "Preprocessing",
    "PreprocessingWarning",
    "PIXEL_STD",
    "ArrayCache",
    "DataManifest",
    "Decoded",
    "Geometry",
    "ManifestRow",
    "ObjectDataset",
    "ReadError",
    "RowLoader",
    "box_from_mask",
    "box_mask",
    "build_manifest",
    "centre_point",
    "crop_region",
    "default_cache_dir",
    "geometry_of",
    "jitter_box",
    "jitter_for",
    "load_manifest",
    "make_loader",
    "make_synthetic",
    "normalize_intensity",
    "plan_geometry",
    "read_image",
    "read_mask",
    "sample_points",
    "save_manifest",
    "to_rgb",
]
