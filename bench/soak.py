"""The fault soak, from the bench folder: ``python bench/soak.py [options]``.

A thin wrapper around ``python -m supervisor.testing.soak`` (same options, same exit
status), kept beside the other benchmarks so that the long runs are found where the
measurements live. ``docs/reliability.md`` explains the soak and its results.

Usage::

    python bench/soak.py --faults 10000                 # memory transport, MockClock
    python bench/soak.py --transport tcp --faults 500   # real loopback sockets
"""

from __future__ import annotations

import sys

from supervisor.testing.soak._cli import main

if __name__ == "__main__":
    sys.exit(main())
