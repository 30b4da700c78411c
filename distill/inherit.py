"""Start a student's image encoder from its teacher's weights (DistilBERT-style initialisation).

Every tensor whose name and shape agree is copied; a 1 x 1 convolution kernel of the teacher goes to
the centre tap of the student's k x k kernel (LiteMedSAM's stride-1 stem into TinyViT's stride-2 stem:
the student then starts as the teacher's stem applied to a subsampled image). Nothing else is copied.
"""

from __future__ import annotations

import torch
from torch import nn


def _centre_tap(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor | None:
    """The 1 x 1 kernel ``teacher`` placed in the centre of a zero kernel shaped like ``student``."""
    if teacher.ndim != 4 or student.ndim != 4 or teacher.shape[:2] != student.shape[:2] or teacher.shape[2:] != (1, 1):
        return None
    height, width = student.shape[2:]
    if height % 2 == 0 or width % 2 == 0:
        return None
    kernel = torch.zeros_like(student)
    kernel[:, :, height // 2, width // 2] = teacher[:, :, 0, 0]
    return kernel


@torch.no_grad()
def inherit_encoder(student: nn.Module, teacher: nn.Module) -> dict[str, int]:
    """Copy the teacher's image-encoder weights into the student's where they fit; returns counts."""
    source = teacher.image_encoder.state_dict()
    target = student.image_encoder.state_dict()
    copied, centred = {}, 0
    for key, value in target.items():
        found = source.get(key)
        if found is None:
            continue
        if found.shape == value.shape:
            copied[key] = found
        elif (kernel := _centre_tap(found, value)) is not None:
            copied[key] = kernel
            centred += 1
    student.image_encoder.load_state_dict(copied, strict=False)
    return {"tensors": len(copied), "centre_taps": centred, "of": len(target)}
