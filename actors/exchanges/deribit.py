"""Deribit API v2 adapter: JSON-RPC 2.0 over one WebSocket, public market data.

Theory of operation
-------------------
Every session opens with ``public/set_heartbeat`` (written at once), then one
``public/subscribe`` request per instrument (its ``trades``, ``ticker`` and ``book``
channels together) and one per ``raw`` channel, released on a pacing schedule. Each request
carries a fresh integer id (increasing for the adapter's whole life, never reused); a
session keeps ``id -> request`` so that the reply confirms the channels listed in its
``result`` or refuses every channel of the request with the error's code and message.

Why one request per instrument: Deribit rejects a multi-channel subscribe *as a whole* when
any one channel is refused (observed 2026-09-21, reference §4.2), so an unknown instrument
or a channel the server refuses must not take other instruments down with it. The channels
of one instrument stand or fall together anyway (an unknown instrument fails all of them).
A ``raw`` channel is unknown territory, so it always travels alone.

Pacing: ``public/subscribe`` has its own credit bucket, 3 000 credits per call from a
30 000 pool refilled at 10 000 per second: a burst of 10 calls, then 3.33 calls per second
(DRB-SUB, nautilus ``nautilus_deribit::common::consts``). We use half the burst and 80 %
of the rate (:data:`SUBSCRIBE_BURST_USED`, :data:`SUBSCRIBE_SPACING`), scheduled with a
GCRA (virtual scheduling) whose state outlives the session: Deribit counts credits per IP
(public traffic) or per account, not per connection, so a reconnect one second after a
burst must not burst again. Slots of requests a session never wrote are given back when
it ends.

Heartbeat: Deribit sends ``heartbeat`` and ``test_request`` notifications every interval
once ``public/set_heartbeat`` is on, and closes the connection at once when a
``test_request`` is not answered with a ``public/test`` request (DRB-HB). We answer each
one immediately (the caller writes the frame); the reply, ``{"result":{"version":..}}``,
is consumed silently. Any frame proves the connection alive; none for
:data:`DEFAULT_HEARTBEAT_TOLERANCE` intervals is a :class:`HeartbeatMissed` (one late
heartbeat is jitter, two missing ones are a dead connection).

Hot path: every frame is decoded once into typed Structs (``_Frame``): the notification's
``data`` is a union of an array of trades and one object type that covers books, quotes,
tickers and platform notices; routing is one dict lookup by channel name. Prices and
amounts are JSON numbers that msgspec turns into exact ``Decimal`` values.

Decisions where Deribit's documentation is silent (docs/adapters.md asks to state them):

- Default heartbeat 10 s: Deribit's minimum; with the default ``stale_after`` of 30 s a
  quiet feed (an option nobody trades) stays alive on heartbeats alone, and a dead
  connection is found after 20 s. ``check()`` rejects intervals below 10 s and intervals
  not below ``stale_after``.
- ``10028 too_many_requests``: Deribit terminates the session after this reply (DRB-RL).
  The adapter refuses the request's channels with code ``10028``, drops the subscribe
  requests it had not written yet (they would only burn credits of a dying session) and
  lets the server's close end the session. It does *not* emit ``ReconnectRequested``: that
  reconnects without delay, straight back into an empty credit bucket; the ordinary
  backoff after a lost connection is what Deribit asks for ("wait, then reconnect").
- A reply whose ``result`` omits a requested channel refuses it with code
  ``unconfirmed``. A failed ``public/set_heartbeat`` or ``public/test`` is reported as a
  malformed frame of kind ``request_failed`` (there is no better event for it).
- Disconnect notices: Deribit's WebSocket announces no planned disconnect. The closest is
  the ``platform_state`` channel (``{"maintenance": true}``); list ``platform_state`` in
  ``raw`` to have its notices delivered as ``RawMessage`` *and* a maintenance start turned
  into ``ReconnectRequested``. It is not subscribed unasked (it costs a subscribe credit
  and would show up among the connection's subscriptions).
- Book gaps: a ``change`` whose ``prev_change_id`` is not the previous ``change_id`` of
  that channel emits ``SequenceGap`` and the delta is still delivered; the chain continues
  from the new ``change_id``. Re-subscribing for a fresh snapshot is left to the book
  maintainer that comes later (it costs subscribe credits).
- ``quote`` with an empty book side: Deribit sends ``null``; it is delivered as price 0,
  size 0, the convention Deribit's own ``ticker`` channel uses for an empty side.
- Channels use the ``100ms`` interval, the fastest one open to unauthenticated
  connections (``raw`` needs ``public/auth``; Deribit answers ``13778``).
- ``raw`` channels that are recognised (``trades.*``, ``quote.*``, ``ticker.*.*``,
  ``book.<instrument>.<interval>``) are decoded into normalized messages like configured
  channels; everything else is delivered as ``RawMessage``.
- Symbols: ``BTC-USD-PERP`` <-> ``BTC-PERPETUAL`` (inverse perpetuals are USD-quoted),
  ``BTC-USDC-PERP`` <-> ``BTC_USDC-PERPETUAL``, spot ``BTC-USDC`` <-> ``BTC_USDC``. Native
  names are accepted in config (and mapped to the normalized form in messages); dated
  futures (``BTC-27DEC24``) and options (``BTC-27DEC24-100000-C``) have no normalized form
  and are passed through as the message symbol. Combo instruments are not recognised as
  symbols; subscribe their channels through ``raw``.
- No limit on channels per connection is documented; subscribing N instruments takes
  about ``(N - 5) * 0.375`` seconds after the first five.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar, Final, Literal, NamedTuple

import msgspec
from msgspec import UNSET, UnsetType

from actors._spec import ConnectionSpec
from actors.exchanges.messages import (
    Batch,
    BookDelta,
    BookSnapshot,
    HeartbeatMissed,
    RawMessage,
    ReconnectRequested,
    SequenceGap,
    Ticker,
    Trade,
)
from actors.exchanges.sdk.pacing import Pacer
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.symbols import parse_symbol

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_HEARTBEAT_TOLERANCE",
    "DEFAULT_SUBSCRIBE_BURST",
    "DEFAULT_SUBSCRIBE_RATE",
    "DEFAULT_URL",
    "MIN_HEARTBEAT",
    "SUBSCRIBE_BURST_USED",
    "SUBSCRIBE_SPACING",
    "DeribitProtocol",
]

#: Production endpoint (https://docs.deribit.com/api-reference/session-management/public-set_heartbeat,
#: "servers"); testnet is ``wss://test.deribit.com/ws/api/v2``.
DEFAULT_URL: Final = "wss://www.deribit.com/ws/api/v2"
#: ``public/set_heartbeat`` takes an interval of at least 10 s
#: (https://docs.deribit.com/api-reference/session-management/public-set_heartbeat).
MIN_HEARTBEAT: Final = 10.0
#: Our heartbeat interval when config gives none: Deribit's minimum, so a quiet feed stays
#: alive under the default ``stale_after`` (30 s) and a dead one is found within 20 s.
DEFAULT_HEARTBEAT: Final = 10.0
#: Heartbeat intervals without any frame after which the connection counts as dead.
DEFAULT_HEARTBEAT_TOLERANCE: Final = 2.0
#: ``public/subscribe`` burst: 30 000-credit pool / 3 000 credits per call
#: (https://docs.deribit.com/articles/rate-limits; nautilus ``nautilus_deribit`` quotas).
DEFAULT_SUBSCRIBE_BURST: Final = 10
#: ``public/subscribe`` sustained calls per second: 10 000 credits/s refill / 3 000 per call.
DEFAULT_SUBSCRIBE_RATE: Final = 10_000 / 3_000
#: Calls we send at once: half the burst, leaving room for jitter and a quick reconnect.
SUBSCRIBE_BURST_USED: Final = 5
#: Seconds between paced calls after the burst: 2.67 calls/s, 80 % of the sustained rate
#: (0.375 is exact in binary floating point, so schedules are exact too).
SUBSCRIBE_SPACING: Final = 0.375

#: Error code of a request refused for lack of credits; Deribit then terminates the
#: session (https://docs.deribit.com/articles/rate-limits).
_TOO_MANY_REQUESTS: Final = 10028
_EXCHANGE: Final = "deribit"
_ZERO: Final = Decimal(0)
#: Normalized channel -> Deribit channel for an instrument (100ms: the fastest interval
#: open to unauthenticated connections).
_CHANNELS: Final = {
    "trades": "trades.{}.100ms",
    "ticker": "quote.{}",
    "book": "book.{}.100ms",
}
#: Config-time patterns of Deribit instrument names (never used per frame).
_NATIVE_PERP: Final = re.compile(r"^([A-Z0-9]+)(?:_([A-Z0-9]+))?-PERPETUAL$")
_NATIVE_SPOT: Final = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)$")
_NATIVE_DATED: Final = re.compile(
    r"^[A-Z0-9]+(?:_[A-Z0-9]+)?-[0-9]{1,2}[A-Z]{3}[0-9]{2}(?:-[0-9]+(?:d[0-9]+)?-[CP])?$"
)
_PLATFORM_STATE: Final = "platform_state"


def _native(symbol: str) -> str | None:
    """The Deribit instrument for a config symbol (normalized or native), or None."""
    if _NATIVE_PERP.match(symbol) or _NATIVE_SPOT.match(symbol) or _NATIVE_DATED.match(symbol):
        return symbol
    parsed = parse_symbol(symbol)
    if parsed is None:
        return None
    if parsed.perp:
        if parsed.quote == "USD":
            return f"{parsed.base}-PERPETUAL"
        return f"{parsed.base}_{parsed.quote}-PERPETUAL"
    return f"{parsed.base}_{parsed.quote}"


def _normalized(native: str) -> str:
    """The message symbol for a Deribit instrument; dated futures and options unchanged."""
    match = _NATIVE_PERP.match(native)
    if match is not None:
        return f"{match[1]}-{match[2] or 'USD'}-PERP"
    match = _NATIVE_SPOT.match(native)
    if match is not None:
        return f"{match[1]}-{match[2]}"
    return native


# -- wire format (payload Structs allow unknown fields: Deribit adds fields) ------------


class _Trade(msgspec.Struct, gc=False):
    """One element of a ``trades.*`` notification."""

    trade_id: str
    price: Decimal
    amount: Decimal
    direction: Literal["buy", "sell"]
    timestamp: int
    instrument_name: str = ""


_Level = tuple[Literal["new", "change", "delete"], Decimal, Decimal]


class _Data(msgspec.Struct, gc=False):
    """The object form of notification data: book, quote, ticker, platform_state."""

    type: str = ""
    instrument_name: str = ""
    timestamp: int | None = None
    change_id: int | None = None
    prev_change_id: int | None = None
    bids: list[_Level] = []
    asks: list[_Level] = []
    best_bid_price: Decimal | UnsetType | None = UNSET
    best_bid_amount: Decimal | UnsetType | None = UNSET
    best_ask_price: Decimal | UnsetType | None = UNSET
    best_ask_amount: Decimal | UnsetType | None = UNSET
    maintenance: bool | None = None


class _Params(msgspec.Struct, gc=False):
    """``params`` of a notification (``subscription``) or of a ``heartbeat``."""

    channel: str = ""
    data: list[_Trade] | _Data | None = None
    type: str = ""


class _Error(msgspec.Struct, gc=False):
    """``error`` of a JSON-RPC reply."""

    code: int
    message: str = ""


class _Frame(msgspec.Struct, gc=False):
    """Any frame Deribit sends: a notification (``method``) or a reply (``id``)."""

    method: str = ""
    params: _Params | None = None
    id: int | None = None
    result: list[str] | str | dict[str, Any] | UnsetType | None = UNSET
    error: _Error | None = None


class _RawParams(msgspec.Struct, gc=False):
    channel: str = ""
    data: Any = None


class _RawFrame(msgspec.Struct, gc=False):
    """A notification whose data is delivered as-is (``raw`` channels)."""

    method: str = ""
    params: _RawParams | None = None


class _Request(NamedTuple):
    """A request this session sent and whose reply is outstanding."""

    method: str
    topics: tuple[str, ...]


_Handler = Callable[[_Params, str, float, Frame], Batch]


class DeribitProtocol(ExchangeProtocol):
    """Deribit v2 public market data (trades, best bid/ask, incremental books).

    Side effects for the caller, besides the base contract: write the ``public/test``
    frame queued when a ``test_request`` arrives before the next frame is read, and call
    :meth:`tick` by :meth:`deadline` (paced subscribes, heartbeat deadline).

    Args:
        spec: the connection (``check()`` must have accepted it).
    """

    exchange: ClassVar[str] = "deribit"
    # Subscribe credits are counted per IP (public traffic), not per connection.
    shared_pacing: ClassVar[tuple[int, float] | None] = (SUBSCRIBE_BURST_USED, SUBSCRIBE_SPACING)
    default_url: ClassVar[str | None] = DEFAULT_URL

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        super().__init__(spec, pacer=pacer)
        self._name = spec.name
        self._heartbeat = spec.heartbeat if spec.heartbeat is not None else DEFAULT_HEARTBEAT
        self._silence_limit = self._heartbeat * DEFAULT_HEARTBEAT_TOLERANCE
        self._decode = msgspec.json.Decoder(_Frame).decode
        self._decode_raw = msgspec.json.Decoder(_RawFrame).decode
        self._encode = msgspec.json.Encoder().encode
        #: channel -> (handler, message symbol)
        self._routes: dict[str, tuple[_Handler, str]] = {}
        #: Channels delivered as RawMessage (also when the typed decode does not fit).
        self._raw_topics: set[str] = set()
        #: The subscribe requests of every session, in order.
        self._batches: list[tuple[str, ...]] = []
        #: native instrument -> message symbol (grows for trades.{kind}.{currency}.*).
        self._symbols: dict[str, str] = {}
        self._build_routes(spec)
        self._next_id = 1
        # Per session: outstanding requests, last change_id per book channel, the time
        # by which some frame must arrive.
        self._requests: dict[int, _Request] = {}
        self._books: dict[str, int] = {}
        self._alive_until = math.inf
        # Subscribe pacing: the shared per-host Pacer (GCRA, kept across sessions and
        # connections); this session's (send time, previous tat) reservations, the
        # pacer's state after the last one, and the latest time frames were released.
        self._paced: list[tuple[float, float]] = []
        self._last_tat = -math.inf
        self._released_at = -math.inf

    # -- configuration -------------------------------------------------------------

    @classmethod
    def check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        """Problems with ``spec`` that only the Deribit adapter can see.

        Unknown channels, symbols that are neither normalized nor Deribit instruments,
        two symbols naming one instrument, nothing to subscribe, ``raw`` channels that
        need authentication (``.raw``) or repeat a configured one, ``subscribe`` frames
        (not used), and a heartbeat below Deribit's minimum or not below ``stale_after``.

        Args:
            spec: the decoded connection.

        Returns:
            ``(key, problem)`` pairs; empty when the spec is usable.
        """
        problems = super().check(spec)
        if spec.subscribe:
            problems.append(
                (
                    "subscribe",
                    "not used by the deribit adapter (list native Deribit channels in raw, "
                    "e.g. 'deribit_price_index.btc_usd')",
                )
            )
        for channel in spec.channels:
            if channel not in _CHANNELS:
                problems.append(
                    ("channels", f"unknown channel {channel!r} (expected trades, ticker or book)")
                )
        natives: dict[str, str] = {}
        for symbol in spec.symbols:
            native = _native(symbol)
            if native is None:
                problems.append(
                    (
                        "symbols",
                        f"{symbol!r} is neither a normalized symbol nor a Deribit instrument "
                        "(expected e.g. BTC-USD-PERP, BTC-USDC-PERP, BTC-USDC, BTC-PERPETUAL, "
                        "BTC_USDC-PERPETUAL, BTC_USDC or BTC-27DEC24)",
                    )
                )
            elif native in natives:
                problems.append(
                    (
                        "symbols",
                        f"{natives[native]!r} and {symbol!r} are the same Deribit instrument "
                        f"{native!r} (keep one)",
                    )
                )
            else:
                natives[native] = symbol
        if spec.channels and not spec.symbols:
            problems.append(("symbols", "missing (expected at least one symbol for the channels)"))
        if spec.symbols and not spec.channels:
            problems.append(
                ("channels", "missing (expected trades, ticker and/or book for the symbols)")
            )
        if not spec.channels and not spec.symbols and not spec.raw:
            problems.append(
                (
                    "channels",
                    "nothing to subscribe (expected channels and symbols, or raw Deribit channels)",
                )
            )
        generated = {
            _CHANNELS[channel].format(native)
            for channel in spec.channels
            if channel in _CHANNELS
            for native in natives
        }
        seen: set[str] = set()
        for topic in spec.raw:
            if not topic or topic != topic.strip() or " " in topic:
                problems.append(
                    (
                        "raw",
                        f"{topic!r} is not a Deribit channel name (expected e.g. "
                        "'ticker.BTC-PERPETUAL.100ms' or 'platform_state')",
                    )
                )
            elif topic.endswith(".raw"):
                problems.append(
                    (
                        "raw",
                        f"{topic!r} needs an authenticated connection: Deribit refuses .raw "
                        "channels to unauthorized clients (13778 "
                        "raw_subscriptions_not_available_for_unauthorized) and this adapter "
                        f"does not log in (expected the 100ms or agg2 interval, e.g. "
                        f"{topic[: -len('.raw')] + '.100ms'!r})",
                    )
                )
            elif topic in generated:
                problems.append(
                    (
                        "raw",
                        f"{topic!r} is already subscribed through channels and symbols "
                        "(remove it from raw)",
                    )
                )
            elif topic in seen:
                problems.append(("raw", f"{topic!r} is listed twice (keep one)"))
            seen.add(topic)
        heartbeat = spec.heartbeat
        if heartbeat is not None and heartbeat < MIN_HEARTBEAT:
            problems.append(
                (
                    "heartbeat",
                    f"{heartbeat:g} s is below Deribit's minimum public/set_heartbeat "
                    f"interval (expected at least {MIN_HEARTBEAT:g} s)",
                )
            )
        else:
            interval = heartbeat if heartbeat is not None else DEFAULT_HEARTBEAT
            if interval >= spec.stale_after:
                key = "heartbeat" if heartbeat is not None else "stale_after"
                problems.append(
                    (
                        key,
                        f"Deribit heartbeat interval {interval:g} s"
                        f"{'' if heartbeat is not None else ' (the default)'} is not below "
                        f"stale_after {spec.stale_after:g} s: a quiet feed would count as "
                        "stale between two heartbeats (expected a heartbeat below stale_after)",
                    )
                )
        return problems

    def _build_routes(self, spec: ConnectionSpec) -> None:
        handlers: dict[str, _Handler] = {
            "trades": self._on_trades,
            "ticker": self._on_quote,
            "book": self._on_book,
        }
        channels = list(dict.fromkeys(c for c in spec.channels if c in _CHANNELS))
        for symbol in spec.symbols:
            native = _native(symbol)
            if native is None:  # pragma: no cover - check() rejects this config
                continue
            normalized = _normalized(native)
            self._symbols[native] = normalized
            topics = tuple(_CHANNELS[channel].format(native) for channel in channels)
            for channel, topic in zip(channels, topics, strict=True):
                self._routes[topic] = (handlers[channel], normalized)
            if topics:
                self._batches.append(topics)
        for topic in dict.fromkeys(spec.raw):
            self._routes[topic] = self._raw_route(topic)
            self._batches.append((topic,))

    def _raw_route(self, topic: str) -> tuple[_Handler, str]:
        """Recognise a ``raw`` channel Deribit documents; otherwise deliver it as-is."""
        parts = topic.split(".")
        kind, count = parts[0], len(parts)
        instrument = parts[1] if count > 1 else ""
        symbol = self._symbols.get(instrument) or _normalized(instrument)
        if kind == "trades" and count == 3:
            return self._on_trades, symbol
        if kind == "trades" and count == 4:  # trades.{kind}.{currency}.{interval}
            return self._on_trades, ""
        if (kind == "quote" and count == 2) or (kind == "ticker" and count == 3):
            return self._on_quote, symbol
        if kind == "book" and count == 3:
            return self._on_book, symbol
        self._raw_topics.add(topic)
        if topic == _PLATFORM_STATE:
            return self._on_platform_state, ""
        return self._on_raw, ""

    # -- session -------------------------------------------------------------------

    def _on_start(self, now: float) -> None:
        self._released_at = now
        self._alive_until = now + self._silence_limit
        interval: float | int = self._heartbeat
        if float(interval).is_integer():
            interval = int(interval)
        self._request("public/set_heartbeat", {"interval": interval}, ())
        for topics in self._batches:
            at = self._pace(now)
            self._expect(topics)
            self._request("public/subscribe", {"channels": list(topics)}, topics, at=at)

    def _on_end(self) -> None:
        # Subscribe calls that were scheduled but never written cost Deribit no credits:
        # give their pacing slots back (they are the tail of the schedule).
        assert self.pacer is not None
        for at, tat_before in self._paced:
            if at > self._released_at:
                self.pacer.give_back(tat_before, self._last_tat)
                break
        self._paced.clear()
        self._requests.clear()
        self._books.clear()
        self._alive_until = math.inf

    def _timer(self) -> float:
        return self._alive_until

    def _on_tick(self, now: float) -> None:
        self._released_at = now
        if now >= self._alive_until:
            self._alive_until = math.inf
            self._events.append(
                HeartbeatMissed(
                    detail=(
                        f"no frame from Deribit for {self._silence_limit:g} s although "
                        f"public/set_heartbeat asked for a heartbeat every "
                        f"{self._heartbeat:g} s"
                    )
                )
            )

    def _pace(self, now: float) -> float:
        """The time the next subscribe call may be written (shared GCRA schedule)."""
        assert self.pacer is not None
        at, tat_before = self.pacer.reserve(now)
        self._paced.append((at, tat_before))
        self._last_tat = self.pacer.tat
        return at

    def _request(
        self,
        method: str,
        params: dict[str, Any],
        topics: tuple[str, ...],
        *,
        at: float | None = None,
    ) -> None:
        """Queue one JSON-RPC request (now, or paced at ``at``) and remember its id."""
        request_id = self._next_id
        self._next_id += 1
        self._requests[request_id] = _Request(method, topics)
        frame = self._encode(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        ).decode()
        if at is None:
            self._send(frame)
        else:
            self._send_at(at, frame)

    # -- frames --------------------------------------------------------------------

    def receive_frame(self, data: Frame, now: float, received_at: float) -> Batch:
        """Decode one frame from Deribit.

        Notifications become messages; ``test_request`` queues a ``public/test`` frame
        (the caller must write it); replies confirm or refuse subscriptions; anything
        else queues a ``MalformedFrame``. Every frame counts as a sign of life.

        Args:
            data: the frame as received (text or binary JSON).
            now: the caller's monotonic time, seconds.
            received_at: Unix time the frame was read, stamped on the messages.

        Returns:
            The messages decoded from the frame, possibly none.
        """
        self._alive_until = now + self._silence_limit
        try:
            frame = self._decode(data)
        except msgspec.ValidationError as exc:
            return self._undecodable(data, received_at, exc)
        except msgspec.DecodeError as exc:
            self._malformed("invalid_json", str(exc), data)
            return ()
        params = frame.params
        if params is not None and frame.method == "subscription":
            route = self._routes.get(params.channel)
            if route is not None:
                return route[0](params, route[1], received_at, data)
            self._malformed(
                "unknown_channel",
                f"notification for channel {params.channel!r}, which this connection did not "
                "subscribe",
                data,
            )
            return ()
        self._control(frame, data)
        return ()

    def _on_trades(self, params: _Params, symbol: str, received_at: float, data: Frame) -> Batch:
        trades = params.data
        if not isinstance(trades, list):
            self._malformed(
                "invalid_payload", f"{params.channel}: expected an array of trades", data
            )
            return ()
        name = self._name
        # Per-instrument channels know the symbol; trades.{kind}.{currency}.* carry it
        # per trade.
        symbol_of = self._symbol_of
        return tuple(
            [
                Trade(
                    connection=name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol or symbol_of(trade.instrument_name),
                    side=trade.direction,
                    price=trade.price,
                    amount=trade.amount,
                    trade_id=trade.trade_id,
                    timestamp=trade.timestamp,
                )
                for trade in trades
            ]
        )

    def _on_quote(self, params: _Params, symbol: str, received_at: float, data: Frame) -> Batch:
        quote = params.data
        if (
            not isinstance(quote, _Data)
            or quote.timestamp is None
            or quote.best_bid_price is UNSET
            or quote.best_bid_amount is UNSET
            or quote.best_ask_price is UNSET
            or quote.best_ask_amount is UNSET
        ):
            self._malformed(
                "invalid_payload",
                f"{params.channel}: expected timestamp and best_bid/best_ask price and amount",
                data,
            )
            return ()
        return (
            Ticker(
                connection=self._name,
                exchange=_EXCHANGE,
                received_at=received_at,
                symbol=symbol,
                bid=quote.best_bid_price or _ZERO,
                bid_size=quote.best_bid_amount or _ZERO,
                ask=quote.best_ask_price or _ZERO,
                ask_size=quote.best_ask_amount or _ZERO,
                timestamp=quote.timestamp,
            ),
        )

    def _on_book(self, params: _Params, symbol: str, received_at: float, data: Frame) -> Batch:
        book = params.data
        if not isinstance(book, _Data) or book.change_id is None:
            self._malformed(
                "invalid_payload", f"{params.channel}: expected a book with a change_id", data
            )
            return ()
        channel = params.channel
        change_id = book.change_id
        if book.type == "change":
            prev = book.prev_change_id
            last = self._books.get(channel)
            self._books[channel] = change_id
            if last is not None and prev is not None and prev != last:
                self._events.append(SequenceGap(symbol=symbol, expected=last, received=prev))
            return (
                BookDelta(
                    connection=self._name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol,
                    bids=tuple(
                        [
                            (price, _ZERO if action == "delete" else amount)
                            for action, price, amount in book.bids
                        ]
                    ),
                    asks=tuple(
                        [
                            (price, _ZERO if action == "delete" else amount)
                            for action, price, amount in book.asks
                        ]
                    ),
                    sequence=change_id,
                    prev_sequence=prev,
                    timestamp=book.timestamp,
                ),
            )
        if book.type == "snapshot":
            self._books[channel] = change_id
            return (
                BookSnapshot(
                    connection=self._name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    symbol=symbol,
                    bids=tuple([(price, amount) for _, price, amount in book.bids]),
                    asks=tuple([(price, amount) for _, price, amount in book.asks]),
                    sequence=change_id,
                    timestamp=book.timestamp,
                ),
            )
        self._malformed(
            "invalid_payload", f"{channel}: unknown book notification type {book.type!r}", data
        )
        return ()

    def _on_raw(self, params: _Params, symbol: str, received_at: float, data: Frame) -> Batch:
        try:
            raw = self._decode_raw(data)
        except msgspec.DecodeError as exc:  # pragma: no cover - decoded once already
            self._malformed("invalid_payload", str(exc), data)
            return ()
        value = raw.params.data if raw.params is not None else None
        return (
            RawMessage(
                connection=self._name, exchange=_EXCHANGE, received_at=received_at, data=value
            ),
        )

    def _on_platform_state(
        self, params: _Params, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        state = params.data
        if isinstance(state, _Data) and state.maintenance:
            self._events.append(
                ReconnectRequested(reason="Deribit platform_state: maintenance started")
            )
        return self._on_raw(params, symbol, received_at, data)

    def _undecodable(self, data: Frame, received_at: float, exc: msgspec.ValidationError) -> Batch:
        """JSON that does not fit the typed frame: a raw channel's own shape, or bad."""
        try:
            raw = self._decode_raw(data)
        except msgspec.DecodeError:
            raw = None
        if (
            raw is not None
            and raw.params is not None
            and raw.method == "subscription"
            and raw.params.channel in self._raw_topics
        ):
            return (
                RawMessage(
                    connection=self._name,
                    exchange=_EXCHANGE,
                    received_at=received_at,
                    data=raw.params.data,
                ),
            )
        self._malformed("invalid_payload", str(exc), data)
        return ()

    def _control(self, frame: _Frame, data: Frame) -> None:
        """Heartbeats and replies: everything that is not market data."""
        method = frame.method
        if method == "heartbeat":
            kind = frame.params.type if frame.params is not None else ""
            if kind == "test_request":
                self._request("public/test", {}, ())
            elif kind != "heartbeat":
                self._malformed("unknown_heartbeat", f"heartbeat of type {kind!r}", data)
            return
        if method:
            self._malformed("unknown_method", f"unexpected method {method!r}", data)
            return
        error = frame.error
        if frame.id is None:
            detail = (
                f"error {error.code} {error.message} without a request id"
                if error is not None
                else "neither a notification nor a reply"
            )
            self._malformed("unexpected_reply", detail, data)
            return
        request = self._requests.pop(frame.id, None)
        if request is None:
            self._malformed(
                "unexpected_reply",
                f"reply to id {frame.id}, which this session did not send or already had answered",
                data,
            )
            return
        if error is not None:
            code = str(error.code)
            if error.code == _TOO_MANY_REQUESTS:
                # Deribit terminates the session after this reply: writing the remaining
                # subscribe calls would only burn credits. The server's close ends the
                # session; the supervisor's backoff then spaces the reconnect.
                self._scheduled.clear()
            if request.topics:
                for topic in request.topics:
                    self._refuse(topic, code, error.message)
            else:
                self._malformed(
                    "request_failed", f"{request.method} failed: {code} {error.message}", data
                )
            return
        if request.method == "public/subscribe":
            result = frame.result
            subscribed = set(result) if isinstance(result, list) else set()
            confirmed = [topic for topic in request.topics if topic in subscribed]
            if confirmed:
                self._confirm(confirmed)
            for topic in request.topics:
                if topic not in subscribed:
                    self._refuse(topic, "unconfirmed", "missing from the public/subscribe result")

    def _symbol_of(self, native: str) -> str:
        symbol = self._symbols.get(native)
        if symbol is None:
            symbol = self._symbols[native] = _normalized(native)
        return symbol
