from dataclasses import replace

import pytest

from iidfusion.engine import runs
from iidfusion.tasks.classification.compare import run_comparison
from iidfusion.tasks.classification.report import CLASS_FILES, RESULT_FILES


@pytest.fixture
def grid(tiny_npz, fast_config):
    train = replace(fast_config.train, loggers=(), checkpoints=False)
    return replace(fast_config, data=str(tiny_npz), methods=("if-qmf", "iid-q"), seeds=2, train=train)


def test_parallel_jobs_give_the_same_results(grid, tmp_path, monkeypatch):
    """Fits in 2 worker processes give exactly the results of one process (each fit is seeded).

    Forked workers: spawned ones would re-import torch (~20 s on a busy CPU); the pool, the
    pickling of tasks and results and the ordering are the same.
    """
    monkeypatch.setattr(runs, "START_METHOD", "fork")
    lines = []
    serial = run_comparison(grid, tmp_path / "serial", log=lines.append)
    parallel = run_comparison(replace(grid, jobs=2), tmp_path / "parallel", log=lambda _: None)
    assert serial.results == parallel.results and len(serial.results) == 2 * 2 * 2
    assert lines[0].startswith("departures from the paper") and "tune.enabled = false" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == [
        "[1/4] if-qmf seed 0",
        "[2/4] iid-q seed 0",
        "[3/4] if-qmf seed 1",
        "[4/4] iid-q seed 1",
    ]
    assert "Departures from the paper" in (tmp_path / "serial" / "results.md").read_text()
    for folder in ("serial", "parallel"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(RESULT_FILES + CLASS_FILES)


def test_jobs_and_ddp_do_not_mix(grid, tmp_path):
    bad = replace(grid, jobs=2, train=replace(grid.train, strategy="ddp"))
    with pytest.raises(ValueError, match="cannot be combined with strategy 'ddp'"):
        run_comparison(bad, tmp_path)
    assert not tmp_path.joinpath("results.csv").exists()


def test_every_record_of_a_run_names_the_method_and_seed_it_trained(tiny_npz, fast_config, tmp_path, monkeypatch):
    """Two methods in one comparison: hparams.yaml of both loggers, the checkpoint's hyper_parameters
    and record, the model loaded back, and the run's config.yaml and metrics.json each name the
    method and seed that run trained (not the config's `fit` defaults, method iid-p and seed 0).
    A resume keeps the finished run's folder as it was and trains the other one."""
    import json

    import torch
    import yaml

    from iidfusion import load_model
    from iidfusion.tasks.classification import compare

    config = replace(fast_config, data=str(tiny_npz), methods=("lf-static", "iid-l"), seeds=2, method="iid-p")
    out = tmp_path / "cmp"
    real_execute, calls = compare.execute, []

    def failing_execute(task):
        calls.append((task.method, task.seed))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_execute(task)

    monkeypatch.setattr(compare, "execute", failing_execute)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(config, out, log=lambda _: None)
    kept = out / "runs" / "lf-static" / "seed0" / "checkpoints" / "best.ckpt"
    stamp = kept.stat().st_mtime_ns
    calls.clear()
    run_comparison(config, out, log=lambda _: None, resume=True)
    assert calls == [("iid-l", 1)] and kept.stat().st_mtime_ns == stamp
    for method in ("lf-static", "iid-l"):
        for seed in (0, 1):
            run = out / "runs" / method / f"seed{seed}"
            for logger in ("csv", "tensorboard"):
                hparams = yaml.safe_load((run / logger / "version_0" / "hparams.yaml").read_text())
                assert (hparams["method"], hparams["seed"]) == (method, seed), (run, logger)
            state = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
            assert (state["hyper_parameters"]["method"], state["hyper_parameters"]["seed"]) == (method, seed)
            assert (state["iidfusion"]["method"], state["iidfusion"]["seed"]) == (method, seed)
            trained = load_model(run / "checkpoints" / "best.ckpt")
            assert (trained.method, trained.config.method, trained.config.seed) == (method, method, seed)
            saved = yaml.safe_load((run / "config.yaml").read_text())
            assert (saved["method"], saved["seed"], saved["data"]) == (method, seed, str(tiny_npz))
            metrics = json.loads((run / "metrics.json").read_text())
            assert (metrics["method"], metrics["seed"], metrics["config"]["method"]) == (method, seed, method)
            assert [m["noise"] for m in metrics["test"]] == [0.0, 10.0]
