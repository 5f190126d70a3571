"""REST calls to the venues: pooled, routed like the WebSockets, within each venue's limits.

See :mod:`actors.net.rest._client` for the theory of operation, :mod:`._limits` for the
venues' budgets with sources, :mod:`._transport` for how httpx opens connections through
a route, and :mod:`._errors` for the venues' error envelopes.
"""

from actors.net.rest._client import DEFAULT_RETRY as DEFAULT_RETRY
from actors.net.rest._client import DEFAULT_TIMEOUTS as DEFAULT_TIMEOUTS
from actors.net.rest._client import RestClient as RestClient
from actors.net.rest._client import RestClients as RestClients
from actors.net.rest._client import RestTimeouts as RestTimeouts
from actors.net.rest._client import RetryPolicy as RetryPolicy
from actors.net.rest._client import WireTimes as WireTimes
from actors.net.rest._errors import RateLimited as RateLimited
from actors.net.rest._errors import RestError as RestError
from actors.net.rest._limits import VENUES as VENUES
from actors.net.rest._limits import HostLimiter as HostLimiter
from actors.net.rest._limits import VenueLimits as VenueLimits
from actors.net.rest._limits import WeightWindow as WeightWindow
from actors.net.rest._limits import retry_after as retry_after
from actors.net.rest._transport import OpenStream as OpenStream
from actors.net.rest._transport import open_direct_stream as open_direct_stream

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "VENUES",
    "HostLimiter",
    "OpenStream",
    "RateLimited",
    "RestClient",
    "RestClients",
    "RestError",
    "RestTimeouts",
    "RetryPolicy",
    "VenueLimits",
    "WeightWindow",
    "WireTimes",
    "open_direct_stream",
    "retry_after",
]
