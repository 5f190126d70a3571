"""``python -m supervisor.cli``: the same as the ``marketprism`` command."""

import sys

from supervisor.cli import main

sys.exit(main())
