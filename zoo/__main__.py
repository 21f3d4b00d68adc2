"""``python -m zoo``: the same as the ``zoo`` command."""

import sys

from ._cli import main

sys.exit(main())
