import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iidfusion.losses import InformaticConstraint, gaussian_kl_to_standard, informatic_constraint


def make_batch(batch=6, classes=3, modalities=2, dim=4, scale=1.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    names = [f"m{k}" for k in range(modalities)]
    return {
        "fused_logits": scale * torch.randn(batch, classes, generator=g, dtype=dtype),
        "shared_head_logits": {n: scale * torch.randn(batch, classes, generator=g, dtype=dtype) for n in names},
        "fused_features": scale * torch.randn(batch, dim, generator=g, dtype=dtype),
        "features": {n: scale * torch.randn(batch, dim, generator=g, dtype=dtype) for n in names},
        "labels": torch.randint(classes, (batch,), generator=g),
    }


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(2, 8),
    classes=st.integers(2, 6),
    modalities=st.integers(2, 4),
    dim=st.integers(1, 6),
    scale=st.floats(0.01, 100.0),
    lam=st.floats(0.0, 10.0),
    seed=st.integers(0, 2**16),
)
def test_both_variants_respect_their_stated_lower_bound(batch, classes, modalities, dim, scale, lam, seed):
    inputs = make_batch(batch, classes, modalities, dim, scale, seed)
    aim = informatic_constraint(**inputs, lam=lam)
    literal = informatic_constraint(**inputs, lam=lam, variant="literal")
    assert aim.loss >= -modalities * math.log(classes) - 1e-5
    assert literal.loss >= -modalities * lam * math.log(classes) - 1e-5


@pytest.mark.parametrize("variant, bound", [("aim", -2 * math.log(3)), ("literal", -2 * 0.5 * math.log(3))])
def test_minimising_freely_stays_above_the_bound_and_approaches_it(variant, bound):
    # Free logits and features: the optimiser may do anything the loss rewards (exploding the
    # unimodal CE, or the unimodal KL for "literal"); the clamps must hold it at the bound.
    params = {k: v.clone().requires_grad_() if torch.is_tensor(v) and v.is_floating_point() else v
              for k, v in make_batch(batch=8, classes=3, modalities=2, dim=3).items()}
    for key in ("shared_head_logits", "features"):
        params[key] = {n: t.clone().requires_grad_() for n, t in params[key].items()}
    leaves = [params["fused_logits"], params["fused_features"], *params["shared_head_logits"].values(), *params["features"].values()]
    optimizer = torch.optim.Adam(leaves, lr=0.2)
    for _ in range(60):
        loss = informatic_constraint(**params, lam=0.5, variant=variant).loss
        assert loss.item() >= bound - 1e-5
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < bound + 0.05


def test_literal_has_the_opposite_sign_on_the_unimodal_bracket():
    inputs = make_batch(batch=16, classes=10, dim=5, scale=0.3)
    for logits in inputs["shared_head_logits"].values():  # CE < log 10 and KL < log 10: no clamp active
        logits += torch.nn.functional.one_hot(inputs["labels"], 10)
    lam = 0.2
    aim = informatic_constraint(**inputs, lam=lam)
    literal = informatic_constraint(**inputs, lam=lam, variant="literal")
    assert all(ce < math.log(10) for ce in aim.unimodal_ce.values())
    assert all(kl < math.log(10) for kl in aim.unimodal_kl.values())
    fused = aim.fused_ce + lam * aim.fused_kl
    bracket = sum(aim.unimodal_ce[n] - lam * aim.unimodal_kl[n] for n in aim.unimodal_ce)
    torch.testing.assert_close(aim.loss, fused - bracket)
    torch.testing.assert_close(literal.loss, fused + bracket)
    # hence the gradients w.r.t. every unimodal input are exactly opposite
    def grads(variant):
        leaves = {n: t.clone().requires_grad_() for n, t in inputs["shared_head_logits"].items()}
        feats = {n: t.clone().requires_grad_() for n, t in inputs["features"].items()}
        informatic_constraint(**(inputs | {"shared_head_logits": leaves, "features": feats}), lam=lam, variant=variant).loss.backward()
        return torch.cat([t.grad.flatten() for t in [*leaves.values(), *feats.values()]])
    torch.testing.assert_close(grads("aim"), -grads("literal"))


def test_clamped_unimodal_ce_stops_pushing_a_modality_at_chance():
    inputs = make_batch(batch=4, classes=3)
    wrong = (inputs["labels"] + 1) % 3
    confident_wrong = 20.0 * torch.nn.functional.one_hot(wrong, 3).float()  # CE ~ 20 > log 3 on every sample
    leaf = confident_wrong.clone().requires_grad_()
    inputs["shared_head_logits"]["m0"] = leaf
    informatic_constraint(**inputs).loss.backward()
    assert torch.count_nonzero(leaf.grad) == 0


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (1.5, 0.3), (-0.7, 2.5)])
def test_kl_matches_numerical_integration(mean, std):
    g = torch.Generator().manual_seed(1)
    raw = torch.randn(200, 1, generator=g, dtype=torch.float64)
    features = (raw - raw.mean()) / raw.std() * std + mean  # batch mean and unbiased std exactly (mean, std)
    x = torch.linspace(-40, 40, 400_001, dtype=torch.float64)
    p = torch.distributions.Normal(mean, std).log_prob(x)
    q = torch.distributions.Normal(0.0, 1.0).log_prob(x)
    numeric = torch.trapezoid(p.exp() * (p - q), x)
    torch.testing.assert_close(gaussian_kl_to_standard(features), numeric, rtol=1e-6, atol=1e-8)


def test_kl_averages_over_dimensions_and_floors_the_variance():
    features = torch.randn(50, 1, dtype=torch.float64)
    per_dim = gaussian_kl_to_standard(features)
    torch.testing.assert_close(gaussian_kl_to_standard(features.repeat(1, 7)), per_dim)
    collapsed = torch.ones(5, 3)
    expected = 0.5 * (1e-4 + 1.0 - 1.0 - math.log(1e-4))
    assert gaussian_kl_to_standard(collapsed).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_give_a_finite_float32_loss(dtype):
    inputs = make_batch(batch=32, classes=5, modalities=3, dim=16, dtype=dtype)
    inputs["labels"] = inputs["labels"].int()  # any integer dtype
    out = InformaticConstraint(lam=0.1)(**inputs)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    reference = informatic_constraint(**make_batch(batch=32, classes=5, modalities=3, dim=16), lam=0.1)
    torch.testing.assert_close(out.loss, reference.loss, rtol=0.05, atol=0.05)


def test_gradcheck_float64():
    inputs = make_batch(batch=5, classes=3, dim=2, dtype=torch.float64, scale=0.5)
    names = list(inputs["features"])

    def loss(fused_logits, fused_features, h0, h1, z0, z1):
        return informatic_constraint(
            fused_logits, dict(zip(names, (h0, h1))), fused_features, dict(zip(names, (z0, z1))), inputs["labels"]
        ).loss

    leaves = [inputs["fused_logits"], inputs["fused_features"], *inputs["shared_head_logits"].values(), *inputs["features"].values()]
    assert torch.autograd.gradcheck(loss, [t.clone().requires_grad_() for t in leaves])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.update(labels=torch.tensor([0, 1, 2, 3, 0, 1])), "labels must lie in"),
        (lambda b: b.update(labels=-b["labels"] - 1), "labels must lie in"),
        (lambda b: b.update(labels=b["labels"].float()), "integer"),
        (lambda b: b["features"]["m0"].__setitem__((0, 0), float("nan")), r"features\['m0'\] contains NaN"),
        (lambda b: b["shared_head_logits"]["m1"].__setitem__((2, 1), float("inf")), r"shared_head_logits\['m1'\] contains NaN or inf"),
        (lambda b: b["features"].update(m1=b["features"]["m1"][:, :3]), "features must have one shape across modalities"),
        (lambda b: b.update(features={"m0": b["features"]["m0"]}, shared_head_logits={"m0": b["shared_head_logits"]["m0"]}), "at least two"),
        (lambda b: b["features"].update(m1=b["features"]["m1"][:5]), "mismatched batch sizes"),
        (lambda b: b["shared_head_logits"].pop("m1"), "shared_head_logits"),
        (lambda b: b.update(fused_features=b["fused_features"][:3]), "fused_features"),
    ],
)
def test_bad_input_raises_a_clear_value_error(change, message):
    inputs = make_batch(batch=6, classes=3)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        informatic_constraint(**inputs)


def test_batch_of_one_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match="drop_last"):
        informatic_constraint(**make_batch(batch=1))


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant"):
        InformaticConstraint(variant="upside-down")


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -0.1])
def test_a_lam_that_is_not_a_finite_weight_raises(lam):
    """lam = NaN made every L_ic NaN, found only when training diverged."""
    with pytest.raises(ValueError, match="lam"):
        InformaticConstraint(lam=lam)
    with pytest.raises(ValueError, match="lam must be finite and >= 0"):
        informatic_constraint(**make_batch(batch=6, classes=3), lam=lam)
