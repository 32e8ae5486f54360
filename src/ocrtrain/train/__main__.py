"""`python -m ocrtrain.train [overrides]`: train inside a supervised run (what `ocrtrain train`
hands to the supervisor)."""

import sys

from ocrtrain.train.train import main

sys.exit(main())
