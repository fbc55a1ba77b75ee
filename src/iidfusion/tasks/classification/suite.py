"""The evidence on many data sets at once (``iidfusion suite``): bases, IF bases and IID variants.

For every data set of ``config.datasets`` and every L_ic reading of ``config.variants`` the suite
runs the comparison of ``config.methods`` over seeds 0..seeds-1 (untuned, or with ``tune.enabled``
the paper's protocol, :mod:`iidfusion.tasks.classification.tuning`), and writes one table of all of it:

* per data set, every method's test Avg Acc (mean over noise levels, as the paper), mean ± std
  over seeds, one table per reading;
* the gain of each IID variant over its bases (its LF base and its IF base, same weight strategy)
  and of each IF base over its LF base, in test Avg Acc AND in clean validation accuracy (what
  defaults may be chosen on), with the data set as the unit of analysis (:class:`Gain`): an
  interval, Wilcoxon and sign tests over the data sets, Holm-corrected over the table's
  comparisons, and the data sets won / tied / lost.

A method that does not read L_ic (a base, an IID ablation without it) gives the same run for every
reading: it is trained once (tasks are deduplicated by :mod:`iidfusion.tasks.classification.run_key`). Every
finished run is saved at once under ``OUT/cache/`` so an interrupted suite continues with
``resume=True`` and loses at most the runs in progress. The result files (``suite.md``,
``suite.json``, ``suite.csv``, the plot across data sets ``accuracy_by_dataset.png`` and ``.pdf``,
and each comparison's own result files under ``OUT/<data set>/<reading>/``) are written at the
end, all or nothing. suite.json keeps every number exact: ``--report-only`` renders suite.md
from it again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iidfusion.core.provenance import provenance
from iidfusion.engine.figures import figure_files, new_figure
from iidfusion.engine.outputs import path_name, staged_files
from iidfusion.engine.results import csv_text, fmt_number, format_params, json_text, mean_ci, rounded
from iidfusion.engine.runs import Progress, cache_path, load_outcome, run_tasks, save_outcome
from iidfusion.engine.stats import (
    CONFIDENCE,
    holm,
    paired_bootstrap_ci,
    t_interval,
    two_level_bootstrap_ci,
    unit_level_test,
)
from iidfusion.fusion.methods import get_method
from iidfusion.losses.informatic import VARIANTS
from iidfusion.tasks.classification.compare import (
    RunOutcome,
    Task,
    execute,
    number_or_nan,
    pooled_confusions,
    run_record,
    start_worker,
)
from iidfusion.tasks.classification.config import (
    TUNABLE,
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    resolve_methods,
)
from iidfusion.tasks.classification.departures import departures_sentence
from iidfusion.tasks.classification.report import (
    EvalResult,
    average_accuracy,
    comparison_pairs,
    interval_sentence,
    write_report,
)
from iidfusion.tasks.classification.validation import load_splits, validate_config

TUNED_VARIANT = "tuned"  # the reading label when the reading itself is tuned (tune.variant)
DATASETS_PLOT = "accuracy_by_dataset"  # the stem of the plot across data sets (PNG and PDF)
SUITE_FIELDS = ("dataset", "variant", "method", "seed", "noise", "accuracy", "macro_f1", "val_acc")
# The suite's comparisons: each full IID method against its LF and IF bases, each IF base against its LF base.
SUITE_PAIRS = ("bases", "if_over_lf")


@dataclass(frozen=True)
class SuiteRun:
    """One (data set, reading, method, seed) of the suite with its outcome."""

    dataset: str
    variant: str
    task: Task
    outcome: RunOutcome

    @property
    def test_avg(self) -> float:
        """Test Avg Acc in %: the mean accuracy over the noise levels."""
        return 100.0 * float(np.mean([r.accuracy for r in self.outcome.results]))

    @property
    def val(self) -> float:
        """Best clean validation accuracy in %."""
        return 100.0 * self.outcome.val_acc


@dataclass(frozen=True)
class Gain:
    """``method`` minus ``reference`` in percentage points, with the data set as the unit of analysis.

    ``test`` and ``val``: the mean over data sets of each set's mean over the seeds both ran (with
    one data set, its mean over seeds). The interval and the tests are over units: the data sets
    (:func:`~iidfusion.engine.stats.two_level_bootstrap_ci`, and the Wilcoxon signed-rank and sign
    tests of their means), or the seeds when there is one data set; ``p_holm`` corrects the
    Wilcoxon p over the table. ``pairs`` counts the data set x seed pairs behind it.
    """

    variant: str
    method: str
    reference: str
    test: float
    val: float
    ci: tuple[float, float]
    p_wilcoxon: float
    p_sign: float
    p_holm: float
    wins: int
    ties: int
    losses: int
    unit: str
    pairs: int


def plan(config: ExperimentConfig) -> list[tuple[str, str, Task]]:
    """(data set name, reading, task) for every run of the suite, in the order they are reported.

    Checks every data set (it is loaded once, split by seed 0) before anything trains.
    """
    methods = resolve_methods(config.methods)
    if not config.datasets:
        raise ValueError("no data sets given (--datasets a,b,...)")
    variants = (TUNED_VARIANT,) if config.tune.enabled and config.tune.variant else config.variants
    if not variants:
        raise ValueError("no L_ic readings given (--variants vib,...)")
    if len(set(variants)) != len(variants):
        raise ValueError(f"repeated L_ic reading in {list(variants)}")
    unknown = [v for v in variants if v not in (*VARIANTS, TUNED_VARIANT)]
    if unknown:
        raise ValueError(f"--variants: unknown L_ic reading {unknown[0]!r}; expected some of {', '.join(VARIANTS)}")
    names: dict[str, str] = {}
    planned = []
    for data in config.datasets:
        base = dataclasses.replace(config, data=data)
        validate_config(base)
        name = path_name(load_splits(base, 0).name)  # a file's stem names a folder of --out
        if name in names.values():
            name = f"{name}-{len(names)}"
        names[data] = name
        for variant in variants:
            variant_config = (
                base
                if variant == TUNED_VARIANT
                else dataclasses.replace(base, loss=dataclasses.replace(base.loss, variant=variant))
            )
            validate_config(variant_config)
            for seed in range(config.seeds):
                for method in methods:
                    planned.append((name, variant, Task(variant_config, method, seed)))
    return planned


def fit_costs(tasks: Sequence[Task]) -> list[float]:
    """Each task's relative cost, for the time left (:func:`~iidfusion.engine.runs.time_left`): its
    data's training samples times the width of the model's first layers (the views' widths and a
    hidden layer per view), which spans orders of magnitude across data sets. Each data set is
    loaded once.
    """
    sizes: dict[str, float] = {}
    for task in tasks:
        config = task.config
        if config.data not in sizes:
            splits = load_splits(config, 0)
            width = sum(splits.view_dims.values()) + len(splits.view_dims) * config.model.width
            sizes[config.data] = float(len(splits.train) * width)
    return [sizes[task.config.data] for task in tasks]


def run_suite(
    config: ExperimentConfig, out: str | Path, *, resume: bool = False, log: Callable[[str], None] = print
) -> str:
    """Run (or, with ``resume``, finish) the suite of ``config`` and write its files to ``out``; returns suite.md."""
    out = Path(out)
    if out.is_file():
        raise ValueError(f"--out {out} is a file, not a folder")
    if (out / "cache").is_dir() and any((out / "cache").iterdir()) and not resume:
        raise ValueError(f"{out} holds runs of an earlier suite; pass --resume to continue it, or choose another --out")
    started = time.perf_counter()
    planned = plan(config)
    keys = [task.key() for _, _, task in planned]
    todo: dict[str, Task] = {}
    for key, (_, _, task) in zip(keys, planned, strict=True):
        if key not in todo and not cache_path(out, key).is_file():
            todo[key] = task
    reused = len(set(keys)) - len(todo)
    log(f"suite: {len(planned)} runs, {len(set(keys))} distinct, {reused} already done, {len(todo)} to train")

    pending = list(todo.items())
    tasks = [task for _, task in pending]
    with Progress(tasks, log, costs=fit_costs(tasks), bar=config.train.progress_bar, description="suite") as progress:

        def save(done: int, task: Task, outcome: RunOutcome) -> None:
            save_outcome(cache_path(out, pending[done - 1][0]), outcome.to_json())
            progress(done, task, outcome)

        run_tasks(tasks, config.jobs, execute, save, worker_setup=start_worker)
    outcomes = {key: load_outcome(cache_path(out, key), RunOutcome.from_json) for key in set(keys)}
    runs = [
        SuiteRun(name, variant, dataclasses.replace(task, label=task.method), outcomes[key])
        for key, (name, variant, task) in zip(keys, planned, strict=True)
    ]
    seconds = time.perf_counter() - started
    report = render_suite(runs, config, seconds, reused)
    _write(out, runs, config, report, seconds, reused)
    return report


def rerender(out: str | Path) -> str:
    """suite.md of the suite in ``out`` rendered again from its suite.json (no training); returns it.

    For a report of an earlier suite in the current format: the runs are read back as they were.
    """
    path = Path(out) / "suite.json"
    if not path.is_file():
        raise FileNotFoundError(f"no suite.json in {out} (written by `iidfusion suite`)")
    try:
        payload = json.loads(path.read_text())
        config = config_from_dict(payload["config"], str(path))
        runs = [
            SuiteRun(
                r["dataset"],
                r["variant"],
                Task(dataclasses.replace(config, data=r["dataset"]), r["method"], r["seed"]),
                RunOutcome(
                    [EvalResult(**e) for e in r["test"]],
                    number_or_nan(r["val_acc"]),
                    number_or_nan(r["val_loss"]),
                    r["epochs"],
                    r["seconds"],
                    True,
                    r.get("tuning"),
                ),
            )
            for r in payload["runs"]
        ]
        seconds, reused = float(payload.get("seconds", math.nan)), int(payload.get("reused", 0))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a suite.json of this version ({error})") from None
    report = render_suite(runs, config, seconds, reused)
    with staged_files(Path(out)) as stage:
        stage.write_text("suite.md", report)
    return report


def _write(out: Path, runs: list[SuiteRun], config: ExperimentConfig, report: str, seconds: float, reused: int) -> None:
    with staged_files(out) as stage:
        stage.write_text("suite.md", report)
        stage.write_text(
            "suite.json",
            json_text(
                {
                    **provenance(config),
                    "seconds": seconds,
                    "reused": reused,
                    "runs": [
                        {
                            "dataset": r.dataset,
                            "variant": r.variant,
                            **run_record(r.task, r.outcome),
                            "test": [dataclasses.asdict(e) for e in r.outcome.results],
                        }
                        for r in runs
                    ],
                },
                indent=1,
            ),
        )
        stage.write_text(
            "suite.csv",
            csv_text(
                rounded(
                    [
                        {
                            "dataset": r.dataset,
                            "variant": r.variant,
                            "method": r.task.method,
                            "seed": r.task.seed,
                            "noise": e.noise,
                            "accuracy": e.accuracy,
                            "macro_f1": e.macro_f1,
                            "val_acc": r.outcome.val_acc,
                        }
                        for r in runs
                        for e in r.outcome.results
                    ]
                ),
                SUITE_FIELDS,
            ),
        )
        for name, save in figure_files(DATASETS_PLOT, lambda: plot_datasets(runs)).items():
            save(stage.path(name))
    for (dataset, variant), group in _groups(runs).items():
        title = (
            f"{dataset}, L_ic reading {variant}: {len({r.task.method for r in group})} methods x {config.seeds} seeds"
        )
        write_report(
            out / path_name(dataset) / path_name(variant),
            [e for r in group for e in r.outcome.results],
            config_to_dict(group[0].task.config),
            title,
            runs=[run_record(r.task, r.outcome) for r in group],
            notes=(departures_sentence(group[0].task.config, dict.fromkeys(r.task.method for r in group)),),
            confusions=pooled_confusions([(r.task.method, r.outcome) for r in group]),
        )


def plot_datasets(runs: Sequence[SuiteRun]) -> Any:
    """Test Avg Acc (%) per data set, one bar per method (one panel per L_ic reading): the mean over
    seeds, error bars its 95 % t interval (none with one seed); the title says so.
    """
    variants = list(dict.fromkeys(r.variant for r in runs))
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    methods = list(dict.fromkeys(r.task.method for r in runs))
    figure, axes = new_figure(len(variants), width=max(6.0, 1.2 * len(datasets) * max(1, len(methods) / 4)), height=4.5)
    width = 0.8 / len(methods)
    seeds = sorted({len([r for r in runs if (r.variant, r.dataset, r.task.method) == key]) for key in _cells(runs)})
    for axis, variant in zip(axes, variants, strict=True):
        for k, method in enumerate(methods):
            cells = [
                t_interval([r.test_avg for r in runs if (r.variant, r.dataset, r.task.method) == (variant, d, method)])
                for d in datasets
            ]
            means = [mean for mean, _ in cells]
            errors = [0.0 if math.isnan(half) else half for _, half in cells]
            positions = [j - 0.4 + width * (k + 0.5) for j in range(len(datasets))]
            axis.bar(positions, means, width, yerr=errors, capsize=2, label=method)
        axis.set_xticks(range(len(datasets)))
        axis.set_xticklabels(datasets, rotation=30, ha="right")
        axis.set_ylabel("test Avg Acc (%)")
        axis.set_title(f"L_ic reading {variant}", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    n = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    bars = "no interval" if n == "1" else f"error bars: {CONFIDENCE:.0%} CI of the mean (Student's t)"
    figure.suptitle(f"Test Avg Acc per data set: mean over {n} seed{'' if n == '1' else 's'}; {bars}", fontsize=10)
    axes[-1].legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    return figure


def _cells(runs: Sequence[SuiteRun]) -> set[tuple[str, str, str]]:
    return {(r.variant, r.dataset, r.task.method) for r in runs}


def _groups(runs: Sequence[SuiteRun]) -> dict[tuple[str, str], list[SuiteRun]]:
    groups: dict[tuple[str, str], list[SuiteRun]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.variant), []).append(run)
    return groups


def gains(runs: Sequence[SuiteRun]) -> list[Gain]:
    """Every comparison of :data:`SUITE_PAIRS`, per reading, with the data set as the unit (:class:`Gain`)."""
    by_key = {(r.variant, r.dataset, r.task.method, r.task.seed): r for r in runs}
    variants = list(dict.fromkeys(r.variant for r in runs))
    methods = list(dict.fromkeys(r.task.method for r in runs))
    rows = []
    for variant in variants:
        for method, reference in comparison_pairs(methods, SUITE_PAIRS):
            if variant != variants[0] and not get_method(method).use_ic:
                continue  # the IF-vs-LF rows do not depend on the reading: listed once
            test: dict[str, list[float]] = {}
            val: dict[str, list[float]] = {}
            for (v, dataset, m, seed), ours in by_key.items():
                theirs = by_key.get((variant, dataset, reference, seed))
                if (v, m) == (variant, method) and theirs is not None:
                    test.setdefault(dataset, []).append(ours.test_avg - theirs.test_avg)
                    val.setdefault(dataset, []).append(ours.val - theirs.val)
            if not test:
                continue
            if len(test) > 1:
                unit, units = "data set", [float(np.mean(d)) for d in test.values()]
                interval = two_level_bootstrap_ci(test)
            else:
                unit, (units,) = "seed", test.values()
                interval = paired_bootstrap_ci(units, [0.0] * len(units))
            result = unit_level_test(units)
            rows.append(
                Gain(
                    variant,
                    method,
                    reference,
                    result.mean_difference,
                    float(np.mean([np.mean(d) for d in val.values()])),
                    interval,
                    result.p_wilcoxon,
                    result.p_sign,
                    math.nan,
                    result.wins,
                    result.ties,
                    result.losses,
                    unit,
                    sum(map(len, test.values())),
                )
            )
    adjusted = holm([g.p_wilcoxon for g in rows])
    return [dataclasses.replace(g, p_holm=p) for g, p in zip(rows, adjusted, strict=True)]


def fixed_point_gains(runs: Sequence[SuiteRun]) -> list[tuple[str, dict[str, Any], float, float, int]]:
    """What each grid point would gain if it were used everywhere, read from the tuning trials.

    Per (reading, grid point): the mean over IID methods x their bases (LF and IF) x data sets x
    seeds of the trial's validation accuracy (and test Avg Acc) minus the base's, in percentage
    points, and the number of such pairs; best validation gain first. This is how fixed defaults
    are chosen on validation from a tuned suite.
    """
    by_key = {(r.variant, r.dataset, r.task.method, r.task.seed): r for r in runs}
    pairs = comparison_pairs(list(dict.fromkeys(r.task.method for r in runs)), SUITE_PAIRS)
    sums: dict[tuple[str, str], list[Any]] = {}
    for (variant, dataset, method, seed), run in by_key.items():
        spec = get_method(method)
        if run.outcome.tuning is None or not (spec.use_ic or spec.use_dc):
            continue
        for reference in [ref for m, ref in pairs if m == method]:
            base = by_key.get((variant, dataset, reference, seed))
            if base is None:
                continue
            for trial in run.outcome.tuning["trials"]:
                test = 100.0 * float(np.mean([t["accuracy"] for t in trial["test"]]))
                entry = sums.setdefault((variant, json.dumps(trial["params"], sort_keys=True)), [0.0, 0.0, 0])
                entry[0] += 100.0 * trial["val_acc"] - base.val
                entry[1] += test - base.test_avg
                entry[2] += 1
    rows = [(variant, json.loads(params), val / n, test / n, n) for (variant, params), (val, test, n) in sums.items()]
    return sorted(rows, key=lambda row: -row[2])


def _fixed_points(runs: Sequence[SuiteRun]) -> list[str]:
    rows = fixed_point_gains(runs)
    if not rows:
        return []
    lines = [
        "",
        "## Fixed hyperparameters, from the tuning trials",
        "",
        "Each grid point used for every data set and seed, as if it were the default: mean gain of the IID methods "
        "over their bases (LF and IF) in validation accuracy (what defaults are chosen on) and in test Avg Acc.",
        "",
        "| reading | hyperparameters | Δ val | Δ test | pairs |",
        "|---|---|---:|---:|---:|",
    ]
    for variant, params, val, test, n in rows:
        lines.append(f"| {variant} | {format_params(params)} | {val:+.2f} | {test:+.2f} | {n} |")
    return lines


def render_suite(runs: Sequence[SuiteRun], config: ExperimentConfig, seconds: float, reused: int) -> str:
    """suite.md: protocol, gains over the bases, IF against LF, then the per-data-set tables."""
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    variants = list(dict.fromkeys(r.variant for r in runs))
    methods = list(dict.fromkeys(r.task.method for r in runs))
    tune = config.tune
    if tune.enabled:
        grids = ", ".join(f"{name} {list(getattr(tune, name))}" for name in TUNABLE if getattr(tune, name))
        protocol = (
            f"tuned per method and seed on the validation split ({tune.sampler} over {grids}; a grid applies to "
            "the methods that have its hyperparameter)"
        )
    else:
        loss = config.loss
        protocol = f"untuned: alpha = {loss.alpha:g}, beta = {loss.beta:g}, lam = {loss.lam:g} for every data set"
    lines = [
        f"# Suite: {len(datasets)} data sets x {len(methods)} methods x {config.seeds} seeds",
        "",
        f"Protocol: {protocol}. L_ic readings: {', '.join(variants)}; L_ic over modalities: "
        f"{config.loss.ic_reduction}, "
        ""
        f"L_dc over pairs: {config.loss.dc_reduction}. Test noise levels {list(config.eval.noise)} "
        f"({config.eval.noise_kind}, views: {config.eval.noise_view}, {config.eval.noise_mask} per view); at most "
        f"{config.train.max_epochs} epochs, "
        ""
        f"early stopping patience {config.train.patience} on {config.train.stop_on}, lr {config.optim.lr:g}, "
        f"batch {config.train.batch_size}, width {config.model.width}, IF unimodal heads "
        f"{config.model.unimodal_heads}. "
        ""
        "Selection (early stopping, tuning) on validation; test read once. "
        f"Time: {seconds / 60:.1f} min ({reused} runs reused from an earlier start).",
        "",
        departures_sentence(config, methods),
        "",
        "Data sets: " + ", ".join(datasets) + ".",
        "",
        "## Gains (percentage points; the data set is the unit)",
        "",
        "Δ test = test Avg Acc of the method minus the reference's; Δ val = the same for the best clean validation "
        "accuracy; both the mean over data sets of each set's mean over seeds. The unit of the interval and the "
        "tests is the data set (with one data set, the seed): seeds of several data sets are not independent "
        "draws of the effect. 95% CI: bootstrap of the data sets and, within each, of its seeds. p: Wilcoxon "
        "signed-rank and sign tests over the units; Holm: the Wilcoxon p corrected over the rows of this table "
        "(with 5 units or fewer no Wilcoxon p reaches 0.05). W/T/L: units where the method is higher / equal / "
        "lower.",
        "",
        "| reading | method | reference | Δ test | 95% CI | Δ val | p (Wilcoxon) | p (sign) | p (Holm) | W/T/L "
        "| unit | pairs |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for g in gains(runs):
        variant = g.variant if get_method(g.method).use_ic else "-"
        interval = f"[{fmt_number(g.ci[0], '+.2f')}, {fmt_number(g.ci[1], '+.2f')}]"
        lines.append(
            f"| {variant} | {g.method} | {g.reference} | {g.test:+.2f} | {interval} | {g.val:+.2f} | "
            f"{fmt_number(g.p_wilcoxon, '.3g')} | {fmt_number(g.p_sign, '.3g')} | {fmt_number(g.p_holm, '.3g')} | "
            f"{g.wins}/{g.ties}/{g.losses} | {g.unit} | {g.pairs} |"
        )
    if tune.enabled:
        lines += [
            "",
            'What tuning chose for each method and seed: section "Hyperparameters chosen on validation" of '
            "<data set>/<reading>/results.md.",
        ]
        lines += _fixed_points(runs)
    for variant in variants:
        lines += [
            "",
            f"## Test Avg Acc (%) per data set, reading {variant}",
            "",
            f"Each cell: {interval_sentence([e for r in runs for e in r.outcome.results])}. "
            f"Plotted in {DATASETS_PLOT}.png and .pdf.",
            "",
            "| data set | " + " | ".join(methods) + " |",
            "|---|" + "---:|" * len(methods),
        ]
        for dataset in datasets:
            group = [r for r in runs if r.variant == variant and r.dataset == dataset]
            avg = average_accuracy([e for r in group for e in r.outcome.results])
            cells = []
            for method in methods:
                values = list(avg.get(method, {}).values())
                cells.append(mean_ci(values) if values else "-")
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
