"""The Deribit adapter: JSON-RPC requests, notifications, heartbeats and replies.

See the package docstring for the theory of operation; limits, channels and ``check()``
are in :mod:`.config`, frame Structs in :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Final

import msgspec
from msgspec import UNSET

from actors._spec import ConnectionSpec
from actors.exchanges.deribit import config, wire
from actors.exchanges.messages import Batch, Message, ReconnectRequested, Trade
from actors.exchanges.sdk.books import Mark, default_mark, prefixed_mark
from actors.exchanges.sdk.booksync import DERIBIT, SyncRule
from actors.exchanges.sdk.heartbeat import Heartbeat, ServerHeartbeat
from actors.exchanges.sdk.pacing import Pacer, Reservations
from actors.exchanges.sdk.protocol import ExchangeProtocol, Frame
from actors.exchanges.sdk.rest import INSTRUMENTS, TIME, RestCall
from actors.exchanges.sdk.symbols import SymbolMap

__all__ = ["DeribitProtocol"]

_Handler = Callable[[wire.Params, str, float, Frame], Batch]
_SUBSCRIBE: Final = "public/subscribe"
#: The method name recorded for our liveness probes (the frame says ``public/test``).
_PROBE: Final = "probe"
_UNSUBSCRIBE: Final = "public/unsubscribe"


class DeribitProtocol(ExchangeProtocol):
    """Deribit v2 public market data (trades, best bid/ask, incremental books).

    Side effects for the caller, besides the base contract: write the ``public/test``
    frame queued when a ``test_request`` arrives before the next frame is read, and call
    :meth:`tick` by :meth:`deadline` (paced subscribes, heartbeat deadline).

    Args:
        spec: the connection (``check()`` must have accepted it).
    """

    exchange: ClassVar[str] = "deribit"
    #: The subscription's snapshot, then the exact chain; a gap subscribes again.
    book_rule: ClassVar[SyncRule | None] = DERIBIT
    # Subscribe credits are counted per IP (public traffic), not per connection.
    shared_pacing: ClassVar[tuple[int, float] | None] = (
        config.SUBSCRIBE_BURST_USED,
        config.SUBSCRIBE_SPACING,
    )
    default_url: ClassVar[str | None] = config.DEFAULT_URL
    rest_venue: ClassVar[str | None] = "deribit"
    #: HTTP API base (reference §4.1).
    rest_url: ClassVar[str | None] = "https://www.deribit.com"

    def __init__(self, spec: ConnectionSpec, *, pacer: Pacer | None = None) -> None:
        self._interval = spec.heartbeat if spec.heartbeat is not None else config.DEFAULT_HEARTBEAT
        super().__init__(spec, pacer=pacer)
        self._decode = msgspec.json.Decoder(wire.Envelope).decode
        self._decode_raw = msgspec.json.Decoder(wire.RawEnvelope).decode
        self._encode = msgspec.json.Encoder().encode
        #: channel -> (handler, message symbol)
        self._routes: dict[str, tuple[_Handler, str]] = {}
        #: Channels delivered as RawMessage (also when the typed decode does not fit).
        self._raw_topics: set[str] = set()
        #: The subscribe requests of every session, in order.
        self._batches: list[tuple[str, ...]] = []
        #: native instrument <-> message symbol (grows for trades.{kind}.{currency}.*).
        self._symbols = SymbolMap(config.to_native, config.normalized)
        self._configure(spec)
        # Subscribe pacing: this session's reservations on the shared per-host Pacer
        # (GCRA, kept across sessions and connections).
        assert self.pacer is not None
        self._reservations = Reservations(self.pacer)

    @classmethod
    def _check(cls, spec: ConnectionSpec) -> list[tuple[str, str]]:
        return config.check(spec)

    def _heartbeat(self) -> Heartbeat:
        limit = self._interval * config.DEFAULT_HEARTBEAT_TOLERANCE
        return ServerHeartbeat(
            self._interval,
            config.DEFAULT_HEARTBEAT_TOLERANCE,
            detail=(
                f"no frame from Deribit for {limit:g} s although public/set_heartbeat asked "
                f"for a heartbeat every {self._interval:g} s"
            ),
        )

    def topics(self) -> list[str]:
        return [topic for group in self._batches for topic in group]

    def _configure(self, spec: ConnectionSpec) -> None:
        self._routes = {}
        self._raw_topics = set()
        self._batches = []
        handlers: dict[str, _Handler] = {
            "trades": self._on_trades,
            "ticker": self._on_quote,
            "book": self._on_book,
        }
        channels = list(dict.fromkeys(c for c in spec.channels if c in config.CHANNELS))
        for symbol in spec.symbols:
            native = self._symbols.add(symbol)
            if native is None:  # pragma: no cover - check() rejects this config
                continue
            normalized = self._symbols.normalized(native)
            topics = tuple(config.CHANNELS[channel].format(native) for channel in channels)
            for channel, topic in zip(channels, topics, strict=True):
                self._routes[topic] = (handlers[channel], normalized)
            if topics:
                self._batches.append(topics)
        for topic in dict.fromkeys(spec.raw):
            self._routes[topic] = self._raw_route(topic)
            self._batches.append((topic,))

    # -- local books ------------------------------------------------------------------

    def _book_topics(self) -> dict[str, str]:
        template = config.CHANNELS["book"]
        return {
            symbol: topic
            for topic, (handler, symbol) in self._routes.items()
            if handler == self._on_book and topic == template.format(topic.split(".")[1])
        }

    def _book_streams(self) -> dict[str, str]:
        return {
            topic: symbol
            for topic, (handler, symbol) in self._routes.items()
            if handler == self._on_book
        }

    # -- REST ------------------------------------------------------------------------

    def _time_call(self) -> RestCall | None:
        # {"jsonrpc":"2.0","result":<ms>} (reference §4.6)
        return RestCall(purpose=TIME, path="/api/v2/public/get_time")

    def _server_time(self, body: object) -> float | None:
        result = body.get("result") if isinstance(body, dict) else None
        return result / 1000 if isinstance(result, int) else None

    def _instrument_calls(self) -> list[RestCall]:
        if not self._symbol_topics():
            return []
        # "any": every currency in one list (https://docs.deribit.com/#public-get_instruments).
        return [
            RestCall(
                purpose=INSTRUMENTS,
                path="/api/v2/public/get_instruments",
                params=(("currency", "any"),),
            )
        ]

    def _listed_names(self, call: RestCall, body: object) -> list[str] | None:
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list):
            return None
        return [
            i["instrument_name"] for i in result if isinstance(i, dict) and "instrument_name" in i
        ]

    def _symbol_topics(self) -> dict[str, list[str]]:
        natives = {self._symbols.native(symbol) for symbol in self.spec.symbols}
        out: dict[str, list[str]] = {}
        for topic in self.topics():
            parts = topic.split(".")
            if len(parts) > 1 and parts[1] in natives:
                out.setdefault(parts[1], []).append(topic)
        return out

    def _raw_route(self, topic: str) -> tuple[_Handler, str]:
        """Recognise a ``raw`` channel Deribit documents; otherwise deliver it as-is."""
        parts = topic.split(".")
        kind, count = parts[0], len(parts)
        instrument = parts[1] if count > 1 else ""
        symbol = self._symbols.normalized(instrument)
        if kind == "trades" and count == 3:
            return self._on_trades, symbol
        if kind == "trades" and count == 4:  # trades.{kind}.{currency}.{interval}
            return self._on_trades, ""
        if (kind == "quote" and count == 2) or (kind == "ticker" and count == 3):
            return self._on_quote, symbol
        if kind == "book" and count == 3:
            return self._on_book, symbol
        self._raw_topics.add(topic)
        if topic == config.PLATFORM_STATE:
            return self._on_platform_state, ""
        return self._on_raw, ""

    # -- session -------------------------------------------------------------------

    def _on_start(self, now: float) -> None:
        interval: float | int = self._interval
        if float(interval).is_integer():
            interval = int(interval)
        self._request("public/set_heartbeat", {"interval": interval}, ())
        super()._on_start(now)

    def _subscribe(self, now: float, topics: list[str]) -> None:
        # One request per instrument (its channels stand or fall together), paced on
        # the shared credit budget.
        wanted = set(topics)
        for group in self._batches:
            chosen = tuple(topic for topic in group if topic in wanted)
            if chosen:
                at = self._reservations.reserve(now)
                self._request(_SUBSCRIBE, {"channels": list(chosen)}, chosen, at=at)

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        at = self._reservations.reserve(now)
        self._request(_UNSUBSCRIBE, {"channels": topics}, tuple(topics), at=at)

    def _on_end(self) -> None:
        # Subscribe calls that were scheduled but never written cost Deribit no credits.
        self._reservations.give_back_unsent(self.released_at)

    def _probe_frame(self, now: float) -> Frame | None:
        # public/test: answered at once and costs no subscribe credit (the same request
        # answers the server's test_request).
        request = self.book.request((), _PROBE)
        return self._encode(
            {"jsonrpc": "2.0", "id": request.id, "method": "public/test", "params": {}}
        ).decode()

    def _request(
        self,
        method: str,
        params: dict[str, Any],
        topics: tuple[str, ...],
        *,
        at: float | None = None,
    ) -> None:
        """Queue one JSON-RPC request (now, or paced at ``at``) with a fresh id."""
        request = self.book.request(topics, method)
        frame = self._encode(
            {"jsonrpc": "2.0", "id": request.id, "method": method, "params": params}
        ).decode()
        if at is None:
            self.send_now(frame)
        else:
            self.send_at(at, frame)

    # -- frames --------------------------------------------------------------------

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
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
        try:
            frame = self._decode(data)
        except msgspec.ValidationError as exc:
            return self._undecodable(data, received_at, exc)
        except msgspec.DecodeError as exc:
            self.malformed("invalid_json", str(exc), data)
            return ()
        params = frame.params
        if params is not None and frame.method == "subscription":
            route = self._routes.get(params.channel)
            if route is not None:
                self.heard(params.channel)
                return route[0](params, route[1], received_at, data)
            self.unrouted(
                params.channel,
                "unknown_channel",
                f"notification for channel {params.channel!r}, which this connection did not "
                "subscribe",
                data,
            )
            return ()
        self._control(frame, data)
        return ()

    def mark(self, message: Message) -> Mark | None:
        """Where ``message`` puts its stream (see sdk.books), knowing Deribit's trade ids.

        Deribit trade ids are decimal (``"403691825"``) or, for some currencies,
        ``CURRENCY-NUMBER`` (``"ETH-207325731"``); the number orders them, per prefix.
        Called only during a handover.
        """
        if isinstance(message, Trade):
            prefixed = prefixed_mark(message)
            if prefixed is not None:
                return prefixed
        return default_mark(message)

    def _on_trades(
        self, params: wire.Params, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        trades = params.data
        if not isinstance(trades, list):
            self.malformed(
                "invalid_payload", f"{params.channel}: expected an array of trades", data
            )
            return ()
        # Per-instrument channels know the symbol; trades.{kind}.{currency}.* carry it
        # per trade.
        symbol_of = self._symbols.normalized
        make = self.stamp.trade
        return tuple(
            [
                make(
                    received_at,
                    symbol or symbol_of(t.instrument_name),
                    t.direction,
                    t.price,
                    t.amount,
                    t.trade_id,
                    t.timestamp,
                )
                for t in trades
            ]
        )

    def _on_quote(self, params: wire.Params, symbol: str, received_at: float, data: Frame) -> Batch:
        quote = params.data
        if (
            not isinstance(quote, wire.Data)
            or quote.timestamp is None
            or quote.best_bid_price is UNSET
            or quote.best_bid_amount is UNSET
            or quote.best_ask_price is UNSET
            or quote.best_ask_amount is UNSET
        ):
            self.malformed(
                "invalid_payload",
                f"{params.channel}: expected timestamp and best_bid/best_ask price and amount",
                data,
            )
            return ()
        return (
            self.stamp.ticker(
                received_at,
                symbol,
                quote.best_bid_price or config.ZERO,
                quote.best_bid_amount or config.ZERO,
                quote.best_ask_price or config.ZERO,
                quote.best_ask_amount or config.ZERO,
                quote.timestamp,
            ),
        )

    def _on_book(self, params: wire.Params, symbol: str, received_at: float, data: Frame) -> Batch:
        book = params.data
        if not isinstance(book, wire.Data) or book.change_id is None:
            self.malformed(
                "invalid_payload", f"{params.channel}: expected a book with a change_id", data
            )
            return ()
        channel = params.channel
        change_id = book.change_id
        # Each message is built (so checked) before the chain moves: a refused one
        # leaves it in place.
        if book.type == "change":
            prev = book.prev_change_id
            zero = config.ZERO
            delta = self.stamp.delta(
                received_at,
                symbol,
                tuple([(p, zero if a == "delete" else q) for a, p, q in book.bids]),
                tuple([(p, zero if a == "delete" else q) for a, p, q in book.asks]),
                change_id,
                prev,
                book.timestamp,
            )
            if prev is None:
                self.chains.start(channel, change_id)
            else:
                self.chain(channel, symbol, prev, change_id)
            return (delta,)
        if book.type == "snapshot":
            snapshot = self.stamp.snapshot(
                received_at,
                symbol,
                tuple([(p, q) for _, p, q in book.bids]),
                tuple([(p, q) for _, p, q in book.asks]),
                change_id,
                book.timestamp,
            )
            self.chains.start(channel, change_id)
            return (snapshot,)
        self.malformed(
            "invalid_payload", f"{channel}: unknown book notification type {book.type!r}", data
        )
        return ()

    def _on_raw(self, params: wire.Params, symbol: str, received_at: float, data: Frame) -> Batch:
        try:
            raw = self._decode_raw(data)
        except msgspec.DecodeError as exc:  # pragma: no cover - decoded once already
            self.malformed("invalid_payload", str(exc), data)
            return ()
        value = raw.params.data if raw.params is not None else None
        return (self.stamp.raw(received_at, value),)

    def _on_platform_state(
        self, params: wire.Params, symbol: str, received_at: float, data: Frame
    ) -> Batch:
        state = params.data
        if isinstance(state, wire.Data) and state.maintenance:
            self.emit(ReconnectRequested(reason="Deribit platform_state: maintenance started"))
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
            return (self.stamp.raw(received_at, raw.params.data),)
        self.malformed("invalid_payload", str(exc), data)
        return ()

    def _control(self, frame: wire.Envelope, data: Frame) -> None:
        """Heartbeats and replies: everything that is not market data."""
        method = frame.method
        if method == "heartbeat":
            kind = frame.params.type if frame.params is not None else ""
            if kind == "test_request":
                self._request("public/test", {}, ())
            elif kind != "heartbeat":
                self.malformed("unknown_heartbeat", f"heartbeat of type {kind!r}", data)
            return
        if method:
            self.malformed("unknown_method", f"unexpected method {method!r}", data)
            return
        error = frame.error
        if frame.id is None:
            detail = (
                f"error {error.code} {error.message} without a request id"
                if error is not None
                else "neither a notification nor a reply"
            )
            self.malformed("unexpected_reply", detail, data)
            return
        request = self.book.answer(frame.id)
        if request is not None and request.method == _PROBE:
            self.probe_answered()
            return
        if request is None:
            self.malformed(
                "unexpected_reply",
                f"reply to id {frame.id}, which this session did not send or already had answered",
                data,
            )
            return
        if error is not None:
            code = str(error.code)
            if error.code == config.TOO_MANY_REQUESTS:
                # Deribit terminates the session after this reply: writing the remaining
                # subscribe calls would only burn credits. The server's close ends the
                # session; the supervisor's backoff then spaces the reconnect.
                self.drop_scheduled()
            if request.method == _SUBSCRIBE:
                self.report(self.book.refuse(t, code, error.message) for t in request.topics)
            else:
                self.malformed(
                    "request_failed", f"{request.method} failed: {code} {error.message}", data
                )
            return
        if request.method == _SUBSCRIBE:
            result = frame.result
            subscribed = set(result) if isinstance(result, list) else set()
            confirmed = [topic for topic in request.topics if topic in subscribed]
            if confirmed:
                self.confirm(confirmed)
            for topic in request.topics:
                if topic not in subscribed:
                    self.refuse(topic, "unconfirmed", "missing from the public/subscribe result")
