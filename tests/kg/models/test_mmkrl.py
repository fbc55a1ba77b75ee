import math

import pytest
import torch

from iidfusion.fusion import FusionOutput
from iidfusion.kg.models import KGModelConfig, create_kg_model
from iidfusion.kg.models.mmkrl import MMKRL, fgm_step, parse_options, translation_scores

N, R, RANK = 7, 2, 3


def small_model(**config) -> MMKRL:
    torch.manual_seed(0)
    features = {"img": torch.randn(N, 5), "ling": torch.randn(N, 3)}
    defaults = {"name": "mmkrl", "rank": RANK, "init_scale": 0.5, "modality_weights": {"img": 0.1, "ling": 0.7}}
    model = create_kg_model(N, R, features, KGModelConfig(**(defaults | config)), num_train_queries=20)
    assert isinstance(model, MMKRL)
    return model


def test_scores_match_brute_force():
    """Every fused score by hand: E_m = X_m W_m^T + b_m, C = sum_m w_m E_m, sum_m w_m (-||E_m[h] + r - C[t]||_2)."""
    model = small_model()
    queries = torch.tensor([[0, 0], [5, 1], [2, 3]])  # relation 3 = reciprocal of 1
    weights = {"structure": 0.2, "img": 0.1, "ling": 0.7}
    tables = {"structure": model.entity.detach().double()}
    for name, projection in model.projections.items():
        linear = projection.linear
        tables[name] = projection.features.double() @ linear.weight.detach().double().T + linear.bias.detach().double()
    candidates = sum(weights[m] * tables[m] for m in weights)
    relation = model.relation.detach().double()
    with torch.no_grad():
        out = model(queries)
    assert out.fusion.modalities == ("structure", "img", "ling") and out.fusion.logits.shape == (3, N)
    for b, (head, rel) in enumerate(queries.tolist()):
        for n in range(N):
            per_source = {}
            for m in weights:
                gap = tables[m][head] + relation[rel] - candidates[n]
                per_source[m] = -math.sqrt(sum(float(x) ** 2 for x in gap))
                assert float(out.fusion.shared_head_logits[m][b, n]) == pytest.approx(per_source[m], abs=1e-4)
            expected = sum(weights[m] * per_source[m] for m in weights)
            assert float(out.fusion.logits[b, n]) == pytest.approx(expected, abs=1e-4)
    assert torch.allclose(out.candidates.double(), candidates, atol=1e-5)
    assert torch.allclose(out.fusion.fused_features.double(), candidates[queries[:, 0]], atol=1e-5)


def test_translation_scores_half_precision_and_zero_distance():
    torch.manual_seed(1)
    q, c = torch.randn(4, 6), torch.randn(5, 6)
    reference = -torch.cdist(q.double(), c.double())
    assert torch.allclose(translation_scores(q, c).double(), reference, atol=1e-5)
    low = translation_scores(q.bfloat16(), c.bfloat16())
    assert low.dtype == torch.bfloat16 and torch.allclose(low.float(), reference.float(), atol=0.05)
    same = c[:2].clone().requires_grad_(True)
    scores = translation_scores(same, c)
    scores.sum().backward()  # a zero distance has a finite (clamped) gradient, no NaN
    assert torch.isfinite(same.grad).all() and scores[0, 0].abs() < 1e-3


def test_adversarial_step_is_bounded_and_raises_the_task_loss():
    model = small_model(options={"adversarial_epsilon": 0.05, "adversarial_weight": 1.0})
    model.train()
    queries = torch.tensor([[0, 0], [1, 1], [2, 2], [3, 3]])
    tails = torch.tensor([1, 2, 3, 4])
    out = model(queries)

    def task(logits):
        return torch.nn.functional.cross_entropy(logits, tails)

    perturbed = model.adversarial_features(out, task)
    for m in model.modalities:
        step = (perturbed[m] - out.fusion.features[m]).detach()
        bound = 0.05 * out.fusion.features[m].detach().norm(dim=-1)
        assert torch.all(step.norm(dim=-1) <= bound * (1 + 1e-5) + 1e-7)
        assert torch.allclose(step.norm(dim=-1), bound, rtol=1e-4)  # the full step where the gradient is non-zero
    logits, _, _ = model.summed_scores(perturbed, out.relation, out.candidates, out.fusion.weights)
    assert task(logits) > task(out.fusion.logits)  # a step up the gradient raises the loss
    terms = model.auxiliary_losses(out, tails, task)
    assert set(terms) == {"alignment", "adversarial"} and torch.isclose(terms["adversarial"], task(logits))
    with torch.no_grad():
        frozen = model(queries)
    with pytest.raises(ValueError, match="require grad"):
        model.adversarial_features(frozen, task)


def test_fgm_step_zero_gradient_gives_zero_step():
    embedding = torch.randn(3, 4)
    gradient = torch.zeros(3, 4)
    gradient[1] = torch.tensor([3.0, 0.0, 4.0, 0.0])
    step = fgm_step(embedding, gradient, 0.1)
    assert torch.equal(step[0], torch.zeros(4)) and torch.equal(step[2], torch.zeros(4))
    assert torch.allclose(step[1], 0.1 * embedding[1].norm() * torch.tensor([0.6, 0.0, 0.8, 0.0]))


def test_alignment_is_the_mean_squared_gap_to_the_structure():
    model = small_model(options={"align_weight": 2.0, "adversarial_weight": 0.0})
    out = model(torch.tensor([[0, 0], [4, 1]]))
    features = out.fusion.features
    expected = sum((features[m] - features["structure"]).square().sum(-1).mean() for m in ("img", "ling")) / 2
    terms = model.auxiliary_losses(out, torch.tensor([1, 2]), lambda logits: logits.sum())
    assert set(terms) == {"alignment"} and torch.isclose(terms["alignment"], 2.0 * expected)
    assert out.moduli is torch.abs  # N3 cubes absolute values: the coordinates are real


def test_registered_strategy_weights_the_summed_scores():
    model = small_model(strategy="qmf")
    out = model(torch.tensor([[0, 0], [1, 1], [2, 2]]))
    weights = out.fusion.weights
    assert weights.shape == (3, 3) and torch.allclose(weights.sum(dim=1), torch.ones(3), atol=1e-5)
    expected = sum(
        weights[:, i : i + 1] * out.fusion.shared_head_logits[m] for i, m in enumerate(out.fusion.modalities)
    )
    assert isinstance(out.fusion, FusionOutput) and torch.allclose(out.fusion.logits, expected, atol=1e-6)


def test_options_are_checked():
    assert parse_options({}).align_weight == 0.1
    with pytest.raises(ValueError, match="unknown config key 'model.options.epsilon'"):
        small_model(options={"epsilon": 0.1})
    with pytest.raises(ValueError, match=r"model.options.adversarial_epsilon must be finite and >= 0, got -0.1"):
        MMKRL.check_options({"adversarial_epsilon": -0.1})
    with pytest.raises(ValueError, match="must be a float"):
        MMKRL.check_options({"align_weight": "high"})


def test_gradcheck_float64_through_sources_and_relations():
    model = small_model().double()
    queries = torch.tensor([[0, 0], [4, 3]])

    def logits(weight, relation):
        params = {"projections.img.linear.weight": weight, "relation": relation}
        return torch.func.functional_call(model, params, (queries,)).fusion.logits

    weight = model.projections["img"].linear.weight.detach().clone().requires_grad_(True)
    relation = model.relation.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(logits, (weight, relation), eps=1e-6, atol=1e-6)
