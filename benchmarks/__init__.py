"""ormsession's benchmarks against a hand-written floor: ``python -m benchmarks`` (``make
bench``) and ``python -m benchmarks.compare OLD.json NEW.json``; see ``docs/performance.md``."""
