"""``python -m ormsession``: the same as the ``ormsession`` command."""

import sys

from ormsession.cli import main

sys.exit(main())
