"""The ``marketprism`` command line: ``run``, ``check``, ``demo``, ``probe`` and ``status``.

``main`` is the console script's entry point (``marketprism = "supervisor.cli:main"``).
"""

from supervisor.cli.main import main as main

__all__ = ["main"]
