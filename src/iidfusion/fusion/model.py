"""One model class for intermediate (IF) and late (LF) fusion of any M >= 2 modalities.

docs/method.md, "The fusion model": encoder h_m and a linear projection bring x^m to z^m in R^d; a
fusion-weight strategy gives w (B, M);

* IF: z = sum_m w_m z^m, logits = g(z), g one linear layer (the "target mapping");
* LF: logits = sum_m w_m g_m(z^m), one linear head per modality.

The base structure (``unimodal_heads``) says where the unimodal logits f_m come from, which feed
QMF's energy, PDF's true-class probability and the strategies' unimodal CE:

* ``"separate"`` (default, the paper's IF and the originals' code): g is trained on the fused
  feature only ("IF does not explicitly train independent heads"). A strategy whose weights read
  unimodal predictions (QMF, PDF) gets heads g_m of its own, trained with their CE as in its
  code; static weights read none, so IF-static has no unimodal heads and no unimodal CE, and
  LF-static trains its heads through the fused CE only (vanilla late fusion). L_ic's second
  part, which suppresses what g reads from each z^m, is then not undone by the base's own loss.
* ``"shared"``: f_m = g(z^m), and every strategy, static included, trains them with its
  unimodal CE, which trains g on every modality: the opposite of L_ic's second part.

In IF the output always carries g(z^m) as ``shared_head_logits``, which L_ic compares with g(z);
with no heads of their own, the unimodal logits are those same g(z^m), read by nothing that trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from iidfusion.core.output import FusionOutput
from iidfusion.core.validation import check_modality_keys, validate_modalities
from iidfusion.fusion.base import FusionStrategy, StrategyOptions, validate_mode
from iidfusion.fusion.registry import create_strategy, get_strategy_class

UNIMODAL_HEADS: tuple[str, ...] = ("shared", "separate")


def _module_dict(modules: Mapping[str, nn.Module], what: str) -> nn.ModuleDict:
    """An ``nn.ModuleDict``, with its key errors (a '.' in a name, a reserved name) as ValueError."""
    try:
        return nn.ModuleDict(dict(modules))
    except (KeyError, TypeError) as error:
        raise ValueError(f"{what}: cannot use these modality names as module keys: {error}") from error


class FusionModel(nn.Module):
    """Encoders, projections to a common width, a fusion-weight strategy, IF or LF heads.

    ``encoders``: modality -> module mapping an input batch to (B, encoder_dims[m]);
    the order of the mapping fixes the column order of the weights. ``strategy``: a
    registered name (built with ``modalities``, ``num_classes``, ``width``, ``mode``,
    ``strategy_kwargs`` (the base options, e.g. ``unimodal_reduction``) and ``strategy_options``
    (the strategy's own options: its :class:`StrategyOptions`, or a mapping checked against it))
    or a ready :class:`FusionStrategy` whose modalities and mode match.
    ``forward`` takes ``{modality: Tensor}`` with exactly these keys and returns a
    :class:`FusionOutput`; every tensor follows the device of the inputs and parameters.
    ``unimodal_heads``: the base structure (module docstring), ``"separate"`` (the paper's) or
    ``"shared"``. The attribute ``unimodal_heads`` is a ModuleDict of heads g_m where they
    exist (always in LF; in IF for a separate-heads strategy that reads unimodal logits) and
    ``None`` otherwise.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        encoder_dims: Mapping[str, int],
        num_classes: int,
        *,
        width: int,
        mode: str = "if",
        strategy: str | FusionStrategy = "static",
        strategy_kwargs: Mapping[str, Any] | None = None,
        strategy_options: StrategyOptions | Mapping[str, Any] | None = None,
        unimodal_heads: str = "separate",
    ) -> None:
        super().__init__()
        self.modalities = validate_modalities(tuple(encoders))
        if unimodal_heads not in UNIMODAL_HEADS:
            raise ValueError(f"unknown unimodal_heads {unimodal_heads!r}; expected one of {list(UNIMODAL_HEADS)}")
        if set(encoder_dims) != set(self.modalities):
            raise ValueError(
                f"encoder_dims keys {sorted(encoder_dims)} must match "
                f"the encoders' modalities {sorted(self.modalities)}"
            )
        for name, dim in encoder_dims.items():
            if int(dim) < 1:
                raise ValueError(f"encoder_dims[{name!r}] must be >= 1, got {dim}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.mode = validate_mode(mode)
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.encoder_dims = {m: int(encoder_dims[m]) for m in self.modalities}
        self.encoders = _module_dict(encoders, "encoders")
        self.projections = _module_dict(
            {m: nn.Linear(self.encoder_dims[m], self.width) for m in self.modalities}, "projections"
        )
        self.structure = unimodal_heads
        if not isinstance(strategy, (str, FusionStrategy)):
            raise ValueError(f"strategy must be a registered name or a FusionStrategy, got {type(strategy).__name__}")
        strategy_class = type(strategy) if isinstance(strategy, FusionStrategy) else get_strategy_class(strategy)
        # LF's heads are its predictors; IF has heads of its own only for a strategy that reads them.
        separate = self.mode == "lf" or (unimodal_heads == "separate" and strategy_class.reads_unimodal_logits)
        self.unimodal_heads = (
            _module_dict({m: nn.Linear(self.width, self.num_classes) for m in self.modalities}, "unimodal_heads")
            if separate
            else None
        )
        self.target_mapping = nn.Linear(self.width, self.num_classes) if self.mode == "if" else None
        self.strategy = self._build_strategy(strategy, strategy_kwargs, strategy_options)

    def _build_strategy(
        self,
        strategy: str | FusionStrategy,
        kwargs: Mapping[str, Any] | None,
        options: StrategyOptions | Mapping[str, Any] | None,
    ) -> FusionStrategy:
        if isinstance(strategy, FusionStrategy):
            if kwargs or options is not None:
                raise ValueError("strategy_kwargs and strategy_options apply only when the strategy is given by name")
            built = {
                "modalities": (strategy.modalities, self.modalities),
                "mode": (strategy.mode, self.mode),
                "num_classes": (strategy.num_classes, self.num_classes),
                "width": (strategy.width, self.width),
            }
            for what, (theirs, ours) in built.items():
                if theirs != ours:
                    raise ValueError(f"the strategy was built with {what}={theirs!r}, but the model has {ours!r}")
            return strategy
        arguments = dict(kwargs or {})
        if self.structure == "separate" and not get_strategy_class(strategy).reads_unimodal_logits:
            arguments.setdefault("unimodal_loss_weight", 0.0)  # no heads to train: the paper's IF, vanilla LF
        return create_strategy(
            strategy,
            options,
            modalities=self.modalities,
            num_classes=self.num_classes,
            width=self.width,
            mode=self.mode,
            **arguments,
        )

    def unimodal_head(self, modality: str) -> nn.Linear:
        """The linear layer that gives ``modality``'s unimodal logits: its own head, or IF's shared g."""
        if modality not in self.modalities:
            raise ValueError(f"unknown modality {modality!r}; the model has {list(self.modalities)}")
        if self.unimodal_heads is not None:
            return self.unimodal_heads[modality]  # type: ignore[return-value]
        assert self.target_mapping is not None  # IF with shared heads
        return self.target_mapping

    def _check_inputs(self, inputs: Mapping[str, Any]) -> None:
        if not isinstance(inputs, Mapping):
            raise ValueError(f"inputs must be a dict {{modality: Tensor}}, got {type(inputs).__name__}")
        check_modality_keys(inputs, self.modalities, "inputs")
        sizes = {m: int(x.shape[0]) for m, x in inputs.items() if isinstance(x, Tensor) and x.ndim > 0}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"inputs have mismatched batch sizes: {sizes}")

    def encode(self, inputs: Mapping[str, Any]) -> dict[str, Tensor]:
        """Projected unimodal features z^m = P_m(h_m(x^m)), each (B, width)."""
        self._check_inputs(inputs)
        features: dict[str, Tensor] = {}
        for name in self.modalities:
            encoded = self.encoders[name](inputs[name])
            if encoded.ndim != 2 or encoded.shape[1] != self.encoder_dims[name]:
                raise ValueError(
                    f"encoder {name!r} returned shape {tuple(encoded.shape)}; expected (B, {self.encoder_dims[name]})"
                )
            features[name] = self.projections[name](encoded)
        sizes = {m: int(z.shape[0]) for m, z in features.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"encoders returned mismatched batch sizes: {sizes}")
        return features

    def _weighted_sum(self, weights: Tensor, values: Mapping[str, Tensor]) -> Tensor:
        """sum_m w_m v^m per sample, for weights (B, M) and per-modality (B, k) values."""
        stacked = torch.stack([values[m] for m in self.modalities], dim=1)
        return (weights.unsqueeze(-1) * stacked).sum(dim=1)

    def forward(self, inputs: Mapping[str, Any]) -> FusionOutput:
        return self.fuse(self.encode(inputs))

    def fuse(self, features: Mapping[str, Tensor]) -> FusionOutput:
        """Weights, fusion and heads from projected features {m: (B, width)} (the part after :meth:`encode`).

        Separate from :meth:`forward` so that diagnostics can fuse features the encoders did not
        produce, e.g. one modality replaced by its training mean (drop-one-modality accuracy).
        """
        check_modality_keys(features, self.modalities, "features")
        shared_head_logits = (
            {m: self.target_mapping(features[m]) for m in self.modalities} if self.target_mapping is not None else None
        )
        if self.unimodal_heads is not None:
            unimodal_logits = {m: self.unimodal_heads[m](features[m]) for m in self.modalities}
        else:
            unimodal_logits = dict(shared_head_logits or {})
        weights = self.strategy(features, unimodal_logits)
        batch_size = features[self.modalities[0]].shape[0]
        if weights.shape != (batch_size, len(self.modalities)):
            raise ValueError(
                f"strategy {self.strategy.name!r} returned weights of shape {tuple(weights.shape)}; "
                f"expected ({batch_size}, {len(self.modalities)})"
            )
        fused_features = self._weighted_sum(weights, features)
        if self.target_mapping is not None:
            logits = self.target_mapping(fused_features)
        else:
            logits = self._weighted_sum(weights, unimodal_logits)
            shared_head_logits = dict(unimodal_logits)
        return FusionOutput(
            logits=logits,
            unimodal_logits=unimodal_logits,
            shared_head_logits=cast(dict[str, Tensor], shared_head_logits),  # set in both modes above
            features={m: features[m] for m in self.modalities},
            fused_features=fused_features,
            weights=weights,
            modalities=self.modalities,
            mode=self.mode,
        )
