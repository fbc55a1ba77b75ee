"""The methods the paper compares, as named configurations (docs/method.md, "Methods and ablations").

Each method is a fusion mode, a weight strategy and whether the two IID regularizers are
on: the baselines ``lf-static`` (vanilla late fusion), ``qmf`` and ``pdf`` in their
original LF form, their IF forms ``if-static``, ``if-qmf``, ``if-pdf``, the full methods
``iid-l``, ``iid-q``, ``iid-p`` (IF + L_ic + L_dc), and the ablations ``iid-*-no-ic``
("w/o I") and ``iid-*-no-dc`` ("w/o D").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from iidfusion.core.registry import Registry
from iidfusion.fusion.base import StrategyOptions, validate_mode
from iidfusion.fusion.model import FusionModel
from iidfusion.fusion.registry import get_strategy_class


@dataclass(frozen=True)
class MethodSpec:
    """One named method: ``mode`` ("if"/"lf"), ``strategy`` (registered name), L_ic / L_dc on or off."""

    name: str
    mode: str
    strategy: str
    use_ic: bool
    use_dc: bool

    def __post_init__(self) -> None:
        validate_mode(self.mode)
        get_strategy_class(self.strategy)
        if self.mode == "lf" and (self.use_ic or self.use_dc):
            raise ValueError(f"method {self.name!r}: L_ic and L_dc are defined for intermediate fusion only")

    def build_model(
        self,
        encoders: Mapping[str, nn.Module],
        encoder_dims: Mapping[str, int],
        num_classes: int,
        *,
        width: int,
        num_samples: int | None = None,
        strategy_kwargs: Mapping[str, Any] | None = None,
        strategy_options: StrategyOptions | Mapping[str, Any] | None = None,
        unimodal_heads: str = "separate",
    ) -> FusionModel:
        """The :class:`FusionModel` of this method.

        ``strategy_kwargs`` (the strategy's base options) and ``strategy_options`` (its own,
        e.g. the ``strategy.<name>`` section of a training config) go to the strategy.
        ``num_samples`` (the training-set size) is passed on to strategies that need it
        (QMF's loss history) and ignored by the others, so a trainer can pass it always.
        ``unimodal_heads``: the base structure, ``"separate"`` (the paper's) or ``"shared"``
        (:class:`FusionModel`).
        """
        kwargs = dict(strategy_kwargs or {})
        if get_strategy_class(self.strategy).requires_num_samples and num_samples is not None:
            kwargs.setdefault("num_samples", num_samples)
        return FusionModel(
            encoders,
            encoder_dims,
            num_classes,
            width=width,
            mode=self.mode,
            strategy=self.strategy,
            strategy_kwargs=kwargs,
            strategy_options=strategy_options,
            unimodal_heads=unimodal_heads,
        )


def _family(letter: str, strategy: str, baseline_name: str) -> tuple[MethodSpec, ...]:
    """The LF baseline, its IF form, full IID and the two ablations for one strategy."""
    return (
        MethodSpec(baseline_name, "lf", strategy, use_ic=False, use_dc=False),
        MethodSpec(f"if-{strategy}", "if", strategy, use_ic=False, use_dc=False),
        MethodSpec(f"iid-{letter}", "if", strategy, use_ic=True, use_dc=True),
        MethodSpec(f"iid-{letter}-no-ic", "if", strategy, use_ic=False, use_dc=True),
        MethodSpec(f"iid-{letter}-no-dc", "if", strategy, use_ic=True, use_dc=False),
    )


_METHODS: Registry[MethodSpec] = Registry("method")
for _spec in (*_family("l", "static", "lf-static"), *_family("q", "qmf", "qmf"), *_family("p", "pdf", "pdf")):
    _METHODS.register(_spec.name, _spec)

MAIN_METHODS: tuple[str, ...] = (
    "lf-static",
    "if-static",
    "iid-l",
    "qmf",
    "if-qmf",
    "iid-q",
    "pdf",
    "if-pdf",
    "iid-p",
)


def available_methods() -> tuple[str, ...]:
    """Every method name: the nine of :data:`MAIN_METHODS` first, then the ablations."""
    return MAIN_METHODS + tuple(name for name in _METHODS if name not in MAIN_METHODS)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` called ``name``; ValueError listing the known names otherwise."""
    return _METHODS.get(name, known=available_methods())
