"""Kernel tests run the Triton kernels on the CPU, in Triton's interpreter."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TRITON_INTERPRET=1`` for every test here; the kernel reads it when launched, not imported."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
