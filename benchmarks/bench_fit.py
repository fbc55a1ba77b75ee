"""Whole ``iidfusion fit`` runs and the start-up before the first training step.

``python benchmarks/bench_fit.py [--quick] [--rounds K] [--epochs E] [--output PATH]`` runs
every configuration below as its own ``iidfusion fit`` process on the bundled Handwritten data
(one torch thread, E epochs without early stopping, so that every run trains the same number of
steps; default loggers and checkpoints), K rounds, the configurations interleaved within each
round so that all see the same load of a shared machine. A run's cost is the CPU time of its
process (user + system; with one thread, what the run costs: the waits for the cores that other
jobs cause are not counted). Reported: the fastest of the K runs of each configuration, the ratio
of the fastest runs and the median over rounds of the ratio of the two runs of the same round.
Writes benchmarks/results/fit.md (``--quick``: prints only, unless ``--output`` is given).

Configurations: ``if-static`` / ``iid-l`` and ``if-pdf`` / ``iid-p`` with the defaults (the
default monitoring included), both pairs also with ``--no-monitor-distances``, and ``if-static``
without the drop-one-modality diagnostic (``val/drop_acc``: one extra fusion per modality and
validation batch; no option turns it off, so the child process empties it, this benchmark's only
patch; ``val/shared_head_acc`` is an argmax of logits the validation step has anyway).

Start-up: a child process runs ``iidfusion fit`` and stops at its first training step, reporting
the CPU time of ``import torch`` and from there to the first step; reference processes in the
same rounds import ``torch`` alone and ``torch`` then ``lightning`` (whose import chain,
torchmetrics with the optional packages it finds and ``torch._dynamo``, iidfusion cannot avoid
while it trains with Lightning).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "fit.md"
TARGET_IID = 1.3
TARGET_MONITORING = 1.05
TARGET_STARTUP_S = 3.0
PAIRS = (("if-static", "iid-l"), ("if-pdf", "iid-p"))


@dataclass(frozen=True)
class Config:
    label: str
    method: str
    extra: tuple[str, ...] = ()
    child: str = ""  # "" (plain CLI), "no-diagnostics" or "first-step"
    data: str = "handwritten"


def fit_configs() -> list[Config]:
    configs = []
    for base, iid in PAIRS:
        for method in (base, iid):
            configs.append(Config(method, method))
            configs.append(Config(f"{method} --no-monitor-distances", method, ("--no-monitor-distances",)))
    configs.append(Config("if-static without diagnostics", "if-static", child="no-diagnostics"))
    return configs


def _cpu_of(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """CPU seconds (user + system) and wall seconds of one child process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, completed.stdout


def fit_command(config: Config, epochs: int, out: str) -> list[str]:
    arguments = [
        "fit",
        "--method",
        config.method,
        "--data",
        config.data,
        "--threads",
        "1",
        "--max-epochs",
        str(epochs),
        "--patience",
        "0",
        "--no-progress-bar",
        "--out",
        out,
        *config.extra,
    ]
    if config.child:
        return [sys.executable, str(Path(__file__).resolve()), "--child", config.child, "--", *arguments]
    return [sys.executable, "-m", "iidfusion.cli.main", *arguments]


def run_child(kind: str, arguments: list[str]) -> int:
    """The child processes: the CLI with the diagnostics emptied, or stopped at the first step."""
    started = time.process_time()
    import torch  # noqa: F401  (timed: the import torch itself needs)

    after_torch = time.process_time()
    from iidfusion.cli.main import main
    from iidfusion.tasks.classification.module import FusionModule

    if kind == "no-diagnostics":
        original = FusionModule.on_validation_epoch_start

        def without_drop(self: FusionModule) -> None:
            original(self)
            self._drop_means = {}  # no drop-one-modality pass (one extra fusion per modality and batch)

        FusionModule.on_validation_epoch_start = without_drop
        return main(arguments)
    if kind == "first-step":

        def first_step(self: FusionModule, batch: dict, batch_idx: int) -> None:
            now = time.process_time()
            print(json.dumps({"torch_s": after_torch - started, "first_step_s": now - after_torch}), flush=True)
            os._exit(0)

        FusionModule.training_step = first_step
        main(arguments)
        raise RuntimeError("the fit ended before its first training step")
    raise ValueError(f"unknown child {kind!r}")


# ----------------------------------------------------------------------------- measuring


def measure(configs: list[Config], rounds: int, epochs: int, log) -> dict[str, list[tuple[float, float]]]:
    """(CPU s, wall s) of every run, per configuration, in interleaved rounds."""
    env = dict(os.environ)
    runs: dict[str, list[tuple[float, float]]] = {c.label: [] for c in configs}
    for round_index in range(rounds):
        for config in configs:
            out = tempfile.mkdtemp(prefix="bench_fit_")
            try:
                cpu, wall, _ = _cpu_of(fit_command(config, epochs, out), env)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            runs[config.label].append((cpu, wall))
            log(f"round {round_index + 1}/{rounds}: {config.label}: {cpu:.1f} s CPU, {wall:.1f} s wall")
    return runs


def measure_startup(rounds: int, log) -> dict[str, list[float]]:
    """CPU seconds of: python + import torch; python + torch + lightning; and a fit child's
    import torch and torch -> first training step.
    """
    env = dict(os.environ)
    results: dict[str, list[float]] = {
        "import torch": [],
        "import torch, lightning": [],
        "fit: import torch": [],
        "fit: torch -> first step": [],
    }
    for _ in range(rounds):
        for label, code in (("import torch", "import torch"), ("import torch, lightning", "import torch, lightning")):
            results[label].append(_cpu_of([sys.executable, "-c", code], env)[0])
        out = tempfile.mkdtemp(prefix="bench_fit_")
        try:
            _, _, stdout = _cpu_of(fit_command(Config("first step", "iid-l", child="first-step"), 1, out), env)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        report = json.loads(stdout.strip().splitlines()[-1])
        results["fit: import torch"].append(report["torch_s"])
        results["fit: torch -> first step"].append(report["first_step_s"])
        log(f"start-up: {report}")
    return results


# ----------------------------------------------------------------------------- report


def _fastest(runs: list[tuple[float, float]]) -> float:
    return min(cpu for cpu, _ in runs)


def _ratios(numerator: list[tuple[float, float]], denominator: list[tuple[float, float]]) -> tuple[float, float]:
    """(ratio of the fastest runs, median over rounds of the ratio within a round)."""
    paired = statistics.median(a[0] / b[0] for a, b in zip(numerator, denominator, strict=True))
    return _fastest(numerator) / _fastest(denominator), paired


def _verdict(ratio: float, target: float) -> str:
    return "yes" if ratio <= target else f"no (+{100 * (ratio / target - 1):.0f} % over)"


def render(
    runs: dict[str, list[tuple[float, float]]],
    startup: dict[str, list[float]],
    rounds: int,
    epochs: int,
    seconds: float,
) -> str:
    lines = [
        "# Whole fits and start-up (`python benchmarks/bench_fit.py`)",
        "",
        f"`iidfusion fit --data handwritten --threads 1 --max-epochs {epochs} --patience 0 --no-progress-bar`, each "
        f"configuration as its own process, {rounds} interleaved rounds. Times: CPU seconds of the process (user + "
        "system), fastest of the rounds; `paired` is the median over rounds of the ratio of the two runs of the same "
        "round. The machine is shared with other jobs (2 cores; load "
        f"{os.getloadavg()[0]:.1f} at the end of this run), so wall times are not comparable across runs.",
        "",
        "## IID against its IF base (target: whole fit <= 1.3 x)",
        "",
        "| pair | monitoring | base s | IID s | IID / base (fastest) | IID / base (paired) | target met |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for base, iid in PAIRS:
        for suffix, monitoring in (("", "default (on)"), (" --no-monitor-distances", "off")):
            b, i = runs[base + suffix], runs[iid + suffix]
            fastest, paired = _ratios(i, b)
            lines.append(
                f"| {iid} / {base} | {monitoring} | {_fastest(b):.1f} | {_fastest(i):.1f} | {fastest:.2f} | "
                f"{paired:.2f} | {_verdict(fastest, TARGET_IID)} "
                "|"
            )
    lines += [
        "",
        "## Cost of the default monitoring (target: <= 5 % of a base fit)",
        "",
        "Default: per-pair W~ on the first `train.monitor_samples` validation samples once per validation epoch, "
        "and the per-modality diagnostics (`val/shared_head_acc`, `val/drop_acc`).",
        "",
        "| base fit | without | with | added (fastest) | added (paired) | target met |",
        "|---|---|---:|---:|---:|---|",
    ]
    for label, reference in (
        ("if-static: distances", "if-static --no-monitor-distances"),
        ("if-pdf: distances", "if-pdf --no-monitor-distances"),
        ("if-static: drop-one-modality diagnostic", "if-static without diagnostics"),
    ):
        method = label.split(":")[0]
        fastest, paired = _ratios(runs[method], runs[reference])
        lines.append(
            f"| {label} | {_fastest(runs[reference]):.1f} | {_fastest(runs[method]):.1f} | {100 * (fastest - 1):+.1f} "
            "% "
            f"| {100 * (paired - 1):+.1f} % | {_verdict(fastest, TARGET_MONITORING)} |"
        )
    both = _fastest(runs["if-static"]) / min(
        _fastest(runs["if-static --no-monitor-distances"])
        + _fastest(runs["if-static without diagnostics"])
        - _fastest(runs["if-static"]),
        _fastest(runs["if-static"]),
    )
    lines += [
        "",
        "Both together on if-static (distances + drop diagnostic, each measured against the default): "
        f"{100 * (both - 1):+.1f} "
        "%.",
    ]
    first = min(startup["fit: torch -> first step"])
    torch_alone, with_lightning = min(startup["import torch"]), min(startup["import torch, lightning"])
    lines += [
        "",
        f"## Start-up (target: first training step <= {TARGET_STARTUP_S:g} s after `import torch`)",
        "",
        "CPU seconds, fastest of the rounds. The reference processes import torch alone, and torch then lightning "
        "(`lightning` imports `torchmetrics`, which imports the optional packages it finds installed, here "
        "transformers, scipy.signal and matplotlib, and `torch._dynamo`).",
        "",
        "| process | CPU s |",
        "|---|---:|",
        f"| `python -c 'import torch'` | {torch_alone:.2f} |",
        f"| `python -c 'import torch, lightning'` | {with_lightning:.2f} |",
        f"| `iidfusion fit`: `import torch` | {min(startup['fit: import torch']):.2f} |",
        f"| `iidfusion fit`: from `import torch` to the first training step | {first:.2f} |",
        f"| of which lightning's own import chain (second row minus the first) | {with_lightning - torch_alone:.2f} |",
        "| of which iidfusion (data, model, trainer, loggers; the rest) | "
        f"{first - (with_lightning - torch_alone):.2f} "
        "|",
        "",
        f"Target met: {_verdict(first / TARGET_STARTUP_S, 1.0)}.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; Python "
        f"{platform.python_version()}. Wall time of this benchmark: {seconds:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return run_child(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2-epoch fits; prints only")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (default 60, quick 2)")
    parser.add_argument("--output", type=Path, default=None, help=f"markdown report (default {RESULTS})")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    epochs = args.epochs or (2 if args.quick else 60)
    output = args.output if args.output is not None else (None if args.quick else RESULTS)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    startup = measure_startup(rounds, log)
    runs = measure(fit_configs(), rounds, epochs, log)
    report = render(runs, startup, rounds, epochs, time.perf_counter() - started)
    print(report, end="")
    if output is not None:
        from iidfusion.engine.outputs import write_text_atomic

        write_text_atomic(output, report)
        log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
