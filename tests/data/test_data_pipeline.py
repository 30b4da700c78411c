"""Synthetic data, cache, splits, prompts and datasets: all without ../shared."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import medkd.data.loading as loading
from medkd.cli import run
from medkd.data import (
    Preprocessing,
    ArrayCache,
    ObjectDataset,
    RowLoader,
    box_from_mask,
    build_manifest,
    centre_point,
    default_cache_dir,
    geometry_of,
    jitter_box,
    jitter_for,
    load_manifest,
    make_loader,
    make_synthetic,
    sample_points,
    save_manifest,
)
from medkd.data.splits import assign_splits, split_counts
from medkd.errors import BadInput


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    make_synthetic(root, images_2d=6, volumes_3d=3)
    return build_manifest(root, progress=False)


def test_synthetic_data_indexes_in_2d_and_3d(synth):
    assert {n: i["layout"] for n, i in synth.datasets.items()} == {"synth-2d": "paired", "synth-3d": "msd"}
    counts = synth.counts()
    assert sum(c["images"] for c in counts["synth-2d"].values()) == 6
    assert {r.spacing for r in synth.select(datasets=["synth-2d"])} == {(0.5, 0.5)}
    assert {r.spacing for r in synth.select(datasets=["synth-3d"])} == {(1.0, 1.0)}
    assert {r.label for r in synth.rows} <= {1, 2, 3} and synth.skipped == []


def test_synth_cli_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    assert run(["data", "synth", "--out", str(tmp_path / "taken")]) == 2
    assert run(["data", "synth", "--out", str(tmp_path / "new"), "--images", "2", "--volumes", "1"]) == 0
    assert run(["data", "index", str(tmp_path / "new"), "--out", str(tmp_path / "m.jsonl"), "-q"]) == 0
    assert run(["data", "show", str(tmp_path / "m.jsonl")]) == 0
    assert "synth-3d" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_manifest_round_trips_and_moves_with_its_data(synth, tmp_path):
    save_manifest(synth, tmp_path / "m.jsonl")
    loaded = load_manifest(tmp_path / "m.jsonl")
    assert loaded.rows == synth.rows and loaded.datasets == synth.datasets
    assert loaded.split_seed == 0 and loaded.split_fractions == (0.7, 0.15, 0.15)
    moved = tmp_path / "moved"
    os.symlink(synth.root, moved)
    assert load_manifest(tmp_path / "m.jsonl", root=moved).resolve(synth.rows[0].image).is_file()
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:-1]))
    with pytest.raises(BadInput, match="incomplete"):
        load_manifest(tmp_path / "cut.jsonl")
    with pytest.raises(BadInput, match="not found"):
        load_manifest(tmp_path / "m.jsonl", root=tmp_path / "nowhere")


def test_splits_are_fixed_by_seed_and_independent_of_other_subjects():
    subjects = [f"s{i:03d}" for i in range(40)]
    first = assign_splits("d", subjects, seed=1)
    assert first == assign_splits("d", reversed(subjects), seed=1)
    assert first != assign_splits("d", subjects, seed=2)
    fewer = assign_splits("d", subjects[:-1], seed=1)
    assert sum(first[s] != fewer[s] for s in subjects[:-1]) <= 2
    assert [split_counts(n, (0.7, 0.15, 0.15)) for n in (1, 2, 3, 4, 20)] == [
        (1, 0, 0), (1, 0, 1), (1, 1, 1), (2, 1, 1), (14, 3, 3)
    ]


def test_cache_skips_decoding_and_notices_changed_files(synth, tmp_path, monkeypatch):
    calls = []
    real = loading.read_image
    monkeypatch.setattr(loading, "read_image", lambda *a: calls.append(a) or real(*a))
    row = synth.select(datasets=["synth-2d"])[0]
    first = RowLoader(synth, ArrayCache(tmp_path / "cache")).image(row)
    second = RowLoader(synth, ArrayCache(tmp_path / "cache")).image(row)
    assert np.array_equal(first, second) and len(calls) == 1
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    path = synth.resolve(row.image)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    RowLoader(synth, ArrayCache(tmp_path / "cache")).image(row)
    assert len(calls) == 2


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDKD_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "preprocess"
    monkeypatch.delenv("MEDKD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "medkd" / "preprocess"


def test_prompts():
    mask = np.zeros((30, 40), bool)
    mask[5:25, 10:30] = True
    mask[10:20, 15:25] = False
    assert box_from_mask(mask).tolist() == [10, 5, 29, 24]
    x, y = centre_point(mask)[0].astype(int)
    assert mask[y, x]
    rng = np.random.default_rng(0)
    for _ in range(50):
        box = jitter_box(np.array([10.0, 5.0, 29.0, 24.0]), 5, (30, 40), rng)
        assert 5 <= box[0] <= 10 and 0 <= box[1] <= 5 and 29 <= box[2] <= 34 and 24 <= box[3] <= 29
    assert (jitter_for(1024), jitter_for(256)) == (20, 5)
    coords, labels = sample_points(mask, 3, 2, rng, box_from_mask(mask))
    assert labels.tolist() == [1, 1, 1, 0, 0]
    for (px, py), label in zip(coords.astype(int), labels):
        assert mask[py, px] == bool(label) and 10 <= px <= 29 and 5 <= py <= 24
    full = np.ones((4, 4), bool)
    assert sample_points(full, 1, 2, rng, box_from_mask(full))[1].tolist() == [1, -1, -1]


@pytest.mark.parametrize("crop", ["none", "box"])
def test_dataset_items_are_consistent_and_deterministic(synth, crop):
    rows = synth.select("train")
    loader = RowLoader(synth)
    preprocessing = Preprocessing(64, 16, crop=crop)
    dataset = ObjectDataset(rows, loader, preprocessing, train=True, seed=3, points=(2, 1))
    item = dataset[5]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert item["point_coords"].shape == (3, 2) and item["point_labels"].tolist() == [1, 1, 0]
    mask = item["mask"][0].numpy().astype(bool)
    x0, y0, x1, y1 = item["box"].tolist()
    cols, rows_ = np.nonzero(mask.T)
    assert x0 <= cols.min() + 1 and y0 <= rows_.min() + 1 and x1 >= cols.max() - 1 and y1 >= rows_.max() - 1
    again = ObjectDataset(rows, loader, preprocessing, train=True, seed=3, points=(2, 1))[5]
    assert all(torch.equal(item[k], again[k]) for k in item)
    dataset.set_epoch(1)
    assert any(not torch.equal(item[k], dataset[5][k]) for k in ("box", "point_coords", "image"))
    geometry = geometry_of(item, preprocessing)
    back = geometry.mask_to_original(item["mask"][0].to(torch.uint8))
    assert back.shape == tuple(item["original_size"].tolist())


def test_evaluation_items_are_unaugmented_and_batch(synth):
    rows = synth.select("val")
    dataset = ObjectDataset(rows, RowLoader(synth), Preprocessing(64, 16))
    batch = next(iter(make_loader(dataset, batch_size=4, shuffle=True, seed=0)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["point_labels"].shape == (4, 1)
    order = [b["index"].tolist() for b in make_loader(dataset, batch_size=4, shuffle=True, seed=0)]
    assert order == [b["index"].tolist() for b in make_loader(dataset, batch_size=4, shuffle=True, seed=0)]
    item = dataset[0]
    box = np.asarray(rows[0].box, dtype=float)
    from medkd.data import plan_geometry

    expected = plan_geometry((rows[0].height, rows[0].width), 64).boxes_to_model(box[None])[0]
    assert np.allclose(item["box"].numpy(), expected, atol=1e-5)


def test_a_torn_cache_entry_is_recomputed(tmp_path):
    cache = ArrayCache(tmp_path)
    assert cache.get("key", lambda: np.arange(5)).tolist() == [0, 1, 2, 3, 4]
    cache.path_for("key").write_bytes(b"")
    assert cache.get("key", lambda: np.arange(3)).tolist() == [0, 1, 2]
    assert np.load(cache.path_for("key")).tolist() == [0, 1, 2]
