"""The feature-view noise protocol: statistics, reproducibility, and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iidfusion.data.features.base import MultiViewData
from iidfusion.data.features.noise import FEATURE_NOISE, corrupt_views


def make_data(n: int, seed: int) -> MultiViewData:
    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.5, 1.0, 3.0, 0.0])  # the last feature is constant
    return MultiViewData(
        {"a": torch.randn(n, 4, generator=gen) * scales, "b": torch.rand(n, 3, generator=gen)},
        torch.randint(0, 3, (n,), generator=gen),
    )


TRAIN = make_data(2000, 0)
TEST = make_data(4000, 1)


def changed_rows(noisy: MultiViewData, name: str) -> torch.Tensor:
    return (noisy.views[name] != TEST.views[name]).any(dim=1)


@pytest.mark.parametrize("level", [5.0, 10.0])
def test_gaussian_corrupts_half_the_samples_with_std_in_tenths_of_train_std(level: float) -> None:
    noisy = corrupt_views(TEST, level, reference=TRAIN, seed=0)
    rows = changed_rows(noisy, "a")
    assert 0.47 < rows.double().mean().item() < 0.53
    added = (noisy.views["a"] - TEST.views["a"])[rows].double()
    train_std = TRAIN.views["a"].double().std(dim=0, unbiased=False)
    ratio = added[:, :3].std(dim=0) / train_std[:3]
    np.testing.assert_allclose(ratio.numpy(), level / 10, rtol=0.05)
    assert added[:, :3].mean(dim=0).abs().max() < 0.1 * train_std.max()
    assert torch.all(added[:, 3] == 0)  # a constant training feature gets no noise


def test_each_view_has_its_own_coin_by_default_and_one_coin_per_sample_when_shared() -> None:
    independent = corrupt_views(TEST, 5, reference=TRAIN, seed=0)
    a, b = changed_rows(independent, "a").double(), changed_rows(independent, "b").double()
    for rows in (a, b):
        assert abs(rows.mean().item() - 0.5) < 0.03  # 4000 samples: 4 standard errors
    # Independent coins: the four (a, b) patterns each about a quarter, correlation near 0.
    for pattern in ((0, 0), (0, 1), (1, 0), (1, 1)):
        share = ((a == pattern[0]) & (b == pattern[1])).double().mean().item()
        assert abs(share - 0.25) < 0.03, pattern
    assert abs(np.corrcoef(a.numpy(), b.numpy())[0, 1]) < 0.06
    shared = corrupt_views(TEST, 5, reference=TRAIN, mask="shared", seed=0)
    assert torch.equal(changed_rows(shared, "a"), changed_rows(shared, "b"))
    assert 0.47 < changed_rows(shared, "a").double().mean().item() < 0.53


def test_a_views_corruption_does_not_depend_on_the_other_views() -> None:
    both = corrupt_views(TEST, 10, reference=TRAIN, seed=4)
    alone = corrupt_views(TEST, 10, reference=TRAIN, views="b", seed=4)
    assert torch.equal(both.views["b"], alone.views["b"])
    assert alone.views["a"] is TEST.views["a"]


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    first = corrupt_views(TEST, 5, reference=TRAIN, seed=7)
    again = corrupt_views(TEST, 5, reference=TRAIN, seed=7)
    other = corrupt_views(TEST, 5, reference=TRAIN, seed=8)
    assert torch.equal(first.views["a"], again.views["a"])
    assert not torch.equal(first.views["a"], other.views["a"])


def test_noise_of_a_sample_does_not_depend_on_the_split_length() -> None:
    full = corrupt_views(TEST, 10, reference=TRAIN, seed=3)
    head = corrupt_views(TEST.subset(torch.arange(100)), 10, reference=TRAIN, seed=3)
    assert torch.equal(head.views["b"], full.views["b"][:100])


def test_level_zero_is_the_identity() -> None:
    for kind in FEATURE_NOISE:
        noisy = corrupt_views(TEST, 0, reference=TRAIN, kind=kind, seed=1)
        for name in TEST.views:
            assert torch.equal(noisy.views[name], TEST.views[name])


def test_only_the_named_view_changes_and_inputs_are_untouched() -> None:
    before = {name: view.clone() for name, view in TEST.views.items()}
    one = corrupt_views(TEST, 10, reference=TRAIN, views="b", seed=2)
    every = corrupt_views(TEST, 10, reference=TRAIN, seed=2)
    assert one.views["a"] is TEST.views["a"]
    assert not torch.equal(one.views["b"], TEST.views["b"])
    assert torch.equal(one.views["b"], every.views["b"])  # a view's noise ignores the other views
    assert torch.equal(one.labels, TEST.labels)
    for name, view in before.items():
        assert torch.equal(TEST.views[name], view)


def test_salt_and_pepper_replaces_features_by_train_extremes() -> None:
    level = 10.0
    noisy = corrupt_views(TEST, level, reference=TRAIN, kind="salt-and-pepper", views=["b"], seed=4)
    rows = changed_rows(corrupt_views(TEST, level, reference=TRAIN, views="b", seed=4), "b")  # the seed's mask
    replaced = noisy.views["b"] != TEST.views["b"]
    assert not replaced[~rows].any()
    assert 0.47 < replaced[rows].double().mean().item() < 0.53  # 0.05 * level of the features
    low, high = TRAIN.views["b"].min(dim=0).values, TRAIN.views["b"].max(dim=0).values
    values = noisy.views["b"]
    assert torch.all((values == low) | (values == high) | ~replaced)
    assert (values == low)[replaced].double().mean().item() == pytest.approx(0.5, abs=0.03)


def test_dtype_and_probability_are_respected() -> None:
    half = MultiViewData({"a": TEST.views["a"].to(torch.float64)}, TEST.labels)
    noisy = corrupt_views(half, 5, reference=TRAIN, probability=1.0, seed=0)
    assert noisy.views["a"].dtype == torch.float64
    assert (noisy.views["a"][:, :3] != half.views["a"][:, :3]).all()
    untouched = corrupt_views(TEST, 5, reference=TRAIN, probability=0.0, seed=0)
    assert torch.equal(untouched.views["a"], TEST.views["a"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": -1.0}, "noise level must be finite and >= 0, got -1.0"),
        ({"level": float("nan")}, "noise level must be finite and >= 0, got nan"),
        ({"views": "c"}, r"unknown view 'c'; the data has views \['a', 'b'\]"),
        ({"kind": "speckle"}, r"unknown noise kind 'speckle'; expected one of \['gaussian', 'salt-and-pepper'\]"),
        ({"probability": 1.5}, r"corruption probability must lie in \[0, 1\], got 1.5"),
        ({"level": 1e300}, "noise level 1e\\+300 overflows view 'a' in torch.float32"),
        ({"mask": "per-pixel"}, r"unknown noise mask 'per-pixel'; expected one of \['independent', 'shared'\]"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"level": 5.0} | kwargs
    with pytest.raises(ValueError, match=message):
        corrupt_views(TEST, reference=TRAIN, **arguments)


def test_reference_must_have_the_view_with_the_same_width() -> None:
    reference = MultiViewData({"a": TRAIN.views["a"][:, :2]}, TRAIN.labels)
    with pytest.raises(ValueError, match="view 'a' of the reference split is missing or has a different width"):
        corrupt_views(TEST, 5, reference=reference, views="a")
