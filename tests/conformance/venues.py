"""The exchange end of an adapter pair: one small sans-IO venue per registered adapter.

A venue reads the adapter's frames the way the exchange would and answers them: acks,
refusals (for topics it was told to refuse, with the exchange's own code and reply
shape), pongs; and it writes data frames for a book stream, with or without a gap. It is
written from the exchange's documentation (shared/reference/exchanges.md,
docs/exchanges/bybit.md), independently of the adapter, so the pair checks one against
the other. Each venue also states the exchange's request budget as a *rule* over the
frames the adapter wrote and when (:meth:`Venue.check_budget`), so budgets are asserted
against the exchange's limit, not against the margin an adapter chose.

Rules of this file: no sockets, no trio, no clock; time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import msgspec

from actors.exchanges.raw import topic_name

Frame = str | bytes
_json = msgspec.json.decode


def _text(frame: Frame) -> str:
    return frame if isinstance(frame, str) else frame.decode()


def _dump(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class Venue:
    """The exchange end of a pair (see the module docstring)."""

    #: The ``exchange`` name of the adapter this venue answers.
    exchange: ClassVar[str]
    #: A connection spec (channels, symbols) with a book stream, used by every test.
    spec: ClassVar[dict[str, Any]]
    #: The native topic of the spec's first book stream, and its symbol in messages.
    book_topic: ClassVar[str | None] = None
    book_symbol: ClassVar[str] = ""
    #: A topic of the spec the venue refuses in refusal tests, and the code it uses.
    refused_topic: ClassVar[str | None] = None
    refusal_code: ClassVar[str] = ""
    #: Whether the exchange states a request budget (:meth:`check_budget`), and whether
    #: it counts per IP across connections (then it is checked over sessions too).
    has_budget: ClassVar[bool] = True
    per_ip: ClassVar[bool] = False
    #: The most symbols one connection of the spec's shape may hold (the exchange's
    #: per-connection limit, which check() enforces).
    max_symbols: ClassVar[int] = 512

    def __init__(self) -> None:
        #: Topics requested, per session, in the order requested.
        self.requested: list[str] = []
        #: Topics unsubscribed, per session.
        self.unsubscribed: list[str] = []
        self.refuse: set[str] = set()

    def spec_for(self, symbols: int) -> dict[str, Any]:
        """A spec with ``symbols`` symbols (for budget properties)."""
        return {**self.spec, "symbols": [f"C{i:04d}-USDT" for i in range(symbols)]}

    def receive(self, frame: Frame) -> list[Frame]:  # pragma: no cover - abstract
        """Answer one frame from the adapter."""
        raise NotImplementedError

    def book(self, first: int, count: int, *, skip: int | None = None) -> list[Frame]:
        """A snapshot (where the venue sends one) then ``count`` deltas; delta ``skip``
        (0-based) does not continue the previous one."""
        raise NotImplementedError  # pragma: no cover - overridden where books exist

    def check_budget(self, sent: Sequence[tuple[float, Frame]]) -> None:
        """Assert the exchange's request rule over ``(time, frame)`` the adapter wrote."""
        raise NotImplementedError  # pragma: no cover - overridden


def _max_in_window(times: Sequence[float], window: float) -> int:
    """Most events in any closed window of ``window`` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


class BinanceVenue(Venue):
    """Binance spot: SUBSCRIBE with ids; code 2 refuses a whole request naming a bad stream;
    at most 5 incoming messages per second per connection (web-socket-streams.md)."""

    exchange = "binance"
    spec = {"channels": ["trades", "book"], "symbols": ["BTC-USDT", "ETH-USDT"]}
    book_topic = "btcusdt@depth@100ms"
    book_symbol = "BTC-USDT"
    refused_topic = "ethusdt@trade"
    refusal_code = "2"
    #: "WebSocket connections have a limit of 5 incoming messages per second."
    messages_per_second = 5
    max_streams = 1024

    def receive(self, frame: Frame) -> list[Frame]:
        request = _json(frame)
        params: list[str] = request["params"]
        if request["method"] == "UNSUBSCRIBE":
            self.unsubscribed += params
            return [_dump({"result": None, "id": request["id"]})]
        assert request["method"] == "SUBSCRIBE"
        self.requested += params
        if self.refuse & set(params):
            error = {"code": 2, "msg": "Invalid request: invalid stream"}
            return [_dump({"error": error, "id": request["id"]})]
        return [_dump({"result": None, "id": request["id"]})]

    def book(self, first: int, count: int, *, skip: int | None = None) -> list[Frame]:
        frames: list[Frame] = []
        last = first
        for i in range(count):
            start = last + 1 + (5 if i == skip else 0)
            data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": start, "u": start + 1}
            frames.append(_dump({"stream": self.book_topic, "data": {**data, "b": [], "a": []}}))
            last = start + 1
        return frames

    def check_budget(self, sent: Sequence[tuple[float, Frame]]) -> None:
        # Our pongs (one per server ping every 20 s) count too: leave room for one.
        assert _max_in_window([t for t, _ in sent], 1.0) <= self.messages_per_second - 1
        streams = [p for _, f in sent for p in _json(f)["params"]]
        assert len(streams) <= self.max_streams


class BinanceUsdmVenue(BinanceVenue):
    """USD-M: like spot with 10 incoming messages per second; it acks unknown streams."""

    exchange = "binance_usdm"
    spec = {"channels": ["trades", "book"], "symbols": ["BTC-USDT-PERP", "ETH-USDT-PERP"]}
    book_symbol = "BTC-USDT-PERP"
    messages_per_second = 10

    def spec_for(self, symbols: int) -> dict[str, Any]:
        return {**self.spec, "symbols": [f"C{i:04d}-USDT-PERP" for i in range(symbols)]}

    def book(self, first: int, count: int, *, skip: int | None = None) -> list[Frame]:
        frames: list[Frame] = []
        last = first
        for i in range(count):
            prev = last + (5 if i == skip else 0)
            data = {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT", "U": prev + 1}
            data |= {"u": prev + 2, "pu": prev, "b": [], "a": []}
            frames.append(_dump({"stream": self.book_topic, "data": data}))
            last = prev + 2
        return frames


class OkxVenue(Venue):
    """OKX: one answer per arg, in order; errors name no arg unless the message does;
    a request may hold 64 KB and a connection may send 480 requests per hour."""

    exchange = "okx"
    spec = {"channels": ["trades", "book"], "symbols": ["BTC-USDT", "ETH-USDT"]}
    book_topic = "books:BTC-USDT"
    book_symbol = "BTC-USDT"
    refused_topic = "trades:ETH-USDT"
    refusal_code = "60018"

    def receive(self, frame: Frame) -> list[Frame]:
        if frame == "ping":
            return ["pong"]
        request = _json(frame)
        out: list[Frame] = []
        if request["op"] == "unsubscribe":
            for arg in request["args"]:
                self.unsubscribed.append(f"{arg['channel']}:{arg['instId']}")
                out.append(_dump({"event": "unsubscribe", "arg": arg, "connId": "c"}))
            return out
        assert request["op"] == "subscribe"
        for arg in request["args"]:
            topic = f"{arg['channel']}:{arg['instId']}"
            self.requested.append(topic)
            if topic in self.refuse:
                message = f"Wrong URL or channel:{arg['channel']},instId:{arg['instId']} "
                out.append(_dump({"event": "error", "code": "60018", "msg": message + "x"}))
            else:
                out.append(_dump({"event": "subscribe", "arg": arg, "connId": "c"}))
        return out

    def book(self, first: int, count: int, *, skip: int | None = None) -> list[Frame]:
        arg = {"channel": "books", "instId": "BTC-USDT"}
        entry = {"asks": [], "bids": [], "ts": "1", "checksum": 0}
        frames: list[Frame] = [
            _dump({"arg": arg, "action": "snapshot", "data": [entry | {"seqId": first}]})
        ]
        last = first
        for i in range(count):
            prev = last + (5 if i == skip else 0)
            data = [entry | {"seqId": prev + 1, "prevSeqId": prev}]
            frames.append(_dump({"arg": arg, "action": "update", "data": data}))
            last = prev + 1
        return frames

    def check_budget(self, sent: Sequence[tuple[float, Frame]]) -> None:
        requests = [(t, f) for t, f in sent if f != "ping"]
        assert _max_in_window([t for t, _ in requests], 3600.0 - 1e-9) <= 480
        assert all(len(_text(f).encode()) <= 64 * 1024 for _, f in requests)


class DeribitVenue(Venue):
    """Deribit: JSON-RPC replies by id; subscribe credits 30 000, 3 000 per call, refilled
    at 10 000 per second (counted per IP); test_request must be answered."""

    exchange = "deribit"
    per_ip = True
    spec = {"channels": ["trades", "book"], "symbols": ["BTC-USD-PERP", "ETH-USD-PERP"]}
    book_topic = "book.BTC-PERPETUAL.100ms"
    book_symbol = "BTC-USD-PERP"
    refused_topic = "trades.ETH-PERPETUAL.100ms"
    refusal_code = "11050"

    def spec_for(self, symbols: int) -> dict[str, Any]:
        return {**self.spec, "symbols": [f"C{i:03d}-PERPETUAL" for i in range(symbols)]}

    def receive(self, frame: Frame) -> list[Frame]:
        request = _json(frame)
        method, request_id = request["method"], request["id"]
        if method == "public/unsubscribe":
            self.unsubscribed += request["params"]["channels"]
            remaining: list[str] = []
            return [_dump({"jsonrpc": "2.0", "id": request_id, "result": remaining})]
        if method != "public/subscribe":
            return [_dump({"jsonrpc": "2.0", "id": request_id, "result": "ok"})]
        channels: list[str] = request["params"]["channels"]
        self.requested += channels
        if self.refuse & set(channels):
            error = {"code": 11050, "message": "bad_request"}
            return [_dump({"jsonrpc": "2.0", "id": request_id, "error": error})]
        return [_dump({"jsonrpc": "2.0", "id": request_id, "result": channels})]

    def book(self, first: int, count: int, *, skip: int | None = None) -> list[Frame]:
        def note(data: dict[str, Any]) -> Frame:
            params = {"channel": self.book_topic, "data": data}
            return _dump({"jsonrpc": "2.0", "method": "subscription", "params": params})

        base = {"timestamp": 1, "instrument_name": "BTC-PERPETUAL", "bids": [], "asks": []}
        frames = [note(base | {"type": "snapshot", "change_id": first})]
        last = first
        for i in range(count):
            prev = last + (5 if i == skip else 0)
            change = {"type": "change", "change_id": prev + 1, "prev_change_id": prev}
            frames.append(note(base | change))
            last = prev + 1
        return frames

    def check_budget(self, sent: Sequence[tuple[float, Frame]]) -> None:
        credits, refill, cost, pool = 30_000.0, 10_000.0, 3_000.0, 30_000.0
        last = None
        for t, frame in sent:
            if _json(frame)["method"] != "public/subscribe":
                continue
            if last is not None:
                credits = min(pool, credits + (t - last) * refill)
            last = t
            credits -= cost
            assert credits >= 0, f"out of subscribe credits at t={t}"


class BybitVenue(Venue):
    """Bybit: one reply per request (``req_id``); a request with a bad topic is refused
    whole, naming it; at most 10 args per spot request, 21,000 characters of args."""

    exchange = "bybit"
    spec = {"channels": ["trades", "book"], "symbols": ["BTC-USDT", "ETH-USDT"]}
    book_topic = "orderbook.50.BTCUSDT"
    book_symbol = "BTC-USDT"
    #: 21,000 characters of args per connection: about 428 symbols of trades and books.
    max_symbols = 400
    refused_topic = "publicTrade.ETHUSDT"
    refusal_code = "handler not found"

    def receive(self, frame: Frame) -> list[Frame]:
        request = _json(frame)
        reply = {"conn_id": "c", "req_id": request.get("req_id"), "op": request["op"]}
        if request["op"] == "ping":
            return [_dump({"success": True, "ret_msg": "pong"} | reply)]
        args: list[str] = request["args"]
        if request["op"] == "unsubscribe":
            self.unsubscribed += args
            return [_dump({"success": True, "ret_msg": "unsubscribe"} | reply)]
        self.requested += args
        bad = [a for a in args if a in self.refuse]
        if bad:
            message = f"error:handler not found,topic:{bad[0]}"
            return [_dump({"success": False, "ret_msg": message} | reply)]
        return [_dump({"success": True, "ret_msg": "subscribe"} | reply)]

    def book(self, first: int, count: int, *, skip: int | None = None) -> list[Frame]:
        def push(kind: str, u: int) -> Frame:
            data = {"s": "BTCUSDT", "b": [], "a": [], "u": u, "seq": u}
            return _dump({"topic": self.book_topic, "ts": 1, "type": kind, "data": data})

        frames = [push("snapshot", first)]
        last = first
        for i in range(count):
            u = last + 1 + (5 if i == skip else 0)
            frames.append(push("delta", u))
            last = u
        return frames

    def check_budget(self, sent: Sequence[tuple[float, Frame]]) -> None:
        subscribed: list[str] = []
        for _, frame in sent:
            request = _json(frame)
            if request["op"] == "subscribe":
                assert len(request["args"]) <= 10
                subscribed += request["args"]
        # "for one public connection, you cannot have length of args over 21,000
        # characters" (bybit.md §3), read strictly: the connection's args together.
        assert len(_dump(subscribed)) <= 21_000


class BybitLinearVenue(BybitVenue):
    """Bybit linear perpetuals: the same protocol on /v5/public/linear."""

    exchange = "bybit_linear"
    spec = {"channels": ["trades", "book"], "symbols": ["BTC-USDT-PERP", "ETH-USDT-PERP"]}
    book_symbol = "BTC-USDT-PERP"

    def spec_for(self, symbols: int) -> dict[str, Any]:
        return {**self.spec, "symbols": [f"C{i:04d}-USDT-PERP" for i in range(symbols)]}


class RawVenue(Venue):
    """The raw adapter: frames from config sent verbatim, no acks, no books."""

    exchange = "raw"
    #: The raw adapter sends what config says; it knows no exchange's rule.
    has_budget = False
    spec = {"url": "ws://127.0.0.1:1/", "subscribe": ['{"op":"sub","args":["a"]}', "hello"]}

    def receive(self, frame: Frame) -> list[Frame]:
        # The adapter names each frame by its place and redacted summary (never the
        # frame itself: it may be a login); the venue sees them in config order.
        self.requested.append(topic_name(len(self.requested), _text(frame)))
        return []

    def spec_for(self, symbols: int) -> dict[str, Any]:
        return {**self.spec, "subscribe": [f'{{"sub":{i}}}' for i in range(symbols)]}


VENUES: dict[str, Callable[[], Venue]] = {
    venue.exchange: venue
    for venue in (
        BinanceVenue,
        BinanceUsdmVenue,
        BybitVenue,
        BybitLinearVenue,
        DeribitVenue,
        OkxVenue,
        RawVenue,
    )
}
