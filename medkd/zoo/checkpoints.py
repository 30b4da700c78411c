"""Safe checkpoint loading: ``weights_only`` unpickling, checksums, and readable mismatch reports."""

from __future__ import annotations

import hashlib
import importlib.resources
import pickle
import re
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from medkd.artifacts import sha256_file
from medkd.errors import BadInput
from medkd.zoo.registry import CheckpointInfo

_WRAPPER_KEYS = ("model", "state_dict", "module")
_DDP_PREFIX = "module."


def state_dict_digest(model: nn.Module, skip: tuple[str, ...] = ()) -> str:
    """SHA-256 over a model's parameter names, shapes and bytes, leaving out keys under ``skip`` prefixes."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name.startswith(skip):
            continue
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise BadInput(f"checksum mismatch for {path.name}: expected SHA-256 {expected}, got {actual}")


def read_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict with ``torch.load(weights_only=True)``; never unpickle arbitrary objects.

    Training checkpoints that wrap the weights under ``model`` / ``state_dict`` and DDP's
    ``module.`` prefix are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint not found: {path}")
    if sha256:
        verify_sha256(path, sha256)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise BadInput(f"{path.name} is not a readable PyTorch checkpoint") from exc
        raise BadInput(
            f"{path.name} needs arbitrary unpickling and is refused: it refers to {found.group(1)}, "
            "and only plain state dicts load (weights_only)"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise BadInput(f"{path.name} is not a readable PyTorch checkpoint: {exc}") from exc
    state = _unwrap(loaded, path)
    return {key.removeprefix(_DDP_PREFIX): value for key, value in state.items()}


def _unwrap(loaded: object, path: Path) -> Mapping[str, torch.Tensor]:
    while isinstance(loaded, Mapping):
        wrapped = next((loaded[k] for k in _WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if wrapped is None:
            break
        loaded = wrapped
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise BadInput(f"{path.name} is not a state dict (a mapping of parameter names to tensors)")
    return loaded


@dataclass
class StateDictReport:
    """Differences between a model's state dict and a checkpoint's."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped)

    def summary(self, limit: int = 6) -> str:
        """Keys grouped by module (block indices folded to ``*``), at most ``limit`` groups each."""
        lines = []
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"{len(keys)} {title} keys: {_grouped(keys, limit)}")
        if self.misshaped:
            shown = ", ".join(
                f"{key} (model {list(want)}, checkpoint {list(got)})" for key, want, got in self.misshaped[:limit]
            )
            more = f", and {len(self.misshaped) - limit} more" if len(self.misshaped) > limit else ""
            lines.append(f"{len(self.misshaped)} mis-shaped keys: {shown}{more}")
        return "\n".join(lines)


def _module_group(key: str) -> str:
    """The module a key belongs to, cut at its first block index: ``encoder.blocks.*``."""
    parts = key.split(".")
    for position, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:position] + ["*"])
    return ".".join(parts[:-1]) or key


def _grouped(keys: list[str], limit: int) -> str:
    groups = Counter(_module_group(key) for key in keys)
    shown = [f"{group} ({count})" for group, count in groups.most_common(limit)]
    more = f", and {len(groups) - limit} more groups" if len(groups) > limit else ""
    return ", ".join(shown) + more


def compare_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> StateDictReport:
    expected = model.state_dict()
    report = StateDictReport(
        missing=sorted(set(expected) - set(state)),
        unexpected=sorted(set(state) - set(expected)),
    )
    for key in sorted(set(expected) & set(state)):
        if tuple(expected[key].shape) != tuple(state[key].shape):
            report.misshaped.append((key, tuple(expected[key].shape), tuple(state[key].shape)))
    return report


def unused_missing(report: StateDictReport, unused_keys: tuple[str, ...]) -> list[str]:
    """Take the missing keys under ``unused_keys`` prefixes out of ``report``; returns them."""
    unused = [key for key in report.missing if key.startswith(unused_keys)] if unused_keys else []
    report.missing = [key for key in report.missing if key not in unused]
    return unused


def load_checkpoint(
    model: nn.Module, path: str | Path, sha256: str | None = None, unused_keys: tuple[str, ...] = ()
) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a mismatch raises ``BadInput`` with a grouped report.

    Only keys under the ``unused_keys`` prefixes (parts of the architecture it never uses) may be
    missing from the checkpoint; they keep their initialisation.
    """
    state = read_state_dict(path, sha256)
    report = compare_state_dict(model, state)
    unused = unused_missing(report, unused_keys)
    if not report.ok:
        raise BadInput(f"{Path(path).name} does not fit this architecture:\n{report.summary()}")
    result = model.load_state_dict(state, strict=not unused)
    if sorted(result.missing_keys) != sorted(unused) or result.unexpected_keys:
        raise BadInput(f"{Path(path).name} left keys unloaded: {result.missing_keys + result.unexpected_keys}")
    return model


def packaged_checkpoint(info: CheckpointInfo) -> Path:
    """The weights file an installed package ships, after its size and SHA-256 check out."""
    try:
        resource = importlib.resources.files(info.package).joinpath(info.filename)  # type: ignore[arg-type]
    except ModuleNotFoundError:
        raise BadInput(f"{info.filename} comes with the package '{info.package}', which is not installed") from None
    with importlib.resources.as_file(resource) as found:
        path = Path(found)
    if not path.is_file():
        raise BadInput(f"the installed package '{info.package}' has no {info.filename}")
    if info.size is not None and path.stat().st_size != info.size:
        raise BadInput(f"{path.name} in '{info.package}' is {path.stat().st_size} bytes, not the published {info.size}")
    if info.sha256:
        verify_sha256(path, info.sha256)
    return path
