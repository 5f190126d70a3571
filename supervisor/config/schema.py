"""The configuration schema: frozen msgspec Structs and their defaults.

Schema (the names are part of the public contract)::

    [supervisor]               SupervisorSettings
    [defaults]                 any connection key; inherited by every connection
                               (``proxy`` is kept apart: ``Config.default_proxy``)
    [defaults.backoff]         merged key by key into each connection's backoff
    [defaults.tls]             merged key by key into each connection's tls (no ``verify``)
    [defaults.rest]            merged key by key into each connection's rest
    [connections.NAME]         ConnectionConfig (NAME becomes ``name``)
    [connections.NAME.backoff] BackoffPolicy
    [connections.NAME.tls]     TlsSettings
    [connections.NAME.rest]    RestSettings

Build these only through :mod:`supervisor.config.load` (or ``msgspec.convert``): a
Struct's ``__init__`` does not check types.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from actors import ConnectionSpec
from actors.net.rest import DEFAULT_RETRY, DEFAULT_TIMEOUTS
from actors.net.route import ProxySetting
from actors.redact import redacted_fields, redacted_repr
from supervisor.policy import BackoffPolicy, RestartType, Strategy

__all__ = [
    "DEFAULT_CONNECT_ATTEMPTS",
    "DEFAULT_CONNECT_INTERVAL",
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_WITHIN",
    "Config",
    "ConnectionConfig",
    "RestSettings",
    "SupervisorSettings",
]

#: Restarts allowed inside ``within`` seconds before the supervisor escalates. With the
#: default backoff (cap 30 s) a long outage retries about twice a minute and never
#: escalates; only a tight crash loop does.
DEFAULT_MAX_RESTARTS: Final = 10
#: The sliding window, in seconds, for ``max_restarts``.
DEFAULT_WITHIN: Final = 60.0
#: Seconds a clean shutdown may take (close frames sent and answered) before sockets
#: are closed hard.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
#: Connection attempts granted per host per ``connect_interval``. OKX allows 3 per
#: second per IP (https://www.okx.com/docs-v5/en/#overview-websocket-connect), the
#: strictest of the three exchanges; Binance allows 300 per 5 minutes.
DEFAULT_CONNECT_ATTEMPTS: Final = 3
DEFAULT_CONNECT_INTERVAL: Final = 1.0


class SupervisorSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[supervisor]`` table.

    Attributes:
        strategy: ``one_for_one``, ``one_for_all`` or ``rest_for_one``.
        max_restarts: restarts tolerated within ``within`` seconds, across all children.
        within: the restart-intensity window in seconds.
        shutdown_timeout: seconds a clean stop may take before sockets are closed hard.
        connect_attempts: connection attempts granted per host per ``connect_interval``.
        connect_interval: the pacing window for ``connect_attempts``, in seconds.
    """

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = DEFAULT_MAX_RESTARTS
    within: Annotated[float, msgspec.Meta(gt=0, le=86_400.0)] = DEFAULT_WITHIN
    shutdown_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600.0)] = DEFAULT_SHUTDOWN_TIMEOUT
    connect_attempts: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = DEFAULT_CONNECT_ATTEMPTS
    connect_interval: Annotated[float, msgspec.Meta(gt=0, le=86_400.0)] = DEFAULT_CONNECT_INTERVAL


#: Seconds a REST deadline may be (a day, like the connection's own deadlines).
_RestSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400.0)]


class RestSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[connections.NAME.rest]`` table: the connection's REST client.

    The client takes the connection's route (resolved again against ``base_url``, since
    ``NO_PROXY`` may treat the REST host differently) and its TLS settings (``ca_file``,
    the client certificate and ``verify``; ``server_hostname`` names the WebSocket host
    and is not applied to REST).

    Attributes:
        base_url: the venue's REST origin, ``http(s)://host[:port]`` without a path;
            ``None`` for the adapter's default (``https://api.binance.com``, ...).
            The ``raw`` adapter has none: without one its connection has no REST.
            Plaintext ``http://`` to a host off this machine needs the connection's
            ``allow_plaintext = true``.
        venue: whose REST limits apply (``binance``, ``binance_usdm``, ``okx``,
            ``deribit``, ``bybit``); ``None`` for the adapter's own. Only a ``raw``
            connection with a ``base_url`` must name one.
        connect_timeout: seconds to open a connection (route, TCP and TLS).
        read_timeout: seconds to wait for each read of an answer.
        total_timeout: seconds one attempt may take in all.
        attempts: attempts per request, the first included (``1``: never retry).
    """

    base_url: str | None = None
    venue: str | None = None
    connect_timeout: _RestSeconds = DEFAULT_TIMEOUTS.connect
    read_timeout: _RestSeconds = DEFAULT_TIMEOUTS.read
    total_timeout: _RestSeconds = DEFAULT_TIMEOUTS.total
    attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = DEFAULT_RETRY.attempts


class ConnectionConfig(ConnectionSpec, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[connections.NAME]`` table: a :class:`ConnectionSpec` plus supervision keys.

    Attributes:
        restart: ``permanent``, ``transient`` or ``temporary``.
        backoff: delays between restarts.
        rest: the connection's REST client (:class:`RestSettings`).
        give_up_after: seconds the connection may go without being live (since its
            last live session ended, or since it was started if it never was) before it
            stops for good; ``None`` (the default) never gives up. Checked only while
            it is not live: when an attempt ends (an attempt in progress is not cut
            short), and when a backoff wait would pass the deadline (it then ends at
            the deadline). At most a week.
    """

    restart: RestartType = RestartType.PERMANENT
    backoff: BackoffPolicy = BackoffPolicy()
    rest: RestSettings = RestSettings()
    # A week: an outage longer than that is an operator's decision, not a timeout's.
    give_up_after: Annotated[float, msgspec.Meta(gt=0, le=604_800.0)] | None = None


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A whole configuration.

    Attributes:
        supervisor: the ``[supervisor]`` table.
        connections: the connections in file order (order matters for ``rest_for_one``).
        default_proxy: ``[defaults] proxy``: the proxy (or chain, or ``"none"``) of every
            connection that sets none itself. Kept apart from the connections' own
            ``proxy`` so that the route says which of the two it came from.
        source: the file it was read from, or ``"<dict>"``/``"<string>"``.
        defaults: the checked ``[defaults]`` values but ``proxy`` (that is
            ``default_proxy``), kept so that a connection added at run time
            (``sup.add_connection``) inherits them like the file's connections.

    Its ``repr`` shows every value redacted, as :class:`ConnectionSpec`'s does (the
    ``default_proxy`` may hold a password).
    """

    supervisor: SupervisorSettings = SupervisorSettings()
    connections: tuple[ConnectionConfig, ...] = ()
    default_proxy: ProxySetting | None = None
    source: str = "<dict>"
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return redacted_fields(self)
