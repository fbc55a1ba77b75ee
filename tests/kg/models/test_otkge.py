import numpy as np
import pytest
import torch

from iidfusion.fusion import FusionOutput
from iidfusion.kg.models.base import KGModelConfig, OTProjectionConfig, static_weights
from iidfusion.kg.models.otkge import MultimodalKGE, OTProjection, complex_modulus, complex_scores
from iidfusion.tasks.kg.config import KGExperimentConfig
from iidfusion.tasks.kg.fit import validate_kg_config

N, R, RANK = 7, 2, 4


def small_model(**config) -> MultimodalKGE:
    torch.manual_seed(0)
    features = {"img": torch.randn(N, 5), "ling": torch.randn(N, 3)}
    defaults = {"rank": RANK, "init_scale": 0.1, "modality_weights": {"img": 0.1, "ling": 0.7}}
    return MultimodalKGE(N, R, features, KGModelConfig(**(defaults | config)), num_train_queries=20)


def test_complex_scores_equal_complex_arithmetic():
    torch.manual_seed(1)
    q, r, c = torch.randn(3, 2 * RANK), torch.randn(3, 2 * RANK), torch.randn(5, 2 * RANK)

    def as_complex(x):
        return torch.complex(*x.chunk(2, dim=-1))

    expected = torch.real((as_complex(q) * as_complex(r)) @ as_complex(c).conj().T)
    assert torch.allclose(complex_scores(q, r, c), expected, atol=1e-5)
    assert torch.allclose(complex_modulus(q), as_complex(q).abs(), atol=1e-6)


def test_static_weights_otkge_form_and_errors():
    names = ("structure", "img", "ling")
    assert torch.allclose(static_weights(names, {"img": 0.1, "ling": 0.8}), torch.tensor([0.1, 0.1, 0.8]))
    assert torch.allclose(static_weights(names, {}), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="unknown modalities"):
        static_weights(names, {"audio": 0.5})
    with pytest.raises(ValueError, match="sum to 1"):
        static_weights(names, {"img": 0.6, "ling": 0.6})
    with pytest.raises(ValueError, match="lack"):
        static_weights(names, {"structure": 0.5, "img": 0.5})


def test_ot_plan_matches_pot_and_has_otkge_scale():
    import ot

    torch.manual_seed(2)
    features, structural = torch.randn(N, 5, dtype=torch.float64) / 3, torch.randn(N, 2 * RANK, dtype=torch.float64) / 3
    config = OTProjectionConfig(plan_entities=3, cost_scale=10.0, eps=1.0, tol=1e-10)
    projection = OTProjection(features, 2 * RANK, config)
    plan = projection.plan(structural)
    reference = torch.zeros(5, 2 * RANK, dtype=torch.float64)
    for i in range(3):
        cost = 10.0 * (features[i].float().double()[:, None] - structural[i][None, :]) ** 2
        reference += torch.from_numpy(
            ot.sinkhorn(np.full(5, 1 / 5), np.full(2 * RANK, 1 / (2 * RANK)), cost.numpy(), reg=1.0, stopThr=1e-10)
        )
    reference = reference / 3 * (2 * RANK * 10.0)
    assert torch.allclose(plan.double(), reference, rtol=1e-4, atol=1e-6)
    # The plan has no gradient: only the correction D_m learns.
    structural.requires_grad_(True)
    projection(structural.float()).sum().backward()
    assert structural.grad is None and projection.correction.grad is not None


def test_plan_refresh_schedule():
    projection = OTProjection(torch.randn(N, 3), 4, OTProjectionConfig(refresh_every=2))
    calls = []
    original = projection.plan
    projection.plan = lambda s: calls.append(1) or original(s)  # type: ignore[method-assign]
    structural = torch.randn(N, 4)
    for _ in range(5):
        projection(structural)
    assert len(calls) == 3  # steps 1, 3, 5
    projection.eval()
    projection(structural)
    projection(structural)
    assert len(calls) == 5  # evaluation always recomputes


def test_forward_shapes_fusion_contract_and_static_fusion():
    model = small_model()
    queries = torch.tensor([[0, 0], [3, 1], [6, 3]])  # relation 3 = reciprocal of 1
    out = model(queries)
    fusion = out.fusion
    assert isinstance(fusion, FusionOutput) and fusion.modalities == ("structure", "img", "ling")
    assert fusion.logits.shape == (3, N) and out.candidates.shape == (N, 2 * RANK)
    assert set(fusion.shared_head_logits) == set(fusion.features) == set(fusion.modalities)
    tables = model.entity_tables()
    expected_table = 0.2 * tables["structure"] + 0.1 * tables["img"] + 0.7 * tables["ling"]
    assert torch.allclose(out.candidates, expected_table, atol=1e-6)
    assert torch.allclose(fusion.fused_features, expected_table[queries[:, 0]], atol=1e-6)
    relation = model.relation[queries[:, 1]]
    assert torch.allclose(
        fusion.logits, complex_scores(expected_table[queries[:, 0]], relation, expected_table), atol=1e-5
    )
    # The shared head scores each modality's head embedding against the SAME fused candidates.
    assert torch.allclose(
        fusion.shared_head_logits["img"],
        complex_scores(tables["img"][queries[:, 0]], relation, expected_table),
        atol=1e-5,
    )
    assert torch.allclose(fusion.weights, torch.tensor([0.2, 0.1, 0.7]).expand(3, -1))
    lean = model(queries, need_modalities=False).fusion
    assert lean.shared_head_logits == {} and torch.allclose(lean.logits, fusion.logits)


def test_registered_strategy_sets_query_weights():
    model = small_model(strategy="qmf")
    out = model(torch.tensor([[0, 0], [1, 1], [2, 2]]))
    weights = out.fusion.weights
    assert weights.shape == (3, 3) and torch.allclose(weights.sum(dim=1), torch.ones(3), atol=1e-5)
    features = out.fusion.features
    expected = sum(weights[:, i : i + 1] * features[m] for i, m in enumerate(out.fusion.modalities))
    assert torch.allclose(out.fusion.fused_features, expected)
    with pytest.raises(ValueError, match="num_train_queries"):
        MultimodalKGE(N, R, {"img": torch.randn(N, 5)}, KGModelConfig(rank=RANK, strategy="qmf"))


def test_strategy_kwargs_are_the_strategys_options_checked_as_a_config_section():
    """The KG takes a strategy's options as the classification config's strategy.<name> section:
    the same options class, so the same key, type and range errors."""
    assert small_model(strategy="qmf", strategy_kwargs={"lam_rank": 0.2}).strategy.lam_rank == 0.2
    assert small_model(strategy="pdf", strategy_kwargs={"calibrate": False}).strategy.calibrate is False
    bad = [
        (
            {"strategy": "qmf", "strategy_kwargs": {"lam_rank": -1}},
            r"model\.strategy_kwargs\.lam_rank must be finite and >= 0, got -1\.0",
        ),
        (
            {"strategy": "qmf", "strategy_kwargs": {"rank_weight": 1}},
            r"unknown config key 'model\.strategy_kwargs\.rank_weight'",
        ),
        (
            {"strategy": "pdf", "strategy_kwargs": {"calibrate": "maybe"}},
            r"'model\.strategy_kwargs\.calibrate' must be true or false",
        ),
        (
            {"strategy_kwargs": {"lam_rank": 0.5}},
            r"model\.strategy_kwargs \{'lam_rank': 0\.5\} given without model\.strategy",
        ),
    ]
    for config, message in bad:
        with pytest.raises(ValueError, match=message):
            small_model(**config)
        with pytest.raises(ValueError, match=message):  # before any data is read
            validate_kg_config(KGExperimentConfig(model=KGModelConfig(**config)))


def test_bad_features():
    with pytest.raises(ValueError, match=r"features\['img'\] has shape \(6, 5\); expected \(7, width\)"):
        MultimodalKGE(N, R, {"img": torch.randn(6, 5)}, KGModelConfig(rank=RANK))
    with pytest.raises(ValueError, match="reserved"):
        MultimodalKGE(N, R, {"structure": torch.randn(N, 5)}, KGModelConfig(rank=RANK))
    with pytest.raises(ValueError, match="at least one feature"):
        MultimodalKGE(N, R, {}, KGModelConfig(rank=RANK))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes(dtype):
    model = small_model().to(dtype)
    out = model(torch.tensor([[0, 0], [1, 2]]))
    assert out.fusion.logits.dtype == dtype and torch.isfinite(out.fusion.logits.float()).all()
    reference = small_model()(torch.tensor([[0, 0], [1, 2]])).fusion.logits
    # float64 agrees up to float32 rounding and the plan's Sinkhorn tolerance; bfloat16 to ~2 digits.
    scale = float(reference.detach().abs().max())
    tolerance = 1e-5 * scale if dtype == torch.float64 else 0.05 * scale
    assert torch.allclose(out.fusion.logits.float(), reference, atol=tolerance)


def test_gradcheck_float64_through_fusion_and_projection():
    # The plan carries no gradient; a cached plan (training mode) keeps the many calls cheap.
    model = small_model(projection=OTProjectionConfig(refresh_every=10**6)).double()
    queries = torch.tensor([[0, 0], [4, 3]])

    def logits(correction, relation):
        params = {"projections.img.correction": correction, "relation": relation}
        return torch.func.functional_call(model, params, (queries,)).fusion.logits

    correction = model.projections["img"].correction.detach().clone().requires_grad_(True)
    relation = model.relation.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(logits, (correction, relation), eps=1e-6, atol=1e-6)


def test_scores_match_brute_force():
    """Every fused score by hand: static fusion of the tables, then Re(sum_j h_j r_j conj(t_j)) per candidate."""
    model = small_model()
    queries = torch.tensor([[0, 0], [5, 1], [2, 3]])
    tables = {m: t.detach().double() for m, t in model.entity_tables().items()}
    weights = {"structure": 0.2, "img": 0.1, "ling": 0.7}
    fused = sum(weights[m] * tables[m] for m in weights)
    relation = model.relation.detach().double()
    logits = model(queries).fusion.logits.detach()
    for b, (head, rel) in enumerate(queries.tolist()):
        h = [complex(fused[head, j], fused[head, j + RANK]) for j in range(RANK)]
        r = [complex(relation[rel, j], relation[rel, j + RANK]) for j in range(RANK)]
        for n in range(N):
            t = [complex(fused[n, j], fused[n, j + RANK]) for j in range(RANK)]
            expected = sum(h[j] * r[j] * t[j].conjugate() for j in range(RANK)).real
            assert float(logits[b, n]) == pytest.approx(expected, rel=1e-5, abs=1e-5)
