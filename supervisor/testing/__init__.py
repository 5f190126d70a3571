"""Test doubles for MarketPrism users and for MarketPrism's own tests.

:func:`open_fake_exchange` runs a real WebSocket server (loopback TCP or in-memory
streams) that streams numbered data frames and injects scripted faults: close frames,
resets, stalls, garbage and oversized frames, refused connections, a slow sender.
"""

from ._binance import FakeBinance as FakeBinance
from ._binance import FakeBinanceUsdm as FakeBinanceUsdm
from ._bybit import FakeBybit as FakeBybit
from ._deribit import FakeDeribit as FakeDeribit
from ._fake import FakeExchange as FakeExchange
from ._fake import FakeSession as FakeSession
from ._fake import SessionHandler as SessionHandler
from ._fake import SessionIO as SessionIO
from ._fake import open_fake_exchange as open_fake_exchange
from ._fake import route as route
from ._okx import FakeOkx as FakeOkx

__all__ = [
    "FakeBinance",
    "FakeBinanceUsdm",
    "FakeBybit",
    "FakeDeribit",
    "FakeExchange",
    "FakeOkx",
    "FakeSession",
    "SessionHandler",
    "SessionIO",
    "open_fake_exchange",
    "route",
]
