"""A strict fake of Binance's market-data WebSocket (spot, and USD-M futures).

Theory of operation
-------------------
:class:`FakeBinance` is a session handler for :func:`open_fake_exchange`
(``handler=FakeBinance(...)``): the generic fake keeps owning the transport, so every
generic fault (close, reset, stall, garbage, ...) still applies, and this class plays
Binance's side of each session. One handler run serves one session with three tasks in
one nursery:

- the **reader** takes the client's text frames, enforces the incoming-message limit
  (a sliding window of ``rate_window`` seconds over client frames and the pongs that
  answer our pings, as Binance counts them; more than ``max_incoming`` in it closes the
  session with 1008 "Too many requests", as observed live) and answers
  ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` /
  ``GET_PROPERTY`` with the documented ``{"result":...,"id":N}`` and
  ``{"error":{"code":C,"msg":M},"id":N}`` frames;
- the **pinger** sends a WebSocket ping every ``ping_interval`` seconds (payload: the
  fake's time in Unix ms, as observed on USD-M) and closes the session with 1008 if the
  matching pong has not arrived ``pong_timeout`` seconds later;
- the **data** task sends, every :attr:`FakeExchange.interval`, one frame for every
  subscribed stream, shaped like the real fixtures (``tests/data/binance``): trade ids,
  aggregate ids and book update ids advance once per interval per symbol, depth
  ``U``/``u`` (and USD-M ``pu``) chains are continuous, bookTicker ``u`` lies on the
  same book-id line.

The books are real (:mod:`supervisor.testing.fakes.venue_book`): one
:class:`VenueBook` per listed symbol, shared by every session, and every depth diff
carries the true change of that book between its ``U`` and ``u`` (one change spans 3
update ids). A session reads the venue book's line of changes at its own pace: one at
the head makes the next change, one behind reads the changes another session caused, so
every session sees the same book under the same ids. :meth:`FakeBinance.depth_body` is
the venue's ``GET /api/v3/depth`` (``/fapi/v1/depth``) answer from the same book
(:meth:`FakeRest.serve_books <supervisor.testing.fakes.rest.FakeRest.serve_books>`
serves it over HTTP), :attr:`FakeBinance.snapshot_lag` makes it stale, and
:meth:`FakeBinance.venue_book` lets a test ask what the book was at any recent ``u``.

Every session starts its chains where the previous session of the same symbol left them
(a reconnect sees ids move on, as on the real venue); two concurrent sessions each get a
continuous chain of their own.

Spot and USD-M differ where the venue does (:class:`FakeBinanceUsdm`): USD-M acks every
SUBSCRIBE, even for streams it will never serve (observed 2026-10-07), closes with 1008
"Invalid request" after refusing a request over ``max_streams`` (observed), pings every
3 min and waits 10 min for the pong, allows 10 incoming messages per second, and its
payloads carry ``E``/``T``/``ps``/``st``/``pu``.

The fake knows the stream types ``trade``, ``aggTrade``, ``bookTicker``, ``depth`` and
``depth@100ms`` for its ``symbols``; on spot anything else (another type, an unknown
symbol, an upper-case name) is refused with code 2 "Invalid request: invalid stream",
which rejects the whole request, as Binance does.

The URL a session connected to is not visible to a handler, so whether frames carry
the ``{"stream","data"}`` envelope (``/stream``) or not (``/ws``) is the ``combined``
argument; a client may switch it per session with ``SET_PROPERTY``.

Numbered mode (``numbered=True``, for soaks that account for every message): a
bookTicker's best bid quantity ``B`` is its update id ``u``, so that a normalized ticker
(which keeps no update id) can still be told apart from every other; trades and depth
diffs carry their ids anyway. A session that subscribes while another one streams the
same symbol also gets the event on its way to that one: its first tick repeats the
other session's last frames, so that two sessions open at once (a make-before-break
handover) overlap as they do on the real venue.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any, ClassVar, Final, final

import msgspec
import trio
from trio_websocket import ConnectionClosed

from supervisor.testing.fake import SessionIO
from supervisor.testing.fakes.venue_book import BINANCE_SPOT, BINANCE_USDM, VenueBook

__all__ = [
    "DEFAULT_EPOCH_MS",
    "DEFAULT_MAX_INCOMING",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PONG_TIMEOUT",
    "DEFAULT_RATE_WINDOW",
    "DEFAULT_SYMBOLS",
    "SPOT_DEPTH_LIMIT",
    "SPOT_MAX_DEPTH_LIMIT",
    "STREAM_TYPES",
    "USDM_DEPTH_LIMIT",
    "USDM_DEPTH_LIMITS",
    "USDM_MAX_INCOMING",
    "USDM_PING_INTERVAL",
    "USDM_PONG_TIMEOUT",
    "BinanceSessionState",
    "FakeBinance",
    "FakeBinanceUsdm",
]

#: Spot pings every 20 s (web-socket-streams.md; 3 min before 2025-02, CHANGELOG 2025-01-28).
DEFAULT_PING_INTERVAL: Final = 20.0
#: Spot disconnects a client that has not answered a ping within 1 minute (same source).
DEFAULT_PONG_TIMEOUT: Final = 60.0
#: Spot: 5 incoming messages per second per connection (web-socket-streams.md §Limits).
DEFAULT_MAX_INCOMING: Final = 5
#: Seconds of the sliding window the incoming-message limit counts over.
DEFAULT_RATE_WINDOW: Final = 1.0
#: Streams per connection, spot and USD-M (documented; USD-M observed).
DEFAULT_MAX_STREAMS: Final = 1024
#: USD-M pings every 3 minutes (websocket-market-streams docs; observed 140 s / 320 s).
USDM_PING_INTERVAL: Final = 180.0
#: USD-M disconnects after 10 minutes without a pong (same docs).
USDM_PONG_TIMEOUT: Final = 600.0
#: USD-M: 10 incoming messages per second (docs; 15 back-to-back observed to pass).
USDM_MAX_INCOMING: Final = 10
#: The native symbols the fake lists by default.
DEFAULT_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "NKNUSDT", "LRCBTC")
#: Unix ms at the fake's trio time 0 (2026-09-29, like the newest spot fixture).
DEFAULT_EPOCH_MS: Final = 1_790_649_900_000
#: Stream types the fake serves.
STREAM_TYPES: Final = frozenset({"trade", "aggTrade", "bookTicker", "depth", "depth@100ms"})

#: Close code and reasons, as observed live (polyoxide OBSERVED.md, 2026-10-07).
_POLICY: Final = 1008
_TOO_MANY_REQUESTS: Final = "Too many requests"
_INVALID_REQUEST: Final = "Invalid request"
_INT64: Final = 2**63
_encode = msgspec.json.encode
#: Update ids one depth diff spans (U..u), as the fake has always counted them.
_IDS_PER_DIFF: Final = 3
#: Depth limits USD-M accepts (reference/exchanges.md §2.6, [POLY]); spot takes 1..5000.
USDM_DEPTH_LIMITS: Final = (5, 10, 20, 50, 100, 500, 1000)
#: ``GET /api/v3/depth`` without ``limit``: 100 levels; with more than 5000: 5000 (rest-api.md).
SPOT_DEPTH_LIMIT: Final = 100
SPOT_MAX_DEPTH_LIMIT: Final = 5000
#: ``GET /fapi/v1/depth`` without ``limit``: 500 levels (reference/exchanges.md §2.6).
USDM_DEPTH_LIMIT: Final = 500


class _Book:
    """Per-symbol ids: the last trade, aggregate trade and book update, and a counter.

    ``update`` is where the session stands on its venue book's line of changes
    (:meth:`VenueBook.next_after`), ``depth`` the ``u`` of its last depth diff.
    """

    __slots__ = ("agg", "depth", "n", "trade", "update")

    def __init__(self, trade: int, agg: int, update: int, n: int = 0) -> None:
        self.trade = trade
        self.agg = agg
        self.update = update
        #: ``u`` of the last depth diff generated (sent or lost).
        self.depth = update
        self.n = n

    def copy(self) -> _Book:
        return _Book(self.trade, self.agg, self.update, self.n)

    def advance(self, book: VenueBook) -> None:
        """One interval passes: one trade, and the next change of the venue's book."""
        self.n += 1
        self.trade += 1
        self.agg += 1
        self.update = book.next_after(self.update)

    def keep_max(self, other: _Book) -> None:
        self.trade = max(self.trade, other.trade)
        self.agg = max(self.agg, other.agg)
        self.update = self.depth = max(self.update, other.update)
        self.n = max(self.n, other.n)


@final
class BinanceSessionState:
    """What the fake knows about one session; tests read it.

    Attributes:
        index: the :class:`FakeSession` index.
        streams: subscribed stream names, in subscription order.
        combined: whether data frames carry the ``{"stream","data"}`` envelope.
        requests: text frames received from the client.
        pings: pings sent.
        pongs: pongs received for them.
        closed_for: why the fake closed the session (``None`` if it did not).
    """

    def __init__(self, index: int, combined: bool) -> None:
        self.index = index
        self.streams: dict[str, None] = {}
        self.combined = combined
        self.requests = 0
        self.pings = 0
        self.pongs = 0
        self.closed_for: str | None = None
        self._window: collections.deque[float] = collections.deque()
        self._books: dict[str, _Book] = {}
        self._gaps: set[str] = set()
        #: Numbered mode: the last payload written per stream (for a joining session).
        self._last: dict[str, str] = {}

    def __repr__(self) -> str:
        return (
            f"<BinanceSessionState index={self.index} streams={len(self.streams)} "
            f"requests={self.requests} pings={self.pings} pongs={self.pongs} "
            f"closed_for={self.closed_for!r}>"
        )


class FakeBinance:
    """Binance spot's stream server, strictly: a ``SessionHandler``.

    Args:
        symbols: native symbols the fake lists (upper case).
        ping_interval: seconds between server pings.
        pong_timeout: seconds a ping may stay unanswered before the fake closes the
            session with 1008.
        max_incoming: client frames allowed within ``rate_window``; one more closes the
            session with 1008 "Too many requests".
        rate_window: seconds of the sliding window for ``max_incoming``.
        max_streams: streams one session may hold; a SUBSCRIBE going over is refused
            with code 4 "Too many subscriptions".
        combined: whether sessions start with the ``{"stream","data"}`` envelope
            (a ``/stream`` URL) or without (``/ws``).
        epoch_ms: Unix ms at trio time 0, for event times.
        numbered: put each bookTicker's update id in its bid quantity (module docstring).

    Attributes:
        snapshot_lag: :meth:`depth_body` answers the book as of this many changes ago
            (0: the book now), to model a snapshot older than the buffered diffs.

    Raises:
        ValueError: a non-positive time constant or limit, or no symbols.
    """

    #: USD-M behaviour (see the module docstring) instead of spot.
    usdm: ClassVar[bool] = False

    def __init__(
        self,
        *,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        pong_timeout: float = DEFAULT_PONG_TIMEOUT,
        max_incoming: int = DEFAULT_MAX_INCOMING,
        rate_window: float = DEFAULT_RATE_WINDOW,
        max_streams: int = DEFAULT_MAX_STREAMS,
        combined: bool = True,
        epoch_ms: int = DEFAULT_EPOCH_MS,
        numbered: bool = False,
    ) -> None:
        for name, value in (
            ("ping_interval", ping_interval),
            ("pong_timeout", pong_timeout),
            ("rate_window", rate_window),
            ("max_incoming", max_incoming),
            ("max_streams", max_streams),
        ):
            if math.isnan(value) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not symbols:
            raise ValueError("symbols must list at least one native symbol, e.g. ('BTCUSDT',)")
        self.ping_interval = float(ping_interval)
        self.pong_timeout = float(pong_timeout)
        self.max_incoming = max_incoming
        self.rate_window = float(rate_window)
        self.max_streams = max_streams
        self.combined = combined
        self.epoch_ms = epoch_ms
        self.numbered = numbered
        self._symbols = {symbol.lower(): symbol.upper() for symbol in symbols}
        self._books = {
            symbol.upper(): _Book(1_000_000 * (i + 1), 500_000 * (i + 1), 10_000_000 * (i + 1))
            for i, symbol in enumerate(symbols)
        }
        self._prices = {symbol.upper(): 10_000 * (i + 1) for i, symbol in enumerate(symbols)}
        #: One true book per symbol, shared by every session; a step spans 3 update ids.
        self._venue = {
            symbol.upper(): VenueBook(
                seed=i,
                price=10_000 * (i + 1),
                sequence=10_000_000 * (i + 1),
                fmt=BINANCE_USDM if self.usdm else BINANCE_SPOT,
                seq_step=_IDS_PER_DIFF,
            )
            for i, symbol in enumerate(symbols)
        }
        #: REST snapshots answer the book as of this many changes ago (a stale snapshot).
        self.snapshot_lag = 0
        #: Every session's state, by session index.
        self.sessions: dict[int, BinanceSessionState] = {}
        self._open: dict[int, tuple[SessionIO, BinanceSessionState]] = {}
        self._decode = msgspec.json.Decoder().decode
        self._last_ping_ms = -1

    # -- observation ------------------------------------------------------------------

    def subscribed(self, index: int) -> frozenset[str]:
        """The streams open session ``index`` holds (acknowledged); empty once it closed."""
        entry = self._open.get(index)
        return frozenset(entry[1].streams) if entry is not None else frozenset()

    def forget_closed(self) -> int:
        """Drop closed sessions from :attr:`sessions` (long runs); return how many."""
        closed = [index for index in self.sessions if index not in self._open]
        for index in closed:
            del self.sessions[index]
        return len(closed)

    def venue_book(self, symbol: str) -> VenueBook:
        """The venue's true book of ``symbol`` (shared by every session).

        Args:
            symbol: a native symbol, any case.

        Raises:
            ValueError: the fake does not list ``symbol``.
        """
        book = self._venue.get(symbol.upper())
        if book is None:
            raise ValueError(f"venue_book({symbol!r}): the fake lists only {sorted(self._venue)}")
        return book

    # -- REST ---------------------------------------------------------------------------

    def depth_body(self, symbol: str, limit: int) -> dict[str, Any]:
        """The body of ``GET /api/v3/depth`` (USD-M: ``/fapi/v1/depth``) for ``symbol``.

        ``{"lastUpdateId": u, "bids": [...], "asks": [...]}`` with ``limit`` levels a side
        at most, best first; USD-M adds the event and transaction times ``E`` and ``T``
        (ms) where the venue puts them. With :attr:`snapshot_lag` ``K``, the book (and
        ``lastUpdateId``) as of ``K`` changes ago, or the oldest one remembered.

        Args:
            symbol: a native symbol, any case.
            limit: levels per side.

        Raises:
            ValueError: the fake does not list ``symbol``.
        """
        venue = self.venue_book(symbol)
        sequence = venue.sequence
        levels = venue.snapshot()
        for _ in range(self.snapshot_lag):
            older = sequence - venue.seq_step
            past = venue.at(older)
            if past is None:
                break
            sequence, levels = older, past
        bids, asks = (side[:limit] for side in levels)
        if self.usdm:
            now_ms = self._now_ms()
            return {
                "lastUpdateId": sequence,
                "E": now_ms,
                "T": now_ms - 1,
                "bids": bids,
                "asks": asks,
            }
        return {"lastUpdateId": sequence, "bids": bids, "asks": asks}

    def depth_request(self, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and body the venue answers a depth request's ``query`` with.

        Unknown symbol: 400 ``{"code":-1121,"msg":"Invalid symbol."}``; no symbol: 400
        -1102; a limit that is not a number: 400 -1100; on USD-M a limit outside
        :data:`USDM_DEPTH_LIMITS`: 400 -4021 (all as the venue words them, errors.md and
        ``tests/data/rest/``). Spot answers at most 5000 levels.
        """
        symbol = query.get("symbol", "")
        if not symbol:
            return 400, {
                "code": -1102,
                "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            }
        if symbol not in self._venue:  # the venue matches the upper-case name only
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        raw = query.get("limit")
        if raw is None:
            limit = USDM_DEPTH_LIMIT if self.usdm else SPOT_DEPTH_LIMIT
        elif not raw.isdigit():
            return 400, {
                "code": -1100,
                "msg": "Illegal characters found in parameter 'limit'; legal range is "
                "'^[0-9]{1,20}$'.",
            }
        else:
            limit = int(raw)
            if self.usdm and limit not in USDM_DEPTH_LIMITS:
                return 400, {"code": -4021, "msg": f"{limit} is not valid depth limit"}
            limit = max(1, min(limit, SPOT_MAX_DEPTH_LIMIT))
        return 200, self.depth_body(symbol, limit)

    # -- faults for tests ---------------------------------------------------------------

    def inject_gap(self, symbol: str) -> None:
        """Lose the next depth diff of ``symbol`` in every open session.

        The diff's ids are used up but it is not sent, so the next diff's ``U`` (and
        USD-M ``pu``) no longer continues from the previous ``u`` the client saw.

        Args:
            symbol: a native symbol, any case.

        Raises:
            ValueError: the fake does not list ``symbol``.
        """
        native = symbol.upper()
        if native not in self._books:
            raise ValueError(f"inject_gap({symbol!r}): the fake lists only {sorted(self._books)}")
        for _, state in self._open.values():
            state._gaps.add(native)

    async def server_shutdown(self) -> None:
        """Send every open session the ``serverShutdown`` notice (enveloped if combined).

        Cancellation: partial (some sessions may have been sent the notice).
        """
        payload = f'{{"e":"serverShutdown","E":{self._now_ms()}}}'
        for io, state in list(self._open.values()):
            frame = (
                f'{{"stream":"!serverShutdown","data":{payload}}}' if state.combined else payload
            )
            with suppress(ConnectionClosed):
                await io.send(frame, data=False)

    # -- the session ------------------------------------------------------------------

    async def __call__(self, io: SessionIO) -> None:
        """Serve one session until the client leaves or a rule closes it.

        Cancellation: the session's tasks end; the generic fake closes the connection.
        """
        index = io.session.index
        state = BinanceSessionState(index, self.combined)
        self.sessions[index] = state
        self._open[index] = (io, state)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pinger, io, state, nursery)
                nursery.start_soon(self._data, io, state, nursery)
                await self._reader(io, state)
                nursery.cancel_scope.cancel(reason="the session ended")
        finally:
            del self._open[index]

    def _now_ms(self) -> int:
        return self.epoch_ms + round(trio.current_time() * 1000)

    def _close(self, io: SessionIO, state: BinanceSessionState, code: int, reason: str) -> None:
        state.closed_for = f"{code} {reason}"
        io.close(code, reason)

    def _count(self, io: SessionIO, state: BinanceSessionState) -> bool:
        """Count one incoming message; close the session and return False over the limit."""
        now = trio.current_time()
        window = state._window
        window.append(now)
        while window[0] <= now - self.rate_window:
            window.popleft()
        if len(window) > self.max_incoming:
            self._close(io, state, _POLICY, _TOO_MANY_REQUESTS)
            return False
        return True

    async def _reader(self, io: SessionIO, state: BinanceSessionState) -> None:
        while True:
            try:
                frame = await io.receive()
            except ConnectionClosed:
                return
            state.requests += 1
            if not self._count(io, state):
                return
            replies, close = self._answer(state, frame)
            try:
                for reply in replies:
                    await io.send(reply, data=False)
            except ConnectionClosed:
                return
            if close:
                self._close(io, state, _POLICY, _INVALID_REQUEST)
                return

    async def _pinger(
        self, io: SessionIO, state: BinanceSessionState, nursery: trio.Nursery
    ) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            ms = max(self._now_ms(), self._last_ping_ms + 1)  # payloads must differ
            self._last_ping_ms = ms
            state.pings += 1
            nursery.start_soon(self._ping, io, state, str(ms).encode())

    async def _ping(self, io: SessionIO, state: BinanceSessionState, payload: bytes) -> None:
        with trio.move_on_after(self.pong_timeout):
            try:
                await io.ping(payload)
            except ConnectionClosed:
                return
            state.pongs += 1
            self._count(io, state)
            return
        self._close(io, state, _POLICY, f"No pong within {self.pong_timeout:g} s")

    # -- requests ---------------------------------------------------------------------

    def _valid(self, stream: str) -> bool:
        symbol, _, kind = stream.partition("@")
        return symbol in self._symbols and kind in STREAM_TYPES

    @staticmethod
    def _reply(result: Any, request_id: Any) -> str:
        return msgspec.json.encode({"result": result, "id": request_id}).decode()

    @staticmethod
    def _error(code: int, msg: str, request_id: Any) -> str:
        return msgspec.json.encode({"error": {"code": code, "msg": msg}, "id": request_id}).decode()

    @staticmethod
    def _valid_id(request_id: Any) -> bool:
        # Spot accepts a signed 64-bit integer, an alphanumeric string of at most 36
        # characters, or null (web-socket-streams.md §Live Subscribing).
        if request_id is None:
            return True
        if isinstance(request_id, bool):
            return False
        if isinstance(request_id, int):
            return -_INT64 <= request_id < _INT64
        return (
            isinstance(request_id, str)
            and len(request_id) <= 36
            and request_id.isascii()
            and request_id.isalnum()
        )

    def _answer(self, state: BinanceSessionState, frame: str | bytes) -> tuple[list[str], bool]:
        """The reply frames to one client frame, and whether to close after them."""
        try:
            request = self._decode(frame)
        except msgspec.DecodeError as exc:
            return [self._error(3, f"Invalid JSON: {exc}", None)], False
        if not isinstance(request, dict):
            return [self._error(2, "Invalid request: expected a JSON object", None)], False
        request_id = request.get("id")
        if not self._valid_id(request_id):
            return [
                self._error(2, "Invalid request: request ID must be an unsigned integer", None)
            ], False
        method = request.get("method")
        params = request.get("params", [])
        if method is None:
            return [self._error(2, "Invalid request: missing field `method`", request_id)], False
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                return [
                    self._error(2, "Invalid request: params must be stream names", request_id)
                ], False
            if method == "UNSUBSCRIBE":
                for stream in params:
                    state.streams.pop(stream, None)
                return [self._reply(None, request_id)], False
            return self._subscribe(state, params, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return [self._reply(list(state.streams), request_id)], False
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                return [self._error(0, "Unknown property", request_id)], False
            if method == "GET_PROPERTY":
                return [self._reply(state.combined, request_id)], False
            if len(params) != 2 or not isinstance(params[1], bool):
                return [self._error(1, "Invalid value type: expected Boolean", request_id)], False
            state.combined = params[1]
            return [self._reply(None, request_id)], False
        return [self._error(2, f"Invalid request: unknown method {method!r}", request_id)], False

    def _subscribe(
        self, state: BinanceSessionState, params: list[str], request_id: Any
    ) -> tuple[list[str], bool]:
        if not self.usdm and not all(self._valid(stream) for stream in params):
            return [self._error(2, "Invalid request: invalid stream", request_id)], False
        new = [stream for stream in dict.fromkeys(params) if stream not in state.streams]
        if len(state.streams) + len(new) > self.max_streams:
            refused = self._error(4, "Too many subscriptions", request_id)
            if self.usdm:
                state.streams.clear()  # observed: the connection closes, all streams lost
                return [refused], True
            return [refused], False
        for stream in new:
            state.streams[stream] = None
        return [self._reply(None, request_id)], False

    # -- data -------------------------------------------------------------------------

    async def _data(self, io: SessionIO, state: BinanceSessionState, nursery: trio.Nursery) -> None:
        due = trio.current_time()
        while True:
            due = await io.wait_interval(due)
            frames = self._tick(state)
            try:
                for frame in frames:
                    await io.send(frame)
            except ConnectionClosed:
                nursery.cancel_scope.cancel(reason="the client is gone")
                return

    def _tick(self, state: BinanceSessionState) -> list[str]:
        """One interval: advance every subscribed symbol once, render every stream."""
        valid = [stream for stream in state.streams if self._valid(stream)]
        touched: dict[str, _Book] = {}
        joined: dict[str, dict[str, str]] = {}
        for stream in valid:
            native = self._symbols[stream.partition("@")[0]]
            if native not in touched:
                book = state._books.get(native)
                if book is None:
                    book = state._books[native] = self._books[native].copy()
                    seen = self._written_elsewhere(state, native, valid) if self.numbered else None
                    if seen is not None:
                        joined[native] = seen  # this tick repeats the other session's
                        touched[native] = book
                        continue
                book.advance(self._venue[native])
                touched[native] = book
        now_ms = self._now_ms()
        frames = []
        for stream in valid:
            symbol, _, kind = stream.partition("@")
            native = self._symbols[symbol]
            if native in joined:
                payload = joined[native][stream]
            else:
                payload = self._render(kind, native, touched[native], state, now_ms)
            if self.numbered:
                state._last[stream] = payload
            frames.append(
                f'{{"stream":"{stream}","data":{payload}}}' if state.combined else payload
            )
        for native, book in touched.items():
            self._books[native].keep_max(book)
        return frames

    def _written_elsewhere(
        self, state: BinanceSessionState, native: str, streams: list[str]
    ) -> dict[str, str] | None:
        """Numbered mode: the last payloads another live session wrote for ``native``.

        A session that subscribes while another one streams the same symbol receives
        the event that is on its way to the other one too (a make-before-break
        successor overlaps the old session); its first tick repeats that event.
        """
        mine = [s for s in streams if self._symbols[s.partition("@")[0]] == native]
        for io, other in self._open.values():
            if other is state or io.stalled:
                continue
            if all(stream in other._last for stream in mine):
                return {stream: other._last[stream] for stream in mine}
        return None

    def _render(
        self, kind: str, native: str, book: _Book, state: BinanceSessionState, now_ms: int
    ) -> str:
        """One payload of stream type ``kind`` for ``native``, as Binance shapes it."""
        n = book.n
        cents = self._prices[native] + n % 50
        maker = "true" if n % 2 else "false"
        usdm = self.usdm
        if usdm:
            price = f"{cents // 100}.{cents % 100:02d}"
            qty = f"0.{n % 9 + 1:03d}"
            ask = f"{(cents + 1) // 100}.{(cents + 1) % 100:02d}"
        else:
            price = f"{cents // 100}.{cents % 100:02d}000000"
            qty = f"0.{n % 9 + 1:03d}00000"
            ask = f"{(cents + 1) // 100}.{(cents + 1) % 100:02d}000000"
        if kind == "trade":
            if usdm:
                return (
                    f'{{"e":"trade","E":{now_ms},"T":{now_ms - 1},"s":"{native}",'
                    f'"t":{book.trade},"p":"{price}","q":"{qty}","X":"MARKET","m":{maker},'
                    f'"st":1}}'
                )
            return (
                f'{{"e":"trade","E":{now_ms},"s":"{native}","t":{book.trade},"p":"{price}",'
                f'"q":"{qty}","T":{now_ms},"m":{maker},"M":true}}'
            )
        if kind == "aggTrade":
            if usdm:
                return (
                    f'{{"e":"aggTrade","E":{now_ms},"a":{book.agg},"s":"{native}",'
                    f'"p":"{price}","q":"{qty}","nq":"{qty}","f":{book.trade},'
                    f'"l":{book.trade},"T":{now_ms - 1},"m":{maker},"st":1}}'
                )
            return (
                f'{{"e":"aggTrade","E":{now_ms},"s":"{native}","a":{book.agg},"p":"{price}",'
                f'"q":"{qty}","f":{book.trade},"l":{book.trade},"T":{now_ms},"m":{maker},'
                f'"M":true}}'
            )
        if kind == "bookTicker":
            if self.numbered:
                qty = str(book.update)  # the normalized ticker's bid size names it
            if usdm:
                return (
                    f'{{"e":"bookTicker","u":{book.update},"s":"{native}","ps":"{native}",'
                    f'"b":"{price}","B":"{qty}","a":"{ask}","A":"{qty}","T":{now_ms - 1},'
                    f'"E":{now_ms},"st":1}}'
                )
            return (
                f'{{"u":{book.update},"s":"{native}","b":"{price}","B":"{qty}",'
                f'"a":"{ask}","A":"{qty}"}}'
            )
        # depth / depth@100ms: the venue book's changes since the previous diff, merged
        # (U..u, pu = previous u); normally exactly one change.
        venue = self._venue[native]
        if native in state._gaps:
            state._gaps.discard(native)
            book.depth = book.update  # this diff is lost; the book moves on
            book.update = venue.next_after(book.update)
        change = venue.diff(book.depth, book.update)
        if change is None:  # the session fell too far behind: a gap, honestly shown
            book.update = venue.next_after(venue.sequence)
            book.depth = book.update - venue.seq_step
            change = venue.diff(book.depth, book.update)
            assert change is not None
        first, last, prev = book.depth + 1, book.update, book.depth
        book.depth = last
        bids, asks = (_encode(levels).decode() for levels in change)
        if usdm:
            return (
                f'{{"e":"depthUpdate","E":{now_ms},"T":{now_ms - 1},"s":"{native}",'
                f'"ps":"{native}","U":{first},"u":{last},"pu":{prev},'
                f'"b":{bids},"a":{asks},"st":1}}'
            )
        return (
            f'{{"e":"depthUpdate","E":{now_ms},"s":"{native}","U":{first},"u":{last},'
            f'"b":{bids},"a":{asks}}}'
        )


class FakeBinanceUsdm(FakeBinance):
    """Binance USD-M futures' stream server (see the module docstring for differences).

    Args:
        symbols: native symbols the fake lists (upper case).
        ping_interval: seconds between server pings (3 min).
        pong_timeout: seconds a ping may stay unanswered (10 min).
        max_incoming: client frames allowed within ``rate_window`` (10).
        rate_window: seconds of the sliding window for ``max_incoming``.
        max_streams: streams one session may hold; going over is refused with code 4
            and the session is closed with 1008 "Invalid request".
        combined: whether sessions start with the ``{"stream","data"}`` envelope.
        epoch_ms: Unix ms at trio time 0, for event times.
        numbered: put each bookTicker's update id in its bid quantity.
    """

    usdm: ClassVar[bool] = True

    def __init__(
        self,
        *,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        ping_interval: float = USDM_PING_INTERVAL,
        pong_timeout: float = USDM_PONG_TIMEOUT,
        max_incoming: int = USDM_MAX_INCOMING,
        rate_window: float = DEFAULT_RATE_WINDOW,
        max_streams: int = DEFAULT_MAX_STREAMS,
        combined: bool = True,
        epoch_ms: int = DEFAULT_EPOCH_MS,
        numbered: bool = False,
    ) -> None:
        super().__init__(
            symbols=symbols,
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
            max_incoming=max_incoming,
            rate_window=rate_window,
            max_streams=max_streams,
            combined=combined,
            epoch_ms=epoch_ms,
            numbered=numbered,
        )
