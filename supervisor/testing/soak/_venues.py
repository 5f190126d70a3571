"""The soak's venues: one rule-enforcing fake per configured connection, and what each sends.

Theory of operation: every ``[connections.NAME]`` of the configuration gets its own
fake exchange server named ``NAME`` (memory or loopback TCP), playing the exchange the
connection names (:class:`~supervisor.testing.FakeBinance`, ``FakeOkx``,
``FakeDeribit``, ``FakeBybit``) in *numbered* mode, so that every data message can be
told apart (see the fakes' module docstrings). The configuration is then rewritten to
point each connection at its fake (the URL keeps the path the adapter would use, so
Bybit's category and Binance's envelope are right) and to subscribe ``book`` besides
the configured channels, so that sequence gaps and the book path of a handover are
exercised. Nothing else of the configuration changes.

Each venue also knows how to read a data frame its fake wrote (:meth:`Venue.parse`):
the messages in it as :data:`Item` tuples, in the same terms as the normalized messages
a consumer receives (:func:`item_of`). That pair is what the ledger compares. Symbols
are compared in a canonical form (upper case, separators removed: ``BTC-USDT``,
``BTC_USDT`` and ``BTCUSDT`` are all ``BTCUSDT``); the soak therefore refuses two
configured symbols that only differ by separators.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import msgspec

from actors.exchanges import ADAPTERS
from actors.exchanges.messages import BookDelta, BookSnapshot, Message, Ticker, Trade
from actors.net import split_ws_url
from supervisor.config import Config, config_from_dict, load_config
from supervisor.testing.fake import FakeExchange, FakeSession, open_fake_exchange
from supervisor.testing.fakes.binance import FakeBinance, FakeBinanceUsdm
from supervisor.testing.fakes.bybit import DEFAULT_MAX_CONNECTS as BYBIT_MAX_CONNECTS
from supervisor.testing.fakes.bybit import FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit
from supervisor.testing.fakes.okx import FakeOkx

__all__ = [
    "EXCHANGES",
    "Item",
    "SoakConfigError",
    "Venue",
    "canonical",
    "item_of",
    "open_venues",
    "soak_config",
]

Kind = Literal["trade", "ticker", "book"]


class Item(NamedTuple):
    """One data message, as the fake wrote it or as the consumer received it.

    Attributes:
        kind: ``trade``, ``ticker`` or ``book``.
        symbol: the canonical symbol (:func:`canonical`).
        id: the trade id, the ticker's number (numbered fakes) or the book sequence.
        prev: a book delta's previous sequence; None for snapshots and other kinds.
        snapshot: True for a book snapshot.
    """

    kind: Kind
    symbol: str
    id: int
    prev: int | None = None
    snapshot: bool = False


#: The exchanges the soak has a fake for.
EXCHANGES: Final = ("binance", "binance_usdm", "okx", "deribit", "bybit", "bybit_linear")
#: Connection-rate limits the fakes enforce (the exchanges' published ones).
_MAX_CONNECTS: Final[dict[str, tuple[int, float] | None]] = {
    "binance": (300, 300.0),  # 300 connection attempts per 5 minutes per IP
    "binance_usdm": (300, 300.0),
    "okx": (3, 1.0),  # 3 per second per IP
    "deribit": None,  # not published
    "bybit": BYBIT_MAX_CONNECTS,
    "bybit_linear": BYBIT_MAX_CONNECTS,
}
_decode = msgspec.json.Decoder().decode


class SoakConfigError(Exception):
    """The configuration cannot be soaked (unknown exchange, ambiguous symbols, ...)."""


def canonical(symbol: str) -> str:
    """``BTC-USDT``, ``BTC_USDT``, ``btcusdt`` -> ``BTCUSDT``."""
    return symbol.upper().replace("-", "").replace("_", "").replace("/", "")


def item_of(message: Message) -> Item | None:
    """The :class:`Item` a normalized message stands for (None for raw messages).

    Raises:
        ValueError: a trade id or ticker number that is not an integer (the fakes in
            numbered mode never send one).
    """
    if isinstance(message, Trade):
        return Item("trade", canonical(message.symbol), int(message.trade_id))
    if isinstance(message, Ticker):
        return Item("ticker", canonical(message.symbol), int(message.bid_size))
    if isinstance(message, BookDelta):
        if message.sequence is None:
            return None
        return Item("book", canonical(message.symbol), message.sequence, message.prev_sequence)
    if isinstance(message, BookSnapshot):
        if message.sequence is None:
            return None
        return Item("book", canonical(message.symbol), message.sequence, None, True)
    return None


Handler = FakeBinance | FakeOkx | FakeDeribit | FakeBybit


@dataclass
class Venue:
    """One configured connection with its fake.

    Attributes:
        name: the connection's name (also the fake's).
        exchange: the connection's exchange.
        fake: the running fake server.
        handler: the exchange's rules on it.
        topics: the native topics the connection subscribes (the adapter's names).
        natives: canonical symbol -> the exchange's own name for it.
    """

    name: str
    exchange: str
    fake: FakeExchange
    handler: Handler
    topics: frozenset[str]
    natives: dict[str, str]

    @property
    def has_notice(self) -> bool:
        """Whether the exchange announces disconnects (make-before-break)."""
        return isinstance(self.handler, FakeBinance | FakeOkx)

    def subscribed(self, index: int) -> frozenset[str]:
        """The topics the fake acknowledged on open session ``index``."""
        return self.handler.subscribed(index)

    def newest_open(self) -> FakeSession | None:
        """The most recently accepted session that is still open."""
        for session in reversed(self.fake.sessions):
            if session.open:
                return session
        return None

    def confirmed(self, session: FakeSession) -> bool:
        """``session`` is open and the fake acknowledged every topic of the connection."""
        return session.open and self.topics <= self.subscribed(session.index)

    async def notice(self) -> None:
        """Announce a disconnect to every open session (Binance serverShutdown, OKX 64008).

        Raises:
            RuntimeError: the exchange has no such notice.

        Cancellation: partial (some sessions may have been sent the notice).
        """
        handler = self.handler
        if isinstance(handler, FakeBinance):
            await handler.server_shutdown()
        elif isinstance(handler, FakeOkx):
            await handler.notice()
        else:
            raise RuntimeError(f"{self.exchange} announces no disconnects")

    def inject_gap(self) -> None:
        """Lose the next book update of every symbol in every open session."""
        handler = self.handler
        for native in self.natives.values():
            if isinstance(handler, FakeBybit):
                handler.inject_gap(f"orderbook.50.{native}")
            else:
                handler.inject_gap(native)

    def forget_closed(self) -> None:
        """Drop the fake's records of closed sessions (the soak keeps its own)."""
        self.fake.forget_closed()
        if not isinstance(self.handler, FakeOkx):  # keeps no closed sessions
            self.handler.forget_closed()

    def parse(self, frame: str | bytes) -> list[Item]:
        """The data messages in a frame the fake wrote."""
        body = _decode(frame)
        if self.exchange.startswith("binance"):
            return _binance_items(body)
        if self.exchange == "okx":
            return _okx_items(body)
        if self.exchange == "deribit":
            return _deribit_items(body)
        return _bybit_items(body)


def _binance_items(body: dict[str, Any]) -> list[Item]:
    data = body.get("data", body)
    stream = body.get("stream", "")
    symbol = canonical(data["s"])
    if stream.endswith("@trade") or data.get("e") == "trade":
        return [Item("trade", symbol, int(data["t"]))]
    if "@depth" in stream or data.get("e") == "depthUpdate":
        return [Item("book", symbol, int(data["u"]), int(data["U"]) - 1)]
    return [Item("ticker", symbol, int(data["u"]))]  # bookTicker: numbered B == u


def _okx_items(body: dict[str, Any]) -> list[Item]:
    channel = body["arg"]["channel"]
    symbol = canonical(body["arg"]["instId"])
    items = []
    for entry in body["data"]:
        if channel == "trades":
            items.append(Item("trade", symbol, int(entry["tradeId"])))
        elif channel == "tickers":
            items.append(Item("ticker", symbol, int(entry["bidSz"])))
        elif channel == "books":
            if body.get("action") == "snapshot":
                items.append(Item("book", symbol, int(entry["seqId"]), None, True))
            else:
                items.append(Item("book", symbol, int(entry["seqId"]), int(entry["prevSeqId"])))
    return items


def _deribit_items(body: dict[str, Any]) -> list[Item]:
    params = body["params"]
    channel: str = params["channel"]
    data = params["data"]
    kind = channel.partition(".")[0]
    if kind == "trades":
        return [
            Item("trade", canonical(trade["instrument_name"]), int(trade["trade_id"]))
            for trade in data
        ]
    symbol = canonical(data["instrument_name"])
    if kind == "quote":
        return [Item("ticker", symbol, int(data["best_bid_amount"]))]
    if kind == "book":
        if data["type"] == "snapshot":
            return [Item("book", symbol, int(data["change_id"]), None, True)]
        return [Item("book", symbol, int(data["change_id"]), int(data["prev_change_id"]))]
    return []


def _bybit_items(body: dict[str, Any]) -> list[Item]:
    topic: str = body["topic"]
    data = body["data"]
    if topic.startswith("publicTrade."):
        return [Item("trade", canonical(trade["s"]), int(trade["i"])) for trade in data]
    symbol = canonical(data["s"])
    u = int(data["u"])
    if topic.startswith("orderbook.1."):
        return [Item("ticker", symbol, u)]  # numbered: the best bid size is u
    if body["type"] == "snapshot":
        return [Item("book", symbol, u, None, True)]
    return [Item("book", symbol, u, u - 1)]  # Bybit deltas rise by exactly 1


def _natives(exchange: str, topics: frozenset[str]) -> dict[str, str]:
    """Canonical symbol -> native name, read from the adapter's topic names."""
    natives: dict[str, str] = {}
    for topic in topics:
        if exchange.startswith("binance"):
            native = topic.partition("@")[0].upper()
        elif exchange == "okx":
            native = topic.partition(":")[2]
        elif exchange == "deribit":
            native = topic.split(".")[1]
        else:
            native = topic.rpartition(".")[2]
        natives[canonical(native)] = native
    return natives


def soak_config(path: Path) -> tuple[Config, dict[str, Any]]:
    """Load ``path`` with the project's loader; return it and its raw tables for rewriting.

    Raises:
        ConfigError: the file is not a valid configuration (as ``marketprism check``).
        SoakConfigError: a connection's exchange has no fake, or its symbols collide
            in canonical form.
    """
    config = load_config(path)
    if not config.connections:
        raise SoakConfigError(f"{path}: no [connections.NAME] table: nothing to soak")
    for spec in config.connections:
        if spec.exchange not in EXCHANGES:
            raise SoakConfigError(
                f"{path}: connection {spec.name!r} uses exchange {spec.exchange!r}, which has "
                f"no rule-enforcing fake; the soak runs {', '.join(EXCHANGES)}"
            )
        seen: dict[str, str] = {}
        for symbol in spec.symbols:
            other = seen.setdefault(canonical(symbol), symbol)
            if other != symbol:
                raise SoakConfigError(
                    f"{path}: connection {spec.name!r} lists {other!r} and {symbol!r}, which "
                    "the soak cannot tell apart; keep one of them"
                )
    with path.open("rb") as file:
        raw = tomllib.load(file)
    return config, raw


def _handler(exchange: str, natives: dict[str, str]) -> Handler:
    names = sorted(natives.values())
    if exchange == "binance":
        return FakeBinance(symbols=names, numbered=True)
    if exchange == "binance_usdm":
        return FakeBinanceUsdm(symbols=names, numbered=True)
    if exchange == "okx":
        return FakeOkx(instruments=names, numbered=True)
    if exchange == "deribit":
        return FakeDeribit(instruments=names, numbered=True)
    if exchange == "bybit":
        return FakeBybit(spot_symbols=names, numbered=True)
    return FakeBybit(linear_symbols=names, numbered=True)


@contextlib.asynccontextmanager
async def open_venues(
    config: Config,
    raw: dict[str, Any],
    *,
    transport: Literal["memory", "tcp"],
    interval: float,
    source: str,
) -> AsyncIterator[tuple[list[Venue], Config]]:
    """Start one fake per connection; yield ``(venues, soak config)``.

    The soak config is ``raw`` with each connection's ``url`` pointed at its fake,
    ``book`` added to its channels and ``book_sync = false``, built by the project's
    ``config_from_dict``.

    Cancellation: the fakes are closed on the way out.
    """
    async with contextlib.AsyncExitStack() as stack:
        venues: list[Venue] = []
        tables: dict[str, Any] = dict(raw.get("connections", {}))
        for spec in config.connections:
            channels = list(spec.channels)
            if "book" not in channels:
                channels.append("book")
            table = dict(tables[spec.name])
            table["channels"] = channels
            # The soak's ledger checks delivery of what each venue wrote, message by
            # message: the book stream is delivered as it comes (local books, which
            # re-chain and resync, are tested in tests/exchanges/test_books_end_to_end.py).
            table["book_sync"] = False
            adapter = ADAPTERS[spec.exchange](
                msgspec.structs.replace(spec, channels=tuple(channels)), pacer=None
            )
            topics = frozenset(adapter.topics())
            natives = _natives(spec.exchange, topics)
            handler = _handler(spec.exchange, natives)
            fake = await stack.enter_async_context(
                open_fake_exchange(
                    name=spec.name,
                    transport=transport,
                    interval=interval,
                    handler=handler,
                    max_connects=_MAX_CONNECTS[spec.exchange],
                )
            )
            _, _, _, resource = split_ws_url(adapter.url)
            table["url"] = fake.url.removesuffix("/ws") + resource
            tables[spec.name] = table
            venues.append(Venue(spec.name, spec.exchange, fake, handler, topics, natives))
        rewritten = dict(raw)
        rewritten["connections"] = tables
        yield venues, config_from_dict(rewritten, source=f"{source} (pointed at the fakes)")
