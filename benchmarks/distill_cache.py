"""Epoch time of decoupled distillation with the teacher-embedding cache against the teacher run online.

    python benchmarks/distill_cache.py                # sam-vit-b (1024 px) -> both students, 3 real images
    python benchmarks/distill_cache.py --images 8
    python benchmarks/distill_cache.py --teacher sam-vit-h --out benchmarks/results/distill_cache_vit_h.json

Teacher ``sam-vit-b`` (``--teacher``; random weights: the cost does not depend on them) at 1024 px, 64 x 64
embeddings.
Two students, side by side in one run: ``tinyvit`` (MobileSAM's vit_t, 1024 px in) and ``tinyvit-256``
with ``embedding_grid=64`` (LiteMedSAM's layout: 256 px in, the teacher's 64 x 64 grid out). One epoch =
every image once, batch 1, fp32. Online: teacher forward + student step per image. Cached: the cache is
filled once (timed: it costs one online pass of the teacher), then every epoch reads fp16 embeddings
from the shards + student step. Reported separately: the time to provide the teacher targets for an
epoch (teacher forward vs cache read) and the whole epoch with the student's forward, backward and AdamW
step, which the cache cannot remove: the epoch speed-up is bounded by 1 + teacher forward / student step,
recorded as ``speedup_bound``.
Writes ``benchmarks/results/distill_cache.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medkd.distill.distributed import World  # noqa: E402
from medkd.distill.embedding_cache import EmbeddingCache  # noqa: E402
from medkd.distill.teacher_targets import TargetKeys, fill_cache, teacher_identity  # noqa: E402

from medkd.artifacts import atomic_write_json, software_versions  # noqa: E402
from medkd.data import ArrayCache, ObjectDataset, RowLoader, build_manifest  # noqa: E402
from medkd.zoo import create_model, default_preprocessing  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "distill_cache.json"


def _student_step(student: torch.nn.Module, optimizer: torch.optim.Optimizer, image: torch.Tensor, target: torch.Tensor) -> float:
    started = time.perf_counter()
    loss = F.mse_loss(student.image_encoder(image), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - started


STUDENTS = {"tinyvit": {}, "tinyvit-256": {"embedding_grid": 64}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MEDKD_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--teacher", default="sam-vit-b", choices=("sam-vit-b", "sam-vit-l", "sam-vit-h"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.manual_seed(0)
    manifest = build_manifest(args.data / "fetal-head-us", progress=False)
    rows = manifest.select("train")[: args.images]
    loader = RowLoader(manifest, ArrayCache(None))
    teacher = create_model(args.teacher).requires_grad_(False)
    teacher_preprocessing = default_preprocessing(args.teacher)
    items = ObjectDataset(rows, loader, teacher_preprocessing)
    images = [items[i]["image"][None] for i in range(len(rows))]

    online_teacher, targets = 0.0, []
    for image in images:
        started = time.perf_counter()
        with torch.inference_mode():
            target = teacher.image_encoder(image)
        online_teacher += time.perf_counter() - started
        targets.append(target.clone())  # outside inference mode: a tensor autograd may read

    with tempfile.TemporaryDirectory() as directory:
        cache = EmbeddingCache(directory)
        keys = TargetKeys.compute(rows, loader, teacher_identity(args.teacher, None, {}, teacher), "embedding", teacher_preprocessing)
        started = time.perf_counter()
        fill_cache(cache, teacher, "embedding", items, keys, World(), batch_size=1)
        fill_seconds = time.perf_counter() - started
        started = time.perf_counter()
        cached = [torch.from_numpy(EmbeddingCache(directory).get(key).astype("float32"))[None] for key in keys.keys]
        cached_read = time.perf_counter() - started
        entry_bytes = cache.info()["entry_bytes"] // len(cache)

    students = {}
    for name, kwargs in STUDENTS.items():
        student = create_model(name, **kwargs).train()
        student.image_encoder.requires_grad_(True)
        optimizer = torch.optim.AdamW(student.image_encoder.parameters(), lr=1e-4)
        student_items = ObjectDataset(rows, loader, default_preprocessing(name, kwargs))
        inputs = [student_items[i]["image"][None] for i in range(len(rows))]
        _student_step(student, optimizer, inputs[0], targets[0])  # warm-up, untimed: first-step allocations
        online_student = sum(_student_step(student, optimizer, image, target) for image, target in zip(inputs, targets))
        cached_student = sum(_student_step(student, optimizer, image, target) for image, target in zip(inputs, cached))
        online, with_cache = online_teacher + online_student, cached_read + cached_student
        students[name] = {
            "input_px": student_items.input_size,
            "epoch_seconds": {"online": round(online, 2), "cached": round(with_cache, 2)},
            "student_step_seconds": round(cached_student / len(images), 3),
            "speedup_epoch": round(online / with_cache, 2),
            "speedup_bound": round(1 + online_teacher / cached_student, 2),
        }

    result = {
        "kind": "medkd.bench.distill-cache",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "software": software_versions(),
        "teacher": f"{args.teacher} (random weights), 1024 px, 64 x 64 embeddings",
        "students": students,
        "student_settings": "batch 1, fp32, AdamW; tinyvit-256 with embedding_grid=64 (LiteMedSAM layout)",
        "images": len(rows),
        "entry_bytes": entry_bytes,
        "fill_seconds": round(fill_seconds, 2),
        "epoch_targets_seconds": {"online_teacher": round(online_teacher, 2), "cache_read": round(cached_read, 4)},
        "speedup_targets": round(online_teacher / cached_read, 1),
    }
    atomic_write_json(args.out, result)
    print(f"{len(rows)} images: targets online {online_teacher:.1f} s vs cache {cached_read * 1e3:.1f} ms ({result['speedup_targets']}x); "
          f"fill {fill_seconds:.1f} s, {entry_bytes / (1 << 20):.2f} MiB per entry")
    for name, row in students.items():
        print(f"  {name} ({row['input_px']} px): epoch {row['epoch_seconds']['online']} s online vs {row['epoch_seconds']['cached']} s cached ({row['speedup_epoch']}x; bound {row['speedup_bound']}x)")


if __name__ == "__main__":
    main()
