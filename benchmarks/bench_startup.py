"""The start-up of the command line: ``iidfusion --help``, ``iidfusion fit --help``, ``--version``.

``python benchmarks/bench_startup.py [--quick] [--rounds K] [--baseline CHECKOUT] [--output PATH]``
runs each command as its own process, K rounds, interleaved with two references in every round:
``python -c pass`` (the interpreter alone) and ``python -c "import torch"`` (what a command paid
when building its parser imported torch). The commands run this checkout's code (its ``src`` and
``studies/src`` first on ``PYTHONPATH``), and, with ``--baseline``, the same commands from another
checkout (e.g. ``git archive COMMIT | tar -x -C DIR``) in the same rounds, so that the two are
compared under the same load of a shared machine. Reported per process: the median wall and CPU
(user + system) seconds over the rounds, and the median over rounds of its ratio to each
reference in the same round; and, from one extra run with ``-X importtime``, the time that importing
the command line took and whether it imported torch.
Writes benchmarks/results/startup.md (``--quick``: 1 round, prints only, unless ``--output``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "startup.md"
TARGET_HELP_S = 0.3
COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("fit", "--help"), ("--version",))
REFERENCES: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import torch'": ["-c", "import torch"],
}
HEAVY = ("torch", "lightning", "torchmetrics", "transformers")


def _environment(checkout: Path) -> dict[str, str]:
    """The environment that runs ``checkout``'s code (and its studies' commands)."""
    paths = [str(checkout / "src"), str(checkout / "studies" / "src"), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))


def _run(arguments: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system) of one child process (run in ``cwd``), and its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *arguments], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stderr


def processes(baseline: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every process of a round, by label: the references, then each command (and its baseline)."""
    found = {label: (arguments, dict(os.environ)) for label, arguments in REFERENCES.items()}
    for checkout, suffix in ((REPO, ""), (baseline, " (baseline)")):
        if checkout is not None:
            for command in COMMANDS:
                found[f"iidfusion {' '.join(command)}{suffix}"] = (
                    ["-m", "iidfusion", *command],
                    _environment(checkout),
                )
    return found


def import_profile(arguments: list[str], env: dict[str, str]) -> tuple[float, list[str]]:
    """The seconds that importing ``iidfusion.cli.main`` takes, with all it imports, and the
    packages of :data:`HEAVY` the process imports (read from ``-X importtime``).
    """
    _, _, stderr = _run(["-X", "importtime", *arguments], env)
    rows = [line.removeprefix("import time:").split("|") for line in stderr.splitlines() if line[:12] == "import time:"]
    cumulative = {name.strip(): int(total) for _, total, name in rows if total.strip().isdigit()}
    return cumulative["iidfusion.cli.main"] / 1e6, [name for name in HEAVY if name in cumulative]


def measure(rounds: int, baseline: Path | None, log) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s) of every process, per label, in interleaved rounds."""
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in processes(baseline)}
    for index in range(rounds):
        for label, (arguments, env) in processes(baseline).items():
            wall, cpu, _ = _run(arguments, env)
            runs[label].append((wall, cpu))
            log(f"round {index + 1}/{rounds}: {label}: {wall:.3f} s wall, {cpu:.3f} s CPU")
    return runs


def _median_ratio(numerator: list[tuple[float, float]], denominator: list[tuple[float, float]], which: int) -> float:
    """The median over rounds of the ratio of two processes of the same round (0: wall, 1: CPU)."""
    return statistics.median(n[which] / d[which] for n, d in zip(numerator, denominator, strict=True))


def render(
    runs: dict[str, list[tuple[float, float]]],
    imports: dict[str, tuple[float, list[str]]],
    rounds: int,
    baseline: str = "",
) -> str:
    plain, torch = runs["python -c pass"], runs["python -c 'import torch'"]
    lines = [
        "# Start-up of the command line (`python benchmarks/bench_startup.py`)",
        "",
        f"Each process run on its own, {rounds} interleaved rounds. Seconds: median over the rounds of the wall "
        "time and of the CPU time (user + system). Ratios: median over the rounds of the ratio to a reference "
        "process of the same round. The machine is shared with other jobs (2 cores; load "
        f"{os.getloadavg()[0]:.1f} at the end of this run), so only ratios of one run compare.",
        "",
        "| process | wall s | CPU s | / `python -c pass` (wall) | / `import torch` (wall) | "
        "import of `iidfusion.cli.main` s | imports |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, times in runs.items():
        main_s, heavy = imports.get(label, (None, None))
        imported = "" if heavy is None else ", ".join(heavy) or "none of " + ", ".join(HEAVY)
        wall, cpu = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        lines.append(
            f"| `{label}` | {wall:.3f} | {cpu:.3f} | {_median_ratio(times, plain, 0):.2f} "
            f"| {_median_ratio(times, torch, 0):.2f} | {'' if main_s is None else f'{main_s:.3f}'} | {imported} |"
        )
    help_wall = statistics.median(t[0] for t in runs["iidfusion --help"])
    lines += ["", f"Target `iidfusion --help` <= {TARGET_HELP_S:g} s (wall, median): {help_wall:.3f} s, "]
    lines[-1] += "met." if help_wall <= TARGET_HELP_S else "not met."
    baselines = [label for label in runs if label.endswith(" (baseline)")]
    if baselines:
        lines += [
            "",
            f"Against the baseline, the checkout `{baseline}` run in the same rounds:",
            "",
            "| command | this checkout / baseline (wall) | (CPU) |",
            "|---|---:|---:|",
        ]
        for label in baselines:
            now = label.removesuffix(" (baseline)")
            lines.append(
                f"| `{now}` | {_median_ratio(runs[now], runs[label], 0):.2f} | "
                f"{_median_ratio(runs[now], runs[label], 1):.2f} |"
            )
    lines += [
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; Python "
        f"{platform.python_version()}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round; prints only")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, quick 1)")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout whose commands run in the same rounds"
    )
    parser.add_argument("--output", type=Path, default=None, help=f"markdown report (default {RESULTS})")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 5)
    output = args.output if args.output is not None else (None if args.quick else RESULTS)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    runs = measure(rounds, args.baseline, log)
    imports = {
        label: import_profile(arguments, env)
        for label, (arguments, env) in processes(args.baseline).items()
        if label.startswith("iidfusion")
    }
    report = render(runs, imports, rounds, args.baseline.name if args.baseline is not None else "")
    print(report, end="")
    if output is not None:
        output.write_text(report)
        log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
