"""``python -m benchmarks``: see :mod:`benchmarks.harness` (``--help`` for the flags)."""

from benchmarks.harness import main

raise SystemExit(main())
