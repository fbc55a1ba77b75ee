"""``iidfusion datasets``: list the bundled data sets, or describe one (a name or a file)."""

from __future__ import annotations

import argparse

from iidfusion.cli.options import bounded_int
from iidfusion.core.config import SEED_LIMIT


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list the bundled data sets or describe a data set / multi-view file",
        description="Without an argument, list the bundled data sets. With a name or the path of a .mat, .npz, "
        ".csv or .parquet file, describe it: views and their widths, samples per split, classes and their counts, "
        "and for a file which of its arrays or columns were taken as views and labels (and which were passed over).",
    )
    parser.add_argument("data", nargs="?", metavar="NAME_OR_PATH", help="data set to describe (default: list all)")
    parser.add_argument(
        "--seed", type=bounded_int(0, SEED_LIMIT), default=0, help="seed of the split shown (default: 0)"
    )
    parser.add_argument(
        "--views",
        default="",
        metavar="KEY[,KEY...]",
        help="a file's views: keys of matrices, cells or structs, or a table's NAME=GLOB column patterns "
        "(default: detected; a table's by column prefix before the first _)",
    )
    parser.add_argument("--labels", default=None, metavar="KEY", help="a file's labels (default: detected)")
    parser.add_argument(
        "--id-column", default=None, metavar="KEY", help="a file's row ids, not a feature (default: a column 'id')"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.data.features.registry import available_datasets, describe

    if args.data is None:
        print("bundled data sets (`iidfusion datasets NAME` for details; a .mat, .npz, .csv or .parquet path too):")
        for name in available_datasets():
            print(f"  {describe(name, seed=args.seed).splitlines()[0]}")
        return 0
    views = tuple(key.strip() for key in args.views.split(",") if key.strip())
    print(describe(args.data, seed=args.seed, views=views, labels=args.labels, id_column=args.id_column))
    return 0
