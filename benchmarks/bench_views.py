"""Whole IID fits against their IF base as the number of views M grows (L_dc solves M(M-1)/2 problems a step).

``python benchmarks/bench_views.py [--quick] [--rounds K] [--epochs E] [--output PATH]`` runs
``iidfusion fit`` processes as :mod:`bench_fit` does (one torch thread, E epochs without early
stopping, CPU time of each process, configurations interleaved within each round): ``if-static``
and ``iid-l`` on Handwritten with its first 2, 3 and all 6 views, and on synthetic-many-views (12
views), there also ``iid-l --dc-pairs 12`` (12 random pairs of the 66 a step: the departure that
makes L_dc's cost linear in M, docs/method.md). Monitoring is off (``--no-monitor-distances``):
this measures training. Reported per M: the fastest run of each, and the ratios to the base of
the fastest runs and the median within-round ratio. Writes benchmarks/results/views.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import Config, _fastest, _ratios, _verdict, measure

RESULTS = Path(__file__).resolve().parent / "results" / "views.md"
HANDWRITTEN = ("pix", "fou", "fac", "zer", "kar", "mor")
TARGETS = {2: 1.3, 3: 1.3, 6: 1.3, 12: 1.6}  # IID / IF base, whole fit


def view_configs() -> dict[int, list[Config]]:
    """Per M: the base, IID, and (M = 12) IID on sampled pairs."""
    quiet = ("--no-monitor-distances",)
    configs: dict[int, list[Config]] = {}
    for count in (2, 3, 6):
        views = ("--views", ",".join(HANDWRITTEN[:count]))
        configs[count] = [Config(f"{method} M={count}", method, quiet + views) for method in ("if-static", "iid-l")]
    many = "synthetic-many-views"
    configs[12] = [
        Config("if-static M=12", "if-static", quiet, data=many),
        Config("iid-l M=12", "iid-l", quiet, data=many),
        Config("iid-l --dc-pairs 12 M=12", "iid-l", (*quiet, "--dc-pairs", "12"), data=many),
    ]
    return configs


def render(runs: dict[str, list[tuple[float, float]]], rounds: int, epochs: int) -> str:
    rows = []
    for count, configs in view_configs().items():
        base = configs[0]
        for config in configs[1:]:
            best, paired = _ratios(runs[config.label], runs[base.label])
            rows.append(
                f"| {count} | {config.label.removesuffix(f' M={count}')} | {_fastest(runs[base.label]):.1f} | "
                f"{_fastest(runs[config.label]):.1f} | {best:.2f} | {paired:.2f} | <= {TARGETS[count]} | "
                f"{_verdict(paired, TARGETS[count])} |"
            )
    return "\n".join(
        [
            "# IID against its IF base as the number of views grows",
            "",
            f"`python benchmarks/bench_views.py --rounds {rounds} --epochs {epochs}`: whole `iidfusion fit` processes, "
            f"one torch thread, {epochs} epochs without early stopping, no monitoring; CPU seconds of each process "
            f"(fastest of {rounds} interleaved rounds). Handwritten's first M views for M = 2, 3, 6; "
            f"synthetic-many-views for M = 12. {platform.processor() or platform.machine()}, Python "
            f"{platform.python_version()}.",
            "",
            "| M | IID | if-static CPU s | IID CPU s | ratio of fastest | median ratio in a round | target | met |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "`--dc-pairs 12` solves 12 random pairs of the 66 a step (an unbiased estimate of L_dc, a departure "
            "from the paper: docs/method.md), so L_dc's cost grows linearly in M instead of quadratically.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per fit (default 30)")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 epochs; prints unless --output")
    parser.add_argument("--output", default="", help=f"report file (default {RESULTS.relative_to(Path.cwd())})")
    args = parser.parse_args(argv)
    rounds, epochs = (1, 2) if args.quick else (args.rounds, args.epochs)
    configs = [c for group in view_configs().values() for c in group]
    runs = measure(configs, rounds, epochs, lambda line: print(line, file=sys.stderr, flush=True))
    report = render(runs, rounds, epochs)
    output = Path(args.output) if args.output else (None if args.quick else RESULTS)
    if output is None:
        print(report)
    else:
        output.write_text(report)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
