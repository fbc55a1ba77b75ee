"""``kg compare``'s logic (iidfusion.tasks.kg.compare) on made-up run results: the arms and their
configurations, the pairing by seed, the table and the files; no training."""

import json
import math
from types import SimpleNamespace

import pytest
from scipy.stats import ttest_rel

from iidfusion.tasks.kg import compare
from iidfusion.tasks.kg.compare import (
    BASELINE,
    IID,
    KGRunResult,
    arm_config,
    arm_folder,
    markdown_report,
    paired_metric_tests,
    run_comparison,
    write_comparison,
)
from tests.tasks.kg.test_fit import small_config


def result(arm: str, seed: int, mrr: float, *, hits=(0.1, 0.2, 0.3), device: str = "cpu") -> KGRunResult:
    alpha, beta = (0.0, 0.0) if arm == BASELINE else (0.5, 0.25)
    return KGRunResult(arm, seed, alpha, beta, 10, 1.0, mrr, mrr, *hits, device=device)


def test_arm_config_changes_the_weights_and_seed_and_nothing_else():
    config = small_config(alpha=0.1, beta=0.2)
    config.train.progress_bar = True
    arm = arm_config(config, alpha=0.7, beta=0.0, seed=4)
    assert (arm.objective.iid.alpha, arm.objective.iid.beta, arm.seed, arm.train.progress_bar) == (0.7, 0.0, 4, False)
    assert arm.objective.iid.d1 == 4 and arm.objective.n3_weight == 1e-3 and arm.model == config.model
    assert (config.objective.iid.alpha, config.seed, config.train.progress_bar) == (0.1, 0, True)  # untouched
    assert arm_folder("out", IID, 4).as_posix() == "out/runs/iid/seed4"


def test_every_seed_runs_the_baseline_then_iid(monkeypatch, tmp_path):
    calls = []

    def fake_fit(kg, features, config, *, run_dir):
        calls.append((config.objective.iid.alpha, config.objective.iid.beta, config.seed, run_dir))
        metrics = {"mrr": 0.1 * config.seed + config.objective.iid.alpha, "hits@1": 0.0, "hits@3": 0.5, "hits@10": 1.0}
        return SimpleNamespace(
            test=SimpleNamespace(as_dict=lambda: metrics),
            valid=SimpleNamespace(mrr=0.9),
            best_epoch=2,
            seconds=3.0,
            device="cpu",
        )

    monkeypatch.setattr(compare, "fit_kg", fake_fit)
    lines = []
    results = run_comparison(
        None, {}, small_config(), alpha=0.5, beta=0.25, seeds=[3, 7], log=lines.append, out=tmp_path
    )
    assert calls == [
        (0.0, 0.0, 3, arm_folder(tmp_path, BASELINE, 3)),
        (0.5, 0.25, 3, arm_folder(tmp_path, IID, 3)),
        (0.0, 0.0, 7, arm_folder(tmp_path, BASELINE, 7)),
        (0.5, 0.25, 7, arm_folder(tmp_path, IID, 7)),
    ]
    assert [(r.arm, r.seed, r.alpha, r.beta) for r in results] == [
        (BASELINE, 3, 0.0, 0.0),
        (IID, 3, 0.5, 0.25),
        (BASELINE, 7, 0.0, 0.0),
        (IID, 7, 0.5, 0.25),
    ]
    assert results[1].mrr == pytest.approx(0.8) and results[1].metric("hits@10") == 1.0 == results[1].hits_at_10
    assert (results[0].valid_mrr, results[0].best_epoch, results[0].seconds) == (0.9, 2, 3.0)
    assert lines[1] == "seed 3 iid: test MRR 0.8000 (best epoch 2, 3 s)"
    run_comparison(None, {}, small_config(), alpha=0.0, beta=0.25, seeds=[0])
    assert calls[-1][3] is None  # no folder: the runs write nothing


@pytest.mark.parametrize(
    "alpha, beta, seeds, message",
    [(0.5, 0.0, [], "compare needs at least one seed"), (0.0, 0.0, [0], "the IID arm needs alpha > 0 or beta > 0")],
)
def test_a_comparison_that_compares_nothing_is_refused_before_training(monkeypatch, alpha, beta, seeds, message):
    monkeypatch.setattr(compare, "fit_kg", lambda *args, **kwargs: pytest.fail("trained"))
    with pytest.raises(ValueError, match=message):
        run_comparison(None, {}, small_config(), alpha=alpha, beta=beta, seeds=seeds)


def test_paired_tests_pair_by_seed_over_the_seeds_both_arms_ran():
    baseline = [0.30, 0.40, 0.35]
    iid = [0.32, 0.43, 0.39]
    results = [result(BASELINE, s, m) for s, m in zip((0, 1, 2), baseline, strict=True)]
    results += [result(IID, s, m) for s, m in zip((2, 1, 0), reversed(iid), strict=True)]  # any order
    results.append(result(BASELINE, 9, 0.99))  # a seed without its IID run is left out
    tests = {t.metric: t for t in paired_metric_tests(results)}
    assert list(tests) == ["mrr", "hits@1", "hits@3", "hits@10"]
    reference = ttest_rel(iid, baseline)
    mrr = tests["mrr"]
    assert mrr.seeds == 3 and mrr.mean_difference == pytest.approx(0.03)
    assert mrr.t_statistic == pytest.approx(reference.statistic) and mrr.p_value == pytest.approx(reference.pvalue)
    assert mrr.p_holm == pytest.approx(min(1.0, mrr.p_value))  # the only defined test of the four
    for name in ("hits@1", "hits@3", "hits@10"):  # the same hits in both arms: no difference, no test
        assert tests[name].mean_difference == 0 and math.isnan(tests[name].p_value) and math.isnan(tests[name].p_holm)


def test_the_table_is_mean_and_interval_per_arm_and_a_row_per_test():
    results = [result(BASELINE, 0, 0.5), result(IID, 0, 0.6)]
    report = markdown_report(results, paired_metric_tests(results), "tiny: OTKGE baseline vs IID")
    lines = report.splitlines()
    assert lines[0] == "# tiny: OTKGE baseline vs IID"
    assert "| arm | alpha | beta | MRR | Hits@1 | Hits@3 | Hits@10 |" in lines
    assert "| baseline | 0 | 0 | 0.500 ± n/a | 0.100 ± n/a | 0.200 ± n/a | 0.300 ± n/a |" in lines  # one seed
    assert "| iid | 0.5 | 0.25 | 0.600 ± n/a | 0.100 ± n/a | 0.200 ± n/a | 0.300 ± n/a |" in lines
    assert "| mrr | +0.1000 | n/a | n/a | n/a | 1 |" in lines
    only_baseline = markdown_report(results[:1], [], "t")
    assert "| baseline |" in only_baseline and "| iid |" not in only_baseline


def test_the_results_files_and_the_devices_they_ran_on(tmp_path):
    results = [
        result(BASELINE, 0, 0.5, device="cuda:0"),
        result(IID, 0, 0.6, device="cpu, 2 processes"),
        result(BASELINE, 1, 0.4, device="cuda:0"),
        result(IID, 1, 0.7, device="cuda:0"),
    ]
    report = write_comparison(tmp_path / "out", results, small_config(), "t")
    assert (tmp_path / "out" / "results.md").read_text() == report
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["provenance"]["device"] == "cuda:0; cpu, 2 processes"
    assert [(r["arm"], r["seed"], r["mrr"]) for r in payload["runs"]] == [(r.arm, r.seed, r.mrr) for r in results]
    assert payload["paired_tests"][0]["metric"] == "mrr" and payload["paired_tests"][0]["seeds"] == 2
    assert payload["config"]["objective"]["iid"]["d1"] == 4
    with pytest.raises(ValueError, match="^no results to write$"):
        write_comparison(tmp_path / "none", [], small_config(), "t")
    assert not (tmp_path / "none").exists()
