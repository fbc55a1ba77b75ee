"""The split fractions of a data set without splits of its own (``val_fraction``, ``test_fraction``)."""

import pytest

from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.validation import load_splits, validate_config


def test_fractions_set_the_split_sizes() -> None:
    default = load_splits(load_config(overrides={"data": "synthetic"}), seed=0)
    wider = load_splits(load_config(overrides={"data": "synthetic", "val_fraction": 0.2}), seed=0)
    total = len(default.train) + len(default.val) + len(default.test)
    assert len(default.val) == pytest.approx(0.1 * total, abs=len(default.class_names))
    assert len(wider.val) == pytest.approx(0.2 * total, abs=len(wider.class_names))
    assert len(wider.test) == len(default.test)
    assert len(wider.train) == total - len(wider.val) - len(wider.test)


@pytest.mark.parametrize(("key", "value"), [("val_fraction", 0.0), ("test_fraction", 1.0)])
def test_a_fraction_outside_zero_one_is_refused(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        validate_config(load_config(overrides={key: value}))


def test_fractions_that_leave_no_training_data_are_refused() -> None:
    with pytest.raises(ValueError, match="nothing to train on"):
        validate_config(load_config(overrides={"val_fraction": 0.5, "test_fraction": 0.5}))
