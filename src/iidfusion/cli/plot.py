"""``iidfusion plot``: inter-modal distance and validation accuracy per epoch from run logs (Figure 4)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Read the CSV logs of training runs (RUN/csv/metrics.csv, as `iidfusion fit` and `compare` write
them) and draw, side by side, the mean inter-modal Wasserstein distance per epoch and the
validation accuracy per epoch of each run, typically a base method and its IID variant trained
on the same data with the same seed, then the two diagnostics per modality: the shared head's
accuracy on each modality alone and the fused accuracy with each modality replaced by its
training mean (drop-one-modality), e.g.
  iidfusion fit --method qmf --out runs/fig4 ; iidfusion fit --method iid-q --out runs/fig4
  iidfusion plot --runs runs/fig4/qmf/seed0 runs/fig4/iid-q/seed0 --out fig4.png fig4.pdf
Prints markdown tables of the plotted numbers; --table FILE also writes them."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot", help="plot distance and accuracy per epoch from run logs", description=DESCRIPTION
    )
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run folders (or their metrics.csv)")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="legend labels, one per run (default: method and seed from the run)",
    )
    parser.add_argument(
        "--out",
        required=True,
        nargs="+",
        metavar="FIGURE",
        help="figure files to write: .png, .pdf or .svg, one or more",
    )
    parser.add_argument(
        "--table", default=None, metavar="MD", help="also write the printed table to this file (default: none)"
    )
    parser.add_argument(
        "--distance", default="val/wasserstein/mean", help="logged distance metric (default: %(default)s)"
    )
    parser.add_argument("--accuracy", default="val/acc", help="logged accuracy metric (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import functools
    from pathlib import Path

    from iidfusion.engine.figures import close_figure, save_figure
    from iidfusion.engine.outputs import check_output_folder
    from iidfusion.engine.results import write_files
    from iidfusion.tasks.classification.monitoring import (
        diagnostics_table,
        monitoring_table,
        plot_monitoring,
        read_run_log,
    )

    if args.labels is not None and len(args.labels) != len(args.runs):
        raise ValueError(f"--labels gives {len(args.labels)} labels for {len(args.runs)} runs")
    outs = [Path(out) for out in args.out]
    for out in outs:
        if out.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ValueError(f"--out must be a .png, .pdf or .svg file, got {out}")
    table_path = None if args.table is None else Path(args.table)
    for flag, path in [*(("--out", out) for out in outs), ("--table", table_path)]:
        if path is not None:
            if path.is_dir():
                raise ValueError(f"{flag} {path} is a folder; it must be a file name")
            check_output_folder(path.parent, name=f"the folder {path.parent} of {flag} {path}", shared=True)
    labels = args.labels or [None] * len(args.runs)
    runs = [read_run_log(path, label) for path, label in zip(args.runs, labels, strict=True)]
    table = monitoring_table(runs, args.distance, args.accuracy) + "\n"
    diagnostics = diagnostics_table(runs)
    if diagnostics:
        table += "\n" + diagnostics + "\n"
    figure = plot_monitoring(runs, args.distance, args.accuracy)
    try:
        for out in outs:
            write_files(out.parent, {}, {out.name: functools.partial(save_figure, figure)})
    finally:
        close_figure(figure)
    if table_path is not None:
        write_files(table_path.parent, {table_path.name: table})
    print(table, end="")
    print(f"figure written to {', '.join(str(out) for out in outs)}")
    return 0
