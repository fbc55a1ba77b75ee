"""Intermediate fusion with many views learns (docs/evidence.md, "Intermediate fusion against late fusion").

Averaging 12 weak views with weights 1/12, the paper's IF (the target mapping trained on the fused
feature only, no unimodal heads for static weights) leaves chance within a few epochs, as late
fusion does, without training g on any modality alone.
"""

from dataclasses import replace

import pytest

from iidfusion.data import SyntheticConfig, generate_synthetic
from iidfusion.data.features.multiview import MultiViewArrays, make_splits
from iidfusion.tasks.classification.fit import fit_method

MANY = SyntheticConfig(
    num_modalities=12,
    num_classes=10,
    relevant_dims=4,
    noise_dims=12,
    class_separation=1.5,
    corrupt_fraction=0.0,
    shift=2.0,
)


@pytest.fixture(scope="module")
def many_views():
    data = generate_synthetic(MANY, 600, seed=0)
    arrays = MultiViewArrays({k: v.numpy() for k, v in data.views.items()}, data.labels.numpy(), "many")
    return make_splits(arrays, "many", seed=0)


def test_intermediate_fusion_of_twelve_views_leaves_chance_within_ten_epochs(many_views, fast_config):
    config = replace(
        fast_config,
        model=replace(fast_config.model, width=16, hidden=32),
        optim=replace(fast_config.optim, lr=5e-3),
        train=replace(fast_config.train, max_epochs=10, patience=0, loggers=(), checkpoints=False),
        eval=replace(fast_config.eval, noise=(0.0,)),
    )
    late = fit_method(many_views, "lf-static", 0, config).best_val_acc
    intermediate = fit_method(many_views, "if-static", 0, config).best_val_acc
    chance = 1 / MANY.num_classes
    assert intermediate > 3.5 * chance, f"IF stays near chance: {intermediate:.3f}"
    assert intermediate > late - 0.15, f"IF {intermediate:.3f} far behind LF {late:.3f}"
