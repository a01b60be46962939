"""``python -m cnnzoo``: the same as the ``cnnzoo`` command."""

import sys

from .cli import main

sys.exit(main())
