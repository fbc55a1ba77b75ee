from dataclasses import replace

import pytest
import torch

from iidfusion.fusion.methods import available_methods
from iidfusion.training.datamodule import MultiViewDataModule
from iidfusion.training.module import FusionModule


def _batch(splits):
    return next(iter(MultiViewDataModule(splits, batch_size=32, seed=0).train_dataloader()))


@pytest.mark.parametrize("method", available_methods())
def test_step_trains_every_parameter(method, tiny_splits, fast_config):
    """Each method's loss is finite and reaches every parameter (DDP needs no unused ones)."""
    torch.manual_seed(0)
    module = FusionModule.for_feature_views(method, tiny_splits.view_dims, 3, len(tiny_splits.train), fast_config)
    loss = module.training_step(_batch(tiny_splits), 0)
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"{method}: parameters without gradient: {missing}"
    means = module._train_means.pop()
    assert {"loss", "task", "weight/m0", "weight/m1", "weight/m2"} <= set(means)
    pairs = {"wasserstein/m0-m1", "wasserstein/m0-m2", "wasserstein/m1-m2", "wasserstein/mean"}
    assert pairs <= set(means), "per-pair distances are logged for every method (monitoring)"
    spec = module.spec
    assert ("informatic" in means) == spec.use_ic and ("coherence" in means) == spec.use_dc
    assert all(torch.isfinite(v) for v in means.values())


def test_monitoring_adds_no_gradient(tiny_splits, fast_config):
    """Distances of a base method are computed without gradient: the loss is the same without them."""
    batch = _batch(tiny_splits)
    losses = []
    for monitor in (True, False):
        config = replace(fast_config, train=replace(fast_config.train, monitor_distances=monitor))
        torch.manual_seed(0)
        module = FusionModule.for_feature_views("if-static", tiny_splits.view_dims, 3, len(tiny_splits.train), config)
        losses.append(module.training_step(batch, 0))
        assert ("wasserstein/mean" in module._train_means.pop()) == monitor
    assert torch.equal(losses[0], losses[1]) and losses[0].grad_fn is not None


def test_mode_mismatch_is_refused(tiny_splits, fast_config):
    module = FusionModule.for_feature_views("lf-static", tiny_splits.view_dims, 3, len(tiny_splits.train), fast_config)
    with pytest.raises(ValueError, match="method 'iid-l' is IF, the model is LF"):
        FusionModule("iid-l", module.model, fast_config)
