"""The fault soak: the supervisor against rule-enforcing fakes, under randomized faults.

Run it with ``python -m supervisor.testing.soak`` (``--help`` lists the options); the
summary and the bounds are explained in ``docs/reliability.md``.
"""

from supervisor.testing.soak._faults import FaultKind as FaultKind
from supervisor.testing.soak._records import RunResult as RunResult
from supervisor.testing.soak._records import SoakOptions as SoakOptions
from supervisor.testing.soak._runner import run_soak as run_soak

__all__ = ["FaultKind", "RunResult", "SoakOptions", "run_soak"]
