"""`python -m astrogan ...`: the same command line as `astrogan ...` (for environments without the script)."""

import sys

from astrogan.cli.main import main

sys.exit(main())
