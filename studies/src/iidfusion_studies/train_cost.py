"""The cost of IID: time per training step and peak memory, IID against its bases (docs/evidence.md, section 3).

A *step* is what :class:`iidfusion.tasks.classification.module.FusionModule` does per batch, without
Lightning around it: the model's forward, :class:`~iidfusion.losses.IIDLoss` (task CE, the
strategy's terms, and L_ic / L_dc when the method has them), backward, an AdamW step. Models
and losses are built as the trainer builds them (:func:`~iidfusion.tasks.classification.module.build_loss`),
except that a base method does not compute the monitoring distances (``train.monitor_distances``
is a logging choice of the trainer, not a cost of the method).

Every method runs on the same batch. Timing interleaves the methods: ``rounds`` times, each
method runs ``steps`` steps in turn, and a method's time per step is the median over all its
timed steps, so a load change on a shared machine hits every method alike; on CPU the time is
the process's CPU time (with one torch thread, the compute of the step), on CUDA the wall time
after a synchronisation. Peak memory: on CPU, the peak of live tensor bytes (parameters,
gradients, optimizer state, activations) over one step, from the timeline of ``torch.profiler``
(``profile_memory``); on CUDA, ``torch.cuda.max_memory_allocated`` over one step.

Workloads: (a) ``handwritten-mlp``: the bundled Handwritten data (6 views), one MLP encoder per
view, the experiment defaults (width 64, batch 128); (b) ``resnet18-bert``: a two-modality
image-text model, a random ResNet-18 (224 x 224 images) and the small random BERT of
:class:`~iidfusion.encoders.RandomTextConfig` (fixture texts of 32 tokens), batch 8.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

from iidfusion.data.features.registry import load_dataset
from iidfusion.encoders.image import ImageEncoder
from iidfusion.encoders.text import load_text_encoder
from iidfusion.engine.results import csv_text, fmt_number, markdown_table
from iidfusion.fusion.methods import MAIN_METHODS, MethodSpec, get_method
from iidfusion.fusion.model import FusionModel
from iidfusion.losses.iid import IIDLoss
from iidfusion.tasks.classification.config import LossConfig, ModelConfig
from iidfusion.tasks.classification.module import build_feature_model, build_loss
from iidfusion_studies._report import reduction_dims, write_outputs

STRATEGY_FAMILIES = (
    ("static", "lf-static", "if-static", "iid-l"),
    ("qmf", "qmf", "if-qmf", "iid-q"),
    ("pdf", "pdf", "if-pdf", "iid-p"),
)
"""(strategy, LF base, IF base, IID variant)."""
TARGETS = {"handwritten-mlp": 1.25, "resnet18-bert": 1.05}


@dataclass(frozen=True)
class CostConfig:
    """What the cost benchmark measures (the defaults take a few minutes on one CPU thread)."""

    methods: tuple[str, ...] = MAIN_METHODS
    workloads: tuple[str, ...] = ("handwritten-mlp", "resnet18-bert")
    rounds: int = 5
    steps: int = 4
    """timed steps per method and round (handwritten-mlp)."""
    warmup: int = 2
    vl_rounds: int = 7
    """rounds of resnet18-bert, one step each after one warm-up step (a step there takes seconds on CPU)."""
    mlp_batch: int = 128
    vl_batch: int = 8
    image_size: int = 224
    text_length: int = 32
    threads: int = 1
    device: str = "cpu"
    seed: int = 0
    memory: bool = True
    """measure peak memory (on CPU the profiler's memory timeline takes seconds per configuration)."""
    loss_options: tuple[tuple[tuple[str, Any], ...], ...] = (
        (("d2", 178),),
        (("d2", 32),),
        (("d2", 16),),
    )
    """L_dc option sets compared with the defaults on workload (a), as (LossConfig field, value) pairs:
    d2=178 is the uncapped Gaussian projection, rip_dimension(64, 16) (the default caps d2 at half the width)."""

    def schedule(self, workload: str) -> tuple[int, int, int]:
        """(warm-up steps, rounds, timed steps per round) of ``workload``."""
        return (
            (min(self.warmup, 1), self.vl_rounds, 1)
            if workload == "resnet18-bert"
            else (self.warmup, self.rounds, self.steps)
        )

    def __post_init__(self) -> None:
        unknown = [w for w in self.workloads if w not in WORKLOADS]
        if unknown:
            raise ValueError(f"unknown workload {unknown[0]!r}; expected some of {list(WORKLOADS)}")
        for name in self.methods:
            get_method(name)
        small = {
            k: getattr(self, k)
            for k in ("rounds", "steps", "vl_rounds", "mlp_batch", "vl_batch", "text_length", "threads")
            if getattr(self, k) < 1
        }
        if small or self.warmup < 0 or self.image_size < 32:
            raise ValueError(
                f"invalid cost configuration: need counts >= 1, warmup >= 0, image_size >= 32; got {small or self}"
            )
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but CUDA is not available")
        known = {f.name for f in dataclasses.fields(LossConfig)}
        for options in self.loss_options:
            unknown_options = [key for key, _ in options if key not in known]
            if unknown_options:
                raise ValueError(f"unknown loss option {unknown_options[0]!r}; LossConfig fields: {sorted(known)}")


@dataclass
class Workload:
    """One model family and its fixed batch: ``build(spec, loss_config)`` -> (model, loss)."""

    name: str
    batch: dict[str, Any]
    build: Callable[[MethodSpec, LossConfig], tuple[FusionModel, IIDLoss]]


@dataclass(frozen=True)
class StepCost:
    """One method on one workload: median time per step (ms), its median in each round (for paired
    ratios), the time of its objective alone (:func:`loss_times_ms`), peak memory (MiB; NaN if not
    measured), the number of timed steps and the fastest of them (ms).
    """

    workload: str
    options: str
    method: str
    step_ms: float
    round_ms: tuple[float, ...]
    loss_ms: float
    peak_mib: float
    steps: int
    best_ms: float = math.nan


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


DEFAULT_MODEL = ModelConfig()  # the classification defaults: MLP encoders of the feature path


def handwritten_workload(config: CostConfig, model: ModelConfig = DEFAULT_MODEL) -> Workload:
    """(a): the first ``mlp_batch`` training samples of Handwritten, MLP encoders as in training."""
    splits = load_dataset("handwritten", seed=config.seed)
    index = torch.arange(min(config.mlp_batch, len(splits.train)))
    batch = {
        "inputs": {v: x[index] for v, x in splits.train.views.items()},
        "label": splits.train.labels[index],
        "index": index,
    }

    def build(spec: MethodSpec, loss: LossConfig) -> tuple[FusionModel, IIDLoss]:
        fusion = build_feature_model(spec, splits.view_dims, splits.num_classes, len(splits.train), model)
        return fusion, build_loss(spec, loss, fusion.width)

    return Workload("handwritten-mlp", batch, build)


FIXTURE_WORDS = (
    "good",
    "bad",
    "great",
    "awful",
    "the",
    "movie",
    "food",
    "view",
    "today",
    "not",
    "very",
    "a",
    "trip",
    "game",
)


def resnet_bert_workload(config: CostConfig, model: ModelConfig = DEFAULT_MODEL) -> Workload:
    """(b): random ResNet-18 on random 224 x 224 images + random small BERT on fixture texts, 3 classes."""
    rng = random.Random(config.seed)
    texts = [
        " ".join(rng.choice(FIXTURE_WORDS) for _ in range(config.text_length)) for _ in range(max(config.vl_batch, 16))
    ]
    generator = torch.Generator().manual_seed(config.seed)
    b = config.vl_batch
    images = torch.randn(b, 3, config.image_size, config.image_size, generator=generator)
    num_classes = 3

    def build(spec: MethodSpec, loss: LossConfig) -> tuple[FusionModel, IIDLoss]:
        torch.manual_seed(config.seed)
        with warnings.catch_warnings():  # random initialisation is the point here
            warnings.simplefilter("ignore", UserWarning)
            encoders = {
                "image": ImageEncoder("resnet18"),
                "text": load_text_encoder(None, corpus=texts, max_length=config.text_length + 2)[0],
            }
        fusion = spec.build_model(
            encoders,
            {m: e.output_dim for m, e in encoders.items()},
            num_classes,
            width=model.width,
            num_samples=len(texts),
        )
        return fusion, build_loss(spec, loss, fusion.width)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tokenizer = load_text_encoder(None, corpus=texts, max_length=config.text_length + 2)[1]
    labels = torch.randint(num_classes, (b,), generator=generator)
    batch = {"inputs": {"image": images, "text": tokenizer.batch(texts[:b])}, "label": labels, "index": torch.arange(b)}
    return Workload("resnet18-bert", batch, build)


WORKLOADS: dict[str, Callable[[CostConfig], Workload]] = {
    "handwritten-mlp": handwritten_workload,
    "resnet18-bert": resnet_bert_workload,
}

QUICK = CostConfig(rounds=1, steps=1, warmup=1, vl_rounds=1, vl_batch=2, image_size=64, text_length=8)
"""A smoke-test size of the benchmark (seconds)."""


class Trainer:
    """One method's model, loss and optimizer on a device; :meth:`step` is one training step."""

    def __init__(self, workload: Workload, spec: MethodSpec, loss: LossConfig, device: torch.device) -> None:
        self.model, self.loss = workload.build(spec, loss)
        self.model.to(device).train()
        self.loss.to(device)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3)
        self.batch = _to_device(workload.batch, device)
        self.device = device

    def step(self) -> float:
        """One step; returns the total loss (a host sync, as Lightning's logging makes)."""
        output = self.model(self.batch["inputs"])
        total = self.loss(output, self.batch["label"], self.batch["index"], strategy=self.model.strategy).total
        total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(total.detach())


def _timed_steps(trainer: Trainer, count: int) -> list[float]:
    """Seconds per step: CPU time of this process on CPU (other jobs on a shared machine do not
    inflate it), wall time after a device synchronisation on CUDA.
    """
    cuda = trainer.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    times = []
    for _ in range(count):
        start = clock()
        trainer.step()
        if cuda:
            torch.cuda.synchronize(trainer.device)
        times.append(clock() - start)
    return times


def peak_memory_mib(trainer: Trainer) -> float:
    """Peak live tensor memory (MiB) over one step (module docstring)."""
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
        torch.cuda.reset_peak_memory_stats(trainer.device)
        trainer.step()
        return torch.cuda.max_memory_allocated(trainer.device) / 2**20

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        trainer.step()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the CPU timeline has no replacement yet
        path = os.path.join(folder, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        with open(path) as handle:
            _, sizes = json.load(handle)
    return max(sum(row) for row in sizes) / 2**20


@dataclass(frozen=True)
class Job:
    """One measured configuration: a method trained with one set of loss options."""

    method: str
    loss: LossConfig
    options: str = "default"
    memory: bool = True
    """measure peak memory too (the CPU memory timeline takes seconds per step to analyse)."""


def measure_costs(workload: Workload, jobs: Sequence[Job], config: CostConfig) -> list[StepCost]:
    """Interleaved step timing and peak memory of every job on ``workload`` (module docstring)."""
    device = torch.device(config.device)
    warmup, rounds, steps = config.schedule(workload.name)
    trainers = [Trainer(workload, get_method(job.method), job.loss, device) for job in jobs]
    for trainer in trainers:
        _timed_steps(trainer, warmup)
    times: list[list[list[float]]] = [[] for _ in jobs]  # job -> round -> step times
    for _ in range(rounds):
        for k, trainer in enumerate(trainers):
            times[k].append(_timed_steps(trainer, steps))
    loss_ms = loss_times_ms(trainers, LOSS_REPEATS)
    return [
        StepCost(
            workload.name,
            job.options,
            job.method,
            1e3 * statistics.median(t for r in per_round for t in r),
            tuple(1e3 * statistics.median(r) for r in per_round),
            loss,
            peak_memory_mib(trainer) if job.memory and config.memory else math.nan,
            sum(len(r) for r in per_round),
            1e3 * min(t for r in per_round for t in r),
        )
        for job, trainer, per_round, loss in zip(jobs, trainers, times, loss_ms, strict=True)
    ]


LOSS_REPEATS = 21


def _leaf(value: Any) -> Any:
    """``value`` with every tensor replaced by a detached copy that requires grad (floating tensors)."""
    if isinstance(value, Tensor):
        return value.detach().requires_grad_(value.is_floating_point())
    if isinstance(value, Mapping):
        return {k: _leaf(v) for k, v in value.items()}
    return value


def objective_timer(trainer: Trainer) -> Callable[[], float]:
    """A function timing (seconds) one forward and backward of the objective on a fixed, detached
    model output.

    The model's forward and backward are shared by a method and its IID variant (L_ic and L_dc add
    their gradients at the features before the one backward through the encoders), so the
    difference of this time between IID and its base is the cost of the regularizers alone, free
    of the noise of the encoders' step.
    """
    with torch.no_grad():
        output = trainer.model(trainer.batch["inputs"])
    output = dataclasses.replace(output, **{f.name: _leaf(getattr(output, f.name)) for f in dataclasses.fields(output)})
    cuda = trainer.device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time

    def timed() -> float:
        start = clock()
        trainer.loss(
            output, trainer.batch["label"], trainer.batch["index"], strategy=trainer.model.strategy
        ).total.backward()
        if cuda:
            torch.cuda.synchronize(trainer.device)
        return clock() - start

    return timed


def loss_times_ms(trainers: Sequence[Trainer], repeats: int) -> list[float]:
    """Per trainer, the least time (ms) of :func:`objective_timer` over ``repeats`` interleaved rounds
    (the least disturbed run of the same work; interleaving exposes every trainer to the same load).
    """
    timers = [objective_timer(trainer) for trainer in trainers]
    times: list[list[float]] = [[] for _ in timers]
    for _ in range(repeats):
        for k, timer in enumerate(timers):
            times[k].append(timer())
    return [1e3 * min(t) for t in times]


def paired_ratio(numerator: StepCost, denominator: StepCost) -> tuple[float, float, float]:
    """(median, min, max) over rounds of the ratio of the two costs' per-round times (adjacent in time)."""
    ratios = [a / b for a, b in zip(numerator.round_ms, denominator.round_ms, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def profile_step(
    workload: Workload, method: str, loss: LossConfig, config: CostConfig, rows: int = 8
) -> list[tuple[str, float, float]]:
    """(op, self CPU ms per step, share of the step) of the ``rows`` most expensive ops of ``method``."""
    trainer = Trainer(workload, get_method(method), loss, torch.device(config.device))
    _timed_steps(trainer, max(config.warmup, 1))
    count = max(config.steps, 1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(count):
            trainer.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranked = sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]
    return [(e.key, e.self_cpu_time_total / 1e3 / count, e.self_cpu_time_total / total) for e in ranked]


def coherence_fidelity(workload: Workload, method: str, loss: LossConfig, reference: LossConfig) -> float:
    """Relative deviation of L_dc under ``loss`` from L_dc under ``reference`` (a converged solve),
    at the features of the freshly initialised model on the workload's batch.
    """
    trainer = Trainer(workload, get_method(method), loss, torch.device("cpu"))
    converged = build_loss(get_method(method), reference, trainer.model.width).coherence
    with torch.no_grad():
        features = trainer.model(trainer.batch["inputs"]).features
        value, truth = float(trainer.loss.coherence(features).loss), float(converged(features).loss)
    return abs(value - truth) / abs(truth)


# --- report ---------------------------------------------------------------------------------


def ratio_rows(costs: Sequence[StepCost], target: float) -> list[list[str]]:
    """One row per strategy: base and IID times and memory, the IID / base ratios, targets met.

    The time target is judged on 1 + (regularizer time) / (IF base step), the noise-free estimate
    of the step ratio (:func:`loss_times_ms`); the directly measured paired ratio and its range over
    rounds are shown next to it.
    """
    by_method = {c.method: c for c in costs}
    rows = []
    for strategy, lf, base, iid in STRATEGY_FAMILIES:
        if base not in by_method or iid not in by_method:
            continue
        b, i = by_method[base], by_method[iid]
        ratio, low, high = paired_ratio(i, b)
        lf_ratio = paired_ratio(i, by_method[lf])[0] if lf in by_method else math.nan
        regularizers = i.loss_ms - b.loss_ms
        derived = 1 + regularizers / b.best_ms
        rows.append(
            [
                strategy,
                fmt_number(by_method[lf].step_ms if lf in by_method else math.nan, ".3g"),
                fmt_number(b.step_ms, ".3g"),
                fmt_number(i.step_ms, ".3g"),
                f"{ratio:.2f} [{low:.2f}, {high:.2f}]",
                fmt_number(lf_ratio, ".2f"),
                fmt_number(regularizers, ".3g"),
                fmt_number(derived, ".3f"),
                fmt_number(b.peak_mib, ".3g"),
                fmt_number(i.peak_mib, ".3g"),
                fmt_number(i.peak_mib / b.peak_mib, ".2f"),
                _verdict(derived, target),
                _verdict(i.peak_mib / b.peak_mib, target),
            ]
        )
    return rows


def _verdict(ratio: float, target: float) -> str:
    return "n/a" if math.isnan(ratio) else "yes" if ratio <= target else "no"


RATIO_HEADERS = [
    "strategy",
    "LF base (ms)",
    "IF base (ms)",
    "IID (ms)",
    "time IID / IF base, paired [range over rounds]",
    "time IID / LF base",
    "L_ic + L_dc alone (ms)",
    "1 + (L_ic + L_dc) / IF base",
    "IF base peak (MiB)",
    "IID peak (MiB)",
    "memory IID / IF base",
    "time target met",
    "memory target met",
]


def options_label(loss: LossConfig, default: LossConfig) -> str:
    """The L_dc options that differ from ``default``, as ``key=value`` (``default`` if none)."""
    changed = [
        f"{f.name}={getattr(loss, f.name)}"
        for f in dataclasses.fields(loss)
        if getattr(loss, f.name) != getattr(default, f.name)
    ]
    return ", ".join(changed) or "default"


def ablation_rows(costs: Sequence[StepCost]) -> list[list[str]]:
    """Per strategy, the paired time ratio to the IF base of L_dc alone (w/o I), L_ic alone (w/o D) and
    both, and the time of each regularizer alone (ms, from :func:`loss_times_ms`).
    """
    by_method = {c.method: c for c in costs if c.options == "default"}
    rows = []
    for strategy, _, base, iid in STRATEGY_FAMILIES:
        letter = iid[-1]
        names = (f"iid-{letter}-no-ic", f"iid-{letter}-no-dc", iid)
        if base in by_method and all(n in by_method for n in names):
            b = by_method[base]
            ratios = [fmt_number(paired_ratio(by_method[n], b)[0], ".2f") for n in names]
            alone = [fmt_number(by_method[n].loss_ms - b.loss_ms, ".3g") for n in names]
            rows.append([strategy, *ratios, *alone])
    return rows


ABLATION_HEADERS = [
    "strategy",
    "time / IF base: L_dc only",
    "L_ic only",
    "both",
    "L_dc alone (ms)",
    "L_ic alone (ms)",
    "both (ms)",
]


def option_rows(
    costs: Sequence[StepCost], fidelity: Mapping[str, float], analysed: str, target: float
) -> list[list[str]]:
    """Per set of L_dc options: paired IID / IF-base time ratio per strategy, for ``analysed`` the
    regularizer-derived ratio and the memory ratio, and how far L_dc moves from the default options'
    converged value.
    """
    base = {c.method: c for c in costs if c.options == "default"}
    analysed_base = base[next(f[2] for f in STRATEGY_FAMILIES if f[3] == analysed)]
    rows = []
    for options, deviation in fidelity.items():
        iid = {c.method: c for c in costs if c.options == options}
        ratios = [paired_ratio(iid[i], base[b])[0] for _, _, b, i in STRATEGY_FAMILIES if b in base and i in iid]
        derived = 1 + (iid[analysed].loss_ms - analysed_base.loss_ms) / analysed_base.best_ms
        memory = iid[analysed].peak_mib / analysed_base.peak_mib
        rows.append(
            [
                options,
                *(fmt_number(r, ".2f") for r in ratios),
                fmt_number(derived, ".3f"),
                fmt_number(memory, ".2f"),
                fmt_number(100 * deviation, ".2g"),
                _verdict(derived, target),
            ]
        )
    return rows


@dataclass
class CostResults:
    """Everything the cost benchmark measured (one run)."""

    config: CostConfig
    costs: list[StepCost]
    fidelity: dict[str, float]
    profile: list[tuple[str, float, float]]
    analysed: str
    """the IID method profiled and used for the L_dc deviation ("" if none)."""
    seconds: float


def option_variants(config: CostConfig) -> dict[str, LossConfig]:
    """The L_dc option sets compared on workload (a), by label; ``default`` first."""
    default = LossConfig()
    variants = [default] + [dataclasses.replace(default, **dict(v)) for v in config.loss_options]
    return {options_label(v, default): v for v in variants}


def run_cost_benchmark(config: CostConfig, log: Callable[[str], None] = lambda message: None) -> CostResults:
    """Measure every workload of ``config`` (module docstring) in one process."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        costs: list[StepCost] = []
        fidelity: dict[str, float] = {}
        profile: list[tuple[str, float, float]] = []
        analysed = ""
        default = LossConfig()
        for name in config.workloads:
            workload = WORKLOADS[name](config)
            families = [f for f in STRATEGY_FAMILIES if f[2] in config.methods and f[3] in config.methods]
            # Memory only where the table shows it: the IF bases and their IID variants.
            in_table = {m for f in families for m in f[2:]}
            jobs = [Job(m, default, memory=m in in_table) for m in config.methods]
            if name == "handwritten-mlp" and families:
                iids = [iid for *_, iid in families]
                jobs += [Job(f"{iid}-no-{part}", default, memory=False) for iid in iids for part in ("ic", "dc")]
                variants = option_variants(config)
                # A base method computes no L_dc: its default-options time is its time under every variant.
                analysed = iids[-1]
                jobs += [
                    Job(iid, loss, label, memory=iid == analysed)
                    for label, loss in variants.items()
                    if label != "default"
                    for iid in iids
                ]
                reference = dataclasses.replace(default, max_iter=REFERENCE_ITERATIONS)
                fidelity = {
                    label: coherence_fidelity(workload, analysed, loss, reference) for label, loss in variants.items()
                }
                profile = profile_step(workload, analysed, default, config)
            costs += measure_costs(workload, jobs, config)
            log(f"{name}: {len(jobs)} configurations measured, {time.perf_counter() - start:.0f} s so far")
        return CostResults(config, costs, fidelity, profile, analysed, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


REFERENCE_ITERATIONS = 2000


def _workload_note(name: str, config: CostConfig) -> str:
    loss, width = LossConfig(), ModelConfig().width
    d1, d2 = reduction_dims(width, loss.d1, loss.d2) or ("-", "-")
    return WORKLOAD_NOTES[name].format(config=config, d1=d1, d2=d2, max_iter=loss.max_iter)


def render_markdown(results: CostResults) -> str:
    """The report the benchmark prints and writes to ``train_cost.md``."""
    config = results.config
    lines = [
        "# Cost of IID: time per training step and peak memory",
        "",
        f"Device {config.device}, {config.threads} torch thread(s); time per step: median over interleaved rounds "
        "(counts below, after warm-up steps), CPU time of the process on CPU; peak memory over one step "
        "(parameters, gradients, optimizer state and activations). Ratios are IID over its base with the same "
        "weight strategy, same batch, same run; a paired ratio is the median over rounds of the ratio of the "
        "two methods' times in that round. 'L_ic + L_dc alone' is the time of the IID objective's forward and "
        "backward minus the base objective's, on a fixed model output (fastest of "
        f"{LOSS_REPEATS} interleaved rounds): the model's own forward and backward are the same for both, so "
        "1 + that / (fastest IF base step) estimates the step ratio without the noise of the encoders and of "
        "other jobs (each fastest time is the least disturbed run of the same work); the time target is judged "
        "on it. "
        f"Run time {results.seconds:.0f} s.",
    ]
    for name in config.workloads:
        costs = [c for c in results.costs if c.workload == name]
        target = TARGETS[name]
        lines += [
            "",
            f"## {name} (target: IID / base <= {target:g})",
            "",
            _workload_note(name, config)
            + " Timing: {1} round(s) x {2} step(s) after {0} warm-up step(s).".format(*config.schedule(name)),
            "",
            markdown_table(RATIO_HEADERS, ratio_rows([c for c in costs if c.options == "default"], target)),
        ]
        ablations = ablation_rows(costs)
        if ablations:
            lines += [
                "",
                "Where the extra time goes: paired time ratio to the IF base of L_dc alone (w/o I), L_ic alone "
                "(w/o D) and both (IID), and the time of the regularizers alone (objective minus the base's).",
                "",
                markdown_table(ABLATION_HEADERS, ablations),
            ]
        if name == "handwritten-mlp" and results.profile:
            lines += [
                "",
                f"Most expensive ops of one {results.analysed} step (torch.profiler, self CPU time):",
                "",
                markdown_table(
                    ["op", "ms per step", "share"],
                    [
                        [op, fmt_number(ms, ".3g"), fmt_number(100 * share, ".1f") + " %"]
                        for op, ms, share in results.profile
                    ],
                ),
            ]
        if name == "handwritten-mlp" and len(results.fidelity) > 1:
            lines += [
                "",
                "L_dc options (public `LossConfig` / `DistributionCoherence` arguments), before (default) and after, "
                "same run: paired time IID / IF base per strategy, the regularizer-derived ratio and peak memory IID / "
                "IF base of "
                f"{results.analysed}, and the relative deviation of {results.analysed}'s L_dc from its value under the "
                f"default options solved with max_iter={REFERENCE_ITERATIONS} (initial features of the batch).",
                "",
                markdown_table(
                    [
                        "L_dc options",
                        *(f"{s}: time IID / IF base" for s, *_ in STRATEGY_FAMILIES),
                        f"{results.analysed}: 1 + (L_ic + L_dc) / IF base",
                        f"{results.analysed}: memory IID / IF base",
                        "L_dc deviation (%)",
                        "time target met",
                    ],
                    option_rows(costs, results.fidelity, results.analysed, target),
                ),
            ]
    return "\n".join(lines) + "\n"


WORKLOAD_NOTES = {
    "handwritten-mlp": "Handwritten, 6 views, one MLP encoder per view (hidden 128), width 64, "
    "batch {config.mlp_batch}; L_dc over the 15 view pairs (d1 {d1}, d2 {d2}, Sinkhorn max_iter {max_iter}: "
    "the `fit` defaults).",
    "resnet18-bert": "Random ResNet-18 on {config.image_size} x {config.image_size} images and a random 2-layer BERT "
    "(hidden 128) on fixture texts of {config.text_length} words, batch {config.vl_batch}, width 64; L_dc over 1 pair "
    "(d1 {d1}, d2 {d2}, max_iter {max_iter}).",
}


def write_costs(results: CostResults, out: str | Path, stem: str = "train_cost") -> str:
    """``stem``.md (the printed report) and ``stem``.csv (every measurement) in ``out``, together."""
    report = render_markdown(results)
    records = [dataclasses.asdict(c) for c in results.costs]
    write_outputs(out, {f"{stem}.md": report, f"{stem}.csv": csv_text(records)})
    return report
