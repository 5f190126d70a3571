"""Test doubles for MarketPrism users and for MarketPrism's own tests.

:func:`open_fake_exchange` runs a real WebSocket server (loopback TCP or in-memory
streams) that streams numbered data frames and injects scripted faults: close frames,
resets, stalls, garbage and oversized frames, refused connections, a slow sender.

Layout: :mod:`supervisor.testing.fake` is the generic fault-injecting server;
:mod:`supervisor.testing.fakes` holds one rule-enforcing session handler per exchange
(``fakes.binance``, ``fakes.okx``, ``fakes.deribit``, ``fakes.bybit``), whose modules
also export each fake's cited constants (e.g. ``fakes.binance.DEFAULT_EPOCH_MS``);
:mod:`supervisor.testing.soak` drives those fakes through the supervisor with
randomized faults and accounts for every message (``python -m supervisor.testing.soak``).
:mod:`supervisor.testing.pytest_plugin` (installed as a pytest plugin) gives bot authors
the fixtures ``fake_binance``, ``fake_okx``, ``fake_deribit``, ``fake_bybit`` and
``supervisor_for``; :func:`fake_exchange_in_thread` runs a fake beside an asyncio test.
"""

from supervisor.testing.fake import FakeExchange as FakeExchange
from supervisor.testing.fake import FakeSession as FakeSession
from supervisor.testing.fake import SessionHandler as SessionHandler
from supervisor.testing.fake import SessionIO as SessionIO
from supervisor.testing.fake import open_fake_exchange as open_fake_exchange
from supervisor.testing.fake import route as route
from supervisor.testing.fakes.binance import FakeBinance as FakeBinance
from supervisor.testing.fakes.binance import FakeBinanceUsdm as FakeBinanceUsdm
from supervisor.testing.fakes.bybit import FakeBybit as FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit as FakeDeribit
from supervisor.testing.fakes.okx import FakeOkx as FakeOkx
from supervisor.testing.threaded import ThreadedFake as ThreadedFake
from supervisor.testing.threaded import fake_exchange_in_thread as fake_exchange_in_thread

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
    "ThreadedFake",
    "fake_exchange_in_thread",
    "open_fake_exchange",
    "route",
]
