"""`python -m se_flax.convert`: the `se-convert` command (see `se_flax.convert.cli`)."""

import sys

from se_flax.convert.cli import main

sys.exit(main())
