"""Post-training INT8 quantization calibrated on medical images."""
