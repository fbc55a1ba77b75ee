"""Baseline vs IID on a knowledge graph over seeds: MRR / Hits@k tables and paired t-tests.

The baseline is the configured model with alpha = beta = 0 (OTKGE); the IID arm is the same
configuration with the comparison's alpha and beta. A seed fixes the initialisation and the
batch order of both arms, so the t-test over seeds is paired.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from iidfusion.core.progress import progress_bar
from iidfusion.core.provenance import provenance
from iidfusion.engine.results import fmt_number, mean_ci, write_results
from iidfusion.engine.runs import run_tasks
from iidfusion.engine.stats import holm, paired_test
from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.evaluate import HITS_AT
from iidfusion.tasks.kg.config import KGExperimentConfig
from iidfusion.tasks.kg.fit import fit_kg

METRICS: tuple[str, ...] = ("mrr", *(f"hits@{k}" for k in HITS_AT))
BASELINE, IID = "baseline", "iid"


@dataclass(frozen=True)
class KGRunResult:
    """Test metrics of one (arm, seed) run at its best validation epoch."""

    arm: str
    seed: int
    alpha: float
    beta: float
    best_epoch: int
    seconds: float
    valid_mrr: float
    mrr: float
    hits_at_1: float
    hits_at_3: float
    hits_at_10: float
    device: str = "cpu"  # what the run trained on, e.g. "cuda:0, 4 processes"

    def metric(self, name: str) -> float:
        return getattr(self, name.replace("@", "_at_"))


@dataclass(frozen=True)
class MetricTest:
    """Paired t-test over seeds of IID against the baseline on one test metric."""

    metric: str
    mean_difference: float
    t_statistic: float
    p_value: float
    seeds: int
    p_holm: float = math.nan  # p_value Holm-corrected over the metrics of the table


def arm_config(config: KGExperimentConfig, *, alpha: float, beta: float, seed: int) -> KGExperimentConfig:
    """``config`` with the IID weights and the seed of one run (without its own progress bar:
    the comparison draws one over the runs).
    """
    iid = dataclasses.replace(config.objective.iid, alpha=alpha, beta=beta)
    objective = dataclasses.replace(config.objective, iid=iid)
    train = dataclasses.replace(config.train, progress_bar=False)
    return dataclasses.replace(config, seed=seed, objective=objective, train=train)


def arm_folder(out: str | Path, arm: str, seed: int) -> Path:
    """Where one run of a comparison keeps its checkpoints and logs: ``<out>/runs/<arm>/seed<K>``
    (as ``iidfusion compare``'s ``<out>/runs/<method>/seed<K>``).
    """
    return Path(out) / "runs" / arm / f"seed{seed}"


@dataclass(frozen=True)
class Arm:
    """One run of a comparison: the arm's name (:data:`BASELINE` or :data:`IID`), its seed and IID weights."""

    name: str
    seed: int
    alpha: float
    beta: float


def run_comparison(
    kg: KnowledgeGraph,
    features: Mapping[str, Tensor],
    config: KGExperimentConfig,
    *,
    alpha: float,
    beta: float,
    seeds: Sequence[int],
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    out: str | Path | None = None,
) -> list[KGRunResult]:
    """Fit the baseline (alpha = beta = 0) and IID (``alpha``, ``beta``) for every seed, in order.

    ``progress``: a bar over the runs on stderr (:mod:`iidfusion.core.progress`). ``out``: the
    folder whose ``runs/<arm>/seed<K>`` (:func:`arm_folder`) receive each run's checkpoints and
    logs, as ``config.train`` asks (none when ``None``). ``log``: a line per finished run.
    """
    if not seeds:
        raise ValueError("compare needs at least one seed")
    if alpha == 0 and beta == 0:
        raise ValueError("the IID arm needs alpha > 0 or beta > 0; with both 0 it is the baseline")
    arms = [Arm(name, seed, a, b) for seed in seeds for name, (a, b) in ((BASELINE, (0.0, 0.0)), (IID, (alpha, beta)))]
    with progress_bar(len(arms), "kg compare", enabled=progress) as bar:

        def execute(arm: Arm) -> KGRunResult:
            bar.set_postfix_str(f"running {arm.name} seed {arm.seed}")
            run_dir = None if out is None else arm_folder(out, arm.name, arm.seed)
            fit = fit_kg(
                kg, features, arm_config(config, alpha=arm.alpha, beta=arm.beta, seed=arm.seed), run_dir=run_dir
            )
            test = fit.test.as_dict()
            return KGRunResult(
                arm.name,
                arm.seed,
                arm.alpha,
                arm.beta,
                fit.best_epoch,
                fit.seconds,
                fit.valid.mrr,
                test["mrr"],
                test["hits@1"],
                test["hits@3"],
                test["hits@10"],
                fit.device,
            )

        def done(count: int, arm: Arm, result: KGRunResult) -> None:
            bar.update(1)
            if log is not None:
                with bar.external_write_mode(file=sys.stderr):
                    log(
                        f"seed {arm.seed} {arm.name}: test MRR {result.mrr:.4f} (best epoch {result.best_epoch}, "
                        f"{result.seconds:.0f} s)"
                    )

        return run_tasks(arms, 1, execute, done)


def paired_metric_tests(results: Sequence[KGRunResult]) -> list[MetricTest]:
    """The paired t-test (:func:`~iidfusion.engine.stats.paired_test`) of IID vs baseline per
    metric over the seeds both arms ran (NaN if undefined); ``p_holm`` corrects over the metrics.
    """
    by_arm = {arm: {r.seed: r for r in results if r.arm == arm} for arm in (BASELINE, IID)}
    seeds = sorted(set(by_arm[BASELINE]) & set(by_arm[IID]))
    tests = []
    for metric in METRICS:
        iid = [by_arm[IID][s].metric(metric) for s in seeds]
        baseline = [by_arm[BASELINE][s].metric(metric) for s in seeds]
        test = paired_test(iid, baseline)
        tests.append(MetricTest(metric, test.mean_difference, test.t_statistic, test.p_value, len(seeds)))
    adjusted = holm([t.p_value for t in tests])
    return [dataclasses.replace(t, p_holm=p) for t, p in zip(tests, adjusted, strict=True)]


def markdown_report(results: Sequence[KGRunResult], tests: Sequence[MetricTest], title: str) -> str:
    """The table (mean over seeds of the filtered test metrics, with its 95 % t interval) and the paired t-tests."""
    header = (
        "| arm | alpha | beta | " + " | ".join(m.replace("mrr", "MRR").replace("hits", "Hits") for m in METRICS) + " |"
    )
    lines = [
        f"# {title}",
        "",
        "Filtered test metrics, both directions: mean over seeds ± the half-width of its 95 % t interval "
        "(n/a with one seed).",
        "",
        header,
    ]
    lines.append("|---|---:|---:|" + "---:|" * len(METRICS))
    for arm in (BASELINE, IID):
        runs = [r for r in results if r.arm == arm]
        if runs:
            cells = [mean_ci([r.metric(m) for r in runs], 3) for m in METRICS]
            lines.append(f"| {arm} | {runs[0].alpha:g} | {runs[0].beta:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired t-test over seeds, IID − baseline; p (Holm): corrected over the {len(tests)} metrics:",
        "",
        "| metric | Δ mean | t | p | p (Holm) | seeds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in tests:
        lines.append(
            f"| {t.metric} | {fmt_number(t.mean_difference, '+.4f')} | {fmt_number(t.t_statistic, '.2f')} | "
            f"{fmt_number(t.p_value, '.3g')} | {fmt_number(t.p_holm, '.3g')} | {t.seeds} |"
        )
    return "\n".join(lines) + "\n"


def write_comparison(out: str | Path, results: Sequence[KGRunResult], config: KGExperimentConfig, title: str) -> str:
    """Write results.csv, results.json and results.md to ``out`` all-or-nothing
    (:func:`~iidfusion.engine.results.write_results`); returns the markdown.

    The provenance names the devices the runs trained on.
    """
    if not results:
        raise ValueError("no results to write")
    tests = paired_metric_tests(results)
    report = markdown_report(results, tests, title)
    payload = {
        "runs": [dataclasses.asdict(r) for r in results],
        "paired_tests": [dataclasses.asdict(t) for t in tests],
        **provenance(config, device="; ".join(dict.fromkeys(r.device for r in results))),
    }
    write_results(
        out,
        rows=[dataclasses.asdict(r) for r in results],
        fieldnames=[f.name for f in dataclasses.fields(KGRunResult)],
        payload=payload,
        report=report,
    )
    return report
