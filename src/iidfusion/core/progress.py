"""Progress bars: one per job, on stderr, so that stdout carries nothing but results.

Every job that runs longer than a few seconds draws one overall bar (tqdm, which Lightning
already depends on): ``fit`` over epochs (:class:`iidfusion.engine.trainer.EpochProgressBar`, a Lightning callback),
``compare`` / ``suite`` over runs, ``fit --tune`` over trials, ``sweep`` over fits, ``kg`` over
epochs or runs, ``extract`` over batches. Each shows what is running and an estimate of the time
left; the fits inside a multi-run job draw none of their own (one bar per job, not a stack).
``--no-progress-bar`` (``train.progress_bar: false``) turns them off. Bars are drawn only once
the job's input has been checked, and erased when the job ends (``leave=False``): what remains
on stderr are the log lines (:func:`write_line`), one per finished run or evaluation.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(
    total: int | None, description: str, *, enabled: bool = True, unit: str = "run", initial: int = 0
) -> tqdm:
    """An overall bar on stderr (a no-op object when not ``enabled``)."""
    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        unit=unit,
        file=sys.stderr,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        smoothing=0,
    )


def write_line(line: str) -> None:
    """Print ``line`` on stderr without tearing the bars drawn there."""
    with tqdm.external_write_mode(file=sys.stderr):
        print(line, file=sys.stderr, flush=True)
