"""``python -m iidfusion_studies``: the commands of the studies, on the machinery of ``iidfusion``'s command line.

    python -m iidfusion_studies bench wasserstein | bench train     (docs/evidence.md, sections 1 and 3)
    python -m iidfusion_studies plot --runs RUN ... --out FIG.png    (section 2, the paper's Figure 4)
    python -m iidfusion_studies sweep --data handwritten --out DIR   (section 4)

Run from a checkout of the repository (the studies do not ship with the package).
"""

from __future__ import annotations

from pathlib import Path

from iidfusion.cli.main import IIDFUSION, CommandLine
from iidfusion.cli.main import main as run_command_line

STUDIES = CommandLine(
    "python -m iidfusion_studies", "The studies behind docs/evidence.md: benchmarks, monitoring plots, sweeps.",
    ("iidfusion_studies.cli.bench", "iidfusion_studies.cli.plot", "iidfusion_studies.cli.sweep"),
    (Path(__file__).resolve().parents[1], *IIDFUSION.own),  # a ValueError of the library is bad input too
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run a study command; exit codes as ``iidfusion``'s (0 done, 2 bad input, 1 a bug, 130 interrupted)."""
    return run_command_line(argv, STUDIES)
