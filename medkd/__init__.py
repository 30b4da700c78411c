"""medkd: distil, quantize and ship Segment Anything models for medical imaging."""

__version__ = "0.1.0"
