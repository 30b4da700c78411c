"""benchmarks/shipped_int8.py's arithmetic: integer multiply-accumulates of a graph and the VNNI peak."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.runtime.test_cpu_lowering import block_graphs  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("shipped_int8", ROOT / "benchmarks" / "shipped_int8.py")
shipped_int8 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shipped_int8)


def test_macs_split_int8_and_float_nodes(block_graphs):  # noqa: F811 - the imported fixture
    fp32, int8, _, _ = block_graphs
    # 12 x 12 positions: conv1 64 x 32, dw 64 x 9, conv2 32 x 64, proj 48 x 32 (int8); the stem 32 x 27 (float)
    int8_macs = 144 * (64 * 32 + 64 * 9 + 32 * 64 + 48 * 32)
    assert shipped_int8.macs(int8) == {"int8": int8_macs, "float": 144 * 32 * 27}
    assert shipped_int8.macs(fp32) == {"int8": 0, "float": int8_macs + 144 * 32 * 27}


@pytest.mark.parametrize(("flags", "per_cycle", "ops"), [({"avx512_vnni"}, None, 2 * 2.0e9 * 64 * 2), ({"avx_vnni"}, None, 2 * 2.0e9 * 64 * 2), ({"avx512_vnni"}, 2, 2 * 2.0e9 * 128 * 2)])
def test_vnni_peak_from_flags_and_clock(monkeypatch, flags, per_cycle, ops):
    monkeypatch.setattr(shipped_int8, "_cpu_flags", lambda: (flags, 2000.0))
    peak = shipped_int8.vnni_peak(2, None, per_cycle)
    assert peak["ops_per_s"] == pytest.approx(ops) and peak["clock_source"] == "/proc/cpuinfo cpu MHz"


def test_no_vnni_no_peak(monkeypatch):
    monkeypatch.setattr(shipped_int8, "_cpu_flags", lambda: ({"avx2"}, 2000.0))
    assert shipped_int8.vnni_peak(2, None, None)["ops_per_s"] is None
