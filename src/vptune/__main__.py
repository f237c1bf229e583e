"""``python -m vptune`` (and ``torchrun -m vptune train ...``): the ``vptune`` command line."""

import sys

from .cli import main

sys.exit(main())
