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

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from iidfusion.core.provenance import provenance
from iidfusion.engine.results import fmt_number, mean_std, write_results
from iidfusion.engine.stats import holm, paired_test
from iidfusion.fusion.methods import MethodSpec, get_method

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
    p_holm: float = math.nan  # p_value Holm-corrected over the tests of one table (engine.stats.holm)


RESULT_FIELDS = tuple(f.name for f in fields(EvalResult))


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


PAIR_KINDS = ("bases", "ablations", "if_over_lf")


def comparison_pairs(methods: Sequence[str], kinds: Sequence[str] = ("bases", "ablations")) -> list[tuple[str, str]]:
    """(method, reference) pairs among ``methods``, in the order of ``methods``, of the ``kinds``
    asked: ``bases``, each full IID method (L_ic and L_dc) against its bases (same weight
    strategy, neither term, LF and IF); ``ablations``, each full IID method against its
    ablations (same strategy and mode, one of the two terms); ``if_over_lf``, each IF base
    against its LF base (same strategy).
    """
    unknown = [kind for kind in kinds if kind not in PAIR_KINDS]
    if unknown:
        raise ValueError(f"unknown kind of comparison {unknown[0]!r}; expected some of {list(PAIR_KINDS)}")
    specs: list[MethodSpec] = [get_method(m) for m in methods]
    pairs = []
    for spec in specs:
        full = spec.use_ic and spec.use_dc
        if_base = spec.mode == "if" and not (spec.use_ic or spec.use_dc)
        for ref in specs:
            same_strategy = ref.strategy == spec.strategy
            is_base = same_strategy and not (ref.use_ic or ref.use_dc)
            is_ablation = same_strategy and ref.mode == spec.mode and ref.use_ic != ref.use_dc
            if (
                (full and "bases" in kinds and is_base)
                or (full and "ablations" in kinds and is_ablation)
                or (if_base and "if_over_lf" in kinds and is_base and ref.mode == "lf")
            ):
                pairs.append((spec.name, ref.name))
    return pairs


def paired_tests(results: Sequence[EvalResult]) -> list[PairedTest]:
    """The paired t-test (:func:`~iidfusion.engine.stats.paired_test`) over the seeds both methods
    ran, on Avg Acc, for every pair of :func:`comparison_pairs`; ``p_holm`` corrects the p-values
    over all of them.
    """
    avg = average_accuracy(results)
    tests = []
    for method, reference in comparison_pairs(list(avg)):
        seeds = sorted(set(avg[method]) & set(avg[reference]))
        test = paired_test([avg[method][s] for s in seeds], [avg[reference][s] for s in seeds])
        tests.append(PairedTest(method, reference, test.mean_difference, test.t_statistic, test.p_value, len(seeds)))
    adjusted = holm([t.p_value for t in tests])
    return [replace(t, p_holm=p) for t, p in zip(tests, adjusted, strict=True)]


def markdown_tests(tests: Sequence[PairedTest]) -> str:
    """The paired t-tests as a markdown table (difference in Avg Acc percentage points)."""
    lines = [
        "| IID variant | reference | Δ Avg Acc (pp) | t | p | p (Holm) | seeds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for t in tests:
        lines.append(
            f"| {t.method} | {t.reference} | {fmt_number(t.mean_difference, '+.2f')} | "
            f"{fmt_number(t.t_statistic, '.2f')} | {fmt_number(t.p_value, '.3g')} | {fmt_number(t.p_holm, '.3g')} | "
            f"{t.seeds} |"
        )
    return "\n".join(lines) + "\n"


def results_payload(
    results: Sequence[EvalResult],
    tests: Sequence[PairedTest],
    config: dict[str, Any],
    runs: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """results.json: every evaluation, the t-tests, the config, and per run its validation score,
    cost and, when tuned, the chosen hyperparameters and every trial.
    """
    return {
        "results": [asdict(r) for r in results],
        "paired_tests": [asdict(t) for t in tests],
        "runs": list(runs),
        **provenance(config),
    }


def plot_accuracy(results: Sequence[EvalResult], path: str | Path) -> None:
    """Accuracy (%) against noise level, one line per method, error bars = std over seeds."""
    import matplotlib  # the optional extra `plot`

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
    accuracy table and the t-tests.
    """
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
    """Write results.csv, results.json, results.md and the plot to ``out`` all-or-nothing
    (:func:`~iidfusion.engine.results.write_results`).

    ``notes``: paragraphs of results.md before the tables. Returns the markdown report.
    """
    if not results:
        raise ValueError("no results to write")
    tests = paired_tests(results)
    report = render_report(results, tests, title, notes)
    write_results(
        out,
        rows=[asdict(r) for r in results],
        fieldnames=RESULT_FIELDS,
        payload=results_payload(results, tests, config, runs),
        report=report,
        figures={"accuracy_vs_noise.png": lambda path: plot_accuracy(results, path)},
    )
    return report
