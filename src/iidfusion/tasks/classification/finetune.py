"""End-to-end training: the encoders fine-tuned inside :class:`~iidfusion.tasks.classification.module.FusionModule`.

The same module, losses, trainer, seeding, early stopping and checkpoints as the feature
path (``iidfusion fit``); only the data and the encoders differ. Raw inputs come from the
datasets of :mod:`iidfusion.data.raw.families` (images as tensors, texts as dicts of token
tensors), and the encoders are the pretrained ResNets / BERT, so the fusion model computes
``encoders[m](inputs[m])`` on them and back-propagates into them. What the originals add
(MMBT, QMF, PDF):

* a freezing schedule (:class:`FreezeSchedule`): an encoder's weights stay fixed for its first
  epochs (vision-language: image 3, text 5), while the heads warm up; ``trainable_blocks``
  trains only an encoder's last blocks (:func:`encoder_blocks`), the others stay frozen in
  evaluation mode, which makes fine-tuning affordable on a CPU;
* gradient accumulation (``accumulate_grad_batches``: QMF's vision-language runs use batches
  of 16 accumulated 40 times);
* mixed precision on a GPU: ``train.precision = "bf16-mixed"`` (bf16 autocast; the finetune
  command picks it by default when CUDA supports bf16). On a CPU everything stays float32.

The test split is evaluated clean and under the raw-input noise protocol
(:mod:`iidfusion.data.raw.input_noise`) with the weights of the best validation epoch.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from iidfusion.core.config import merge_config
from iidfusion.core.files import read_config_file
from iidfusion.data.raw.families import (
    EncoderOptions,
    build_encoders,
    encoder_preprocessing,
    raw_dataset,
    require_encoder_packages,
)
from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.vision_language import RawSplits
from iidfusion.encoders.text import TextEncoder, TextTokenizer
from iidfusion.engine.trainer import BestWeights, build_trainer
from iidfusion.fusion.base import at_test_time
from iidfusion.fusion.methods import get_method
from iidfusion.fusion.model import FusionModel
from iidfusion.tasks.classification.compare import Comparison, RunOutcome, Task, compare_tasks, comparison_tasks
from iidfusion.tasks.classification.config import ExperimentConfig, config_to_dict, load_config, resolve_methods
from iidfusion.tasks.classification.data import ShardSampler
from iidfusion.tasks.classification.evaluate import NoiseMetrics
from iidfusion.tasks.classification.fit import FitResult, trainer_options, without_progress_bar
from iidfusion.tasks.classification.module import FusionModule, strategy_arguments
from iidfusion.tasks.classification.report import EvalResult
from iidfusion.tasks.classification.validation import validate_config


@dataclass(frozen=True)
class FinetuneConfig:
    """What end-to-end training adds to an :class:`ExperimentConfig`.

    ``freeze_epochs``: modality -> number of first epochs its encoder stays frozen.
    ``accumulate_grad_batches``: optimizer step every that many batches.
    ``image_size``: crop size (224 as the originals; smaller for quick CPU runs).
    ``eval_batch_size``: batch size of validation, test and noisy-test passes.
    ``trainable_blocks``: modality -> number of its encoder's last blocks that train (the rest
    frozen, 0: all frozen); a modality not named trains its whole encoder, as the originals.
    """

    freeze_epochs: dict[str, int] = field(default_factory=dict)
    trainable_blocks: dict[str, int] = field(default_factory=dict)
    accumulate_grad_batches: int = 1
    image_size: int = 224
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches must be >= 1, got {self.accumulate_grad_batches}")
        if self.eval_batch_size < 1 or self.image_size < 1:
            raise ValueError(
                f"eval_batch_size and image_size must be >= 1, got {self.eval_batch_size}, {self.image_size}"
            )
        bad = {m: n for m, n in self.freeze_epochs.items() if not isinstance(n, int) or n < 0}
        if bad:
            raise ValueError(f"freeze epochs must be integers >= 0, got {bad}")
        bad = {m: n for m, n in self.trainable_blocks.items() if not isinstance(n, int) or n < 0}
        if bad:
            raise ValueError(f"trainable blocks must be integers >= 0, got {bad}")


def encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    """An encoder's blocks in input-to-output order, for training only the last ones.

    An encoder that lists its own (``blocks()``: the ResNets, EfficientNet-Lite) gives them; a
    Hugging Face BERT-like text encoder gives its embeddings then its transformer layers (the
    pooler, after the last layer, trains with it).
    """
    if callable(getattr(encoder, "blocks", None)):
        return list(cast(Any, encoder).blocks())
    model: Any = getattr(encoder, "model", None)
    if (
        isinstance(encoder, TextEncoder)
        and hasattr(model, "embeddings")
        and hasattr(getattr(model, "encoder", None), "layer")
    ):
        return [model.embeddings, *model.encoder.layer]
    raise ValueError(
        f"trainable_blocks: {type(encoder).__name__} does not list its blocks; train it whole or freeze it"
    )


def trainable_parameters(encoder: nn.Module, last: int) -> tuple[set[int], list[nn.Module]]:
    """(ids of the parameters that train with the ``last`` blocks, the frozen blocks): the last
    blocks' parameters and those outside every block (a pooler after them).
    """
    blocks = encoder_blocks(encoder)
    frozen = blocks[: max(len(blocks) - last, 0)]
    in_blocks = {id(p) for block in blocks for p in block.parameters()}
    kept = {id(p) for block in blocks[len(frozen) :] for p in block.parameters()}
    return kept | {id(p) for p in encoder.parameters() if id(p) not in in_blocks}, frozen


def _encoders(pl_module: L.LightningModule) -> nn.ModuleDict:
    """The encoders of the fusion model a :class:`FusionModule` trains."""
    return cast(FusionModule, pl_module).model.encoders


class FreezeSchedule(Callback):
    """Freeze ``encoders[m]`` for its first ``freeze_epochs[m]`` epochs, then train it (only its
    last ``trainable_blocks[m]`` blocks, when given: :func:`trainable_parameters`).

    Parameters are only switched off (``requires_grad``), never removed from the optimizer,
    which was built with all of them at the start of fit: a frozen parameter gets no gradient
    and AdamW leaves it (and its weight decay) alone until it is unfrozen. During the freezing
    epochs BatchNorm statistics keep updating, as in the originals, which also only switched
    gradients off; the blocks that ``trainable_blocks`` leaves out run in evaluation mode
    (their statistics stay the pretrained ones), so they are the fixed features they were.
    """

    def __init__(self, freeze_epochs: Mapping[str, int], trainable_blocks: Mapping[str, int] | None = None) -> None:
        self.freeze_epochs = dict(freeze_epochs)
        self.trainable_blocks = dict(trainable_blocks or {})
        self._trainable: dict[str, tuple[set[int], list[nn.Module]]] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        encoders = _encoders(pl_module)
        unknown = sorted((set(self.freeze_epochs) | set(self.trainable_blocks)) - set(encoders))
        if unknown:
            raise ValueError(f"cannot freeze {unknown}: the model's modalities are {list(encoders)}")
        self._trainable = {m: trainable_parameters(encoders[m], n) for m, n in self.trainable_blocks.items()}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for modality in sorted(set(self.freeze_epochs) | set(self._trainable)):
            encoder = _encoders(pl_module)[modality]
            training = trainer.current_epoch >= self.freeze_epochs.get(modality, 0)
            if modality not in self._trainable:
                encoder.requires_grad_(training)
                continue
            kept, frozen = self._trainable[modality]
            for parameter in encoder.parameters():
                parameter.requires_grad_(training and id(parameter) in kept)
            for block in frozen:
                block.eval()


class RawDataModule(L.LightningDataModule):
    """Loaders over raw-input datasets (one per split), sampled as the feature path samples.

    As :class:`~iidfusion.tasks.classification.data.MultiViewDataModule`: training shuffles with a
    ``DistributedSampler`` seeded by ``seed`` (one replica on a single process; Lightning sets
    its epoch), never ends on a batch of one sample (L_ic and L_dc need batch statistics), and
    the validation and test splits are shared by the processes (``ShardSampler``; the module
    gathers exact metrics of the whole split). Items are collated by
    torch's default collate, which stacks images and the dicts of token tensors alike.
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        *,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        eval_batch_size: int = 32,
    ) -> None:
        super().__init__()
        missing = {"train", "val", "test"} - set(datasets)
        if missing:
            raise ValueError(f"datasets for the splits {sorted(missing)} are missing")
        if batch_size < 2 or eval_batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need batch_size >= 2, eval_batch_size >= 1, num_workers >= 0; got {batch_size}, {eval_batch_size}, "
                f"{num_workers}"
            )
        self.datasets = dict(datasets)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.seed, self.num_workers = int(seed), int(num_workers)

    def _loader(self, split: str, batch_size: int, **options: Any) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **options,
        )

    def _replicas(self) -> tuple[int, int]:
        return (1, 0) if self.trainer is None else (self.trainer.world_size, self.trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        replicas, rank = self._replicas()
        sampler: DistributedSampler[Any] = DistributedSampler(
            self.datasets["train"], num_replicas=replicas, rank=rank, shuffle=True, seed=self.seed
        )
        return self._loader("train", self.batch_size, sampler=sampler, drop_last=len(sampler) % self.batch_size == 1)

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            "val", self.eval_batch_size, sampler=ShardSampler(len(cast(Sized, self.datasets["val"])), *self._replicas())
        )

    def test_dataloader(self) -> DataLoader:
        return self._loader(
            "test",
            self.eval_batch_size,
            sampler=ShardSampler(len(cast(Sized, self.datasets["test"])), *self._replicas()),
        )


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Mapping):
        return {key: _to_device(item, device) for key, item in value.items()}
    return value.to(device)


@torch.no_grad()
def predict_raw(model: FusionModel, dataset: Dataset, *, batch_size: int = 32, bf16: bool = False) -> torch.Tensor:
    """Predicted classes (N,) on a raw-input dataset at test time, on the device of the model's parameters."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        chunks = []
        with at_test_time(model):
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                with autocast:
                    chunks.append(model(_to_device(batch["inputs"], device)).logits.argmax(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def evaluate_raw_under_noise(
    model: FusionModel,
    raw: RawSplits,
    tokenizer: TextTokenizer | None,
    levels: Sequence[float],
    *,
    kind: str = "gaussian",
    seed: int = 0,
    image_size: int = 224,
    batch_size: int = 32,
    bf16: bool = False,
) -> list[NoiseMetrics]:
    """Test metrics at each noise level (0: clean) of the raw-input protocol, seeded by ``seed``."""
    labels = raw.labels("test")
    metrics = []
    for level in levels:
        noise = InputNoise(float(level), kind, raw.family, seed) if level else None
        dataset = raw_dataset(
            raw,
            "test",
            tokenizer,
            noise=noise,
            image_size=image_size,
            preprocessing=encoder_preprocessing(cast(Mapping[str, nn.Module], model.encoders)),
        )
        predictions = predict_raw(model, dataset, batch_size=batch_size, bf16=bf16)
        metrics.append(NoiseMetrics.of(level, predictions, labels, raw.num_classes))
    return metrics


def fit_end_to_end(
    raw: RawSplits,
    method: str,
    seed: int,
    config: ExperimentConfig,
    finetune: FinetuneConfig,
    encoders: EncoderOptions,
    run_dir: Path | None = None,
) -> FitResult:
    """Train ``method`` end to end on ``raw`` with ``seed``; evaluate the best epoch's weights.

    The encoders are built (and randomly initialised where no weights are given) after
    ``seed_everything(seed)`` with ``init_seed=seed``, so a run is reproducible. The test split
    is evaluated at every level of ``config.eval.noise`` with ``config.eval.noise_kind``.
    """
    start = time.perf_counter()
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    L.seed_everything(seed, workers=True, verbose=False)
    spec = get_method(method)
    modules, tokenizer = build_encoders(raw, replace(encoders, init_seed=seed))
    model = spec.build_model(
        modules,
        {m: int(e.output_dim) for m, e in modules.items()},  # type: ignore[arg-type]
        raw.num_classes,
        width=config.model.width,
        num_samples=len(raw.train),
        unimodal_heads=config.model.unimodal_heads,
        **strategy_arguments(spec, config.model, config.strategy),
    )
    module = FusionModule(spec, model, config, seed=seed)
    datasets = {
        split: raw_dataset(
            raw,
            split,
            tokenizer,
            augment=split == "train",
            image_size=finetune.image_size,
            preprocessing=encoder_preprocessing(modules),
        )
        for split in ("train", "val", "test")
    }
    data = RawDataModule(
        datasets,
        batch_size=config.train.batch_size,
        seed=seed,
        num_workers=config.train.num_workers,
        eval_batch_size=finetune.eval_batch_size,
    )
    best = BestWeights(module.monitor)
    trainer = build_trainer(
        config.train,
        run_dir,
        seed,
        best,
        callbacks=[FreezeSchedule(finetune.freeze_epochs, finetune.trainable_blocks)],
        accumulate_grad_batches=finetune.accumulate_grad_batches,
        description=f"{method} seed {seed}",
        **trainer_options(config.train),
    )
    trainer.fit(module, datamodule=data)
    device = trainer.strategy.root_device
    best_model = cast(FusionModel, best.best_model(module, trainer).to(device))
    bf16 = config.train.precision.startswith("bf16") and device.type == "cuda"  # CPU evaluation stays float32
    metrics = evaluate_raw_under_noise(
        best_model,
        raw,
        tokenizer,
        config.eval.noise,
        kind=config.eval.noise_kind,
        seed=seed,
        image_size=finetune.image_size,
        batch_size=finetune.eval_batch_size,
        bf16=bf16,
    )
    return FitResult.after_trainer(module, trainer, best, metrics, seed, start)


def default_freeze_epochs(family: str) -> dict[str, int]:
    """The originals' freezing schedule: vision-language image 3 and text 5 epochs, RGB-D none."""
    return {"image": 3, "text": 5} if family == "vision-language" else {}


@dataclass(frozen=True)
class FinetuneSettings:
    """Every option of an end-to-end comparison: the ``experiment`` (the options of ``compare``),
    what end-to-end training adds (``finetune``) and the ``encoders`` to build.
    """

    experiment: ExperimentConfig
    finetune: FinetuneConfig
    encoders: EncoderOptions

    def as_dict(self) -> dict[str, Any]:
        """The settings as the YAML file of :func:`load_finetune_settings` holds them (the encoders'
        ``init_seed`` is each run's seed, not a setting).
        """
        encoders = {k: v for k, v in config_to_dict(self.encoders).items() if k != "init_seed"}
        return {**config_to_dict(self.experiment), "finetune": config_to_dict(self.finetune), "encoders": encoders}


def load_finetune_settings(
    path: str | Path | None,
    family: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    finetune_overrides: Mapping[str, Any] | None = None,
    encoder_overrides: Mapping[str, Any] | None = None,
) -> FinetuneSettings:
    """The settings of ``iidfusion finetune``: defaults < the YAML file at ``path`` < the flags.

    The file holds the sections of ``compare`` plus ``finetune:`` (:class:`FinetuneConfig`) and
    ``encoders:`` (:class:`~iidfusion.data.raw.families.EncoderOptions`; ``init_seed`` is each run's
    seed). ``overrides`` are dotted experiment keys (``loss.alpha``), the other two plain field
    names. The defaults: bf16 mixed precision where the GPU has it (a CPU run stays float32) and
    the family's freezing schedule (:func:`default_freeze_epochs`). Tuning is not supported end
    to end, so a ``tune`` section that enables it is an error, as is an unknown key. Every
    option is checked here (:func:`~iidfusion.tasks.classification.compare.validate_config`, the method
    names, the encoders' packages), before any data is read.
    """
    values = read_config_file(path) if path is not None else {}
    source = str(path) if path is not None else "the defaults"
    finetune_values, encoder_values = values.pop("finetune", None) or {}, values.pop("encoders", None) or {}
    precision = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    experiment = load_config(
        None, overrides, base=merge_config(load_config(None, {"train.precision": precision}), values, source)
    )
    if experiment.tune.enabled:
        raise ValueError(
            "tune.enabled: `finetune` does not tune; choose the hyperparameters on features (`compare --tune`)"
        )
    if "init_seed" in encoder_values:
        raise ValueError(
            f"config key 'encoders.init_seed' in {source}: the encoders are initialised from each run's seed"
        )
    finetune = merge_config(
        FinetuneConfig(freeze_epochs=default_freeze_epochs(family)), finetune_values, source, "finetune."
    )
    encoders = merge_config(EncoderOptions(), encoder_values, source, "encoders.")
    settings = FinetuneSettings(
        experiment,
        merge_config(finetune, dict(finetune_overrides or {}), "the command line", "finetune."),
        merge_config(encoders, dict(encoder_overrides or {}), "the command line", "encoders."),
    )
    validate_config(experiment)
    resolve_methods(experiment.methods)
    require_encoder_packages(settings.encoders, family)
    return settings


def execute_end_to_end(raw: RawSplits, finetune: FinetuneConfig, encoders: EncoderOptions, task: Task) -> RunOutcome:
    """One (method, seed) of an end-to-end comparison (a runner for :func:`~iidfusion.engine.runs.run_tasks`)."""
    config = without_progress_bar(task.config)
    fit = fit_end_to_end(raw, task.method, task.seed, config, finetune, encoders, task.run_dir)
    results = [EvalResult(task.name, task.seed, m.noise, "all", m.accuracy, m.macro_f1) for m in fit.metrics]
    return RunOutcome(
        results,
        fit.best_val_acc,
        fit.best_val_loss,
        fit.epochs,
        fit.seconds,
        fit.is_global_zero,
        confusion=[m["confusion"] for m in fit.test_metrics()],
        class_names=list(raw.class_names) or [str(c) for c in range(raw.num_classes)],
    )


def compare_end_to_end(
    raw: RawSplits, settings: FinetuneSettings, out: str | Path, *, log: Callable[[str], None] = print
) -> Comparison:
    """Every method of ``settings.experiment`` with seeds 0..seeds-1 trained end to end on ``raw``,
    evaluated under the raw-input noise protocol, and the results written to ``out`` as by
    ``compare`` (:func:`~iidfusion.tasks.classification.compare.compare_tasks`: the same task loop, ``jobs``,
    progress and report). ``settings``: as :func:`load_finetune_settings` checked them.
    """
    config = settings.experiment
    methods = resolve_methods(config.methods)
    record = {**settings.as_dict(), "data": raw.name, "class_names": list(raw.class_names)}
    return compare_tasks(
        comparison_tasks(config, methods, Path(out)),
        config,
        out,
        title=f"{raw.name} end to end: {len(methods)} methods x {config.seeds} seeds",
        record=record,
        log=log,
        execute_task=functools.partial(execute_end_to_end, raw, settings.finetune, settings.encoders),
        description="finetune",
    )
