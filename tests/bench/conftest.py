"""Fixtures reused from the export tests (tiny artifacts, exports validated on real CT slices)."""

from tests.export.conftest import sam_export, tiny_sam, tiny_unet, unet_export  # noqa: F401  (fixtures)
