"""MONAI U-Net student for SAM-to-U-Net distillation: image plus a box channel in, one mask logit out."""

from __future__ import annotations

from monai.networks.nets import UNet

IMAGE_CHANNELS = 3
BOX_CHANNELS = 1


def build_unet(
    channels: tuple[int, ...] = (16, 32, 64, 128, 256),
    num_res_units: int = 2,
) -> UNet:
    """A 2D U-Net whose input is the RGB image and a binary box mask (4 channels)."""
    return UNet(
        spatial_dims=2,
        in_channels=IMAGE_CHANNELS + BOX_CHANNELS,
        out_channels=1,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
    )
