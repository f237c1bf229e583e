"""``python -m vptune.cli``: the same as the ``vptune`` console script."""

import sys

from . import main

sys.exit(main())
