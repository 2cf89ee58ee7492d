"""Entry point of `python -m parity_tests`."""

import sys

from parity_tests.cli import main

sys.exit(main())
