"""``python -m orchestrate_kit``: the same as the ``orchestrate-kit`` command."""

import sys

from .main import main

sys.exit(main())
