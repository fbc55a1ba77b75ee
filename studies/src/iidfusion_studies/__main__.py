"""``python -m iidfusion_studies COMMAND``: see :mod:`iidfusion_studies.cli`."""

import sys

from iidfusion_studies.cli import main

sys.exit(main())
