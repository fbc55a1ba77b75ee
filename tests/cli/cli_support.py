"""Fast options and a file listing for the command-line tests (imported by them)."""

from pathlib import Path

# Small, quiet, single-threaded runs (the CPU is shared); every flag is a real option.
FAST = [
    "--width",
    "8",
    "--hidden",
    "16",
    "--batch-size",
    "32",
    "--max-epochs",
    "2",
    "--threads",
    "1",
    "--no-progress-bar",
    "--accelerator",
    "cpu",
    "--max-iter",
    "20",
]


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative paths), for "nothing was written" checks."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def fail_the_fit(monkeypatch, number: int, error: BaseException) -> list[str]:
    """Make the ``number``-th fit of a command raise ``error`` (Ctrl-C: KeyboardInterrupt()), the
    others train; returns the methods of the fits started so far. ``monkeypatch.undo()`` ends it."""
    from iidfusion import api
    from iidfusion.tasks.classification import compare, fit

    real_fit, calls = fit.fit_method, []

    def failing_fit(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == number:
            raise error
        return real_fit(*args, **kwargs)

    for module in (api, compare):  # where `fit` and the comparisons (`compare`, `suite`) call it
        monkeypatch.setattr(module, "fit_method", failing_fit)
    return calls
