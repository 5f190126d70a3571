"""Config -> children: one ConnectionActor per configured connection, ready to run.

Theory of operation. This module is the supervisor's only exchange knowledge: for each
``[connections.NAME]`` it picks the adapter class from ``ADAPTERS``, builds the one
adapter factory the actor uses for its first adapter and for every make-before-break
successor, and gives the actor its own consumer queue (``ConsumerQueue``) with the configured
overflow policy. The control loop in :mod:`supervisor.tree` only sees the actors.

Shared request budgets: an exchange whose subscribe budget is counted per IP or account
rather than per connection declares ``shared_pacing``; every connection of that
exchange to the same host then shares one :class:`~actors.exchanges.Pacer`. The host
is read from the URL the adapter will actually open (``new_adapter(spec).url``), so an
adapter that picks its endpoint from its subscriptions (Binance USD-M's ``/market``
vs ``/public``) is paced with the connections that really share its host.

Routes: :func:`resolve_routes` decides each connection's route once, at start, with
:func:`actors.net.route.resolve_route` (the one place a route is decided) against the URL
the adapter opens; the supervisor builds each connection's connector from it.

REST: :func:`rest_clients` gives each connection with a REST API its client from the
supervisor's one :class:`~actors.net.rest.RestClients` holder, so the adapter's own calls
and a bot's ``sup.rest(name)`` share one client and one budget per (venue, host, route).
The REST route is resolved like the WebSocket's, against the REST URL (``NO_PROXY`` may
treat the two hosts differently), and the connection's TLS settings apply.
:func:`rest_base_url` decides whether a connection has a REST API at all: its
``rest.base_url``, else the adapter's default (``rest_url``) when the WebSocket host is
under the same domain, so a connection pointed at a testnet, a gateway or a local fake
never calls the production REST API by surprise.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import msgspec

from actors import ConfigError, ConnectionActor, ConnectionSpec, ConsumerQueue, RegistryClient
from actors.exchanges import ADAPTERS, ExchangeProtocol, Pacer
from actors.logs import log_fields
from actors.net import Connector, redact_url, split_ws_url
from actors.net.rest import RestClient, RestClients, RestTimeouts, RetryPolicy
from actors.net.route import Route, resolve_route
from actors.net.tls import build_ssl_context, proxy_ssl_context
from actors.net.tunnel import open_stream
from supervisor.config import Config, ConnectionConfig

__all__ = ["build_actors", "resolve_routes", "rest_base_url", "rest_clients"]

logger = logging.getLogger("marketprism.supervisor")


def resolve_routes(config: Config, environ: Mapping[str, str]) -> list[Route]:
    """Each connection's route, index for index with ``config.connections``.

    Args:
        config: the validated configuration (its proxies are valid).
        environ: where environment proxies come from (``os.environ``).

    Returns:
        One :class:`~actors.net.route.Route` per connection.

    Raises:
        ConfigError: an environment proxy variable holds an invalid URL (one problem
            naming the variable, password masked).
    """
    routes = []
    for spec in config.connections:
        try:
            routes.append(
                resolve_route(
                    connection_proxy=spec.proxy,
                    defaults_proxy=config.default_proxy,
                    environ=environ,
                    target_url=ADAPTERS[spec.exchange](spec).url,
                    connection=spec.name,
                )
            )
        except ValueError as exc:
            raise ConfigError([f"{config.source}: connections.{spec.name}: {exc}"]) from None
    return routes


def rest_base_url(spec: ConnectionConfig) -> str | None:
    """The REST origin of ``spec``'s connection, or ``None`` if it has no REST API.

    ``rest.base_url`` if set; else the adapter's ``rest_url`` when the WebSocket host
    is that REST host's domain or under it (``stream.binance.com`` and
    ``api.binance.com``: ``binance.com``); else none.
    """
    if spec.rest.base_url is not None:
        return spec.rest.base_url
    adapter = ADAPTERS[spec.exchange]
    default = adapter.rest_url
    if default is None:
        return None
    ws_host = split_ws_url(adapter(spec).url)[1].lower().rstrip(".")
    domain = ".".join((urlsplit(default).hostname or "").split(".")[-2:])
    return default if ws_host == domain or ws_host.endswith("." + domain) else None


def rest_clients(
    config: Config, holder: RestClients, environ: Mapping[str, str]
) -> list[RestClient | None]:
    """Each connection's REST client from ``holder`` (``None``: no REST API), index for
    index with ``config.connections``.

    Args:
        config: the validated configuration.
        holder: the supervisor's REST clients; it owns and closes what it makes.
        environ: where environment proxies come from (``os.environ``).

    Raises:
        ConfigError: an environment proxy variable holds an invalid URL (one problem
            naming the variable, password masked).
    """
    clients: list[RestClient | None] = []
    for spec in config.connections:
        base_url = rest_base_url(spec)
        venue = spec.rest.venue or ADAPTERS[spec.exchange].rest_venue
        if base_url is None or venue is None:
            clients.append(None)
            continue
        try:
            route = resolve_route(
                connection_proxy=spec.proxy,
                defaults_proxy=config.default_proxy,
                environ=environ,
                target_url=base_url,
                connection=spec.name,
            )
        except ValueError as exc:
            raise ConfigError([f"{config.source}: connections.{spec.name}: {exc}"]) from None
        # server_hostname names the WebSocket host; REST keeps its own host's name.
        tls = msgspec.structs.replace(spec.tls, server_hostname=None)
        if not tls.verify and base_url.startswith("https"):
            logger.warning(
                "%s: TLS certificate verification is OFF for REST %s (tls.verify = false); "
                "anyone on the route can read and change the answers",
                spec.name,
                redact_url(base_url),
                extra=log_fields(spec.name, spec.exchange, event="tls_unverified"),
            )
        clients.append(
            holder.client(
                venue,
                base_url,
                route=route.hops,
                opener=functools.partial(
                    open_stream, route, proxy_ssl_context=proxy_ssl_context(tls)
                ),
                tls=tls,
                ssl_context=build_ssl_context(tls),
                timeouts=RestTimeouts(
                    connect=spec.rest.connect_timeout,
                    read=spec.rest.read_timeout,
                    total=spec.rest.total_timeout,
                ),
                retry=msgspec.structs.replace(RetryPolicy(), attempts=spec.rest.attempts),
            )
        )
    return clients


def build_actors(
    config: Config,
    *,
    registry: RegistryClient,
    connectors: Sequence[Connector],
    rest: Sequence[RestClient | None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    pacers: dict[tuple[str, str], Pacer] | None = None,
) -> list[ConnectionActor]:
    """One actor per connection of ``config``, in file order.

    Args:
        config: the validated configuration.
        registry: where every actor reports state changes and traffic.
        connectors: opens the stream under each WebSocket, index for index with
            ``config.connections`` (the same object may serve several).
        rest: each connection's REST client (``None``: no REST API), index for index;
            default none.
        wall_clock: Unix time, for the clock offsets.
        pacers: the request pacers shared per (exchange, host), filled as needed; pass
            the same dict when building more actors later so that they share them too.
            Default: a fresh one.

    Returns:
        The actors, index for index with ``config.connections``. Nothing is started.

    Raises:
        ValueError: a connection's URL is not a WebSocket URL (``load_config`` rejects
            such configs, so only hand-built ones get here).
    """
    settings = config.supervisor
    # One request pacer per (exchange, host) for exchanges whose limits are per IP.
    if pacers is None:
        pacers = {}
    return [
        ConnectionActor(
            spec,
            new_adapter=_adapter_factory(spec, pacers),
            queue=ConsumerQueue(spec.overflow, spec.buffer, max_bytes=spec.buffer_bytes),
            registry=registry,
            connector=connector,
            close_timeout=settings.shutdown_timeout,
            rest=client,
            wall_clock=wall_clock,
        )
        for spec, connector, client in zip(
            config.connections,
            connectors,
            rest if rest is not None else [None] * len(config.connections),
            strict=True,
        )
    ]


def _adapter_factory(
    spec: ConnectionConfig, pacers: dict[tuple[str, str], Pacer]
) -> Callable[[ConnectionSpec], ExchangeProtocol]:
    """The adapter factory for ``spec``'s exchange, sharing a pacer from ``pacers`` if it
    needs one. It takes the spec to build for: the configured one at start, the current
    one (subscriptions changed at run time included) for a successor."""
    adapter = ADAPTERS[spec.exchange]
    if adapter.shared_pacing is None:
        return functools.partial(adapter, pacer=None)
    # Adapters are plain objects, cheap to build: ask a throwaway one which URL it
    # opens rather than guessing from spec.url and default_url.
    host = split_ws_url(adapter(spec).url)[1]
    pacer = pacers.setdefault((spec.exchange, host), Pacer(*adapter.shared_pacing))
    return functools.partial(adapter, pacer=pacer)
