"""Fused attention kernels (Triton) for SAM-family encoders."""
