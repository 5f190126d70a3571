"""Restart and backoff policy: pure code, no I/O, no clock of its own.

Theory of operation: the supervisor asks a :class:`Backoff` for the delay before each
restart and tells it when a session stayed healthy long enough to forget past failures;
it records every restart in a :class:`RestartIntensity` window and escalates when that
says the limit is crossed. Time comes in as arguments (``now``), randomness from an
injected ``random.Random``, so every decision here is reproducible in tests.
"""

from __future__ import annotations

import collections
import enum
import random
from typing import Annotated, Final, final

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


@final
class Backoff:
    """Per-child backoff state (mutable; owned by one supervisor task).

    The ``n``-th delay (0-based, counted since creation or the last :meth:`reset`) is
    built from ``capped(n) = min(max, initial * multiplier**n)`` according to the
    policy's :class:`Jitter`. Every jittered delay draws exactly one
    ``rng.uniform`` and ``Jitter.NONE`` draws none, so a seeded ``random.Random``
    replays the same sequence.
    """

    __slots__ = ("_attempt", "_last_delay", "_policy", "_rng")

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        """Create the state for a child that has not failed yet.

        Args:
            policy: the backoff settings; build it with ``msgspec.convert`` or decode it
                from config so its bounds are checked.
            rng: the only source of randomness; pass a seeded ``random.Random`` in tests.
        """
        self._policy = policy
        self._rng = rng
        self._attempt = 0
        self._last_delay = 0.0

    @property
    def policy(self) -> BackoffPolicy:
        """The settings this state follows.

        Returns:
            The policy given at construction.
        """
        return self._policy

    @property
    def attempt(self) -> int:
        """How many delays :meth:`next_delay` handed out since creation or reset.

        Returns:
            The count of consecutive delays, ``0`` for a fresh state.
        """
        return self._attempt

    @property
    def last_delay(self) -> float:
        """The value the last :meth:`next_delay` call returned.

        Returns:
            The last delay in seconds, ``0.0`` before the first call.
        """
        return self._last_delay

    def next_delay(self) -> float:
        """Compute the delay before the next restart and advance :attr:`attempt` by one.

        With ``n`` the attempt before the call and ``capped(n)`` as in the class
        docstring: ``NONE`` gives ``capped(n)``; ``FULL`` a uniform draw in
        ``[0, capped(n)]``; ``EQUAL`` ``capped(n) / 2`` plus a draw in
        ``[0, capped(n) / 2]``; ``DECORRELATED`` a draw in
        ``[initial, max(initial, prev * multiplier)]`` capped at ``max``, where ``prev``
        is the last delay (``initial`` for the first one). That is AWS's "decorrelated
        jitter" with the multiplier in place of 3.

        Returns:
            The delay in seconds, always within ``[0, max]``.
        """
        policy = self._policy
        n = self._attempt
        match policy.jitter:
            case Jitter.NONE:
                delay = self._capped(n)
            case Jitter.FULL:
                delay = self._rng.uniform(0.0, self._capped(n))
            case Jitter.EQUAL:
                capped = self._capped(n)
                half = capped / 2
                # min(): halving and adding round up near the smallest floats (a
                # hypothesis case: initial 5e-324 gave 6e-323 over a cap of 5.4e-323).
                delay = min(capped, half + self._rng.uniform(0.0, half))
            case Jitter.DECORRELATED:
                prev = self._last_delay if n > 0 else policy.initial
                upper = max(policy.initial, prev * policy.multiplier)
                delay = self._rng.uniform(policy.initial, upper)
        # The uniform draws can land a rounding step outside their bounds
        # (``random.uniform`` docs); the promise to the caller is [0, max].
        delay = min(policy.max, max(0.0, delay))
        self._attempt = n + 1
        self._last_delay = delay
        return delay

    def reset(self) -> None:
        """Forget past failures: back to the state of a fresh :class:`Backoff`.

        The injected ``rng`` is left as it is; re-seed it to replay a sequence.
        """
        self._attempt = 0
        self._last_delay = 0.0

    def _capped(self, n: int) -> float:
        # ``initial * multiplier**n`` without overflow: once the cap is reached the
        # product only grows (multiplier >= 1), so a power too large for a float means
        # the cap. The early exits also keep ``0 * inf`` (NaN) out of the result.
        policy = self._policy
        if policy.initial == 0.0 or policy.initial >= policy.max or policy.multiplier == 1.0:
            return min(policy.max, policy.initial)
        try:
            grown = policy.initial * policy.multiplier**n
        except OverflowError:
            return policy.max
        return min(policy.max, grown)


@final
class RestartIntensity:
    """OTP restart intensity: at most ``max_restarts`` restarts inside a sliding window.

    The window ending at ``now`` is the half-open interval ``(now - within, now]``: a
    restart exactly ``within`` seconds ago has left it. Only the newest
    ``max_restarts + 1`` timestamps are kept, since that many inside the window is
    already "exceeded" and older ones can no longer change the answer.
    """

    __slots__ = ("_last_now", "_max_restarts", "_times", "_within")

    def __init__(self, max_restarts: int, within: float) -> None:
        """Create an empty window.

        Args:
            max_restarts: restarts allowed inside the window (``>= 0``; ``0`` means the
                first restart already exceeds the limit).
            within: the window length in seconds (``> 0``), on the caller's clock.

        Raises:
            ValueError: ``max_restarts`` is negative or ``within`` is not positive.
        """
        if max_restarts < 0:
            raise ValueError(
                f"max_restarts must be >= 0, got {max_restarts!r}; use 0 to escalate on "
                "the first restart"
            )
        if not within > 0:
            raise ValueError(f"within must be > 0 seconds, got {within!r}")
        self._max_restarts = max_restarts
        self._within = within
        self._times: collections.deque[float] = collections.deque(maxlen=max_restarts + 1)
        self._last_now = float("-inf")

    def record(self, now: float) -> bool:
        """Record a restart at ``now`` and say whether the limit is now crossed.

        Args:
            now: the current time in seconds (``trio.current_time()``), never smaller
                than the ``now`` of an earlier call.

        Returns:
            ``True`` when the restarts inside ``(now - within, now]``, this one
            included, exceed ``max_restarts``; the supervisor should then escalate.

        Raises:
            ValueError: ``now`` is smaller than the ``now`` of an earlier call.
        """
        self._advance("record", now)
        self._times.append(now)
        return len(self._times) > self._max_restarts

    def count(self, now: float) -> int:
        """Count the restarts inside ``(now - within, now]``.

        Only the newest ``max_restarts + 1`` restarts are remembered, so the result is
        at most ``max_restarts + 1``.

        Args:
            now: the current time in seconds, never smaller than the ``now`` of an
                earlier call.

        Returns:
            The number of recorded restarts still inside the window.

        Raises:
            ValueError: ``now`` is smaller than the ``now`` of an earlier call.
        """
        self._advance("count", now)
        return len(self._times)

    def _advance(self, method: str, now: float) -> None:
        if not now >= self._last_now:
            raise ValueError(
                f"RestartIntensity.{method}() got now={now!r}, earlier than the previous "
                f"now={self._last_now!r}; time must not go backwards "
                "(pass trio.current_time())"
            )
        self._last_now = now
        horizon = now - self._within
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()
