"""One verdict of ``medkd verify`` (members, schema, a file, the signature, a variant on this device)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "fail", "skip"]


@dataclass
class Check:
    """One verdict: ``pass``, ``fail`` or ``skip`` (not checkable here, or not applicable), and why."""

    name: str
    status: Status
    message: str
