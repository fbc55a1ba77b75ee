"""tasks.classification.predict: a trained model's predictions of raw rows, scaled as its training split,
at test time, one row per input row in order.

The model is ``tests/fixtures/checkpoints/fit_best.ckpt`` (a tiny IID-P, PDF weights, on the 30 rows of
``handwritten_6views_excerpt.mat``; tests/fixtures/README.md), so nothing is trained here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from iidfusion.api import load_model
from iidfusion.data.features.registry import load_dataset, read_dataset
from iidfusion.engine.checkpoint import TrainedModel
from iidfusion.fusion import at_test_time
from iidfusion.tasks.classification.predict import Predictions, as_view_arrays, predict_scaled, predict_views

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DATA = FIXTURES / "handwritten_6views_excerpt.mat"


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return load_model(FIXTURES / "checkpoints" / "fit_best.ckpt")


@pytest.fixture(scope="module")
def raw_views() -> dict[str, np.ndarray]:
    """The file's rows, unscaled and unsplit (uint8, uint16 and float64 views)."""
    return read_dataset(DATA)[1].views


@pytest.fixture(scope="module")
def predictions(trained: TrainedModel, raw_views: dict[str, np.ndarray]) -> Predictions:
    return predict_views(trained, raw_views)


def test_one_row_of_probabilities_class_and_weights_per_input_row(trained, predictions):
    assert len(predictions) == 30 and predictions.classes == tuple(str(k) for k in range(1, 11))
    assert predictions.views == tuple(trained.inputs) == tuple(f"view{k}" for k in range(6))
    assert predictions.probabilities.shape == (30, 10) and predictions.weights.shape == (30, 6)
    torch.testing.assert_close(predictions.probabilities.sum(dim=1), torch.ones(30))
    torch.testing.assert_close(predictions.weights.sum(dim=1), torch.ones(30))
    assert torch.equal(predictions.predicted, predictions.probabilities.argmax(dim=1))
    assert predictions.labels == [predictions.classes[k] for k in predictions.predicted.tolist()]
    assert len(set(predictions.labels)) > 1  # not one class for every row


def test_raw_rows_are_scaled_as_the_training_split_was(trained, raw_views, predictions):
    """The test split of load_dataset(scale=the model's scaler) is rows 20..29 of the file: its predictions
    are those rows' predictions from the raw values."""
    splits = load_dataset(DATA, seed=0, scale=trained.scaler)
    rows = torch.as_tensor(splits.rows["test"])
    assert rows.tolist() == list(range(20, 30))
    scaled = predict_scaled(trained, splits.test.views)
    torch.testing.assert_close(scaled.probabilities, predictions.probabilities[rows])
    torch.testing.assert_close(scaled.weights, predictions.weights[rows])
    unscaled = {name: torch.as_tensor(view, dtype=torch.float32) for name, view in raw_views.items()}
    assert not torch.allclose(predict_scaled(trained, unscaled).probabilities, predictions.probabilities)


def test_the_model_predicts_as_on_the_test_split(trained, predictions):
    """PDF calibrates its weights on the test split only: the predictions are the test-time ones."""
    model = trained.model
    splits = load_dataset(DATA, seed=0, scale=trained.scaler)
    rows = torch.as_tensor(splits.rows["test"])
    with torch.no_grad():
        validation_like = model(splits.test.views).weights
        with at_test_time(model):
            test_time = model(splits.test.views).weights
    torch.testing.assert_close(predictions.weights[rows], test_time)
    assert (predictions.weights[rows] - validation_like).abs().max() > 1e-4
    assert not model.strategy.test_time and not model.training  # the model is left as it was


def test_batches_and_row_order_change_nothing_but_the_order(trained, raw_views, predictions):
    small = predict_views(trained, raw_views, batch_size=7)
    torch.testing.assert_close(small.probabilities, predictions.probabilities)
    torch.testing.assert_close(small.weights, predictions.weights)
    order = np.arange(30)[::-1].copy()
    backwards = predict_views(trained, {name: view[order] for name, view in reversed(raw_views.items())})
    torch.testing.assert_close(backwards.probabilities, predictions.probabilities[order])
    assert backwards.views == predictions.views  # columns in the model's view order, whatever the mapping's


def test_views_of_other_names_or_widths_are_refused_naming_both(trained, raw_views):
    expected = str(trained.inputs)
    narrower = dict(raw_views, view5=raw_views["view5"][:, :5])
    missing = {name: view for name, view in raw_views.items() if name != "view0"}
    extra = dict(raw_views, view6=raw_views["view5"])
    for views in (narrower, missing, extra):
        with pytest.raises(ValueError) as error:
            predict_views(trained, views, source="new.csv")
        widths = {name: array.shape[1] for name, array in views.items()}
        assert str(error.value) == f"new.csv: views {widths} (name: width); the model was trained on {expected}"


def test_a_knowledge_graph_model_is_refused(trained, raw_views):
    with pytest.raises(ValueError, match=r"^new\.csv: a knowledge-graph model; predictions are for models of"):
        predict_views(replace(trained, method="kg"), raw_views, source="new.csv")


def test_views_become_rows_of_numbers_as_training_flattens_them():
    arrays = as_view_arrays(
        {
            "image": torch.arange(24.0).reshape(2, 3, 4),
            "score": [0.5, 1.5],
            "flags": np.array([[True], [False]]),
            7: np.zeros((2, 3), dtype=np.uint16),
        },
        "x",
    )
    assert {name: a.shape for name, a in arrays.items()} == {
        "image": (2, 12),
        "score": (2, 1),
        "flags": (2, 1),
        "7": (2, 3),
    }
    assert np.array_equal(arrays["image"][1], np.arange(12.0, 24.0))  # row-major: one image per row


@pytest.mark.parametrize(
    ("view", "message"),
    [
        (np.array([["a", "b"]]), "new.csv: view 'v' holds <U1 values, not numbers"),
        (np.array([1 + 2j]), "new.csv: view 'v' holds complex128 values, not numbers"),
        (3.0, "new.csv: view 'v' is a single value; expected one row per sample"),
    ],
)
def test_views_that_are_not_rows_of_numbers_are_refused(view, message):
    with pytest.raises(ValueError) as error:
        as_view_arrays({"v": view}, "new.csv")
    assert str(error.value) == message
