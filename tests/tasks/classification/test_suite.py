import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from iidfusion.data import SyntheticConfig, generate_synthetic
from iidfusion.tasks.classification import suite
from iidfusion.tasks.classification.report import comparison_pairs
from iidfusion.tasks.classification.suite import SUITE_PAIRS, plan, run_suite


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    paths = []
    for k, name in enumerate(("alpha", "beta")):
        data = generate_synthetic(
            SyntheticConfig(num_modalities=2, num_classes=3, relevant_dims=4, noise_dims=4), 90, seed=k
        )
        path = folder / f"{name}.npz"
        np.savez(path, labels=data.labels.numpy(), **{v: x.numpy() for v, x in data.views.items()})
        paths.append(str(path))
    return tuple(paths)


@pytest.fixture
def suite_config(fast_config, two_files):
    train = replace(fast_config.train, max_epochs=1, loggers=(), checkpoints=False)
    return replace(
        fast_config,
        datasets=two_files,
        methods=("lf-static", "if-static", "iid-l"),
        seeds=2,
        variants=("vib", "paper"),
        eval=replace(fast_config.eval, noise=(0.0,)),
        train=train,
    )


def test_bases_are_planned_for_every_reading_but_trained_once(suite_config):
    planned = plan(suite_config)
    assert len(planned) == 2 * 2 * 2 * 3  # data sets x readings x seeds x methods
    keys = {task.key() for _, _, task in planned}
    assert len(keys) == 2 * 2 * (2 + 2)  # per data set and seed: the two bases once, iid-l per reading
    assert {v for _, v, t in planned if t.method == "iid-l"} == {"vib", "paper"}
    assert {t.config.loss.variant for _, v, t in planned if t.method == "iid-l" and v == "paper"} == {"paper"}


def test_a_task_s_cost_for_the_time_left_grows_with_its_data(suite_config, tmp_path):
    data = np.random.default_rng(0)
    large = tmp_path / "large.npz"
    np.savez(large, a=data.normal(size=(900, 40)), b=data.normal(size=(900, 8)), y=np.arange(900) % 3)
    config = replace(suite_config, datasets=(suite_config.datasets[0], str(large)))
    tasks = [task for _, _, task in plan(config)]
    costs = suite.fit_costs(tasks)
    small_cost, large_cost = (costs[k] for k in (0, -1))
    width = suite_config.model.width
    assert large_cost == len(suite.load_splits(tasks[-1].config, 0).train) * (48 + 2 * width)
    assert large_cost > 10 * small_cost and set(costs) == {small_cost, large_cost}


def test_suite_writes_one_table_and_resumes_without_training_again(suite_config, tmp_path, monkeypatch):
    lines = []
    report = run_suite(suite_config, tmp_path, log=lines.append)
    assert lines[0] == "suite: 24 runs, 16 distinct, 0 already done, 16 to train"
    for name in ("suite.md", "suite.json", "suite.csv", "alpha/vib/results.md", "beta/paper/results.json"):
        assert (tmp_path / name).is_file(), name
    for name in ("alpha/vib/results.tex", "beta/paper/per_class.csv", "beta/paper/confusion_matrices.json"):
        assert (tmp_path / name).is_file(), name
    # the plot across data sets, in a raster and a vector format; the report says what its bars are
    assert (tmp_path / "accuracy_by_dataset.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "accuracy_by_dataset.pdf").read_bytes()[:4] == b"%PDF"
    assert "mean over 2 seeds ± the half-width of the 95% confidence interval" in report
    matrices = json.loads((tmp_path / "alpha" / "paper" / "confusion_matrices.json").read_text())["methods"]
    assert sorted(matrices) == ["if-static", "iid-l", "lf-static"] and matrices["iid-l"]["seeds"] == 2
    assert sum(map(sum, matrices["iid-l"]["counts"])) == 2 * 18  # every test sample of both seeds, once
    assert report == (tmp_path / "suite.md").read_text()
    gain_rows = [line for line in report.splitlines() if line.startswith(("| vib |", "| paper |", "| - |"))]
    assert [row.split(" | ")[1:3] for row in gain_rows] == [
        ["if-static", "lf-static"],
        ["iid-l", "lf-static"],
        ["iid-l", "if-static"],
        ["iid-l", "lf-static"],
        ["iid-l", "if-static"],
    ]
    payload = json.loads((tmp_path / "suite.json").read_text())
    assert len(payload["runs"]) == 24 and {"val_acc", "test", "dataset", "variant"} <= set(payload["runs"][0])
    assert payload["provenance"]["torch"] and payload["config"]["seeds"] == suite_config.seeds
    # the gains are computed from the runs themselves
    runs = payload["runs"]

    def avg(dataset, variant, method, seed):
        (run,) = [
            r for r in runs if (r["dataset"], r["variant"], r["method"], r["seed"]) == (dataset, variant, method, seed)
        ]
        return 100 * np.mean([t["accuracy"] for t in run["test"]])

    expected = np.mean(
        [avg(d, "paper", "iid-l", s) - avg(d, "paper", "if-static", s) for d in ("alpha", "beta") for s in (0, 1)]
    )
    assert float(gain_rows[4].split(" | ")[3]) == pytest.approx(expected, abs=0.006)

    with pytest.raises(ValueError, match="--resume"):
        run_suite(suite_config, tmp_path, log=lines.append)
    monkeypatch.setattr(suite, "execute", lambda task: pytest.fail("a finished run was trained again"))
    resumed = run_suite(suite_config, tmp_path, resume=True, log=lines.append)
    assert lines[-1] == "suite: 24 runs, 16 distinct, 16 already done, 0 to train"
    assert resumed.split("Time:")[1].split(")", 1)[1] == report.split("Time:")[1].split(")", 1)[1]
    (tmp_path / "suite.md").unlink()
    assert suite.rerender(tmp_path) == resumed == (tmp_path / "suite.md").read_text(), (
        "the report from suite.json alone"
    )


def test_an_interrupted_suite_keeps_its_finished_runs(suite_config, tmp_path, monkeypatch):
    suite_config = replace(suite_config, seeds=1)
    real = suite.execute
    calls = []

    def flaky(task):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(suite, "execute", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite_config, tmp_path, log=lambda _: None)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4 and not (tmp_path / "suite.md").exists()
    monkeypatch.setattr(suite, "execute", real)
    lines = []
    run_suite(suite_config, tmp_path, resume=True, log=lines.append)
    assert lines[0].endswith("4 already done, 4 to train")


def test_comparisons_pair_each_iid_method_with_its_bases_and_if_with_lf():
    methods = ["lf-static", "if-static", "iid-l", "qmf", "if-qmf", "iid-q", "iid-q-no-ic"]
    assert comparison_pairs(methods, SUITE_PAIRS) == [
        ("if-static", "lf-static"),
        ("iid-l", "lf-static"),
        ("iid-l", "if-static"),
        ("if-qmf", "qmf"),
        ("iid-q", "qmf"),
        ("iid-q", "if-qmf"),
    ]


def test_bad_suite_options_fail_before_training(suite_config, tmp_path):
    with pytest.raises(ValueError, match="no data sets"):
        plan(replace(suite_config, datasets=()))
    with pytest.raises(ValueError, match="repeated L_ic reading"):
        plan(replace(suite_config, variants=("vib", "vib")))
    with pytest.raises(ValueError, match="--variants: unknown L_ic reading 'upside'"):
        plan(replace(suite_config, variants=("upside",)))
    with pytest.raises(FileNotFoundError):
        run_suite(
            replace(suite_config, datasets=(*suite_config.datasets, str(tmp_path / "missing.mat"))), tmp_path / "o"
        )
    assert not (tmp_path / "o").exists()


def test_a_tuned_suite_reports_what_each_grid_point_would_gain_as_a_default(suite_config, tmp_path):
    from iidfusion.tasks.classification.suite import fixed_point_gains

    config = replace(
        suite_config,
        datasets=suite_config.datasets[:1],
        seeds=1,
        variants=("vib",),
        tune=replace(suite_config.tune, enabled=True, alpha=(0.1, 0.01), beta=(0.1,)),
    )
    report = run_suite(config, tmp_path, log=lambda _: None)
    assert "## Fixed hyperparameters, from the tuning trials" in report
    assert "<data set>/<reading>/results.md" in report
    (per_comparison,) = tmp_path.glob("*/vib/results.md")
    assert "## Hyperparameters chosen on validation" in per_comparison.read_text()
    runs = json.loads((tmp_path / "suite.json").read_text())["runs"]
    (iid,) = [r for r in runs if r["method"] == "iid-l"]
    bases = {r["method"]: r for r in runs if r["method"] != "iid-l"}
    assert [t["params"] for t in iid["tuning"]["trials"]] == [{"alpha": 0.1, "beta": 0.1}, {"alpha": 0.01, "beta": 0.1}]
    expected = {}
    for trial in iid["tuning"]["trials"]:
        deltas = [100 * (trial["val_acc"] - bases[b]["val_acc"]) for b in ("lf-static", "if-static")]
        expected[trial["params"]["alpha"]] = sum(deltas) / 2
    rows = [line for line in report.splitlines() if line.startswith("| vib | alpha=")]
    assert len(rows) == 2
    for row in rows:
        cells = row.split(" | ")
        alpha = float(cells[1].split(",")[0].split("=")[1])
        assert float(cells[2]) == pytest.approx(expected[alpha], abs=0.006) and cells[4] == "2 |"
    assert float(rows[0].split(" | ")[2]) >= float(rows[1].split(" | ")[2]), "best validation gain first"
    assert fixed_point_gains([]) == []


def _run(dataset: str, method: str, seed: int, accuracy: float) -> suite.SuiteRun:
    """A finished suite run with one test level (Avg Acc = accuracy) and the same validation accuracy."""
    outcome = SimpleNamespace(results=[SimpleNamespace(accuracy=accuracy)], val_acc=accuracy)
    return suite.SuiteRun(dataset, "vib", SimpleNamespace(method=method, seed=seed), outcome)


def test_gains_take_the_data_set_as_the_unit_not_the_seed():
    # one data set with many seeds where iid-l gains 2 points, two with few seeds where it loses 1
    seeds = {"many": 8, "few_a": 2, "few_b": 2}
    delta = {"many": 0.02, "few_a": -0.01, "few_b": -0.01}
    runs = [
        run
        for name, count in seeds.items()
        for seed in range(count)
        for run in (
            _run(name, "if-static", seed, 0.8 + 0.001 * seed),
            _run(name, "iid-l", seed, 0.8 + 0.001 * seed + delta[name]),
        )
    ]
    (gain,) = suite.gains(runs)
    assert (gain.method, gain.reference, gain.unit, gain.pairs) == ("iid-l", "if-static", "data set", 12)
    assert gain.test == pytest.approx(0.0, abs=1e-9) and gain.val == pytest.approx(0.0, abs=1e-9)  # pooled: +1.0
    assert (gain.wins, gain.ties, gain.losses) == (1, 0, 2)
    assert gain.p_sign == pytest.approx(1.0) and gain.p_holm == pytest.approx(gain.p_wilcoxon)
    assert gain.ci[0] < 0.0 < gain.ci[1]

    (single,) = suite.gains([r for r in runs if r.dataset == "many"])
    assert (single.unit, single.wins, single.pairs) == ("seed", 8, 8)
    assert single.test == pytest.approx(2.0) and single.ci == pytest.approx((2.0, 2.0))
    assert single.p_wilcoxon < 0.01 and single.p_sign == pytest.approx(2 / 2**8)
