"""Shared fixtures: where the real medical data lives, and whether its absence is an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``MEDKD_DATA`` if set, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("MEDKD_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; skipped when absent, except under CI where its absence fails."""
    path = shared_data_dir()
    if not path.is_dir():
        message = f"real medical data not found at {path} (set MEDKD_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
