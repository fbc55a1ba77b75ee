"""Results of a comparison: the paper-style tables, paired t-tests, per-class metrics, plots, CSV,
JSON and LaTeX.

The unit of a result is one (method, seed, noise level) evaluation. Tables follow the paper:
accuracy (in %) per noise level and "Avg Acc", the per-seed mean over levels; macro-F1 the same
way. Each cell is the mean over seeds ± the half-width of its 95 % confidence interval, a
Student t interval over the seeds (:func:`~iidfusion.engine.stats.t_interval`; n/a with one
seed, which gives no interval). Significance is a paired t-test over seeds (the same seed gives
both methods the same split and initialisation stream) on Avg Acc, of each IID variant against
each of its bases (same weight strategy, without L_ic and L_dc, in LF and IF form) and of each
full IID method against its ablations. Per class, precision, recall and F1 come from the test
predictions of every seed pooled (:class:`Confusion`: the confusion matrices summed over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from iidfusion.core.provenance import provenance
from iidfusion.engine import results as result_files
from iidfusion.engine.figures import figure_files, new_figure
from iidfusion.engine.results import csv_text, fmt_number, format_params, json_text, mean_ci, rounded, write_results
from iidfusion.engine.stats import CONFIDENCE, holm, paired_test, t_interval
from iidfusion.fusion.methods import MethodSpec, get_method

PLOT = "accuracy_vs_noise"  # the stem of the plot's PNG and PDF
RESULT_FILES = (*result_files.RESULT_FILES, "results.tex", f"{PLOT}.png", f"{PLOT}.pdf")
CLASS_FILES = ("per_class.csv", "confusion_matrices.json")  # with the test predictions' confusion matrices
METRICS = {"accuracy": ("accuracy", "Avg Acc"), "macro_f1": ("macro-F1", "Avg F1")}  # field: (name, average column)
MAX_CLASSES_SHOWN = 20  # results.md shows per-class tables and confusion matrices up to this many classes


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


@dataclass(frozen=True)
class Confusion:
    """The test predictions of ``method`` at noise level ``noise``, pooled over its ``seeds``:
    ``counts[t][p]`` samples of class ``classes[t]`` predicted as ``classes[p]``.
    """

    method: str
    noise: float
    classes: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    seeds: int

    def per_class(self) -> list[dict[str, Any]]:
        """Per class: precision, recall and F1 in [0, 1] (NaN where undefined: a class never
        predicted has no precision, one absent from the test split no recall) and its support.
        """
        counts = np.asarray(self.counts, dtype=float).reshape(len(self.classes), len(self.classes))
        rows = []
        for k, name in enumerate(self.classes):
            hits, predicted, support = counts[k, k], counts[:, k].sum(), counts[k, :].sum()
            precision = hits / predicted if predicted else math.nan
            recall = hits / support if support else math.nan
            f1 = 2 * hits / (predicted + support) if predicted + support else math.nan
            rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(support)})
        return rows


RESULT_FIELDS = tuple(f.name for f in fields(EvalResult))


def _noise_label(level: float) -> str:
    return f"{level:g}"


def _ordered(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def seed_averages(results: Sequence[EvalResult], metric: str = "accuracy") -> dict[str, dict[int, float]]:
    """``metric`` in % per method and seed, averaged over the evaluated noise levels."""
    per_run: dict[str, dict[int, list[float]]] = {}
    for r in results:
        per_run.setdefault(r.method, {}).setdefault(r.seed, []).append(getattr(r, metric))
    return {m: {s: 100.0 * float(np.mean(a)) for s, a in seeds.items()} for m, seeds in per_run.items()}


def average_accuracy(results: Sequence[EvalResult]) -> dict[str, dict[int, float]]:
    """Avg Acc in % per method and seed: the mean accuracy over the evaluated noise levels."""
    return seed_averages(results, "accuracy")


def metric_cells(results: Sequence[EvalResult], metric: str = "accuracy") -> tuple[list[str], list[list[Any]]]:
    """The table of ``metric`` (a field of :class:`EvalResult`, in %): the column headers and, per
    method, its name then one list of values over seeds per noise level and one of the averages
    over levels (the last column).
    """
    levels = sorted(_ordered(r.noise for r in results))
    averages = seed_averages(results, metric)
    header = ["Method", *(f"ε={_noise_label(level)}" for level in levels), METRICS[metric][1]]
    rows: list[list[Any]] = []
    for method in _ordered(r.method for r in results):
        per_level = [
            [100.0 * getattr(r, metric) for r in results if r.method == method and r.noise == level] for level in levels
        ]
        rows.append([method, *per_level, list(averages[method].values())])
    return header, rows


def markdown_table(results: Sequence[EvalResult], metric: str = "accuracy") -> str:
    """``metric`` (%), mean ± 95 % CI half-width over seeds per method and noise level, plus the average."""
    header, rows = metric_cells(results, metric)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for method, *values in rows:
        lines.append("| " + " | ".join([method, *(mean_ci(v) if v else "-" for v in values)]) + " |")
    return "\n".join(lines) + "\n"


def seed_counts(results: Sequence[EvalResult]) -> str:
    """How many seeds the methods ran: "5", or "3 to 5" when they differ."""
    counts = sorted({len({r.seed for r in results if r.method == m}) for m in _ordered(r.method for r in results)})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"


def interval_sentence(results: Sequence[EvalResult]) -> str:
    """What every ± of the tables is."""
    return (
        f"mean over {seed_counts(results)} seeds ± the half-width of the {CONFIDENCE:.0%} confidence interval of "
        "the mean (Student's t over the seeds, n - 1 degrees of freedom; n/a with one seed, which gives no interval)"
    )


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
    """results.json: every evaluation, the tables' means and intervals (:func:`summary_rows`), the
    t-tests, the config, and per run its validation score, cost and, when tuned, the chosen
    hyperparameters and every trial.
    """
    return {
        "results": [asdict(r) for r in results],
        "summary": summary_rows(results),
        "paired_tests": [asdict(t) for t in tests],
        "runs": list(runs),
        **provenance(config),
    }


def plot_accuracy(results: Sequence[EvalResult]) -> Any:
    """Accuracy (%) against noise level, one line per method: the mean over seeds, error bars its
    95 % t interval (none with one seed); the title says so. Returns the matplotlib figure.
    """
    figure, (ax,) = new_figure(width=7.0, height=4.5)
    levels = sorted(_ordered(r.noise for r in results))
    for method in _ordered(r.method for r in results):
        accs = [[100.0 * r.accuracy for r in results if r.method == method and r.noise == lv] for lv in levels]
        means, halves = zip(*(t_interval(a) for a in accs), strict=True)
        errors = [0.0 if math.isnan(h) else h for h in halves]
        style = "-" if get_method(method).use_ic or get_method(method).use_dc else "--"
        ax.errorbar(levels, means, yerr=errors, label=method, linestyle=style, marker="o", capsize=3)
    seeds = seed_counts(results)
    bars = "no interval" if seeds == "1" else f"error bars: {CONFIDENCE:.0%} CI of the mean (Student's t)"
    ax.set_title(f"Test accuracy: mean over {seeds} seed{'s' if seeds != '1' else ''}; {bars}", fontsize=10)
    ax.set_xlabel("noise level ε (Gaussian, std ε/10 of the view)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(levels)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    return figure


def latex_escape(text: str) -> str:
    """``text`` as LaTeX prints it literally (method and data set names: ``_``, ``&``, ``%``, ...),
    with ± and the Greek letters of the tables in math mode.
    """
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
    specials |= {"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    specials |= {"±": r"$\pm$", "ε": r"$\varepsilon$", "Δ": r"$\Delta$"}
    return "".join(specials.get(char, char) for char in text)


def latex_tables(results: Sequence[EvalResult], title: str) -> str:
    """results.tex: the accuracy and macro-F1 tables of results.md (the same numbers), each a
    booktabs ``table`` whose caption says what ± is.
    """
    parts = [
        f"% {latex_escape(title)}: written by iidfusion; needs \\usepackage{{booktabs}}.\n",
    ]
    for metric, (name, _) in METRICS.items():
        header, rows = metric_cells(results, metric)
        caption = latex_escape(f"{title}: test {name} (%), {interval_sentence(results)}.")
        lines = [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{caption}}}",
            "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
            "\\toprule",
            " & ".join(latex_escape(h) for h in header) + " \\\\",
            "\\midrule",
        ]
        for method, *values in rows:
            cells = [latex_escape(method)]
            for v in values:
                mean, half = t_interval(v)
                cells.append(f"{mean:.2f} $\\pm$ {fmt_number(half, '.2f')}" if v else "-")
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def summary_rows(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """results.json's summary: per method, metric and noise level (``"avg"``: the average over
    levels), the mean over seeds in %, its 95 % t interval's half-width and the seeds.
    """
    rows = []
    for metric in METRICS:
        _, table = metric_cells(results, metric)
        levels = [*sorted(_ordered(r.noise for r in results)), "avg"]
        for method, *values in table:
            for level, v in zip(levels, values, strict=True):
                mean, half = t_interval(v)
                rows.append(
                    {"method": method, "metric": metric, "noise": level, "mean": mean, "ci95": half, "seeds": len(v)}
                )
    return rows


def class_report(confusions: Sequence[Confusion]) -> str:
    """results.md's per-class section: per method, precision / recall / F1 per class and the
    confusion matrix, up to :data:`MAX_CLASSES_SHOWN` classes (else only the files name them).
    """
    if not confusions:
        return ""
    first = confusions[0]
    lines = [
        f"## Per class at ε={_noise_label(first.noise)}",
        "",
        "Precision, recall and F1 (%) per class, from the test predictions of every seed pooled (the confusion "
        "matrices summed over the seeds); n/a: a class never predicted (precision) or absent (recall). "
        "Also in per_class.csv and confusion_matrices.json.",
        "",
    ]
    if len(first.classes) > MAX_CLASSES_SHOWN:
        return "\n".join([*lines, f"{len(first.classes)} classes: see the files.", ""])
    for confusion in confusions:
        lines += [
            f"### {confusion.method} ({confusion.seeds} seeds)",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in confusion.per_class():
            cells = [fmt_number(100 * row[k], ".2f") for k in ("precision", "recall", "f1")]
            lines.append(f"| {row['class']} | {' | '.join(cells)} | {row['support']} |")
        lines += [
            "",
            "Confusion matrix (rows: true class, columns: predicted):",
            "",
            "| true \\ predicted | " + " | ".join(confusion.classes) + " |",
            "|---|" + "---:|" * len(confusion.classes),
            *(
                f"| {name} | " + " | ".join(str(c) for c in row) + " |"
                for name, row in zip(confusion.classes, confusion.counts, strict=True)
            ),
            "",
        ]
    return "\n".join(lines)


def class_files(confusions: Sequence[Confusion]) -> dict[str, str]:
    """per_class.csv and confusion_matrices.json of ``confusions`` (none without them)."""
    if not confusions:
        return {}
    rows = [
        {"method": c.method, "noise": c.noise, "seeds": c.seeds, **row} for c in confusions for row in c.per_class()
    ]
    matrices = {
        "pooled": "the test predictions of every seed of a method, summed; counts[true][predicted]",
        "noise": confusions[0].noise,
        "methods": {c.method: {"seeds": c.seeds, "classes": list(c.classes), "counts": c.counts} for c in confusions},
    }
    fields = ("method", "noise", "seeds", "class", "precision", "recall", "f1", "support")
    return {"per_class.csv": csv_text(rounded(rows), fields), "confusion_matrices.json": json_text(matrices)}


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_choices(runs: Sequence[dict[str, Any]]) -> str:
    """What tuning chose per method (``runs`` of results.json): the grid and each choice with the seeds
    that made it; "" when no run was tuned. A choice that differs from seed to seed is a sign that the
    validation split cannot tell the grid's points apart.
    """
    tuned = [run for run in runs if run.get("tuning")]
    if not tuned:
        return ""
    lines = [
        "## Hyperparameters chosen on validation",
        "",
        "Per method and seed, the trial with the best validation accuracy (ties: the lower validation loss, then "
        "the earlier grid point); the tables above report its test metrics. Every trial is in results.json.",
        "",
        "| method | grid | chosen (seeds) |",
        "|---|---|---|",
    ]
    for method in _ordered(run["method"] for run in tuned):
        mine = [run for run in tuned if run["method"] == method]
        space = mine[0]["tuning"].get("space", {})
        grid = "; ".join(f"{name}: {', '.join(map(_value, values))}" for name, values in space.items())
        chosen: dict[str, list[str]] = {}
        for run in sorted(mine, key=lambda r: r["seed"]):
            chosen.setdefault(format_params(run["tuning"]["chosen"]) or "(defaults)", []).append(str(run["seed"]))
        cells = "; ".join(f"{setting} ({', '.join(seeds)})" for setting, seeds in chosen.items())
        lines.append(f"| {method} | {grid or '(not tuned)'} | {cells} |")
    return "\n".join(lines) + "\n"


def render_report(
    results: Sequence[EvalResult],
    tests: Sequence[PairedTest],
    title: str,
    notes: Sequence[str] = (),
    confusions: Sequence[Confusion] = (),
    runs: Sequence[dict[str, Any]] = (),
) -> str:
    """The markdown report: ``notes`` (a paragraph each, e.g. the departures from the paper), the
    accuracy and macro-F1 tables, the t-tests, what tuning chose (:func:`markdown_choices` of ``runs``),
    and the per-class section of ``confusions``.
    """
    preamble = "".join(f"{note}\n\n" for note in notes)
    choices = markdown_choices(runs)
    classes = class_report(confusions)
    return (
        f"# {title}\n\n{preamble}Test accuracy (%): {interval_sentence(results)}.\n\n{markdown_table(results)}\n"
        f"Test macro-F1 (%), the same way.\n\n{markdown_table(results, 'macro_f1')}\n"
        f"## Paired t-tests over seeds (Avg Acc)\n\np: the paired t-test; p (Holm): corrected over the "
        f"{len(tests)} tests of this table.\n\n{markdown_tests(tests)}"
        + (f"\n{choices}" if choices else "")
        + (f"\n{classes}" if classes else "")
    )


def write_report(
    out: str | Path,
    results: Sequence[EvalResult],
    config: dict[str, Any],
    title: str,
    *,
    runs: Sequence[dict[str, Any]] = (),
    notes: Sequence[str] = (),
    confusions: Sequence[Confusion] = (),
) -> str:
    """Write results.csv, results.json, results.md, results.tex and the plot (PNG and PDF) to
    ``out`` all-or-nothing (:func:`~iidfusion.engine.results.write_results`), and with
    ``confusions`` (one per method) per_class.csv and confusion_matrices.json.

    ``notes``: paragraphs of results.md before the tables. Returns the markdown report.
    """
    if not results:
        raise ValueError("no results to write")
    tests = paired_tests(results)
    report = render_report(results, tests, title, notes, confusions, runs)
    write_results(
        out,
        rows=[asdict(r) for r in results],
        fieldnames=RESULT_FIELDS,
        payload=results_payload(results, tests, config, runs),
        report=report,
        figures=figure_files(PLOT, lambda: plot_accuracy(results)),
        extra={"results.tex": latex_tables(results, title), **class_files(confusions)},
    )
    return report
