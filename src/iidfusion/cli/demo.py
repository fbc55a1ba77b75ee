"""``iidfusion demo``: the main job on the bundled data (what ``make demo`` runs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the main comparison on the bundled Handwritten data")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print("iidfusion demo: the comparison on the bundled Handwritten data is coming soon.")
    return 0
