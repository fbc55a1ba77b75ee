"""Tests of iidfusion.ot.reduce: the composed Psi, the kept bins, the RIP distortion."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from iidfusion.ot import FourierRIPReducer, default_rip_width, rip_dimension

# The RIP tests use dim=128 and d1=4 kept bins; rip_dimension(128, 4) = 111 = d2 promises
# lengths and distances within [1 - 0.5, 1 + 0.5] for the seed-0 Phi (the isometry
# constants of 5000 random supports measured 0.64..1.38, so the bound has a margin).
DIM, D1, DISTORTION = 128, 4, 0.5
N_BINS = DIM // 2 + 1


def _explicit(reducer: FourierRIPReducer, z: torch.Tensor) -> torch.Tensor:
    """Phi @ irfft(rfft(z) with only the kept bins), computed literally."""
    spectrum, kept = reducer.spectrum(z)
    mask = torch.zeros_like(spectrum.real).scatter_(
        -1, kept.unsqueeze(-2).expand(*spectrum.shape[:-1], reducer.d1), 1.0
    )
    return torch.fft.irfft(spectrum * mask, n=reducer.dim) @ reducer.phi.T


@pytest.mark.parametrize(("dim", "d1", "d2"), [(64, 8, 20), (63, 32, 7), (10, 6, 3), (1, 1, 2)])
def test_equals_explicit_construction(dim: int, d1: int, d2: int) -> None:
    reducer = FourierRIPReducer(dim, d1, d2, seed=3).double()
    z = torch.randn(2, 3, 9, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = reducer(z)
    assert out.shape == (2, 3, 9, d2)
    torch.testing.assert_close(out, _explicit(reducer, z), rtol=1e-10, atol=1e-12)


def test_bins_are_chosen_per_cloud() -> None:
    reducer = FourierRIPReducer(32, 2, 8, seed=0)
    t = torch.arange(32, dtype=torch.float32)
    low = torch.stack([torch.cos(2 * math.pi * t / 32), torch.cos(2 * math.pi * 2 * t / 32)]).repeat(5, 1)
    high = torch.stack([torch.cos(2 * math.pi * 9 * t / 32), torch.sin(2 * math.pi * 12 * t / 32)]).repeat(5, 1)
    _, kept = reducer.spectrum(torch.stack([low, high]))
    assert [sorted(k.tolist()) for k in kept] == [[1, 2], [9, 12]]


def test_phi_is_a_seeded_buffer() -> None:
    first, again, other = (FourierRIPReducer(16, 3, 5, seed=s) for s in (7, 7, 8))
    assert "phi" in dict(first.named_buffers()) and "phi" in first.state_dict()
    assert torch.equal(first.phi, again.phi) and not torch.equal(first.phi, other.phi)
    assert first.phi.std().item() == pytest.approx(1 / math.sqrt(5), rel=0.3)
    z = torch.randn(6, 16)
    other.load_state_dict(first.state_dict())  # Psi must follow the loaded Phi
    torch.testing.assert_close(other(z), first(z))


def test_dtypes_and_gradient() -> None:
    reducer = FourierRIPReducer(24, 4, 6)
    z = torch.randn(10, 24, requires_grad=True)
    out = reducer(z)
    assert out.dtype == torch.float32
    out.square().sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    half = reducer(z.detach().bfloat16())
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()


@st.composite
def sparse_signals(draw: st.DrawFn) -> torch.Tensor:
    """A few real signals of length DIM whose spectra live on the same D1 bins."""
    bins = draw(st.lists(st.integers(0, N_BINS - 1), min_size=D1, max_size=D1, unique=True))
    n_points = draw(st.integers(2, 4))
    magnitude = st.floats(0.2, 2.0)
    sign = st.sampled_from([-1.0, 1.0])
    spectrum = torch.zeros(n_points, N_BINS, dtype=torch.complex128)
    for i in range(n_points):
        for k in bins:
            real = draw(magnitude) * draw(sign)
            # The DC bin and the Nyquist bin of a real signal have no imaginary part.
            imag = 0.0 if k in (0, N_BINS - 1) else draw(magnitude) * draw(sign)
            spectrum[i, k] = complex(real, imag)
    return torch.fft.irfft(spectrum, n=DIM)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(sparse_signals())
def test_rip_preserves_lengths_and_distances(z: torch.Tensor) -> None:
    reducer = FourierRIPReducer(DIM, D1, rip_dimension(DIM, D1, DISTORTION), seed=0).double()
    reduced = reducer(z)
    assert reducer.d2 < DIM
    # The signals are D1-sparse: the low-pass step keeps them whole.
    torch.testing.assert_close(reduced, z @ reducer.phi.T)
    ratios = [reduced.norm(dim=1) / z.norm(dim=1)]
    for i in range(z.shape[0]):
        for j in range(i + 1, z.shape[0]):
            difference = (z[i] - z[j]).norm()
            if difference > 1e-6:
                ratios.append(((reduced[i] - reduced[j]).norm() / difference).reshape(1))
    ratios = torch.cat(ratios)
    assert ratios.min() >= 1 - DISTORTION and ratios.max() <= 1 + DISTORTION


def test_default_d2_always_reduces() -> None:
    """d2=None: rip_dimension(dim, d1) capped at dim // 2, so Phi reduces at every width."""
    wide = FourierRIPReducer(2048, 16)
    assert wide.d2 == default_rip_width(2048, 16) == rip_dimension(2048, 16) < 1024
    for dim in (2, 3, 8, 63, 64, 65, 128, 240, 2048):
        d1 = min(16, dim // 2 + 1)
        reducer = FourierRIPReducer(dim, d1)
        assert reducer.d2 == default_rip_width(dim, d1) <= max(1, dim // 2) < dim, dim
        assert reducer.phi.shape == (reducer.d2, dim)
    assert FourierRIPReducer(64, 16).d2 == 32  # rip_dimension(64, 16) = 178: capped
    assert "seed=0" in repr(wide)


def test_a_state_dict_of_another_width_or_an_identity_phi_loads() -> None:
    """A checkpoint holds its own Phi: an earlier release's identity Phi at width 64 (d2 = 64)
    and a run with another d2 load into today's default module and reproduce their outputs."""
    z = torch.randn(2, 30, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    stored = FourierRIPReducer(64, 16).double()
    identity = {"phi": torch.eye(64, dtype=torch.float64)}
    stored.load_state_dict(identity)
    assert stored.d2 == 64
    torch.testing.assert_close(stored(z), _explicit(stored, z), rtol=1e-10, atol=1e-12)  # the low-passed features
    other = FourierRIPReducer(64, 16, 40, seed=5).double()
    again = FourierRIPReducer(64, 16).double()
    again.load_state_dict(other.state_dict())
    assert again.d2 == 40
    torch.testing.assert_close(again(z), other(z))


def test_rip_dimension() -> None:
    assert rip_dimension(128, 4) == math.ceil(2 * 4 * math.log(32) / 0.25)
    assert rip_dimension(128, 4, distortion=0.25) > rip_dimension(128, 4)
    assert rip_dimension(8, 5) >= 10  # never below the 2 d1 real degrees of freedom
    for bad in ({"d1": 0}, {"d1": 66}, {"d1": 4, "distortion": 1.5}):
        with pytest.raises(ValueError):
            rip_dimension(128, **{"distortion": 0.5, **bad})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((16, 0, 4), "d1"),
        ((16, 10, 4), "d1"),
        ((16, 4, 0), "d2"),
        ((16, 4, 2.0), "d2"),
        ((0, 1, 4), "dim"),
        ((16, 2.5, 4), "d1"),
    ],
)
def test_bad_configuration_raises(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FourierRIPReducer(*args)


@pytest.mark.parametrize(("shape", "message"), [((5, 15), "shape"), ((16,), "shape"), ((0, 16), "empty")])
def test_bad_input_raises(shape: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FourierRIPReducer(16, 4, 4)(torch.zeros(shape))
