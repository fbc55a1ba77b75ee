"""Base structure x L_ic reading x alpha: the interaction table of docs/evidence.md.

    python benchmarks/base_structure.py      # -> results/base_structure.{md,json}

For the paper's base structure (``--unimodal-heads separate``) at alpha in {1, 0.1, 0.01}, and
for ``shared`` (g also trained on every modality) at alpha = 1, one ``iidfusion suite`` runs the nine main
methods with the L_ic readings ``paper`` and ``vib`` on the synthetic benchmark, Handwritten and
LandUse-21 (``../shared/data/multiview/landuse21.mat``), 3 seeds, at the library's other defaults.
The suites share one run cache, so each base is trained once for every alpha. The table gives,
per cell, IID minus its IF base in test Avg Acc and in validation accuracy (percentage points,
mean over data sets x seeds), and the IF bases minus the LF bases; the default alpha of the
``paper`` reading is the one with the best mean validation gain under the ``separate`` structure
(selection on validation, test read once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from iidfusion.engine.outputs import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("synthetic", "handwritten", "../shared/data/multiview/landuse21.mat")
# (structure, alpha) of each suite: alpha is chosen under the paper's structure; the shared one shows the interaction.
CELLS = (("separate", "1"), ("separate", "0.1"), ("separate", "0.01"), ("shared", "1"))
STRUCTURES = ("separate", "shared")
ALPHAS = ("1", "0.1", "0.01")
READINGS = ("paper", "vib")
FAMILIES = {
    "static": ("lf-static", "if-static", "iid-l"),
    "qmf": ("qmf", "if-qmf", "iid-q"),
    "pdf": ("pdf", "if-pdf", "iid-p"),
}


def run_suites(work: Path, jobs: int) -> None:
    """The suites of :data:`CELLS`, in ``work/<structure>/alpha<alpha>``, sharing ``work/cache``; resumable."""
    (work / "cache").mkdir(parents=True, exist_ok=True)
    for structure, alpha in CELLS:
        out = work / structure / f"alpha{alpha}"
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "cache").exists():
            (out / "cache").symlink_to(work / "cache")
        argv = [
            "suite",
            "--datasets",
            ",".join(DATASETS),
            "--variants",
            ",".join(READINGS),
            "--methods",
            "main",
            "--seeds",
            "3",
            "--alpha",
            alpha,
            "--unimodal-heads",
            structure,
            "--jobs",
            str(jobs),
            "--threads",
            "1",
            "--no-progress-bar",
            "--out",
            str(out),
            "--resume",
        ]
        subprocess.run(
            [sys.executable, "-m", "iidfusion.cli.main", *argv], cwd=REPO, check=True, stdout=subprocess.DEVNULL
        )


def avg_acc(run: dict) -> float:
    return 100 * statistics.fmean(t["accuracy"] for t in run["test"])


def collect(work: Path) -> tuple[dict, list[str]]:
    """Per (structure, alpha, reading): IID - IF base and IF base - LF base, test and validation;
    and the commits the suites ran at.
    """
    cells: dict = {}
    commits: set[str] = set()
    for structure, alpha in CELLS:
        suite = json.loads((work / structure / f"alpha{alpha}" / "suite.json").read_text())
        commits.add(suite["provenance"].get("git_commit") or "unknown")
        runs = {(r["dataset"], r["variant"], r["method"], r["seed"]): r for r in suite["runs"]}
        bases = {(d, m, s): r for (d, v, m, s), r in runs.items() if not m.startswith("iid")}
        for reading in READINGS:
            rows = {}
            for family, (lf, if_, iid) in FAMILIES.items():
                test, val, if_test, if_val = [], [], [], []
                for (d, v, m, s), r in runs.items():
                    if v != reading or m != iid:
                        continue
                    base, late = _base(bases, runs, d, v, if_, s), _base(bases, runs, d, v, lf, s)
                    test.append(avg_acc(r) - avg_acc(base))
                    val.append(100 * (r["val_acc"] - base["val_acc"]))
                    if_test.append(avg_acc(base) - avg_acc(late))
                    if_val.append(100 * (base["val_acc"] - late["val_acc"]))
                rows[family] = {
                    "iid_minus_if_test": statistics.fmean(test),
                    "iid_minus_if_val": statistics.fmean(val),
                    "if_minus_lf_test": statistics.fmean(if_test),
                    "if_minus_lf_val": statistics.fmean(if_val),
                    "pairs": len(test),
                }
            cells[f"{structure}/{alpha}/{reading}"] = rows
    return cells


def _base(bases: dict, runs: dict, dataset: str, variant: str, method: str, seed: int) -> dict:
    return runs.get((dataset, variant, method, seed)) or bases[(dataset, method, seed)]


def default_alpha(cells: dict) -> str:
    """The alpha of the best mean validation gain of the paper's reading in the paper's structure."""

    def gain(alpha: str) -> float:
        return statistics.fmean(row["iid_minus_if_val"] for row in cells[f"separate/{alpha}/paper"].values())

    return max(ALPHAS, key=gain)


def report(cells: dict, commits: list[str]) -> str:
    chosen = default_alpha(cells)
    lines = [
        "# Base structure x L_ic reading x alpha",
        "",
        "`python benchmarks/base_structure.py`: four `iidfusion suite` runs (structure `separate` at alpha 1, 0.1 and "
        "0.01; `shared` at alpha 1) of the nine main methods with the L_ic readings `paper` and `vib`, on synthetic, "
        "Handwritten "
        "and LandUse-21, 3 seeds, the other options at the library's defaults. Cells: IID minus its IF base, test "
        "Avg Acc / validation accuracy, percentage points, mean over 3 data sets x 3 seeds (9 pairs); then the IF "
        f"base minus the LF base under each structure. Suites run at commit {', '.join(c[:7] for c in commits)}.",
        "",
        "| structure | alpha | reading | IID-L - IF-static | IID-Q - IF-QMF | IID-P - IF-PDF | mean (val) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for key, rows in cells.items():
        structure, alpha, reading = key.split("/")
        shown = " | ".join(f"{r['iid_minus_if_test']:+.2f} / {r['iid_minus_if_val']:+.2f}" for r in rows.values())
        mean_val = statistics.fmean(r["iid_minus_if_val"] for r in rows.values())
        lines.append(f"| {structure} | {alpha} | {reading} | {shown} | {mean_val:+.2f} |")
    lines += ["", "| structure | IF-static - LF-static | IF-QMF - QMF | IF-PDF - PDF |", "|---|---:|---:|---:|"]
    for structure in STRUCTURES:
        rows = cells[f"{structure}/1/paper"]
        lines.append(
            f"| {structure} | "
            + " | ".join(f"{r['if_minus_lf_test']:+.2f} / {r['if_minus_lf_val']:+.2f}" for r in rows.values())
            + " |"
        )
    lines += [
        "",
        f"Default alpha of the `paper` reading, by the best mean validation gain under `separate`: **{chosen}**.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=REPO / "runs" / "base_structure", help="suite folders and their cache"
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="aggregate the suites in --work without training")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not args.report_only:
        run_suites(args.work.resolve(), args.jobs)
    cells, commits = collect(args.work.resolve())
    text = report(cells, commits)
    print(text)
    write_text_atomic(
        args.out / "base_structure.json",
        json.dumps({"cells": cells, "commits": commits, "default_alpha": default_alpha(cells)}, indent=1) + "\n",
    )
    write_text_atomic(args.out / "base_structure.md", text)


if __name__ == "__main__":
    main()
