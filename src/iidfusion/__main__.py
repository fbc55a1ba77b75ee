"""``python -m iidfusion``: the ``iidfusion`` command."""

import sys

from iidfusion.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
