"""SAM-to-U-Net distillation (Shi et al. 2024): a MONAI U-Net learns the teacher's box-prompted masks.

The box reaches the U-Net as a fourth input channel (1 inside the box), not as a crop alone: one
network input can then hold several objects and the U-Net still knows which one is meant, exactly as
a SAM prompt does, and the student segments with no SAM component. With ``crop: box`` the input is in
addition the box-centred window the teacher saw (small structures keep their pixels at 256 px), and
the channel marks the object inside it.

Targets: the teacher's low-resolution logits under the ground-truth box, upsampled to the U-Net's
input and softened by a temperature ``T`` (binary cross-entropy against ``sigmoid(teacher / T)``,
scaled by ``T^2`` as in Hinton et al.), plus Dice + BCE against the ground-truth mask (every manifest
object carries one; ``gt_weight: 0`` distils from the teacher alone). The teacher's logits are
cached per object (64 x 64 fp16, 8 KiB at 256 px), so training never runs the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from medkd.distill.losses import dice_bce
from medkd.distill.sam_forward import upscale
from torch import nn


class BoxChannelUNet(nn.Module):
    """``forward(batch)``: the U-Net on the image with the box channel appended."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.unet(torch.cat([batch["image"], batch["box_channel"]], dim=1))}


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature-softened binary cross-entropy to the teacher's probabilities, times ``T^2``."""
    soft = torch.sigmoid(teacher_logits / temperature)
    return F.binary_cross_entropy_with_logits(student_logits / temperature, soft) * temperature**2


class UNetKDTask:
    """Soft teacher targets plus ground truth."""

    def __init__(self, unet: nn.Module, temperature: float, soft_weight: float, gt_weight: float) -> None:
        self.module = BoxChannelUNet(unet)
        self.temperature = temperature
        self.soft_weight = soft_weight
        self.gt_weight = gt_weight

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = outputs["logits"]
        teacher = upscale(batch["target"], logits.shape[-1])
        soft = soft_target_loss(logits.float(), teacher, self.temperature)
        truth = dice_bce(logits.float(), batch["mask"])
        total = self.soft_weight * soft + self.gt_weight * truth
        return total, {"soft_loss": float(soft.detach()), "gt_loss": float(truth.detach())}
