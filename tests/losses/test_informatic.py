import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from iidfusion.losses import InformaticConstraint, gaussian_kl_to_standard, informatic_constraint
from iidfusion.losses.informatic import REDUCTIONS, VARIANTS


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


def lower_bound(variant, classes, modalities, lam, reduction="mean"):
    """The documented lower bound of each reading (factor M for the sum over modalities)."""
    per_modality = {"paper": 0.0, "vib": 0.0, "margin": 0.0, "literal": -lam * math.log(classes), "ce-only": 0.0}[
        variant
    ]
    return per_modality * (modalities if reduction == "sum" else 1)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(2, 8),
    classes=st.integers(2, 6),
    modalities=st.integers(2, 4),
    dim=st.integers(1, 6),
    scale=st.floats(0.01, 100.0),
    lam=st.floats(0.0, 10.0),
    seed=st.integers(0, 2**16),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_every_variant_respects_its_stated_lower_bound(batch, classes, modalities, dim, scale, lam, seed, reduction):
    inputs = make_batch(batch, classes, modalities, dim, scale, seed)
    weights = torch.rand(batch, modalities, generator=torch.Generator().manual_seed(seed)) + 0.01
    for variant in VARIANTS:
        out = informatic_constraint(**inputs, lam=lam, variant=variant, reduction=reduction, modality_weights=weights)
        assert out.loss >= lower_bound(variant, classes, modalities, lam, reduction) - 1e-5, variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_minimising_freely_stays_above_the_bound_and_approaches_it(variant):
    # Free logits and features: the optimiser may do anything the loss rewards (exploding the
    # unimodal CE for "paper", the unimodal KL for "literal"); the clamps must hold it at the bound.
    bound = lower_bound(variant, classes=3, modalities=2, lam=0.5)
    params = {
        k: v.clone().requires_grad_() if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in make_batch(batch=8, classes=3, modalities=2, dim=3).items()
    }
    for key in ("shared_head_logits", "features"):
        params[key] = {n: t.clone().requires_grad_() for n, t in params[key].items()}
    leaves = [
        params["fused_logits"],
        params["fused_features"],
        *params["shared_head_logits"].values(),
        *params["features"].values(),
    ]
    optimizer = torch.optim.Adam(leaves, lr=0.2)
    # "margin" needs the fused CE a margin below the (detached) unimodal CEs: 0 only once every
    # sample's fused CE is 0.1 below its unimodal ones, i.e. a margin of 0 here.
    options = {"margin": 0.0} if variant == "margin" else {}
    for _ in range(80):
        loss = informatic_constraint(**params, lam=0.5, variant=variant, **options).loss
        assert loss.item() >= bound - 1e-5
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < bound + 0.05


def test_paper_is_the_fused_terms_plus_the_readable_information_and_the_kls():
    """paper = CE(g(z)) + lam KL_z + mean_m [mean_i relu(log C - CE_i(g(z^m))) + lam KL_m], term by term."""
    inputs = make_batch(batch=16, classes=10, modalities=3, dim=5, scale=0.3)
    for logits in inputs["shared_head_logits"].values():  # some samples above chance, some below
        logits[::2] += 3.0 * F.one_hot(inputs["labels"][::2], 10)
    lam = 0.2
    out = informatic_constraint(**inputs, lam=lam, variant="paper")
    labels = inputs["labels"]
    readable = [
        torch.relu(math.log(10) - F.cross_entropy(h, labels, reduction="none")).mean()
        for h in inputs["shared_head_logits"].values()
    ]
    assert all(r > 0 for r in readable)
    unimodal = sum(r + lam * out.unimodal_kl[n] for r, n in zip(readable, out.unimodal_kl, strict=True)) / 3
    torch.testing.assert_close(out.loss, out.fused_ce + lam * out.fused_kl + unimodal)
    torch.testing.assert_close(
        informatic_constraint(**inputs, lam=lam, variant="aim").loss, out.loss
    )  # the former name


def test_paper_and_literal_push_the_unimodal_ce_in_opposite_directions():
    """literal trains g on each modality; paper's second part suppresses what g reads from it."""
    inputs = make_batch(batch=16, classes=10, dim=5, scale=0.3)
    for logits in inputs["shared_head_logits"].values():  # CE < log 10 and KL < log 10: no clamp active
        logits += F.one_hot(inputs["labels"], 10)

    def grads(variant):
        leaves = {n: t.clone().requires_grad_() for n, t in inputs["shared_head_logits"].items()}
        informatic_constraint(**(inputs | {"shared_head_logits": leaves}), lam=0.0, variant=variant).loss.backward()
        return torch.cat([t.grad.flatten() for t in leaves.values()])

    torch.testing.assert_close(grads("paper"), -grads("literal"))


def test_vib_is_the_fused_terms_plus_the_mean_unimodal_kl():
    inputs = make_batch(batch=12, classes=4, modalities=3, dim=5)
    out = informatic_constraint(**inputs, lam=0.3, variant="vib")
    mean_kl = sum(out.unimodal_kl.values()) / 3
    torch.testing.assert_close(out.loss, out.fused_ce + 0.3 * out.fused_kl + 0.3 * mean_kl)
    # no gradient reaches the shared head's unimodal logits: no unimodal prediction is rewarded or punished
    leaves = {n: t.clone().requires_grad_() for n, t in inputs["shared_head_logits"].items()}
    fused = inputs["fused_logits"].clone().requires_grad_()
    informatic_constraint(
        **(inputs | {"shared_head_logits": leaves, "fused_logits": fused}), variant="vib"
    ).loss.backward()
    assert all(t.grad is None or torch.count_nonzero(t.grad) == 0 for t in leaves.values())


def test_margin_is_a_hinge_on_the_fused_ce_with_the_unimodal_ce_detached():
    inputs = make_batch(batch=10, classes=4, modalities=2, dim=3)
    labels = inputs["labels"]
    out = informatic_constraint(**inputs, lam=0.0, variant="margin", margin=0.2)
    fused = F.cross_entropy(inputs["fused_logits"], labels, reduction="none")
    hinge = [
        torch.relu(fused - F.cross_entropy(h, labels, reduction="none") + 0.2).mean()
        for h in inputs["shared_head_logits"].values()
    ]
    torch.testing.assert_close(out.loss, fused.mean() + sum(hinge) / 2)
    leaves = {n: t.clone().requires_grad_() for n, t in inputs["shared_head_logits"].items()}
    fused_leaf = inputs["fused_logits"].clone().requires_grad_()
    informatic_constraint(
        **(inputs | {"shared_head_logits": leaves, "fused_logits": fused_leaf}), variant="margin"
    ).loss.backward()
    assert torch.count_nonzero(fused_leaf.grad) > 0
    assert all(t.grad is None or torch.count_nonzero(t.grad) == 0 for t in leaves.values())


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "ce-only"])  # ce-only has no unimodal term
def test_reductions_mean_sum_and_weighted(variant):
    inputs = make_batch(batch=9, classes=3, modalities=3, dim=4, seed=3)
    fused_only = informatic_constraint(**inputs, variant=variant, reduction="sum")
    total = {
        r: informatic_constraint(**inputs, variant=variant, reduction=r, modality_weights=torch.ones(9, 3)).loss
        for r in REDUCTIONS
    }
    base = fused_only.fused_ce + 0.1 * fused_only.fused_kl
    # the unimodal part of "sum" is M times that of "mean"; uniform fusion weights give "mean"
    torch.testing.assert_close(total["sum"] - base, 3 * (total["mean"] - base))
    torch.testing.assert_close(total["weighted"], total["mean"])
    # weights that put everything on one modality make "weighted" that modality's term alone
    one_hot = torch.zeros(9, 3)
    one_hot[:, 1] = 1.0
    only_m1 = informatic_constraint(**inputs, variant=variant, reduction="weighted", modality_weights=one_hot).loss
    alone = informatic_constraint(
        **(
            inputs
            | {
                "shared_head_logits": dict.fromkeys(("m0", "m1"), inputs["shared_head_logits"]["m1"]),
                "features": dict.fromkeys(("m0", "m1"), inputs["features"]["m1"]),
            }
        ),
        variant=variant,
    ).loss
    torch.testing.assert_close(only_m1, alone)
    with pytest.raises(ValueError, match="modality_weights of shape"):
        informatic_constraint(**inputs, variant=variant, reduction="weighted")


def test_clamped_unimodal_ce_stops_pushing_a_modality_at_chance():
    inputs = make_batch(batch=4, classes=3)
    wrong = (inputs["labels"] + 1) % 3
    confident_wrong = 20.0 * torch.nn.functional.one_hot(wrong, 3).float()  # CE ~ 20 > log 3 on every sample
    leaf = confident_wrong.clone().requires_grad_()
    inputs["shared_head_logits"]["m0"] = leaf
    informatic_constraint(**inputs, variant="paper").loss.backward()
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


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64(variant, reduction):
    inputs = make_batch(batch=5, classes=3, dim=2, dtype=torch.float64, scale=0.5)
    names = list(inputs["features"])
    weights = torch.rand(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1

    def loss(fused_logits, fused_features, h0, h1, z0, z1):
        return informatic_constraint(
            fused_logits,
            dict(zip(names, (h0, h1), strict=True)),
            fused_features,
            dict(zip(names, (z0, z1), strict=True)),
            inputs["labels"],
            variant=variant,
            reduction=reduction,
            modality_weights=weights,
        ).loss

    leaves = [
        inputs["fused_logits"],
        inputs["fused_features"],
        *inputs["shared_head_logits"].values(),
        *inputs["features"].values(),
    ]
    # "margin" detaches the unimodal CE by design (its gradient is not that of its value in g(z^m)):
    # checked with the unimodal logits held constant.
    constant = {2, 3} if variant == "margin" else set()
    leaves = [t.clone().requires_grad_(k not in constant) for k, t in enumerate(leaves)]
    assert torch.autograd.gradcheck(loss, leaves)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.update(labels=torch.tensor([0, 1, 2, 3, 0, 1])), "labels must lie in"),
        (lambda b: b.update(labels=-b["labels"] - 1), "labels must lie in"),
        (lambda b: b.update(labels=b["labels"].float()), "integer"),
        (lambda b: b["features"]["m0"].__setitem__((0, 0), float("nan")), r"features\['m0'\] contains NaN"),
        (
            lambda b: b["shared_head_logits"]["m1"].__setitem__((2, 1), float("inf")),
            r"shared_head_logits\['m1'\] contains NaN or inf",
        ),
        (
            lambda b: b["features"].update(m1=b["features"]["m1"][:, :3]),
            "features must have one shape across modalities",
        ),
        (
            lambda b: b.update(
                features={"m0": b["features"]["m0"]}, shared_head_logits={"m0": b["shared_head_logits"]["m0"]}
            ),
            "at least two",
        ),
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


@pytest.mark.parametrize(
    "options, message",
    [
        ({"variant": "upside-down"}, "variant"),
        ({"reduction": "max"}, "reduction"),
        ({"lam": float("nan")}, "lam"),
        ({"lam": -1.0}, "lam"),
        ({"margin": float("inf")}, "margin"),
        ({"var_floor": 0.0}, "var_floor"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        InformaticConstraint(**options)
    with pytest.raises(ValueError, match=message):
        informatic_constraint(**make_batch(), **options)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_weighted_reduction_refuses_non_finite_or_negative_modality_weights(bad):
    inputs = make_batch(batch=6, classes=3)
    weights = torch.ones(6, 2)
    weights[2, 1] = bad
    with pytest.raises(ValueError, match="finite, non-negative modality_weights"):
        informatic_constraint(**inputs, reduction="weighted", modality_weights=weights)


def test_kl_scale_is_the_std_of_the_reference_gaussian():
    """KL(N_z || N(0, r^2 I)) of features at scale r equals KL(N_z / r || N(0, I)): the KL terms
    guard features that live at another scale (KG embeddings) without pulling them to unit variance."""
    features = torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for r in (0.01, 0.3, 5.0):
        torch.testing.assert_close(gaussian_kl_to_standard(r * features, scale=r), gaussian_kl_to_standard(features))
    inputs = make_batch(batch=8, classes=3, scale=0.3)
    scaled = informatic_constraint(**inputs, kl_scale=0.3)
    assert scaled.fused_kl < informatic_constraint(**inputs).fused_kl  # std 0.3 features: near their reference
    with pytest.raises(ValueError, match="kl_scale"):
        InformaticConstraint(kl_scale=0.0)


def test_ce_only_is_the_fused_ce_alone():
    inputs = make_batch(batch=10, classes=4, modalities=3)
    out = informatic_constraint(**inputs, variant="ce-only", lam=0.5)
    torch.testing.assert_close(out.loss, F.cross_entropy(inputs["fused_logits"], inputs["labels"]))
