"""Paired comparisons over seeds: the paired tests, the Holm correction, a bootstrap interval.

Two arms run with the same seeds are paired (a seed gives both the same split, initialisation
stream and noisy test samples), so every comparison of the library is a paired one:
:func:`paired_test` (a paired t-test and a Wilcoxon signed-rank test on the same pairs),
:func:`holm` over the tests of one table, and :func:`paired_bootstrap_ci` for an interval of the
mean difference that assumes no distribution. :func:`t_interval` is the interval of one arm's mean
over its seeds that results files report beside the mean. Across data sets the unit of analysis is
the data set: :func:`unit_level_test` over the per-set mean differences and
:func:`two_level_bootstrap_ci` for their mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, ttest_rel, wilcoxon
from scipy.stats import t as student_t

CONFIDENCE = 0.95  # of every interval the results files report


@dataclass(frozen=True)
class PairedTestResult:
    """The paired tests of ``a`` against ``b``: the mean of ``a - b``, the paired t-test's
    statistic and p-value, and the Wilcoxon signed-rank test's p-value (NaN where a test is
    undefined).
    """

    mean_difference: float
    t_statistic: float
    p_value: float
    p_wilcoxon: float
    pairs: int


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTestResult:
    """The paired t-test (scipy's ``ttest_rel``) and the Wilcoxon signed-rank test (on the
    non-zero differences) of the pairs ``(a[k], b[k])``.

    The t-test is undefined (NaN) with fewer than two pairs or the same difference on every
    pair; the Wilcoxon test with fewer than two pairs or no non-zero difference.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    differences = x - y
    mean = float(np.mean(differences)) if len(differences) else math.nan
    t, p = math.nan, math.nan
    if len(differences) >= 2 and np.ptp(differences) > 0:
        result = ttest_rel(x, y)
        t, p = float(result.statistic), float(result.pvalue)
    nonzero = differences[differences != 0]
    p_wilcoxon = float(wilcoxon(nonzero).pvalue) if len(differences) >= 2 and len(nonzero) >= 1 else math.nan
    return PairedTestResult(mean, t, p, p_wilcoxon, len(differences))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count as a test).

    Every table of paired tests (compare, suite, kg compare) reports these beside the raw p:
    a table of k comparisons at level 0.05 would otherwise find a "significant" difference by
    chance with probability up to 1 - 0.95^k. Holm controls that family-wise error rate
    without assuming the tests independent (they are not: they share methods and seeds).
    """
    valid = sorted((p, k) for k, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, k) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[k] = running
    return adjusted


def paired_bootstrap_ci(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``a - b``: the pairs resampled with
    replacement ``resamples`` times (seeded, so the interval is reproducible); (NaN, NaN) with
    fewer than two pairs.
    """
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"need 0 < confidence < 1 and resamples >= 1, got {confidence}, {resamples}")
    differences = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(differences) < 2:
        return math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(mean, half-width) of the Student t interval of the mean of ``values`` at ``confidence``
    (n - 1 degrees of freedom): the mean is in ``mean ± half-width`` with that confidence if the
    values are a normal sample. The half-width is NaN with fewer than two values (no interval).
    """
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) < 2:
        return float(x[0]), math.nan
    half = float(student_t.ppf((1 + confidence) / 2, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x)))
    return float(np.mean(x)), half


@dataclass(frozen=True)
class UnitLevelTest:
    """One comparison whose unit of analysis is given by the caller (the data set across data
    sets; the seed within one): the mean of the units' differences, the Wilcoxon signed-rank
    test and the two-sided sign test over them (NaN where undefined), and the units won, tied
    and lost. Seeds of several data sets are not independent draws of the effect, so a test over
    data set x seed pairs overstates the evidence (docs/protocol.md, "Unit of analysis and tests").
    """

    mean_difference: float
    p_wilcoxon: float
    p_sign: float
    wins: int
    ties: int
    losses: int

    @property
    def units(self) -> int:
        return self.wins + self.ties + self.losses


def unit_level_test(differences: Sequence[float]) -> UnitLevelTest:
    """:class:`UnitLevelTest` of one difference per unit (e.g. a data set's mean over its seeds).

    The Wilcoxon test drops zero differences and needs two non-zero ones; the sign test counts
    wins against losses and needs one of either.
    """
    units = np.asarray(differences, dtype=float)
    nonzero = units[units != 0]
    p_wilcoxon = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else math.nan
    wins, losses = int((units > 0).sum()), int((units < 0).sum())
    p_sign = float(binomtest(wins, wins + losses).pvalue) if wins + losses else math.nan
    mean = float(units.mean()) if len(units) else math.nan
    return UnitLevelTest(mean, p_wilcoxon, p_sign, wins, len(units) - wins - losses, losses)


def two_level_bootstrap_ci(
    per_set: Mapping[str, Sequence[float]], *, confidence: float = CONFIDENCE, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of the per-set mean differences that resamples
    both levels: the data sets with replacement, then each drawn set's seeds afresh. ``per_set``
    maps a data set to its seeds' differences; (NaN, NaN) with fewer than two data sets.
    """
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"need 0 < confidence < 1 and resamples >= 1, got {confidence}, {resamples}")
    sets = [np.asarray(d, dtype=float) for d in per_set.values()]
    count = len(sets)
    if count < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    # inner[k, b, j]: the mean of set k's seeds resampled afresh for position j of replicate b
    inner = np.stack([d[rng.integers(0, len(d), (resamples, count, len(d)))].mean(axis=2) for d in sets])
    picked = rng.integers(0, count, (resamples, count))
    means = inner[picked, np.arange(resamples)[:, None], np.arange(count)[None, :]].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
