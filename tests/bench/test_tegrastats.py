"""tegrastats lines recorded on an Orin Nano, an AGX Orin (JetPack 5 and 6) and a Jetson Nano (JetPack 4)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from medkd.bench.tegrastats import Sample, energy_summary, parse_line, total_power_mw, total_rails
from medkd.cli import run
from medkd.errors import BadInput

ORIN_NANO = (
    "11-27-2026 14:02:11 RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [2%@729,1%@729,0%@729,3%@729,off,off] "
    "EMC_FREQ 0% GR3D_FREQ 0% cpu@47.5C soc2@46.2C soc0@46.9C gpu@47.1C tj@47.5C soc1@46.4C "
    "VDD_IN 4850mW/4850mW VDD_CPU_GPU_CV 730mW/730mW VDD_SOC 1460mW/1460mW"
)
AGX_ORIN = (
    "RAM 5120/30536MB (lfb 5x4MB) SWAP 0/15268MB (cached 0MB) CPU [12%@2201,8%@2201,0%@2201,5%@2201,0%@2201,1%@2201,"
    "0%@2201,0%@2201,off,off,off,off] EMC_FREQ 4%@3199 GR3D_FREQ 61%@[1300,1300] VIC_FREQ 115 APE 174 "
    "CV0@-256C CPU@49.2C SOC2@46.1C SOC0@47.5C CV1@-256C GPU@48.9C tj@49.2C SOC1@45.8C CV2@-256C "
    "VDD_GPU_SOC 3200mW/3100mW VDD_CPU_CV 800mW/790mW VIN_SYS_5V0 2900mW/2880mW VDDQ_VDD2_1V8AO 400mW/400mW"
)
AGX_ORIN_JP6 = (
    "RAM 10642/62817MB (lfb 1x2MB) CPU [23%@2201,10%@2201] EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] "
    "cpu@52.968C gpu@47.625C VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW VIN_SYS_5V0 5500mW/5500mW/5500mW"
)
NANO_JP4 = (
    "RAM 1530/3956MB (lfb 4x4MB) SWAP 0/1978MB (cached 0MB) CPU [4%@102,1%@102,0%@102,0%@102] EMC_FREQ 0% GR3D_FREQ 0% "
    "PLL@25C CPU@27.5C POM_5V_IN 2393/2393 POM_5V_GPU 39/39 POM_5V_CPU 358/358"
)


def test_orin_nano_line():
    sample = parse_line(ORIN_NANO)
    assert sample.rails == {"VDD_IN": (4850, 4850), "VDD_CPU_GPU_CV": (730, 730), "VDD_SOC": (1460, 1460)}
    assert sample.ram_mb == (2448, 7620)
    assert total_rails(sample) == ("VDD_IN",) and total_power_mw(sample) == 4850


def test_agx_orin_line_sums_module_rails():
    sample = parse_line(AGX_ORIN)
    assert sample.rails["VDDQ_VDD2_1V8AO"] == (400, 400) and sample.rails["VDD_GPU_SOC"] == (3200, 3100)
    assert "RAM" not in sample.rails and "SWAP" not in sample.rails
    assert total_power_mw(sample) == 3200 + 800 + 2900


def test_jetpack6_and_jetpack4_formats():
    assert total_power_mw(parse_line(AGX_ORIN_JP6)) == 5139 + 3268 + 5500
    nano = parse_line(NANO_JP4)
    assert total_rails(nano) == ("POM_5V_IN",) and total_power_mw(nano) == 2393


def test_line_without_power_rails_is_refused():
    with pytest.raises(BadInput, match="no input power rail"):
        total_power_mw(parse_line("RAM 1/2MB (lfb 1x4MB) CPU [1%@100]"))


def test_energy_per_inference_over_the_timed_window():
    samples = [Sample({"VDD_IN": (watts, watts)}, None, t) for t, watts in ((0.5, 9000), (1.0, 5000), (1.5, 7000), (2.5, 9000))]
    summary = energy_summary(samples, start=0.9, stop=1.9, inferences=10)
    assert summary["samples"] == 2 and summary["mean_power_mw"] == 6000
    assert summary["energy_per_inference_mj"] == pytest.approx(600.0)  # 6 W over 1 s for 10 inferences
    assert energy_summary(samples, 3.0, 4.0, 1)["samples"] == 0


def test_power_sampling_with_a_recorded_tegrastats(tmp_path, monkeypatch):
    """``medkd bench --power`` runs tegrastats in the background; here a stand-in replays an Orin Nano line."""
    fake = tmp_path / "bin" / "tegrastats"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nwhile true; do echo "{ORIN_NANO}"; sleep 0.02; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    out = tmp_path / "power.json"
    assert run(["bench", "unet", "--power", "--warmup", "1", "--iters", "10", "--threads", "1", "--out", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["entries"]
    power = entry["power"]
    assert power["rails"] == ["VDD_IN"] and power["samples"] >= 2 and power["mean_power_mw"] == 4850
    assert power["energy_per_inference_mj"] == pytest.approx(4850 * power["window_s"] / 10, rel=1e-3)
    assert power["window_s"] == pytest.approx(entry["latency_ms"]["mean"] * 10 / 1e3, rel=0.2)  # the timed loop
