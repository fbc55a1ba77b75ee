import json

import pytest
import torch
import yaml

from iidfusion.core.config import merge_config
from iidfusion.kg.evaluate import evaluate_link_prediction
from iidfusion.kg.models import KGModelConfig, OTProjectionConfig
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig, degree_weights, n3_penalty
from iidfusion.tasks.kg.config import KGExperimentConfig, KGTrainConfig, load_experiment_config
from iidfusion.tasks.kg.fit import build_model, fit_kg, save_run


def fixture_features(kg, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "img": torch.randn(kg.num_entities, 6, generator=generator),
        "ling": torch.randn(kg.num_entities, 4, generator=generator),
    }


def small_config(**iid) -> KGExperimentConfig:
    return KGExperimentConfig(
        data="tiny",
        features={},
        model=KGModelConfig(
            rank=8,
            init_scale=0.1,
            modality_weights={"img": 0.1, "ling": 0.3},
            projection=OTProjectionConfig(cost_scale=1.0, plan_entities=2, refresh_every=4),
        ),
        objective=KGObjectiveConfig(n3_weight=1e-3, iid=IIDTermsConfig(d1=4, d2=8, **iid)),
        train=KGTrainConfig(max_epochs=40, batch_size=16, learning_rate=0.3, eval_every=10, num_threads=1),
    )


def test_degree_weights_and_n3(tiny_kg):
    weights = degree_weights(tiny_kg.train, tiny_kg.num_entities)
    degree = torch.zeros(tiny_kg.num_entities)
    for h, _, t in tiny_kg.train.tolist():
        degree[h] += 1
        degree[t] += 1
    assert torch.allclose(weights, 0.1 + 0.9 * degree / degree.max())

    model = build_model(tiny_kg, fixture_features(tiny_kg), small_config())
    batch = tiny_kg.train[:5]
    output = model(batch[:, :2])
    expected = 0.0
    for factor in (output.fusion.fused_features, output.relation, output.candidates[batch[:, 2]]):
        re, im = factor.chunk(2, dim=-1)
        expected = expected + (re**2 + im**2).sqrt().pow(3).sum()
    assert torch.allclose(n3_penalty(output, batch[:, 2]), expected / 5)


def test_objective_terms_and_gradients_on_kg_batches(tiny_kg):
    config = small_config(alpha=0.5, beta=0.5, coherence_points=6)
    model = build_model(tiny_kg, fixture_features(tiny_kg), config)
    objective = KGObjective(
        config.objective, width=model.width, class_weights=degree_weights(tiny_kg.train, tiny_kg.num_entities)
    )
    batch = tiny_kg.train[:10]
    loss = objective(model(batch[:, :2]), batch)
    assert set(loss.terms) == {"task", "n3", "informatic", "coherence"}
    assert all(torch.isfinite(v) for v in loss.terms.values())
    # L_dc alone reaches the learnable projection of every feature modality and the structure.
    model.zero_grad()
    loss.terms["coherence"].backward()
    assert model.projections["img"].correction.grad.abs().sum() > 0
    assert model.entity.grad.abs().sum() > 0
    # L_ic uses the 1-N scoring of each modality's head embedding: its gradient reaches them too.
    model.zero_grad()
    objective(model(batch[:, :2]), batch).terms["informatic"].backward()
    assert model.projections["ling"].correction.grad.abs().sum() > 0

    baseline = KGObjective(small_config().objective, width=model.width, class_weights=objective.class_weights)
    assert not baseline.needs_modalities
    assert set(baseline(model(batch[:, :2], need_modalities=False), batch).terms) == {"task", "n3"}


def test_strategy_auxiliary_terms(tiny_kg):
    config = small_config()
    config.model.strategy = "pdf"
    model = build_model(tiny_kg, fixture_features(tiny_kg), config)
    objective = KGObjective(
        config.objective, width=model.width, class_weights=degree_weights(tiny_kg.train, tiny_kg.num_entities)
    )
    batch = tiny_kg.train[:8]
    terms = objective(model(batch[:, :2]), batch, torch.arange(8), model.strategy).terms
    assert any(name.startswith("strategy/") for name in terms)


def test_training_improves_mrr_over_untrained(tiny_kg, tmp_path):
    features = fixture_features(tiny_kg)
    config = small_config()
    untrained = build_model(tiny_kg, features, config).eval()
    before = evaluate_link_prediction(untrained.scorer(), tiny_kg, "test")
    threads = torch.get_num_threads()
    result = fit_kg(tiny_kg, features, config)
    assert torch.get_num_threads() == threads  # the run's num_threads is restored
    assert result.test.mrr > before.mrr + 0.2, (before.mrr, result.test.mrr)
    assert result.best_epoch in (10, 20, 30, 40)
    assert [r["epoch"] for r in result.history] == list(range(1, 41))
    files = save_run(result, config, tmp_path / "run", tiny_kg)
    metrics = json.loads(files[1].read_text())
    assert metrics["test"]["mrr"] == pytest.approx(result.test.mrr)
    assert yaml.safe_load(files[0].read_text())["model"]["rank"] == 8
    assert not list((tmp_path / "run").glob(".*"))


def test_patience_counts_validations_and_stops_after_one(tiny_kg):
    """Trained to convergence: with lr 0 no validation beats the first, so patience 2 stops right
    after the third validation (epoch 6 with eval_every 2), not after two epochs."""
    config = small_config()
    config.train.learning_rate = 1e-12
    config.train.max_epochs, config.train.eval_every, config.train.patience = 40, 2, 2
    result = fit_kg(tiny_kg, fixture_features(tiny_kg), config)
    assert [r["epoch"] for r in result.history] == list(range(1, 7))
    assert [r["epoch"] for r in result.history if "valid/mrr" in r] == [2, 4, 6]
    assert result.best_epoch == 2


def test_iid_run_is_finite_and_seeded(tiny_kg):
    features = fixture_features(tiny_kg)
    config = small_config(alpha=0.1, beta=0.1, coherence_points=16)
    config.train.max_epochs = 3
    config.train.eval_every = 3
    first, second = fit_kg(tiny_kg, features, config), fit_kg(tiny_kg, features, config)
    assert first.history[-1]["loss/coherence"] > 0 and "loss/informatic" in first.history[-1]
    assert first.test.mrr == second.test.mrr  # same seed, same run


def test_config_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "data: wn9img\nmodel: {rank: 3, projection: {cost_scale: 300}}\ncompare: {seeds: 1}\n", encoding="utf-8"
    )
    config = load_experiment_config(path)
    assert config.data == "wn9img" and config.model.rank == 3 and config.model.projection.cost_scale == 300
    path.write_text("model: {rnak: 3}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown config key 'model.rnak'"):
        load_experiment_config(path)
    with pytest.raises(ValueError, match="must be a mapping"):
        merge_config(KGExperimentConfig(), {"train": 5}, "x")
    with pytest.raises(FileNotFoundError):
        load_experiment_config(tmp_path / "none.yaml")


def test_bad_train_options(tiny_kg):
    config = small_config()
    config.train.optimizer = "lbfgs"
    with pytest.raises(
        ValueError, match=r"--optimizer \(train.optimizer\) must be one of adagrad, adam, sgd, got 'lbfgs'"
    ):
        fit_kg(tiny_kg, fixture_features(tiny_kg), config)
    config = small_config()
    config.train.num_threads = -1
    with pytest.raises(ValueError, match=r"--threads \(train.num_threads\) must be in \[0, 4096\], got -1"):
        fit_kg(tiny_kg, fixture_features(tiny_kg), config)
    config = small_config()
    config.train.tie_policy = "average"
    with pytest.raises(ValueError, match=r"--tie-policy \(train.tie_policy\) must be one of pessimistic"):
        fit_kg(tiny_kg, fixture_features(tiny_kg), config)
