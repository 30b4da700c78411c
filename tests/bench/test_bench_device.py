"""Device description from recorded files: x86 CPU, Jetson Orin Nano / AGX Orin, clocks, power mode, slug."""

from __future__ import annotations

from pathlib import Path

from medkd.bench.device import clocks_state, cpu_info, device_identity, device_slug, jetson_info, parse_l4t, parse_nvpmodel, vector_isa

X86_CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core Processor\n"
    "flags\t\t: fpu sse4_2 avx fma avx2 sha_ni\n\n"
    "processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core Processor\n"
)
ORIN_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_jetson(root: Path, model: str, release: str, pinned: bool) -> None:
    write(root, "proc/device-tree/model", model + "\x00")
    write(root, "etc/nv_tegra_release", release)
    for cpu in range(6):
        write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_min_freq", "1510400\n" if pinned else "115200\n")
        write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_max_freq", "1510400\n")
    write(root, "sys/class/devfreq/17000000.ga10b/min_freq", "1020000000\n" if pinned else "306000000\n")
    write(root, "sys/class/devfreq/17000000.ga10b/max_freq", "1020000000\n")


def runner_for(outputs: dict[str, str | None]):
    return lambda argv: outputs.get(argv[0])


def test_x86_cpu(tmp_path):
    write(tmp_path, "proc/cpuinfo", X86_CPUINFO)
    write(tmp_path, "proc/meminfo", "MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    info = cpu_info(tmp_path)
    assert info["model"] == "AMD EPYC 7763 64-Core Processor"
    assert info["isa"] == "avx2"
    assert info["memory_mib"] == 16000
    assert jetson_info(tmp_path, runner_for({})) is None


def test_orin_nano_with_clocks_on(tmp_path):
    fake_jetson(tmp_path, "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", ORIN_RELEASE, pinned=True)
    info = jetson_info(tmp_path, runner_for({"nvpmodel": "NV Power Mode: MAXN_SUPER\n2\n", "dpkg-query": None}))
    assert info["module"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert (info["l4t"], info["jetpack"]) == ("36.4.3", "6.2")
    assert info["nvpmodel"] == {"name": "MAXN_SUPER", "id": 2}
    assert (info["jetson_clocks"], info["cpu_pinned"], info["gpu_pinned"]) == ("on", True, True)


def test_agx_orin_with_clocks_off_and_dpkg_jetpack(tmp_path):
    fake_jetson(tmp_path, "Jetson AGX Orin Developer Kit", "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n", pinned=False)
    info = jetson_info(tmp_path, runner_for({"nvpmodel": "NV Power Mode: MAXN\n0\n", "dpkg-query": "5.1.2-b104"}))
    assert (info["l4t"], info["jetpack"]) == ("35.4.1", "5.1.2-b104")
    assert info["jetson_clocks"] == "off"
    device = {"cpu": {"model": "ARMv8 Processor rev 1 (v8l)", "logical_cores": 12}, "gpu": {"name": "Orin", "compute_capability": "8.7"}, "jetson": info}
    assert device_slug(device) == "jetson-agx-orin-developer-kit-maxn-clocks-off"
    assert device_identity(device)["jetson.nvpmodel"] == "MAXN"


def test_parsers_on_odd_input():
    assert parse_l4t("# R32 (release), REVISION: 7.1, GCID: 29818004") == "32.7.1"
    assert parse_l4t("no release here") is None
    assert parse_nvpmodel("garbage") is None


def test_clocks_unknown_without_sysfs(tmp_path):
    assert clocks_state(tmp_path) == {"jetson_clocks": None, "cpu_pinned": None, "gpu_pinned": None}


def test_cpu_slug():
    assert device_slug({"cpu": {"model": "AMD EPYC 7763 64-Core Processor", "logical_cores": 4}}) == "cpu-amd-epyc-7763-64-core-processor-4c"


def test_vector_isa_names_the_best_and_separates_cpus_of_one_name():
    assert vector_isa({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}) == "avx512-vnni"
    assert vector_isa({"avx2", "avx_vnni"}) == "avx-vnni"
    assert vector_isa({"sse4_2"}) is None
    zen2, zen4 = ({"cpu": {"model": "AMD EPYC", "isa": isa, "logical_cores": 2}} for isa in ("avx2", "avx512-vnni"))
    assert (device_slug(zen2), device_slug(zen4)) == ("cpu-amd-epyc-avx2-2c", "cpu-amd-epyc-avx512-vnni-2c")
    assert device_identity(zen2) != device_identity(zen4)
