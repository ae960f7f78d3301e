"""``python -m anatomy_r1``: the command line, for environments without the console script."""

import sys

from anatomy_r1.cli import main

sys.exit(main())
