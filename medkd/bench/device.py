"""What a benchmark ran on: CPU, GPU and, on a Jetson, the module, L4T / JetPack, power mode and clocks.

Every reader takes ``root`` (the file-system root) and a command runner, so the parsers are tested on
recorded files. Numbers are comparable only between identical devices and settings
(:func:`device_identity`); :func:`device_slug` names a device in file names (CI baselines).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medkd.accelerator import torch_cuda

CommandRunner = Callable[[list[str]], str | None]
# L4T release -> JetPack release (NVIDIA's Jetson archive); dpkg's nvidia-jetpack version wins when present.
JETPACK_OF_L4T = {
    "36.4.4": "6.2.1",
    "36.4.3": "6.2",
    "36.4.0": "6.1",
    "36.3.0": "6.0",
    "36.2.0": "6.0 DP",
    "35.6.1": "5.1.5",
    "35.6.0": "5.1.4",
    "35.5.0": "5.1.3",
    "35.4.1": "5.1.2",
    "35.3.1": "5.1.1",
    "35.2.1": "5.1",
    "35.1.0": "5.0.2",
    "32.7.6": "4.6.6",
    "32.7.5": "4.6.5",
    "32.7.4": "4.6.4",
    "32.7.3": "4.6.3",
    "32.7.2": "4.6.2",
    "32.7.1": "4.6.1",
    "32.6.1": "4.6",
}
_GPU_DEVFREQ = re.compile(r"gpu|ga10b|gv11b|gp10b|gm20b|gb10b", re.IGNORECASE)


def run_command(argv: list[str]) -> str | None:
    """Standard output of ``argv``, or ``None`` when it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


# The widest vector instructions a CPU has for inference, best first: two CPUs of one model name (cloud
# hosts say "AMD EPYC" for every generation) differ by several times in int8 and bf16 speed.
VECTOR_ISAS = (
    ("amx", ("amx_int8", "amx_bf16")),
    ("avx512-vnni", ("avx512_vnni",)),
    ("avx-vnni", ("avx_vnni",)),
    ("avx512", ("avx512f",)),
    ("avx2", ("avx2",)),
    ("neon", ("asimd", "neon")),
)


def vector_isa(flags: set[str]) -> str | None:
    """The best entry of :data:`VECTOR_ISAS` among a CPU's ``flags`` (``None``: none of them)."""
    return next((name for name, needed in VECTOR_ISAS if flags & set(needed)), None)


def cpuinfo_fields(root: Path = Path("/")) -> dict[str, str]:
    """``/proc/cpuinfo``'s fields (lower-case names; the first processor's value of each)."""
    fields: dict[str, str] = {}
    for line in (_read(root / "proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_flags(fields: dict[str, str]) -> set[str]:
    """The instruction-set flags among :func:`cpuinfo_fields` (x86 ``flags``, Arm ``Features``)."""
    return set((fields.get("flags") or fields.get("features") or "").split())


def cpu_info(root: Path = Path("/")) -> dict[str, Any]:
    """CPU model (``/proc/cpuinfo``), its vector instructions, logical / usable cores, and total memory."""
    fields = cpuinfo_fields(root)
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model")
    if model is None and "cpu part" in fields:
        model = f"{platform.machine()} CPU part {fields['cpu part']}"
    meminfo = re.search(r"MemTotal:\s+(\d+) kB", _read(root / "proc/meminfo") or "")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine(),
        "isa": vector_isa(cpu_flags(fields)),
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_mib": int(meminfo.group(1)) // 1024 if meminfo else None,
    }


def gpu_info() -> dict[str, Any] | None:
    """Name, compute capability, memory and CUDA version of the current CUDA device (``None`` without one)."""
    cuda = torch_cuda()
    if cuda is None:
        return None
    import torch

    properties = cuda.get_device_properties(cuda.current_device())
    return {
        "name": properties.name,
        "compute_capability": f"{properties.major}.{properties.minor}",
        "memory_mib": properties.total_memory // (1 << 20),
        "cuda": torch.version.cuda,
    }


def parse_l4t(text: str) -> str | None:
    """``36.4.3`` from ``/etc/nv_tegra_release`` (``# R36 (release), REVISION: 4.3, ...``)."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if match is None:
        return None
    revision = match.group(2).split(".")
    revision += ["0"] * (2 - len(revision))
    return ".".join([match.group(1), *revision[:2]])


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """Power mode name and id from ``nvpmodel -q`` (``NV Power Mode: MAXN`` then the id)."""
    match = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", text)
    if match is None:
        return None
    return {"name": match.group(1), "id": int(match.group(2))}


def _pinned(directory: Path, low: str, high: str) -> bool | None:
    low_value, high_value = _read(directory / low), _read(directory / high)
    if low_value is None or high_value is None:
        return None
    return low_value.strip() == high_value.strip()


def clocks_state(root: Path = Path("/")) -> dict[str, Any]:
    """Whether ``jetson_clocks`` is on: every online CPU and the GPU held at their maximum frequency."""
    cpus = [_pinned(path, "scaling_min_freq", "scaling_max_freq") for path in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))]
    gpus = [_pinned(path, "min_freq", "max_freq") for path in sorted((root / "sys/class/devfreq").glob("*")) if _GPU_DEVFREQ.search(path.name)]
    cpu_pinned = all(cpus) if cpus and None not in cpus else None
    gpu_pinned = all(gpus) if gpus and None not in gpus else None
    known = [state for state in (cpu_pinned, gpu_pinned) if state is not None]
    return {"jetson_clocks": ("on" if all(known) else "off") if known else None, "cpu_pinned": cpu_pinned, "gpu_pinned": gpu_pinned}


def jetpack_version(l4t: str | None, runner: CommandRunner) -> str | None:
    """JetPack from dpkg's ``nvidia-jetpack`` package, else from the L4T release."""
    installed = runner(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if installed:
        return installed.strip().split("+")[0]
    return JETPACK_OF_L4T.get(l4t or "")


def jetson_info(root: Path = Path("/"), runner: CommandRunner = run_command) -> dict[str, Any] | None:
    """Module, L4T, JetPack, ``nvpmodel`` mode and ``jetson_clocks`` state (``None`` off a Jetson)."""
    release = _read(root / "etc/nv_tegra_release")
    model = (_read(root / "proc/device-tree/model") or "").strip("\x00\n ")
    if release is None and "jetson" not in model.lower():
        return None
    l4t = parse_l4t(release or "")
    mode = runner(["nvpmodel", "-q"])
    return {
        "module": model or None,
        "l4t": l4t,
        "jetpack": jetpack_version(l4t, runner),
        "nvpmodel": parse_nvpmodel(mode) if mode else None,
        **clocks_state(root),
    }


def device_info(root: Path = Path("/"), runner: CommandRunner = run_command) -> dict[str, Any]:
    """Everything the results schema records about the machine."""
    return {
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_info(root),
        "gpu": gpu_info(),
        "jetson": jetson_info(root, runner),
    }


def device_identity(device: dict[str, Any]) -> dict[str, Any]:
    """The fields two results must share to be comparable (same hardware, same power settings)."""
    cpu, gpu, jetson = device.get("cpu") or {}, device.get("gpu") or {}, device.get("jetson") or {}
    return {
        "cpu.model": cpu.get("model"),
        "cpu.isa": cpu.get("isa"),
        "cpu.logical_cores": cpu.get("logical_cores"),
        "gpu.name": gpu.get("name"),
        "gpu.compute_capability": gpu.get("compute_capability"),
        "jetson.module": jetson.get("module"),
        "jetson.nvpmodel": (jetson.get("nvpmodel") or {}).get("name"),
        "jetson.jetson_clocks": jetson.get("jetson_clocks"),
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_slug(device: dict[str, Any]) -> str:
    """A file-name-safe name of the device and its power settings, e.g. ``cpu-amd-epyc-avx2-2c``."""
    identity = device_identity(device)
    if identity["jetson.module"]:
        parts = [identity["jetson.module"], identity["jetson.nvpmodel"] or "mode-unknown", f"clocks-{identity['jetson.jetson_clocks'] or 'unknown'}"]
    elif identity["gpu.name"]:
        parts = ["gpu", identity["gpu.name"]]
    else:
        isa = [identity["cpu.isa"]] if identity["cpu.isa"] else []
        parts = ["cpu", identity["cpu.model"] or "unknown", *isa, f"{identity['cpu.logical_cores']}c"]
    return _slug("-".join(str(p) for p in parts))
