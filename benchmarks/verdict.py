"""Does IID help? The protocol of docs/protocol.md, run from one resumable command.

    python benchmarks/verdict.py run --jobs 2 --threads 1     # train what the cache lacks, check, write
    python benchmarks/verdict.py report [--check N]           # from the cache alone (N cells re-trained first)

Every fit of the protocol is one *cell*: (data set, arm, seed, hyperparameters). A finished cell
is kept at once under ``WORK/cells/<key>.json`` with the commit that made it, so an interrupted
run loses only the fits in progress, and a run stopped after some seeds continues from there
(the protocol costs more than a working day on a 2-core machine: it is run in parts). The key is
what the result depends on (the data's content, the method, the seed, the options the method
reads, :data:`RESULTS_VERSION`), not the code's files, so moving or editing code that leaves the
numbers as they were keeps the cache. That is checked, not assumed: every ``run`` re-trains a
seeded sample of cached cells with the code at hand and compares them bit for bit
(:func:`reproduction_check`); the report states the outcome, and a cell that does not reproduce
stops the run. Every report also writes the finished cells as one archive,
``verdict_cells.jsonl`` beside it: the raw record of every number, committed with the report,
from which a ``run`` or ``report`` on a fresh machine fills its cache first.

The cells run in waves, seed by seed over every data set, so an interim report covers every data
set, the primary comparisons first: wave 1 holds the tuning grids of the bases and of IID; wave 2
the ablations and the CE control at the alpha and beta IID chose (they need wave 1's choice);
wave 3 the grid of the ``vib`` reading. The order changes no result.
Selection reads validation only (best validation accuracy, then lower validation loss, then grid
order); test Avg Acc (the mean test accuracy over the noise levels) is read once, after it.
The analysis (:func:`analyse`) has the data set as its unit: per set, the paired mean difference
over seeds with a bootstrap CI; across sets, Wilcoxon and sign tests over the per-set means with
Holm over each family, and a two-level bootstrap CI of the pooled mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iidfusion.data.features.registry import load_dataset
from iidfusion.engine.results import csv_text, fmt_number, json_text, markdown_table, write_files
from iidfusion.engine.runs import load_outcome, run_tasks, save_outcome, time_left
from iidfusion.engine.stats import holm, paired_bootstrap_ci, two_level_bootstrap_ci, unit_level_test
from iidfusion.tasks.classification.compare import RunOutcome, Task, execute, start_worker
from iidfusion.tasks.classification.config import ExperimentConfig, load_config
from iidfusion.tasks.classification.departures import departures_sentence
from iidfusion.tasks.classification.run_key import code_fingerprint, effective_options

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
# Bumped by a change of the library that is meant to change results: every cached cell is then stale.
RESULTS_VERSION = 1

STRATEGIES = ("static", "qmf", "pdf")
LETTER = {"static": "L", "qmf": "Q", "pdf": "P"}
LATE = {"static": "lf-static", "qmf": "qmf", "pdf": "pdf"}
# The grids of docs/protocol.md, "Budgets": k = 6 trials for every tuned arm.
LR_FACTORS = (0.5, 1.0, 2.0)  # times the data set's configured learning rate
WEIGHT_DECAYS = (1e-4, 1e-2)
ALPHAS = (1.0, 0.1, 0.01)
BETAS = (1.0, 0.1)
MIN_VALIDATION = 100  # fewer validation samples under 70/10/20: the set is split 60/20/20
BOOTSTRAP = 10_000
# Every finished cell, kept beside the report: the raw record of its numbers, and what a fresh machine resumes from.
ARCHIVE = "verdict_cells.jsonl"


@dataclass(frozen=True)
class Arm:
    """One arm of the protocol. ``grid``: ``base`` (lr x weight decay) or ``iid`` (alpha x beta),
    tuned on validation; ``follow``: the IID options (alpha, beta) it takes from IID-X's choice.
    """

    name: str
    method: str
    strategy: str
    role: str
    fixed: tuple[tuple[str, Any], ...] = ()
    grid: str = ""
    follow: tuple[str, ...] = ()


def protocol_arms() -> list[Arm]:
    """The arms of docs/protocol.md, "Arms", for each weight strategy."""
    arms = []
    for strategy in STRATEGIES:
        short, letter = {"static": "static", "qmf": "qmf", "pdf": "pdf"}[strategy], LETTER[strategy]
        iid = f"iid-{letter.lower()}"
        arms += [
            Arm(f"LF-{short}", LATE[strategy], strategy, "base", grid="base"),
            Arm(f"IF-{short}", f"if-{short}", strategy, "base", grid="base"),
            Arm(f"IID-{letter}", iid, strategy, "iid", grid="iid"),
            Arm(f"IID-{letter} vib", iid, strategy, "reading", (("loss.variant", "vib"),), grid="iid"),
            Arm(f"IID-{letter} w/o I", f"{iid}-no-ic", strategy, "ablation", follow=("loss.beta",)),
            Arm(f"IID-{letter} w/o D", f"{iid}-no-dc", strategy, "ablation", follow=("loss.alpha",)),
            Arm(
                f"IID-{letter} CE control",
                f"{iid}-no-dc",
                strategy,
                "control",
                (("loss.variant", "ce-only"),),
                follow=("loss.alpha",),
            ),
        ]
    return arms


@dataclass(frozen=True)
class VerdictSet:
    """A data set of the protocol: its name in tables, its data, its configuration and seeds."""

    name: str
    config: ExperimentConfig
    seeds: int
    note: str = ""
    val_size: int = 0  # validation samples of seed 0's split: the smallest set is left out as a sensitivity check


@dataclass(frozen=True)
class Cell:
    """One fit: ``params`` are the arm's dotted options on top of the set's configuration."""

    dataset: str
    arm: Arm
    seed: int
    params: tuple[tuple[str, Any], ...]

    def task(self, config: ExperimentConfig) -> Task:
        return Task(
            load_config(overrides=dict(self.arm.fixed + self.params), base=config),
            self.arm.method,
            self.seed,
            label=self.arm.name,
        )


def data_digest(data: str) -> str:
    """The data's content: a bundled name as it is (its bytes are the package's), a file by its bytes,
    a feature cache by the hashes its manifest records of its files.
    """
    path = Path(data)
    if path.is_dir():
        manifest = json.loads((path / "manifest.json").read_text())
        return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return f"bundled:{data}"


def cell_key(task: Task, digest: str) -> str:
    """What a cell's result depends on (module docstring): not the code's files, and of the options the
    method reads only those that differ from the library's defaults. An option added later with a default
    that keeps the old behaviour thus keeps every key; changing a default is a change meant to change
    results, which bumps :data:`RESULTS_VERSION`.
    """
    options = _departing(effective_options(task.config, task.method), effective_options(load_config(), task.method))
    options.pop("data", None)
    payload = {"version": RESULTS_VERSION, "data": digest, "method": task.method, "seed": task.seed, "options": options}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _departing(options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of the nested ``options`` that differ from ``defaults``."""
    kept = {}
    for key, value in options.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            value = _departing(value, default)
            if value:
                kept[key] = value
        elif value != default or key not in defaults:
            kept[key] = value
    return kept


def trial_params(arm: Arm, config: ExperimentConfig) -> list[tuple[tuple[str, Any], ...]]:
    """The k = 6 trials of a tuned arm, in grid order."""
    if arm.grid == "base":
        return [
            (("optim.lr", factor * config.optim.lr), ("optim.weight_decay", decay))
            for factor in LR_FACTORS
            for decay in WEIGHT_DECAYS
        ]
    return [(("loss.alpha", alpha), ("loss.beta", beta)) for alpha in ALPHAS for beta in BETAS]


# ---------------------------------------------------------------------------------------------
# Data sets


def split_rule(config: ExperimentConfig) -> tuple[ExperimentConfig, str, int]:
    """70/10/20, or 60/20/20 where 70/10/20 leaves fewer than MIN_VALIDATION validation samples
    (docs/protocol.md, "Data sets and seeds"); data with splits of its own keeps them. Returns the
    configuration, the splits' sizes as text and the number of validation samples.
    """
    first = load_dataset(config.data, seed=0, views=config.views, labels=config.labels or None)
    if len(first.val) >= MIN_VALIDATION or Path(config.data).is_dir():
        return config, f"{len(first.train)}/{len(first.val)}/{len(first.test)}", len(first.val)
    wider = dataclasses.replace(config, val_fraction=0.2, test_fraction=0.2)
    split = load_dataset(config.data, seed=0, val_fraction=0.2, test_fraction=0.2)
    sizes = f"{len(split.train)}/{len(split.val)}/{len(split.test)}"
    return wider, f"{sizes} (60/20/20: 70/10/20 gave {len(first.val)} val)", len(split.val)


def verdict_set(name: str, config: ExperimentConfig, seeds: int, splits: str = "") -> VerdictSet:
    """``config``'s data as a set of the protocol, split by :func:`split_rule`; ``splits`` names the
    splits that the data brings with it.
    """
    config, sizes, val_size = split_rule(config)
    return VerdictSet(name, config, seeds, f"{splits}: {sizes}" if splits else sizes, val_size)


def smallest_set(sets: Sequence[VerdictSet]) -> str:
    """The set with the fewest validation samples (the first of a tie), which the sensitivity check
    leaves out (docs/protocol.md, "Data sets and seeds"); "" with fewer than three sets, where no
    test would remain.
    """
    return min(sets, key=lambda s: s.val_size).name if len(sets) >= 3 else ""


def common_config(threads: int, path: Path | None = None, data: str = "handwritten") -> ExperimentConfig:
    """A set's configuration with nothing kept on disk and nothing monitored (none of it changes a result)."""
    return load_config(
        path,
        overrides={
            "data": data,
            "train.threads": threads,
            "train.checkpoints": False,
            "train.loggers": [],
            "train.progress_bar": False,
            "train.monitor_distances": False,
            "eval.noise": [0, 5, 10],
        },
    )


def extract_features(kind: str, work: Path, log: Callable[[str], None]) -> Path:
    """MVSA-Single's or HFM's frozen features (as benchmarks/real_data.py), extracted once into ``work``."""
    out = work / "features" / kind
    target = out if kind == "mvsa_single" else out / "features.npz"
    if (out / "manifest.json").is_file():
        return target
    argv = {
        "mvsa_single": [
            "--data-format",
            "mmbt",
            "--root",
            str(SHARED / "mvsa_single"),
            "--text-encoder",
            "minilm",
            "--image-encoder",
            "efficientnet-lite0",
            "--noise",
            "0,5,10",
            "--batch-size",
            "32",
        ],
        "hfm": [
            "--data-format",
            "hfm",
            "--root",
            str(SHARED / "hfm"),
            "--text-encoder",
            "minilm",
            "--batch-size",
            "64",
        ],
    }[kind]
    log(f"extracting {kind} features into {out} (once)")
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "iidfusion",
            "extract",
            *argv,
            "--out",
            str(out),
            "--accelerator",
            "cpu",
            "--no-progress-bar",
        ],
        check=True,
    )
    log(f"extracted {kind} in {time.perf_counter() - started:.0f} s")
    return target


def protocol_sets(args: argparse.Namespace, log: Callable[[str], None]) -> list[VerdictSet]:
    """The data sets of docs/protocol.md, or those of ``--datasets`` (names, files or feature folders)."""
    sets: list[VerdictSet] = []
    if args.datasets:
        for data in args.datasets.split(","):
            name = Path(data).stem if Path(data).exists() else data
            sets.append(verdict_set(name, common_config(args.threads, data=data), args.seeds or 10))
        return sets
    for name in ("handwritten", "synthetic", "synthetic-many-views"):
        sets.append(verdict_set(name, common_config(args.threads, data=name), 10))
    for name in ("landuse21", "100leaves", "msrcv1", "bbcsport", "reuters1200", "wikipedia", "hdigit"):
        data = str(SHARED / "multiview" / f"{name}.mat")
        sets.append(verdict_set(name, common_config(args.threads, data=data), 10))
    work = Path(args.work)
    mvsa = extract_features("mvsa_single", work, log)
    config = load_config(
        overrides={"data": str(mvsa)}, base=common_config(args.threads, REPO / "configs" / "vl" / "mvsa_single.yaml")
    )
    sets.append(verdict_set("mvsa_single", config, 5, "QMF's train/dev/test"))
    hfm = extract_features("hfm", work, log)
    config = load_config(
        overrides={"data": str(hfm)}, base=common_config(args.threads, REPO / "configs" / "hfm_attributes.yaml")
    )
    sets.append(verdict_set("hfm", config, 5, "the published train/valid/test"))
    if args.seeds:
        sets = [dataclasses.replace(s, seeds=min(s.seeds, args.seeds)) for s in sets]
    return sets


def fit_cost(s: VerdictSet) -> int:
    """A fit's cost, roughly: training samples x views x feature width of the model."""
    splits = load_dataset(
        s.config.data,
        seed=0,
        views=s.config.views,
        labels=s.config.labels or None,
        val_fraction=s.config.val_fraction,
        test_fraction=s.config.test_fraction,
    )
    return len(splits.train) * len(splits.view_dims) * s.config.model.width


# ---------------------------------------------------------------------------------------------
# Cells, waves and the cache


class Cache:
    """The finished cells under ``WORK/cells``, each with the commit that made it."""

    def __init__(self, work: Path, sets: Sequence[VerdictSet]) -> None:
        self.folder = work / "cells"
        self.configs = {s.name: s.config for s in sets}
        self.digests = {s.name: data_digest(s.config.data) for s in sets}
        self._keys: dict[Cell, str] = {}

    def key(self, cell: Cell) -> str:
        if cell not in self._keys:
            self._keys[cell] = cell_key(cell.task(self.configs[cell.dataset]), self.digests[cell.dataset])
        return self._keys[cell]

    def path(self, cell: Cell) -> Path:
        return self.folder / f"{self.key(cell)}.json"

    def get(self, cell: Cell) -> RunOutcome | None:
        path = self.path(cell)
        return load_outcome(path, lambda p: RunOutcome.from_json(p["outcome"])) if path.is_file() else None

    def record(self, cell: Cell) -> dict[str, Any]:
        return json.loads(self.path(cell).read_text())

    def records(self) -> list[dict[str, Any]]:
        """Every finished cell's record, whether or not the protocol at hand plans it."""
        return [json.loads(path.read_text()) for path in sorted(self.folder.glob("*.json"))]

    def adopt(self, archive: Path) -> int:
        """Copy into the cache the cells of a committed archive (:meth:`export`) that it lacks: a fresh
        machine continues the protocol instead of training it again (the reproduction check samples them too).
        """
        if not archive.is_file():
            return 0
        adopted = 0
        for line in archive.read_text().splitlines():
            record = json.loads(line)
            path = self.folder / f"{record.pop('key')}.json"
            if not path.is_file():
                save_outcome(path, record)
                adopted += 1
        return adopted

    def export(self, cells: Sequence[Cell]) -> str:
        """The finished ``cells`` as JSON lines, one per key, in key order: the archive :meth:`adopt` reads."""
        keys = sorted({self.key(c) for c in cells if self.path(c).is_file()})
        return "".join(
            json.dumps({"key": key, **json.loads((self.folder / f"{key}.json").read_text())}, sort_keys=True) + "\n"
            for key in keys
        )

    def save(self, cell: Cell, outcome: RunOutcome, commit: str) -> None:
        save_outcome(
            self.path(cell),
            {
                "dataset": cell.dataset,
                "arm": cell.arm.name,
                "method": cell.arm.method,
                "seed": cell.seed,
                "params": dict(cell.arm.fixed + cell.params),
                "commit": commit,
                "code": code_fingerprint(),
                "outcome": outcome.to_json(),
            },
        )


def tuned_cells(
    sets: Sequence[VerdictSet], arms: Sequence[Arm], seed: int, roles: Sequence[str] = ("base", "iid", "reading")
) -> list[Cell]:
    """Every trial of every tuned arm of ``roles`` (the defaults are among them) for ``seed``."""
    return [
        Cell(s.name, arm, seed, params)
        for s in sets
        if seed < s.seeds
        for arm in arms
        if arm.grid and arm.role in roles
        for params in trial_params(arm, s.config)
    ]


def planned_cells(sets: Sequence[VerdictSet], arms: Sequence[Arm], cache: Cache) -> list[Cell]:
    """Every cell of the protocol that can be named now (a follower's tuned cell once IID-X has chosen)."""
    return [
        c
        for seed in range(max(s.seeds for s in sets))
        for c in tuned_cells(sets, arms, seed) + follower_cells(sets, arms, seed, cache)
    ]


def chosen(cells: Sequence[Cell], cache: Cache) -> Cell | None:
    """The trial with the best validation accuracy, then the lower validation loss, then the first in grid order;
    None until every trial has run.
    """
    outcomes = [cache.get(cell) for cell in cells]
    if any(outcome is None for outcome in outcomes):
        return None
    order = sorted(range(len(cells)), key=lambda k: (-outcomes[k].val_acc, _loss(outcomes[k].val_loss), k))
    return cells[order[0]]


def _loss(value: float) -> float:
    return math.inf if math.isnan(value) else value


def iid_arm(arms: Sequence[Arm], strategy: str) -> Arm:
    return next(a for a in arms if a.role == "iid" and a.strategy == strategy)


def follower_cells(sets: Sequence[VerdictSet], arms: Sequence[Arm], seed: int, cache: Cache) -> list[Cell]:
    """Wave 2 of ``seed``: the ablations and the control at IID-X's choice (tuned protocol) and at the
    defaults (untuned protocol).
    """
    cells = []
    for s in sets:
        if seed >= s.seeds:
            continue
        for arm in arms:
            if not arm.follow:
                continue
            cells.append(Cell(s.name, arm, seed, ()))
            iid = iid_arm(arms, arm.strategy)
            choice = chosen([Cell(s.name, iid, seed, p) for p in trial_params(iid, s.config)], cache)
            if choice is not None:
                taken = dict(choice.params)
                cells.append(Cell(s.name, arm, seed, tuple((k, taken[k]) for k in arm.follow)))
    return cells


def run_cells(
    cells: Sequence[Cell], cache: Cache, jobs: int, commit: str, log: Callable[[str], None], wave: str
) -> None:
    """Train the cells the cache lacks (one fit per distinct key), keeping each as it finishes."""
    pending: dict[str, Cell] = {}
    for cell in cells:
        if not cache.path(cell).is_file():
            pending.setdefault(cache.key(cell), cell)
    todo = list(pending.values())
    log(f"{wave}: {len(cells)} cells, {len(todo)} to train")
    if not todo:
        return
    started = time.perf_counter()
    estimate = fit_seconds(cache.records())
    expected = [estimate(cell) if estimate else 1.0 for cell in todo]

    def done(count: int, task: Task, outcome: RunOutcome) -> None:
        cell = todo[count - 1]
        cache.save(cell, outcome, commit)
        left = time_left(expected, count, time.perf_counter() - started)
        log(
            f"  [{count}/{len(todo)}] {cell.dataset} {cell.arm.name} seed {cell.seed} {dict(cell.params)}: "
            f"val {100 * outcome.val_acc:.2f}, {outcome.epochs} epochs, {outcome.seconds:.1f} s; "
            f"~{left / 60:.0f} min left"
        )

    tasks = [cell.task(cache.configs[cell.dataset]) for cell in todo]
    run_tasks(tasks, jobs, execute, done, worker_setup=start_worker)


def reproduction_check(cache: Cache, cells: Sequence[Cell], count: int, jobs: int, log: Callable[[str], None]) -> dict:
    """Re-train a seeded sample of ``count`` cached cells with the code at hand; each must match bit for bit
    (test accuracy and macro-F1 at every noise level, best validation accuracy and loss, epochs).
    """
    cached = sorted({cache.key(c): c for c in cells if cache.path(c).is_file()}.items())
    if not cached or count == 0:
        return {"checked": 0, "reproduced": 0, "mismatches": []}
    rng = np.random.default_rng(len(cached))
    picked = [cached[k][1] for k in sorted(rng.choice(len(cached), size=min(count, len(cached)), replace=False))]
    log(f"reproduction check: re-training {len(picked)} cached cells")
    fresh = run_tasks([c.task(cache.configs[c.dataset]) for c in picked], jobs, execute, worker_setup=start_worker)
    mismatches = []
    for cell, outcome in zip(picked, fresh, strict=True):
        kept = cache.get(cell)
        same = kept is not None and _fingerprint(kept) == _fingerprint(outcome)
        if not same:
            mismatches.append(
                {
                    "dataset": cell.dataset,
                    "arm": cell.arm.name,
                    "seed": cell.seed,
                    "params": dict(cell.params),
                    "commit": cache.record(cell)["commit"],
                }
            )
    return {
        "checked": len(picked),
        "reproduced": len(picked) - len(mismatches),
        "mismatches": mismatches,
        "commits": sorted({cache.record(c)["commit"] for c in picked}),
    }


def _fingerprint(outcome: RunOutcome) -> tuple:
    return (
        tuple((r.noise, r.accuracy, r.macro_f1) for r in outcome.results),
        outcome.val_acc,
        _loss(outcome.val_loss),
        outcome.epochs,
    )


# ---------------------------------------------------------------------------------------------
# Analysis


def test_avg(outcome: RunOutcome) -> float:
    """Test Avg Acc in %: the mean test accuracy over the noise levels."""
    return 100.0 * float(np.mean([r.accuracy for r in outcome.results]))


def arm_scores(sets: Sequence[VerdictSet], arms: Sequence[Arm], cache: Cache) -> list[dict[str, Any]]:
    """One row per (protocol, data set, arm, seed) whose cells have all run: the test Avg Acc of the
    selected trial (tuned) or of the defaults (untuned), its validation accuracy and its options.
    """
    rows = []
    for s in sets:
        for seed in range(s.seeds):
            for arm in arms:
                picks = {"untuned": Cell(s.name, arm, seed, ())}
                if arm.grid:
                    picks["tuned"] = chosen([Cell(s.name, arm, seed, p) for p in trial_params(arm, s.config)], cache)
                else:
                    iid = iid_arm(arms, arm.strategy)
                    choice = chosen([Cell(s.name, iid, seed, p) for p in trial_params(iid, s.config)], cache)
                    if choice is not None:
                        taken = dict(choice.params)
                        picks["tuned"] = Cell(s.name, arm, seed, tuple((k, taken[k]) for k in arm.follow))
                for protocol, cell in picks.items():
                    outcome = cache.get(cell) if cell is not None else None
                    if outcome is None:
                        continue
                    rows.append(
                        {
                            "protocol": protocol,
                            "dataset": s.name,
                            "arm": arm.name,
                            "seed": seed,
                            "test_avg": test_avg(outcome),
                            "val_acc": 100.0 * outcome.val_acc,
                            "options": dict(cell.arm.fixed + cell.params),
                            "epochs": outcome.epochs,
                            "seconds": outcome.seconds,
                        }
                    )
    return rows


def comparisons() -> dict[str, list[tuple[str, str]]]:
    """The families of comparisons, each Holm-corrected on its own: the six primary ones first."""
    families: dict[str, list[tuple[str, str]]] = {"primary": [], "sources": [], "if_over_lf": [], "readings": []}
    for strategy in STRATEGIES:
        letter, short = LETTER[strategy], strategy
        iid = f"IID-{letter}"
        families["primary"] += [(iid, f"IF-{short}"), (iid, f"LF-{short}")]
        families["sources"] += [(iid, f"{iid} CE control"), (iid, f"{iid} w/o I"), (iid, f"{iid} w/o D")]
        families["if_over_lf"].append((f"IF-{short}", f"LF-{short}"))
        families["readings"].append((iid, f"{iid} vib"))
    return families


def across_sets(per_set: dict[str, np.ndarray]) -> dict[str, Any]:
    """The data-set-level tests of one comparison (the unit is the data set)."""
    test = unit_level_test([d.mean() for d in per_set.values()])
    low, high = two_level_bootstrap_ci(per_set, resamples=BOOTSTRAP)
    return {
        "sets": test.units,
        "pooled": test.mean_difference,
        "ci": [low, high],
        "p_wilcoxon": test.p_wilcoxon,
        "p_sign": test.p_sign,
        "wins": test.wins,
        "losses": test.losses,
        "ties": test.ties,
    }


def analyse(rows: Sequence[dict[str, Any]], sets: Sequence[VerdictSet]) -> dict[str, Any]:
    """Every comparison of :func:`comparisons` in both protocols: per data set and across data sets."""
    score = {(r["protocol"], r["dataset"], r["arm"], r["seed"]): r["test_avg"] for r in rows}
    smallest = smallest_set(sets)
    result: dict[str, Any] = {}
    for protocol in ("tuned", "untuned"):
        for family, pairs in comparisons().items():
            entries = []
            for ours, theirs in pairs:
                per_set: dict[str, np.ndarray] = {}
                rows_per_set = []
                for s in sets:
                    seeds = [
                        k
                        for k in range(s.seeds)
                        if (protocol, s.name, ours, k) in score and (protocol, s.name, theirs, k) in score
                    ]
                    if not seeds:
                        continue
                    a = [score[protocol, s.name, ours, k] for k in seeds]
                    b = [score[protocol, s.name, theirs, k] for k in seeds]
                    per_set[s.name] = np.subtract(a, b)
                    low, high = paired_bootstrap_ci(a, b, resamples=BOOTSTRAP)
                    rows_per_set.append(
                        {
                            "dataset": s.name,
                            "seeds": len(seeds),
                            "ours": float(np.mean(a)),
                            "theirs": float(np.mean(b)),
                            "difference": float(np.mean(per_set[s.name])),
                            "ci": [low, high],
                        }
                    )
                entry = {"ours": ours, "theirs": theirs, "per_set": rows_per_set, **across_sets(per_set)}
                without = {k: v for k, v in per_set.items() if k != smallest}
                entry["without"] = smallest
                entry["p_wilcoxon_without_smallest"] = across_sets(without)["p_wilcoxon"] if smallest else math.nan
                entries.append(entry)
            for entry, p in zip(entries, holm([e["p_wilcoxon"] for e in entries]), strict=True):
                entry["p_holm"] = p
                entry["verdict"] = verdict_of(entry)
            result[f"{protocol}/{family}"] = entries
    return result


def verdict_of(entry: dict[str, Any]) -> str:
    """docs/protocol.md, "What counts as IID helps"; "not run yet" before any data set has both arms."""
    if entry.get("sets") == 0:
        return "not run yet"
    low, high = entry["ci"]
    if entry["p_holm"] < 0.05 and low > 0:
        return "helps"
    if entry["p_holm"] < 0.05 and high < 0:
        return "hurts"
    return "no detectable effect"


# ---------------------------------------------------------------------------------------------
# Report


FAMILY_TITLES = {
    "primary": "IID-X against its bases (the six primary comparisons)",
    "sources": "Where an effect comes from: IID-X against the CE control and its ablations",
    "if_over_lf": "IF-X against LF-X",
    "readings": "The paper reading of L_ic against the earlier `vib` reading",
}


def _ci(low: float, high: float) -> str:
    return f"[{fmt_number(low, '+.2f')}, {fmt_number(high, '+.2f')}]"


def family_table(entries: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            f"{e['ours']} - {e['theirs']}",
            str(e["sets"]),
            f"{fmt_number(e['pooled'], '+.2f')} {_ci(*e['ci'])}",
            f"{e['wins']}/{e['ties']}/{e['losses']}",
            fmt_number(e["p_wilcoxon"], ".3g"),
            fmt_number(e["p_holm"], ".3g"),
            fmt_number(e["p_sign"], ".3g"),
            fmt_number(e["p_wilcoxon_without_smallest"], ".3g"),
            f"**{e['verdict']}**",
        ]
        for e in entries
    ]
    headers = [
        "comparison",
        "sets",
        "pooled difference, pp [95 % CI]",
        "sets won/tied/lost",
        "Wilcoxon p",
        "Holm p",
        "sign p",
        f"Wilcoxon p w/o {entries[0]['without'] or 'the smallest set'}",
        "verdict",
    ]
    return markdown_table(headers, rows)


def per_set_table(entries: Sequence[dict[str, Any]]) -> str:
    sets = list(dict.fromkeys(r["dataset"] for e in entries for r in e["per_set"]))
    cells = {(e["ours"], e["theirs"], r["dataset"]): r for e in entries for r in e["per_set"]}
    rows = []
    for name in sets:
        row = [name]
        for e in entries:
            r = cells.get((e["ours"], e["theirs"], name))
            row.append(f"{r['difference']:+.2f} {_ci(*r['ci'])} (n={r['seeds']})" if r else "n/a")
        rows.append(row)
    return markdown_table(["data set", *[f"{e['ours']} - {e['theirs']}" for e in entries]], rows)


def render(
    sets: Sequence[VerdictSet],
    arms: Sequence[Arm],
    rows: Sequence[dict[str, Any]],
    stats: dict[str, Any],
    state: dict[str, Any],
) -> str:
    complete = state["cells_done"] == state["cells_planned"]
    status = (
        "**Complete**: every cell of the protocol has run."
        if complete
        else f"**INTERIM**: {state['cells_done']} of {state['cells_planned']} cells have run; the verdict below is "
        "that of the seeds done so far (per data set below) and will change as the rest runs."
    )
    check = state["check"]
    lines = [
        "# Does IID help? The verdict",
        "",
        "The protocol of [docs/protocol.md](../../docs/protocol.md), written before these runs: compute-matched arms "
        "(k = 6 validation-selected trials each), controls, paired seeds, the data set as the unit of analysis. "
        "Selection on validation, test read once after it. Metric: test Avg Acc (mean test accuracy over noise levels "
        "0, 5, 10), in percentage points (pp).",
        "",
        status,
        "",
        f"Made by `python benchmarks/verdict.py run --jobs 2 --threads 1` (resumable; `report` rewrites these files "
        f"from its cache). Cells made at commit(s) {', '.join(state['commits']) or 'n/a'}; reproduction check at "
        f"{state['head']}: {check['reproduced']} of {check['checked']} cached cells re-trained bit for bit"
        + (f", MISMATCHES: {check['mismatches']}" if check["mismatches"] else "")
        + ".",
        "",
        departures_sentence(
            dataclasses.replace(sets[0].config, tune=dataclasses.replace(sets[0].config.tune, enabled=True)),
            [a.method for a in arms if a.role in ("base", "iid")],
        )
        + ' Tuning: this protocol\'s grids (docs/protocol.md, "Budgets"), the same size for every arm.',
        "",
    ]
    primary = stats["tuned/primary"]
    lines += [
        "## The verdict (tuned protocol, primary)",
        "",
        family_table(primary),
        "",
        "Pooled difference: the mean of the per-data-set mean differences, with a two-level bootstrap CI (data "
        "sets, then seeds). Wilcoxon and sign tests over the per-data-set means (the unit is the data set); Holm "
        "over the six comparisons. **helps** / **hurts**: Holm p < 0.05 and a CI that excludes 0 on that side; "
        "otherwise no detectable effect, and the CI bounds what could have been missed.",
        "",
    ]
    for family in ("sources", "if_over_lf", "readings"):
        lines += [f"## {FAMILY_TITLES[family]} (tuned)", "", family_table(stats[f"tuned/{family}"]), ""]
    lines += ["## Untuned protocol (every arm at the defaults, one fit)", ""]
    for family, title in FAMILY_TITLES.items():
        lines += [f"### {title}", "", family_table(stats[f"untuned/{family}"]), ""]
    lines += [
        "## Per data set (tuned): mean paired difference over seeds, pp [95 % paired bootstrap CI]",
        "",
        per_set_table(primary),
        "",
        per_set_table(stats["tuned/sources"]),
        "",
    ]
    lines += [
        "## What IID chose (tuned): trials picked on validation, over data sets x seeds",
        "",
        choices_table(rows),
        "",
    ]
    done = {}
    for r in rows:
        if r["protocol"] == "tuned":
            done.setdefault(r["dataset"], set()).add(r["seed"])
    lines += [
        "## Data sets",
        "",
        markdown_table(
            ["data set", "train/val/test", "seeds done: IID and its bases", "seeds done: every arm", "planned"],
            [
                [
                    s.name,
                    s.note,
                    str(_complete_seeds(s, [a for a in arms if a.role in ("base", "iid")], rows)),
                    str(_complete_seeds(s, arms, rows)),
                    str(s.seeds),
                ]
                for s in sets
            ],
            numeric_from=2,
        ),
        "",
    ]
    lines += [
        "Not covered here: the protocol's knowledge-graph part (WN9-IMG, OTKGE against OTKGE + IID, 3 seeds; "
        "docs/protocol.md) is analysed on its own, by `python benchmarks/verdict_kg.py run`, in "
        "`benchmarks/results/verdict_kg.md`.",
        "",
        f"Cost: {state['cells_done']} fits, {state['fit_hours']:.1f} h of fitting in total (one torch thread "
        "each, 2 at a time on a 2-core machine)."
        + (
            f" Left: {state['cells_planned'] - state['cells_done']} planned fits, about "
            f"{state['fit_hours_left']:.1f} h of fitting at the mean time per fit of each data set and method so far "
            f"(about {state['fit_hours_left'] / 2:.1f} h of wall time at `--jobs 2`), and the tuned ablations and "
            "controls that IID's choices will name."
            if state.get("fit_hours_left") and not complete
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


def _complete_seeds(s: VerdictSet, arms: Sequence[Arm], rows: Sequence[dict[str, Any]]) -> int:
    have = {(r["arm"], r["seed"]) for r in rows if r["dataset"] == s.name and r["protocol"] == "tuned"}
    return sum(all((a.name, k) in have for a in arms) for k in range(s.seeds))


def choices_table(rows: Sequence[dict[str, Any]]) -> str:
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["protocol"] == "tuned" and r["arm"].startswith("IID-") and " " not in r["arm"]:
            options = r["options"]
            label = f"alpha {options['loss.alpha']:g}, beta {options['loss.beta']:g}"
            counts.setdefault(label, {}).setdefault(r["arm"], 0)
            counts[label][r["arm"]] += 1
    arms = sorted({a for c in counts.values() for a in c})
    return markdown_table(
        ["trial", *arms], [[label, *[str(c.get(a, 0)) for a in arms]] for label, c in sorted(counts.items())]
    )


def plot(stats: dict[str, Any], path: Path) -> None:
    """Per data set and pooled, each IID variant minus its IF and LF bases with its 95 % CI (tuned protocol)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = stats["tuned/primary"]
    sets = list(dict.fromkeys(r["dataset"] for e in entries for r in e["per_set"]))
    figure, axes = plt.subplots(2, 3, figsize=(13, 0.45 * len(sets) + 3), sharey=True, squeeze=False)
    for k, e in enumerate(entries):
        ax = axes[k % 2][k // 2]
        by_set = {r["dataset"]: r for r in e["per_set"]}
        for y, name in enumerate(sets):
            r = by_set.get(name)
            if r is None:
                continue
            low, high = r["ci"]
            xerr = None if math.isnan(low) else [[r["difference"] - low], [high - r["difference"]]]
            ax.errorbar(r["difference"], y, xerr=xerr, fmt="o", color="tab:blue", capsize=2, markersize=4)
        low, high = e["ci"]
        xerr = None if math.isnan(low) else [[e["pooled"] - low], [high - e["pooled"]]]
        ax.errorbar(e["pooled"], len(sets), xerr=xerr, fmt="D", color="black", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(f"{e['ours']} - {e['theirs']}: {e['verdict']}", fontsize=9)
        ax.set_yticks(range(len(sets) + 1), [*sets, "pooled"])
        ax.set_xlabel("test Avg Acc difference, pp")
    figure.suptitle(
        "IID minus its bases, tuned protocol: mean over seeds with 95 % bootstrap CI (pooled: two-level bootstrap)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def fit_seconds(records: Sequence[dict[str, Any]]) -> Callable[[Cell], float] | None:
    """A cell's expected fitting seconds: the mean of the finished cells (``records``) of its data set and method,
    else of its data set, else of every finished cell; None before any cell has finished.
    """
    if not records:
        return None
    by_method: dict[tuple[str, str], list[float]] = {}
    by_set: dict[str, list[float]] = {}
    for r in records:
        by_method.setdefault((r["dataset"], r["method"]), []).append(r["outcome"]["seconds"])
        by_set.setdefault(r["dataset"], []).append(r["outcome"]["seconds"])
    overall = float(np.mean([r["outcome"]["seconds"] for r in records]))

    def expected(cell: Cell) -> float:
        known = by_method.get((cell.dataset, cell.arm.method)) or by_set.get(cell.dataset)
        return float(np.mean(known)) if known else overall

    return expected


def hours_left(pending: Sequence[Cell], records: Sequence[dict[str, Any]]) -> float | None:
    """Fitting hours the ``pending`` cells will take (:func:`fit_seconds`); None before any cell has finished. The
    cells that only IID's choices will name are not counted.
    """
    expected = fit_seconds(records)
    return sum(map(expected, pending)) / 3600 if expected else None


def write_report(
    sets: Sequence[VerdictSet], arms: Sequence[Arm], cache: Cache, check: dict[str, Any], out: Path
) -> str:
    planned = {cache.key(c): c for c in planned_cells(sets, arms, cache)}
    done = [c for c in planned.values() if cache.path(c).is_file()]
    records = [cache.record(c) for c in done]
    left = hours_left([c for c in planned.values() if not cache.path(c).is_file()], records)
    rows = arm_scores(sets, arms, cache)
    stats = analyse(rows, sets)
    state = {
        "cells_planned": len(planned),
        "cells_done": len(done),
        "commits": sorted({r["commit"] for r in records}),
        "head": git_commit(),
        "fit_hours": sum(r["outcome"]["seconds"] for r in records) / 3600,
        "fit_hours_left": left,
        "check": check,
    }
    report = render(sets, arms, rows, stats, state)
    payload = {
        "protocol": "docs/protocol.md",
        "state": state,
        "sets": [{"name": s.name, "data": s.config.data, "split": s.note, "seeds": s.seeds} for s in sets],
        "comparisons": stats,
    }
    fields = ("protocol", "dataset", "arm", "seed", "test_avg", "val_acc", "options", "epochs", "seconds")
    csv_rows = [
        {
            **r,
            "test_avg": round(r["test_avg"], 4),
            "val_acc": round(r["val_acc"], 4),
            "seconds": round(r["seconds"], 2),
            "options": json.dumps(r["options"], sort_keys=True),
        }
        for r in rows
    ]
    texts = {"verdict.md": report, "verdict.json": json_text(payload), ARCHIVE: cache.export(done)}
    if csv_rows:
        texts["verdict.csv"] = csv_text(csv_rows, fields)
    write_files(
        out,
        texts,
        {"verdict.png": lambda path: plot(stats, path)} if rows else None,
    )
    return report


def git_commit() -> str:
    """HEAD's commit, with ``-dirty`` when the package's files differ from it."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--", "src") else "")


# ---------------------------------------------------------------------------------------------
# Command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "action",
        choices=("run", "report"),
        help="run: train what is missing, then report; report: the results from the cache alone",
    )
    parser.add_argument("--work", default=str(REPO / "runs" / "verdict"), help="cache folder (default runs/verdict)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default benchmarks/results)")
    parser.add_argument("--jobs", type=int, default=2, help="fits at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit (default 1)")
    parser.add_argument(
        "--seeds", type=int, default=0, help="run seeds 0..N-1 only (a part of the protocol; default: the protocol's)"
    )
    parser.add_argument(
        "--datasets",
        default="",
        help="comma-separated data sets (names, files or feature folders) "
        "instead of the protocol's, 10 seeds each unless --seeds",
    )
    parser.add_argument(
        "--check",
        type=int,
        default=None,
        help="cached cells re-trained to check that they reproduce at HEAD (default: 12 for run, 0 for report)",
    )
    args = parser.parse_args(argv)
    work, out = Path(args.work), Path(args.out)

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        sets = protocol_sets(args, log)
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"verdict: {error}", file=sys.stderr)
        return 2
    arms, cache, commit = protocol_arms(), Cache(work, sets), git_commit()
    try:
        adopted = cache.adopt(out / ARCHIVE)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        print(
            f"verdict: {out / ARCHIVE}: not an archive of this script ({error!r}); pass another --out", file=sys.stderr
        )
        return 2
    if adopted:
        log(f"{adopted} cells taken from {out / ARCHIVE}")
    everything: list[Cell] = []
    if args.action == "run":
        # Within a wave, the cheapest sets first, so that a run stopped midway has covered as many as it could.
        order = sorted(sets, key=fit_cost)
        for seed in range(max(s.seeds for s in sets)):
            primary = tuned_cells(order, arms, seed, roles=("base", "iid"))
            run_cells(
                primary, cache, args.jobs, commit, log, f"seed {seed}, wave 1 (tuning grids of IID and its bases)"
            )
            followers = follower_cells(order, arms, seed, cache)
            run_cells(followers, cache, args.jobs, commit, log, f"seed {seed}, wave 2 (ablations, control)")
            readings = tuned_cells(order, arms, seed, roles=("reading",))
            run_cells(readings, cache, args.jobs, commit, log, f"seed {seed}, wave 3 (the vib reading's grid)")
            everything += primary + followers + readings
    else:
        everything = planned_cells(sets, arms, cache)
    checked = args.check if args.check is not None else (12 if args.action == "run" else 0)
    check = reproduction_check(cache, everything, checked, args.jobs, log)
    if check["mismatches"]:
        print(
            f"verdict: {len(check['mismatches'])} cached cells do not reproduce at {commit}: "
            f"{check['mismatches'][:3]}; bump RESULTS_VERSION or delete {cache.folder}",
            file=sys.stderr,
        )
        return 1
    report = write_report(sets, arms, cache, check, out)
    log(report.split("## The verdict")[1].split("##")[0] if "## The verdict" in report else report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
