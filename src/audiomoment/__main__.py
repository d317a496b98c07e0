"""``python -m audiomoment``: the command line."""

import sys

from audiomoment.cli.app import main

sys.exit(main())
