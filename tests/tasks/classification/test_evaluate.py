import pytest
import torch

from iidfusion.data.features.noise import corrupt_views
from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification.evaluate import classification_metrics, evaluate_under_noise, predict
from iidfusion.tasks.classification.module import build_feature_model


@pytest.fixture
def model(tiny_splits, fast_config):
    torch.manual_seed(0)
    return build_feature_model(
        get_method("if-static"), tiny_splits.view_dims, 3, len(tiny_splits.train), fast_config.model
    )


def test_metrics_by_hand():
    predictions, labels = torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 2, 2, 0])
    accuracy, f1 = classification_metrics(predictions, labels, 3)
    # class F1: 0 -> 2/3 (P 1, R 1/2), 1 -> 2/3 (P 1/2, R 1), 2 -> 2/3 (P 2/3, R 2/3)
    assert accuracy == pytest.approx(4 / 6) and f1 == pytest.approx(2 / 3)


def test_clean_level_is_the_test_split(model, tiny_splits):
    (clean,) = evaluate_under_noise(model, tiny_splits, [0])
    expected = classification_metrics(predict(model, tiny_splits.test), tiny_splits.test.labels, 3)
    assert (clean.noise, clean.accuracy, clean.macro_f1) == (0.0, *expected)
    assert model.training, "evaluation restores the training mode"


@pytest.mark.parametrize("view", ["all", "m2"])
def test_noise_uses_the_protocol_on_the_chosen_views(model, tiny_splits, view):
    results = evaluate_under_noise(model, tiny_splits, [0, 10, 30], view=view, seed=5)
    for result in results[1:]:
        noisy = corrupt_views(
            tiny_splits.test, result.noise, reference=tiny_splits.train, views=None if view == "all" else view, seed=5
        )
        assert noisy.views["m0"].equal(tiny_splits.test.views["m0"]) == (view == "m2")
        expected = classification_metrics(predict(model, noisy), noisy.labels, 3)
        assert (result.accuracy, result.macro_f1) == expected
    assert [r.noise for r in results] == [0.0, 10.0, 30.0]


def test_noise_degrades_a_trained_model(fast_config, tmp_path):
    """Strong noise on every view costs accuracy (the protocol reaches the model's inputs)."""
    from dataclasses import replace

    import numpy as np

    from iidfusion.data import generate_synthetic, load_dataset
    from iidfusion.tasks.classification.fit import fit_method
    from tests.conftest import TINY

    data = generate_synthetic(TINY, num_samples=600, seed=0)  # 120 test samples: one is 0.8 points
    np.savez(tmp_path / "views.npz", labels=data.labels.numpy(), **{k: v.numpy() for k, v in data.views.items()})
    splits = load_dataset(tmp_path / "views.npz", seed=0)
    config = replace(
        fast_config,
        optim=replace(fast_config.optim, lr=0.01),
        train=replace(fast_config.train, max_epochs=10, patience=0, loggers=(), checkpoints=False),
    )
    result = fit_method(splits, "if-static", 0, config)
    assert result.metrics[0].accuracy > 0.7  # trained (chance is 1/3)
    (very_noisy,) = evaluate_under_noise(result.module.model, splits, [100], seed=0)
    assert very_noisy.accuracy < result.metrics[0].accuracy - 0.1


def test_bad_noise_requests(model, tiny_splits):
    with pytest.raises(ValueError, match="noise view 'nope' is not a view"):
        evaluate_under_noise(model, tiny_splits, [5], view="nope")
    with pytest.raises(ValueError, match="noise level"):
        evaluate_under_noise(model, tiny_splits, [-1])
