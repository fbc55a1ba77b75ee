import math

import numpy as np
import pytest
from scipy.stats import binomtest, ttest_1samp, ttest_rel, wilcoxon

from iidfusion.engine.stats import (
    holm,
    paired_bootstrap_ci,
    paired_test,
    two_level_bootstrap_ci,
    unit_level_test,
)


def test_the_paired_test_is_scipys_t_test_and_wilcoxon_on_the_same_pairs():
    a, b = [85.5, 82.5, 83.5, 84.0], [82.5, 81.5, 78.5, 84.5]
    test = paired_test(a, b)
    expected = ttest_rel(a, b)
    assert (test.t_statistic, test.p_value) == (float(expected.statistic), float(expected.pvalue))
    assert test.p_value == ttest_1samp(np.subtract(a, b), 0.0).pvalue  # the same test on the differences
    assert test.p_wilcoxon == pytest.approx(wilcoxon(np.subtract(a, b)).pvalue)
    assert test.mean_difference == pytest.approx(2.125) and test.pairs == 4


def test_a_test_without_the_pairs_it_needs_is_undefined():
    one = paired_test([0.8], [0.7])
    assert math.isnan(one.t_statistic) and math.isnan(one.p_value) and math.isnan(one.p_wilcoxon) and one.pairs == 1
    constant = paired_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])  # the same difference on every pair
    assert math.isnan(constant.p_value) and constant.mean_difference == 1.0 and not math.isnan(constant.p_wilcoxon)
    equal = paired_test([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(equal.p_value) and math.isnan(equal.p_wilcoxon) and equal.mean_difference == 0.0


def test_holm_adjustment():
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert (
        adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    )
    assert math.isnan(adjusted[2])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1


def test_the_bootstrap_interval_holds_the_mean_difference_and_is_reproducible():
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 1.0, size=20)
    b = a - 0.5 + rng.normal(0.0, 0.1, size=20)
    low, high = paired_bootstrap_ci(a, b, resamples=2000)
    assert low < float(np.mean(a - b)) < high and 0.4 < low < high < 0.6
    assert paired_bootstrap_ci(a, b, resamples=2000) == (low, high)
    wider = paired_bootstrap_ci(a, b, confidence=0.99, resamples=2000)
    assert wider[0] <= low and wider[1] >= high
    assert all(math.isnan(x) for x in paired_bootstrap_ci([1.0], [0.0]))
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_ci(a, b, confidence=1.0)


def test_unit_level_test_counts_units_and_matches_scipy():
    differences = [1.2, -0.4, 0.0, 2.5, 0.7, 0.3]
    result = unit_level_test(differences)
    assert (result.wins, result.ties, result.losses, result.units) == (4, 1, 1, 6)
    assert result.mean_difference == pytest.approx(np.mean(differences))
    assert result.p_wilcoxon == pytest.approx(wilcoxon([1.2, -0.4, 2.5, 0.7, 0.3]).pvalue)
    assert result.p_sign == pytest.approx(binomtest(4, 5).pvalue)
    # five units that all agree cannot reach 0.05 with either test: the unit, not the seed count, sets the power
    assert unit_level_test([1.0, 2.0, 3.0, 4.0, 5.0]).p_wilcoxon > 0.05
    none = unit_level_test([0.0, 0.0])
    assert math.isnan(none.p_wilcoxon) and math.isnan(none.p_sign) and none.ties == 2
    assert math.isnan(unit_level_test([]).mean_difference)


def test_two_level_interval():
    constant = {f"s{k}": np.full(5, 1.5) for k in range(4)}
    assert two_level_bootstrap_ci(constant) == pytest.approx((1.5, 1.5))
    assert all(math.isnan(v) for v in two_level_bootstrap_ci({"only": np.ones(3)}))
    rng = np.random.default_rng(1)
    spread = {f"s{k}": rng.normal(k, 1.0, size=6) for k in range(6)}
    low, high = two_level_bootstrap_ci(spread)
    pooled = np.mean([d.mean() for d in spread.values()])
    assert low < pooled < high
    # wider than a bootstrap over the set means alone, which ignores the seeds' noise
    means = np.array([d.mean() for d in spread.values()])
    draws = means[np.random.default_rng(0).integers(0, 6, (10_000, 6))].mean(axis=1)
    assert high - low > np.subtract(*np.quantile(draws, [0.975, 0.025])) * 0.95
    narrower = two_level_bootstrap_ci(spread, confidence=0.5)
    assert low < narrower[0] < narrower[1] < high
    assert two_level_bootstrap_ci(spread, seed=3) != (low, high)  # the seed is the resampling's
    with pytest.raises(ValueError, match="confidence"):
        two_level_bootstrap_ci(spread, confidence=1.0)
