"""Decoupled distillation (MobileSAM / LiteMedSAM) and its KD-SAM variant.

Phase 1: the student's image encoder regresses the teacher's cached image embeddings (MSE); the
teacher's prompt encoder and mask decoder are copied into the student and stay frozen. Two optional
terms act on the masks the frozen decoder makes of the two embeddings under the same (jittered) box:
a mask term (the student's logits against the teacher's: BCE to its probabilities plus Dice to its
mask, as TinySAM's full-stage and EdgeSAM's mask distillation) and KD-SAM's perceptual term
(``medkd.distill.perceptual``). Phase 2 (optional): the mask decoder, or with the image encoder as
LiteMedSAM's second stage, is fine-tuned on ground truth (Dice, plus BCE unless its weight is 0, plus
the IoU head's regression), and a guard keeps the phase-1 model when validation DSC drops (pitfall:
decoder fine-tuning collapses on small data, MobileSAM #49).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from medkd.distill.losses import dice_bce, iou_regression, mask_distillation
from medkd.distill.perceptual import FeatureNetwork, perceptual_distance
from medkd.distill.sam_forward import BoxPromptedSam, decode_boxes
from torch import nn

from medkd.errors import BadInput

# Parts of an image encoder that the embedding never passes through (DDP requires every trained
# parameter to take part in the loss).
UNUSED_ENCODER_PARTS = ("head", "norm_head")


def embedding_grid(sam: nn.Module) -> int:
    """Side of a SAM's image embedding grid (what its prompt encoder expects)."""
    return int(sam.prompt_encoder.image_embedding_size[0])


def copy_prompt_path(student: nn.Module, teacher: nn.Module) -> nn.Module:
    """Give ``student`` the teacher's prompt encoder and mask decoder weights, frozen.

    The student keeps its own prompt encoder's input size (prompts are in the student's pixels);
    the learned weights do not depend on it, but the embedding grids must be equal.
    """
    if embedding_grid(student) != embedding_grid(teacher):
        raise BadInput(
            f"student embeddings are {embedding_grid(student)}x{embedding_grid(student)}, the teacher's "
            f"{embedding_grid(teacher)}x{embedding_grid(teacher)}: build the student with the teacher's grid"
        )
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    student.requires_grad_(False)
    unfreeze_encoder(student)
    return student


def unfreeze_encoder(sam: nn.Module) -> None:
    """Train the image encoder's parameters, but not the parts the embedding never passes through
    (TinyViT's ImageNet classifier, kept in the state dict only)."""
    sam.image_encoder.requires_grad_(True)
    for unused in UNUSED_ENCODER_PARTS:
        if hasattr(sam.image_encoder, unused):
            getattr(sam.image_encoder, unused).requires_grad_(False)


class EncoderKD(nn.Module):
    """Student encoder on the image; with ``decode``, also both embeddings decoded under the box."""

    def __init__(self, sam: nn.Module, features: FeatureNetwork | None = None, decode: bool = False) -> None:
        super().__init__()
        self.sam = sam
        self.features = features
        self.decode = decode or features is not None

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        embeddings = self.sam.image_encoder(batch["image"])
        outputs = {"embeddings": embeddings}
        if self.decode:
            outputs["student_logits"] = decode_boxes(self.sam, embeddings, batch["box"])[0]
            with torch.no_grad():
                outputs["teacher_logits"] = decode_boxes(self.sam, batch["target"].to(embeddings.dtype), batch["box"])[0]
        return outputs


class EncoderKDTask:
    """MSE to the teacher's embeddings, + ``perceptual_weight`` x the perceptual distance,
    + ``mask_weight`` x the mask term."""

    def __init__(
        self, sam: nn.Module, features: FeatureNetwork | None = None, perceptual_weight: float = 0.0, mask_weight: float = 0.0
    ) -> None:
        self.module = EncoderKD(sam, features if perceptual_weight > 0 else None, decode=mask_weight > 0)
        self.perceptual_weight = perceptual_weight
        self.mask_weight = mask_weight

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total = mse = F.mse_loss(outputs["embeddings"].float(), batch["target"])
        metrics = {"mse": float(mse.detach())}
        if self.module.features is not None:
            perceptual = perceptual_distance(self.module.features, outputs["student_logits"], outputs["teacher_logits"])
            metrics["perceptual"] = float(perceptual.detach())
            total = total + self.perceptual_weight * perceptual
        if self.mask_weight > 0:
            masks = mask_distillation(outputs["student_logits"].float(), outputs["teacher_logits"].float())
            metrics["mask"] = float(masks.detach())
            total = total + self.mask_weight * masks
        return total, metrics


class FrozenPartsSam(BoxPromptedSam):
    """Box-prompted SAM whose frozen parts stay in eval mode while training (TinyViT's BatchNorm
    statistics would otherwise drift although no weight trains)."""

    def __init__(self, sam: nn.Module, encoder_trains: bool) -> None:
        super().__init__(sam)
        self.encoder_trains = encoder_trains

    def train(self, mode: bool = True) -> FrozenPartsSam:
        super().train(mode)
        if not self.encoder_trains:
            self.sam.image_encoder.eval()
        self.sam.prompt_encoder.eval()
        return self


class DecoderTask:
    """Mask decoder (and, with ``train_encoder``, the image encoder too, as LiteMedSAM's second stage)
    fine-tuned on ground truth under box prompts; the prompt encoder stays frozen."""

    def __init__(self, sam: nn.Module, bce_weight: float, train_encoder: bool = False) -> None:
        sam.requires_grad_(False)
        sam.mask_decoder.requires_grad_(True)
        if train_encoder:
            unfreeze_encoder(sam)
        self.module = FrozenPartsSam(sam, train_encoder)
        self.bce_weight = bce_weight

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        segmentation = dice_bce(outputs["logits"], batch["mask"], self.bce_weight)
        iou = iou_regression(outputs["iou"], outputs["logits"], batch["mask"])
        return segmentation + iou, {"seg_loss": float(segmentation.detach()), "iou_loss": float(iou.detach())}


def keep_finetuned(distilled_dsc: float | None, finetuned_dsc: float | None) -> bool:
    """The guard: the fine-tuned model stays only when validation shows it is at least as good."""
    return distilled_dsc is not None and finetuned_dsc is not None and finetuned_dsc >= distilled_dsc
