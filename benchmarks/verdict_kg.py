"""Does IID help on a knowledge graph? The KG part of docs/protocol.md, from one resumable command.

    python benchmarks/verdict_kg.py run [--work runs/verdict_kg] [--data ../shared/data/wn9img] [--seeds 3] [--jobs 1]
    python benchmarks/verdict_kg.py report     # benchmarks/results/verdict_kg.{md,json} from the cache alone

The arms (docs/protocol.md, "Data sets and seeds"): **OTKGE**, the model of
``configs/kg/wn9img_text_cpu.yaml`` (the structural ComplEx embedding with WN9-IMG's text features
and its MiniLM-encoded glosses, rank 32) with alpha = beta = 0, and **OTKGE + IID**, the same model
with IID's two terms. A seed fixes initialisation and batch order of both (paired design).

Budgets, compute matched (docs/protocol.md, "Budgets"): each arm gets the same k = 6 trials per
seed (:data:`PROTOCOL`), every one trained to convergence: at most :attr:`Grid.max_epochs` = 200
epochs, stopped after :attr:`Grid.patience` = 3 validations (15 epochs at the config's
``eval_every`` 5) without a better validation MRR, the model of the best validation MRR kept.

* OTKGE + IID tunes its weights: alpha in {0.1, 0.01, 0.001} x beta in {0.1, 0.01}. The paper gives
  no weights for the KG; the config's ``compare`` section (alpha 0.01, beta 0.1) is the repository's
  starting point (docs/reproduce.md, Table 3), and the grid spans a decade of alpha either side of it
  and its beta with a decade below, at the k = 6 of the classification part.
* OTKGE tunes its optimisation: the learning rate at 0.5, 1 and 2 times the config's (Adagrad 0.5)
  x the N3 weight in {5e-3, 1e-3}, OTKGE's own values for WN9-IMG and FB-IMG.

Selection (per seed and arm) reads validation only: the trial of the best validation MRR (filtered,
the config's tie policy); ties: the earlier trial in grid order (the orders above, the first factor
outermost); a trial whose loss diverged ranks last. Its test MRR is read once, after the choice. The
untuned protocol, reported second as in the classification part: each arm at the config's own
settings (OTKGE: lr 0.5, N3 5e-3; OTKGE + IID: the ``compare`` section's alpha and beta), one trial,
trained to convergence as above; both lie in the grids, so they cost nothing extra.

Analysis (docs/protocol.md, "Unit of analysis"): the KG is one data set, analysed on its own: per
seed the paired difference of test MRR (IID minus OTKGE), their mean with a 95 % percentile
bootstrap CI over seeds (:data:`BOOTSTRAP` resamples, seed 0), and the verdict of "What counts as
IID helps" for one data set: **helps** when the mean is positive with a CI that excludes 0,
**hurts** when negative with a CI that excludes 0, otherwise **no detectable effect** (the CI
bounds what could have been missed). With 3 seeds the percentile interval runs from about the
smallest to the largest difference, so "helps" needs every seed to favour IID.

Cache: every finished trial is one JSON file ``WORK/trials/<key>.json``, written atomically as the
trial ends (:func:`~iidfusion.engine.runs.save_outcome`), with exact values; the key is the data's
content (:func:`~iidfusion.tasks.kg.fit.graph_digest`: triples and feature values), the arm, the
seed, the tuned values and every setting the trial ran with. A rerun trains only what is missing;
a trial cut off continues from its last epoch's checkpoint (``WORK/partial/<key>``, removed when it ends),
so an interruption loses only the epochs since. ``WORK/plan.json`` names the trials of the
protocol, so ``report`` needs neither the data nor a trained model, and trials of other settings
left in the cache are not read. The report's json holds every finished trial's record, key and all:
``run`` takes those its cache lacks from ``OUT/verdict_kg.json`` before training, so a fresh machine
continues from the committed report instead of starting over.

Cost on the 2-core CPU (one torch thread a trial). Before the runs we expected best epochs of 20-40
(benchmarks/results/kg_wn9img.md: an IID epoch about 29 s, a baseline epoch about 3 s; its 20-epoch runs
were still improving), 5.6-8.8 h for the 3 seeds at ``--jobs 1``. The first OTKGE trials peaked at
epochs 50 to 140 (244 to 606 s each), so the protocol costs more: the log and the report give the time
left at each arm's mean time per trial so far (before an IID trial has finished, OTKGE's mean times
:data:`IID_EPOCH_COST`). At most, every trial running its 200 epochs, about 32 h.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from iidfusion.core.config import merge_config, nest
from iidfusion.core.provenance import git_state
from iidfusion.engine.results import fmt_number, json_text, markdown_table, write_files
from iidfusion.engine.runs import load_outcome, run_tasks, save_outcome, time_left
from iidfusion.engine.stats import paired_bootstrap_ci
from iidfusion.kg.data import KnowledgeGraph, load_triples_folder
from iidfusion.kg.features import build_modality_features, default_feature_sources
from iidfusion.tasks.kg.config import KGCompareConfig, KGExperimentConfig, load_kg_config
from iidfusion.tasks.kg.fit import check_resume, fit_kg, graph_digest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CONFIG = REPO / "configs" / "kg" / "wn9img_text_cpu.yaml"
DATA = REPO.parent / "shared" / "data" / "wn9img"
PARTS = "parts.json"  # in a trial's partial folder: when each part started and last checkpointed (time.time())
# Bumped by a change of the library that is meant to change results: every cached trial is then stale.
RESULTS_VERSION = 1
BASE, IID = "OTKGE", "OTKGE + IID"
ARMS = (BASE, IID)
BOOTSTRAP = 10_000
REPORT = "verdict_kg"
# An IID trial's epoch against OTKGE's, before either arm has a finished trial to time (results/kg_wn9img.md,
# 20 epochs of each arm at rank 32: 573-593 s against 56-63 s): the time left weighs each trial by it.
IID_EPOCH_COST = 10.0
Params = tuple[tuple[str, float], ...]  # (dotted config key, value), in the grid's factor order


@dataclass(frozen=True)
class Grid:
    """The protocol's budgets: each arm's grid (the same size k for both), convergence, seeds."""

    alphas: tuple[float, ...] = (0.1, 0.01, 0.001)
    betas: tuple[float, ...] = (0.1, 0.01)
    lr_factors: tuple[float, ...] = (0.5, 1.0, 2.0)  # times the config's learning rate
    n3_weights: tuple[float, ...] = (5e-3, 1e-3)
    max_epochs: int = 200
    patience: int = 3  # validations without a better validation MRR
    seeds: int = 3

    def __post_init__(self) -> None:
        if len(self.alphas) * len(self.betas) != len(self.lr_factors) * len(self.n3_weights):
            raise ValueError("the arms' grids must have the same size k (compute-matched arms)")

    def trials(self, arm: str, config: KGExperimentConfig) -> list[Params]:
        """The k trials of ``arm`` in grid order (``config``: the experiment, for the base's learning rate)."""
        if arm == BASE:
            return [
                (("train.learning_rate", factor * config.train.learning_rate), ("objective.n3_weight", weight))
                for factor in self.lr_factors
                for weight in self.n3_weights
            ]
        return [(("objective.iid.alpha", a), ("objective.iid.beta", b)) for a in self.alphas for b in self.betas]


PROTOCOL = Grid()


def defaults(arm: str, config: KGExperimentConfig, compare: KGCompareConfig) -> Params:
    """The untuned trial of ``arm``: the config's own optimisation, or its ``compare`` section's IID weights."""
    if arm == BASE:
        return (
            ("train.learning_rate", config.train.learning_rate),
            ("objective.n3_weight", config.objective.n3_weight),
        )
    return (("objective.iid.alpha", compare.alpha), ("objective.iid.beta", compare.beta))


def trial_config(config: KGExperimentConfig, arm: str, seed: int, params: Params, grid: Grid) -> KGExperimentConfig:
    """The experiment one trial trains: ``params`` set, alpha = beta = 0 for OTKGE, trained to convergence."""
    values: dict[str, Any] = {"seed": seed, "train.max_epochs": grid.max_epochs, "train.patience": grid.patience}
    values["train.progress_bar"] = False
    if arm == BASE:
        values |= {"objective.iid.alpha": 0.0, "objective.iid.beta": 0.0}
    values |= dict(params)
    return merge_config(config, nest(values), "the verdict's trial")


def trial_key(digest: str, arm: str, seed: int, params: Params, config: KGExperimentConfig) -> str:
    """What a trial's result depends on: the data's content, the arm, the seed, its values and every
    setting (the data's path and the progress bar aside); exact floats (JSON keeps every bit).
    """
    settings = dataclasses.asdict(config)
    settings.pop("data")
    settings["train"].pop("progress_bar")
    payload = {
        "version": RESULTS_VERSION,
        "data": digest,
        "arm": arm,
        "seed": seed,
        "params": dict(params),
        "config": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Planned:
    """One trial of the plan: its key, arm, seed, values, place in its arm's grid (None: untuned
    only) and whether it is the arm's untuned trial.
    """

    key: str
    arm: str
    seed: int
    params: Params
    order: int | None
    default: bool

    @property
    def name(self) -> str:
        return f"{self.arm} {_shown(self.params)}"


def _shown(params: Params | Mapping[str, float]) -> str:
    labels = {
        "train.learning_rate": "lr",
        "objective.n3_weight": "N3",
        "objective.iid.alpha": "alpha",
        "objective.iid.beta": "beta",
    }
    return ", ".join(f"{labels.get(k, k)} {v:g}" for k, v in dict(params).items())


def plan(digest: str, config: KGExperimentConfig, compare: KGCompareConfig, seeds: int, grid: Grid) -> list[Planned]:
    """Every trial of seeds 0..seeds-1, seed by seed, OTKGE first, each arm's grid in order; the untuned
    trial joins its grid twin (same key) or follows the grid.
    """
    planned: list[Planned] = []
    for seed in range(seeds):
        for arm in ARMS:
            untuned = defaults(arm, config, compare)
            points = grid.trials(arm, config)
            for order, params in enumerate(points):
                key = trial_key(digest, arm, seed, params, trial_config(config, arm, seed, params, grid))
                planned.append(Planned(key, arm, seed, params, order, params == untuned))
            if untuned not in points:
                key = trial_key(digest, arm, seed, untuned, trial_config(config, arm, seed, untuned, grid))
                planned.append(Planned(key, arm, seed, untuned, None, True))
    return planned


# ---------------------------------------------------------------------------------------------
# The cache


class Cache:
    """The finished trials under ``WORK/trials`` and the plan ``WORK/plan.json``."""

    def __init__(self, work: Path) -> None:
        self.work, self.folder = work, work / "trials"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def partial(self, key: str) -> Path:
        """Where the unfinished trial ``key`` keeps its checkpoints."""
        return self.work / "partial" / key

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        return load_outcome(path, _checked_record) if path.is_file() else None

    def save(self, key: str, record: dict[str, Any]) -> None:
        save_outcome(self.path(key), record)

    def adopt(self, report: Path) -> int:
        """Copy into the cache the finished trials of a committed report's json (:func:`write_report`) that
        it lacks, so that a fresh machine continues the protocol instead of training them again; returns
        how many. A trial whose key the plan does not name (other data, settings or library version) is
        never read.
        """
        if not report.is_file():
            return 0
        adopted = 0
        for trial in json.loads(report.read_text()).get("trials", []):
            if trial.get("record") is not None and not self.path(trial["key"]).is_file():
                self.save(trial["key"], _checked_record(trial["record"]))
                adopted += 1
        return adopted

    def save_plan(self, payload: dict[str, Any]) -> None:
        save_outcome(self.work / "plan.json", payload)

    def load_plan(self) -> dict[str, Any] | None:
        path = self.work / "plan.json"
        return load_outcome(path, _checked_plan) if path.is_file() else None


def _checked_record(record: dict[str, Any]) -> dict[str, Any]:
    return _having(record, ("arm", "seed", "params", "valid_mrr", "test_mrr", "seconds"))


def _checked_plan(payload: dict[str, Any]) -> dict[str, Any]:
    return _having(payload, ("seeds_planned", "grid", "trials"))


def _having(payload: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """``payload``, or a KeyError naming a field it lacks (a damaged file: :func:`load_outcome` says so)."""
    missing = [f for f in fields if f not in payload]
    if missing:
        raise KeyError(missing[0])
    return payload


def _float(value: float | None) -> float:
    """A recorded number; a diverged trial's metrics are null in JSON."""
    return math.nan if value is None else float(value)


def resume_point(
    kg: KnowledgeGraph, features: Mapping[str, Tensor], config: KGExperimentConfig, folder: Path
) -> Path | None:
    """The last checkpoint in a trial's ``folder`` to continue from, or None (none yet, or one that a kill while
    it was written left unreadable: the folder is then cleared, and the trial starts over).
    """
    last = folder / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    try:
        check_resume(last, config, graph_digest(kg, features))
    except ValueError:
        shutil.rmtree(folder)
        return None
    return last


def train_trial(
    kg: KnowledgeGraph,
    features: Mapping[str, Tensor],
    cache: Cache,
    job: tuple[Planned, KGExperimentConfig],
    commit: str | None = None,
) -> dict[str, Any]:
    """Train one trial and keep it in the cache at once (a worker process saves its own), with ``commit``, the
    code's commit when the run started (default: at the trial's end).

    A trial checkpoints every epoch in ``WORK/partial/<key>`` (no logs), and one that was cut off continues
    from there, bit for bit as if it had not been (:func:`~iidfusion.tasks.kg.fit.fit_kg`'s resume;
    ``tests/tasks/kg/test_module.py``): an IID trial trains for an hour or more, and a machine that is
    handed back mid-trial should cost the epochs since its last checkpoint, not the trial. Its ``seconds``
    are those of every part up to its last checkpoint; ``parts`` says how many there were.
    """
    trial, config = job
    folder = cache.partial(trial.key)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, checkpoints=True, loggers=()))
    resume = resume_point(kg, features, config, folder)
    parts: list[dict[str, float | None]] = []
    if resume is not None and (folder / PARTS).is_file():
        parts = load_outcome(folder / PARTS, lambda payload: list(payload["parts"]))
        parts[-1]["checkpointed"] = resume.stat().st_mtime  # the part cut off counts up to its last checkpoint
    earlier = sum(float(part["checkpointed"] or 0.0) - float(part["started"] or 0.0) for part in parts)
    parts.append({"started": time.time(), "checkpointed": None})
    save_outcome(folder / PARTS, {"parts": parts})
    record: dict[str, Any] = {"version": RESULTS_VERSION, "arm": trial.arm, "seed": trial.seed}
    record["params"] = dict(trial.params)
    start = time.perf_counter()
    try:
        fit = fit_kg(kg, features, config, run_dir=folder, resume=resume)
    except FloatingPointError as error:  # diverged: kept, ranked last by the selection
        record |= {"diverged": str(error), "valid_mrr": None, "test_mrr": None}
        record["seconds"] = earlier + time.perf_counter() - start
    else:
        record |= {
            "valid_mrr": fit.valid.mrr,
            "test_mrr": fit.test.mrr,
            "valid": fit.valid.as_dict(),
            "test": fit.test.as_dict(),
            "best_epoch": fit.best_epoch,
            "epochs": len(fit.history),
            "seconds": earlier + fit.seconds,
            "device": fit.device,
        }
    record["parts"] = len(parts)
    record["commit"] = commit or git_state()[0]
    cache.save(trial.key, record)
    shutil.rmtree(folder)
    return record


def trial_line(trial: Planned, record: Mapping[str, Any]) -> str:
    """The line a finished trial prints: what it scored, how long it trained and took."""
    head = f"seed {trial.seed} {trial.name}"
    if "diverged" in record:
        return f"{head}: diverged after {record['seconds']:.0f} s ({record['diverged']})"
    return (
        f"{head}: valid MRR {record['valid_mrr']:.4f}, test MRR {record['test_mrr']:.4f}, best epoch "
        f"{record['best_epoch']} of {record['epochs']}, {record['seconds']:.0f} s"
    )


def run(
    kg: KnowledgeGraph,
    features: Mapping[str, Tensor],
    config: KGExperimentConfig,
    compare: KGCompareConfig,
    work: Path,
    *,
    seeds: int,
    grid: Grid = PROTOCOL,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> int:
    """Train the trials of seeds 0..seeds-1 the cache lacks (the plan covers the protocol's seeds
    too, so an interim report counts them); returns how many were trained.
    """
    digest = graph_digest(kg, features)
    planned = plan(digest, config, compare, max(seeds, grid.seeds), grid)
    cache = Cache(work)
    cache.save_plan(
        {
            "version": RESULTS_VERSION,
            "data": digest,
            "grid": dataclasses.asdict(grid),
            "seeds_planned": max(seeds, grid.seeds),
            "config": dataclasses.asdict(config),
            "trials": [dataclasses.asdict(t) for t in planned],
        }
    )
    # Seed by seed, OTKGE (the cheaper arm) first, and each arm's untuned trial before the rest of its grid: the
    # order changes no result, and an interim report has a seed's untuned comparison after two of its trials.
    missing = sorted(
        (t for t in planned if t.seed < seeds and not cache.path(t.key).is_file()),
        key=lambda t: (t.seed, ARMS.index(t.arm), not t.default),
    )
    for t in planned:  # a trial killed after it was kept but before its checkpoints were removed
        if cache.path(t.key).is_file() and cache.partial(t.key).is_dir():
            shutil.rmtree(cache.partial(t.key))
    cached = sum(cache.path(t.key).is_file() for t in planned)
    log(f"{cached} of {len(planned)} planned trials cached; training {len(missing)} (seeds 0..{seeds - 1})")

    expected = trial_seconds([r for t in planned if (r := cache.get(t.key)) is not None])
    costs = [expected(t.arm) if expected else (IID_EPOCH_COST if t.arm == IID else 1.0) for t in missing]
    started = time.perf_counter()

    def done(count: int, job: tuple[Planned, KGExperimentConfig], record: dict[str, Any]) -> None:
        left = time_left(costs, count, time.perf_counter() - started)
        log(f"[{count}/{len(missing)}] {trial_line(job[0], record)}; ~{left / 3600:.1f} h left")

    jobs_of = [(t, trial_config(config, t.arm, t.seed, t.params, grid)) for t in missing]
    run_tasks(jobs_of, jobs, functools.partial(train_trial, kg, features, cache, commit=git_state()[0]), done)
    return len(missing)


def trial_seconds(records: Sequence[Mapping[str, Any]]) -> Callable[[str], float] | None:
    """An arm's expected seconds a trial: the mean of its finished ``records``, else the other arm's mean scaled
    by :data:`IID_EPOCH_COST`; None before any trial has finished.
    """
    means = {
        arm: float(np.mean(seconds))
        for arm in ARMS
        if (seconds := [_float(r["seconds"]) for r in records if r["arm"] == arm])
    }
    if not means:
        return None
    scale = {BASE: 1.0, IID: IID_EPOCH_COST}

    def expected(arm: str) -> float:
        if arm in means:
            return means[arm]
        known = next(iter(means))
        return means[known] * scale[arm] / scale[known]

    return expected


# ---------------------------------------------------------------------------------------------
# Selection and analysis


def chosen(records: Sequence[Mapping[str, Any]]) -> int:
    """The index (grid order) of the trial of best validation MRR; ties: the earlier; diverged: last."""

    def rank(k: int) -> tuple[float, int]:
        mrr = _float(records[k]["valid_mrr"])
        return (-mrr if math.isfinite(mrr) else math.inf, k)

    return min(range(len(records)), key=rank)


def verdict_of(seeds: int, mean: float, low: float, high: float) -> str:
    """docs/protocol.md, "What counts as IID helps", for one data set: the CI of the mean paired
    difference excludes 0 on the side of the mean, or the effect is not detectable.
    """
    if seeds == 0:
        return "not run yet"
    if mean > 0 and low > 0:
        return "helps"
    if mean < 0 and high < 0:
        return "hurts"
    return "no detectable effect"


def compare_arms(pairs: Sequence[tuple[int, Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """The paired analysis of ``pairs`` = (seed, OTKGE's selected trial, OTKGE + IID's)."""
    base = [_float(b["test_mrr"]) for _, b, _ in pairs]
    iid = [_float(i["test_mrr"]) for _, _, i in pairs]
    differences = np.subtract(iid, base)
    mean = float(differences.mean()) if len(pairs) else math.nan
    low, high = paired_bootstrap_ci(iid, base, resamples=BOOTSTRAP, seed=0) if pairs else (math.nan, math.nan)
    return {
        "seeds": len(pairs),
        "base_mrr": float(np.mean(base)) if pairs else math.nan,
        "iid_mrr": float(np.mean(iid)) if pairs else math.nan,
        "difference": mean,
        "ci": [low, high],
        "verdict": verdict_of(len(pairs), mean, low, high),
        "per_seed": [
            {"seed": seed, BASE: dict(b), IID: dict(i), "difference": float(d)}
            for (seed, b, i), d in zip(pairs, differences, strict=True)
        ],
    }


def analyse(plan_payload: Mapping[str, Any] | None, cache: Cache) -> dict[str, Any]:
    """Both protocols from the cache: tuned (the selected grid trial) and untuned (the config's own)."""
    if plan_payload is None:
        plan_payload = {"seeds_planned": PROTOCOL.seeds, "grid": dataclasses.asdict(PROTOCOL), "trials": []}
    trials = [Planned(**{**t, "params": tuple(tuple(p) for p in t["params"])}) for t in plan_payload["trials"]]
    records = {t.key: cache.get(t.key) for t in trials}
    tuned: list[tuple[int, Mapping[str, Any], Mapping[str, Any]]] = []
    untuned: list[tuple[int, Mapping[str, Any], Mapping[str, Any]]] = []
    for seed in range(plan_payload["seeds_planned"]):
        grids = {
            arm: sorted(
                (t for t in trials if t.seed == seed and t.arm == arm and t.order is not None),
                key=lambda t: t.order or 0,
            )
            for arm in ARMS
        }
        if all(grids[arm] and all(records[t.key] is not None for t in grids[arm]) for arm in ARMS):
            picks = {arm: [records[t.key] for t in grids[arm]] for arm in ARMS}
            tuned.append((seed, *(picks[arm][chosen(picks[arm])] for arm in ARMS)))
        own = [records.get(t.key) for t in trials if t.seed == seed and t.default]
        if len(own) == len(ARMS) and all(r is not None for r in own):
            untuned.append((seed, *sorted(own, key=lambda r: ARMS.index(r["arm"]))))
    done = {key: r for key, r in records.items() if r is not None}
    expected = trial_seconds(list(done.values()))
    pending = [t for t in trials if records[t.key] is None]
    return {
        "seeds_planned": plan_payload["seeds_planned"],
        "grid": plan_payload["grid"],
        "trials_planned": len(records),
        "trials_done": len(done),
        "hours": sum(r["seconds"] for r in done.values()) / 3600,
        "hours_left": sum(expected(t.arm) for t in pending) / 3600 if expected else None,
        "tuned": compare_arms(tuned),
        "untuned": compare_arms(untuned),
        "trials": [{**dataclasses.asdict(t), "record": records[t.key]} for t in trials],
    }


# ---------------------------------------------------------------------------------------------
# Report


def status(stats: Mapping[str, Any]) -> str:
    """The state of the protocol: 'not run yet', 'interim: N of 3 seeds' or 'complete: 3 of 3 seeds' (a seed
    counts when both arms finished their grids).
    """
    done, planned = stats["tuned"]["seeds"], stats["seeds_planned"]
    if stats["trials_done"] == 0:
        return "not run yet"
    return f"{'complete' if done >= planned else 'interim'}: {done} of {planned} seeds"


def _mrr(value: float | None) -> str:
    return fmt_number(_float(value), ".4f")


def _difference(entry: Mapping[str, Any]) -> str:
    low, high = entry["ci"]
    return f"{fmt_number(entry['difference'], '+.4f')} [{fmt_number(low, '+.4f')}, {fmt_number(high, '+.4f')}]"


def render(stats: Mapping[str, Any]) -> str:
    """The report for people (numbers rounded here, at writing), of the grid the trials ran with."""
    grid = Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in stats["grid"].items()})
    state = status(stats)
    lines = [
        "# Does IID help on a knowledge graph? WN9-IMG, OTKGE against OTKGE + IID",
        "",
        "The knowledge-graph part of [docs/protocol.md](../../docs/protocol.md), written before these runs: "
        f"`configs/kg/wn9img_text_cpu.yaml` (text modalities, no images), each arm with k = "
        f"{len(grid.alphas) * len(grid.betas)} trials per seed, every trial trained to convergence (at most "
        f"{grid.max_epochs} epochs, stopped after {grid.patience} validations without a better validation MRR), "
        "the trial of the best validation MRR kept (ties: the earlier in grid order), its test MRR read once. "
        f"OTKGE + IID: alpha in {_values(grid.alphas)} x beta in {_values(grid.betas)}; OTKGE: the learning rate at "
        f"{_values(grid.lr_factors)} x the config's, N3 weight in {_values(grid.n3_weights)}. Filtered MRR, both "
        "directions.",
        "",
        f"**Status: {state}.**"
        + (
            " Nothing below is a result yet."
            if state == "not run yet"
            else ""
            if state.startswith("complete")
            else " The verdict below is that of the seeds done so far and will change as the rest runs."
        ),
        "",
        "## The verdict",
        "",
        markdown_table(
            ["protocol", "seeds", f"{BASE} test MRR", f"{IID} test MRR", "IID - OTKGE [95 % CI]", "verdict"],
            [
                [
                    name,
                    str(stats[protocol]["seeds"]),
                    _mrr(stats[protocol]["base_mrr"]),
                    _mrr(stats[protocol]["iid_mrr"]),
                    _difference(stats[protocol]),
                    f"**{stats[protocol]['verdict']}**",
                ]
                for protocol, name in (("tuned", "tuned (primary)"), ("untuned", "untuned (config's settings)"))
            ],
        ),
        "",
        "Mean over seeds of the paired difference of test MRR, with a 95 % percentile bootstrap CI over seeds "
        f"({BOOTSTRAP:,} resamples, seed 0). **helps** / **hurts**: a CI that excludes 0 on that side; otherwise "
        "no detectable effect, and the CI bounds what could have been missed. One data set: it does not enter the "
        "classification part's across-set test.",
        "",
    ]
    for protocol, title in (("tuned", "tuned, the selected trials"), ("untuned", "untuned")):
        lines += [f"## Per seed ({title})", ""]
        rows = [
            [
                str(s["seed"]),
                _shown(s[BASE]["params"]),
                _mrr(s[BASE]["valid_mrr"]),
                _mrr(s[BASE]["test_mrr"]),
                _shown(s[IID]["params"]),
                _mrr(s[IID]["valid_mrr"]),
                _mrr(s[IID]["test_mrr"]),
                fmt_number(s["difference"], "+.4f"),
            ]
            for s in stats[protocol]["per_seed"]
        ]
        headers = ["seed", BASE, "valid MRR", "test MRR", IID, "valid MRR", "test MRR", "difference"]
        lines += [markdown_table(headers, rows, numeric_from=2) if rows else "No seed has both arms yet.", ""]
    trials = [t for t in stats["trials"] if t["record"] is not None]
    lines += [
        "## Trials",
        "",
        f"{stats['trials_done']} of {stats['trials_planned']} planned trials done, "
        f"{stats['hours']:.1f} h of training (one torch thread a trial)."
        + (
            f" Left: about {stats['hours_left']:.1f} h of training at each arm's mean time per trial so far "
            f"(about {stats['hours_left'] / 2:.1f} h of wall time at `--jobs 2`)."
            if stats.get("hours_left")
            else ""
        )
        if stats["trials_planned"]
        else "No trial has run.",
        "",
    ]
    if trials:
        lines += [
            markdown_table(
                ["seed", "arm", "values", "best epoch", "epochs", "valid MRR", "test MRR", "seconds"],
                [
                    [
                        str(t["seed"]),
                        t["arm"],
                        _shown(t["record"]["params"]),
                        str(t["record"].get("best_epoch", "diverged")),
                        str(t["record"].get("epochs", "")),
                        _mrr(t["record"]["valid_mrr"]),
                        _mrr(t["record"]["test_mrr"]),
                        f"{_float(t['record']['seconds']):.0f}",
                    ]
                    for t in sorted(trials, key=lambda t: (t["seed"], ARMS.index(t["arm"]), _order_of(t)))
                ],
                numeric_from=3,
            ),
            "",
        ]
    lines += [
        "Made by `python benchmarks/verdict_kg.py run` (resumable; `report` rewrites these files from its cache).",
        "",
    ]
    return "\n".join(lines)


def _values(values: Sequence[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"


def _order_of(entry: Mapping[str, Any]) -> int:
    return -1 if entry["order"] is None else entry["order"]


def write_report(work: Path, out: Path) -> str:
    """``verdict_kg.md`` (rounded) and ``verdict_kg.json`` (exact) in ``out`` from the cache in ``work`` alone."""
    cache = Cache(work)
    stats = analyse(cache.load_plan(), cache)
    report = render(stats)
    payload = {"protocol": "docs/protocol.md", "status": status(stats), **stats}
    write_files(out, {f"{REPORT}.md": report, f"{REPORT}.json": json_text(payload)})
    return report


# ---------------------------------------------------------------------------------------------
# Command


def load_data(
    folder: Path, config_path: Path, cache_dir: Path
) -> tuple[KnowledgeGraph, dict[str, Tensor], KGExperimentConfig, KGCompareConfig]:
    """The graph of ``folder``, its modality features (the config's sources, else the folder's own) and
    the config with its ``compare`` section.
    """
    config, compare = load_kg_config(config_path)
    kg = load_triples_folder(folder, name=folder.name, vocabulary=config.vocabulary)
    sources = config.features or default_feature_sources(folder)
    config = dataclasses.replace(config, data=str(folder), features=sources)
    return kg, build_modality_features(kg, sources, cache_dir=cache_dir, base_dir=folder), config, compare


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "action", choices=("run", "report"), help="run: train what is missing, then report; report: from the cache"
    )
    parser.add_argument(
        "--work", type=Path, default=REPO / "runs" / "verdict_kg", help="cache (default runs/verdict_kg)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--data", type=Path, default=DATA, help="a KG folder in WN9-IMG's layout (default ../shared/data/wn9img)"
    )
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="KG config (default configs/kg/wn9img_text_cpu.yaml)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=PROTOCOL.seeds,
        help=f"train seeds 0..N-1 (default {PROTOCOL.seeds}, the protocol's)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="trials at once (default 1)")
    args = parser.parse_args(argv)
    if args.action == "run":
        if not args.data.is_dir():
            print(f"verdict_kg: --data: no WN9-IMG folder at {args.data}", file=sys.stderr)
            return 2
        if args.seeds < 1 or args.jobs < 1:
            print(
                f"verdict_kg: --seeds and --jobs must be at least 1, got {args.seeds} and {args.jobs}", file=sys.stderr
            )
            return 2
        try:
            kg, features, config, compare = load_data(args.data, args.config, args.work / "features")
        except (ValueError, FileNotFoundError) as error:
            print(f"verdict_kg: {error}", file=sys.stderr)
            return 2
        print(kg.summary(), flush=True)
        report = args.out / f"{REPORT}.json"
        try:
            adopted = Cache(args.work).adopt(report)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            print(f"verdict_kg: {report}: not a report of this script ({error!r}); pass another --out", file=sys.stderr)
            return 2
        if adopted:
            print(f"{adopted} finished trials taken from {report}", flush=True)
        run(
            kg,
            features,
            config,
            compare,
            args.work,
            seeds=args.seeds,
            grid=PROTOCOL,
            jobs=args.jobs,
            log=functools.partial(print, flush=True),
        )
    report = write_report(args.work, args.out)
    print(report.split("## Per seed")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
