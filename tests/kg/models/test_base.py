"""The contract every registered KG model keeps, run on each name of the registry.

A new model needs only its registered class and its own ``tests/kg/models/test_<name>.py``
(with a brute-force check of its scores): this file then runs the shared tests on it.
"""

import ast
from pathlib import Path

import pytest
import torch

from iidfusion.kg.evaluate import evaluate_link_prediction
from iidfusion.kg.models import KGModelConfig, OTProjectionConfig
from iidfusion.kg.models.base import (
    KGModel,
    available_kg_models,
    create_kg_model,
    get_kg_model_class,
    register_kg_model,
)
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig, degree_weights
from iidfusion.tasks.kg.checkpoint import kg_checkpoint, kg_model_from_state
from iidfusion.tasks.kg.config import KGExperimentConfig, KGTrainConfig
from iidfusion.tasks.kg.fit import build_model, fit_kg, validate_kg_config

MODELS = available_kg_models()
TESTS = Path(__file__).resolve().parent


def model_config(name: str) -> KGModelConfig:
    projection = OTProjectionConfig(cost_scale=1.0, plan_entities=2, refresh_every=4)
    return KGModelConfig(
        name=name, rank=8, init_scale=0.1, modality_weights={"img": 0.1, "ling": 0.3}, projection=projection
    )


def features_of(kg, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "img": torch.randn(kg.num_entities, 6, generator=generator),
        "ling": torch.randn(kg.num_entities, 4, generator=generator),
    }


def experiment(name: str, **iid) -> KGExperimentConfig:
    return KGExperimentConfig(
        data="tiny",
        model=model_config(name),
        objective=KGObjectiveConfig(n3_weight=1e-3, iid=IIDTermsConfig(d1=4, d2=8, **iid)),
        train=KGTrainConfig(max_epochs=40, batch_size=16, learning_rate=0.3, eval_every=10, num_threads=1),
    )


def test_both_paper_models_are_registered():
    assert {"otkge", "mmkrl"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_has_its_own_test_with_a_brute_force_reference(name):
    path = TESTS / f"test_{name}.py"
    assert path.is_file(), f"registered KG model {name!r} has no {path.name}"
    functions = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    assert "test_scores_match_brute_force" in functions


@pytest.mark.parametrize("name", MODELS)
def test_forward_contract(name, tiny_kg):
    model = build_model(tiny_kg, features_of(tiny_kg), experiment(name))
    assert isinstance(model, KGModel) and type(model) is get_kg_model_class(name) and model.title
    queries = torch.tensor([[0, 0], [3, 1], [5, tiny_kg.num_relations + 2]])  # the last: a reciprocal relation
    out = model(queries)
    fusion = out.fusion
    assert fusion.modalities == ("structure", "img", "ling") == model.modalities and fusion.mode == "if"
    assert fusion.logits.shape == (3, tiny_kg.num_entities) and out.candidates.shape == (
        tiny_kg.num_entities,
        model.width,
    )
    assert set(fusion.features) == set(fusion.shared_head_logits) == set(model.modalities)
    for m in model.modalities:
        assert (
            fusion.features[m].shape == (3, model.width) and fusion.shared_head_logits[m].shape == fusion.logits.shape
        )
    assert fusion.fused_features.shape == (3, model.width) and out.relation.shape == (3, model.width)
    assert torch.allclose(fusion.weights.sum(dim=1), torch.ones(3))
    assert model.feature_widths == {"img": 6, "ling": 4}
    model.eval()
    lean = model(queries, need_modalities=False).fusion.logits
    assert torch.allclose(lean, model(queries).fusion.logits, atol=1e-6)
    assert torch.allclose(model.scorer()(queries), lean, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_iid_objective_terms_and_gradients_are_finite(name, tiny_kg):
    config = experiment(name, alpha=0.5, beta=0.5, coherence_points=6)
    model = build_model(tiny_kg, features_of(tiny_kg), config)
    objective = KGObjective(
        config.objective, width=model.width, class_weights=degree_weights(tiny_kg.train, tiny_kg.num_entities)
    )
    batch = tiny_kg.train[:10]
    loss = objective(model(batch[:, :2]), batch, model=model)
    assert {"task", "n3", "informatic", "coherence"} <= set(loss.terms)
    assert all(torch.isfinite(v) for v in loss.terms.values())
    loss.total.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    assert grads["entity"].abs().sum() > 0 and grads["relation"].abs().sum() > 0


@pytest.mark.parametrize("name", MODELS)
def test_float64_agrees_with_float32(name, tiny_kg):
    model = build_model(tiny_kg, features_of(tiny_kg), experiment(name)).eval()
    queries = torch.tensor([[0, 0], [1, 2]])
    reference = model(queries).fusion.logits.detach()
    double = model.double()(queries).fusion.logits
    assert double.dtype == torch.float64
    assert torch.allclose(double.float(), reference, atol=1e-4 * float(reference.abs().max()) + 1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_training_fits_the_graph_and_a_checkpoint_gives_the_model_back(name, tiny_kg):
    """Training raises the filtered MRR on the training triples. Not the held-out MRR: the tiny
    graph is a ring, which a cycle of translations cannot close, so a TransE-based model does
    not generalise on it (the ComplEx-based one does: tests/kg/test_train.py)."""
    features = features_of(tiny_kg)
    config = experiment(name)
    untrained = build_model(tiny_kg, features, config).eval()
    before = evaluate_link_prediction(untrained.scorer(), tiny_kg, "train")
    result = fit_kg(tiny_kg, features, config)
    fitted = evaluate_link_prediction(result.model.eval().scorer(), tiny_kg, "train")
    assert fitted.mrr > before.mrr + 0.3, (before.mrr, fitted.mrr)
    state = kg_checkpoint(result.model, tiny_kg, config, best_epoch=result.best_epoch)
    loaded, loaded_config = kg_model_from_state(state, "test")
    assert type(loaded) is type(result.model) and loaded_config.model.name == name
    after = evaluate_link_prediction(loaded.scorer(), tiny_kg, "test")
    assert after.mrr == pytest.approx(result.test.mrr, rel=1e-6)


def test_unknown_model_and_options_are_named():
    with pytest.raises(ValueError, match=r"--model \(model.name\) must be one of mmkrl, otkge, got 'transe'"):
        validate_kg_config(KGExperimentConfig(model=KGModelConfig(name="transe")))
    with pytest.raises(ValueError, match=r"--model \(model.name\) must be one of .*, got 'transe'"):
        get_kg_model_class("transe")
    with pytest.raises(ValueError, match="model 'otkge' takes no options"):
        validate_kg_config(KGExperimentConfig(model=KGModelConfig(options={"align_weight": 1.0})))


def test_registration_rules():
    with pytest.raises(ValueError, match="not a KGModel subclass"):
        register_kg_model("plain")(torch.nn.Module)
    with pytest.raises(ValueError, match="already registered as 'otkge'"):

        @register_kg_model("otkge")
        class Another(KGModel):
            pass

    assert "plain" not in available_kg_models()


def test_create_builds_the_named_model():
    features = {"img": torch.randn(5, 3)}
    for name in MODELS:
        model = create_kg_model(5, 2, features, KGModelConfig(name=name, rank=2), num_train_queries=4)
        assert model.name == name and model.num_entities == 5
