"""Heartbeat policies: how an adapter proves the connection alive, as timers.

Rules of this file: pure bookkeeping; time arrives as ``now``; a policy never sends
anything itself: :meth:`Heartbeat.tick` returns the frame to write and/or the
``HeartbeatMissed`` event, and the adapter base queues them.

Three shapes cover the exchanges we speak:

- :class:`ServerPings` (Binance): the server sends WebSocket pings and the WebSocket
  client answers them; the adapter has no timer. Liveness is the actor's stale deadline.
- :class:`ClientPing` (OKX, Bybit): the client sends a text ping, either after ``every``
  seconds without a received frame (``idle=True``: OKX) or every ``every`` seconds
  whatever arrives (``idle=False``: Bybit counts the client's pings, not its own
  pushes); no frame within ``every`` seconds of a ping is a miss.
- :class:`ServerHeartbeat` (Deribit): the server sends heartbeats every ``interval``
  once asked to; any frame proves the connection alive, none for ``interval *
  tolerance`` is a miss. Answering ``test_request`` is protocol, so the adapter does it.

Every received frame counts as a sign of life (:meth:`Heartbeat.received`); the base
calls it before the adapter decodes the frame.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from actors.exchanges.messages import HeartbeatMissed

__all__ = ["ClientPing", "Heartbeat", "ServerHeartbeat", "ServerPings", "Tick"]


class Tick(NamedTuple):
    """What a policy asks for when its timer fires."""

    #: A frame to write now (a ping), or None.
    frame: str | None = None
    #: The connection is dead, or None.
    missed: HeartbeatMissed | None = None


_NOTHING = Tick()


class Heartbeat:
    """The policy interface; this base is :class:`ServerPings`' behaviour (no timer)."""

    def start(self, now: float) -> None:
        """A session began at ``now``."""

    def stop(self) -> None:
        """The session ended: no timer until the next :meth:`start`."""

    def received(self, now: float) -> None:
        """A frame arrived at ``now``."""

    def deadline(self) -> float:
        """When :meth:`tick` must be called next (``inf``: never)."""
        return math.inf

    def tick(self, now: float) -> Tick:
        """The timer may be due: what to send or report."""
        return _NOTHING

    def pings_within(self, quiet: float) -> bool:
        """Does the policy itself send a ping within ``quiet`` seconds of silence (so
        the caller's liveness probe would only duplicate it)?"""
        return False


class ServerPings(Heartbeat):
    """The server pings, the WebSocket client pongs: nothing for the adapter to do."""


class ClientPing(Heartbeat):
    """A text ping from the client, answered by any frame within ``every`` seconds.

    Args:
        every: seconds between pings (``idle``: of silence before a ping).
        frame: the ping frame's text.
        idle: ping only after ``every`` seconds without a received frame (OKX); else
            ping every ``every`` seconds regardless of traffic (Bybit).
        detail: the ``HeartbeatMissed`` text (say what the exchange answers).
    """

    def __init__(self, every: float, frame: str, *, idle: bool, detail: str) -> None:
        self.every = every
        self.frame = frame
        self.idle = idle
        self.detail = detail
        self._running = False
        self._next_ping = math.inf
        self._pinged_at: float | None = None

    def start(self, now: float) -> None:
        self._running = True
        self._next_ping = now + self.every
        self._pinged_at = None

    def stop(self) -> None:
        self._running = False

    def received(self, now: float) -> None:
        self._pinged_at = None
        if self.idle:
            self._next_ping = now + self.every

    def deadline(self) -> float:
        if not self._running:
            return math.inf
        if self._pinged_at is not None:
            return min(self._pinged_at + self.every, self._next_ping)
        return self._next_ping

    def pings_within(self, quiet: float) -> bool:
        return self.every <= quiet

    def tick(self, now: float) -> Tick:
        if not self._running:
            return _NOTHING
        pinged = self._pinged_at
        if pinged is not None and now >= pinged + self.every:
            self._running = False
            return Tick(missed=HeartbeatMissed(detail=self.detail))
        if now >= self._next_ping and (pinged is None or not self.idle):
            if pinged is None:
                self._pinged_at = now
            self._next_ping = now + self.every
            return Tick(frame=self.frame)
        return _NOTHING


class ServerHeartbeat(Heartbeat):
    """The server's heartbeats every ``interval``; none for ``interval * tolerance`` is a miss.

    Args:
        interval: seconds between the server's heartbeats.
        tolerance: intervals without any frame before the connection counts as dead.
        detail: the ``HeartbeatMissed`` text.
    """

    def __init__(self, interval: float, tolerance: float, *, detail: str) -> None:
        self.interval = interval
        self.limit = interval * tolerance
        self.detail = detail
        self._running = False
        self._alive_until = math.inf

    def start(self, now: float) -> None:
        self._running = True
        self._alive_until = now + self.limit

    def stop(self) -> None:
        self._running = False
        self._alive_until = math.inf

    def received(self, now: float) -> None:
        if self._running:
            self._alive_until = now + self.limit

    def deadline(self) -> float:
        return self._alive_until

    def tick(self, now: float) -> Tick:
        if now >= self._alive_until:
            self._alive_until = math.inf
            return Tick(missed=HeartbeatMissed(detail=self.detail))
        return _NOTHING
