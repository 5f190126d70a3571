"""What the soak watches from outside the supervisor: the client's sockets and its log.

:class:`Observer` wraps the connector the supervisor is given (the only seam between
the supervisor and the network): it records, per venue, when the client opened its
newest socket and when it closed it, which is the moment the client gave a session up
(a fault *detected*). :class:`LogCounter` counts the supervisor's log records by level
and keeps the first errors; an error logged during a soak is a finding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from actors.net import Connector

__all__ = ["Link", "LogCounter", "Observer"]


class Link:
    """One client socket: when it was opened and closed."""

    __slots__ = ("closed", "opened", "venue")

    def __init__(self, venue: str, opened: float) -> None:
        self.venue = venue
        self.opened = opened
        self.closed: float | None = None


class _Observed(trio.abc.Stream):
    """A client stream that records when the client closed it."""

    def __init__(self, inner: trio.abc.Stream, link: Link) -> None:
        self._inner = inner
        self._link = link

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        if self._link.closed is None:
            self._link.closed = trio.current_time()
        await self._inner.aclose()


class Observer:
    """The supervisor's connector, wrapped to see each client socket open and close.

    Args:
        inner: the transport's connector.
        venue_of: the venue a URL belongs to.
    """

    def __init__(self, inner: Connector, venue_of: Callable[[str], str]) -> None:
        self._inner = inner
        self._venue_of = venue_of
        #: Per venue, the client's newest socket.
        self.current: dict[str, Link] = {}

    async def __call__(self, url: str) -> trio.abc.Stream:
        """Open a stream through the wrapped connector and watch it.

        Raises:
            Whatever the wrapped connector raises.

        Cancellation: as the wrapped connector.
        """
        venue = self._venue_of(url)
        stream = await self._inner(url)
        link = self.current[venue] = Link(venue, trio.current_time())
        return _Observed(stream, link)


class LogCounter(logging.Handler):
    """Counts the supervisor's log records by level; keeps the first errors."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname
        self.counts[level] = self.counts.get(level, 0) + 1
        if record.levelno >= logging.ERROR and len(self.errors) < 20:
            self.errors.append(f"{record.name}: {record.getMessage()}")
