"""The LightningModule: a :class:`FusionModel` trained with :class:`IIDLoss`.

One module serves every method of the paper: the :class:`MethodSpec` picks the fusion mode,
the weight strategy and whether L_ic / L_dc are on; the :class:`ExperimentConfig` sections
give the hyperparameters. Per training epoch it logs every loss term and the mean fusion weight
of each modality (the per-pair W~ of L_dc too, for the methods that train with it).

Per validation epoch it logs, for every method alike (docs/method.md, "Diagnostics"):

* ``val/acc``, ``val/macro_f1`` and ``val/loss`` (the fused CE);
* ``val/shared_head_acc/<m>``: the accuracy of the shared target mapping g on modality m alone,
  g(z^m) (in LF, modality m's own head): a reading of L_ic that pushes it below chance builds a
  code of cancelling wrong predictions;
* ``val/drop_acc/<m>``: the fused accuracy with z^m replaced by its mean over the last training
  epoch (drop-one-modality): how much the fused prediction leans on m;
* ``val/wasserstein/<a>-<b>`` and ``/mean`` (``train.monitor_distances``): W~ of L_dc between the
  features of the first ``train.monitor_samples`` validation samples, a fixed sample, so a base
  method and its IID variant are compared on the same quantity (the paper's Figure 4) at the cost
  of one Sinkhorn solve per epoch instead of one per training step.

Metrics are accumulated in plain tensors and logged once per epoch: logging ~30 scalars at
every step through Lightning costs more than the step itself for the small MLP models.

Under data parallelism each process validates its share of the split (the data module's
``ShardSampler``) and the epoch's metrics are those of the whole split, exactly: predictions
and labels are all-gathered for accuracy and macro-F1, the sums of the other counts and of the
loss are all-reduced, the drop-one-modality means are those of every process's training
samples, and the monitored distances use the features of the first ``monitor_samples``
samples of the split, gathered from the processes that hold them and put back in order.

Checkpoints. Besides Lightning's state, every checkpoint of a module built by
:meth:`FusionModule.for_feature_views` holds, under :data:`CHECKPOINT_RECORD`, what it takes to
rebuild the model without the training data (method, view widths, classes and their names,
training-set size, the seed, the feature scaling): :func:`iidfusion.load_model` and
``FusionModule.load_from_checkpoint`` read it (:mod:`iidfusion.tasks.classification.checkpoint`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iidfusion.core.output import FusionOutput
from iidfusion.encoders.mlp import MLPEncoder
from iidfusion.engine.checkpoint import check_finite_weights, read_checkpoint
from iidfusion.engine.distributed import GatheredCoherence, gather_rows, sum_across_processes
from iidfusion.fusion.methods import MethodSpec, get_method
from iidfusion.fusion.model import FusionModel
from iidfusion.fusion.registry import StrategySections, strategy_sections
from iidfusion.losses.coherence import DistributionCoherence
from iidfusion.losses.iid import IIDLoss, IIDLossOutput
from iidfusion.tasks.classification.checkpoint import CHECKPOINT_RECORD, RECORD_VERSION, fit_record
from iidfusion.tasks.classification.config import ExperimentConfig, LossConfig, ModelConfig, config_to_dict
from iidfusion.tasks.classification.evaluate import classification_metrics


def strategy_arguments(spec: MethodSpec, model: ModelConfig, strategy: StrategySections) -> dict[str, Any]:
    """``spec.build_model``'s strategy arguments: the unimodal terms' reduction every strategy
    has (``model``) and the options of the method's own strategy, its section of ``strategy``.
    """
    return {
        "strategy_kwargs": {"unimodal_reduction": model.unimodal_reduction},
        "strategy_options": getattr(strategy, spec.strategy),
    }


def build_feature_model(
    spec: MethodSpec,
    view_dims: Mapping[str, int],
    num_classes: int,
    num_train: int,
    model: ModelConfig,
    strategy: StrategySections | None = None,
) -> FusionModel:
    """The method's :class:`FusionModel` with an :class:`MLPEncoder` per feature view;
    ``strategy``: the strategies' options (a config's ``strategy`` section; None: the defaults).
    """
    encoders = {v: MLPEncoder(d, model.hidden, model.layers, model.dropout) for v, d in view_dims.items()}
    return spec.build_model(
        encoders,
        {v: e.output_dim for v, e in encoders.items()},
        num_classes,
        width=model.width,
        num_samples=num_train,
        unimodal_heads=model.unimodal_heads,
        **strategy_arguments(spec, model, strategy_sections() if strategy is None else strategy),
    )


def build_loss(
    spec: MethodSpec, loss: LossConfig, width: int, *, seed: int = 0, gather_features: bool = False
) -> IIDLoss:
    """IIDLoss of the method; the L_dc module is built for every method (monitoring uses it),
    its RIP matrix Phi drawn from ``seed`` (the run's).
    """
    return loss.build_loss(
        width,
        use_ic=spec.use_ic,
        use_dc=spec.use_dc,
        build_unused=True,
        seed=seed,
        coherence_module=GatheredCoherence if gather_features else DistributionCoherence,
    )


def _distance_metrics(pairs: Sequence[tuple[str, str]], distances: Tensor) -> dict[str, Tensor]:
    """``wasserstein/<a>-<b>`` per pair and ``wasserstein/mean``."""
    metrics = {f"wasserstein/{a}-{b}": d for (a, b), d in zip(pairs, distances, strict=True)}
    metrics["wasserstein/mean"] = distances.mean()
    return metrics


class EpochMeans:
    """Sample-weighted running means of detached scalars, reset every epoch."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._count = 0

    def peek_global(self) -> dict[str, Tensor]:
        """:meth:`peek` over the samples of every process (each process's sums and counts added)."""
        if not self._sums:
            return {}
        count = sum_across_processes(torch.tensor(float(self._count), device=next(iter(self._sums.values())).device))
        return {name: sum_across_processes(total) / count.clamp_min(1.0) for name, total in self._sums.items()}

    def add(self, values: Mapping[str, Tensor], count: int) -> None:
        for name, value in values.items():
            weighted = value.detach().float() * count
            self._sums[name] = self._sums[name] + weighted if name in self._sums else weighted
        self._count += count

    def peek(self) -> dict[str, Tensor]:
        """The means so far, without resetting (empty before the first ``add``)."""
        return {name: total / max(self._count, 1) for name, total in self._sums.items()}

    def pop(self) -> dict[str, Tensor]:
        means = self.peek()
        self._sums, self._count = {}, 0
        return means

    def pop_sums(self) -> dict[str, Tensor]:
        """The weighted sums (not divided by the count), then reset."""
        sums = self._sums
        self._sums, self._count = {}, 0
        return sums


class FusionModule(L.LightningModule):
    """Train, validate and checkpoint one method (``spec``) on one model."""

    monitor: ClassVar[str] = "val/acc"  # the validation score that selects the best epoch
    monitor_as_percent: ClassVar[bool] = True

    def __init__(
        self,
        spec: MethodSpec | str,
        model: FusionModel,
        config: ExperimentConfig,
        *,
        seed: int = 0,
        record: Mapping[str, Any] | None = None,
    ) -> None:
        """``seed``: the run's seed, which draws L_dc's RIP matrix Phi (docs/method.md)."""
        super().__init__()
        self.spec = get_method(spec) if isinstance(spec, str) else spec
        if model.mode != self.spec.mode:
            raise ValueError(
                f"method {self.spec.name!r} is {self.spec.mode.upper()}, the model is {model.mode.upper()}"
            )
        self.model = model
        self.loss_fn = build_loss(
            self.spec, config.loss, model.width, seed=seed, gather_features=config.train.gather_features
        )
        self.optim = config.optim
        self.monitor_distances = config.train.monitor_distances
        self.monitor_samples = config.train.monitor_samples
        # The method and seed trained, not the config's `fit` defaults: every record of the run
        # (hparams.yaml, the checkpoint's hyper_parameters, TrainedModel.config) names them.
        self.config = dataclasses.replace(config, method=self.spec.name, seed=seed)
        self.record = dict(record) if record is not None else None  # saved in every checkpoint
        self.save_hyperparameters(config_to_dict(self.config))
        self._train_means = EpochMeans()
        self._feature_means = EpochMeans()
        self._drop_means: dict[str, Tensor] = {}
        self._val_sums = EpochMeans()
        self._val_outputs: list[tuple[Tensor, Tensor]] = []
        self._monitor_features: list[dict[str, Tensor]] = []
        self._monitor_potentials: tuple[Tensor, Tensor] | None = None  # last epoch's, a warm start
        self._history_at_epoch_start: Tensor | None = None
        # The diagnostics (every loss term, the fusion weights, shared-head and drop-one-modality
        # accuracies, monitored distances) serve the loggers only; without one, a fit computes what
        # selection and early stopping read (val/acc, val/loss) and the loss the progress bar shows.
        self._diagnostics = True
        # Without a Lightning trainer (the plain loop, iidfusion.engine.plain_loop): the scores the
        # callbacks read, and the epoch.
        self.epoch_scores: dict[str, Tensor] = {}
        self.loop_epoch = 0

    @classmethod
    def for_feature_views(
        cls,
        spec: MethodSpec | str,
        view_dims: Mapping[str, int],
        num_classes: int,
        num_train: int,
        config: ExperimentConfig,
        *,
        seed: int | None = None,
        class_names: Sequence[str] = (),
        scaler: Any = None,
    ) -> FusionModule:
        """The module for multi-view feature data (MLP encoders).

        ``seed``, ``class_names`` and ``scaler`` (the data's ``MinMaxScaler``) are recorded in
        its checkpoints, for predictions on new data (module docstring).
        """
        spec = get_method(spec) if isinstance(spec, str) else spec
        record = {
            "version": RECORD_VERSION,
            "method": spec.name,
            "encoders": "mlp",
            "view_dims": dict(view_dims),
            "num_classes": int(num_classes),
            "num_train": int(num_train),
            "seed": seed,
            "class_names": [str(c) for c in class_names],
            "scaler": scaler.state() if scaler is not None else None,
        }
        model = build_feature_model(spec, view_dims, num_classes, num_train, config.model, config.strategy)
        return cls(spec, model, config, seed=seed or 0, record=record)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # FusionModule's own, read from its record
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> FusionModule:
        """The module of a checkpoint of ``iidfusion fit``, rebuilt from its record and read with
        ``torch.load(weights_only=True)`` (Lightning's own loader would call ``__init__`` with the
        saved hyperparameters, which are the config, not the model). Only ``checkpoint_path`` and
        ``map_location`` are used.
        """
        module = cls.from_checkpoint_state(
            read_checkpoint(checkpoint_path, "checkpoint"), f"checkpoint {checkpoint_path}"
        )
        return module.to(map_location) if map_location is not None else module

    @classmethod
    def from_checkpoint_state(cls, state: Any, where: str) -> FusionModule:
        """The module a ``fit`` checkpoint (already read) describes, with its weights, in evaluation
        mode; a ValueError naming ``where`` for a foreign, out-of-range or damaged checkpoint.
        """
        record, config = fit_record(state, where)
        module = cls.for_feature_views(
            record["method"],
            record["view_dims"],
            record["num_classes"],
            record["num_train"],
            config,
            seed=record.get("seed"),
            class_names=record.get("class_names", ()),
        )
        module.record = record
        try:
            module.load_state_dict(state["state_dict"])
        except RuntimeError as error:
            raise ValueError(
                f"{where}: its weights do not fit the model it records ({str(error).splitlines()[0]})"
            ) from None
        check_finite_weights(state["state_dict"], where)
        return module.eval()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.record is not None:
            checkpoint[CHECKPOINT_RECORD] = self.record

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Fused logits (B, C)."""
        return self.model(inputs).logits

    def setup(self, stage: str) -> None:
        self._diagnostics = self._trainer is not None and bool(self.trainer.loggers)

    @property
    def epoch(self) -> int:
        """The epoch being trained, in either loop."""
        return self.current_epoch if self._trainer is not None else self.loop_epoch

    def _log_score(self, name: str, value: Tensor, prog_bar: bool = False) -> None:
        """A score the callbacks read (selection, early stopping, the progress bar): logged through
        Lightning when a trainer runs the module, kept in ``epoch_scores`` in every case.
        """
        self.epoch_scores[name] = value
        if self._trainer is not None:
            self.log(name, value, prog_bar=prog_bar)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        output = self.model(batch["inputs"])
        losses = self.loss_fn(output, batch["label"], batch["index"], strategy=self.model.strategy)
        losses.check_finite(f"at epoch {self.epoch}, batch {batch_idx}")
        total, penalty = losses.total, self.weight_penalty()
        if penalty is not None:
            total = total + penalty
        if self._diagnostics:
            metrics = self._step_metrics(output, losses) | {"loss": total}
            if penalty is not None:
                metrics["l2"] = penalty
            self._train_means.add(metrics, len(batch["label"]))
            self._feature_means.add({m: z.mean(dim=0) for m, z in output.features.items()}, len(batch["label"]))
        else:
            self._train_means.add({"loss": total}, len(batch["label"]))
        return total

    def weight_penalty(self) -> Tensor | None:
        """``optim.l2 / 2`` times the squared norm of every trained weight matrix (parameters of two
        dimensions or more: biases and normalisation gains are left free), None when ``optim.l2`` is 0
        (:class:`~iidfusion.tasks.classification.config.OptimConfig` says why it is not weight decay).
        """
        if self.optim.l2 == 0:
            return None
        weights = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        return 0.5 * self.optim.l2 * torch.stack([w.float().pow(2).sum() for w in weights]).sum()

    def _step_metrics(self, output: FusionOutput, losses: IIDLossOutput) -> dict[str, Tensor]:
        metrics = {"loss": losses.total, **losses.terms}
        metrics.update(
            {
                f"weight/{m}": w
                for m, w in zip(output.modalities, output.weights.detach().float().mean(dim=0), strict=True)
            }
        )
        if losses.pair_distances is not None:
            metrics.update(_distance_metrics(losses.pairs, losses.pair_distances))
        return metrics

    def on_train_epoch_start(self) -> None:
        history = getattr(self.model.strategy, "loss_history", None)
        self._history_at_epoch_start = (
            history.clone()
            if isinstance(history, Tensor) and self._trainer is not None and self.trainer.world_size > 1
            else None
        )

    def on_train_epoch_end(self) -> None:
        """Log the epoch means, merge QMF's history across processes, then the strategy's hook.

        Under DDP each process adds its own samples' losses to its copy of QMF's history
        (buffers are not broadcast, see :func:`~iidfusion.engine.trainer.build_strategy`); the increments of all
        processes are summed here, so every copy ends the epoch as a single process would.
        """
        means = self._train_means.peek_global()  # every process's samples
        self._train_means.pop()
        self._log_score("train/loss", means.pop("loss"))  # the progress bar's
        self._log_to_loggers({f"train/{k}": v for k, v in means.items()})
        self._feature_means.pop()
        if self._history_at_epoch_start is not None:
            history = cast(Any, self.model.strategy).loss_history
            history.copy_(self._history_at_epoch_start + sum_across_processes(history - self._history_at_epoch_start))
        self.model.strategy.on_train_epoch_end()

    def on_validation_epoch_start(self) -> None:
        # The training means of this epoch over every process (validation runs before
        # on_train_epoch_end), else none (validation without training).
        self._drop_means = self._feature_means.peek_global()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self.model(batch["inputs"])
        labels = batch["label"]
        correct = {"acc": output.logits.argmax(dim=1) == labels}
        if self._diagnostics:
            correct.update(
                {f"shared_head_acc/{m}": g.argmax(dim=1) == labels for m, g in output.shared_head_logits.items()}
            )
        for name, mean in self._drop_means.items():  # empty without diagnostics (no feature means)
            dropped = dict(output.features) | {name: mean.to(output.features[name]).expand_as(output.features[name])}
            correct[f"drop_acc/{name}"] = self.model.fuse(dropped).logits.argmax(dim=1) == labels
        loss = F.cross_entropy(output.logits.float(), labels, reduction="sum")
        self._val_sums.add({k: v.float().sum() for k, v in correct.items()} | {"loss": loss}, 1)
        self._val_outputs.append((output.logits.argmax(dim=1).detach(), labels.detach()))
        if self.monitor_distances and self._diagnostics:
            # The fixed sample: the first monitor_samples positions of the split, wherever they are.
            keep = batch["index"] < self.monitor_samples
            if bool(keep.any()):
                self._monitor_features.append(
                    {"index": batch["index"][keep]} | {m: z[keep].detach() for m, z in output.features.items()}
                )

    def on_validation_epoch_end(self) -> None:
        # Every process holds a share of at least one sample (ShardSampler); an empty split logs nothing.
        local = (
            [torch.cat(parts) for parts in zip(*self._val_outputs, strict=True)]
            if self._val_outputs
            else [torch.empty(0, dtype=torch.long, device=self.device)] * 2
        )
        self._val_outputs.clear()
        predictions, labels = (gather_rows(part) for part in local)
        sums = {k: sum_across_processes(v) for k, v in self._val_sums.pop_sums().items()}
        distances = self._monitored_distances()
        if len(labels) == 0:
            return
        # The metrics of the whole split, the same on every process: nothing left to synchronise.
        self._log_score("val/acc", sums["acc"] / len(labels), prog_bar=True)
        self._log_score("val/loss", sums["loss"] / len(labels))
        if self._diagnostics:
            _, f1 = classification_metrics(predictions.cpu(), labels.cpu(), self.model.num_classes)
            metrics = {f"val/{k}": v / len(labels) for k, v in sums.items() if k not in ("acc", "loss")}
            self._log_to_loggers({"val/macro_f1": f1} | metrics | distances)

    def _log_to_loggers(self, metrics: Mapping[str, Tensor | float]) -> None:
        """Metrics that only the loggers read, in one call per logger: what ``self.log`` does for the
        callbacks (selection, early stopping, the progress bar) costs about a millisecond per key.
        """
        if not metrics or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        values = {k: float(v) for k, v in metrics.items()} | {"epoch": self.current_epoch}
        for logger in self.trainer.loggers:
            logger.log_metrics(values, step=self.global_step)

    def _monitored_distances(self) -> dict[str, Tensor]:
        """W~ per pair on the fixed validation sample (``val/wasserstein/...``), without gradient."""
        chunks, self._monitor_features = self._monitor_features, []
        if not self.monitor_distances or self.loss_fn.coherence is None:
            return {}
        names = ("index", *self.model.modalities)
        empty = {"index": torch.empty(0, dtype=torch.long, device=self.device)} | {
            m: torch.empty(0, self.model.width, device=self.device) for m in self.model.modalities
        }
        local = {n: torch.cat([c[n] for c in chunks]) if chunks else empty[n] for n in names}
        gathered = {n: gather_rows(local[n]) for n in names}
        order = gathered.pop("index").argsort()
        features = {m: z[order] for m, z in gathered.items()}
        if len(order) < 2:
            return {}
        init = self._monitor_potentials
        if init is not None and init[0].shape[-1] != len(order):
            init = None
        with torch.no_grad():  # the features are gathered already: L_dc's own estimate, not a GatheredCoherence's
            # The same points every epoch, their features a little moved: last epoch's potentials
            # start the solve near its optimum (the same optimum, in a few iterations).
            monitored = DistributionCoherence.forward(self.loss_fn.coherence, features, init=init)
        self._monitor_potentials = monitored.potentials
        return {f"val/{k}": v for k, v in _distance_metrics(monitored.pairs, monitored.pair_distances).items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params: list[nn.Parameter] = [p for p in self.parameters() if p.requires_grad]
        # foreach: one fused kernel per update on every device (torch defaults to a Python loop on CPU).
        return torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, foreach=True)
