"""A fake Deribit v2 server: JSON-RPC 2.0 over WebSocket, strict about Deribit's rules.

Theory of operation
-------------------
:class:`FakeDeribit` is a session handler for :func:`open_fake_exchange` (``handler=``):
the generic fake keeps owning the transport, so every generic fault (close, reset, stall,
garbage, refuse, slow) still applies, while this module plays Deribit's side of one
session. Each session runs two tasks in its own nursery: the request loop (read a client
frame, answer it) and the feed (one notification per subscribed channel every
``fake.interval`` seconds, from the first successful subscribe on). ``public/set_heartbeat``
adds a third, the heartbeat task. A rule violation ends the session the way Deribit does:
an error reply where Deribit sends one, then a close frame
(:data:`VIOLATION_CLOSE_CODE`; Deribit's own close code is not documented).

Rules enforced, each time constant and limit a constructor parameter:

- ``public/set_heartbeat`` with an interval below ``min_heartbeat`` is refused with
  ``-32602 Invalid params``; otherwise every interval the fake sends a ``heartbeat`` and a
  ``test_request`` notification, and closes the connection at once when a
  ``test_request`` was not answered by a ``public/test`` request before the next one is
  due (or within ``answer_window`` seconds, when given). [DRB-HB]
- ``public/subscribe`` takes credits from a bucket shared by every session of this fake
  (Deribit counts public traffic per IP): ``subscribe_burst`` calls at once, refilled at
  ``subscribe_rate`` calls per second; every other method uses a second bucket
  (``request_burst``, ``request_rate``). An empty bucket answers ``10028
  too_many_requests`` and then closes the session. [DRB-RL, DRB-SUB]
- A subscribe request is refused *as a whole* when any one of its channels is refused:
  ``.raw`` intervals with ``13778 raw_subscriptions_not_available_for_unauthorized``
  (no ``public/auth`` here), unknown instruments or channel shapes with ``-32602 Invalid
  params``. [PROBE]
- Unknown methods get ``-32601 Method not found``; text that is not JSON gets ``-32700
  Parse error``; a request without a string ``method`` gets ``-32600 Invalid Request``.

Data is shaped like the 2025 fixtures (``tests/data/deribit``): ``trades.*`` notifications
carry an array of trades, ``quote.*`` best bid/ask, ``ticker.*`` the perpetual ticker,
``book.*`` a ``snapshot`` (``prev_change_id: null``) followed by ``change`` notifications
whose ``prev_change_id`` is the previous ``change_id``. The books are real
(:mod:`supervisor.testing.fakes.venue_book`): one :class:`VenueBook` per instrument,
shared by every session; a (re)subscription's snapshot is that book as it stands and
each change is its next change (``new`` / ``change`` / ``delete`` by whether the price
was in the book), so :meth:`FakeDeribit.venue_book` tells a test what the book was at
any recent ``change_id``. :meth:`FakeDeribit.inject_gap` makes the next change of a
book skip one ``change_id``; :meth:`FakeDeribit.maintenance` sends a
``platform_state`` notice to sessions subscribed to it.

Numbered mode (``numbered=True``, for soaks that account for every message): the fake
models one market that every session watches. Each channel's count (trade ids and
sequences) continues where the furthest session left it instead of
starting again per session, so two sessions open at once send the same ids for the same
market events and a reconnect sees the ids move on; a quote's ``best_bid_amount`` is its
count plus one, so a normalized ticker can be told apart from every other.

Source tags ([DRB-HB], ...) refer to ``../shared/reference/exchanges.md``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Awaitable, Callable, Collection
from contextlib import suppress
from typing import Any, Final, final

import msgspec
import trio
from trio_websocket import ConnectionClosed

from supervisor.testing.fake import SessionIO
from supervisor.testing.fakes.venue_book import DERIBIT, VenueBook

__all__ = [
    "DEFAULT_ANSWER_WINDOW",
    "DEFAULT_INSTRUMENTS",
    "DEFAULT_MIN_HEARTBEAT",
    "DEFAULT_REQUEST_BURST",
    "DEFAULT_REQUEST_RATE",
    "DEFAULT_START_MS",
    "DEFAULT_SUBSCRIBE_BURST",
    "DEFAULT_SUBSCRIBE_RATE",
    "DEFAULT_VERSION",
    "VIOLATION_CLOSE_CODE",
    "FakeDeribit",
    "FakeDeribitSession",
]

#: ``public/set_heartbeat`` refuses intervals below 10 s
#: (https://docs.deribit.com/api-reference/session-management/public-set_heartbeat).
DEFAULT_MIN_HEARTBEAT: Final = 10.0
#: ``public/subscribe``: 3 000 credits per call from a 30 000 pool -> 10 calls at once
#: (https://docs.deribit.com/articles/rate-limits; nautilus ``nautilus_deribit`` quotas).
DEFAULT_SUBSCRIBE_BURST: Final = 10
#: ... refilled at 10 000 credits/s -> 3.33 calls per second.
DEFAULT_SUBSCRIBE_RATE: Final = 10_000 / 3_000
#: Other non-matching-engine calls: 500 credits each from a 50 000 pool -> 100 at once
#: (https://docs.deribit.com/articles/rate-limits, default tier).
DEFAULT_REQUEST_BURST: Final = 100
#: ... refilled at 10 000 credits/s -> 20 calls per second.
DEFAULT_REQUEST_RATE: Final = 20.0
#: Instruments the fake knows (anything else is an unknown instrument).
#: Seconds a test_request may stay unanswered. Deribit closes the connection at once if
#: it is not answered (https://docs.deribit.com/#public-set_heartbeat); one second allows
#: a network round trip and nothing more.
DEFAULT_ANSWER_WINDOW: Final = 1.0
DEFAULT_INSTRUMENTS: Final = ("BTC-PERPETUAL", "ETH-PERPETUAL", "BTC_USDC-PERPETUAL", "BTC_USDC")
#: Close code for sessions the fake ends for breaking a rule. RFC 6455 section 7.4.1:
#: 1008 "policy violation"; Deribit does not document the code it uses.
VIOLATION_CLOSE_CODE: Final = 1008
#: Exchange time at trio time 0, Unix ms (the 2025 fixtures' capture time).
DEFAULT_START_MS: Final = 1765541474086
#: What ``public/test`` reports (heartbeat.jsonl).
DEFAULT_VERSION: Final = "1.2.26"

_TOO_MANY_REQUESTS: Final = (10028, "too_many_requests")
_RAW_UNAUTHORIZED: Final = (13778, "raw_subscriptions_not_available_for_unauthorized")
_INVALID_PARAMS: Final = (-32602, "Invalid params")
_METHOD_NOT_FOUND: Final = (-32601, "Method not found")
_INVALID_REQUEST: Final = (-32600, "Invalid Request")
_PARSE_ERROR: Final = (-32700, "Parse error")
_PLATFORM_CHANNELS: Final = frozenset({"platform_state", "platform_state.public_methods_state"})
_INTERVALS: Final = frozenset({"100ms", "agg2"})
#: Book ids start here (the change_id of the 2025 REST book in rest_2025.jsonl).
_FIRST_CHANGE_ID: Final = 133112427566
_FIRST_TRADE_SEQ: Final = 271252854
_FIRST_TRADE_ID: Final = 403691824
_EPSILON: Final = 1e-9

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _base_price(instrument: str) -> float:
    if instrument.startswith("BTC"):
        return 92294.5
    if instrument.startswith("ETH"):
        return 3120.25
    return 1.5


class _Bucket:
    """A credit bucket counted in calls: ``burst`` at once, ``rate`` per second."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.credits = float(burst)
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.credits = min(self.burst, self.credits + (now - self.at) * self.rate)
        self.at = now
        if self.credits >= 1.0 - _EPSILON:
            self.credits -= 1.0
            return True
        return False


class _Feed:
    """Generator state of one subscribed channel in one session."""

    def __init__(self, channel: str) -> None:
        parts = channel.split(".")
        self.channel = channel
        self.kind = parts[0] if channel not in _PLATFORM_CHANNELS else "platform"
        self.instrument = parts[1] if len(parts) > 1 else ""
        self.count = 0
        self.change_id = _FIRST_CHANGE_ID
        self.snapshot_sent = False
        self.gap = False


@final
class FakeDeribitSession:
    """What the fake knows about one session; created by :class:`FakeDeribit`, read by tests.

    Attributes:
        index: the generic fake's :attr:`FakeSession.index` (also the position in
            :attr:`FakeDeribit.sessions` until :meth:`FakeDeribit.forget_closed` drops some).
        open: True until the session's handler ended.
        channels: the channels subscribed, in subscription order.
        subscribes: ``(trio time, channels)`` of every ``public/subscribe`` received.
        methods: ``(trio time, method)`` of every request received.
        heartbeat: the interval set by ``public/set_heartbeat``, or None.
        test_requests: ``test_request`` notifications sent.
        answered: of those, how many a ``public/test`` answered in time.
        errors: ``(code, message)`` of every error reply sent.
        closed: why the fake closed the session for a rule violation, or None.
    """

    def __init__(self, index: int, io: SessionIO) -> None:
        self.index = index
        self.open = True
        self.channels: list[str] = []
        self.subscribes: list[tuple[float, tuple[str, ...]]] = []
        self.methods: list[tuple[float, str]] = []
        self.heartbeat: float | None = None
        self.test_requests = 0
        self.answered = 0
        self.errors: list[tuple[int, str]] = []
        self.closed: str | None = None
        self._io = io
        self._feeds: dict[str, _Feed] = {}
        self._awaiting_test = False
        self._subscribed = trio.Event()
        self._heartbeat_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return (
            f"<FakeDeribitSession index={self.index} open={self.open} "
            f"channels={len(self.channels)} heartbeat={self.heartbeat} "
            f"test_requests={self.test_requests} answered={self.answered} "
            f"closed={self.closed!r}>"
        )


_Method = Callable[[FakeDeribitSession, Any, dict[str, Any]], Awaitable[None]]


@final
class FakeDeribit:
    """Deribit's server side for :func:`open_fake_exchange` (``handler=FakeDeribit()``).

    Args:
        instruments: instrument names the fake knows.
        min_heartbeat: smallest ``public/set_heartbeat`` interval accepted, seconds.
        answer_window: seconds a ``test_request`` may stay unanswered (Deribit closes
            "immediately"; the default allows a round trip); None means "until the next
            one is due" (one heartbeat interval).
        subscribe_burst: ``public/subscribe`` calls allowed at once (shared by sessions).
        subscribe_rate: ``public/subscribe`` calls refilled per second.
        request_burst: other calls allowed at once (shared by sessions).
        request_rate: other calls refilled per second.
        trades_per_frame: trades in each ``trades.*`` notification.
        start_ms: exchange time (Unix ms) at trio time 0.
        version: what ``public/test`` reports.
        numbered: one market for every session, and numbered quotes (module docstring).

    Raises:
        ValueError: a limit or time that is not positive.
    """

    def __init__(
        self,
        *,
        instruments: Collection[str] = DEFAULT_INSTRUMENTS,
        min_heartbeat: float = DEFAULT_MIN_HEARTBEAT,
        answer_window: float | None = DEFAULT_ANSWER_WINDOW,
        subscribe_burst: int = DEFAULT_SUBSCRIBE_BURST,
        subscribe_rate: float = DEFAULT_SUBSCRIBE_RATE,
        request_burst: int = DEFAULT_REQUEST_BURST,
        request_rate: float = DEFAULT_REQUEST_RATE,
        trades_per_frame: int = 2,
        start_ms: int = DEFAULT_START_MS,
        version: str = DEFAULT_VERSION,
        numbered: bool = False,
    ) -> None:
        for name, value in (
            ("min_heartbeat", min_heartbeat),
            ("subscribe_burst", subscribe_burst),
            ("subscribe_rate", subscribe_rate),
            ("request_burst", request_burst),
            ("request_rate", request_rate),
            ("trades_per_frame", trades_per_frame),
        ):
            if not value > 0 or math.isinf(value):
                raise ValueError(f"FakeDeribit {name} must be a positive number, got {value!r}")
        if answer_window is not None and not answer_window > 0:
            raise ValueError(
                f"FakeDeribit answer_window must be positive seconds or None, got {answer_window!r}"
            )
        self.instruments = frozenset(instruments)
        #: One true book per instrument, shared by every session (made on first use).
        self._venue: dict[str, VenueBook] = {}
        self.min_heartbeat = min_heartbeat
        self.answer_window = answer_window
        self.trades_per_frame = trades_per_frame
        self.start_ms = start_ms
        self.version = version
        self.numbered = numbered
        #: Every session served, in order (index matches ``FakeExchange.sessions``
        #: until :meth:`forget_closed` drops some).
        self.sessions: list[FakeDeribitSession] = []
        #: Numbered mode: per channel, the furthest (count, change_id) any session reached.
        self._market: dict[str, tuple[int, int]] = {}
        self._subscribe_credits = _Bucket(subscribe_burst, subscribe_rate)
        self._request_credits = _Bucket(request_burst, request_rate)
        self._methods: dict[str, _Method] = {
            "public/set_heartbeat": self._set_heartbeat,
            "public/disable_heartbeat": self._disable_heartbeat,
            "public/test": self._test,
            "public/subscribe": self._subscribe,
            "public/unsubscribe": self._unsubscribe,
            "public/unsubscribe_all": self._unsubscribe_all,
        }

    # -- observation -----------------------------------------------------------------

    def subscribed(self, index: int) -> frozenset[str]:
        """The channels open session ``index`` subscribed (acknowledged); empty once closed."""
        for session in self.sessions:
            if session.index == index and session.open:
                return frozenset(session.channels)
        return frozenset()

    def forget_closed(self) -> int:
        """Drop closed sessions from :attr:`sessions` (long runs); return how many."""
        kept = [session for session in self.sessions if session.open]
        dropped = len(self.sessions) - len(kept)
        self.sessions = kept
        return dropped

    def venue_book(self, instrument: str) -> VenueBook:
        """The venue's true book of ``instrument`` (shared by every session).

        Raises:
            ValueError: the fake does not list ``instrument``.
        """
        book = self._venue.get(instrument)
        if book is None:
            if instrument not in self.instruments:
                raise ValueError(
                    f"venue_book({instrument!r}): the fake lists only {sorted(self.instruments)}"
                )
            book = self._venue[instrument] = VenueBook(
                seed=zlib.crc32(instrument.encode()),
                # Ticks of 0.25; the cheap instruments' books start at 150.
                price=max(round(_base_price(instrument) * 4), 600),
                sequence=_FIRST_CHANGE_ID,
                fmt=DERIBIT,
            )
        return book

    # -- injection -------------------------------------------------------------------

    def inject_gap(self, instrument: str) -> int:
        """Make the next ``change`` of ``instrument``'s book skip one ``change_id``.

        Applies to every open session whose book snapshot for it was already sent.

        Args:
            instrument: the Deribit instrument name, e.g. ``BTC-PERPETUAL``.

        Returns:
            How many book feeds will skip.
        """
        count = 0
        for session in self.sessions:
            if not session.open:
                continue
            for feed in session._feeds.values():
                if feed.kind == "book" and feed.instrument == instrument and feed.snapshot_sent:
                    feed.gap = True
                    count += 1
        return count

    async def maintenance(self, active: bool = True) -> int:
        """Send ``platform_state`` ``{"maintenance": active}`` to the sessions subscribed to it.

        Args:
            active: the ``maintenance`` value to announce.

        Returns:
            How many sessions were sent the notice.

        Cancellation:
            Partial: some sessions may have been sent the notice.
        """
        frame = self._notification("platform_state", {"maintenance": active})
        count = 0
        for session in list(self.sessions):
            if session.open and "platform_state" in session.channels:
                with suppress(ConnectionClosed):
                    await session._io.send(frame, data=False)
                    count += 1
        return count

    # -- the session -----------------------------------------------------------------

    async def __call__(self, io: SessionIO) -> None:
        """Serve one session (the generic fake calls this per accepted connection).

        Cancellation: the session's tasks stop; the generic fake closes the connection.
        """
        session = FakeDeribitSession(io.session.index, io)
        self.sessions.append(session)
        try:
            async with trio.open_nursery() as nursery:
                session._nursery = nursery
                nursery.start_soon(self._feed, session)
                with suppress(ConnectionClosed):
                    while True:
                        await self._handle(session, await io.receive())
                nursery.cancel_scope.cancel(reason="the client closed the session")
        finally:
            session.open = False
            session._heartbeat_scope.cancel()

    async def _handle(self, session: FakeDeribitSession, text: str | bytes) -> None:
        now = trio.current_time()
        try:
            request = _decode(text)
        except msgspec.DecodeError:
            await self._error(session, None, _PARSE_ERROR)
            return
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            request_id = request.get("id") if isinstance(request, dict) else None
            await self._error(session, request_id, _INVALID_REQUEST)
            return
        request_id = request.get("id")
        method: str = request["method"]
        params = request.get("params", {})
        session.methods.append((now, method))
        subscribing = method == "public/subscribe"
        credits = self._subscribe_credits if subscribing else self._request_credits
        if not credits.take(now):
            await self._error(session, request_id, _TOO_MANY_REQUESTS)
            self._drop(session, "too_many_requests")
            return
        handler = self._methods.get(method)
        if handler is None:
            await self._error(session, request_id, _METHOD_NOT_FOUND)
        elif not isinstance(params, dict):
            await self._error(session, request_id, _INVALID_PARAMS, param="params")
        else:
            await handler(session, request_id, params)

    def _drop(self, session: FakeDeribitSession, reason: str) -> None:
        """End the session for a rule violation: close frame, as Deribit does."""
        if session.closed is None:
            session.closed = reason
        session._io.close(VIOLATION_CLOSE_CODE, reason)

    # -- methods -----------------------------------------------------------------------

    async def _set_heartbeat(
        self, session: FakeDeribitSession, request_id: Any, params: dict[str, Any]
    ) -> None:
        interval = params.get("interval")
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not interval >= self.min_heartbeat
            or math.isinf(interval)
        ):
            await self._error(
                session,
                request_id,
                _INVALID_PARAMS,
                param="interval",
                reason=f"must be a number of seconds, at least {self.min_heartbeat:g}",
            )
            return
        await self._reply(session, request_id, "ok")
        session._heartbeat_scope.cancel()
        session._heartbeat_scope = trio.CancelScope()
        session.heartbeat = float(interval)
        session._awaiting_test = False
        assert session._nursery is not None
        session._nursery.start_soon(self._heartbeat, session, session._heartbeat_scope)

    async def _disable_heartbeat(
        self, session: FakeDeribitSession, request_id: Any, params: dict[str, Any]
    ) -> None:
        session._heartbeat_scope.cancel()
        session.heartbeat = None
        session._awaiting_test = False
        await self._reply(session, request_id, "ok")

    async def _test(
        self, session: FakeDeribitSession, request_id: Any, params: dict[str, Any]
    ) -> None:
        if session._awaiting_test:
            session._awaiting_test = False
            session.answered += 1
        await self._reply(session, request_id, {"version": self.version})

    async def _subscribe(
        self, session: FakeDeribitSession, request_id: Any, params: dict[str, Any]
    ) -> None:
        channels = params.get("channels")
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) for c in channels)
        ):
            await self._error(
                session,
                request_id,
                _INVALID_PARAMS,
                param="channels",
                reason="expected a non-empty array of channel names",
            )
            return
        session.subscribes.append((trio.current_time(), tuple(channels)))
        for channel in channels:
            refusal = self._refusal(channel)
            if refusal is not None:
                # One refused channel refuses the whole request (observed, reference §4.2).
                error, reason = refusal
                if error == _RAW_UNAUTHORIZED:
                    await self._error(session, request_id, error)
                else:
                    await self._error(session, request_id, error, param="channels", reason=reason)
                return
        for channel in channels:
            if channel not in session._feeds:
                session.channels.append(channel)
                feed = session._feeds[channel] = _Feed(channel)
                if self.numbered and channel in self._market:
                    feed.count, feed.change_id = self._market[channel]
        await self._reply(session, request_id, list(channels))
        session._subscribed.set()

    async def _unsubscribe(
        self, session: FakeDeribitSession, request_id: Any, params: dict[str, Any]
    ) -> None:
        channels = params.get("channels")
        wanted = channels if isinstance(channels, list) else []
        removed = [c for c in wanted if isinstance(c, str) and c in session._feeds]
        for channel in removed:
            del session._feeds[channel]
            session.channels.remove(channel)
        await self._reply(session, request_id, removed)

    async def _unsubscribe_all(
        self, session: FakeDeribitSession, request_id: Any, params: dict[str, Any]
    ) -> None:
        session._feeds.clear()
        session.channels.clear()
        await self._reply(session, request_id, "ok")

    def _refusal(self, channel: str) -> tuple[tuple[int, str], str] | None:
        """Why Deribit would refuse ``channel`` to an unauthenticated client, or None."""
        if channel in _PLATFORM_CHANNELS:
            return None
        parts = channel.split(".")
        kind = parts[0]
        if (kind in ("trades", "book", "ticker") and len(parts) == 3) or (
            kind == "quote" and len(parts) == 2
        ):
            if len(parts) == 3 and parts[2] == "raw":
                return _RAW_UNAUTHORIZED, ""
            if len(parts) == 3 and parts[2] not in _INTERVALS:
                return _INVALID_PARAMS, f"invalid interval in channel {channel}"
            if parts[1] not in self.instruments:
                return _INVALID_PARAMS, f"unknown instrument in channel {channel}"
            return None
        return _INVALID_PARAMS, f"invalid channel {channel}"

    # -- heartbeat and data --------------------------------------------------------------

    async def _heartbeat(self, session: FakeDeribitSession, scope: trio.CancelScope) -> None:
        interval = session.heartbeat
        assert interval is not None
        heartbeat = _encode(
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}}
        ).decode()
        test_request = _encode(
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
        ).decode()
        due = trio.current_time()
        with scope, suppress(ConnectionClosed):
            while True:
                due += interval
                await trio.sleep_until(due)
                if session._awaiting_test:
                    self._drop(session, "test_request not answered before the next one")
                    return
                await session._io.send(heartbeat, data=False)
                await session._io.send(test_request, data=False)
                session.test_requests += 1
                session._awaiting_test = True
                if self.answer_window is not None:
                    await trio.sleep_until(due + self.answer_window)
                    if session._awaiting_test:
                        self._drop(
                            session,
                            f"test_request not answered within {self.answer_window:g} s",
                        )
                        return

    async def _feed(self, session: FakeDeribitSession) -> None:
        await session._subscribed.wait()
        due = trio.current_time()
        with suppress(ConnectionClosed):
            while True:
                due = await session._io.wait_interval(due)
                for channel in list(session.channels):
                    feed = session._feeds.get(channel)
                    frame = self._data(feed) if feed is not None else None
                    if feed is not None and self.numbered:
                        count, change_id = self._market.get(channel, (0, 0))
                        self._market[channel] = (
                            max(count, feed.count),
                            max(change_id, feed.change_id),
                        )
                    if frame is not None:
                        await session._io.send(frame)

    def _data(self, feed: _Feed) -> str | None:
        """The next notification of ``feed``, shaped like the 2025 fixtures."""
        now_ms = self.start_ms + round(trio.current_time() * 1000)
        instrument = feed.instrument
        base = _base_price(instrument)
        if feed.kind == "trades":
            trades = []
            for _ in range(self.trades_per_frame):
                n = feed.count
                feed.count += 1
                amount = 10.0 * (n % 3 + 1)
                trades.append(
                    {
                        "timestamp": now_ms,
                        "price": base + (n % 5) * 0.5,
                        "amount": amount,
                        "direction": "sell" if n % 2 == 0 else "buy",
                        "index_price": base - 17.75,
                        "instrument_name": instrument,
                        "trade_seq": _FIRST_TRADE_SEQ + n,
                        "mark_price": base - 7.5,
                        "tick_direction": n % 4,
                        "contracts": amount / 10.0,
                        "trade_id": str(_FIRST_TRADE_ID + n),
                    }
                )
            return self._notification(feed.channel, trades)
        if feed.kind == "quote":
            n = feed.count
            feed.count += 1
            return self._notification(
                feed.channel,
                {
                    "timestamp": now_ms,
                    "instrument_name": instrument,
                    "best_ask_price": base + 0.5,
                    "best_bid_price": base,
                    "best_ask_amount": 99470.0 + 10.0 * n,
                    "best_bid_amount": float(n + 1) if self.numbered else 133440.0,
                },
            )
        if feed.kind == "ticker":
            return self._notification(feed.channel, self._ticker(instrument, base, now_ms))
        if feed.kind == "book":
            return self._notification(feed.channel, self._book(feed, now_ms))
        return None  # platform_state: notices only

    @staticmethod
    def _ticker(instrument: str, base: float, now_ms: int) -> dict[str, Any]:
        return {
            "timestamp": now_ms,
            "state": "open",
            "stats": {
                "high": base + 1300.0,
                "low": base - 3000.0,
                "price_change": 2.3275,
                "volume": 11897.27640428,
                "volume_usd": 1092371540.0,
                "volume_notional": 1092371540.0,
            },
            "index_price": base - 20.0,
            "instrument_name": instrument,
            "last_price": base,
            "settlement_price": base + 180.0,
            "min_price": base - 1400.0,
            "max_price": base + 1400.0,
            "open_interest": 1132329370.0,
            "mark_price": base - 2.0,
            "interest_value": 0.0028213400122472977,
            "best_ask_price": base + 0.5,
            "best_bid_price": base,
            "estimated_delivery_price": base - 20.0,
            "best_ask_amount": 186520.0,
            "best_bid_amount": 117660.0,
            "current_funding": 0.0,
            "funding_8h": 1.742e-05,
        }

    def _book(self, feed: _Feed, now_ms: int) -> dict[str, Any]:
        """The feed's next ``book`` notification: the venue book's state, or its next change."""
        venue = self.venue_book(feed.instrument)
        if not feed.snapshot_sent:
            feed.snapshot_sent = True
            feed.change_id = venue.sequence
            bids, asks = venue.snapshot()
            return {
                "type": "snapshot",
                "instrument_name": feed.instrument,
                "timestamp": now_ms,
                "change_id": feed.change_id,
                "prev_change_id": None,
                "bids": [["new", float(price), float(size)] for price, size in bids],
                "asks": [["new", float(price), float(size)] for price, size in asks],
            }
        if feed.gap:
            feed.gap = False
            feed.change_id = venue.next_after(feed.change_id)  # a change this client never sees
        prev = feed.change_id
        change_id = venue.next_after(prev)
        change = venue.diff(prev, change_id)
        before = venue.at(prev)
        if change is None or before is None:  # the feed fell too far behind: show a gap
            change_id = venue.next_after(venue.sequence)
            prev = change_id - venue.seq_step
            change, before = venue.diff(prev, change_id), venue.at(prev)
            assert change is not None and before is not None
        feed.change_id = change_id
        return {
            "type": "change",
            "instrument_name": feed.instrument,
            "timestamp": now_ms,
            "change_id": change_id,
            "prev_change_id": prev,
            "bids": _deribit_levels(change[0], before[0]),
            "asks": _deribit_levels(change[1], before[1]),
        }

    # -- frames ------------------------------------------------------------------------

    @staticmethod
    def _notification(channel: str, data: Any) -> str:
        return _encode(
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"channel": channel, "data": data},
            }
        ).decode()

    def _stamp(self) -> dict[str, Any]:
        us = self.start_ms * 1000 + round(trio.current_time() * 1_000_000)
        return {"usIn": us, "usOut": us, "usDiff": 0, "testnet": False}

    async def _reply(self, session: FakeDeribitSession, request_id: Any, result: Any) -> None:
        frame = {"jsonrpc": "2.0", "id": request_id, "result": result, **self._stamp()}
        await session._io.send(_encode(frame).decode(), data=False)

    async def _error(
        self,
        session: FakeDeribitSession,
        request_id: Any,
        error: tuple[int, str],
        *,
        param: str | None = None,
        reason: str | None = None,
    ) -> None:
        code, message = error
        body: dict[str, Any] = {"code": code, "message": message}
        if param is not None:
            body["data"] = {"param": param, "reason": reason or message}
        session.errors.append((code, message))
        frame = {"jsonrpc": "2.0", "id": request_id, "error": body, **self._stamp()}
        await session._io.send(_encode(frame).decode(), data=False)


def _deribit_levels(changed: list[list[str]], before: list[list[str]]) -> list[list[Any]]:
    """Changed ``[price, size]`` levels as Deribit sends them: ``[action, price, amount]``.

    ``new`` for a price that was not in the book, ``change`` for one that was, ``delete``
    (amount 0) for a removal.
    """
    known = {price for price, _ in before}
    out: list[list[Any]] = []
    for price, size in changed:
        if float(size) == 0:
            out.append(["delete", float(price), 0.0])
        else:
            out.append(["change" if price in known else "new", float(price), float(size)])
    return out
