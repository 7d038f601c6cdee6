"""``python -m tablemover``."""

import sys

from tablemover.cli import main

sys.exit(main())
