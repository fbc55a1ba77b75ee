"""IIDConfig: one set of IID options for the classification ``loss`` section and the KG's ``objective.iid``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from iidfusion.core.config import iter_options
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig
from iidfusion.losses import DistributionCoherence, IIDConfig, IIDLoss, InformaticConstraint
from iidfusion.tasks.classification.config import ExperimentConfig
from iidfusion.tasks.kg.config import KGExperimentConfig
from iidfusion.tasks.kg.fit import validate_kg_config


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_the_kg_section_has_every_option_of_the_classification_section():
    assert issubclass(IIDTermsConfig, IIDConfig)
    assert _fields(IIDTermsConfig)[: len(_fields(IIDConfig))] == _fields(IIDConfig)
    assert type(ExperimentConfig().loss) is IIDConfig


def test_every_option_has_help_and_a_range_rule_used_by_both_tasks():
    for option in iter_options(IIDTermsConfig(), "objective.iid."):
        assert option.help and option.rule is not None, option.key
    loss = [o for o in iter_options(ExperimentConfig()) if o.key.startswith("loss.")]
    assert [o.key for o in loss] == ["loss." + name for name in _fields(IIDConfig)]
    assert all(o.rule is not None for o in loss)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        (
            "ic_reduction",
            "median",
            "--ic-reduction \\(objective.iid.ic_reduction\\) must be one of mean, sum, weighted, got 'median'",
        ),
        ("dc_reduction", "max", "--dc-reduction \\(objective.iid.dc_reduction\\) must be one of mean, sum, got 'max'"),
        ("max_iter", 0, "--max-iter \\(objective.iid.max_iter\\) must be in \\[1, 1e\\+06\\], got 0"),
        ("margin", -1.0, "--margin \\(objective.iid.margin\\) must be finite and >= 0, got -1.0"),
        (
            "variant",
            "vibe",
            "--variant \\(objective.iid.variant\\) must be one of paper, vib, margin, literal, ce-only, got 'vibe'",
        ),
    ],
)
def test_the_kg_checks_the_options_it_shares_with_classification(key, value, said):
    iid = dataclasses.replace(IIDTermsConfig(), **{key: value})
    config = dataclasses.replace(KGExperimentConfig(), objective=KGObjectiveConfig(iid=iid))
    with pytest.raises(ValueError, match="^" + said):
        validate_kg_config(config)


def test_build_loss_gives_modules_with_the_options():
    config = IIDConfig(
        alpha=0.5,
        beta=0.2,
        lam=0.3,
        margin=0.2,
        ic_reduction="sum",
        dc_reduction="sum",
        d1=3,
        d2=5,
        eps=0.2,
        rho=4.0,
        max_iter=7,
    )
    loss = config.build_loss(8, seed=1)
    assert isinstance(loss, IIDLoss) and (loss.alpha, loss.beta) == (0.5, 0.2)
    assert isinstance(loss.informatic, InformaticConstraint)
    assert (loss.informatic.lam, loss.informatic.reduction, loss.informatic.margin) == (0.3, "sum", 0.2)
    assert isinstance(loss.coherence, DistributionCoherence) and loss.coherence.reducer is not None
    assert (loss.coherence.eps, loss.coherence.rho, loss.coherence.max_iter, loss.coherence.reduction) == (
        0.2,
        4.0,
        7,
        "sum",
    )
    assert loss.coherence.reducer.d1 == 3 and loss.coherence.reducer.d2 == 5
    other_seed = config.build_loss(8, seed=2).coherence
    assert not torch.equal(loss.coherence.reducer.phi, other_seed.reducer.phi)


def test_a_regularizer_switched_off_gets_no_module_unless_asked_for():
    config = IIDConfig(alpha=1.0, beta=0.1)
    off = config.build_loss(8, use_ic=False, use_dc=False)
    assert (off.alpha, off.beta, off.informatic, off.coherence) == (0.0, 0.0, None, None)
    monitored = config.build_loss(8, use_ic=False, use_dc=False, build_unused=True)
    assert (monitored.alpha, monitored.beta) == (0.0, 0.0) and monitored.coherence is not None


def test_the_kg_objective_reads_the_shared_options():
    iid = IIDTermsConfig(alpha=1.0, beta=0.1, d1=2, d2=4, max_iter=9, dc_reduction="sum", coherence_points=16)
    objective = KGObjective(KGObjectiveConfig(iid=iid, degree_weighted=False), width=8)
    assert objective.needs_modalities
    assert (objective.iid.coherence.max_iter, objective.iid.coherence.reduction) == (9, "sum")
    assert objective.iid.coherence_points == 16
    assert not KGObjective(KGObjectiveConfig(degree_weighted=False), width=8).needs_modalities
