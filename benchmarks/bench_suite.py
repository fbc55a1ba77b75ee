"""The suite's throughput: fits per hour of a fixed ``iidfusion suite`` protocol, against another checkout.

``python benchmarks/bench_suite.py [--quick] [--seeds S] [--jobs 1,2] [--rounds K] [--baseline CHECKOUT]
[--output PATH]`` runs ``iidfusion suite`` as one process per measurement (this checkout's ``src`` and
``studies/src`` first on ``PYTHONPATH``) on Handwritten and synthetic-many-views (12 views), six methods
(three bases, three IID methods), S seeds, L_ic reading ``paper``, one torch thread per fit, no checkpoints,
no loggers, each into a fresh folder (nothing reused from a cache), at the suite's default training settings:
per-epoch costs are what it measures. With ``--baseline`` (another checkout, e.g. ``git archive COMMIT | tar
-x -C DIR``) the same protocol runs from that checkout in the same rounds, the two one after the other and
which goes first alternating by round, so that they share the load of a shared machine. Measured per process:
wall and CPU (user + system, of the suite and the workers it waited for) seconds; the fits it trained, counted
from its cache folder. Reported: fits per wall hour, the median over rounds of its ratio to the baseline of
the same round (target: 3), and whether every run's results (test accuracy and macro-F1 at every noise level,
best validation accuracy and loss, epochs) are the same in both checkouts, compared exactly.
Writes benchmarks/results/suite_throughput.md and .json (``--quick``: Handwritten, 2 methods, 1 seed,
``--jobs 1``; prints only, unless ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import REPO, _environment, _run

RESULTS = REPO / "benchmarks" / "results" / "suite_throughput.md"
TARGET = 3.0  # fits per hour of this checkout / the baseline's
HEAD, BASELINE = "this checkout", "baseline"
DATASETS = ("handwritten", "synthetic-many-views")
METHODS = ("lf-static", "if-static", "iid-l", "if-qmf", "iid-q", "iid-p")
BASES = ("lf-static", "if-static", "if-qmf", "qmf", "if-pdf", "pdf")  # neither L_ic nor L_dc
QUICK = (("handwritten",), ("lf-static", "iid-l"), 1, (1,))  # data sets, methods, seeds, jobs
# Flags that both this checkout's `suite` and the baseline's accept.
FIXED: tuple[str, ...] = ("--variants", "paper", "--threads", "1", "--accelerator", "cpu", "--no-checkpoints")
FIXED += ("--loggers", "", "--no-progress-bar")

RunKey = tuple[str, str, str, int]  # data set, L_ic reading, method, seed


@dataclass(frozen=True)
class Protocol:
    """What one measurement runs: every method on every data set with every seed."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int

    @property
    def fits(self) -> int:
        """Distinct runs the suite trains (one L_ic reading: a base is trained once per data set and seed)."""
        return len(self.datasets) * len(self.methods) * self.seeds

    def arguments(self, jobs: int, out: str) -> list[str]:
        """``iidfusion suite``'s arguments, writing to ``out``."""
        selection = ["--datasets", ",".join(self.datasets), "--methods", ",".join(self.methods)]
        return ["suite", *selection, "--seeds", str(self.seeds), "--jobs", str(jobs), *FIXED, "--out", out]


@dataclass
class Measurement:
    """One whole ``iidfusion suite`` process of one checkout."""

    checkout: str
    jobs: int
    round: int
    wall: float
    cpu: float
    fits: int
    epochs: int
    settings: dict[str, Any] = field(default_factory=dict)
    runs: dict[RunKey, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def fits_per_hour(self) -> float:
        return fits_per_hour(self.fits, self.wall)


def fits_per_hour(fits: int, seconds: float) -> float:
    return 3600.0 * fits / seconds


def parse_jobs(text: str) -> tuple[int, ...]:
    """``"1,2"`` as ``(1, 2)``; a ValueError that names the bad value."""
    try:
        jobs = tuple(int(part) for part in text.split(","))
    except ValueError:
        jobs = ()
    if not jobs or min(jobs) < 1 or len(set(jobs)) != len(jobs):
        raise ValueError(f"--jobs {text!r}: expected distinct positive integers separated by commas, e.g. 1,2")
    return jobs


def check_checkout(path: Path) -> Path:
    """``path`` resolved, or a ValueError when it holds no ``src/iidfusion``."""
    if not (path / "src" / "iidfusion" / "__init__.py").is_file():
        raise ValueError(f"--baseline {path}: not a checkout of iidfusion (no src/iidfusion/__init__.py)")
    return path.resolve()


def read_runs(path: Path) -> tuple[dict[RunKey, dict[str, Any]], dict[str, Any]]:
    """Every run of a suite.json, by (data set, reading, method, seed), with the numbers compared between
    checkouts, as written (suite.json keeps them exact); and the training settings of its configuration.
    """
    payload = json.loads(path.read_text())
    runs: dict[RunKey, dict[str, Any]] = {}
    for run in payload["runs"]:
        key = (run["dataset"], run["variant"], run["method"], run["seed"])
        if key in runs:
            raise RuntimeError(f"{path}: run {key} written twice")
        runs[key] = {
            **{f"test accuracy at noise {r['noise']!r}": r["accuracy"] for r in run["test"]},
            **{f"test macro-F1 at noise {r['noise']!r}": r["macro_f1"] for r in run["test"]},
            "best validation accuracy": run["val_acc"],
            "validation loss": run["val_loss"],
            "epochs": run["epochs"],
        }
    train = payload.get("config", {}).get("train", {})
    names = ("max_epochs", "patience", "stop_on", "monitor_distances", "monitor_samples")
    return runs, {name: train[name] for name in names if name in train}


def measure_once(checkout: Path, label: str, protocol: Protocol, jobs: int, index: int) -> Measurement:
    """Run the protocol from ``checkout`` into a fresh folder, and read what it trained."""
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as folder:
        out = Path(folder) / "suite"
        wall, cpu, _ = _run(["-m", "iidfusion", *protocol.arguments(jobs, str(out))], _environment(checkout), folder)
        fits = sum(1 for _ in (out / "cache").glob("*.json"))
        runs, settings = read_runs(out / "suite.json")
    if fits != protocol.fits or len(runs) != protocol.fits:
        raise RuntimeError(
            f"{label} trained {fits} runs and reported {len(runs)}; the protocol has {protocol.fits} "
            f"({len(protocol.datasets)} data sets x {len(protocol.methods)} methods x {protocol.seeds} seeds)"
        )
    epochs = sum(run["epochs"] for run in runs.values())
    return Measurement(label, jobs, index + 1, wall, cpu, fits, epochs, settings, runs)


def measure(
    checkouts: dict[str, Path], protocol: Protocol, jobs: tuple[int, ...], rounds: int, log
) -> list[Measurement]:
    """Every checkout at every jobs value, ``rounds`` times; within a round the checkouts take turns going first."""
    found = []
    for count in jobs:
        for index in range(rounds):
            order = list(checkouts.items())
            for label, checkout in order if index % 2 == 0 else order[::-1]:
                found.append(measure_once(checkout, label, protocol, count, index))
                last = found[-1]
                log(
                    f"--jobs {count}, round {index + 1}/{rounds}: {label}: {last.fits} fits, {last.wall:.1f} s wall, "
                    f"{last.cpu:.1f} s CPU, {last.fits_per_hour:.0f} fits/hour"
                )
    return found


def differences(now: dict[RunKey, dict[str, Any]], then: dict[RunKey, dict[str, Any]]) -> dict[RunKey, list[str]]:
    """Per run of either, the numbers in which the two differ (exact comparison; 'missing' when one lacks it)."""
    found: dict[RunKey, list[str]] = {}
    for key in sorted(now.keys() | then.keys(), key=str):
        if key not in now or key not in then:
            found[key] = ["missing in " + (HEAD if key not in now else BASELINE)]
            continue
        names = sorted(now[key].keys() | then[key].keys())
        changed = [name for name in names if now[key].get(name, "missing") != then[key].get(name, "missing")]
        if changed:
            found[key] = changed
    return found


def equality(measurements: list[Measurement]) -> dict[str, Any]:
    """This checkout's runs against the baseline's in every (jobs, round) both ran, and, for a checkout
    measured more than once, its runs against its own first measurement (the same at every jobs value and round?).
    """
    pairs: list[dict[str, Any]] = []
    differing: dict[RunKey, set[str]] = {}
    slots = {(m.checkout, m.jobs, m.round): m for m in measurements}
    for now in measurements:
        then = slots.get((BASELINE, now.jobs, now.round))
        if now.checkout != HEAD or then is None:
            continue
        found = differences(now.runs, then.runs)
        for key, names in found.items():
            differing.setdefault(key, set()).update(names)
        runs = len(now.runs.keys() | then.runs.keys())
        pairs.append({"jobs": now.jobs, "round": now.round, "runs": runs, "identical": runs - len(found)})
    stable = {}
    for label in dict.fromkeys(m.checkout for m in measurements):
        own = [m for m in measurements if m.checkout == label]
        if len(own) > 1:
            stable[label] = all(not differences(m.runs, own[0].runs) for m in own[1:])
    return {
        "pairs": pairs,
        "differing": [
            {"dataset": k[0], "reading": k[1], "method": k[2], "seed": k[3], "base": k[2] in BASES, "in": sorted(v)}
            for k, v in differing.items()
        ],
        "stable": stable,
    }


def ratios(measurements: list[Measurement], jobs: int) -> tuple[float, float] | None:
    """The median over rounds of this checkout's fits per hour / the baseline's of the same round, by wall
    and by CPU time; None without a baseline.
    """
    slots = {(m.checkout, m.round): m for m in measurements if m.jobs == jobs}
    pairs = [
        (m, slots[BASELINE, m.round]) for m in slots.values() if m.checkout == HEAD and (BASELINE, m.round) in slots
    ]
    if not pairs:
        return None
    wall = statistics.median(now.fits_per_hour / then.fits_per_hour for now, then in pairs)
    cpu = statistics.median(
        fits_per_hour(now.fits, now.cpu) / fits_per_hour(then.fits, then.cpu) for now, then in pairs
    )
    return wall, cpu


def _suite_line(protocol: Protocol) -> str:
    return shlex.join(["iidfusion", *protocol.arguments(0, "FRESH_FOLDER")]).replace("--jobs 0", "--jobs J")


def render(
    measurements: list[Measurement], protocol: Protocol, command: str, names: dict[str, str], rounds: int
) -> str:
    jobs_values = list(dict.fromkeys(m.jobs for m in measurements))
    settings = {label: next(m.settings for m in measurements if m.checkout == label) for label in names}
    lines = [
        "# Throughput of `iidfusion suite` (`python benchmarks/bench_suite.py`)",
        "",
        f"`{command}`",
        "",
        f"Protocol: `{_suite_line(protocol)}`, each process into a fresh folder (nothing reused), "
        f"{len(protocol.datasets)} data sets x {len(protocol.methods)} methods x {protocol.seeds} seeds = "
        f"{protocol.fits} fits, at the suite's default training settings ("
        + "; ".join(f"{names[label]}: {_settings(values)}" for label, values in settings.items())
        + f"). {rounds} round(s) per jobs value; within a round the checkouts run one after the other, "
        "which goes first alternating by round. Wall and CPU seconds (user + system, the suite and the "
        "workers it waited for) of the whole process; fits counted from its cache folder. The machine is "
        f"shared with other jobs (load {os.getloadavg()[0]:.1f} at the end of this run): compare ratios "
        "within one run, not seconds across runs.",
        "",
        "| checkout | jobs | fits | epochs trained | wall s | CPU s | fits/hour (wall) | fits/CPU hour "
        "| / baseline (wall) | / baseline (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count in jobs_values:
        ratio = ratios(measurements, count)
        for label, name in names.items():
            own = [m for m in measurements if m.checkout == label and m.jobs == count]
            wall, cpu = statistics.median(m.wall for m in own), statistics.median(m.cpu for m in own)
            shown = ("", "") if ratio is None or label == BASELINE else (f"{ratio[0]:.2f}", f"{ratio[1]:.2f}")
            lines.append(
                f"| {name} | {count} | {own[0].fits} | {statistics.median(m.epochs for m in own):g} | {wall:.1f} "
                f"| {cpu:.1f} | {fits_per_hour(own[0].fits, wall):.0f} | {fits_per_hour(own[0].fits, cpu):.0f} "
                f"| {shown[0]} | {shown[1]} |"
            )
    lines.append("")
    if BASELINE in names:
        lines.append(
            "Ratios: median over rounds of this checkout's fits per hour / the baseline's in the same round. "
            f"Target >= {TARGET:g} x (wall) at equal results: "
            + "; ".join(_verdict(count, ratios(measurements, count)) for count in jobs_values)
            + "."
        )
        lines += ["", *_equality_lines(equality(measurements), names, protocol)]
    lines += [
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"cores; Python {platform.python_version()}, torch {version('torch')}.",
    ]
    return "\n".join(lines) + "\n"


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items()) or "not recorded"


def _verdict(jobs: int, ratio: tuple[float, float] | None) -> str:
    if ratio is None:
        return f"--jobs {jobs}: no baseline"
    return f"--jobs {jobs}: {ratio[0]:.2f} x, " + ("met" if ratio[0] >= TARGET else "not met")


def _equality_lines(found: dict[str, Any], names: dict[str, str], protocol: Protocol) -> list[str]:
    pairs = found["pairs"]
    lines = [
        "Equal results: every run's numbers (test accuracy and macro-F1 at every noise level, best validation "
        "accuracy and the validation loss there, epochs) compared exactly between the checkouts, as each wrote "
        "them in its suite.json (which keeps them unrounded in both versions): "
        + "; ".join(f"--jobs {p['jobs']}, round {p['round']}: {p['identical']} of {p['runs']} identical" for p in pairs)
        + "."
    ]
    differing = found["differing"]
    bases = [m for m in protocol.methods if m in BASES]
    differ = sum(d["base"] for d in differing)
    if bases:
        lines[-1] += f" Bases ({', '.join(bases)}): " + (f"{differ} runs differ." if differ else "all identical.")
    if found["stable"]:
        lines[-1] += (
            " Each checkout's results the same at every jobs value and round: "
            + ", ".join(f"{names[label]}: {'yes' if same else 'no'}" for label, same in found["stable"].items())
            + "."
        )
    if differing:
        lines += ["", "| data set | reading | method | seed | base | differs in |", "|---|---|---|---:|---|---|"]
        lines += [
            f"| {d['dataset']} | {d['reading']} | {d['method']} | {d['seed']} | {'yes' if d['base'] else 'no'} "
            f"| {', '.join(d['in'])} |"
            for d in differing
        ]
    return lines


def payload(measurements: list[Measurement], protocol: Protocol, command: str, names: dict[str, str]) -> dict:
    """Every measurement (without the runs' numbers), the ratios and the equality check, for the .json."""
    jobs_values = list(dict.fromkeys(m.jobs for m in measurements))
    return {
        "command": command,
        "protocol": {**asdict(protocol), "fits": protocol.fits, "suite": _suite_line(protocol)},
        "checkouts": names,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": version("torch"),
            "load_at_end": os.getloadavg()[0],
        },
        "measurements": [
            {**{k: v for k, v in asdict(m).items() if k != "runs"}, "fits_per_hour": m.fits_per_hour}
            for m in measurements
        ],
        "ratio_to_baseline": {str(count): ratios(measurements, count) for count in jobs_values},
        "target": TARGET,
        "equality": equality(measurements) if BASELINE in names else None,
    }


def _commit(checkout: Path) -> str:
    """The short commit of a git checkout; "" for an archive (whose parent folders may be another repository)."""
    if not (checkout / ".git").exists():
        return ""
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Handwritten, 2 methods, 1 seed, --jobs 1; prints only")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the protocol (default 3)")
    parser.add_argument("--jobs", default="1,2", help="the suite's --jobs values, comma-separated (default 1,2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per jobs value (default 1)")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout run in the same rounds")
    parser.add_argument("--output", type=Path, default=None, help=f"markdown report (default {RESULTS}; + .json)")
    args = parser.parse_args(argv)
    try:
        jobs = parse_jobs(args.jobs)
        baseline = None if args.baseline is None else check_checkout(args.baseline)
        if args.seeds < 1 or args.rounds < 1:
            raise ValueError(f"--seeds {args.seeds}, --rounds {args.rounds}: each must be at least 1")
    except ValueError as error:
        print(f"bench_suite.py: error: {error}", file=sys.stderr)
        return 2
    protocol = Protocol(DATASETS, METHODS, args.seeds)
    if args.quick:
        datasets, methods, seeds, jobs = QUICK
        protocol = Protocol(datasets, methods, seeds)
    output = args.output if args.output is not None else (None if args.quick else RESULTS)
    checkouts = {HEAD: REPO} | ({} if baseline is None else {BASELINE: baseline})
    names = {label: f"{label}, `{path.name}` {_commit(path)}".strip() for label, path in checkouts.items()}
    command = shlex.join(["python", "benchmarks/bench_suite.py", *(sys.argv[1:] if argv is None else argv)])

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    measurements = measure(checkouts, protocol, jobs, 1 if args.quick else args.rounds, log)
    report = render(measurements, protocol, command, names, 1 if args.quick else args.rounds)
    print(report, end="")
    if output is not None:
        output.write_text(report)
        output.with_suffix(".json").write_text(
            json.dumps(payload(measurements, protocol, command, names), indent=1) + "\n"
        )
        log(f"wrote {output} and {output.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
