import json
import math

import pytest

from iidfusion.tasks.classification.report import (
    RESULT_FILES,
    EvalResult,
    average_accuracy,
    comparison_pairs,
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


def test_table_mean_std_and_avg():
    results = _results({"lf-static": [0.80, 0.84], "iid-l": [0.90, 0.90]})
    avg = average_accuracy(results)
    assert avg["lf-static"] == pytest.approx({0: 77.5, 1: 81.5})
    table = markdown_table(results)
    lines = table.strip().splitlines()
    assert lines[0] == "| Method | ε=0 | ε=5 | Avg Acc |"
    assert lines[2] == "| lf-static | 82.00 ± 2.83 | 77.00 ± 2.83 | 79.50 ± 2.83 |"
    assert lines[3] == "| iid-l | 90.00 ± 0.00 | 85.00 ± 0.00 | 87.50 ± 0.00 |"


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
    report = write_report(tmp_path, results, {"data": "x"}, "demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RESULT_FILES)
    assert "| iid-q | qmf |" in report and (tmp_path / "results.md").read_text() == report
    payload = json.loads((tmp_path / "results.json").read_text())
    assert len(payload["results"]) == 8 and payload["config"] == {"data": "x"}
    assert payload["provenance"]["iidfusion"] and "lightning" in payload["provenance"]
    assert payload["paired_tests"][0]["method"] == "iid-q"
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0] == "method,seed,noise,noise_view,accuracy,macro_f1" and len(csv_lines) == 9
    assert (tmp_path / "accuracy_vs_noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_refuses_empty(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        write_report(tmp_path, [], {}, "x")
    assert list(tmp_path.iterdir()) == []
