import sys

from anatomy_r1.cli import main

sys.exit(main())
