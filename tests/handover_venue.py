"""A venue-consistent Binance fake for make-before-break tests, and a dialler whose
routes can be slowed.

Sessions of a real exchange see one venue: a trade has one id and one time on every
session subscribed when it happens. :class:`Venue` renders that (the stock fake gives
each session an id chain of its own), and drives one session at a time, as an exchange
does when it drains one server: a notice, a close, a mute, held acks.
"""

from __future__ import annotations

from typing import Any

import trio

from supervisor.testing import FakeBinance, FakeExchange

NOTICE = '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}'


class Venue(FakeBinance):
    """Trade ``1_000_000 + k`` and aggregate trade ``500_000 + k`` happen in second
    ``[k, k + 1)``: a session that sends in that second sends those ids and that trade
    time, whenever it started.

    Attributes:
        held: sessions whose acks are held back (set ``held[index] = []`` before the
            session subscribes), with the acks held so far.
        behind: seconds a session's data lags behind the venue (a slow server): session
            ``index`` sends at second ``k`` what happened in second ``k - behind[index]``.
    """

    def __init__(self, **keys: Any) -> None:
        super().__init__(**keys)
        #: Sessions whose acks are held back, with the acks held so far.
        self.held: dict[int, list[str]] = {}
        self.behind: dict[int, int] = {}

    def _render(self, kind: str, native: str, book: Any, state: Any, now_ms: int) -> str:
        k = int(trio.current_time() + 1e-6) - self.behind.get(state.index, 0)
        at = self.epoch_ms + 1000 * k
        if kind == "trade":
            return (
                f'{{"e":"trade","E":{now_ms},"s":"{native}","t":{1_000_000 + k},'
                f'"p":"1.00","q":"1.0","T":{at},"m":true,"M":true}}'
            )
        if kind == "aggTrade":
            return (
                f'{{"e":"aggTrade","E":{now_ms},"s":"{native}","a":{500_000 + k},'
                f'"p":"1.00","q":"1.0","f":{1_000_000 + k},"l":{1_000_000 + k},"T":{at},'
                f'"m":true,"M":true}}'
            )
        result: str = super()._render(kind, native, book, state, now_ms)
        return result

    def _answer(self, state: Any, frame: Any) -> Any:
        replies, close = super()._answer(state, frame)
        held = self.held.get(state.index)
        if held is None:
            return replies, close
        held.extend(replies)
        return [], close

    async def release(self, index: int) -> None:
        """Send session ``index`` the acks held back for it; hold no more."""
        io, _ = self._open[index]
        for reply in self.held.pop(index):
            await io.send(reply, data=False)

    def mute(self, index: int) -> None:
        """Stop sending data to session ``index`` (it stays open and answers pings)."""
        _, state = self._open[index]
        state.streams.clear()

    async def announce(self, index: int) -> None:
        """Send session ``index`` (only) the ``serverShutdown`` notice."""
        io, _ = self._open[index]
        await io.send(NOTICE, data=False)

    def close_session(self, index: int) -> None:
        """Close session ``index`` (only) as announced: 1001 'as announced'."""
        io, _ = self._open[index]
        io.close(1001, "as announced")


class Lagging(trio.abc.Stream):
    """A stream whose data can be held back ``delay`` seconds per read (a slow route)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.delay = 0.0
        #: Bytes read and held back, and when they are due: a cancelled read loses
        #: nothing (a route does not drop bytes when the reader stops waiting).
        self.held: tuple[bytes | bytearray, float] | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.held is None:
            data = await self.inner.receive_some(max_bytes)
            self.held = (data, trio.current_time() + self.delay)
        data, due = self.held
        await trio.sleep_until(due)
        self.held = None
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class Dialler:
    """Connects to the fake through a :class:`Lagging` stream; records each attempt."""

    def __init__(self, fake: FakeExchange) -> None:
        self.fake = fake
        self.times: list[float] = []
        self.streams: list[Lagging] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        self.times.append(trio.current_time())
        stream = Lagging(await self.fake.connect(url))
        self.streams.append(stream)
        return stream
