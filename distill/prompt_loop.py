"""Prompt-in-the-loop distillation (EdgeSAM phase 2): the decoder learns the teacher's masks.

Starting from a decoupled student, its mask decoder (alone trainable) and the teacher's decoder both
decode under the same prompt: the object's box or one point on it (``box_fraction`` of items take the
box, EdgeSAM's 50/50). Then, ``refinements`` times, one point is added where the student's mask and
the teacher's disagree (a positive point where the teacher sees the object, else a negative one) and
both decode again. Each round's student logits learn the teacher's binary mask with Dice + BCE
(EdgeSAM weighs both 5; equal weights are the same up to the learning rate). The teacher runs from
its cached embeddings: only its prompt encoder and decoder run online.
"""

from __future__ import annotations

import copy

import torch
from medkd.distill.losses import dice_bce
from torch import nn

from medkd.zoo.sam_vit import build_prompt_encoder


class PromptHead(nn.Module):
    """A SAM prompt encoder and mask decoder (frozen copies of the teacher's, for the student's input size)."""

    def __init__(self, teacher: nn.Module, img_size: int) -> None:
        super().__init__()
        grid = int(teacher.prompt_encoder.image_embedding_size[0])
        self.prompt_encoder = build_prompt_encoder(img_size, grid)
        self.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
        self.mask_decoder = copy.deepcopy(teacher.mask_decoder)
        self.requires_grad_(False)


def decode_one(
    sam: nn.Module, embedding: torch.Tensor, box: torch.Tensor | None, coords: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Low-resolution single-mask logits ``(1, 1, L, L)`` for one image embedding and its prompt."""
    points = (coords[None], labels[None]) if len(labels) else None
    sparse, dense = sam.prompt_encoder(points=points, boxes=None if box is None else box[None], masks=None)
    logits, _ = sam.mask_decoder(
        image_embeddings=embedding[None],
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return logits


def disagreement_point(student: torch.Tensor, teacher: torch.Tensor, size: int) -> tuple[torch.Tensor, int] | None:
    """A random pixel where the masks differ, in model pixels, with the teacher's label there."""
    student_mask, teacher_mask = student[0, 0] > 0, teacher[0, 0] > 0
    rows, cols = torch.nonzero(student_mask ^ teacher_mask, as_tuple=True)
    if rows.numel() == 0:
        return None
    pick = int(torch.randint(rows.numel(), (1,)))
    row, col = int(rows[pick]), int(cols[pick])
    scale = size / student_mask.shape[-1]
    point = torch.tensor([(col + 0.5) * scale, (row + 0.5) * scale], device=student.device)
    return point, int(teacher_mask[row, col])


class PromptLoop(nn.Module):
    """``forward(batch)``: per round, the student's and the teacher's low-resolution logits."""

    def __init__(self, student: nn.Module, teacher_head: PromptHead, refinements: int) -> None:
        super().__init__()
        student.requires_grad_(False)
        student.mask_decoder.requires_grad_(True)
        self.student = student
        self.teacher = teacher_head
        self.refinements = refinements

    def train(self, mode: bool = True) -> PromptLoop:
        """Only the student's decoder trains: everything else stays in eval mode (BatchNorm statistics)."""
        super().train(mode)
        self.student.image_encoder.eval()
        self.student.prompt_encoder.eval()
        self.teacher.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        size = batch["image"].shape[-1]
        with torch.no_grad():
            embeddings = self.student.image_encoder(batch["image"])
        rounds_student: list[list[torch.Tensor]] = [[] for _ in range(self.refinements + 1)]
        rounds_teacher: list[list[torch.Tensor]] = [[] for _ in range(self.refinements + 1)]
        for i in range(len(embeddings)):
            box = batch["box"][i] if bool(batch["use_box"][i]) else None
            keep = slice(0, 0) if box is not None else slice(None)
            coords, labels = batch["point_coords"][i][keep], batch["point_labels"][i][keep]
            for round_ in range(self.refinements + 1):
                student = decode_one(self.student, embeddings[i], box, coords, labels)
                with torch.no_grad():
                    teacher = decode_one(self.teacher, batch["target"][i].to(embeddings.dtype), box, coords, labels)
                rounds_student[round_].append(student)
                rounds_teacher[round_].append(teacher)
                added = disagreement_point(student.detach(), teacher, size) if round_ < self.refinements else None
                if added is not None:
                    coords = torch.cat([coords, added[0][None]])
                    labels = torch.cat([labels, torch.tensor([added[1]], device=labels.device, dtype=labels.dtype)])
        return {"student": [torch.cat(r) for r in rounds_student], "teacher": [torch.cat(r) for r in rounds_teacher]}


class PromptLoopTask:
    """Dice + BCE of every round's student logits against the teacher's mask."""

    def __init__(self, student: nn.Module, teacher_head: PromptHead, refinements: int) -> None:
        self.module = PromptLoop(student, teacher_head, refinements)

    def loss(self, outputs: dict[str, list[torch.Tensor]], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        losses = [dice_bce(s.float(), (t > 0).float()) for s, t in zip(outputs["student"], outputs["teacher"])]
        total = torch.stack(losses).mean()
        return total, {f"round{i}_loss": float(loss.detach()) for i, loss in enumerate(losses)}
