"""Segmentation and distillation losses (MONAI's Dice; BCE, MSE and IoU regression from torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

_dice = DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")


def dice_bce(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0) -> torch.Tensor:
    """MedSAM's loss: soft Dice (squared denominators) plus binary cross-entropy on logits."""
    return _dice(logits, target) + bce_weight * F.binary_cross_entropy_with_logits(logits, target)


def mask_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The student's mask logits against the teacher's: BCE to its probabilities plus Dice to its mask."""
    soft = F.binary_cross_entropy_with_logits(student_logits, torch.sigmoid(teacher_logits))
    return soft + _dice(student_logits, (teacher_logits > 0).to(student_logits.dtype))


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU per item of the thresholded prediction with ``target`` (``(B, 1, H, W)`` -> ``(B,)``)."""
    predicted = logits > 0
    truth = target > 0.5
    intersection = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float()
    return intersection / union.clamp(min=1)


def iou_regression(predicted_iou: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between the decoder's IoU estimate and the IoU its mask really has (LiteMedSAM)."""
    return F.mse_loss(predicted_iou.flatten(), mask_iou(logits.detach(), target))
