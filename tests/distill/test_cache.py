"""Teacher-target cache: fp16 shards, content addressing, verify, crash safety and 2-rank filling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from medkd.distill.embedding_cache import SHARDS, EmbeddingCache
from medkd.distill.teacher_targets import TargetKeys
from medkd.distill.trainer import STATE_FILE, read_log

from medkd.artifacts import read_manifest
from medkd.cli import run
from medkd.data import ArrayCache, Preprocessing, RowLoader, load_manifest
from tests.distill.test_distill_methods import TINY_TINYVIT, tiny_distill_args

WHOLE = Preprocessing(64, 16)
CROPPED = Preprocessing(64, 16, crop="box")


def test_entries_round_trip_in_fp16_shards_and_verify(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, shard_bytes=3000)
    rng = np.random.default_rng(0)
    arrays = {f"{i:064x}": rng.normal(size=(4, 8, 8)).astype(np.float32) for i in range(5)}  # 512 B each in fp16
    writer = cache.writer(rank=0)
    for key, array in arrays.items():
        writer.put(key, array)
    writer.close()
    reopened = EmbeddingCache(tmp_path)
    assert len(reopened) == 5 and len(list((tmp_path / SHARDS).glob("*.json"))) == 1
    for key, array in arrays.items():
        stored = reopened.get(key)
        assert stored.dtype == np.float16 and stored.shape == (4, 8, 8)
        np.testing.assert_array_equal(stored, array.astype(np.float16))
    info = reopened.info()
    assert info["entries"] == 5 and info["entry_bytes"] == 5 * 512 and info["bytes"] > 5 * 512
    assert reopened.verify() == []

    (shard,) = (tmp_path / SHARDS).glob("*.bin")
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert [p for p in reopened.verify() if "does not match" in p] == [f"{shard.name}: content does not match its index (SHA-256 or size)"]


def test_clean_removes_what_a_crash_leaves(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    shards = tmp_path / SHARDS
    shards.mkdir(parents=True)
    (shards / "001-1-abcd.bin").write_bytes(b"\0" * 16)  # data renamed into place, index never written
    (shards / ".001-2-ef01.bin.x.tmp").write_bytes(b"\0" * 8)  # a write cut short
    assert len(cache.verify()) == 2
    assert sorted(p.name for p in cache.clean()) == [".001-2-ef01.bin.x.tmp", "001-1-abcd.bin"]
    assert cache.verify() == [] and list(shards.iterdir()) == []


def test_keys_change_with_the_teacher_and_are_shared_by_objects_of_one_image(synth_manifest_train: Path) -> None:
    manifest = load_manifest(synth_manifest_train)
    rows = manifest.select("train")
    loader = RowLoader(manifest, ArrayCache(None))
    teacher = {"name": "sam-vit-stand-in", "kwargs": {}, "weights_sha256": "a" * 64}
    keys = TargetKeys.compute(rows, loader, teacher, "embedding", WHOLE).keys
    assert keys == TargetKeys.compute(rows, loader, teacher, "embedding", WHOLE).keys
    changed = TargetKeys.compute(rows, loader, {**teacher, "weights_sha256": "b" * 64}, "embedding", WHOLE).keys
    assert not set(keys) & set(changed)
    per_image = {row.image_key: key for row, key in zip(rows, keys)}  # whole-image embeddings: one entry per image
    assert all(per_image[row.image_key] == key for row, key in zip(rows, keys))
    assert len(set(keys)) == len(per_image) < len(rows)
    cropped = TargetKeys.compute(rows, loader, teacher, "embedding", CROPPED).keys
    assert len(set(cropped)) > len(per_image) and not set(cropped) & set(keys)
    logits = TargetKeys.compute(rows, loader, teacher, "logits", CROPPED).keys
    assert not set(logits) & set(cropped)


def _medkd(*args: str) -> list[str]:
    return [sys.executable, "-m", "medkd", *args]


def _kill_when(process: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready() and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_sigkill_during_fill_and_during_training_then_resume(tiny_teacher: Path, synth_manifest_train: Path, tmp_path: Path) -> None:
    out, cache_dir = tmp_path / "student", tmp_path / "cache"
    recipe = tmp_path / "recipe.yaml"  # one teacher image per fill batch, one entry per shard: many commits to cut
    recipe.write_text(json.dumps({"distill": {"teacher": "sam-vit-stand-in", "student": "tinyvit-256", "fill_batch_size": 1}}))
    args = tiny_distill_args("litemedsam", tiny_teacher, synth_manifest_train, out, cache_dir)
    args[args.index("--recipe") + 1] = str(recipe)
    args[args.index("--steps") + 1] = "12"
    args += ["--student-kwargs", TINY_TINYVIT, "--cache-shard-mb", "0.0001", "--val-objects", "0"]
    shards = cache_dir / SHARDS

    process = subprocess.Popen(_medkd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: shards.is_dir() and any(shards.glob("*.json")))
    filled_before = len(EmbeddingCache(cache_dir))
    assert filled_before >= 1

    process = subprocess.Popen(_medkd(*args, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(process, lambda: (out / "kd" / STATE_FILE).exists())
    stats = EmbeddingCache(cache_dir).read_stats()["fill"]
    assert stats["hits"] >= filled_before and stats["hits"] + stats["misses"] == stats["entries"]

    resumed = subprocess.run(_medkd(*args, "--resume"), capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["step"] for r in read_log(out / "kd")] == list(range(1, 13))
    assert read_manifest(out, kind="student").metrics["cache"]["hits"] == stats["entries"]  # nothing recomputed
    assert run(["cache", "verify", "--dir", str(cache_dir)]) == 0
    leftovers = [p.name for p in [*out.rglob("*"), *cache_dir.rglob("*")] if p.name.endswith(".tmp") or p.name == STATE_FILE]
    assert leftovers == []
    assert all(p.with_suffix(".json").exists() for p in shards.glob("*.bin"))


def test_torchrun_two_ranks_fill_one_cache_without_duplicates(tiny_teacher: Path, synth_manifest_train: Path, tmp_path: Path) -> None:
    out, cache_dir = tmp_path / "student", tmp_path / "cache"
    args = tiny_distill_args("litemedsam", tiny_teacher, synth_manifest_train, out, cache_dir)
    args += ["--student-kwargs", TINY_TINYVIT, "--finetune-steps", "0", "--val-objects", "0", "--batch-size", "1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "medkd", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    cache = EmbeddingCache(cache_dir)
    assert cache.verify() == []  # includes: no key stored in two shards
    indexes = [json.loads(p.read_text()) for p in sorted((cache_dir / SHARDS).glob("*.json"))]
    written = [key for index in indexes for key in index["entries"]]
    ranks = {p.name.split("-")[0] for p in (cache_dir / SHARDS).glob("*.json")}
    assert ranks == {"000", "001"} and len(written) == len(set(written)) == len(cache)
    stats = cache.read_stats()["fill"]
    assert stats == {"hits": 0, "misses": len(cache), "entries": len(cache)}
    assert [r["step"] for r in read_log(out / "kd")] == [1, 2, 3]
    assert (out / "manifest.json").exists()
