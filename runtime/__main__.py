"""``python -m runtime``: see :mod:`runtime.cli`."""

import sys

from runtime.cli import main

sys.exit(main())
