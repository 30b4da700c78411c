"""Fused attention kernels (Triton) for SAM-family encoders."""

from .dispatch import attention
from .flash_kernel import flash_attention
from .patching import patch, unpatch

__all__ = ["attention", "flash_attention", "patch", "unpatch"]
