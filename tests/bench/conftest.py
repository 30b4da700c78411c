"""The export tests' tiny model artifacts and their ONNX exports (validated on real CT slices), reused here."""

from tests.export.conftest import sam_export, tiny_sam, tiny_unet, unet_export  # noqa: F401  (fixtures)
