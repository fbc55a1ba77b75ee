"""Input checks shared by the IID losses: one clear ``ValueError`` per problem, one host sync.

The losses run every training step, so the value checks (finiteness, label range) are gathered
into a single tensor and read back once (``check_values``); shape checks cost nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def upcast(x: Tensor) -> Tensor:
    """float16 / bfloat16 -> float32, so batch statistics and logs do not lose precision."""
    return x.float() if x.dtype in LOW_PRECISION else x


def stack_and_check(
    groups: Mapping[str, Mapping[str, Tensor]],
    names: Sequence[str],
    others: Mapping[str, Tensor] | None = None,
    labels: Tensor | None = None,
    num_classes: int | None = None,
) -> dict[str, Tensor]:
    """Stack each group of per-modality tensors to ``(M, ...)`` (``names`` order, promoted dtype,
    half precision upcast) and run :func:`check_values` on the stacks and ``others`` at once.

    A loss then computes every modality in one call, and the checks cost one read-back whatever M
    is; only when a check fails are the modalities checked one by one, to name the bad one.
    """
    stacks = {}
    for group, tensors in groups.items():
        shapes = {n: tuple(tensors[n].shape) for n in names}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{group} must have one shape across modalities, got {shapes}")
        dtype = functools.reduce(torch.promote_types, (tensors[n].dtype for n in names))
        dtype = torch.float32 if dtype in LOW_PRECISION else dtype
        stacks[group] = torch.stack([tensors[n].to(dtype) for n in names])
    others = dict(others or {})
    try:
        check_values(others | stacks, labels, num_classes)
    except ValueError:
        per_modality = {f"{group}[{n!r}]": tensors[n] for group, tensors in groups.items() for n in names}
        check_values(others | per_modality, labels, num_classes)
        raise
    return stacks


def check_modalities(features: Mapping[str, Tensor], what: str = "features") -> tuple[str, ...]:
    """At least two modalities, each a (B, d) tensor with one common B; returns their names."""
    names = tuple(features)
    if len(names) < 2:
        raise ValueError(f"{what} needs at least two modalities, got {len(names)}: {list(names)}")
    sizes = {name: tuple(t.shape) for name, t in features.items()}
    for name, shape in sizes.items():
        if len(shape) != 2:
            raise ValueError(f"{what}[{name!r}] must be (batch, dim), got shape {shape}")
    if len({shape[0] for shape in sizes.values()}) != 1:
        raise ValueError(f"{what} have mismatched batch sizes: {sizes}")
    return names


def check_same_keys(reference: Mapping[str, Tensor], other: Mapping[str, Tensor], what: str) -> None:
    """``other`` must name exactly the modalities of ``reference``."""
    if set(reference) != set(other):
        raise ValueError(f"{what} has modalities {sorted(other)}, expected {sorted(reference)}")


def check_batch(tensor: Tensor, batch: int, name: str) -> None:
    """The leading dimension of ``tensor`` must be ``batch``."""
    if tensor.ndim == 0 or tensor.shape[0] != batch:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected batch size {batch}")


def check_values(tensors: Mapping[str, Tensor], labels: Tensor | None = None, num_classes: int | None = None) -> None:
    """All ``tensors`` finite and ``labels`` integer in [0, num_classes), read back in one sync."""
    flags = [torch.isfinite(t).all() for t in tensors.values()]
    if labels is not None:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim != 1:
            raise ValueError(f"labels must be a 1-D integer tensor, got dtype {labels.dtype}, shape {tuple(labels.shape)}")
        if labels.numel() > 0:
            flags.append(((labels >= 0) & (labels < int(num_classes or 0))).all())
    ok = torch.stack(flags).tolist() if flags else []
    for name, good in zip(tensors, ok):
        if not good:
            raise ValueError(f"{name} contains NaN or infinite values")
    if labels is not None and len(ok) > len(tensors) and not ok[-1]:
        low, high = int(labels.min()), int(labels.max())
        raise ValueError(f"labels must lie in [0, {num_classes}) for {num_classes} classes, got values in [{low}, {high}]")
