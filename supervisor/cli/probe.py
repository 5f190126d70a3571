"""``marketprism probe NAME|URL``: walk one connection's path and say which stage breaks.

Theory of operation
-------------------
A probe opens one connection the way the supervisor does and times each stage of it, in
order, stopping at the first that fails:

1. **route**: :func:`~actors.net.route.resolve_route`, the one place a route is decided
   (the connection's ``proxy``, ``[defaults] proxy``, then the environment; a bare URL
   has only the environment), with its reason;
2. **dns**: a lookup of the host TCP goes to first (the first hop, or the endpoint when
   direct). It is a separate lookup made for the report: the connect that follows asks
   the resolver again, as the supervisor's connect does, so the TCP stage includes that
   second answer (usually from a cache). Who resolves the endpoint's name is said too:
   the proxy for ``http``/``https``/``socks4a``/``socks5h`` hops, this machine for
   ``socks4``/``socks5``;
3. **tcp**, each **proxy** hop's handshake and **tls**: the supervisor's own connector
   (:class:`~actors.net.TcpTlsConnector`, so the same route, TLS context, warnings and
   errors) with a trace (:mod:`actors.net.route`, "Tracing") that marks where each step
   ends; TLS shows the protocol, cipher and certificate (subject, names, issuer,
   expiry), or why the certificate was refused;
4. **upgrade**: the WebSocket handshake (:func:`~actors.net.websocket.open_websocket`);
5. **subscription** and **data**: the connection's adapter, driven sans-IO the way
   :mod:`actors.session` drives it (``start_session``, write ``frames_to_send``, read
   ``events``, ``receive_frame``, ``tick`` by ``deadline``): the first ``Subscribed``
   event, then the first normalized message (its type and symbol);
6. **rest**: one call of the venue's server-time endpoint with the project's REST client
   (:class:`~actors.net.rest.RestClient`) through the route resolved for the REST origin,
   with the connection's TLS settings; the venue's weight headers are read off the wire
   and the clock offset is the server's time minus the midpoint of our wall clock
   around the call.

A stage that does not apply is *skipped* with the reason (no adapter known for a bare
URL's host; no REST endpoint for the ``raw`` adapter). ``--timeout`` bounds the DNS
lookup, the connect (TCP, every proxy hop and TLS together, as ``connect_timeout`` does
for the supervisor), the upgrade, the acknowledgement, the first data message and the
REST call, each on its own.

Secrets: everything the probe composes passes through
:func:`actors.redact.redact_text` (URLs through :func:`actors.redact.redact_url`), except
the route's hops, which :class:`~actors.net.route.ProxyURL` has masked already and which
keep the proxy's user name (which account a proxy refused is what an operator needs;
the password is never shown). Our own errors (``actors._errors``, the route's
``ValueError``) are shown as raised: they were built with :mod:`actors.redact`, and
free-text redaction would mask words that merely look like keys in them.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, final
from urllib.parse import urlsplit

import msgspec
import trio

from actors import ConnectionSpec, SupervisorError
from actors.exchanges import ADAPTERS, ExchangeProtocol
from actors.exchanges.messages import (
    Batch,
    HeartbeatMissed,
    Message,
    RawMessage,
    Subscribed,
    SubscriptionFailed,
)
from actors.net import TcpTlsConnector, TlsSettings, build_ssl_context, split_ws_url
from actors.net.rest import RestClient, RestTimeouts, RetryPolicy, WireTimes
from actors.net.route import ProxySetting, ProxyURL, Route, resolve_route
from actors.net.tls import DEFAULT_TLS
from actors.net.tunnel import open_stream
from actors.net.websocket import ClosedNormally, WebSocket, open_websocket
from actors.redact import redact_text, redact_url
from supervisor.config import load_config
from supervisor.wiring import rest_base_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "PROBE_SUBSCRIPTIONS",
    "ProbeReport",
    "ProbeTarget",
    "Stage",
    "probe",
    "render_json",
    "render_stage",
]

#: Seconds each stage may take (the connect as a whole), as ``connect_timeout``'s default.
DEFAULT_TIMEOUT: Final = 10.0

#: What a bare URL on a venue's default host subscribes to: one liquid instrument's
#: trades, so the first data message comes within seconds.
PROBE_SUBSCRIPTIONS: Final[Mapping[str, tuple[str, str]]] = {
    "binance": ("trades", "BTC-USDT"),
    "binance_usdm": ("trades", "BTC-USDT-PERP"),
    "okx": ("trades", "BTC-USDT"),
    "deribit": ("trades", "BTC-USD-PERP"),
    "bybit": ("trades", "BTC-USDT"),
    "bybit_linear": ("trades", "BTC-USDT-PERP"),
}


#: Response headers that report a venue's rate-limit usage (Binance ``X-MBX-USED-WEIGHT-*``
#: and ``X-MBX-ORDER-COUNT-*``, Bybit ``X-Bapi-Limit*``, the generic ``X-RateLimit-*``
#: and ``Retry-After``), matched by prefix, case-insensitively.
_WEIGHT_HEADERS: Final = ("x-mbx-used-weight", "x-mbx-order-count", "x-bapi-limit", "x-ratelimit")
#: Bytes of a REST answer kept to read its status line and headers.
_HEAD_BYTES: Final = 16384
#: Seconds the WebSocket's closing handshake may take once the probe is done with it.
_CLOSE_TIMEOUT: Final = 2.0

Status = Literal["passed", "failed", "skipped"]


@final
@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a probe.

    Attributes:
        name: ``route``, ``dns``, ``tcp``, ``proxy``, ``tls``, ``upgrade``,
            ``subscription``, ``data`` or ``rest``.
        status: ``passed``, ``failed`` or ``skipped``.
        seconds: how long it took (``None`` when skipped).
        detail: what it found, or why it failed or was skipped (no secrets).
        info: the same as fields (JSON values), e.g. TLS ``protocol``, REST ``headers``.
    """

    name: str
    status: Status
    seconds: float | None
    detail: str
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        """The name as printed: ``proxy 1/2`` for a hop."""
        if self.name == "proxy":
            return f"proxy {self.info['index']}/{self.info['hops']}"
        return self.name


@final
@dataclasses.dataclass(frozen=True)
class ProbeReport:
    """What a probe found: every stage run, in order, and whether all passed.

    Attributes:
        target: the URL probed (redacted).
        connection: the connection's name, or ``None`` for a bare URL.
        exchange: the adapter used for the subscription, or ``None`` if none.
        stages: the stages, in order; a failed one is the last.
    """

    target: str
    connection: str | None
    exchange: str | None
    stages: tuple[Stage, ...]

    @property
    def ok(self) -> bool:
        """True when no stage failed."""
        return all(stage.status != "failed" for stage in self.stages)


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeTarget:
    """What to probe: a configured connection, or a bare URL.

    Attributes:
        url: the WebSocket URL (a connection's: the one its adapter opens).
        connection: the connection's name, or ``None`` for a bare URL.
        spec: the connection for the adapter, or ``None`` when no adapter is known.
        proxy: the connection's ``proxy`` (``None``: not set).
        defaults_proxy: ``[defaults] proxy`` (``None``: not set).
        tls: the connection's TLS settings.
        rest_origin: the REST origin to call: ``--rest-url``, else the connection's
            (``rest.base_url`` or the venue's default, as the supervisor decides it:
            :func:`supervisor.wiring.rest_base_url`); ``None``: no REST API.
        rest_venue: whose rate-limit table the REST client applies.
        adapter_note: why there is no adapter, when ``spec`` is ``None``.
    """

    url: str
    connection: str | None = None
    spec: ConnectionSpec | None = None
    proxy: ProxySetting | None = None
    defaults_proxy: ProxySetting | None = None
    tls: TlsSettings = DEFAULT_TLS
    rest_origin: str | None = None
    rest_venue: str | None = None
    adapter_note: str = ""

    @classmethod
    def for_url(cls, url: str, *, rest_origin: str | None = None) -> ProbeTarget:
        """A bare ``ws://``/``wss://`` URL; its adapter if the host is a venue's default.

        Raises:
            ValueError: not a WebSocket URL (the message shows it redacted).
        """
        _, host, _, _ = split_ws_url(url)
        exchange = venue_of(url)
        if exchange is None:
            note = (
                f"no adapter is known for host {host!r} (not a venue's default endpoint); "
                "probe a configured connection NAME to subscribe"
            )
            return cls(url=url, rest_origin=rest_origin, adapter_note=note)
        channel, symbol = PROBE_SUBSCRIPTIONS[exchange]
        spec = msgspec.convert(
            {
                "name": "probe",
                "exchange": exchange,
                "url": url,
                "channels": [channel],
                "symbols": [symbol],
            },
            type=ConnectionSpec,
        )
        adapter = ADAPTERS[exchange]
        return cls(
            url=url,
            spec=spec,
            rest_origin=rest_origin or adapter.rest_url,
            rest_venue=adapter.rest_venue,
        )


def venue_of(url: str) -> str | None:
    """The adapter whose default endpoint has ``url``'s host (and path, to tell Bybit's
    spot from its linear endpoint), or ``None``."""
    parts = urlsplit(url)
    same_host = [
        (name, urlsplit(cls.default_url))
        for name, cls in ADAPTERS.items()
        if cls.default_url is not None and urlsplit(cls.default_url).hostname == parts.hostname
    ]
    for name, default in same_host:
        if default.path.rstrip("/") == parts.path.rstrip("/"):
            return name
    return same_host[0][0] if len(same_host) == 1 else None


class _StageFailed(Exception):
    """The stage in progress failed for the reason given.

    Args:
        reason: why, for the report.
        redacted: the reason is the text of one of our own errors (``actors._errors``,
            the route's ``ValueError``), whose secrets were masked with
            :mod:`actors.redact` where it was raised; it is shown as it is, since
            :func:`~actors.redact.redact_text` would also mask words that only look
            like keys ("rejected the credentials: HTTP 401").
    """

    def __init__(self, reason: str, *, redacted: bool = False) -> None:
        super().__init__(reason)
        self.redacted = redacted


@final
class _Stages:
    """Records stages as they begin and end; owns the per-stage deadline.

    Args:
        timeout: seconds a stage (the connect as a whole) may take.
        on_stage: called with each stage once it ends.
    """

    def __init__(self, timeout: float, on_stage: Callable[[Stage], None]) -> None:
        self.timeout = timeout
        self.scope = trio.CancelScope()
        self.stages: list[Stage] = []
        self.hops: tuple[ProxyURL, ...] = ()
        self._on_stage = on_stage
        self._current: tuple[str, float, dict[str, Any]] | None = None

    def begin(self, name: str, *, fresh_deadline: bool = True, **info: Any) -> None:
        """Start stage ``name``; with ``fresh_deadline`` it gets ``timeout`` seconds."""
        now = trio.current_time()
        self._current = (name, now, info)
        if fresh_deadline:
            self.arm()

    def arm(self) -> None:
        """Give what comes next ``timeout`` seconds from now."""
        self.scope.deadline = trio.current_time() + self.timeout

    def passed(self, detail: str, **info: Any) -> None:
        """The stage in progress passed."""
        self._end("passed", detail, info)

    def failed(self, reason: str, *, stage: str = "connect", redacted: bool = False) -> None:
        """The stage in progress (else a new one named ``stage``) failed; ``redacted``:
        see :class:`_StageFailed`."""
        if self._current is None:
            self.begin(stage, fresh_deadline=False)
        self._end("failed", reason, {}, redacted=redacted)

    def skipped(self, name: str, why: str) -> None:
        """Stage ``name`` does not apply."""
        self._record(Stage(name, "skipped", None, self.shown(why)))

    def _end(
        self, status: Status, detail: str, info: dict[str, Any], *, redacted: bool = False
    ) -> None:
        assert self._current is not None
        name, started, begun = self._current
        self._current = None
        seconds = trio.current_time() - started
        shown = detail if redacted else self.shown(detail)
        self._record(Stage(name, status, seconds, shown, self.shown_info(begun | info)))

    def _record(self, stage: Stage) -> None:
        self.stages.append(stage)
        self._on_stage(stage)

    def shown(self, text: str) -> str:
        """``text`` without secrets; the route's masked hops are kept as they are."""
        kept = {f"<hop:{i}>": hop.masked for i, hop in enumerate(self.hops)}
        for token, masked in kept.items():
            text = text.replace(masked, token)
        text = redact_text(text)
        for token, masked in kept.items():
            text = text.replace(token, masked)
        return text

    def shown_info(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.shown(value)
        if isinstance(value, dict):
            return {k: self.shown_info(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.shown_info(v) for v in value]
        return value

    # -- the route's trace (actors.net.route, "Tracing") -----------------------------

    def trace(self, event: str, info: Mapping[str, object]) -> None:
        """Turn the connect's trace into stages: TCP, each hop, TLS."""
        if event == "tcp.started":
            self.begin("tcp", fresh_deadline=False, host=info["host"], port=info["port"])
        elif event == "tcp.complete":
            self.passed(f"connected to {info['peer']}", peer=info["peer"])
            if self.hops:
                self._begin_hop(1)
        elif event == "proxy.complete":
            index = int(str(info["index"]))
            hop = self.hops[index - 1]
            onward = "the endpoint" if index == len(self.hops) else f"hop {index + 1}"
            self.passed(f"{hop.masked}: {_handshake_kind(hop)} done, tunnel open to {onward}")
            if index < len(self.hops):
                self._begin_hop(index + 1)
        elif event == "tls.started":
            self.begin("tls", fresh_deadline=False, server_hostname=info["server_hostname"])
        elif event == "tls.complete":
            stream = info["stream"]
            assert isinstance(stream, trio.SSLStream)
            detail, fields = _describe_tls(stream)
            self.passed(detail, **fields)

    def _begin_hop(self, index: int) -> None:
        hop = self.hops[index - 1]
        self.begin(
            "proxy",
            fresh_deadline=False,
            index=index,
            hops=len(self.hops),
            hop=hop.masked,
            handshake=_handshake_kind(hop),
        )


def _handshake_kind(hop: ProxyURL) -> str:
    auth = " with credentials" if hop.username is not None else ""
    if hop.scheme.startswith("http"):
        tls = " over TLS" if hop.scheme == "https" else ""
        return f"HTTP CONNECT{tls}{auth}"
    return f"{'SOCKS5' if hop.scheme.startswith('socks5') else 'SOCKS4'} handshake{auth}"


def _describe_tls(stream: trio.SSLStream[Any]) -> tuple[str, dict[str, Any]]:
    """``TLSv1.3 TLS_AES_256_GCM_SHA384; subject CN=...; ...`` and the same as fields."""
    version = stream.version() or "?"
    cipher = (stream.cipher() or ("?",))[0]
    fields: dict[str, Any] = {"protocol": version, "cipher": cipher}
    cert = stream.getpeercert()
    if not cert:
        # verify = false: the certificate was not checked, so Python does not decode it.
        fields["verified"] = False
        return f"{version} {cipher}; certificate NOT verified (tls.verify = false)", fields
    subject = _names(cert.get("subject", ()))
    issuer = _names(cert.get("issuer", ()))
    san = [f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ())]
    not_after = str(cert.get("notAfter", "?"))
    fields |= {
        "verified": True,
        "subject": subject,
        "san": san,
        "issuer": issuer,
        "not_after": not_after,
    }
    names = f"; names {', '.join(san)}" if san else ""
    detail = (
        f"{version} {cipher}; subject {subject or '(empty)'}{names}; issuer {issuer}; "
        f"expires {not_after}"
    )
    return detail, fields


def _names(rdns: Any) -> str:
    """An X.509 name from ``getpeercert()`` as ``CN=a, O=b`` (CN and O only)."""
    short = {"commonName": "CN", "organizationName": "O"}
    parts = [f"{short[key]}={value}" for rdn in rdns for key, value in rdn if key in short]
    return ", ".join(parts)


@final
class _Head(trio.abc.Stream):
    """Passes a REST connection through, keeping the first bytes of what it receives
    (the answer's status line and headers, which the client does not return)."""

    def __init__(self, stream: trio.abc.Stream, head: bytearray) -> None:
        self._stream = stream
        self._head = head

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        room = _HEAD_BYTES - len(self._head)
        if room > 0:
            self._head += data[:room]
        return data

    async def aclose(self) -> None:
        await self._stream.aclose()


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The status line and headers of the first HTTP answer in ``head``."""
    text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status, *lines = text.split("\r\n")
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return status, headers


async def probe(
    target: ProbeTarget,
    *,
    environ: Mapping[str, str],
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (each stage's, not the call's)
    on_stage: Callable[[Stage], None] = lambda stage: None,
) -> ProbeReport:
    """Probe ``target`` stage by stage (see the module docstring).

    Args:
        target: the connection or URL.
        environ: where environment proxies come from (``os.environ``).
        timeout: seconds each stage may take (the connect, TCP to TLS, as a whole).
        on_stage: called with each stage as it ends (to print it at once).

    Returns:
        The report; it ends at the first failed stage.

    Cancellation: the socket and the REST client are closed on the way out.
    """
    stages = _Stages(timeout, on_stage)
    with stages.scope:
        try:
            await _run(target, stages, environ)
        except _StageFailed as failure:
            stages.failed(str(failure), redacted=failure.redacted)
    if stages.scope.cancelled_caught:
        stages.failed(f"timed out after {timeout:g} s (--timeout)")
    exchange = target.spec.exchange if target.spec is not None else None
    return ProbeReport(
        target=redact_url(target.url),
        connection=target.connection,
        exchange=exchange,
        stages=tuple(stages.stages),
    )


async def _run(target: ProbeTarget, stages: _Stages, environ: Mapping[str, str]) -> None:
    url = target.url
    _, host, port, _ = split_ws_url(url)

    # 1. route
    stages.begin("route")
    try:
        route = resolve_route(
            connection_proxy=target.proxy,
            defaults_proxy=target.defaults_proxy,
            environ=environ,
            target_url=url,
            connection=target.connection,
        )
    except ValueError as exc:
        raise _StageFailed(str(exc), redacted=True) from None
    stages.hops = route.hops
    stages.passed(route.describe(), hops=list(route.masked_hops), reason=route.reason)

    # 2. dns
    await _dns(route, host, port, stages)

    # 3-5. connect (tcp, proxies, tls), upgrade, subscription, data
    await _websocket(target, route, stages)

    # 6. rest
    await _rest(target, stages, environ)


async def _dns(route: Route, host: str, port: int, stages: _Stages) -> None:
    first, first_port = (route.hops[0].host, route.hops[0].port) if route.hops else (host, port)
    stages.begin("dns", host=first)
    try:
        infos = await trio.socket.getaddrinfo(first, first_port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _StageFailed(f"cannot resolve {first}: {exc.strerror or exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    detail = f"{first} -> {', '.join(addresses)}"
    resolved_by = "this machine"
    if route.hops:
        last = route.hops[-1]
        if last.scheme in ("socks4", "socks5"):
            detail += f"; {host} is resolved by this machine in hop {len(route.hops)}'s handshake"
        else:
            resolved_by = "the proxy"
            detail += f"; {host} is resolved by the proxy"
    stages.passed(detail, addresses=addresses, endpoint_resolved_by=resolved_by)


async def _websocket(target: ProbeTarget, route: Route, stages: _Stages) -> None:
    spec = target.spec
    connector = TcpTlsConnector(
        route=route, tls=target.tls, name=target.connection or "probe", trace=stages.trace
    )

    async def connect(url: str) -> trio.abc.Stream:
        stream = await connector(url)
        stages.begin("upgrade")
        return stream

    # Without an adapter, a connection's default limit.
    limits = spec or msgspec.convert({"name": "probe", "exchange": "raw"}, type=ConnectionSpec)
    stages.arm()  # the connect: TCP, every hop and TLS, together
    # A failure is raised after the nursery, so that it is not wrapped in a group.
    failure: _StageFailed | None = None
    async with trio.open_nursery() as nursery:
        try:
            async with open_websocket(
                nursery,
                target.url,
                connector=connect,
                connect_timeout=math.inf,  # the stages' own deadlines apply
                max_message_size=limits.max_message_size,
                close_timeout=_CLOSE_TIMEOUT,
                transport=limits.transport.value,
            ) as ws:
                stages.passed("HTTP 101 Switching Protocols", status=101)
                if spec is None:
                    why = f"{target.adapter_note}; stopped after the upgrade"
                    stages.skipped("subscription", why)
                    stages.skipped("data", why)
                else:
                    await _subscribe(ws, ADAPTERS[spec.exchange](spec, pacer=None), stages)
        except ClosedNormally:
            failure = _StageFailed("the exchange closed the connection (code 1000)")
        except SupervisorError as exc:
            failure = _StageFailed(str(exc), redacted=True)
        except _StageFailed as exc:
            failure = exc
    if failure is not None:
        raise failure


async def _subscribe(ws: WebSocket, proto: ExchangeProtocol, stages: _Stages) -> None:
    """Subscribe through the adapter; pass at the first ack, then at the first message."""
    proto.start_session(trio.current_time())
    stages.begin("subscription")
    acked = False
    batch: Batch = ()
    try:
        while True:
            for frame in proto.frames_to_send():
                await ws.send(frame)
            for event in proto.events():
                if isinstance(event, Subscribed) and not acked:
                    acked = True
                    states = proto.subscriptions.values()
                    live = sum(state == "live" for state in states)
                    stages.passed(
                        f"acknowledged: {', '.join(event.topics)} ({live} of {len(states)} "
                        "subscription(s) confirmed so far)",
                        topics=list(event.topics),
                    )
                    stages.begin("data")
                elif isinstance(event, SubscriptionFailed) and not acked:
                    raise _StageFailed(
                        f"the exchange refused {event.topic!r}: {event.code} {event.message}"
                    )
                elif isinstance(event, HeartbeatMissed):
                    raise _StageFailed(f"heartbeat missed: {event.detail}")
            # A frame's events (its ack) are routed before its messages are looked at.
            if batch and acked:
                _first_message(batch[0], stages)
                return
            data: str | bytes | None = None
            with trio.move_on_at(proto.deadline()):
                data = await ws.receive()
            now = trio.current_time()
            if data is None:
                proto.tick(now)
                continue
            batch = proto.receive_frame(data, now, time.time())
    finally:
        proto.end_session()


def _first_message(message: Message, stages: _Stages) -> None:
    kind = type(message).__struct_config__.tag
    if isinstance(message, RawMessage):
        detail = f"{kind} (a JSON frame; the raw adapter knows no symbols)"
        stages.passed(detail, type=kind, symbol=None)
    else:
        symbol = getattr(message, "symbol", None)
        stages.passed(f"{kind} {symbol}", type=kind, symbol=symbol)


async def _rest(target: ProbeTarget, stages: _Stages, environ: Mapping[str, str]) -> None:
    """One call of the venue's server-time endpoint through the REST route."""
    spec = target.spec
    if spec is None:
        stages.skipped("rest", "no REST API is known for a URL without an adapter")
        return
    proto = ADAPTERS[spec.exchange](spec, pacer=None)
    call = proto.time_call()
    if call is None or target.rest_origin is None or target.rest_venue is None:
        where = (
            f"set [connections.{target.connection}.rest] base_url"
            if target.connection is not None
            else "pass --rest-url"
        )
        stages.skipped("rest", f"no REST API for this connection ({where})")
        return
    origin = target.rest_origin.rstrip("/")
    url = origin + call.path
    stages.begin("rest", url=url)
    try:
        route = resolve_route(
            connection_proxy=target.proxy,
            defaults_proxy=target.defaults_proxy,
            environ=environ,
            target_url=origin,
            connection=target.connection,
        )
    except ValueError as exc:
        raise _StageFailed(f"REST route: {exc}", redacted=True) from None
    stages.hops = tuple(dict.fromkeys(stages.hops + route.hops))
    head = bytearray()

    async def opener(
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float | None,  # noqa: ASYNC109 (the opener contract)
    ) -> trio.abc.Stream:
        stream = await open_stream(
            route,
            host,
            port,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            timeout=timeout,
            target=redact_url(origin),
        )
        return _Head(stream, head)

    limit = stages.timeout
    client = RestClient(
        target.rest_venue,
        origin,
        opener=opener,
        ssl_context=build_ssl_context(target.tls),
        timeouts=RestTimeouts(connect=limit, read=limit, total=limit),
        retry=RetryPolicy(attempts=1),
    )
    async with client:
        sent, sent_trio = time.time(), trio.current_time()
        wire = WireTimes()
        try:
            body = await client.get(call.path, params=dict(call.params), wire=wire)
        except SupervisorError as exc:
            raise _StageFailed(str(exc), redacted=True) from None
        received = time.time()
        if wire.sent is not None and wire.answered is not None:
            # The request and answer on the wire: the connect (TCP, proxies, TLS)
            # is not round trip (see actors.net.rest.WireTimes).
            sent, received = sent + wire.sent - sent_trio, sent + wire.answered - sent_trio
    server = proto.server_time(body)
    if server is None:
        raise _StageFailed(f"GET {url}: the answer carries no server time: {str(body)[:200]}")
    offset = server - (sent + received) / 2
    status, headers = _parse_head(bytes(head))
    weights = [(k, v) for k, v in headers if k.lower().startswith(_WEIGHT_HEADERS)]
    weights += [(k, v) for k, v in headers if k.lower() == "retry-after"]
    seen = "; ".join(f"{k}: {v}" for k, v in weights) or "no weight headers"
    _, _, answer = status.partition(" ")
    code, _, phrase = answer.partition(" ")
    stages.passed(
        f"GET {url} via {route.describe()}: HTTP {code}{' ' + phrase if phrase else ''}; "
        f"{seen}; "
        f"clock offset {offset:+.3f} s (round trip {received - sent:.3f} s)",
        route=list(route.masked_hops),
        status=int(code) if code.isdigit() else None,
        headers=dict(weights),
        clock_offset=round(offset, 6),
        round_trip=round(received - sent, 6),
    )


# -- output -------------------------------------------------------------------------

_WIDTH: Final = 12


def render_header(target: ProbeTarget) -> str:
    """The first line of a text report: what is probed, with which adapter."""
    shown = redact_url(target.url)
    adapter = target.spec.exchange if target.spec is not None else "no adapter"
    if target.connection is not None:
        return f"probe {target.connection} ({adapter}): {shown}"
    return f"probe {shown} ({adapter})"


def render_stage(stage: Stage) -> str:
    """One stage as a line of the text report."""
    status = {"passed": "ok", "failed": "FAILED", "skipped": "skipped"}[stage.status]
    seconds = "" if stage.seconds is None else f"{stage.seconds:.3f} s"
    return f"  {stage.label:<{_WIDTH}} {status:<7} {seconds:>9}  {stage.detail}"


def render_verdict(report: ProbeReport) -> str:
    """The last line of a text report."""
    if report.ok:
        return "OK: every stage passed"
    failed = report.stages[-1]
    return f"FAILED at {failed.label}: {failed.detail}"


def render_json(report: ProbeReport) -> str:
    """The report as one JSON object (see the README's ``marketprism probe``)."""
    return msgspec.json.encode(
        {
            "target": report.target,
            "connection": report.connection,
            "exchange": report.exchange,
            "ok": report.ok,
            "stages": [
                {
                    "name": stage.name,
                    "status": stage.status,
                    "ok": None if stage.status == "skipped" else stage.status == "passed",
                    "seconds": stage.seconds,
                    "detail": stage.detail,
                    "info": dict(stage.info),
                }
                for stage in report.stages
            ],
        }
    ).decode()


# -- the command ----------------------------------------------------------------------

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


def run_command(
    name_or_url: str,
    *,
    config: str | None,
    default_config: str,
    as_json: bool,
    timeout: float,
    rest_url: str | None,
    environ: Mapping[str, str],
) -> int:
    """``marketprism probe``: build the target, probe it, print, return the exit code.

    Args:
        name_or_url: a connection's name in the config, or a ``ws://``/``wss://`` URL.
        config: ``--config``, or ``None``.
        default_config: the config file read for a NAME without ``--config``.
        as_json: print one JSON object instead of text.
        timeout: ``--timeout``.
        rest_url: ``--rest-url``: the REST origin to call instead of the venue's.
        environ: the process environment (proxies).

    Returns:
        0 when every stage passed, 1 at a failed stage, 2 for a usage or config problem
        (one line on stderr each: ``FILE:LINE: key: problem``).
    """
    if rest_url is not None:
        problem = _check_origin(rest_url)
        if problem is not None:
            return _usage(f"--rest-url {redact_url(rest_url)!r} {problem}")
    if "://" in name_or_url:
        if config is not None:
            return _usage("--config applies to a connection NAME; a URL is probed on its own")
        try:
            target = ProbeTarget.for_url(name_or_url, rest_origin=rest_url)
        except ValueError as exc:
            return _usage(str(exc))
    else:
        loaded = _connection(name_or_url, config or default_config, rest_url)
        if isinstance(loaded, int):
            return loaded
        target = loaded
    if not as_json:
        print(render_header(target), flush=True)

    def show(stage: Stage) -> None:
        if not as_json:
            print(render_stage(stage), flush=True)

    report = trio.run(lambda: probe(target, environ=environ, timeout=timeout, on_stage=show))
    print(render_json(report) if as_json else render_verdict(report), flush=True)
    return EXIT_OK if report.ok else EXIT_FAILED


def _connection(name: str, path: str, rest_url: str | None) -> ProbeTarget | int:
    """The target for connection ``name`` of config file ``path``, or an exit code."""
    try:
        config = load_config(path)
    except SupervisorError as exc:
        for problem in getattr(exc, "problems", [str(exc)]):
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    spec = next((c for c in config.connections if c.name == name), None)
    if spec is None:
        names = ", ".join(c.name for c in config.connections) or "none"
        return _usage(f"{path}: no connection named {name!r} (connections: {names})")
    proto = ADAPTERS[spec.exchange](spec, pacer=None)
    return ProbeTarget(
        url=proto.url,
        connection=spec.name,
        spec=spec,
        proxy=spec.proxy,
        defaults_proxy=config.default_proxy,
        tls=spec.tls,
        rest_origin=rest_url or rest_base_url(spec),
        rest_venue=spec.rest.venue or ADAPTERS[spec.exchange].rest_venue,
    )


def _check_origin(url: str) -> str | None:
    """Why ``url`` is not a REST origin (``http(s)://host[:port]``), or ``None``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        return "has an invalid host or port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not a REST origin (expected http(s)://host[:port])"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return (
            "has a path or query (expected only http(s)://host[:port]; the probe adds "
            "the venue's time path)"
        )
    return None


def _usage(message: str) -> int:
    print(f"marketprism probe: {message}", file=sys.stderr)
    return EXIT_USAGE
