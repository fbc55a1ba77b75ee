"""Time per training step and peak memory of IID against its bases: ``python benchmarks/bench_train.py [--quick]``.

The same as ``python -m iidfusion_studies bench train``: writes benchmarks/results/train_cost.{md,csv} (with
``--quick``, a smoke-test size that writes nothing unless ``--out`` is given). ``--device cuda``
measures on a GPU. See ``python -m iidfusion_studies bench train --help`` and docs/evidence.md.
"""

import sys

from iidfusion_studies.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train", *sys.argv[1:]]))
