"""The things the supervisor keeps alive: connection actors, the registry, transports.

``actors`` never imports ``supervisor``; ``actors.exchanges`` never imports trio.
"""

from actors._errors import ConfigError as ConfigError
from actors._errors import ConnectError as ConnectError
from actors._errors import ConnectionLost as ConnectionLost
from actors._errors import FeedStale as FeedStale
from actors._errors import GaveUp as GaveUp
from actors._errors import HandshakeRejected as HandshakeRejected
from actors._errors import LocalProtocolError as LocalProtocolError
from actors._errors import ProtocolError as ProtocolError
from actors._errors import ProxyError as ProxyError
from actors._errors import ProxyRejected as ProxyRejected
from actors._errors import RateLimited as RateLimited
from actors._errors import RestartLimitExceeded as RestartLimitExceeded
from actors._errors import RestError as RestError
from actors._errors import ServerClosing as ServerClosing
from actors._errors import SubscriptionRefused as SubscriptionRefused
from actors._errors import SupervisorError as SupervisorError
from actors._errors import TransportError as TransportError
from actors._spec import ConnectionSpec as ConnectionSpec
from actors._spec import Overflow as Overflow
from actors._spec import Transport as Transport
from actors.connection import ConnectionActor as ConnectionActor
from actors.consumer_queue import ConsumerQueue as ConsumerQueue
from actors.consumer_queue import MergedReceiver as MergedReceiver
from actors.registry import ConnectionState as ConnectionState
from actors.registry import RegistryActor as RegistryActor
from actors.registry import RegistryClient as RegistryClient

__all__ = [
    "ConfigError",
    "ConnectError",
    "ConnectionActor",
    "ConnectionLost",
    "ConnectionSpec",
    "ConnectionState",
    "ConsumerQueue",
    "FeedStale",
    "GaveUp",
    "HandshakeRejected",
    "LocalProtocolError",
    "MergedReceiver",
    "Overflow",
    "ProtocolError",
    "ProxyError",
    "ProxyRejected",
    "RateLimited",
    "RegistryActor",
    "RegistryClient",
    "RestError",
    "RestartLimitExceeded",
    "ServerClosing",
    "SubscriptionRefused",
    "SupervisorError",
    "Transport",
    "TransportError",
]
