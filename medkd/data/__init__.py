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

The names below are imported on first use: reading an image needs neither torch nor MONAI.
"""

from medkd.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "ArrayCache": "medkd.data.cache",
        "default_cache_dir": "medkd.data.cache",
        "ObjectDataset": "medkd.data.datasets",
        "geometry_of": "medkd.data.datasets",
        "make_loader": "medkd.data.datasets",
        "Preprocessing": "medkd.data.preprocessing",
        "PreprocessingWarning": "medkd.data.preprocessing",
        "PIXEL_MEAN": "medkd.data.geometry",
        "PIXEL_STD": "medkd.data.geometry",
        "Geometry": "medkd.data.geometry",
        "crop_region": "medkd.data.geometry",
        "plan_geometry": "medkd.data.geometry",
        "build_manifest": "medkd.data.index",
        "normalize_intensity": "medkd.data.intensity",
        "to_rgb": "medkd.data.intensity",
        "RowLoader": "medkd.data.loading",
        "DataManifest": "medkd.data.manifest",
        "ManifestRow": "medkd.data.manifest",
        "load_manifest": "medkd.data.manifest",
        "save_manifest": "medkd.data.manifest",
        "box_from_mask": "medkd.data.prompts",
        "box_mask": "medkd.data.prompts",
        "centre_point": "medkd.data.prompts",
        "jitter_box": "medkd.data.prompts",
        "jitter_for": "medkd.data.prompts",
        "sample_points": "medkd.data.prompts",
        "Decoded": "medkd.data.readers",
        "ReadError": "medkd.data.readers",
        "read_image": "medkd.data.readers",
        "read_mask": "medkd.data.readers",
        "make_synthetic": "medkd.data.synth",
    },
)
