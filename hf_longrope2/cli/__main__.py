"""``python -m hf_longrope2.cli ...`` is ``hf-longrope2 ...``."""

import sys

from . import main

sys.exit(main())
