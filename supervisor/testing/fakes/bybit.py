"""A fake Bybit v5 public WebSocket server (spot and linear) that enforces Bybit's rules.

Theory of operation
-------------------
:class:`FakeBybit` is a ``SessionHandler`` for ``open_fake_exchange(handler=...)``: the
generic fake owns the transport (so close, reset, stall, garbage, refuse... still apply)
and calls the handler once per accepted session. One handler instance serves every
session and keeps what tests inspect (:attr:`FakeBybit.sessions`,
:attr:`FakeBybit.closes`) and what they inject (book gaps, service restarts, a server
that stops answering pings).

Bybit serves each product on its own path of one host, so a session's category comes
from the path of its upgrade request (``paths``): ``/v5/public/spot`` is spot,
``/v5/public/linear`` is linear. Each session runs three tasks in one nursery:

- the request reader answers ``ping`` with a pong and subscribe/unsubscribe requests
  with one ack (or one failure) per request, echoing ``req_id``;
- the data pusher, once the session has a subscription, sends every
  ``FakeExchange.interval`` seconds one frame per subscribed topic, in subscription
  order; ``orderbook`` and ``tickers`` topics also send their snapshot right after the
  ack;
- the watchdog closes the session once neither a ping nor a data frame has passed for
  ``idle_timeout`` seconds, checking every ``idle_check_interval`` seconds.

Rules enforced (sources in ``docs/exchanges/bybit.md``; every constant is a constructor
parameter):

- the path must be one of ``paths``; any other path is closed at once with 1008 (Bybit
  would refuse the handshake; a handler cannot, see the doc's decisions);
- a request must be a JSON object, else ``success:false`` with ``ret_msg`` starting
  ``Failed to decode incoming data:`` (observed prefix); ``op`` must be ``subscribe``,
  ``unsubscribe`` or ``ping``, else ``error:invalid op`` (observed);
- ``args`` must be a non-empty list of strings, else ``Params Error`` (our choice);
- spot: at most ``spot_max_args`` (10) args per request, else ``args size >10``
  (observed text), nothing of the request is subscribed; linear: no count limit
  (``linear_max_args=None``);
- the ``args`` array may be at most ``max_args_chars`` (21,000) characters of JSON,
  else ``error:args too long`` (limit documented, text our choice);
- every topic must be ``publicTrade.{symbol}``, ``tickers.{symbol}`` or
  ``orderbook.{depth}.{symbol}`` with a listed symbol (case-sensitive) and a depth the
  category serves (spot and linear: 1, 50, 200, 1000), else
  ``error:handler not found,topic:<the first bad topic>`` and nothing of the request is
  subscribed (observed);
- a topic already subscribed on the session (or named twice in one request) fails the
  request with ``error:already subscribed,topic:<topic>``; the existing subscription
  keeps streaming (observed);
- acks: ``{"success":true,"ret_msg":...,"conn_id":...,"req_id":...,"op":...}`` with
  ``ret_msg`` ``"subscribe"`` on spot and ``""`` on linear (documented examples);
  ``req_id`` echoes the request's, and when the request had none linear sends ``""``
  while spot leaves the field out (documented examples);
- ``{"op":"ping"}`` is answered ``{"success":true,"ret_msg":"pong",...,"op":"ping"}``;
- no ping and no data frame for ``idle_timeout`` (600 s): the session is closed with
  ``idle_close_code``, at the first check (every ``idle_check_interval``, 30 s, from
  the session's start) that finds it idle.

Data frames follow the documented and observed shapes: ``publicTrade`` with one trade
whose ``i`` increases (a decimal string on spot, UUID-shaped on linear, as in the
examples); ``tickers`` a full snapshot on spot every time and, on linear, a snapshot
then deltas carrying ``bid1Price``/``bid1Size``/``ask1Price``/``ask1Size``/``lastPrice``;
``orderbook`` a snapshot then deltas whose ``u`` rises by exactly 1 (depth 1: every frame
a snapshot) and whose ``seq`` rises, with ``cts`` 2 ms before ``ts``.

The books are real (:mod:`supervisor.testing.fakes.venue_book`): one
:class:`VenueBook` per category and symbol, shared by every session, whose sequence is
the ``u`` sent. A snapshot is that book's top ``depth`` levels, a delta the change of
those levels since the previous frame (levels that left the top are sent with size
``"0"``); :meth:`FakeBybit.venue_book` tells a test what the book was at any recent
``u``. A service restart (:meth:`FakeBybit.restart_books`) renumbers a session's frames
from 1 (its ``u`` is then the venue's sequence minus a per-session offset).

Trade ids and book ``u`` already continue across sessions (one exchange-wide count per
symbol). Numbered mode (``numbered=True``, for soaks that account for every message)
also makes a depth-1 book's best bid size its ``u``, so that the top-of-book ticker
normalized from it can be told apart from every other.
"""

from __future__ import annotations

import collections
import math
import zlib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, Literal, final
from urllib.parse import urlsplit

import msgspec
import trio
from trio_websocket import ConnectionClosed

from supervisor.testing.fake import SessionIO
from supervisor.testing.fakes.venue_book import BYBIT, VenueBook

__all__ = [
    "DEFAULT_EPOCH_MS",
    "DEFAULT_IDLE_CHECK_INTERVAL",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_LINEAR_DEPTHS",
    "DEFAULT_LINEAR_SYMBOLS",
    "DEFAULT_MAX_ARGS_CHARS",
    "DEFAULT_MAX_CONNECTS",
    "DEFAULT_PATHS",
    "DEFAULT_SPOT_DEPTHS",
    "DEFAULT_SPOT_MAX_ARGS",
    "DEFAULT_SPOT_SYMBOLS",
    "FIRST_SEQ",
    "FIRST_TRADE_ID",
    "FIRST_UPDATE_ID",
    "SEQ_STEP",
    "UNKNOWN_PATH_CLOSE_CODE",
    "BybitSessionState",
    "Category",
    "FakeBybit",
]

Category = Literal["spot", "linear"]

#: Public stream paths (https://bybit-exchange.github.io/docs/v5/ws/connect).
DEFAULT_PATHS: Final[Mapping[str, Category]] = {
    "/v5/public/spot": "spot",
    "/v5/public/linear": "linear",
}
#: "Spot can input up to 10 args for each subscription request" (v5/ws/connect,
#: "Public channel - Args limits"); linear: "No args limit for Futures ... for now".
DEFAULT_SPOT_MAX_ARGS: Final = 10
#: "you cannot have length of "args" array over 21,000 characters" (same section).
DEFAULT_MAX_ARGS_CHARS: Final = 21_000
#: "if there is no "ping-pong" and no stream data sent from server end, the connection
#: will be cut off after 10 minutes" (v5/ws/connect).
DEFAULT_IDLE_TIMEOUT: Final = 600.0
#: "Since ticker scans every 30s, so it is not fully exact" (same paragraph).
DEFAULT_IDLE_CHECK_INTERVAL: Final = 30.0
#: "Do not build over 500 connections in 5 minutes" (v5/ws/connect, IP Limits); pass as
#: ``open_fake_exchange(max_connects=DEFAULT_MAX_CONNECTS)``.
DEFAULT_MAX_CONNECTS: Final = (500, 300.0)
#: Order book depths (v5/websocket/public/orderbook, docs head 2026-07-24; linear 500
#: was removed in 2025 and was observed refused in 2026).
DEFAULT_SPOT_DEPTHS: Final = frozenset({1, 50, 200, 1000})
DEFAULT_LINEAR_DEPTHS: Final = frozenset({1, 50, 200, 1000})
#: Symbols the fake lists unless told otherwise.
DEFAULT_SPOT_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ETHBTC")
DEFAULT_LINEAR_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCPERP")
#: Unix ms at trio time 0 (2026-09-23, near the newest observed frames).
DEFAULT_EPOCH_MS: Final = 1_790_134_700_000

#: Close code for a path that serves no public stream (our choice: 1008 policy).
UNKNOWN_PATH_CLOSE_CODE: Final = 1008
#: First ``u`` of the first book of each topic, and the first trade id on spot.
FIRST_UPDATE_ID: Final = 18_521_288
FIRST_TRADE_ID: Final = 2_290_000_000_923_750_370
#: First cross sequence (``seq`` / ``cs``) and the step between two frames of a symbol.
FIRST_SEQ: Final = 7_961_638_724
SEQ_STEP: Final = 3

_TOPIC_FAMILIES: Final = ("publicTrade", "tickers", "orderbook")
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder().decode


class _Book:
    """One book topic of one session: where it stands on the venue book's line.

    ``u`` is the venue book's sequence of the last frame sent (or lost); the session's
    ``u`` is that minus ``offset``, which a service restart (:meth:`FakeBybit.restart_books`)
    sets so that the session's numbering starts again at 1.
    """

    __slots__ = ("gap", "offset", "restart", "snapshot_sent", "u")

    def __init__(self, u: int) -> None:
        self.u = u
        self.offset = 0
        self.snapshot_sent = False
        self.gap = False
        self.restart = False


@final
class BybitSessionState:
    """What the fake knows about one session; tests read it.

    Attributes:
        index: the :class:`FakeSession` index.
        category: ``"spot"`` or ``"linear"``, from the path (None for an unknown path).
        conn_id: the ``conn_id`` in this session's acks and pongs.
        topics: subscribed topics, in subscription order.
        requests: text frames received from the client.
        pings: pings received.
        closed_for: why the fake closed the session (None if it did not).
    """

    def __init__(self, index: int, category: Category | None, opened: float) -> None:
        self.index = index
        self.category: Category | None = category
        self.conn_id = f"00000000-0000-4000-8000-{index:012x}"
        self.topics: dict[str, None] = {}
        self.requests = 0
        self.pings = 0
        self.closed_for: str | None = None
        self._opened = opened
        self._last_activity = opened
        self._books: dict[str, _Book] = {}
        self._tickers_sent: set[str] = set()
        self._changed = trio.Event()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return (
            f"<BybitSessionState index={self.index} category={self.category} "
            f"topics={len(self.topics)} requests={self.requests} pings={self.pings} "
            f"closed_for={self.closed_for!r}>"
        )


@final
class FakeBybit:
    """Bybit's v5 public stream server (spot and linear), as a ``SessionHandler``.

    Use: ``open_fake_exchange(transport="memory", handler=FakeBybit(...))`` and connect
    with the path ``/v5/public/spot`` or ``/v5/public/linear``; data frames go out every
    ``FakeExchange.interval`` seconds.

    Args:
        spot_symbols: symbols spot lists (case-sensitive, e.g. ``BTCUSDT``).
        linear_symbols: symbols linear lists.
        spot_depths: order book depths spot serves.
        linear_depths: order book depths linear serves.
        spot_max_args: most args in one spot subscribe request (None: no limit).
        linear_max_args: most args in one linear subscribe request (None: no limit).
        max_args_chars: most characters of the JSON ``args`` array of one request.
        idle_timeout: seconds without a ping or a data frame after which the session is
            closed.
        idle_check_interval: seconds between two idle checks, from the session's start.
        idle_close_code: the close code of an idle session.
        paths: upgrade-request path → category.
        epoch_ms: Unix ms at trio time 0, for ``ts``, ``T`` and ``cts``.
        numbered: a depth-1 book's best bid size is its ``u`` (module docstring).

    Attributes:
        answer_pings: answer ``ping`` (set False to model a server that stopped
            answering; an unanswered ping does not count as activity).
        sessions: every session's state, by session index.
        closes: every session the fake closed for breaking a rule:
            ``(trio time, session index, close code, reason)``.

    Raises:
        ValueError: a non-positive time constant or limit, no symbols for a category,
            or an empty ``paths``.
    """

    def __init__(
        self,
        *,
        spot_symbols: Iterable[str] = DEFAULT_SPOT_SYMBOLS,
        linear_symbols: Iterable[str] = DEFAULT_LINEAR_SYMBOLS,
        spot_depths: Iterable[int] = DEFAULT_SPOT_DEPTHS,
        linear_depths: Iterable[int] = DEFAULT_LINEAR_DEPTHS,
        spot_max_args: int | None = DEFAULT_SPOT_MAX_ARGS,
        linear_max_args: int | None = None,
        max_args_chars: int = DEFAULT_MAX_ARGS_CHARS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        idle_check_interval: float = DEFAULT_IDLE_CHECK_INTERVAL,
        idle_close_code: int = 1000,
        paths: Mapping[str, Category] = DEFAULT_PATHS,
        epoch_ms: int = DEFAULT_EPOCH_MS,
        numbered: bool = False,
    ) -> None:
        for name, value in (
            ("max_args_chars", max_args_chars),
            ("idle_timeout", idle_timeout),
            ("idle_check_interval", idle_check_interval),
            ("spot_max_args", 1 if spot_max_args is None else spot_max_args),
            ("linear_max_args", 1 if linear_max_args is None else linear_max_args),
        ):
            if math.isnan(value) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self._symbols: dict[Category, tuple[str, ...]] = {
            "spot": tuple(spot_symbols),
            "linear": tuple(linear_symbols),
        }
        for category, listed in self._symbols.items():
            if not listed:
                raise ValueError(
                    f"{category}_symbols must list at least one symbol, e.g. ('BTCUSDT',)"
                )
        if not paths:
            raise ValueError("paths must map at least one path to a category")
        self._depths: dict[Category, frozenset[int]] = {
            "spot": frozenset(spot_depths),
            "linear": frozenset(linear_depths),
        }
        self._max_args: dict[Category, int | None] = {
            "spot": spot_max_args,
            "linear": linear_max_args,
        }
        self._max_args_chars = max_args_chars
        self._idle_timeout = float(idle_timeout)
        self._idle_check_interval = float(idle_check_interval)
        self._idle_close_code = idle_close_code
        self._paths = dict(paths)
        self._epoch_ms = epoch_ms
        self._numbered = numbered
        self.answer_pings = True
        self.sessions: dict[int, BybitSessionState] = {}
        self.closes: list[tuple[float, int, int, str]] = []
        self._open: dict[int, tuple[SessionIO, BybitSessionState]] = {}
        # Exchange-wide counters per (category, symbol): a reconnect sees ids move on.
        self._prices: dict[tuple[Category, str], int] = {}
        for category, listed in self._symbols.items():
            for i, symbol in enumerate(listed):
                self._prices[(category, symbol)] = 10_000 * (i + 1)
        self._trade_ids: collections.Counter[tuple[Category, str]] = collections.Counter()
        self._seqs: collections.Counter[tuple[Category, str]] = collections.Counter()
        #: One true book per (category, symbol), shared by every session (made on first use).
        self._venue: dict[tuple[Category, str], VenueBook] = {}
        #: Per (category, symbol): the venue sequence of the newest book frame sent.
        self._sent: dict[tuple[Category, str], int] = {}

    # -- what tests see ------------------------------------------------------------

    def subscribed(self, index: int) -> frozenset[str]:
        """The topics open session ``index`` subscribed (acknowledged); empty once closed."""
        entry = self._open.get(index)
        return frozenset(entry[1].topics) if entry is not None else frozenset()

    def forget_closed(self) -> int:
        """Drop closed sessions from :attr:`sessions` (long runs); return how many."""
        closed = [index for index in self.sessions if index not in self._open]
        for index in closed:
            del self.sessions[index]
        return len(closed)

    def venue_book(self, category: Category, symbol: str) -> VenueBook:
        """The venue's true book of ``symbol`` in ``category`` (shared by every session).

        Its sequence is the ``u`` the fake sends (until :meth:`restart_books`).

        Raises:
            ValueError: ``category`` does not list ``symbol``.
        """
        key = (category, symbol)
        book = self._venue.get(key)
        if book is None:
            if symbol not in self._symbols.get(category, ()):
                raise ValueError(
                    f"venue_book({category!r}, {symbol!r}): {category} lists only "
                    f"{sorted(self._symbols.get(category, ()))}"
                )
            book = self._venue[key] = VenueBook(
                seed=zlib.crc32(f"{category}:{symbol}".encode()),
                price=self._prices[key] * 100 + 40,
                sequence=FIRST_UPDATE_ID,
                fmt=BYBIT,
            )
        return book

    # -- what tests do -------------------------------------------------------------

    def inject_gap(self, topic: str) -> None:
        """Lose the next delta of book ``topic`` (``orderbook.50.BTCUSDT``) everywhere.

        The next delta's ``u`` is 2 above the previous one, as if Bybit dropped one.

        Raises:
            ValueError: ``topic`` is not an order book topic.
        """
        if not topic.startswith("orderbook."):
            raise ValueError(f"inject_gap({topic!r}): expected a topic like orderbook.50.BTCUSDT")
        for _, state in self._open.values():
            book = state._books.get(topic)
            if book is not None:
                book.gap = True

    def restart_books(self) -> None:
        """Model a Bybit service restart: every open book's next frame is a fresh snapshot
        with ``u`` = 1 (the documented "overwrite your local orderbook" case), followed by
        deltas 2, 3, ...
        """
        for _, state in self._open.values():
            for book in state._books.values():
                book.restart = True

    # -- the session program -------------------------------------------------------

    async def __call__(self, io: SessionIO) -> None:
        """Serve one session until the client leaves or a rule closes it.

        Cancellation: the session's tasks end; the generic fake closes the connection.
        """
        index = io.session.index
        path = urlsplit(io.path).path
        category = self._paths.get(path)
        state = BybitSessionState(index, category, trio.current_time())
        self.sessions[index] = state
        if category is None:
            self._close(io, state, UNKNOWN_PATH_CLOSE_CODE, f"no public stream at {path}")
            await trio.lowlevel.checkpoint()
            return
        self._open[index] = (io, state)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog, io, state)
                nursery.start_soon(self._push, io, state, nursery.cancel_scope)
                await self._reader(io, state)
                nursery.cancel_scope.cancel(reason="the client left")
        finally:
            del self._open[index]

    def _close(self, io: SessionIO, state: BybitSessionState, code: int, reason: str) -> None:
        state.closed_for = f"{code} {reason}"
        self.closes.append((trio.current_time(), state.index, code, reason))
        io.close(code, reason)

    async def _watchdog(self, io: SessionIO, state: BybitSessionState) -> None:
        checks = 0
        while True:
            checks += 1
            await trio.sleep_until(state._opened + checks * self._idle_check_interval)
            idle = trio.current_time() - state._last_activity
            if idle >= self._idle_timeout:
                reason = f"no ping or data for {self._idle_timeout:g} s"
                self._close(io, state, self._idle_close_code, reason)
                return

    async def _reader(self, io: SessionIO, state: BybitSessionState) -> None:
        while True:
            try:
                frame = await io.receive()
            except ConnectionClosed:
                return
            state.requests += 1
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            try:
                await self._request(io, state, text)
            except ConnectionClosed:
                return

    # -- requests --------------------------------------------------------------------

    def _reply(
        self,
        state: BybitSessionState,
        *,
        success: bool,
        ret_msg: str,
        req_id: Any,
        op: str | None,
    ) -> str:
        body: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": state.conn_id}
        if req_id is not None:
            body["req_id"] = req_id
        elif state.category == "linear":
            body["req_id"] = ""
        if op is not None:
            body["op"] = op
        return _encode(body).decode()

    async def _request(self, io: SessionIO, state: BybitSessionState, text: str) -> None:
        try:
            request = _decode(text)
        except msgspec.DecodeError as exc:
            reply = self._reply(
                state,
                success=False,
                ret_msg=f"Failed to decode incoming data:{exc}",
                req_id=None,
                op=None,
            )
            await io.send(reply, data=False)
            return
        if not isinstance(request, dict):
            reply = self._reply(
                state,
                success=False,
                ret_msg="Failed to decode incoming data:expect an object",
                req_id=None,
                op=None,
            )
            await io.send(reply, data=False)
            return
        req_id = request.get("req_id")
        op = request.get("op")
        if op == "ping":
            state.pings += 1
            if self.answer_pings:
                state._last_activity = trio.current_time()
                pong = self._reply(state, success=True, ret_msg="pong", req_id=req_id, op="ping")
                await io.send(pong, data=False)
            return
        if op not in ("subscribe", "unsubscribe"):
            reply = self._reply(
                state,
                success=False,
                ret_msg="error:invalid op",
                req_id=req_id,
                op=op if isinstance(op, str) else None,
            )
            await io.send(reply, data=False)
            return
        failure = self._check_args(state, op, request.get("args"))
        if failure is not None:
            reply = self._reply(state, success=False, ret_msg=failure, req_id=req_id, op=op)
            await io.send(reply, data=False)
            return
        topics: list[str] = request["args"]
        ack_msg = op if state.category == "spot" else ""
        ack = self._reply(state, success=True, ret_msg=ack_msg, req_id=req_id, op=op)
        await io.send(ack, data=False)
        if op == "unsubscribe":
            for topic in topics:
                state.topics.pop(topic, None)
                state._books.pop(topic, None)
                state._tickers_sent.discard(topic)
            state._poke()
            return
        for topic in topics:
            state.topics[topic] = None
            if topic.startswith("orderbook."):
                # Where the venue's ids stand: a fresh u unless nothing was sent at the
                # head yet (two topics of one request start together, as they did).
                venue = self.venue_book(*self._key(state, topic))
                fresh = self._sent.get(self._key(state, topic), -1) >= venue.sequence
                state._books[topic] = _Book(venue.sequence + 1 if fresh else venue.sequence)
        state._poke()
        for topic in topics:
            if topic in state.topics and not topic.startswith("publicTrade."):
                await self._send_data(io, state, topic)

    def _check_args(self, state: BybitSessionState, op: str, args: Any) -> str | None:
        """The ``ret_msg`` that refuses the whole request, or None if it is valid."""
        assert state.category is not None
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return "Params Error"
        limit = self._max_args[state.category]
        if op == "subscribe" and limit is not None and len(args) > limit:
            return f"args size >{limit}"
        if len(_encode(args)) > self._max_args_chars:
            return "error:args too long"
        for topic in args:
            if not self._valid(state.category, topic):
                return f"error:handler not found,topic:{topic}"
        if op == "subscribe":
            seen: set[str] = set()
            for topic in args:
                if topic in state.topics or topic in seen:
                    return f"error:already subscribed,topic:{topic}"
                seen.add(topic)
        return None

    def _valid(self, category: Category, topic: str) -> bool:
        parts = topic.split(".")
        symbols = self._symbols[category]
        if len(parts) == 2 and parts[0] in _TOPIC_FAMILIES[:2]:
            return parts[1] in symbols
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit():
            return int(parts[1]) in self._depths[category] and parts[2] in symbols
        return False

    # -- data ------------------------------------------------------------------------

    @staticmethod
    def _key(state: BybitSessionState, topic: str) -> tuple[Category, str]:
        assert state.category is not None
        return state.category, topic.rpartition(".")[2]

    async def _push(self, io: SessionIO, state: BybitSessionState, scope: trio.CancelScope) -> None:
        while not state.topics:
            await state._changed.wait()
        due = trio.current_time()
        try:
            while True:
                due = await io.wait_interval(due)
                for topic in list(state.topics):
                    await self._send_data(io, state, topic)
        except ConnectionClosed:
            scope.cancel(reason="the client left")

    async def _send_data(self, io: SessionIO, state: BybitSessionState, topic: str) -> None:
        frame = self._frame(state, topic)
        await io.send(frame, data=True)
        state._last_activity = trio.current_time()

    def _now_ms(self) -> int:
        return self._epoch_ms + round(trio.current_time() * 1000)

    def _next_seq(self, key: tuple[Category, str]) -> int:
        seq = FIRST_SEQ + SEQ_STEP * self._seqs[key]
        self._seqs[key] += 1
        return seq

    def _frame(self, state: BybitSessionState, topic: str) -> str:
        """The next data frame of one topic."""
        key = self._key(state, topic)
        category, symbol = key
        if topic.startswith("publicTrade."):
            return self._trade_frame(category, symbol, key)
        if topic.startswith("tickers."):
            return self._ticker_frame(state, topic, key)
        return self._book_frame(state, topic, key)

    def _trade_frame(self, category: Category, symbol: str, key: tuple[Category, str]) -> str:
        n = self._trade_ids[key]
        self._trade_ids[key] += 1
        now = self._now_ms()
        price = f"{self._prices[key] + n}.50"
        side = "Buy" if n % 2 == 0 else "Sell"
        seq = self._next_seq(key)
        if category == "spot":
            trade: dict[str, Any] = {
                "i": str(FIRST_TRADE_ID + n),
                "T": now - 1,
                "p": price,
                "v": "0.00903",
                "S": side,
                "seq": seq,
                "s": symbol,
                "BT": False,
                "RPI": False,
            }
            return _encode(
                {"topic": f"publicTrade.{symbol}", "ts": now, "type": "snapshot", "data": [trade]}
            ).decode()
        trade = {
            "T": now - 1,
            "s": symbol,
            "S": side,
            "v": "0.001",
            "p": price,
            "L": "PlusTick" if side == "Buy" else "MinusTick",
            "i": f"00000000-0000-5000-8000-{n:012x}",
            "BT": False,
            "seq": seq,
        }
        return _encode(
            {"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": now, "data": [trade]}
        ).decode()

    def _ticker_frame(self, state: BybitSessionState, topic: str, key: tuple[Category, str]) -> str:
        category, symbol = key
        n = self._seqs[key]
        cs = self._next_seq(key)
        now = self._now_ms()
        last = f"{self._prices[key] + n}.50"
        if category == "spot":
            data: dict[str, Any] = {
                "symbol": symbol,
                "lastPrice": last,
                "highPrice24h": f"{self._prices[key] + 500}.00",
                "lowPrice24h": f"{self._prices[key] - 500}.00",
                "prevPrice24h": f"{self._prices[key]}.00",
                "volume24h": "6780.866843",
                "turnover24h": "141946527.22907118",
                "price24hPcnt": "0.0196",
                "usdIndexPrice": last,
            }
            return _encode(
                {"topic": topic, "ts": now, "type": "snapshot", "cs": cs, "data": data}
            ).decode()
        bid, ask = f"{self._prices[key] + n}.40", f"{self._prices[key] + n}.60"
        if topic not in state._tickers_sent:
            state._tickers_sent.add(topic)
            data = {
                "symbol": symbol,
                "tickDirection": "PlusTick",
                "price24hPcnt": "0.017103",
                "lastPrice": last,
                "prevPrice24h": f"{self._prices[key]}.00",
                "highPrice24h": f"{self._prices[key] + 500}.00",
                "lowPrice24h": f"{self._prices[key] - 500}.00",
                "prevPrice1h": f"{self._prices[key]}.00",
                "markPrice": last,
                "indexPrice": last,
                "openInterest": "68744.761",
                "openInterestValue": "1183601235.91",
                "turnover24h": "1570383121.943499",
                "volume24h": "91705.276",
                "fundingIntervalHour": "8",
                "fundingCap": "0.005",
                "nextFundingTime": "1790150400000",
                "fundingRate": "-0.000212",
                "bid1Price": bid,
                "bid1Size": "84.489",
                "ask1Price": ask,
                "ask1Size": "83.020",
                "preOpenPrice": "",
                "preQty": "",
                "curPreListingPhase": "",
            }
            kind = "snapshot"
        else:
            data = {
                "symbol": symbol,
                "lastPrice": last,
                "bid1Price": bid,
                "bid1Size": f"{84 + n}.489",
                "ask1Price": ask,
                "ask1Size": "83.020",
            }
            kind = "delta"
        return _encode({"topic": topic, "type": kind, "data": data, "cs": cs, "ts": now}).decode()

    def _book_frame(self, state: BybitSessionState, topic: str, key: tuple[Category, str]) -> str:
        """The topic's next frame: a snapshot of the venue book's top ``depth`` levels, or
        the change of those levels since the last frame (depth 1: always a snapshot)."""
        category, symbol = key
        book = state._books[topic]
        depth = int(topic.split(".")[1])
        now = self._now_ms()
        venue = self.venue_book(category, symbol)
        if book.restart:  # a service restart: a fresh snapshot, and u starts again at 1
            book.restart = False
            book.snapshot_sent = False
            book.u = venue.next_after(venue.sequence)
            book.offset = book.u - 1
        elif not book.snapshot_sent:
            if book.u > venue.sequence:  # a fresh u: the book changes once first
                book.u = venue.next_after(venue.sequence)
        else:
            if book.gap:
                book.gap = False
                book.u = venue.next_after(book.u)  # this delta is lost
            book.u = venue.next_after(book.u)
        state_now = venue.at(book.u)
        assert state_now is not None  # just made or read: within the history
        if not book.snapshot_sent or depth == 1:
            kind = "snapshot"
            book.snapshot_sent = True
            bids, asks = (side[:depth] for side in state_now)
            if self._numbered and depth == 1:
                bids = [[bids[0][0], str(book.u - book.offset)]]  # the ticker's bid size names it
        else:
            kind = "delta"
            before = venue.at(book.u - venue.seq_step)
            if before is None:  # the session fell too far behind: resend the whole top
                before = ([], [])
            bids = _top_change(before[0], state_now[0], depth, descending=True)
            asks = _top_change(before[1], state_now[1], depth, descending=False)
        u = book.u - book.offset
        self._sent[key] = max(self._sent.get(key, book.u), book.u)
        data = {"s": symbol, "b": bids, "a": asks, "u": u, "seq": self._next_seq(key)}
        if category == "spot" or depth == 1:
            body: dict[str, Any] = {"topic": topic, "ts": now, "type": kind, "data": data}
        else:
            body = {"topic": topic, "type": kind, "ts": now, "data": data}
        body["cts"] = now - 2
        return _encode(body).decode()


def _top_change(
    before: list[list[str]], after: list[list[str]], depth: int, *, descending: bool
) -> list[list[str]]:
    """What changed in the top ``depth`` levels of one side, best first: new or resized
    levels with their size, levels that left the top with size ``"0"`` (Bybit's removal)."""
    old = {price: size for price, size in before[:depth]}
    new = {price: size for price, size in after[:depth]}
    levels = [[price, size] for price, size in new.items() if old.get(price) != size]
    levels += [[price, "0"] for price in old if price not in new]
    return sorted(levels, key=lambda level: Decimal(level[0]), reverse=descending)
