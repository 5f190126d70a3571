"""What one connection is: the part of the configuration an actor needs.

The supervisor's configuration (``supervisor.config.ConnectionConfig``) extends this Struct
with the supervision keys (restart type, backoff), so the same decoded object can be handed
to the actor without copying. Build it only through ``msgspec.convert``/``decode``: a Struct's
``__init__`` does not check types or constraints.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final

import msgspec

from actors.redact import redacted_fields, redacted_repr

__all__ = [
    "DEFAULT_BOOK_DEPTH",
    "DEFAULT_BOOK_REFRESH",
    "DEFAULT_BUFFER",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_STALE_AFTER",
    "ConnectionSpec",
    "Overflow",
    "TlsSettings",
]

#: Seconds without any frame before a session counts as stale. 30 s matches OKX's own
#: idle limit (https://www.okx.com/docs-v5/en/#overview-websocket-connect) and is longer
#: than Binance's 20 s ping interval, so a healthy quiet feed is never declared stale.
DEFAULT_STALE_AFTER: Final = 30.0
#: Seconds for TCP connect + TLS + WebSocket upgrade together.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Batches (everything decoded from one frame) queued for the consumer per connection.
DEFAULT_BUFFER: Final = 1024
#: Estimated bytes of decoded messages queued for the consumer per connection. The largest
#: batch a default connection can produce, one 4 MiB book frame, decodes to about 33 MiB
#: (audit M8), so 64 MiB still holds one of those with room to spare, while three stalled
#: connections stay under 200 MiB. Ordinary traffic reaches ``buffer`` first (1024
#: one-trade batches are about 0.5 MiB); only deep books and big raw frames reach this.
DEFAULT_BUFFER_BYTES: Final = 64 * 1024 * 1024
#: Largest WebSocket message accepted; bigger ones close the session with 1009
#: (RFC 6455 section 7.4.1). Exchange depth snapshots stay well under 4 MiB.
DEFAULT_MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024


class Overflow(enum.Enum):
    """What the actor does when the consumer's queue for this connection is full."""

    #: Wait for the consumer. Back-pressure reaches the socket; nothing is lost.
    BLOCK = "block"
    #: Throw away the oldest queued batch to make room, and count it.
    DROP_OLDEST = "drop_oldest"
    #: Throw away the batch that does not fit, and count it.
    DROP_NEWEST = "drop_newest"


class Transport(enum.Enum):
    """Which WebSocket implementation a connection's sessions use."""

    #: Our own: one read per wake-up, every frame in it parsed at once
    #: (:mod:`actors.net.fast_websocket`).
    FAST = "fast"
    #: trio-websocket with wsproto, a reader task and a message channel: the reference
    #: the fast one is tested against.
    REFERENCE = "reference"


class TlsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[connections.NAME.tls]`` table.

    Attributes:
        ca_file: a PEM file of extra trusted root certificates, trusted on top of
            certifi's (e.g. a company's TLS-inspecting proxy). Paths are relative to
            the working directory.
        cert_file: a PEM client certificate (its key may be in the same file).
        key_file: the client certificate's private key, if not in ``cert_file``.
        verify: check the server's certificate and host name (default true). ``false``
            is logged as a warning at every connect.
        server_hostname: the name sent as SNI and checked against the certificate,
            instead of the URL's host (for endpoints given by IP address).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_hostname: str | None = None


#: Levels per side of a REST book snapshot (Binance ``limit``, OKX ``sz`` up to 400):
#: Binance's own example of a local book uses 1000 (weight 50 on spot, 20 on USD-M).
DEFAULT_BOOK_DEPTH: Final = 1000
#: Seconds between REST snapshots that refresh a valid book (Binance): levels that left
#: the snapshot's depth and came back without an update are otherwise never corrected.
#: One weight-50 call per symbol per 10 minutes.
DEFAULT_BOOK_REFRESH: Final = 600.0

#: A configured ``proxy``: one URL or ``"none"``, or a chain of URLs in order.
ProxySetting = str | tuple[str, ...]


PositiveSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400.0)]
#: ``stale_after`` and ``silent_after``: at least a second, so that a liveness probe
#: every half of it stays within every venue's incoming-message limit (Binance spot: 5
#: frames per second, pings and pongs included).
LivenessSeconds = Annotated[float, msgspec.Meta(ge=1, le=86_400.0)]


class ConnectionSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One configured exchange connection.

    Attributes:
        name: unique connection name, the ``NAME`` of ``[connections.NAME]``.
        exchange: which adapter speaks to it (``raw``, later ``binance``, ``okx``, ...).
        url: WebSocket URL; ``None`` means the adapter's default endpoint.
        channels: normalized channel names (``trades``, ``ticker``, ...).
        symbols: normalized symbols (``BTC-USDT``) or the exchange's native names.
        subscribe: frames the ``raw`` adapter sends verbatim after every connect.
        raw: native topics an exchange adapter subscribes in addition to
            ``channels`` x ``symbols`` (e.g. ``btcusdt@aggTrade``); their frames are
            delivered as ``raw`` messages unless the adapter recognises them.
        heartbeat: seconds for the exchange's heartbeat, where it has one we set
            (OKX: send ``ping`` after this long without a frame, must be < 30; Deribit:
            ``public/set_heartbeat`` interval, >= 10); ``None`` for the adapter's
            default.
        stale_after: seconds without a frame, while waiting on the socket, that end the
            session as stale. After half of it without a frame the connection is
            probed (a WebSocket ping, or the exchange's own request), so a quiet but
            healthy feed is never taken for a dead one.
        silent_after: seconds a confirmed subscription may deliver no data before it is
            marked ``silent`` and requested again (every subscription silent: the
            session ends); ``None`` (the default) never, since quiet symbols are
            legitimate.
        connect_timeout: seconds for TCP connect, TLS and the WebSocket upgrade.
        overflow: what to do when the consumer falls ``buffer`` batches behind.
        buffer: batches queued for the consumer before ``overflow`` applies.
        buffer_bytes: estimated bytes of decoded messages queued for the consumer before
            ``overflow`` applies (whichever of ``buffer`` and this is reached first); a
            single batch larger than this is still queued when nothing else is.
        max_message_size: largest accepted WebSocket message in bytes.
        proxy: how to reach the endpoint: a proxy URL (``socks5://user:pass@host:1080``,
            ``http://host:3128``; schemes http, https, socks4, socks4a, socks5, socks5h),
            a list of them (a chain, traversed in order), or ``"none"`` for a direct
            connection whatever the environment says; ``None`` (unset) falls back to
            ``[defaults] proxy``, then to the environment (see
            :func:`actors.net.route.resolve_route`). In a loaded ``Config`` this is the
            connection's own value: ``[defaults] proxy`` is kept apart, in
            ``Config.default_proxy``, so the route can say where it came from.
        tls: TLS settings for ``wss://`` (:class:`TlsSettings`).
        allow_plaintext: allow ``ws://`` to a host off this machine (refused otherwise;
            every such connect is logged as a warning).
        book_sync: keep a local book per symbol of the ``book`` channel and deliver it
            as a checked chain (docs/books.md); ``False`` delivers the venue's book
            stream as it comes, unchecked.
        book_depth: levels per side of a REST book snapshot, where the venue's stream
            has none (Binance: 1..5000 spot, 5..1000 USD-M; OKX: up to 400).
        book_refresh: seconds between REST snapshots that refresh a valid book
            (Binance); 0 never.
        book_top: deliver a ``BookTop`` of this many levels per side instead of the
            book's snapshots and deltas (``None``: deltas).
        book_interval: with ``book_top``, at most one ``BookTop`` per symbol per this
            many seconds (the newest; a slow consumer never gets a queue of old tops).
        transport: the WebSocket implementation: ``fast`` (our own frame parser, one
            read per wake-up, :mod:`actors.net.fast_websocket`) or ``reference``
            (trio-websocket and wsproto, as before issue 16).

    Its ``repr`` (and so ``str``, and rich's pretty printing) shows every value
    redacted (:func:`actors.redact.redacted_repr`): a URL's token, a login frame's keys.
    The fields themselves hold the values as configured.
    """

    name: str
    exchange: str
    url: str | None = None
    channels: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()
    heartbeat: Annotated[float, msgspec.Meta(gt=0, le=3600.0)] | None = None
    stale_after: LivenessSeconds = DEFAULT_STALE_AFTER
    silent_after: LivenessSeconds | None = None
    connect_timeout: PositiveSeconds = DEFAULT_CONNECT_TIMEOUT
    overflow: Overflow = Overflow.BLOCK
    buffer: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = DEFAULT_BUFFER
    buffer_bytes: Annotated[int, msgspec.Meta(ge=1 << 16, le=1 << 40)] = DEFAULT_BUFFER_BYTES
    max_message_size: Annotated[int, msgspec.Meta(ge=1024, le=1 << 30)] = DEFAULT_MAX_MESSAGE_SIZE
    proxy: ProxySetting | None = None
    tls: TlsSettings = TlsSettings()
    allow_plaintext: bool = False
    book_sync: bool = True
    book_depth: Annotated[int, msgspec.Meta(ge=1, le=5000)] = DEFAULT_BOOK_DEPTH
    book_refresh: Annotated[float, msgspec.Meta(ge=0, le=86_400.0)] = DEFAULT_BOOK_REFRESH
    book_top: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    book_interval: Annotated[float, msgspec.Meta(ge=0, le=3600.0)] = 0.0
    transport: Transport = Transport.FAST

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return redacted_fields(self)
