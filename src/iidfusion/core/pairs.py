"""Unordered modality pairs, the index set of L_dc (docs/method.md, "Distribution coherence")."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

Pair = tuple[str, str]


def modality_pairs(names: Sequence[str]) -> tuple[Pair, ...]:
    """All unordered pairs (m1, m2), m1 before m2 in ``names`` order."""
    return tuple(itertools.combinations(names, 2))
