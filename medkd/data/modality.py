"""Canonical modality names, and a modality guessed from the words of a name.

Modality decides the intensity normalisation (CT windowing versus percentile clipping) and groups
metrics. Canonical names: CT, MR, US, XR, PET, microscopy, endoscopy, dermoscopy, fundus, unknown.
"""

from __future__ import annotations

import re

UNKNOWN = "unknown"
_ALIASES = {
    "ct": "CT",
    "mr": "MR",
    "mri": "MR",
    "t1": "MR",
    "t2": "MR",
    "flair": "MR",
    "us": "US",
    "ultrasound": "US",
    "xr": "XR",
    "xray": "XR",
    "x-ray": "XR",
    "cxr": "XR",
    "pet": "PET",
    "microscopy": "microscopy",
    "nuclei": "microscopy",
    "cells": "microscopy",
    "histology": "microscopy",
    "histopathology": "microscopy",
    "fluorescence": "microscopy",
    "endoscopy": "endoscopy",
    "colonoscopy": "endoscopy",
    "dermoscopy": "dermoscopy",
    "fundus": "fundus",
}
CANONICAL = sorted(set(_ALIASES.values()) | {UNKNOWN})


def canonical_modality(name: str) -> str:
    """Map a modality name or alias (any case) to its canonical name, or ``unknown``."""
    return _ALIASES.get(name.strip().lower(), UNKNOWN)


def guess_modality(*names: str) -> str:
    """First modality named by a word of ``names`` (split on ``-``, ``_``, spaces and dots)."""
    for name in names:
        for word in re.split(r"[-_ .]+", name.lower()):
            if word in _ALIASES:
                return _ALIASES[word]
    return UNKNOWN
