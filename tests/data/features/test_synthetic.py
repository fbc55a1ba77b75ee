import pytest
import torch

from iidfusion.data.features.base import MultiViewData
from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic, generate_synthetic_with_quality


@pytest.mark.parametrize("modalities", [2, 3, 4])
def test_shapes_dtypes_names_and_balanced_labels(modalities):
    config = SyntheticConfig(num_modalities=modalities, num_classes=5, relevant_dims=3, noise_dims=7)
    data = generate_synthetic(config, num_samples=103, seed=1)
    assert isinstance(data, MultiViewData)
    assert data.view_names == tuple(f"m{k}" for k in range(modalities))
    for view in data.views.values():
        assert view.shape == (103, 10) and view.dtype == torch.float32
    assert data.labels.dtype == torch.long
    counts = torch.bincount(data.labels, minlength=5)
    assert counts.max() - counts.min() <= 1


def test_deterministic_per_seed_and_different_across_seeds():
    config = SyntheticConfig(num_modalities=3)
    a, b = generate_synthetic(config, 50, seed=7), generate_synthetic(config, 50, seed=7)
    c = generate_synthetic(config, 50, seed=8)
    assert all(torch.equal(a.views[k], b.views[k]) for k in a.views) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.views["m0"], c.views["m0"])


def test_sample_seeds_share_one_world():
    # Class means come from structure_seed: per-class averages agree across sample seeds.
    config = SyntheticConfig(corrupt_fraction=0.0, noise_std=0.05)

    def class_means(seed):
        data = generate_synthetic(config, 400, seed)
        return torch.stack([data.views["m0"][data.labels == c].mean(0) for c in range(config.num_classes)])

    torch.testing.assert_close(class_means(0), class_means(1), atol=0.02, rtol=0)
    other_world = SyntheticConfig(corrupt_fraction=0.0, noise_std=0.05, structure_seed=1)
    data = generate_synthetic(other_world, 400, 0)
    assert not torch.allclose(data.views["m0"][data.labels == 0].mean(0), class_means(0)[0], atol=0.1)


def test_shift_translates_each_modality_along_orthonormal_directions():
    # Same seed, shift s vs 0: each view moves by exactly s u_m, u orthonormal, so two modalities'
    # distributions differ by a translation of length s sqrt(2) (their W distance).
    base = SyntheticConfig(num_modalities=3, corrupt_fraction=0.1, shift=0.0)
    moved = generate_synthetic(SyntheticConfig(num_modalities=3, corrupt_fraction=0.1, shift=0.7), 64, seed=0)
    still = generate_synthetic(base, 64, seed=0)
    offsets = torch.stack([(moved.views[k] - still.views[k]).double() for k in still.views])  # (M, N, d)
    torch.testing.assert_close(offsets, offsets[:, :1].expand_as(offsets), atol=1e-5, rtol=0)
    directions = offsets[:, 0] / 0.7
    torch.testing.assert_close(directions @ directions.T, torch.eye(3, dtype=torch.float64), atol=1e-5, rtol=0)


def test_every_view_carries_the_same_class_means():
    config = SyntheticConfig(num_modalities=3, shift=2.0, corrupt_fraction=0.0)
    data = generate_synthetic(config, 4000, seed=0)
    centred = {k: v - v.mean(0) for k, v in data.views.items()}
    for k in ("m1", "m2"):
        torch.testing.assert_close(
            centred["m0"][data.labels == 1].mean(0), centred[k][data.labels == 1].mean(0), atol=0.15, rtol=0
        )


def test_corruption_hits_one_modality_per_chosen_sample_and_hurts_it():
    config = SyntheticConfig(num_modalities=3, corrupt_fraction=0.3, class_separation=4.0)
    data, corrupted = generate_synthetic_with_quality(config, 3000, seed=2)
    assert corrupted.shape == (3000, 3) and corrupted.dtype == torch.bool
    assert corrupted.sum(1).max() == 1
    assert corrupted.any(1).float().mean().item() == pytest.approx(0.3, abs=0.03)
    # nearest-class-mean accuracy on view m0: clean samples far above corrupted ones
    clean_world = generate_synthetic(
        SyntheticConfig(num_modalities=3, corrupt_fraction=0.0, class_separation=4.0), 3000, 3
    )
    r = config.relevant_dims
    means = torch.stack(
        [clean_world.views["m0"][clean_world.labels == c, :r].mean(0) for c in range(config.num_classes)]
    )
    predicted = torch.cdist(data.views["m0"][:, :r], means).argmin(1)
    right = predicted == data.labels
    clean_acc, corrupt_acc = right[~corrupted[:, 0]].float().mean(), right[corrupted[:, 0]].float().mean()
    assert clean_acc > corrupt_acc + 0.3


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_modalities": 1},
        {"num_classes": 1},
        {"relevant_dims": 0},
        {"corrupt_fraction": 1.5},
        {"shift": -1.0},
        {"noise_std": 0.0},
        {"relevant_dims": 1, "noise_dims": 0, "num_modalities": 2},
    ],
)
def test_invalid_config_raises(overrides):
    with pytest.raises(ValueError, match="SyntheticConfig"):
        SyntheticConfig(**overrides)


def test_invalid_sample_count_raises():
    with pytest.raises(ValueError, match="num_samples"):
        generate_synthetic(SyntheticConfig(), 0)
