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
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from actors import ConnectionActor, ConnectionSpec, ConsumerQueue, RegistryClient
from actors.exchanges import ADAPTERS, ExchangeProtocol, Pacer
from actors.net import Connector, split_ws_url
from supervisor.config import Config, ConnectionConfig

__all__ = ["build_actors"]


def build_actors(
    config: Config, *, registry: RegistryClient, connector: Connector
) -> list[ConnectionActor]:
    """One actor per connection of ``config``, in file order.

    Args:
        config: the validated configuration.
        registry: where every actor reports state changes and traffic.
        connector: opens the stream under each WebSocket; shared by all actors.

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
        for spec in config.connections
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
