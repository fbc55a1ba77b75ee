"""benchmarks/verdict_kg.py: the grids, the selection rule, the cache, the statistics and the reports of the KG
part of docs/protocol.md (on the tiny graph of the KG tests, a few epochs).
"""

import json
import math
from pathlib import Path

import pytest

from iidfusion.engine.stats import paired_bootstrap_ci
from iidfusion.tasks.kg import module as kg_module
from iidfusion.tasks.kg.config import KGCompareConfig, load_kg_config
from iidfusion.tasks.kg.fit import fit_kg, graph_digest
from tests.benchmark_modules import benchmark_module
from tests.kg.conftest import tiny_kg, tiny_kg_folder  # noqa: F401 -- fixtures
from tests.tasks.kg.test_fit import fixture_features, small_config

REPO = Path(__file__).resolve().parent.parent
LAYOUT = REPO / "tests" / "fixtures" / "wn9img_layout"


@pytest.fixture(scope="module")
def vkg():
    """The script as a module."""
    return benchmark_module("verdict_kg")


def _tiny_grid(vkg, seeds=2):
    """One trial per arm and seed, a few epochs: the run in seconds."""
    return vkg.Grid(
        alphas=(0.5,), betas=(0.5,), lr_factors=(1.0,), n3_weights=(1e-3,), max_epochs=4, patience=1, seeds=seeds
    )


def _config():
    config = small_config()
    config.train.eval_every = 2
    return config


def _record(valid, test, seconds=1.0):
    return {"arm": "x", "seed": 0, "params": {}, "valid_mrr": valid, "test_mrr": test, "seconds": seconds}


def test_the_arms_have_grids_of_one_size_that_hold_the_configs_own_settings(vkg):
    config, compare = load_kg_config(REPO / "configs" / "kg" / "wn9img_text_cpu.yaml")
    base, iid = (vkg.PROTOCOL.trials(arm, config) for arm in vkg.ARMS)
    assert len(base) == len(iid) == 6
    assert vkg.defaults(vkg.BASE, config, compare) in base and vkg.defaults(vkg.IID, config, compare) in iid
    assert base[0] == (("train.learning_rate", 0.25), ("objective.n3_weight", 5e-3))
    assert iid[0] == (("objective.iid.alpha", 0.1), ("objective.iid.beta", 0.1))
    # Every trial to convergence; OTKGE never trains IID's terms.
    trial = vkg.trial_config(config, vkg.BASE, 2, base[-1], vkg.PROTOCOL)
    assert (trial.seed, trial.train.max_epochs, trial.train.patience) == (2, 200, 3)
    assert (trial.objective.iid.alpha, trial.objective.iid.beta, trial.train.learning_rate) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="same size k"):
        vkg.Grid(alphas=(1.0, 0.1, 0.01, 0.001))


def test_selection_takes_the_best_validation_mrr_ties_the_earlier_diverged_last(vkg):
    assert vkg.chosen([_record(0.80, 0.9), _record(0.85, 0.1), _record(0.82, 0.99)]) == 1
    assert vkg.chosen([_record(0.85, 0.5), _record(0.85, 0.9)]) == 0  # a tie: grid order, never test
    assert vkg.chosen([_record(None, math.nan), _record(0.10, 0.2)]) == 1
    assert vkg.chosen([_record(None, None)]) == 0


def _pairs(differences, base=0.87):
    return [(s, _record(0.8, base), _record(0.8, base + d)) for s, d in enumerate(differences)]


def test_bootstrap_ci_and_verdict_on_made_up_seeds(vkg):
    helps = vkg.compare_arms(_pairs([0.010, 0.012, 0.008]))
    assert helps["verdict"] == "helps" and helps["ci"][0] > 0
    assert helps["difference"] == pytest.approx(0.010)
    low, high = paired_bootstrap_ci([0.88, 0.882, 0.878], [0.87] * 3, resamples=10_000, seed=0)
    assert helps["ci"] == pytest.approx([low, high])
    # With 3 seeds the percentile interval runs from the smallest to the largest difference (the docstring).
    assert helps["ci"] == pytest.approx([0.008, 0.012])
    hurts = vkg.compare_arms(_pairs([-0.02, -0.01, -0.03]))
    assert hurts["verdict"] == "hurts" and hurts["ci"][1] < 0
    null = vkg.compare_arms(_pairs([0.01, -0.01, 0.002]))
    assert null["verdict"] == "no detectable effect" and null["ci"][0] < 0 < null["ci"][1]
    one = vkg.compare_arms(_pairs([0.05]))
    assert one["verdict"] == "no detectable effect" and all(math.isnan(v) for v in one["ci"])
    assert vkg.compare_arms([])["verdict"] == "not run yet"


def test_report_on_an_empty_cache_says_not_run_yet(vkg, tmp_path):
    report = vkg.write_report(tmp_path / "nothing", tmp_path / "out")
    assert "**Status: not run yet.**" in report and "| tuned (primary) | 0 | n/a |" in report
    payload = json.loads((tmp_path / "out" / "verdict_kg.json").read_text())
    assert payload["status"] == "not run yet" and payload["tuned"]["per_seed"] == []


def test_interim_report_from_a_planned_cache(vkg, tmp_path):
    """Made-up trials: the report reads only the cache, selects on validation and says how far it is."""
    config, compare = _config(), KGCompareConfig(alpha=0.5, beta=0.5)
    grid = vkg.Grid(alphas=(0.5, 0.1), betas=(0.5,), lr_factors=(1.0, 2.0), n3_weights=(1e-3,), seeds=3)
    planned = vkg.plan("digest", config, compare, 3, grid)
    assert len(planned) == 3 * 4  # the untuned trials are grid points: nothing extra
    cache = vkg.Cache(tmp_path / "work")
    cache.save_plan(
        {
            "seeds_planned": 3,
            "grid": vkg.dataclasses.asdict(grid),
            "trials": [vkg.dataclasses.asdict(t) for t in planned],
        }
    )
    assert "**Status: not run yet.**" in vkg.write_report(tmp_path / "work", tmp_path / "out")
    scores = {
        (vkg.BASE, 0): (0.80, 0.871),
        (vkg.BASE, 1): (0.82, 0.8723456789),
        (vkg.IID, 0): (0.83, 0.88),
        (vkg.IID, 1): (0.81, 0.99),
    }
    for t in planned:
        if t.seed == 0:
            valid, test = scores[t.arm, t.order]
            cache.save(t.key, {**_record(valid, test, 30.0), "arm": t.arm, "seed": 0, "params": dict(t.params)})
    report = vkg.write_report(tmp_path / "work", tmp_path / "out")
    assert "**Status: interim: 1 of 3 seeds.**" in report and "will change as the rest runs" in report
    # OTKGE keeps lr 0.6 (valid 0.82), IID alpha 0.5 (valid 0.83): test difference 0.88 - 0.8723456789.
    assert "| 0 | lr 0.6, N3 0.001 | 0.8200 | 0.8723 | alpha 0.5, beta 0.5 | 0.8300 | 0.8800 | +0.0077 |" in report
    assert "| untuned (config's settings) | 1 | 0.8710 | 0.8800 |" in report
    payload = json.loads((tmp_path / "out" / "verdict_kg.json").read_text())
    assert payload["tuned"]["per_seed"][0]["OTKGE"]["test_mrr"] == 0.8723456789  # exact in the json
    assert payload["trials_done"] == 4 and payload["hours"] == pytest.approx(4 * 30 / 3600)
    # 8 trials left at their arms' 30 s: the time left at the pace of the trials done.
    assert payload["hours_left"] == pytest.approx(8 * 30 / 3600)
    assert "Left: about 0.1 h of training at each arm's mean time per trial so far" in report


def test_the_time_a_trial_is_expected_to_take(vkg):
    assert vkg.trial_seconds([]) is None
    base_only = vkg.trial_seconds([{"arm": vkg.BASE, "seconds": 100.0}, {"arm": vkg.BASE, "seconds": 300.0}])
    # An arm with nothing timed yet: the other's mean scaled by the epoch cost of an IID trial.
    assert base_only(vkg.BASE) == 200.0 and base_only(vkg.IID) == 200.0 * vkg.IID_EPOCH_COST
    iid_only = vkg.trial_seconds([{"arm": vkg.IID, "seconds": 50.0}])
    assert iid_only(vkg.BASE) == 50.0 / vkg.IID_EPOCH_COST
    both = vkg.trial_seconds([{"arm": vkg.BASE, "seconds": 7.0}, {"arm": vkg.IID, "seconds": 11.0}])
    assert (both(vkg.BASE), both(vkg.IID)) == (7.0, 11.0)


def test_run_trains_each_trial_once_keeps_exact_values_and_reports(vkg, tiny_kg, tmp_path):  # noqa: F811
    features, config, compare = fixture_features(tiny_kg), _config(), KGCompareConfig(alpha=0.5, beta=0.5)
    grid, work, lines = _tiny_grid(vkg), tmp_path / "work", []
    assert vkg.run(tiny_kg, features, config, compare, work, seeds=1, grid=grid, log=lines.append) == 2
    assert any("seed 0 OTKGE lr 0.3, N3 0.001: valid MRR" in line and " h left" in line for line in lines)
    report = vkg.write_report(work, tmp_path / "out")
    assert "**Status: interim: 1 of 2 seeds.**" in report
    files = sorted((work / "trials").glob("*.json"))
    stamps = [f.stat().st_mtime_ns for f in files]
    # A rerun trains nothing; a second seed trains that seed's trials only.
    leftover = vkg.Cache(work).partial(vkg.plan(graph_digest(tiny_kg, features), config, compare, 1, grid)[0].key)
    (leftover / "checkpoints").mkdir(parents=True)  # as if killed between keeping the trial and cleaning up
    assert vkg.run(tiny_kg, features, config, compare, work, seeds=1, grid=grid, log=lines.append) == 0
    assert not leftover.exists()
    assert lines[-1] == "2 of 4 planned trials cached; training 0 (seeds 0..0)"
    assert vkg.run(tiny_kg, features, config, compare, work, seeds=2, grid=grid, log=lines.append) == 2
    assert [f.stat().st_mtime_ns for f in files] == stamps
    report = vkg.write_report(work, tmp_path / "out")
    assert "**Status: complete: 2 of 2 seeds.**" in report
    # The cache keeps the fit's values bit for bit (JSON floats round-trip), and the report's json too.
    trial = vkg.plan(graph_digest(tiny_kg, features), config, compare, 1, grid)[0]
    record = vkg.Cache(work).get(trial.key)
    again = vkg.train_trial(
        tiny_kg,
        features,
        vkg.Cache(tmp_path / "again"),
        (trial, vkg.trial_config(config, trial.arm, 0, trial.params, grid)),
    )
    assert (again["valid_mrr"], again["test_mrr"]) == (record["valid_mrr"], record["test_mrr"])
    assert record["epochs"] <= 4 and record["seconds"] > 0
    payload = json.loads((tmp_path / "out" / "verdict_kg.json").read_text())
    assert payload["tuned"]["per_seed"][0]["OTKGE"]["test_mrr"] == record["test_mrr"]


def test_the_command_runs_the_protocol_on_a_wn9img_layout(vkg, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vkg, "PROTOCOL", _tiny_grid(vkg, seeds=1))
    argv = ["--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert vkg.main(["run", "--data", str(LAYOUT), "--seeds", "1", *argv]) == 0
    report = (tmp_path / "out" / "verdict_kg.md").read_text()
    assert "**Status: complete: 1 of 1 seeds.**" in report and "wn9img_layout: 12 entities" in capsys.readouterr().out
    # OTKGE's one trial is the config's lr 0.5, N3 0.005 (x 1.0 and the grid's N3 differ: two trials).
    assert "| 0 | OTKGE | lr 0.5, N3 0.005 |" in report and "| 0 | OTKGE + IID | alpha 0.01, beta 0.1 |" in report
    # A fresh machine (an empty cache) continues from the report's json: it trains nothing, same report.
    fresh = ["--work", str(tmp_path / "fresh"), "--out", str(tmp_path / "out")]
    assert vkg.main(["run", "--data", str(LAYOUT), "--seeds", "1", *fresh]) == 0
    out = capsys.readouterr().out
    assert "4 finished trials taken from" in out and "4 of 4 planned trials cached; training 0" in out
    assert (tmp_path / "out" / "verdict_kg.md").read_text() == report
    # A damaged report to take trials from: one line naming it, exit 2, the cache untouched.
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "verdict_kg.json").write_text('{"trials": [{"key": "k", "record": {"arm": "OTKGE"}}]}')
    argv = ["--work", str(tmp_path / "third"), "--out", str(damaged)]
    assert vkg.main(["run", "--data", str(LAYOUT), "--seeds", "1", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith(f"verdict_kg: {damaged / 'verdict_kg.json'}: not a report of this script (")
        and "\n" not in error
    )
    assert not (tmp_path / "third" / "trials").exists()
    # Bad input: one line naming it, exit 2, nothing written.
    assert vkg.main(["run", "--data", str(tmp_path / "missing"), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"verdict_kg: --data: no WN9-IMG folder at {tmp_path / 'missing'}"


def _iid_trial(vkg, epochs=6):
    """An IID trial of a few epochs, validated every 2, never stopped early: a part can be cut off mid-way."""
    grid = vkg.Grid(alphas=(0.5,), betas=(0.5,), lr_factors=(1.0,), n3_weights=(1e-3,), max_epochs=epochs, patience=9)
    trial = next(t for t in vkg.plan("d", _config(), KGCompareConfig(), 1, grid) if t.arm == vkg.IID)
    return trial, vkg.trial_config(_config(), trial.arm, 0, trial.params, grid)


def _result(record):
    return {k: record[k] for k in ("valid", "test", "best_epoch", "epochs")}


def test_a_trial_cut_off_continues_from_its_last_checkpoint_bit_for_bit(vkg, tiny_kg, tmp_path, monkeypatch):  # noqa: F811
    features = fixture_features(tiny_kg)
    trial, config = _iid_trial(vkg)
    plain = fit_kg(tiny_kg, features, config)  # no folder, no checkpoints: what the trial must equal
    cache = vkg.Cache(tmp_path / "work")
    whole = vkg.train_trial(tiny_kg, features, cache, (trial, config))
    assert (whole["valid"], whole["test"], whole["epochs"]) == (plain.valid.as_dict(), plain.test.as_dict(), 6)
    assert whole["parts"] == 1 and not cache.partial(trial.key).exists()  # nothing left behind
    # Killed in epoch 5 (after epoch 4's checkpoint): the rerun continues from it and ends where the whole one did.
    start_epoch = kg_module.ValidationSchedule.on_train_epoch_start

    def killed(self, trainer, pl_module):
        if trainer.current_epoch == 4:
            raise KeyboardInterrupt
        start_epoch(self, trainer, pl_module)

    cut = vkg.Cache(tmp_path / "cut")
    monkeypatch.setattr(kg_module.ValidationSchedule, "on_train_epoch_start", killed)
    with pytest.raises(KeyboardInterrupt):
        vkg.train_trial(tiny_kg, features, cut, (trial, config))
    monkeypatch.undo()
    assert (cut.partial(trial.key) / "checkpoints" / "last.ckpt").is_file() and cut.get(trial.key) is None
    resumed = vkg.train_trial(tiny_kg, features, cut, (trial, config))
    assert _result(resumed) == _result(whole) and resumed["parts"] == 2 and resumed["seconds"] > 0
    # A checkpoint left unreadable (killed while it was written): the trial starts over, to the same end.
    damaged = vkg.Cache(tmp_path / "damaged")
    last = damaged.partial(trial.key) / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 cut short")
    again = vkg.train_trial(tiny_kg, features, damaged, (trial, config))
    assert _result(again) == _result(whole) and again["parts"] == 1


def test_run_trains_each_arms_untuned_trial_before_the_rest_of_its_grid(vkg, tiny_kg, tmp_path, monkeypatch):  # noqa: F811
    grid = vkg.Grid(alphas=(0.1, 0.5), betas=(0.5,), lr_factors=(2.0, 1.0), n3_weights=(1e-3,), seeds=2)
    trained = []

    def fake(kg, features, cache, job, commit):
        trial = job[0]
        trained.append((trial.seed, trial.arm, trial.order, trial.default))
        record = {**_record(0.5, 0.5), "arm": trial.arm, "seed": trial.seed, "params": dict(trial.params)}
        cache.save(trial.key, record)
        return {**record, "best_epoch": 1, "epochs": 1}

    monkeypatch.setattr(vkg, "train_trial", fake)
    features, compare = fixture_features(tiny_kg), KGCompareConfig(alpha=0.5, beta=0.5)
    assert vkg.run(tiny_kg, features, _config(), compare, tmp_path, seeds=2, grid=grid, log=lambda line: None) == 8
    assert trained == [
        (seed, arm, order, order == 1) for seed in (0, 1) for arm in (vkg.BASE, vkg.IID) for order in (1, 0)
    ]
