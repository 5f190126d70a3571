"""``python -m supervisor.testing.soak``: see :mod:`supervisor.testing.soak._cli`."""

import sys

from supervisor.testing.soak._cli import main

sys.exit(main())
