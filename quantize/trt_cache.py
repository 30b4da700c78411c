"""TensorRT's legacy INT8 calibration cache, written from our calibration statistics (and read back).

The format TensorRT's calibrators read and write (``trtexec --calib=FILE``)::

    TRT-100300-EntropyCalibration2
    image: 3c010a14
    /encoder/patch_embed/seq/seq.0/c/Conv_output_0: 3d9b4c2a

The header holds TensorRT's version number (``NV_TENSORRT_VERSION``: major * 10000 + minor * 100 +
patch from 10.0 on, major * 1000 + minor * 100 + patch before) and the calibrator's algorithm; each
line is a tensor name and its scale ``amax / 127`` as the big-endian bytes of a float32, in hex.
TensorRT 10.x (JetPack 6.2 ships 10.3) still reads it; 11 dropped implicit quantization.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from medkd.artifacts import atomic_write_text
from medkd.errors import BadInput

ALGORITHM = "EntropyCalibration2"
INT8_MAX = 127.0


def version_number(version: str) -> int:
    """TensorRT's ``NV_TENSORRT_VERSION`` for a version such as ``10.3`` or ``8.6.1``."""
    try:
        parts = [int(p) for p in version.split(".")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3:
        raise BadInput(f"TensorRT version must look like 10.3 or 8.6.1, not '{version}'")
    major, minor, patch = (parts + [0, 0])[:3]
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def write_calibration_cache(path: str | Path, amax: dict[str, float], version: str = "10.3") -> dict[str, float]:
    """Write the cache for tensors with ``amax`` (largest absolute value); returns the scales written
    (as float32 values, exactly what the file holds).

    Tensors that were all zeros in calibration have no usable scale and are left out (TensorRT then
    keeps them in higher precision or asks for a range).
    """
    scales = {name: float(np.float32(value / INT8_MAX)) for name, value in amax.items() if value > 0.0}
    lines = [f"TRT-{version_number(version)}-{ALGORITHM}"]
    lines += [f"{name}: {scale_hex(scale)}" for name, scale in scales.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return scales


def read_calibration_cache(path: str | Path) -> tuple[str, dict[str, float]]:
    """The header and ``{tensor: scale}`` of a TensorRT calibration cache."""
    lines = Path(path).read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise BadInput(f"{path} is not a TensorRT calibration cache (no TRT-<version>-<algorithm> header)")
    scales = {}
    for number, line in enumerate(lines[1:], start=2):
        name, _, value = line.rpartition(": ")
        if not name or len(value) != 8:
            raise BadInput(f"{path}:{number}: not 'tensor: <8 hex digits>': {line!r}")
        try:
            scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
        except ValueError:
            raise BadInput(f"{path}:{number}: not 'tensor: <8 hex digits>': {line!r}") from None
    return lines[0], scales
