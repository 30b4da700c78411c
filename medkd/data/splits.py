"""Subject-level train / val / test splits, fixed by a seed.

Within each dataset subjects are ordered by SHA-256 of (seed, dataset, subject), so a subject's place
does not depend on which other subjects exist; the first ``round(n * test)`` go to test, the next
``round(n * val)`` to val, the rest to train. A dataset with at least three subjects gets at least
one subject in every split whose fraction is not zero; with two, one train and one test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from medkd.errors import BadInput

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
DEFAULT_SEED = 0


def check_fractions(fractions: Iterable[float]) -> tuple[float, float, float]:
    """Validate train / val / test fractions: three non-negative numbers summing to 1."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise BadInput(f"split fractions must be three non-negative numbers summing to 1, got {values}")
    return values  # type: ignore[return-value]


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Number of train, val and test subjects out of ``n``."""
    train_f, val_f, test_f = fractions
    test, val = round(n * test_f), round(n * val_f)
    if n >= 3:
        test, val = max(test, int(test_f > 0)), max(val, int(val_f > 0))
    elif n == 2:
        test, val = int(test_f > 0), int(val_f > 0 and test_f == 0)
    else:
        test, val = 0, 0
    while test + val >= n and train_f > 0 and n > 0:
        if val >= test:
            val -= 1
        else:
            test -= 1
    return n - val - test, val, test


def assign_splits(
    dataset: str,
    subjects: Iterable[str],
    seed: int = DEFAULT_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> dict[str, str]:
    """Subject -> ``train`` / ``val`` / ``test`` for one dataset."""
    ordered = sorted(set(subjects), key=lambda s: hashlib.sha256(f"{seed}\0{dataset}\0{s}".encode()).hexdigest())
    _, val, test = split_counts(len(ordered), check_fractions(fractions))
    return {
        subject: "test" if rank < test else "val" if rank < test + val else "train"
        for rank, subject in enumerate(ordered)
    }
