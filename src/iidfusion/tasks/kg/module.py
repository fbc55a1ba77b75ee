"""Knowledge-graph training on the engine: the LightningModule, its validation cadence.

:class:`KGModule` wraps a registered KG model (:mod:`iidfusion.kg.models`) and its
:class:`~iidfusion.kg.objective.KGObjective`, so ``iidfusion kg fit`` runs on the trainer of
``iidfusion fit`` (:func:`iidfusion.engine.trainer.build_trainer`): checkpoints, resume,
progress bar, CSV / TensorBoard logs, several devices. A step is OTKGE's protocol, float for
float: a forward pass over a batch of training queries, the loss, ``zero_grad``,
``backward``, ``step`` (the order of Lightning's automatic optimization), the strategy's
epoch hook, and filtered validation MRR every ``eval_every`` epochs and at the last one.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from iidfusion.engine.distributed import sum_across_processes
from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.evaluate import KnownTails, LinkPredictionMetrics, TiePolicy, evaluate_link_prediction
from iidfusion.kg.models import KGModel
from iidfusion.kg.objective import KGObjective, degree_weights
from iidfusion.tasks.kg.config import OPTIMIZERS, KGExperimentConfig


class ValidationSchedule(Callback):
    """Validation at the end of every ``eval_every``-th epoch and of the last one.

    Lightning's ``check_val_every_n_epoch`` alone would skip a last epoch that is not a
    multiple; this sets it before each epoch to 1 (validate) or past the run (skip).
    """

    def __init__(self, eval_every: int, max_epochs: int) -> None:
        self.eval_every, self.max_epochs = int(eval_every), int(max_epochs)

    def is_due(self, epoch: int) -> bool:
        """Whether the 1-based ``epoch`` ends with a validation."""
        return epoch % self.eval_every == 0 or epoch == self.max_epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.check_val_every_n_epoch = 1 if self.is_due(trainer.current_epoch + 1) else self.max_epochs + 1


class KGModule(L.LightningModule):
    """A KG model, its objective and its optimizer; validation MRR logged as ``val/mrr``.

    ``history``: one record per epoch (``epoch``, ``loss/<term>`` means over the epoch's
    queries, ``valid/mrr`` when validated), saved in checkpoints with the training caches of
    the model (:meth:`KGModel.training_state`), so a resumed run ends as an uninterrupted one.
    ``log``: a function printing a line per validation (rank 0 only).
    """

    monitor: ClassVar[str] = "val/mrr"  # the validation score that selects the best epoch
    monitor_as_percent: ClassVar[bool] = False

    def __init__(
        self,
        model: KGModel,
        kg: KnowledgeGraph,
        config: KGExperimentConfig,
        *,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(dataclasses.asdict(config))
        self.model = model
        self.objective = KGObjective(
            config.objective, width=model.width, class_weights=degree_weights(kg.train, kg.num_entities)
        )
        self.kg, self.train_config = kg, config.train
        self.known = KnownTails.from_kg(kg)
        self.history: list[dict[str, float]] = []
        self.valid: LinkPredictionMetrics | None = None  # of the latest validation
        self._validated_epoch = -1
        self._log_line = log
        self._sums: dict[str, float] = {}
        self._total_sum = 0.0  # of the weighted total, logged as train/loss (the bar shows it)
        self._queries_seen = 0
        self._history_at_epoch_start: Tensor | None = None
        self._restored_training_state: Mapping[str, Any] | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.train_config.optimizer](self.model.parameters(), lr=self.train_config.learning_rate)

    def evaluate(self, split: str, model: KGModel | None = None) -> LinkPredictionMetrics:
        """Filtered metrics on ``split`` of ``model`` (default: the module's; in evaluation mode,
        on its device) with the run's tie policy and evaluation batch size.
        """
        model = self.model if model is None else model
        known = self.known.to(next(model.parameters()).device)
        return evaluate_link_prediction(
            model.eval().scorer(),
            self.kg,
            split,
            known=known,
            batch_size=self.train_config.eval_batch_size,
            tie_policy=typing.cast(TiePolicy, self.train_config.tie_policy),
        )

    def on_train_epoch_start(self) -> None:
        self._sums, self._total_sum, self._queries_seen = {}, 0.0, 0
        history = getattr(self.model.strategy, "loss_history", None)
        self._history_at_epoch_start = (
            history.clone() if isinstance(history, Tensor) and self.trainer.world_size > 1 else None
        )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        queries, index = batch
        output = self.model(queries[:, :2], need_modalities=self.objective.needs_modalities)
        loss = self.objective(output, queries, index, self.model.strategy, self.model)
        loss.check_finite(f"at epoch {self.current_epoch + 1}, batch {batch_idx}")
        for name, value in loss.terms.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value.detach()) * len(index)
        self._total_sum += float(loss.total.detach()) * len(index)
        self._queries_seen += len(index)
        return loss.total

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.valid = self.evaluate("valid")
        self._validated_epoch = self.current_epoch
        # float64: the best epoch is chosen on the exact MRR, as the value logged in float32 could tie.
        self.log(self.monitor, torch.tensor(self.valid.mrr, dtype=torch.float64), batch_size=1)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the epoch's last step, before its validation (so the weights kept at a validation
        hold QMF's epoch count already advanced, as OTKGE's loop had them): under DDP,
        QMF's history merged across processes (buffers are not broadcast, see
        :func:`~iidfusion.engine.trainer.build_strategy`), then the strategy's epoch hook.
        """
        if batch_idx + 1 < self.trainer.num_training_batches:
            return
        if self._history_at_epoch_start is not None:
            history = cast(Any, self.model.strategy).loss_history
            history.copy_(self._history_at_epoch_start + sum_across_processes(history - self._history_at_epoch_start))
        if self.model.strategy is not None:
            self.model.strategy.on_train_epoch_end()

    def on_train_epoch_end(self) -> None:
        """The epoch's record: loss means over the queries of every process, the validation MRR."""
        epoch = self.current_epoch + 1
        sums = self._sums | {"loss": self._total_sum}
        totals = sum_across_processes(torch.tensor([*sums.values(), self._queries_seen], dtype=torch.float64))
        if self.trainer.world_size > 1:
            means = {n: totals[i].item() / totals[-1].item() for i, n in enumerate(sums)}
        else:  # one process: the plain mean, exactly
            means = {n: value / self._queries_seen for n, value in sums.items()}
        record: dict[str, float] = {"epoch": epoch} | {f"loss/{k}": means[k] for k in self._sums}
        self.log_dict({f"train/{k}": v for k, v in means.items()})
        if self.valid is not None and self._validated_epoch == self.current_epoch:
            record["valid/mrr"] = self.valid.mrr
            if self._log_line is not None and self.trainer.is_global_zero:
                self._log_line(
                    f"epoch {epoch}: loss {record.get('loss/task', math.nan):.4f}, valid MRR {self.valid.mrr:.4f}"
                )
        self.history.append(record)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["kg"] = {"history": self.history, "training_state": self.model.training_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("kg")
        if not isinstance(state, Mapping):
            raise ValueError("not a checkpoint of `iidfusion kg fit` (no 'kg' record)")
        self.history = list(state["history"])
        self._restored_training_state = state["training_state"]

    def on_train_start(self) -> None:
        # Restored here, not on load: Lightning reads the checkpoint before it moves the model to its device.
        if self._restored_training_state is not None:
            self.model.load_training_state(self._restored_training_state)
            self._restored_training_state = None
