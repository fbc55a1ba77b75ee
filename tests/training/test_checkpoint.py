"""Checkpoints back as models (:mod:`iidfusion.training.checkpoint`), those of earlier releases included."""

from dataclasses import replace

import pytest
import torch

from iidfusion.training.checkpoint import load_model
from iidfusion.training.config import load_config
from iidfusion.training.runner import check_resume, fit_method


def test_a_checkpoint_written_before_the_strategy_sections_loads_predicts_and_resumes(tiny_splits, fast_config, tmp_path):
    """Before the strategy sections, QMF's rank weight was ``model.lam_rank`` and no other strategy
    option was recorded: such a checkpoint is read in today's layout by load_model and --resume."""
    config = load_config(overrides={"strategy.qmf.lam_rank": 0.5}, base=fast_config)
    fit_method(tiny_splits, "qmf", 0, config, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    old = dict(state["hyper_parameters"])
    assert old.pop("strategy")["qmf"]["lam_rank"] == 0.5
    old["model"] = {**old["model"], "lam_rank": 0.5}  # the layout of earlier releases
    written = tmp_path / "old.ckpt"
    torch.save({**state, "hyper_parameters": old}, written)

    before, now = load_model(written), load_model(last)
    assert before.config == now.config and before.config.strategy.qmf.lam_rank == 0.5
    assert before.model.strategy.lam_rank == 0.5
    views = {v: x[:5] for v, x in tiny_splits.test.views.items()}
    with torch.no_grad():
        torch.testing.assert_close(before.model(views).logits, now.model(views).logits, rtol=0, atol=0)

    longer = replace(config, train=replace(config.train, max_epochs=4))
    check_resume(written, "qmf", 0, longer, tiny_splits)  # the same run: resumable
    other_strategy = load_config(overrides={"strategy.pdf.min_confidence": 0.01}, base=longer)
    check_resume(written, "qmf", 0, other_strategy, tiny_splits)  # qmf never reads PDF's options
    for overrides, message in (
        ({"strategy.qmf.lam_rank": 1.0}, r"--qmf-lam-rank 0\.5 -> 1\.0"),
        ({"strategy.qmf.energy_temperature": 5.0}, r"--qmf-energy-temperature 10\.0 -> 5\.0"),
    ):
        with pytest.raises(ValueError, match=message):
            check_resume(written, "qmf", 0, load_config(overrides=overrides, base=longer), tiny_splits)
