"""Wasserstein estimators against exact EMD: ``python benchmarks/bench_wasserstein.py [--quick]``.

The same as ``python -m iidfusion_studies bench wasserstein``: writes benchmarks/results/wasserstein.{md,csv,png}
(with ``--quick``, a smoke-test size that writes nothing unless ``--out`` is given). See
``python -m iidfusion_studies bench wasserstein --help`` for the options and docs/evidence.md for the findings.
"""

import sys

from iidfusion_studies.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "wasserstein", *sys.argv[1:]]))
