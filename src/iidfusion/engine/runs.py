"""Many runs of one job: the worker pool, the progress of the job, and the runs it keeps as they finish.

A job (``compare``, ``suite``, ``finetune``, ``kg compare``) is a list of tasks, each a run of a
task's own (a :class:`Task`: a name and a seed), executed by :func:`run_tasks` one after the
other or ``jobs`` at a time in worker processes (spawned, so each imports torch once and then
takes runs from a queue). Every run is seeded on its own, so the results do not depend on
``jobs``; a worker ends when the job's process has gone, killed or not. :class:`Progress` draws one
bar over the job and writes one line per finished run.
A finished run can be kept at once (:func:`save_outcome`), so that an interrupted job continues
where it stopped.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from iidfusion.core.progress import progress_bar
from iidfusion.engine.results import json_ready

# Worker processes start fresh ("spawn"): safe with CUDA and OpenMP, at one torch import each.
START_METHOD = "spawn"


class Task(Protocol):
    """One run of a job: how progress lines name it."""

    @property
    def name(self) -> str: ...

    @property
    def seed(self) -> int: ...


class Outcome(Protocol):
    """What :class:`Progress` reads of a finished run: whether this process reports it (the first
    of a data-parallel run), and the line it writes for it.
    """

    @property
    def is_global_zero(self) -> bool: ...

    def progress_line(self) -> str: ...


TaskT = TypeVar("TaskT")
OutcomeT = TypeVar("OutcomeT")


def run_tasks(
    tasks: Sequence[TaskT],
    jobs: int,
    execute_task: Callable[[TaskT], OutcomeT],
    on_done: Callable[[int, TaskT, OutcomeT], None] | None = None,
    *,
    worker_setup: Callable[[], None] | None = None,
) -> list[OutcomeT]:
    """``execute_task`` every task, ``jobs`` at a time in worker processes; outcomes in task order.

    ``on_done(k, task, outcome)`` is called as each finishes, in task order (k counts from 1).
    With ``jobs > 1``, ``execute_task`` must pickle (a module-level function or a
    ``functools.partial`` of one) and ``worker_setup`` runs first in every worker process.
    """
    outcomes: list[OutcomeT] = []
    if jobs == 1:
        for done, task in enumerate(tasks, start=1):
            outcomes.append(execute_task(task))
            if on_done is not None:
                on_done(done, task, outcomes[-1])
        return outcomes
    context = multiprocessing.get_context(START_METHOD)
    start = functools.partial(_watched_start, os.getpid(), worker_setup)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=start) as pool:
        futures: list[Future[OutcomeT]] = [pool.submit(execute_task, task) for task in tasks]
        try:
            for done, (task, future) in enumerate(zip(tasks, futures, strict=True), start=1):
                outcomes.append(future.result())
                if on_done is not None:
                    on_done(done, task, outcomes[-1])
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return outcomes


# How often a worker checks that the process that started it is still there (seconds).
PARENT_CHECK_SECONDS = 1.0


def _watched_start(parent: int, setup: Callable[[], None] | None) -> None:
    """A worker's start: a watch that ends the worker when ``parent`` (the job's process) has gone, then
    ``setup``. Without it, a job killed mid-run (``kill``, a machine handed back, a lost terminal) leaves its
    workers to finish the runs in hand and to keep their cores, which a rerun of the job then shares with
    them while it trains the same runs again; a worker's own run is lost, and kept runs stay kept.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="iidfusion-parent-watch", daemon=True).start()
    if setup is not None:
        setup()


def time_left(costs: Sequence[float], done: int, elapsed: float) -> float:
    """Seconds until the last of the tasks of relative ``costs`` has run, when the first ``done`` took ``elapsed``
    seconds: the tasks left at the pace observed so far, which takes in the parallel jobs and the machine's load.
    Tasks of different data sets differ by orders of magnitude, so a count of tasks alone misleads; equal costs
    give that count. NaN before any cost has been paid.
    """
    spent = sum(costs[:done])
    return sum(costs[done:]) * elapsed / spent if spent > 0 else math.nan


class Progress:
    """The job's progress: a bar over the tasks (:mod:`iidfusion.core.progress`; the task awaited
    next and the time left), and one line per finished task: what ran, what it scored
    (:meth:`Outcome.progress_line`), the time left (:func:`time_left` of ``costs``, the tasks'
    relative costs where known, else equal).

    Call :meth:`close` when done (or use it as a context manager). ``bar=False``: the lines only.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        log: Callable[[str], None],
        *,
        costs: Sequence[float] | None = None,
        bar: bool = True,
        description: str = "runs",
    ) -> None:
        self.tasks, self.total, self.log, self.started = list(tasks), len(tasks), log, time.perf_counter()
        if costs is not None and len(costs) != self.total:
            raise ValueError(f"{len(costs)} costs for {self.total} tasks")
        self.costs = list(costs) if costs is not None else [1.0] * self.total
        self.bar = progress_bar(self.total, description, enabled=bar and self.total > 0)
        self._show_next(0)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()

    def _show_next(self, done: int) -> None:
        if done < self.total:
            task = self.tasks[done]
            self.bar.set_postfix_str(f"running {task.name} seed {task.seed}")

    def __call__(self, done: int, task: Task, outcome: Outcome) -> None:
        self.bar.update(1)
        self._show_next(done)
        if not outcome.is_global_zero:
            return
        left = time_left(self.costs, done, time.perf_counter() - self.started)
        what = f"[{done}/{self.total}] {task.name} seed {task.seed}"
        line = f"{what}: {outcome.progress_line()}; about {_duration(left)} left"
        with self.bar.external_write_mode(file=sys.stderr):
            self.log(line)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "an unknown time"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def cache_path(out: Path, key: str) -> Path:
    """Where a finished run of the job in ``out`` is kept (:func:`save_outcome`), by its run key."""
    return out / "cache" / f"{key}.json"


def save_outcome(path: Path, payload: dict[str, Any]) -> None:
    """Keep a finished run's ``payload`` at ``path`` atomically: in the cache whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(json_ready(payload), handle)
    os.replace(tmp, path)


def load_outcome(path: Path, parse: Callable[[dict[str, Any]], OutcomeT]) -> OutcomeT:
    """A run that :func:`save_outcome` kept, rebuilt by ``parse``; a damaged file is a ValueError saying to delete
    it.
    """
    try:
        return parse(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"unreadable cached run {path} ({error}); delete it to run it again") from None
