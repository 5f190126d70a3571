"""Restart and backoff policy: pure code, no I/O, no clock of its own.

Theory of operation: the supervisor asks a :class:`Backoff` for the delay before each
restart and tells it when a session stayed healthy long enough to forget past failures;
it records every restart in a :class:`RestartIntensity` window and escalates when that
says the limit is crossed. Time comes in as arguments (``now``), randomness from an
injected ``random.Random``, so every decision here is reproducible in tests.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec

#: First delay in seconds. Short, because most drops (Binance's 24 h cut, a proxy blip)
#: heal at once; the registry's connect permits keep a mass reconnect paced anyway.
DEFAULT_INITIAL: Final = 0.5
#: Cap in seconds. AWS's backoff guidance caps in the tens of seconds; 30 s keeps an
#: outage's recovery prompt without hammering the exchange.
DEFAULT_MAX: Final = 30.0
#: Growth factor per consecutive failure.
DEFAULT_MULTIPLIER: Final = 2.0
#: Seconds a session must stay live before the delay resets to ``initial``.
DEFAULT_RESET_AFTER: Final = 60.0


class RestartType(enum.Enum):
    """When a child is restarted after its run ends (OTP's restart types)."""

    #: Always restarted, whether it failed or ended normally.
    PERMANENT = "permanent"
    #: Restarted only when it failed (raised); a normal end stops it.
    TRANSIENT = "transient"
    #: Never restarted; its end (normal or failed) is recorded and it stays stopped.
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children restart together when one fails (OTP's strategies)."""

    #: Only the failed child restarts.
    ONE_FOR_ONE = "one_for_one"
    #: Every child is stopped and restarted with the failed one.
    ONE_FOR_ALL = "one_for_all"
    #: The failed child and every child declared after it restart.
    REST_FOR_ONE = "rest_for_one"


class Jitter(enum.Enum):
    """How randomness is mixed into the exponential delay.

    See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/ .
    """

    #: Exactly ``min(max, initial * multiplier**n)``.
    NONE = "none"
    #: Uniform in ``[0, capped]``.
    FULL = "full"
    #: ``capped / 2`` plus uniform in ``[0, capped / 2]``.
    EQUAL = "equal"
    #: Uniform in ``[initial, previous * multiplier]``, capped at ``max``.
    DECORRELATED = "decorrelated"


class BackoffPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Backoff settings, the ``backoff`` table of a connection.

    Attributes:
        initial: the first delay in seconds (``0`` reconnects at once the first time).
        max: the largest delay in seconds.
        multiplier: growth factor per consecutive failure (``>= 1``).
        jitter: one of ``none``, ``full``, ``equal``, ``decorrelated``.
        reset_after: seconds a session must stay live before the next failure starts
            again from ``initial``.
    """

    initial: Annotated[float, msgspec.Meta(ge=0, le=3600.0)] = DEFAULT_INITIAL
    max: Annotated[float, msgspec.Meta(gt=0, le=86_400.0)] = DEFAULT_MAX
    multiplier: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)] = DEFAULT_MULTIPLIER
    jitter: Jitter = Jitter.FULL
    reset_after: Annotated[float, msgspec.Meta(ge=0, le=86_400.0)] = DEFAULT_RESET_AFTER
