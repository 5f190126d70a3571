"""MarketPrism Supervisor: keep exchange WebSocket connections alive, on Trio.

::

    from supervisor import load_config, open_supervisor

    async with open_supervisor(load_config("config.toml")) as sup:
        async for msg in sup.messages():
            ...
"""

from actors import ConfigError as ConfigError
from actors import ConnectError as ConnectError
from actors import ConnectionLost as ConnectionLost
from actors import FeedStale as FeedStale
from actors import GaveUp as GaveUp
from actors import HandshakeRejected as HandshakeRejected
from actors import LocalProtocolError as LocalProtocolError
from actors import ProtocolError as ProtocolError
from actors import ProxyError as ProxyError
from actors import ProxyRejected as ProxyRejected
from actors import RateLimited as RateLimited
from actors import RestartLimitExceeded as RestartLimitExceeded
from actors import RestError as RestError
from actors import ServerClosing as ServerClosing
from actors import SubscriptionRefused as SubscriptionRefused
from actors import SupervisorError as SupervisorError
from actors import TransportError as TransportError
from actors.books import BookStats as BookStats
from actors.books import BookView as BookView
from actors.exchanges import BookDelta as BookDelta
from actors.exchanges import BookInvalid as BookInvalid
from actors.exchanges import BookSnapshot as BookSnapshot
from actors.exchanges import BookTop as BookTop
from actors.exchanges import Message as Message
from actors.exchanges import RawMessage as RawMessage
from actors.exchanges import Ticker as Ticker
from actors.exchanges import Trade as Trade
from actors.histogram import Histogram as Histogram
from actors.registry import ConnectionStats as ConnectionStats
from actors.registry import RestStats as RestStats
from actors.registry import Stats as Stats
from actors.registry import SubscriptionStats as SubscriptionStats
from actors.registry import Totals as Totals
from supervisor._stream import MessageStream as MessageStream
from supervisor.api import open_supervisor as open_supervisor
from supervisor.config import Config as Config
from supervisor.config import ConnectionConfig as ConnectionConfig
from supervisor.config import SupervisorSettings as SupervisorSettings
from supervisor.config import config_from_dict as config_from_dict
from supervisor.config import load_config as load_config
from supervisor.config import loads_config as loads_config
from supervisor.policy import Backoff as Backoff
from supervisor.policy import BackoffPolicy as BackoffPolicy
from supervisor.policy import Jitter as Jitter
from supervisor.policy import RestartIntensity as RestartIntensity
from supervisor.policy import RestartType as RestartType
from supervisor.policy import Strategy as Strategy
from supervisor.status import serve_status as serve_status
from supervisor.tree import Supervisor as Supervisor

__all__ = [
    "Backoff",
    "BackoffPolicy",
    "BookDelta",
    "BookInvalid",
    "BookSnapshot",
    "BookStats",
    "BookTop",
    "BookView",
    "Config",
    "ConfigError",
    "ConnectError",
    "ConnectionConfig",
    "ConnectionLost",
    "ConnectionStats",
    "FeedStale",
    "GaveUp",
    "HandshakeRejected",
    "Histogram",
    "Jitter",
    "LocalProtocolError",
    "Message",
    "MessageStream",
    "ProtocolError",
    "ProxyError",
    "ProxyRejected",
    "RateLimited",
    "RawMessage",
    "RestError",
    "RestStats",
    "RestartIntensity",
    "RestartLimitExceeded",
    "RestartType",
    "ServerClosing",
    "Stats",
    "Strategy",
    "SubscriptionRefused",
    "SubscriptionStats",
    "Supervisor",
    "SupervisorError",
    "SupervisorSettings",
    "Ticker",
    "Totals",
    "Trade",
    "TransportError",
    "config_from_dict",
    "load_config",
    "loads_config",
    "open_supervisor",
    "serve_status",
]
