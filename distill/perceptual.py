"""Perceptual loss for KD-SAM: distance between features of a fixed network, on mask probability maps.

The student's and the teacher's embeddings are decoded by the same frozen SAM decoder under the
object's box; each probability map, as a 3-channel image, passes through a fixed feature network and
the loss is the mean over its layers of the squared feature difference. So the encoder is pushed to
produce embeddings whose masks look like the teacher's (shape, edges), not only to match the
embedding numerically.

Feature networks: ``teacher`` (default) uses the patch embedding and the first blocks of the teacher's
own image encoder (frozen), which needs no other weights; a path uses torchvision's VGG16
``features`` from that checkpoint (a full ``vgg16`` state dict or only its ``features``), at the
layers relu1_2, relu2_2 and relu3_3 (Johnson et al. 2016).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from medkd.data.geometry import PIXEL_MEAN, PIXEL_STD
from medkd.errors import BadInput
from medkd.zoo import read_state_dict

VGG_LAYERS = (3, 8, 15)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureNetwork(nn.Module):
    """A frozen network mapping ``(B, 1, H, W)`` probabilities to a list of feature maps."""

    def __init__(self, layers: nn.ModuleList, taps: tuple[int, ...], size: int, mean: tuple, std: tuple, scale: float) -> None:
        super().__init__()
        self.layers = layers
        self.taps = taps
        self.size = size
        self.scale = scale
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)  # fixed: no dropout, no statistics updates

    def forward(self, probabilities: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(probabilities, (self.size, self.size), mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) * self.scale - self.mean) / self.std
        features = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.taps:
                features.append(x)
        return features


class _AddPositions(nn.Module):
    def __init__(self, pos_embed: torch.Tensor | None) -> None:
        super().__init__()
        self.pos_embed = None if pos_embed is None else nn.Parameter(pos_embed.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.pos_embed is None else x + self.pos_embed


def teacher_features(teacher: nn.Module, blocks: int) -> FeatureNetwork:
    """Patch embedding and the first ``blocks`` blocks of the teacher's encoder: transformer blocks of a
    SAM ViT, or the convolution blocks of a TinyViT's first stage (at a quarter of its input size:
    LiteMedSAM's stride-1 stem keeps full resolution there)."""
    encoder = teacher.image_encoder
    if hasattr(encoder, "layers") and not hasattr(encoder, "blocks"):
        first = encoder.layers[0].blocks
        if not 1 <= blocks <= len(first):
            raise BadInput(f"perceptual_blocks must be 1..{len(first)} for a TinyViT teacher, not {blocks}")
        layers = nn.ModuleList([copy.deepcopy(encoder.patch_embed), *copy.deepcopy(first[:blocks])])
        return FeatureNetwork(layers, tuple(range(1, 1 + blocks)), int(encoder.img_size) // 4, (0.0,) * 3, (1.0,) * 3, 1.0)
    if not hasattr(encoder, "blocks"):
        raise BadInput("the perceptual network 'teacher' needs a ViT or TinyViT teacher; give a VGG16 checkpoint instead")
    if not 1 <= blocks <= len(encoder.blocks):
        raise BadInput(f"perceptual_blocks must be 1..{len(encoder.blocks)}, not {blocks}")
    layers = nn.ModuleList(
        [copy.deepcopy(encoder.patch_embed), _AddPositions(encoder.pos_embed), *copy.deepcopy(encoder.blocks[:blocks])]
    )
    taps = tuple(range(2, 2 + blocks))
    return FeatureNetwork(layers, taps, int(encoder.img_size), PIXEL_MEAN, PIXEL_STD, 255.0)


def vgg_features(checkpoint: str, size: int) -> FeatureNetwork:
    """torchvision VGG16 ``features`` up to relu3_3, weights from ``checkpoint``."""
    from torchvision.models import vgg16

    features = vgg16(weights=None).features[: VGG_LAYERS[-1] + 1]
    state = read_state_dict(checkpoint)
    state = {key.removeprefix("features."): value for key, value in state.items() if not key.startswith("classifier.")}
    state = {key: value for key, value in state.items() if key.split(".")[0].isdigit() and int(key.split(".")[0]) <= VGG_LAYERS[-1]}
    features.load_state_dict(state)
    return FeatureNetwork(nn.ModuleList(features), VGG_LAYERS, size, IMAGENET_MEAN, IMAGENET_STD, 1.0)


def perceptual_distance(network: FeatureNetwork, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the network's layers of the MSE between features of the two probability maps."""
    student = network(torch.sigmoid(student_logits.float()))
    with torch.no_grad():
        teacher = network(torch.sigmoid(teacher_logits.float()))
    return torch.stack([F.mse_loss(s, t) for s, t in zip(student, teacher)]).mean()
