import json
import math
from dataclasses import replace

import pytest

from iidfusion.tasks.classification.report import (
    CLASS_FILES,
    RESULT_FILES,
    Confusion,
    EvalResult,
    average_accuracy,
    comparison_pairs,
    latex_escape,
    markdown_choices,
    markdown_table,
    markdown_tests,
    paired_tests,
    write_report,
)


def _results(shift: dict[str, list[float]], levels=(0.0, 5.0)) -> list[EvalResult]:
    rows = []
    for method, per_seed in shift.items():
        for seed, base in enumerate(per_seed):
            for level in levels:
                acc = base - 0.01 * level
                rows.append(EvalResult(method, seed, level, "all", acc, acc - 0.05))
    return rows


def test_pairs_follow_the_paper():
    pairs = comparison_pairs(["lf-static", "if-static", "iid-l", "qmf", "iid-q", "iid-q-no-dc", "iid-p-no-ic", "pdf"])
    assert pairs == [("iid-l", "lf-static"), ("iid-l", "if-static"), ("iid-q", "qmf"), ("iid-q", "iid-q-no-dc")]


def test_tables_give_the_mean_and_its_95_percent_t_interval_and_n_a_for_one_seed():
    from scipy.stats import t

    results = _results({"lf-static": [0.80, 0.84], "iid-l": [0.90, 0.90]})
    avg = average_accuracy(results)
    assert avg["lf-static"] == pytest.approx({0: 77.5, 1: 81.5})
    half = t.ppf(0.975, 1) * math.sqrt(8) / math.sqrt(2)  # two seeds 4 points apart: std sqrt(8)
    lines = markdown_table(results).strip().splitlines()
    assert lines[0] == "| Method | ε=0 | ε=5 | Avg Acc |"
    assert lines[2] == f"| lf-static | 82.00 ± {half:.2f} | 77.00 ± {half:.2f} | 79.50 ± {half:.2f} |"
    assert lines[3] == "| iid-l | 90.00 ± 0.00 | 85.00 ± 0.00 | 87.50 ± 0.00 |"
    f1 = markdown_table(results, "macro_f1").strip().splitlines()
    assert f1[0] == "| Method | ε=0 | ε=5 | Avg F1 |" and f1[3].startswith("| iid-l | 85.00 ± 0.00 |")
    one_seed = markdown_table(_results({"qmf": [0.7]})).strip().splitlines()
    assert one_seed[2] == "| qmf | 70.00 ± n/a | 65.00 ± n/a | 67.50 ± n/a |"


def test_paired_t_test_against_scipy():
    from scipy.stats import ttest_rel

    results = _results({"if-static": [0.80, 0.84, 0.81], "iid-l": [0.83, 0.85, 0.86]})
    (test,) = paired_tests(results)
    expected = ttest_rel([85.5, 82.5, 83.5], [82.5, 81.5, 78.5])
    assert (test.method, test.reference, test.seeds) == ("iid-l", "if-static", 3)
    assert test.mean_difference == pytest.approx(3.0)
    assert test.p_value == pytest.approx(expected.pvalue) and test.t_statistic == pytest.approx(expected.statistic)


def test_every_table_of_paired_tests_is_holm_corrected():
    """iid-p against pdf, if-pdf and its two ablations: four tests, Holm's step-down beside each raw p."""
    accuracies = {
        "pdf": [0.80, 0.84, 0.81, 0.79],
        "if-pdf": [0.81, 0.83, 0.80, 0.80],
        "iid-p-no-ic": [0.82, 0.82, 0.83, 0.8],
        "iid-p-no-dc": [0.8, 0.85, 0.8, 0.79],
        "iid-p": [0.83, 0.85, 0.86, 0.82],
    }
    tests = paired_tests(_results(accuracies))
    assert len(tests) == 4
    raw = sorted((t.p_value, t.p_holm) for t in tests)
    expected, running = [], 0.0
    for rank, (p, _) in enumerate(raw):
        running = max(running, min(1.0, (4 - rank) * p))
        expected.append(running)
    assert [h for _, h in raw] == pytest.approx(expected)
    assert all(t.p_holm >= t.p_value for t in tests)
    assert "| p | p (Holm) | seeds |" in markdown_tests(tests)


def test_single_seed_gives_undefined_test():
    (test,) = paired_tests(_results({"pdf": [0.7], "iid-p": [0.8]}))
    assert math.isnan(test.p_value) and test.seeds == 1


def test_write_report_files(tmp_path):
    results = _results({"qmf": [0.7, 0.72], "iid-q": [0.75, 0.74]})
    results[0] = replace(results[0], accuracy=0.7000000286102295)  # float32 noise, as a metric gives it
    confusions = [
        Confusion("qmf", 0.0, ("cat", "dog_1"), ((8, 2), (1, 9)), 2),
        Confusion("iid-q", 0.0, ("cat", "dog_1"), ((10, 0), (0, 10)), 2),
    ]
    report = write_report(tmp_path, results, {"data": "x"}, "demo_set", confusions=confusions)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RESULT_FILES + CLASS_FILES)
    assert "| iid-q | qmf |" in report and (tmp_path / "results.md").read_text() == report
    assert "95% confidence interval" in report and "Test macro-F1 (%)" in report and "| dog_1 | 1 | 9 |" in report
    payload = json.loads((tmp_path / "results.json").read_text())
    assert len(payload["results"]) == 8 and payload["config"] == {"data": "x"}
    assert payload["results"][0]["accuracy"] == 0.7, "numbers for people are rounded at writing"
    summary = {(r["method"], r["metric"], r["noise"]): r for r in payload["summary"]}
    assert summary["qmf", "accuracy", 0.0]["seeds"] == 2 and summary["iid-q", "macro_f1", "avg"]["ci95"] > 0
    assert payload["provenance"]["iidfusion"] and "lightning" in payload["provenance"]
    assert payload["paired_tests"][0]["method"] == "iid-q"
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0] == "method,seed,noise,noise_view,accuracy,macro_f1" and len(csv_lines) == 9
    assert csv_lines[1] == "qmf,0,0.0,all,0.7,0.65"
    assert (tmp_path / "accuracy_vs_noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "accuracy_vs_noise.pdf").read_bytes()[:4] == b"%PDF"
    tex = (tmp_path / "results.tex").read_text()
    assert tex.count("\\begin{tabular}{lrrr}") == 2 and "\\toprule" in tex and "demo\\_set" in tex
    assert "Method & $\\varepsilon$=0 & $\\varepsilon$=5 & Avg Acc \\\\" in tex
    assert "qmf & 71.00 $\\pm$ " in tex and "95\\% confidence interval" in tex
    per_class = (tmp_path / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "method,noise,seeds,class,precision,recall,f1,support"
    assert per_class[1] == "qmf,0.0,2,cat,0.888889,0.8,0.842105,10"
    matrices = json.loads((tmp_path / "confusion_matrices.json").read_text())
    assert matrices["methods"]["qmf"] == {"seeds": 2, "classes": ["cat", "dog_1"], "counts": [[8, 2], [1, 9]]}


def test_per_class_metrics_of_a_confusion_matrix():
    rows = Confusion("m", 0.0, ("a", "b", "c"), ((3, 0, 1), (0, 0, 0), (1, 0, 0)), 1).per_class()
    assert rows[0] == {"class": "a", "precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert math.isnan(rows[1]["precision"]) and math.isnan(rows[1]["recall"]) and rows[1]["support"] == 0
    assert rows[2]["precision"] == rows[2]["recall"] == rows[2]["f1"] == 0.0 and rows[2]["support"] == 1


def test_latex_escapes_what_latex_would_read():
    assert latex_escape("a_b & 50% ±ε {x}") == "a\\_b \\& 50\\% $\\pm$$\\varepsilon$ \\{x\\}"


def test_write_report_refuses_empty(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path, [], {}, "x")
    assert list(tmp_path.iterdir()) == []


def test_the_choices_of_tuning_are_listed_per_method_with_their_seeds():
    def run(method, seed, chosen, space):
        return {"method": method, "seed": seed, "tuning": {"chosen": chosen, "space": space}}

    grid = {"l2": [0.01, 0.03]}
    runs = [
        run("pdf", 1, {"l2": 0.03}, grid),
        run("pdf", 0, {"l2": 0.01}, grid),
        run("pdf", 2, {"l2": 0.03}, grid),
        run("if-static", 0, {}, {}),
        {"method": "lf-static", "seed": 0, "tuning": None},
    ]
    text = markdown_choices(runs)
    assert "| pdf | l2: 0.01, 0.03 | l2=0.01 (0); l2=0.03 (1, 2) |" in text
    assert "| if-static | (not tuned) | (defaults) (0) |" in text and "lf-static" not in text
    assert markdown_choices([{"method": "pdf", "seed": 0}]) == ""
