"""Results of a comparison: the paper-style table, paired t-tests, a plot, CSV and JSON.

The unit of a result is one (method, seed, noise level) evaluation. Tables follow the
paper: accuracy (in %) as mean +- standard deviation over seeds per noise level, and
"Avg Acc", the per-seed mean over levels, summarised the same way. Significance is a
paired t-test over seeds (the same seed gives both methods the same split and
initialisation stream) on Avg Acc, of each IID variant against each of its bases
(same weight strategy, without L_ic and L_dc, in LF and IF form) and of each full IID
method against its ablations.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from iidfusion.fusion.methods import MethodSpec, get_method
from iidfusion.provenance import provenance
from iidfusion.training.outputs import staged_files

RESULT_FILES = ("results.csv", "results.json", "results.md", "accuracy_vs_noise.png")


@dataclass(frozen=True)
class EvalResult:
    """Test metrics of one trained model at one noise level (accuracy and macro-F1 in [0, 1])."""

    method: str
    seed: int
    noise: float
    noise_view: str
    accuracy: float
    macro_f1: float


@dataclass(frozen=True)
class PairedTest:
    """Paired t-test over seeds of ``method`` against ``reference`` on Avg Acc (in %)."""

    method: str
    reference: str
    mean_difference: float
    t_statistic: float
    p_value: float
    seeds: int
    p_holm: float = math.nan  # p_value Holm-corrected over the tests of one table (:func:`holm`)


def _noise_label(level: float) -> str:
    return f"{level:g}"


def _ordered(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def average_accuracy(results: Sequence[EvalResult]) -> dict[str, dict[int, float]]:
    """Avg Acc in % per method and seed: the mean accuracy over the evaluated noise levels."""
    per_run: dict[str, dict[int, list[float]]] = {}
    for r in results:
        per_run.setdefault(r.method, {}).setdefault(r.seed, []).append(r.accuracy)
    return {m: {s: 100.0 * float(np.mean(a)) for s, a in seeds.items()} for m, seeds in per_run.items()}


def mean_std(values: Sequence[float], decimals: int = 2) -> str:
    """"mean ± sample std" of ``values`` (std 0 for a single value)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{float(np.mean(values)):.{decimals}f} ± {std:.{decimals}f}"


def markdown_table(results: Sequence[EvalResult]) -> str:
    """Accuracy (%) mean ± std over seeds per method and noise level, plus Avg Acc."""
    methods = _ordered(r.method for r in results)
    levels = sorted(_ordered(r.noise for r in results))
    avg = average_accuracy(results)
    header = ["Method", *(f"ε={_noise_label(level)}" for level in levels), "Avg Acc"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for method in methods:
        cells = [method]
        for level in levels:
            accs = [100.0 * r.accuracy for r in results if r.method == method and r.noise == level]
            cells.append(mean_std(accs) if accs else "-")
        cells.append(mean_std(list(avg[method].values())))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """(variant, reference) pairs among ``methods``: full IID vs its bases, full IID vs ablations."""
    specs: list[MethodSpec] = [get_method(m) for m in methods]
    pairs = []
    for variant in specs:
        if not (variant.use_ic and variant.use_dc):
            continue
        for ref in specs:
            same_strategy = ref.strategy == variant.strategy
            is_base = not (ref.use_ic or ref.use_dc)
            is_ablation = ref.mode == variant.mode and ref.use_ic != ref.use_dc
            if same_strategy and (is_base or is_ablation):
                pairs.append((variant.name, ref.name))
    return pairs


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and does not count as a test).

    Every table of paired tests (compare, suite, kg compare) reports these beside the raw p:
    a table of k comparisons at level 0.05 would otherwise find a "significant" difference by
    chance with probability up to 1 - 0.95^k. Holm controls that family-wise error rate
    without assuming the tests independent (they are not: they share methods and seeds).
    """
    valid = sorted((p, k) for k, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, k) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[k] = running
    return adjusted


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(mean of a - b, t, p) of scipy's ttest_rel on paired values (one per seed); t and p are
    NaN where the test is undefined: fewer than two pairs, or the same difference on every pair.
    Every paired test between two arms (compare, kg compare) is this one."""
    from scipy.stats import ttest_rel

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    mean = float(np.mean(x - y)) if len(x) else math.nan
    if len(x) >= 2 and np.ptp(x - y) > 0:
        stat = ttest_rel(x, y)
        return mean, float(stat.statistic), float(stat.pvalue)
    return mean, math.nan, math.nan


def paired_tests(results: Sequence[EvalResult]) -> list[PairedTest]:
    """:func:`paired_t_test` over the seeds both methods ran, on Avg Acc, for every comparison
    pair; ``p_holm`` corrects the p-values over all of them."""
    avg = average_accuracy(results)
    tests = []
    for method, reference in comparison_pairs(list(avg)):
        seeds = sorted(set(avg[method]) & set(avg[reference]))
        mean, t, p = paired_t_test([avg[method][s] for s in seeds], [avg[reference][s] for s in seeds])
        tests.append(PairedTest(method, reference, mean, t, p, len(seeds)))
    adjusted = holm([t.p_value for t in tests])
    return [replace(t, p_holm=p) for t, p in zip(tests, adjusted)]


def fmt_number(value: float, spec: str) -> str:
    """``value`` formatted by ``spec``; NaN (an undefined statistic) reads "n/a"."""
    return "n/a" if math.isnan(value) else format(value, spec)


def markdown_tests(tests: Sequence[PairedTest]) -> str:
    """The paired t-tests as a markdown table (difference in Avg Acc percentage points)."""
    lines = [
        "| IID variant | reference | Δ Avg Acc (pp) | t | p | p (Holm) | seeds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for t in tests:
        lines.append(
            f"| {t.method} | {t.reference} | {fmt_number(t.mean_difference, '+.2f')} | "
            f"{fmt_number(t.t_statistic, '.2f')} | {fmt_number(t.p_value, '.3g')} | {fmt_number(t.p_holm, '.3g')} | {t.seeds} |"
        )
    return "\n".join(lines) + "\n"


def results_csv(results: Sequence[EvalResult]) -> str:
    buffer = io.StringIO()
    names = list(EvalResult.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(asdict(r))
    return buffer.getvalue()


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as None and paths as strings, recursively: strict JSON."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def results_json(
    results: Sequence[EvalResult], tests: Sequence[PairedTest], config: dict[str, Any], runs: Sequence[dict[str, Any]] = ()
) -> str:
    """Machine-readable results: every evaluation, the t-tests (NaN as null), the config, and per
    run its validation score, cost and, when tuned, the chosen hyperparameters and every trial."""
    payload = {
        "results": [asdict(r) for r in results],
        "paired_tests": [asdict(t) for t in tests],
        "runs": list(runs),
        **provenance(config),
    }
    return json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n"


def plot_accuracy(results: Sequence[EvalResult], path: str | Path) -> None:
    """Accuracy (%) against noise level, one line per method, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    levels = sorted(_ordered(r.noise for r in results))
    for method in _ordered(r.method for r in results):
        accs = [[100.0 * r.accuracy for r in results if r.method == method and r.noise == lv] for lv in levels]
        means = [float(np.mean(a)) if a else math.nan for a in accs]
        stds = [float(np.std(a, ddof=1)) if len(a) > 1 else 0.0 for a in accs]
        style = "-" if get_method(method).use_ic or get_method(method).use_dc else "--"
        ax.errorbar(levels, means, yerr=stds, label=method, linestyle=style, marker="o", capsize=3)
    ax.set_xlabel("noise level ε (Gaussian, std ε/10 of the view)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(levels)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def render_report(
    results: Sequence[EvalResult], tests: Sequence[PairedTest], title: str, notes: Sequence[str] = ()
) -> str:
    """The markdown report: ``notes`` (a paragraph each, e.g. the departures from the paper), the
    accuracy table and the t-tests."""
    preamble = "".join(f"{note}\n\n" for note in notes)
    return (
        f"# {title}\n\n{preamble}Test accuracy (%), mean ± std over seeds.\n\n{markdown_table(results)}\n"
        f"## Paired t-tests over seeds (Avg Acc)\n\np: the paired t-test; p (Holm): corrected over the "
        f"{len(tests)} tests of this table.\n\n{markdown_tests(tests)}"
    )


def write_report(
    out: str | Path,
    results: Sequence[EvalResult],
    config: dict[str, Any],
    title: str,
    *,
    runs: Sequence[dict[str, Any]] = (),
    notes: Sequence[str] = (),
) -> str:
    """Write results.csv, results.json, results.md and the plot to ``out`` all-or-nothing.

    ``notes``: paragraphs of results.md before the tables. Returns the markdown report.
    """
    if not results:
        raise ValueError("no results to write")
    tests = paired_tests(results)
    report = render_report(results, tests, title, notes)
    with staged_files(out) as stage:
        stage.write_text("results.csv", results_csv(results))
        stage.write_text("results.json", results_json(results, tests, config, runs))
        stage.write_text("results.md", report)
        plot_accuracy(results, stage.path("accuracy_vs_noise.png"))
    return report
