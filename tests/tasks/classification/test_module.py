from dataclasses import replace

import pytest
import torch

from iidfusion.fusion.methods import available_methods
from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.data import MultiViewDataModule
from iidfusion.tasks.classification.module import FusionModule
from iidfusion.tasks.classification.validation import check_option_values


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
    missing = [
        n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"{method}: parameters without gradient: {missing}"
    means = module._train_means.pop()
    assert {"loss", "task", "weight/m0", "weight/m1", "weight/m2"} <= set(means)
    pairs = {"wasserstein/m0-m1", "wasserstein/m0-m2", "wasserstein/m1-m2", "wasserstein/mean"}
    spec = module.spec
    assert (pairs <= set(means)) == spec.use_dc, "training logs the distances its L_dc computed, nothing more"
    assert ("informatic" in means) == spec.use_ic and ("coherence" in means) == spec.use_dc
    assert all(torch.isfinite(v) for v in means.values())


class _Logged:
    """Captures what a module logs outside a trainer: the scores it keeps for the callbacks
    (``epoch_scores``, what the plain loop reads) and what only the loggers read."""

    def __init__(self, module):
        self.module = module
        self.to_loggers = {}
        module._log_to_loggers = self.to_loggers.update

    @property
    def values(self):
        return self.module.epoch_scores | self.to_loggers


@pytest.mark.parametrize("method", ["qmf", "if-pdf", "iid-l"])
def test_validation_logs_diagnostics_and_monitored_distances(method, tiny_splits, fast_config):
    """Every method logs, per validation epoch, the shared-head and drop-one accuracies of each
    modality and W~ on a fixed validation sample, all without touching the gradient."""
    config = replace(fast_config, train=replace(fast_config.train, monitor_distances=True, monitor_samples=20))
    torch.manual_seed(0)
    module = FusionModule.for_feature_views(method, tiny_splits.view_dims, 3, len(tiny_splits.train), config)
    logged = _Logged(module)
    module.training_step(_batch(tiny_splits), 0)
    module.on_validation_epoch_start()
    data = MultiViewDataModule(tiny_splits, batch_size=32, seed=0, eval_batch_size=16)
    with torch.no_grad():
        for k, batch in enumerate(data.val_dataloader()):
            module.validation_step(batch, k)
    module.on_validation_epoch_end()
    views = list(tiny_splits.view_dims)
    expected = {
        "val/acc",
        "val/macro_f1",
        "val/loss",
        "val/wasserstein/mean",
        *(f"val/shared_head_acc/{v}" for v in views),
        *(f"val/drop_acc/{v}" for v in views),
    }
    assert expected <= set(logged.values), expected - set(logged.values)
    assert all(0 <= float(logged.values[f"val/drop_acc/{v}"]) <= 1 for v in views)
    assert float(logged.values["val/loss"]) > 0
    assert not module._monitor_features, "the sample is reset every epoch"


def test_shared_head_accuracy_is_the_shared_heads_and_drop_one_uses_the_training_mean(tiny_splits, fast_config):
    torch.manual_seed(0)
    module = FusionModule.for_feature_views("if-static", tiny_splits.view_dims, 3, len(tiny_splits.train), fast_config)
    logged = _Logged(module)
    batch = _batch(tiny_splits)
    module.training_step(batch, 0)
    means = module._feature_means.peek()
    with torch.no_grad():
        out = module.model(batch["inputs"])
        torch.testing.assert_close(means["m0"], out.features["m0"].mean(0))
        module.on_validation_epoch_start()
        module.validation_step(batch, 0)
        module.on_validation_epoch_end()
        labels = batch["label"]
        shared = (module.model.target_mapping(out.features["m1"]).argmax(1) == labels).float().mean()
        dropped = dict(out.features) | {"m2": means["m2"].expand_as(out.features["m2"])}
        drop = (module.model.fuse(dropped).logits.argmax(1) == labels).float().mean()
    torch.testing.assert_close(logged.values["val/shared_head_acc/m1"], shared)
    torch.testing.assert_close(logged.values["val/drop_acc/m2"], drop)


def test_mode_mismatch_is_refused(tiny_splits, fast_config):
    module = FusionModule.for_feature_views("lf-static", tiny_splits.view_dims, 3, len(tiny_splits.train), fast_config)
    with pytest.raises(ValueError, match="method 'iid-l' is IF, the model is LF"):
        FusionModule("iid-l", module.model, fast_config)


def test_each_method_builds_its_strategy_with_its_own_section(tiny_splits, fast_config):
    """The module passes config.strategy.<its strategy> to the model, and nothing of the others'."""
    config = load_config(
        overrides={
            "strategy.qmf.lam_rank": 0.3,
            "strategy.qmf.energy_temperature": 2.0,
            "strategy.pdf.min_confidence": 0.05,
            "strategy.pdf.confidnet_hidden": 5,
            "strategy.pdf.calibrate": False,
            "strategy.static.weights": "1,1,2",
        },
        base=fast_config,
    )

    def strategy(method):
        return FusionModule.for_feature_views(
            method, tiny_splits.view_dims, 3, len(tiny_splits.train), config
        ).model.strategy

    qmf, pdf, static = strategy("iid-q"), strategy("if-pdf"), strategy("lf-static")
    assert (qmf.lam_rank, qmf.energy_temperature, qmf.min_weight) == (0.3, 2.0, 1e-6)
    assert (pdf.min_confidence, pdf.calibrate, pdf.confidnets["m0"][0].out_features) == (0.05, False, 5)
    assert static.fixed_weights.tolist() == [0.25, 0.25, 0.5]
    assert pdf.unimodal_reduction == qmf.unimodal_reduction == config.model.unimodal_reduction


def test_the_default_configuration_reduces_with_a_phi_of_the_runs_seed():
    """No default run has Phi = I: at the default width the RIP projection reduces, drawn from the run's seed."""
    config = load_config()
    modules = [FusionModule.for_feature_views("iid-p", {"a": 5, "b": 7}, 3, 20, config, seed=s) for s in (0, 1)]
    reducers = [m.loss_fn.coherence.reducer for m in modules]
    assert all(r.d2 < config.model.width for r in reducers)
    assert reducers[0].seed == 0 and reducers[1].seed == 1 and not torch.equal(reducers[0].phi, reducers[1].phi)


@pytest.mark.parametrize("method", ["if-static", "pdf"])
def test_the_l2_penalty_adds_l2_times_each_weight_matrix_to_its_gradient_and_leaves_biases_alone(
    method, tiny_splits, fast_config
):
    """optim.l2 is an L2 term in the loss: every weight matrix's gradient gains l2 * W, a bias's
    nothing; at 0 the step is the loss's alone, the same tensor as without the option."""
    batch, grads, losses = _batch(tiny_splits), {}, {}
    for l2 in (0.0, 0.5):
        config = replace(fast_config, optim=replace(fast_config.optim, l2=l2))
        torch.manual_seed(0)
        module = FusionModule.for_feature_views(method, tiny_splits.view_dims, 3, len(tiny_splits.train), config)
        losses[l2] = module.training_step(batch, 0)
        losses[l2].backward()
        grads[l2] = {n: (p.detach().clone(), p.grad.clone()) for n, p in module.named_parameters()}
        means = module._train_means.pop()
        assert ("l2" in means) == (l2 > 0)
        assert float(means["loss"]) == pytest.approx(losses[l2].item())
    weights = {n: w for n, (w, _) in grads[0.5].items() if w.ndim > 1}
    assert any(n.endswith(".bias") for n in grads[0.0]) and len(weights) >= 3
    expected = losses[0.0].item() + 0.25 * sum(float(w.pow(2).sum()) for w in weights.values())
    assert losses[0.5].item() == pytest.approx(expected, rel=1e-5)
    for name, (value, grad) in grads[0.5].items():
        extra = 0.5 * value if value.ndim > 1 else torch.zeros_like(value)
        torch.testing.assert_close(grad, grads[0.0][name][1] + extra, msg=name)


def test_a_negative_l2_is_refused_naming_its_flag():
    with pytest.raises(ValueError, match=r"--l2 \(optim.l2\) must be finite and >= 0"):
        check_option_values(load_config(overrides={"optim.l2": -0.1}))
