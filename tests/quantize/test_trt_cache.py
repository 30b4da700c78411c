"""TensorRT calibration cache: header, hex float32 scales, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from medkd.quantize.trt_cache import (
    read_calibration_cache,
    version_number,
    write_calibration_cache,
)

from medkd.errors import BadInput


def test_version_numbers_follow_nv_tensorrt_version():
    assert version_number("10.3") == 100300
    assert version_number("10.13.2") == 101302
    assert version_number("8.6.1") == 8601
    with pytest.raises(BadInput):
        version_number("ten")


def test_cache_is_written_in_tensorrt_format_and_round_trips(tmp_path):
    amax = {"image": 127.0 * 0.0078125, "/encoder/blocks.0/attn/qkv/MatMul_output_0": 3.5, "all_zero": 0.0}
    path = tmp_path / "encoder.calib"
    scales = write_calibration_cache(path, amax, "10.3")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert lines[1] == "image: 3c000000"  # 2**-7 as big-endian float32
    assert len(lines) == 3 and "all_zero" not in path.read_text()
    header, read = read_calibration_cache(path)
    assert header == lines[0] and read == scales
    assert read["/encoder/blocks.0/attn/qkv/MatMul_output_0"] == pytest.approx(3.5 / 127, rel=1e-7)
    assert np.float32(read["image"]) == np.float32(0.0078125)


def test_reader_refuses_what_is_not_a_cache(tmp_path):
    path = tmp_path / "bad.calib"
    path.write_text("TRT-8601-EntropyCalibration2\nimage 3c000000\n")
    with pytest.raises(BadInput, match="bad.calib:2"):
        read_calibration_cache(path)
    path.write_text("image: 3c000000\n")
    with pytest.raises(BadInput, match="header"):
        read_calibration_cache(path)
