from dataclasses import replace

import pytest

from iidfusion.engine import runs
from iidfusion.tasks.classification.compare import run_comparison
from iidfusion.tasks.classification.report import RESULT_FILES


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
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(RESULT_FILES)


def test_jobs_and_ddp_do_not_mix(grid, tmp_path):
    bad = replace(grid, jobs=2, train=replace(grid.train, strategy="ddp"))
    with pytest.raises(ValueError, match="cannot be combined with strategy 'ddp'"):
        run_comparison(bad, tmp_path)
    assert not tmp_path.joinpath("results.csv").exists()
