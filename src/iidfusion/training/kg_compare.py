"""Baseline vs IID on a knowledge graph over seeds: MRR / Hits@k tables and paired t-tests.

The baseline is the configured model with alpha = beta = 0 (OTKGE); the IID arm is the same
configuration with the comparison's alpha and beta. A seed fixes the initialisation and the
batch order of both arms, so the t-test over seeds is paired.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.evaluate import HITS_AT
from iidfusion.provenance import provenance
from iidfusion.core.config import MAX_RUNS, at_least, merge_config, option, redefault
from iidfusion.training.config import LossConfig, read_config_file
from iidfusion.training.kg_fit import KGExperimentConfig, fit_kg, kg_config_from_dict
from iidfusion.training.outputs import staged_files
from iidfusion.training.report import fmt_number, holm, mean_std, paired_t_test

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


@dataclass(frozen=True)
class KGCompareConfig:
    """The ``compare`` section of a KG config: ``seeds`` N (seeds 0..N-1, as ``--seeds`` of every
    command) and the IID arm's ``alpha`` / ``beta`` (default: the library's ``loss.alpha`` / ``loss.beta``, as ``fit``)."""

    seeds: int = option(3, "seeds 0..N-1 of each arm", rule=at_least(1, MAX_RUNS))
    alpha: float = redefault(LossConfig, "alpha", LossConfig.alpha, "the IID arm's weight of L_ic")
    beta: float = redefault(LossConfig, "beta", LossConfig.beta, "the IID arm's weight of L_dc")


def load_kg_config(path: str | Path | None) -> tuple[KGExperimentConfig, KGCompareConfig]:
    """The experiment and its ``compare`` section from one read of the YAML file at ``path``
    (None: the defaults)."""
    if path is None:
        return KGExperimentConfig(), KGCompareConfig()
    values = read_config_file(path)
    compare = merge_config(KGCompareConfig(), values.pop("compare", None) or {}, str(path), "compare.")
    return kg_config_from_dict(values, str(path)), compare


def arm_config(config: KGExperimentConfig, *, alpha: float, beta: float, seed: int) -> KGExperimentConfig:
    """``config`` with the IID weights and the seed of one run (without its own progress bar:
    the comparison draws one over the runs)."""
    iid = dataclasses.replace(config.objective.iid, alpha=alpha, beta=beta)
    objective = dataclasses.replace(config.objective, iid=iid)
    train = dataclasses.replace(config.train, progress_bar=False)
    return dataclasses.replace(config, seed=seed, objective=objective, train=train)


def arm_folder(out: str | Path, arm: str, seed: int) -> Path:
    """Where one run of a comparison keeps its checkpoints and logs: ``<out>/runs/<arm>/seed<K>``
    (as ``iidfusion compare``'s ``<out>/runs/<method>/seed<K>``)."""
    return Path(out) / "runs" / arm / f"seed{seed}"


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
    """Fit the baseline (alpha = beta = 0) and IID (``alpha``, ``beta``) for every seed.

    ``progress``: a bar over the runs on stderr (:mod:`iidfusion.progress`). ``out``: the
    folder whose ``runs/<arm>/seed<K>`` (:func:`arm_folder`) receive each run's checkpoints and
    logs, as ``config.train`` asks (none when ``None``).
    """
    from iidfusion.progress import progress_bar

    if not seeds:
        raise ValueError("compare needs at least one seed")
    if alpha == 0 and beta == 0:
        raise ValueError("the IID arm needs alpha > 0 or beta > 0; with both 0 it is the baseline")
    with progress_bar(2 * len(seeds), "kg compare", enabled=progress) as bar:
        return _run_arms(kg, features, config, alpha, beta, seeds, log, bar, out)


def _run_arms(kg: KnowledgeGraph, features: Mapping[str, Tensor], config: KGExperimentConfig, alpha: float, beta: float,
              seeds: Sequence[int], log: Callable[[str], None] | None, bar: Any, out: str | Path | None) -> list[KGRunResult]:
    """Both arms of every seed, in order (:func:`run_comparison`); ``bar`` advances by each run."""
    results = []
    for seed in seeds:
        for arm, (a, b) in ((BASELINE, (0.0, 0.0)), (IID, (alpha, beta))):
            bar.set_postfix_str(f"running {arm} seed {seed}")
            run_dir = None if out is None else arm_folder(out, arm, seed)
            fit = fit_kg(kg, features, arm_config(config, alpha=a, beta=b, seed=seed), run_dir=run_dir)
            bar.update(1)
            test = fit.test.as_dict()
            results.append(
                KGRunResult(
                    arm, seed, a, b, fit.best_epoch, fit.seconds, fit.valid.mrr,
                    test["mrr"], test["hits@1"], test["hits@3"], test["hits@10"], fit.device,
                )  # fmt: skip
            )
            if log is not None:
                with bar.external_write_mode(file=sys.stderr):
                    log(f"seed {seed} {arm}: test MRR {test['mrr']:.4f} (best epoch {fit.best_epoch}, {fit.seconds:.0f} s)")
    return results


def paired_metric_tests(results: Sequence[KGRunResult]) -> list[MetricTest]:
    """:func:`~iidfusion.training.report.paired_t_test` of IID vs baseline per metric over the
    seeds both arms ran (NaN if undefined); ``p_holm`` corrects over the metrics."""
    by_arm = {arm: {r.seed: r for r in results if r.arm == arm} for arm in (BASELINE, IID)}
    seeds = sorted(set(by_arm[BASELINE]) & set(by_arm[IID]))
    tests = []
    for metric in METRICS:
        iid = [by_arm[IID][s].metric(metric) for s in seeds]
        baseline = [by_arm[BASELINE][s].metric(metric) for s in seeds]
        tests.append(MetricTest(metric, *paired_t_test(iid, baseline), len(seeds)))
    adjusted = holm([t.p_value for t in tests])
    return [dataclasses.replace(t, p_holm=p) for t, p in zip(tests, adjusted)]


def markdown_report(results: Sequence[KGRunResult], tests: Sequence[MetricTest], title: str) -> str:
    """The table (mean ± std over seeds of the filtered test metrics) and the paired t-tests."""
    header = "| arm | alpha | beta | " + " | ".join(m.replace("mrr", "MRR").replace("hits", "Hits") for m in METRICS) + " |"
    lines = [f"# {title}", "", "Filtered test metrics, both directions, mean ± std over seeds.", "", header]
    lines.append("|---|---:|---:|" + "---:|" * len(METRICS))
    for arm in (BASELINE, IID):
        runs = [r for r in results if r.arm == arm]
        if runs:
            cells = [mean_std([r.metric(m) for r in runs], 3) for m in METRICS]
            lines.append(f"| {arm} | {runs[0].alpha:g} | {runs[0].beta:g} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired t-test over seeds, IID − baseline; p (Holm): corrected over the {len(tests)} metrics:", "",
              "| metric | Δ mean | t | p | p (Holm) | seeds |", "|---|---:|---:|---:|---:|---:|"]
    for t in tests:
        lines.append(f"| {t.metric} | {fmt_number(t.mean_difference, '+.4f')} | {fmt_number(t.t_statistic, '.2f')} | "
                     f"{fmt_number(t.p_value, '.3g')} | {fmt_number(t.p_holm, '.3g')} | {t.seeds} |")
    return "\n".join(lines) + "\n"


def _csv(results: Sequence[KGRunResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in dataclasses.fields(KGRunResult)], lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(dataclasses.asdict(r))
    return buffer.getvalue()


def write_comparison(out: str | Path, results: Sequence[KGRunResult], config: KGExperimentConfig, title: str) -> str:
    """Write results.csv, results.json and results.md to ``out`` all-or-nothing; returns the markdown.

    The provenance names the devices the runs trained on."""
    if not results:
        raise ValueError("no results to write")
    tests = paired_metric_tests(results)
    report = markdown_report(results, tests, title)
    payload: dict[str, Any] = {
        "runs": [dataclasses.asdict(r) for r in results],
        "paired_tests": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(t).items()}
            for t in tests
        ],
        **provenance(config, device="; ".join(dict.fromkeys(r.device for r in results))),
    }
    with staged_files(out) as stage:
        stage.write_text("results.csv", _csv(results))
        stage.write_text("results.json", json.dumps(payload, indent=2) + "\n")
        stage.write_text("results.md", report)
    return report
