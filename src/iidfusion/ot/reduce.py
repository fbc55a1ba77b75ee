"""Frequency sparsification + RIP projection of features (docs/method.md, "Distribution coherence", step 1).

A cloud of n features z in R^dim is compressed to R^d2 before transport:

1. ``Z^ = rfft(Z)`` along the feature axis; the d1 frequency bins of largest amplitude,
   averaged over the n points of the cloud, are kept (chosen anew at every call, so each
   modality gets its own);
2. ``Z~ = Phi irfft(kept bins of Z^)`` with ``Phi`` a fixed d2 x dim Gaussian matrix,
   entries N(0, 1/d2), which satisfies the restricted isometry property on signals that
   are sparse in frequency when d2 ~ c d1 log(dim / d1) (Candes and Tao 2006; Rudelson and
   Vershynin 2008), so distances between reduced points approximate distances between the
   low-passed ones.

Step 2 is not evaluated as written: irfft is linear, so ``Phi irfft`` restricted to the kept
bins is a (2 d1) x d2 matrix ``Psi``, precomputed for every bin. A kept bin k with coefficient
c contributes (w_k / dim)(Re c cos(2 pi k t / dim) - Im c sin(2 pi k t / dim)) to the
reconstructed signal, with w_k = 1 for the bins that are their own conjugate (k = 0 and,
for even dim, k = dim / 2; irfft ignores their imaginary part, and so does Psi since the
sine vanishes there) and w_k = 2 otherwise (the bin stands for itself and its conjugate
partner). The coefficients are linear in z too (Re c = z . cos_k, Im c = -z . sin_k, the rows
of the ``analysis`` matrix), so for the kept bins of a cloud the whole map is one
dim x d2 matrix R = analysis[kept]^T Psi[kept], and a call costs one product z R (and its
backward one product), after the choice of the bins, which carries no gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FourierRIPReducer", "default_rip_width", "rip_dimension"]


def rip_dimension(dim: int, d1: int, distortion: float = 0.5) -> int:
    """Suggested d2 = ceil(2 d1 log(dim / d1) / distortion^2), at least 2 d1.

    A Gaussian d2 x dim matrix with entries N(0, 1/d2) has the restricted isometry property
    of order s with constant delta once d2 >= c s log(dim / s) / delta^2. The constant of the
    theory is loose; 2 is measured: with it, the seed-0 Phi of tests/ot/test_reduce.py
    keeps every sampled signal with d1 kept bins within a factor [1 - distortion,
    1 + distortion] of its length. A real signal on d1 bins has up to 2 d1 real degrees of
    freedom, hence the floor 2 d1.
    """
    n_bins = dim // 2 + 1
    if not 1 <= d1 <= n_bins:
        raise ValueError(f"d1 must be in [1, {n_bins}] (rfft bins of dim={dim}), got {d1}")
    if not 0 < distortion < 1:
        raise ValueError(f"distortion must be in (0, 1), got {distortion}")
    return max(2 * d1, math.ceil(2.0 * d1 * math.log(max(dim / d1, math.e)) / distortion**2))


def default_rip_width(dim: int, d1: int) -> int:
    """The default d2: :func:`rip_dimension` capped at ``dim // 2`` (at least 1).

    The RIP bound is a sufficient condition and asks for more rows than a narrow feature has
    (rip_dimension(64, 16) = 178): the cap keeps Phi a real reduction at every width, the point
    of the paper's step, at a distortion measured in docs/method.md ("Fourier sparsification +
    RIP"). Wide features (dim >= 2 rip_dimension) get the bound itself.
    """
    return max(1, min(rip_dimension(dim, d1), dim // 2))


class FourierRIPReducer(nn.Module):
    """Top-d1 Fourier bins, then a fixed Gaussian projection to d2 dimensions.

    Args:
        dim: feature dimension of the inputs.
        d1: number of rfft bins kept (1 <= d1 <= dim // 2 + 1).
        d2: output dimension (>= 1). ``None`` (default): :func:`default_rip_width`, the
            RIP sample size ``rip_dimension(dim, d1)`` capped at ``dim // 2``, so that Phi
            always reduces (at dim = 64, d1 = 16 the RIP bound asks for 178 rows; the cap gives
            32, whose distortion docs/method.md reports).
        seed: seed of ``Phi`` (a registered buffer, saved with the module); a training run
            passes its own seed, so that seeds vary the projection too.

    A state dict's ``phi`` defines the projection it was saved with, whatever its width: loading
    one of another ``d2`` (a checkpoint of a run with other options, or of an earlier release,
    whose default at small widths was ``Phi = I``) adopts it.

    ``forward(z)`` maps ``(..., n, dim)`` to ``(..., n, d2)``; every leading index is its own
    cloud with its own kept bins. Gradients flow through the kept coefficients; the choice of
    the bins is piecewise constant.
    """

    phi: Tensor
    psi: Tensor
    analysis: Tensor

    def __init__(self, dim: int, d1: int, d2: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        n_bins = dim // 2 + 1
        if not (isinstance(d1, int) and 1 <= d1 <= n_bins):
            raise ValueError(f"d1 must be an int in [1, {n_bins}] (rfft bins of dim={dim}), got {d1!r}")
        if not (d2 is None or (isinstance(d2, int) and d2 >= 1)):
            raise ValueError(f"d2 must be an int >= 1 or None, got {d2!r}")
        d2 = default_rip_width(dim, d1) if d2 is None else d2
        self.dim, self.d1, self.seed = dim, d1, seed
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("phi", torch.randn(d2, dim, generator=generator) / math.sqrt(d2))
        self.register_buffer("psi", self._compose(self.phi), persistent=False)
        self.register_buffer("analysis", self._analysis(self.phi), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_psi)

    @property
    def d2(self) -> int:
        """The output width: the rows of Phi."""
        return int(self.phi.shape[0])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        stored = state_dict.get(prefix + "phi")
        if (
            isinstance(stored, Tensor)
            and stored.ndim == 2
            and stored.shape[1] == self.dim
            and stored.shape != self.phi.shape
        ):
            self.phi = torch.empty_like(stored, dtype=self.phi.dtype, device=self.phi.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _compose(self, phi: Tensor) -> Tensor:
        """(2 * n_bins, d2): rows [Phi irfft(e_k) for Re, Phi irfft(i e_k) for Im] per bin."""
        dim = self.dim
        n_bins = dim // 2 + 1
        eye = torch.eye(n_bins, dtype=torch.complex128)
        # irfft of a unit coefficient is exactly the (w_k / dim) cos / sin basis vector.
        real_basis = torch.fft.irfft(eye, n=dim)  # (n_bins, dim)
        imag_basis = torch.fft.irfft(1j * eye, n=dim)
        basis = torch.cat([real_basis, imag_basis], dim=0)  # (2 n_bins, dim)
        return (basis.to(phi.device) @ phi.to(torch.float64).T).to(phi.dtype)

    def _analysis(self, like: Tensor) -> Tensor:
        """(2 * n_bins, dim): rows [cos(2 pi k t / dim) per bin, then -sin(2 pi k t / dim)], so
        that z @ analysis^T holds the real, then the imaginary parts of rfft(z).
        """
        spectrum = torch.fft.rfft(
            torch.eye(self.dim, dtype=torch.float64), dim=-1
        )  # row t: the spectrum of the unit signal e_t
        return torch.cat([spectrum.real.T, spectrum.imag.T], 0).to(device=like.device, dtype=like.dtype)

    def _kept_bins(self, z: Tensor) -> Tensor:
        """The indices (..., d1) of the bins of largest amplitude averaged over each cloud's points.

        The amplitudes come from one real product with ``analysis`` (the magnitude of a complex
        rfft output is several times slower to take on CPUs).
        """
        with torch.no_grad():
            n_bins = self.dim // 2 + 1
            parts = torch.matmul(z, self.analysis.to(z.dtype).T)
            real, imag = parts[..., :n_bins], parts[..., n_bins:]
            amplitude = (real * real).addcmul_(imag, imag).sqrt_()
            return amplitude.mean(-2).topk(self.d1, dim=-1).indices

    def spectrum(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Rfft of ``z`` ``(..., n, dim // 2 + 1)`` and the indices ``(..., d1)`` of the bins
        of largest amplitude averaged over the n points of each cloud (those ``forward`` keeps).
        """
        z = self._checked(z)
        return torch.fft.rfft(z, dim=-1), self._kept_bins(z)

    def _checked(self, z: Tensor) -> Tensor:
        if z.ndim < 2 or z.shape[-1] != self.dim:
            raise ValueError(f"z must have shape (..., n, {self.dim}), got {tuple(z.shape)}")
        if z.shape[-2] == 0:
            raise ValueError("z is an empty cloud (n = 0)")
        # The FFT has no half-precision CPU kernels: half inputs are transformed in float32.
        return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z

    def forward(self, z: Tensor) -> Tensor:
        work = self._checked(z)
        kept = self._kept_bins(work)
        rows = torch.cat([kept, kept + (self.dim // 2 + 1)], dim=-1)  # (..., 2 d1): Re, then Im rows
        analysis, psi = self.analysis.to(work.dtype), self.psi.to(work.dtype)
        reduction = torch.matmul(analysis[rows].transpose(-1, -2), psi[rows])  # (..., dim, d2), no gradient
        return torch.matmul(work, reduction).to(z.dtype)

    def _apply(self, fn: Any, recurse: bool = True) -> FourierRIPReducer:
        # Recompose Psi from the converted Phi (.double(), .to(device)) rather than converting
        # the float32 Psi, which would keep float32 rounding in a float64 module.
        super()._apply(fn, recurse)
        self.psi = self._compose(self.phi)
        self.analysis = self._analysis(self.phi)
        return self

    def extra_repr(self) -> str:
        return f"dim={self.dim}, d1={self.d1}, d2={self.d2}, seed={self.seed}"


def _refresh_psi(module: nn.Module, incompatible_keys: Any) -> None:
    """Recompose Psi after ``load_state_dict`` replaced Phi."""
    assert isinstance(module, FourierRIPReducer)
    module.psi = module._compose(module.phi)
