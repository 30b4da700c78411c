"""``medkd bench``'s work: open a model on a backend, time each of its graphs, return results entries."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medkd.artifacts import MANIFEST_NAME, read_manifest
from medkd.bench.bundle_backend import BUNDLE_SUFFIX
from medkd.bench.device import device_info
from medkd.bench.schema import new_document
from medkd.bench.subject import Subject
from medkd.bench.timing import TimingOptions, Workload, measure
from medkd.errors import BadInput

BACKENDS = ("torch", "torch-compile", "ort", "ort-int8", "tensorrt", "aoti")


@dataclass(frozen=True)
class BenchOptions:
    """How to benchmark: backend, batch, threads, warm-up and timed iterations, which graphs, power."""

    backend: str = "torch"
    batch: int = 1
    warmup: int = 3
    iterations: int = 20
    threads: int | None = None
    graphs: tuple[str, ...] = ()
    device: str = "auto"
    power: bool = False
    progress: bool = True
    trust_store: str | None = None  # bundles: see medkd.bundle.trust
    allow_unsigned: bool = False

    def validated(self) -> BenchOptions:
        if self.backend not in BACKENDS:
            raise BadInput(f"--backend must be one of {', '.join(BACKENDS)}, not '{self.backend}'")
        for name, value, least in (
            ("--batch", self.batch, 1),
            ("--iters", self.iterations, 1),
            ("--warmup", self.warmup, 0),
            ("--threads", 1 if self.threads is None else self.threads, 1),
        ):
            if value < least:
                raise BadInput(f"{name} must be at least {least}, not {value}")
        if self.backend == "torch-compile" and self.warmup < 1:
            raise BadInput("torch-compile compiles on its first call: give --warmup 1 or more")
        if self.power and shutil.which("tegrastats") is None:
            raise BadInput("--power reads tegrastats, which is not on this machine (a Jetson has it in /usr/bin)")
        return self


def default_backend(source: str) -> str:
    """The backend that runs ``source`` as it is: ONNX Runtime for bundles, ONNX files and exports,
    TensorRT for engines, AOTInductor for ``.pt2`` packages, PyTorch for everything else."""
    path = Path(source)
    if path.suffix in (BUNDLE_SUFFIX, ".onnx"):
        return "ort"
    kind = read_manifest(path).kind if (path / MANIFEST_NAME).is_file() else None
    if path.suffix == ".plan" or kind == "engines":
        return "tensorrt"
    if path.suffix == ".pt2" or kind == "aoti":
        return "aoti"
    return "ort" if kind == "export" else "torch"


def resolve_threads(threads: int | None) -> int:
    """Apply ``threads`` to PyTorch (ONNX Runtime takes it per session); the number in use. Without
    torch (the runtime install) the default is the cores this process may use."""
    if importlib.util.find_spec("torch") is None:
        return threads or len(os.sched_getaffinity(0))
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def open_subject(source: str, options: BenchOptions, threads: int) -> Subject:
    """``source`` opened on ``options.backend`` with its workloads ready (a bundle: its matching variant)."""
    graphs = list(options.graphs) or None
    if source.endswith(BUNDLE_SUFFIX):
        from medkd.bench.bundle_backend import open_bundle

        return open_bundle(source, options, lambda directory: open_subject(directory, options, threads))
    if options.backend in ("torch", "torch-compile"):
        from medkd.bench.torch_backend import open_torch

        return open_torch(source, options.batch, graphs, options.device, compiled=options.backend == "torch-compile")
    if options.backend in ("ort", "ort-int8"):
        from medkd.bench.onnx_backend import open_onnx

        return open_onnx(source, options.batch, graphs, threads, int8=options.backend == "ort-int8")
    if options.backend == "aoti":
        from medkd.bench.aoti_backend import open_aoti

        return open_aoti(source, options.batch, graphs)
    from medkd.bench.tensorrt_backend import open_tensorrt

    return open_tensorrt(source, options.batch, graphs)


def measure_entry(subject: Subject, workload: Workload, options: BenchOptions, threads: int) -> dict[str, Any]:
    """Time ``workload`` of ``subject`` and describe it as a results entry."""
    timing = TimingOptions(options.warmup, options.iterations, options.power, options.progress)
    return {
        "model": subject.model,
        "source": subject.source,
        "artifact_id": subject.artifact_id,
        "backend": subject.backend,
        "graph": workload.graph,
        "file": workload.file,
        "precision": workload.precision or subject.precision,
        "device": subject.device,
        "batch": workload.batch,
        "threads": threads,
        "warmup": options.warmup,
        "iterations": options.iterations,
        "inputs": workload.inputs,
        **measure(workload, timing, f"{subject.model} {workload.graph} ({subject.backend})"),
        "details": workload.details,
        "notes": subject.notes,
    }


def bench_model(source: str, options: BenchOptions) -> list[dict[str, Any]]:
    """One results entry per graph of ``source`` on ``options.backend``."""
    options = options.validated()
    threads = resolve_threads(options.threads)
    subject = open_subject(source, options, threads)
    return [measure_entry(subject, workload, options, threads) for workload in subject.workloads]


def bench_document(sources: list[str], options: BenchOptions, suite: str | None = None) -> dict[str, Any]:
    """A results document with the entries of every source, measured one after the other."""
    entries = [entry for source in sources for entry in bench_model(source, options)]
    return new_document(entries, device_info(), suite)
