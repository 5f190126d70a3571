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
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

from actors import ConfigError, ConnectionActor, ConnectionSpec, ConsumerQueue, RegistryClient
from actors.exchanges import ADAPTERS, ExchangeProtocol, Pacer
from actors.net import Connector, split_ws_url
from actors.net.route import Route, resolve_route
from supervisor.config import Config, ConnectionConfig

__all__ = ["build_actors", "resolve_routes"]


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


def build_actors(
    config: Config, *, registry: RegistryClient, connectors: Sequence[Connector]
) -> list[ConnectionActor]:
    """One actor per connection of ``config``, in file order.

    Args:
        config: the validated configuration.
        registry: where every actor reports state changes and traffic.
        connectors: opens the stream under each WebSocket, index for index with
            ``config.connections`` (the same object may serve several).

    Returns:
        The actors, index for index with ``config.connections``. Nothing is started.

    Raises:
        ValueError: a connection's URL is not a WebSocket URL (``load_config`` rejects
            such configs, so only hand-built ones get here).
    """
    settings = config.supervisor
    # One request pacer per (exchange, host) for exchanges whose limits are per IP.
    pacers: dict[tuple[str, str], Pacer] = {}
    return [
        ConnectionActor(
            spec,
            new_adapter=_adapter_factory(spec, pacers),
            queue=ConsumerQueue(spec.overflow, spec.buffer, max_bytes=spec.buffer_bytes),
            registry=registry,
            connector=connector,
            close_timeout=settings.shutdown_timeout,
        )
        for spec, connector in zip(config.connections, connectors, strict=True)
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
