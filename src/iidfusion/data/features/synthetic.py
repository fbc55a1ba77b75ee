"""The synthetic theory benchmark (docs/method.md, "Synthetic theory benchmark"): where IID's claims can be checked
exactly.

Generative model, following the paper's split of feature dimensions into task-relevant and noise
dimensions. For sample i with label y_i (classes balanced, order shuffled) and modality m:

    x_i^m = [ mu_{y_i} + sigma e_i^m  ,  sigma n_i^m ] + shift * u_m        (relevant | noise dims)

* ``mu_c`` (c < C) are class means in the ``relevant_dims`` dimensions, shared by all modalities
  (every modality sees the same label semantics), scaled so that the root-mean-square distance
  between two class means is ``class_separation``;
* ``e_i^m``, ``n_i^m`` are independent standard normal noise, so modalities are conditionally
  independent given y and fusing them helps;
* ``u_m`` are orthonormal directions in the full view space: ``shift`` translates each modality's
  distribution, so two modalities' feature distributions differ by exactly a translation of length
  ``shift * sqrt(2)`` (their Wasserstein distance, for any p, in the population);
* per-sample quality: a ``corrupt_fraction`` of the samples has ONE modality (uniformly chosen)
  corrupted by extra Gaussian noise of std ``corrupt_std`` on its relevant dimensions, so the best
  fusion weights vary per sample. Corruption is symmetric across modalities, so it does not change
  the modality distributions' relation to each other.

The world (class means, shift directions) comes from ``structure_seed``; the samples from the
``seed`` of :func:`generate_synthetic`: two calls with different seeds draw train and test data
from the same distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from iidfusion.data.features.base import MultiViewData


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic benchmark (module docstring). Every view has width relevant_dims + noise_dims."""

    num_modalities: int = 2
    """M >= 2; views are named ``m0``, ``m1``, ..."""
    num_classes: int = 4
    relevant_dims: int = 8
    """task-relevant dimensions per view (class-dependent means)."""
    noise_dims: int = 24
    """task-irrelevant dimensions per view (pure noise)."""
    class_separation: float = 3.0
    """RMS distance between two class means, in units of the features (noise std is ``noise_std``)."""
    noise_std: float = 1.0
    shift: float = 1.0
    """length of each modality's translation along its own direction; pairwise distance shift * sqrt(2)."""
    corrupt_fraction: float = 0.2
    """fraction of samples with one corrupted modality."""
    corrupt_std: float = 4.0
    """std of the extra noise on a corrupted modality's relevant dimensions."""
    structure_seed: int = 0
    """seed of the class means and shift directions (the world), distinct from the sample seed."""

    def __post_init__(self) -> None:
        checks = {
            "num_modalities >= 2": self.num_modalities >= 2,
            "num_classes >= 2": self.num_classes >= 2,
            "relevant_dims >= 1": self.relevant_dims >= 1,
            "noise_dims >= 0": self.noise_dims >= 0,
            "class_separation >= 0": self.class_separation >= 0,
            "noise_std > 0": self.noise_std > 0,
            "shift >= 0": self.shift >= 0,
            "0 <= corrupt_fraction <= 1": 0 <= self.corrupt_fraction <= 1,
            "corrupt_std >= 0": self.corrupt_std >= 0,
            "relevant_dims + noise_dims >= num_modalities (orthogonal shifts)": self.dim >= self.num_modalities,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid SyntheticConfig {self}: need {'; '.join(failed)}")

    @property
    def dim(self) -> int:
        """Width of every view."""
        return self.relevant_dims + self.noise_dims

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"m{k}" for k in range(self.num_modalities))


def _world(config: SyntheticConfig) -> tuple[Tensor, Tensor]:
    """Class means (C, relevant_dims) and orthonormal shift directions (M, dim) of the config."""
    generator = torch.Generator().manual_seed(config.structure_seed)
    scale = config.class_separation / math.sqrt(2 * config.relevant_dims)
    means = torch.randn(config.num_classes, config.relevant_dims, generator=generator, dtype=torch.float64) * scale
    gaussian = torch.randn(config.dim, config.num_modalities, generator=generator, dtype=torch.float64)
    directions = torch.linalg.qr(gaussian).Q.T
    return means, directions


def generate_synthetic_with_quality(
    config: SyntheticConfig | None = None, num_samples: int = 2000, seed: int = 0
) -> tuple[MultiViewData, Tensor]:
    """:func:`generate_synthetic` plus the (N, M) bool mask of corrupted (sample, modality) pairs."""
    config = config or SyntheticConfig()
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    means, directions = _world(config)
    generator = torch.Generator().manual_seed(seed)
    n, m, r = num_samples, config.num_modalities, config.relevant_dims
    labels = (torch.arange(n) % config.num_classes)[torch.randperm(n, generator=generator)]
    noise = torch.randn(m, n, config.dim, generator=generator, dtype=torch.float64) * config.noise_std
    corrupted_sample = torch.rand(n, generator=generator) < config.corrupt_fraction
    corrupted_view = torch.randint(m, (n,), generator=generator)
    corrupted = torch.zeros(n, m, dtype=torch.bool)
    corrupted[corrupted_sample, corrupted_view[corrupted_sample]] = True
    extra = torch.randn(m, n, r, generator=generator, dtype=torch.float64) * config.corrupt_std
    views = {}
    for k, name in enumerate(config.view_names):
        x = noise[k].clone()
        x[:, :r] += means[labels] + extra[k] * corrupted[:, k, None]
        views[name] = (x + config.shift * directions[k]).float()
    return MultiViewData(views=views, labels=labels.long()), corrupted


def generate_synthetic(config: SyntheticConfig | None = None, num_samples: int = 2000, seed: int = 0) -> MultiViewData:
    """Draw ``num_samples`` samples of the benchmark (module docstring); deterministic per ``seed``.

    Views ``m0..m{M-1}``, each (N, relevant_dims + noise_dims) float32; labels (N,) long, balanced.
    """
    return generate_synthetic_with_quality(config, num_samples, seed)[0]
