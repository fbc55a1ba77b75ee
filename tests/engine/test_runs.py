import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from iidfusion.engine.runs import Progress, cache_path, load_outcome, run_tasks, save_outcome, time_left


@dataclass(frozen=True)
class Job:
    name: str
    seed: int


@dataclass(frozen=True)
class Done:
    line: str
    is_global_zero: bool = True

    def progress_line(self) -> str:
        return self.line


def test_time_left_follows_the_pace_of_the_tasks_done():
    # two cheap tasks done in 10 s (10 s per 20 units of cost), one of 300 units left
    assert time_left([10.0, 10.0, 300.0], 2, 10.0) == pytest.approx(150.0)
    assert time_left([1.0] * 4, 1, 5.0) == pytest.approx(15.0)  # equal costs: by the count of tasks
    assert time_left([10.0, 10.0], 2, 30.0) == 0.0
    assert math.isnan(time_left([10.0], 0, 0.0))


def test_run_tasks_reports_each_task_in_order_with_its_outcome():
    seen = []
    outcomes = run_tasks([3, 1, 2], 1, lambda n: n * n, lambda k, task, outcome: seen.append((k, task, outcome)))
    assert outcomes == [9, 1, 4] and seen == [(1, 3, 9), (2, 1, 1), (3, 2, 4)]


def test_progress_lines_weigh_the_time_left_by_the_tasks_costs(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("iidfusion.engine.runs.time.perf_counter", lambda: now[0])
    lines: list[str] = []
    tasks = [Job("cheap", 0), Job("dear", 0)]
    with Progress(tasks, lines.append, costs=[1.0, 59.0], bar=False) as progress:
        now[0] = 10.0
        progress(1, tasks[0], Done("val 90.00"))
        now[0] = 600.0
        progress(2, tasks[1], Done("val 80.00"))
        progress(2, tasks[1], Done("not reported", is_global_zero=False))  # another rank of a data-parallel run
    # 10 s for 1 unit of cost, 59 left: 590 s; a count of tasks would have said 10 s
    assert lines == [
        "[1/2] cheap seed 0: val 90.00; about 9m50s left",
        "[2/2] dear seed 0: val 80.00; about 0m00s left",
    ]
    with pytest.raises(ValueError, match="1 costs for 2 tasks"):
        Progress(tasks, lines.append, costs=[1.0], bar=False)


def test_a_kept_run_is_whole_or_absent_and_a_damaged_one_says_to_delete_it(tmp_path):
    path = cache_path(tmp_path, "abc")
    save_outcome(path, {"accuracy": 0.5, "loss": float("nan")})
    assert path == tmp_path / "cache" / "abc.json" and [p.name for p in path.parent.iterdir()] == ["abc.json"]
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "loss": None}  # strict JSON
    assert load_outcome(path, lambda payload: payload["accuracy"]) == 0.5
    path.write_text('{"accuracy": 0.')
    with pytest.raises(ValueError, match=r"unreadable cached run .*abc\.json .*delete it"):
        load_outcome(path, lambda payload: payload["accuracy"])


JOB = """
import os, sys, time
from pathlib import Path
from iidfusion.engine.runs import run_tasks

def task(folder):
    Path(folder, str(os.getpid())).write_text("")
    time.sleep(120)

if __name__ == "__main__":
    run_tasks([sys.argv[1]] * 2, 2, task)
"""


def test_workers_end_when_the_job_that_started_them_is_killed(tmp_path):
    """A job killed mid-run (SIGKILL: no chance to clean up) must not leave its workers training on."""
    script, folder = tmp_path / "job.py", tmp_path / "workers"
    script.write_text(JOB)
    folder.mkdir()
    job = subprocess.Popen([sys.executable, str(script), str(folder)])
    try:
        deadline = time.monotonic() + 60
        while len(list(folder.iterdir())) < 2:
            assert time.monotonic() < deadline and job.poll() is None, "the workers did not start"
            time.sleep(0.1)
    finally:
        job.kill()
        job.wait()
    workers = [int(p.name) for p in folder.iterdir()]
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.is_file() and stat.read_text().split(") ")[-1].startswith("Z"))
