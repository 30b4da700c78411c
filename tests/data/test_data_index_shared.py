"""Indexing the real data in ../shared/data: object counts, splits by subject, portability."""

from __future__ import annotations

import csv
from collections import defaultdict

import nibabel as nib
import numpy as np
import pytest

from medkd.data import build_manifest, load_manifest, save_manifest

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def manifest(shared_data):
    return build_manifest(shared_data, progress=False)


def _images(rows):
    return {r.image_key for r in rows}


def test_every_dataset_is_recognised_with_its_layout_and_modality(manifest):
    layouts = {name: (info["layout"], info["modality"]) for name, info in manifest.datasets.items()}
    assert layouts == {
        "ct-organs": ("sam-med2d", "CT"),
        "fetal-head-us": ("paired", "US"),
        "hippocampus-mri": ("msd", "MR"),
        "nuclei": ("paired", "microscopy"),
    }
    assert manifest.skipped == []


def test_ct_organs_has_30_objects_on_4_images(manifest):
    rows = manifest.select(datasets=["ct-organs"])
    assert len(rows) == 30
    assert len(_images(rows)) == 4
    assert {r.label_name for r in rows} >= {"liver", "spleen", "aorta", "hip_left"}


def test_fetal_head_has_239_images_with_one_object_and_spacing_from_the_csv(manifest, shared_data):
    rows = manifest.select(datasets=["fetal-head-us"])
    assert len(rows) == 239
    assert len(_images(rows)) == 239
    with open(shared_data / "fetal-head-us" / "pixel_size_and_HC.csv", newline="") as handle:
        sizes = {r["filename"]: float(r["pixel size(mm)"]) for r in csv.DictReader(handle)}
    for row in rows:
        name = row.image.rsplit("/", 1)[1]
        assert row.spacing == (sizes[name], sizes[name])


def test_nuclei_has_one_object_per_nucleus_matching_the_csv_total(manifest, shared_data):
    rows = manifest.select(datasets=["nuclei"])
    with open(shared_data / "nuclei" / "manifest.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(_images(rows)) == len(records) == 160
    assert len(rows) == sum(int(r["n_nuclei"]) for r in records)
    per_image = defaultdict(int)
    for row in rows:
        per_image[row.image.rsplit("/", 1)[1].removesuffix(".png")] += 1
    assert per_image == {r["short_id"]: int(r["n_nuclei"]) for r in records}


def test_hippocampus_rows_are_the_slices_where_each_label_appears(manifest, shared_data):
    rows = manifest.select(datasets=["hippocampus-mri"])
    assert len({r.image for r in rows}) == 134
    expected = set()
    for path in sorted((shared_data / "hippocampus-mri" / "labelsTr").glob("*.nii.gz")):
        labels = np.asarray(nib.load(path).dataobj)
        for index in range(labels.shape[2]):
            expected |= {(path.name, index, int(v)) for v in np.unique(labels[:, :, index]) if v != 0}
    assert {(r.mask.rsplit("/", 1)[1], r.slice, r.label) for r in rows} == expected
    assert {r.label for r in rows} == {1, 2}
    assert {r.label_name for r in rows} == {"Anterior", "Posterior"}
    assert {r.axis for r in rows} == {2}
    assert {r.spacing for r in rows} == {(1.0, 1.0)}


def test_boxes_and_areas_match_the_masks(manifest, shared_data):
    from medkd.data import RowLoader, box_from_mask

    loader = RowLoader(manifest)
    for dataset in manifest.datasets:
        for row in manifest.select(datasets=[dataset])[:5]:
            mask = loader.mask(row)
            assert int(mask.sum()) == row.area
            assert tuple(box_from_mask(mask).astype(int)) == row.box


def test_splits_are_by_subject_and_non_empty(manifest):
    for dataset, splits in manifest.counts().items():
        assert set(splits) == {"train", "val", "test"}, dataset
        rows = manifest.select(datasets=[dataset])
        split_of = defaultdict(set)
        for row in rows:
            split_of[row.subject].add(row.split)
        assert all(len(s) == 1 for s in split_of.values()), dataset
    fetal = manifest.select(datasets=["fetal-head-us"])
    subjects = {r.subject for r in fetal}
    assert len(subjects) == 236
    assert {r.subject for r in fetal if r.image.endswith(("/010_HC.png", "/010_2HC.png"))} == {"010"}
    assert {r.subject for r in manifest.select(datasets=["ct-organs"])} == {"amos_0004", "amos_0006", "s0114", "s0619"}


def test_one_dataset_folder_indexes_like_the_root(manifest, shared_data, tmp_path):
    alone = build_manifest(shared_data / "ct-organs", progress=False)
    from_root = manifest.select(datasets=["ct-organs"])
    assert [(r.id, r.split, r.box, r.image) for r in alone.rows] == [
        (r.id, r.split, r.box, r.image.removeprefix("ct-organs/")) for r in from_root
    ]
    save_manifest(alone, tmp_path / "ct.jsonl")
    assert load_manifest(tmp_path / "ct.jsonl").rows == alone.rows
