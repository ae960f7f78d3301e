"""``python -m anatomy_r1.cli``: ``accelerate launch -m`` runs a module, not a console script."""

import sys

from anatomy_r1.cli import main

sys.exit(main())
