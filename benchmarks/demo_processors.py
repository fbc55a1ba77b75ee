"""How much `make demo` moves from one processor type to another (README, "Results: make demo").

    git worktree add /tmp/at-ref REF && (cd /tmp/at-ref && PYTHONPATH=src iidfusion demo --out /tmp/demo-ref)
    python benchmarks/demo_processors.py --reference REF --rerun /tmp/demo-ref/results.json

The README of commit REF holds the demo table its author's machine printed; the rerun is the same
code's demo on this machine. This writes results/demo_across_processors.md: the Avg Acc of each
method on both machines and the difference, with the rerun's processor from its provenance.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
from pathlib import Path

from iidfusion.engine.outputs import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| ([a-z-]+) \|.*\| ([0-9.]+) ± [0-9.]+ \|$")


def readme_avg_acc(reference: str) -> dict[str, float]:
    """The Avg Acc column of the README demo table at commit ``reference``."""
    text = subprocess.run(
        ["git", "show", f"{reference}:README.md"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    table = text.split("### Results: `make demo`", 1)[1]
    return {m.group(1): float(m.group(2)) for m in map(ROW.match, table.splitlines()) if m}


def rerun_avg_acc(path: Path) -> tuple[dict[str, float], dict]:
    """Avg Acc per method (mean over seeds of the mean over noise levels) of a results.json, and its provenance."""
    data = json.loads(path.read_text())
    per_run: dict[tuple[str, int], list[float]] = {}
    for row in data["results"]:
        per_run.setdefault((row["method"], row["seed"]), []).append(row["accuracy"])
    methods: dict[str, list[float]] = {}
    for (method, _), accuracies in per_run.items():
        methods.setdefault(method, []).append(100 * statistics.fmean(accuracies))
    return {m: statistics.fmean(v) for m, v in methods.items()}, data["provenance"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="the commit whose README table was made on another machine")
    parser.add_argument("--rerun", type=Path, required=True, help="results.json of that commit's demo on this machine")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    reference = readme_avg_acc(args.reference)
    rerun, provenance = rerun_avg_acc(args.rerun)
    differences = {m: round(rerun[m], 2) - reference[m] for m in reference}
    lines = [
        "# `make demo` on two processor types",
        "",
        f"The demo table of README.md at commit {args.reference[:7]} (made on its author's machine) against the same "
        f"commit's `iidfusion demo` on {provenance.get('cpu', 'this machine')} "
        f"(torch {provenance.get('torch', '?')}), Avg Acc (%), mean over 5 seeds.",
        "",
        "| method | README | this machine | difference |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {reference[m]:.2f} | {rerun[m]:.2f} | {differences[m]:+.2f} |" for m in reference]
    largest = max(abs(d) for d in differences.values())
    lines += [
        "",
        f"Largest difference: {largest:.2f} pp; rows within 0.15 pp: "
        f"{sum(abs(d) <= 0.15 for d in differences.values())} of {len(differences)}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_text_atomic(args.out / "demo_across_processors.md", text)


if __name__ == "__main__":
    main()
