"""bf16 autocast is used only where the device runs it natively."""

from __future__ import annotations

import pytest
import torch
from medkd.distill.distributed import World

from medkd.errors import MedkdWarning


def test_cpu_without_bf16_instructions_falls_back_to_fp32_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.warns(MedkdWarning, match="no bf16 instructions"):
        assert World().bf16(True) is False
    assert World().bf16(False) is False


def test_cpu_with_bf16_instructions_keeps_what_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert World().bf16(True) is True
    assert World().bf16(False) is False
