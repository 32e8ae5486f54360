"""`python -m ocrtrain` is the `ocrtrain` console script."""

import sys

from ocrtrain.cli import main

sys.exit(main())
