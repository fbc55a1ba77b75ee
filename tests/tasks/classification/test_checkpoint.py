"""Checkpoints of `fit` back as models, and a resume that checks only what the method reads."""

from dataclasses import replace

import pytest
import torch

from iidfusion.api import load_model
from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.fit import check_resume, fit_method


def test_a_checkpoint_loads_predicts_and_resumes_only_with_the_options_its_method_reads(
    tiny_splits, fast_config, tmp_path
):
    config = load_config(overrides={"strategy.qmf.lam_rank": 0.5}, base=fast_config)
    fit = fit_method(tiny_splits, "qmf", 0, config, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trained = load_model(last)
    assert trained.config == replace(config, method="qmf") and trained.model.strategy.lam_rank == 0.5
    views = {v: x[:5] for v, x in tiny_splits.test.views.items()}
    with torch.no_grad():
        torch.testing.assert_close(trained.model(views).logits, fit.module.model.eval()(views).logits, rtol=0, atol=0)

    longer = replace(config, train=replace(config.train, max_epochs=4))
    check_resume(last, "qmf", 0, longer, tiny_splits)  # the same run: resumable
    other_strategy = load_config(overrides={"strategy.pdf.min_confidence": 0.01}, base=longer)
    check_resume(last, "qmf", 0, other_strategy, tiny_splits)  # qmf never reads PDF's options
    for overrides, message in (
        ({"strategy.qmf.lam_rank": 1.0}, r"--qmf-lam-rank 0\.5 -> 1\.0"),
        ({"strategy.qmf.energy_temperature": 5.0}, r"--qmf-energy-temperature 10\.0 -> 5\.0"),
    ):
        with pytest.raises(ValueError, match=message):
            check_resume(last, "qmf", 0, load_config(overrides=overrides, base=longer), tiny_splits)
