"""pytest fixtures for testing your own bot against MarketPrism's fake exchanges.

Installed with the package (entry point ``pytest11``), so under pytest-trio a test just
asks for them::

    async def test_my_bot_gets_its_trades_back_after_a_reconnect(
        autojump_clock, fake_okx, supervisor_for
    ):
        config = {"connections": {"okx": {"exchange": "okx", "channels": ["trades"],
                                           "symbols": ["BTC-USDT"]}}}
        async with supervisor_for(config, fake_okx) as sup:
            first = await anext(sup.messages())
            await fake_okx.close(1001, "restart")          # the venue drops us
            again = await anext(sup.messages())            # ... and we are back
        assert fake_okx.sessions[1].subscribed

Fixtures:

``fake_binance``, ``fake_okx``, ``fake_deribit``, ``fake_bybit``
    A :class:`~supervisor.testing.FakeExchange` on the in-memory transport that speaks
    the venue's protocol and enforces its rules (its rules object, to inject book gaps
    or disconnect notices, is ``fake.handler``), sending one data frame per subscribed
    topic per second. Request pytest-trio's ``autojump_clock`` in the test as well, and
    every wait runs on virtual time: a test of a 30 s backoff takes milliseconds.
``supervisor_for``
    ``supervisor_for(config, *fakes, **options)``: an async context manager that runs
    :func:`supervisor.open_supervisor` for ``config`` (a :class:`~supervisor.Config` or
    a dict shaped like the TOML file) connected to ``fakes`` instead of the network.
    A connection that sets no ``url`` is pointed at the fake of its exchange (by the
    fake's name: ``binance``, ``okx``, ...; or the only fake given); since the fake is
    not on the venue's domain, such a connection has no REST API unless its
    ``[rest] base_url`` says so. ``options`` go to ``open_supervisor`` (``rng=``,
    ``wall_clock=``).

asyncio bots: the fakes also serve loopback TCP (``open_fake_exchange(transport="tcp")``,
``fake.url`` is then ``ws://127.0.0.1:PORT/ws``); see docs/testing.md for running them
beside an asyncio test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import pytest

from supervisor.api import open_supervisor
from supervisor.config import Config, config_from_dict
from supervisor.testing.fake import FakeExchange, open_fake_exchange, route
from supervisor.testing.fakes.binance import FakeBinance
from supervisor.testing.fakes.bybit import FakeBybit
from supervisor.testing.fakes.deribit import FakeDeribit
from supervisor.testing.fakes.okx import FakeOkx
from supervisor.tree import Supervisor

__all__ = [
    "SupervisorFor",
    "fake_binance",
    "fake_bybit",
    "fake_deribit",
    "fake_okx",
    "supervisor_for",
]

#: ``supervisor_for(config, *fakes, **options)``.
SupervisorFor = Callable[..., AbstractAsyncContextManager[Supervisor]]

#: Exchanges whose WebSocket path selects the combined-stream mode.
_COMBINED_PATH = {"binance": "/stream", "binance_usdm": "/stream"}


@contextlib.asynccontextmanager
async def _fake(name: str, rules: Any) -> AsyncIterator[FakeExchange]:
    async with open_fake_exchange(
        name=name, transport="memory", interval=1.0, handler=rules
    ) as fake:
        yield fake


@pytest.fixture
async def fake_binance() -> AsyncIterator[FakeExchange]:
    """A fake Binance spot venue (combined streams), in memory."""
    async with _fake("binance", FakeBinance()) as fake:
        yield fake


@pytest.fixture
async def fake_okx() -> AsyncIterator[FakeExchange]:
    """A fake OKX venue (public WebSocket), in memory."""
    async with _fake("okx", FakeOkx()) as fake:
        yield fake


@pytest.fixture
async def fake_deribit() -> AsyncIterator[FakeExchange]:
    """A fake Deribit venue (JSON-RPC over WebSocket), in memory."""
    async with _fake("deribit", FakeDeribit()) as fake:
        yield fake


@pytest.fixture
async def fake_bybit() -> AsyncIterator[FakeExchange]:
    """A fake Bybit v5 public spot venue, in memory."""
    async with _fake("bybit", FakeBybit()) as fake:
        yield fake


@pytest.fixture
def supervisor_for() -> SupervisorFor:
    """``supervisor_for(config, *fakes, **options)`` (see the module docstring)."""
    return _supervisor_for


@contextlib.asynccontextmanager
async def _supervisor_for(
    config: Config | Mapping[str, Any], *fakes: FakeExchange, **options: Any
) -> AsyncIterator[Supervisor]:
    if not fakes:
        raise TypeError("supervisor_for(config, *fakes) needs at least one fake exchange")
    if isinstance(config, Config):
        config = _pointed(config, fakes)
    else:
        config = config_from_dict(_pointed_dict(config, fakes), source="supervisor_for")
    async with open_supervisor(config, connector=route(*fakes), **options) as sup:
        yield sup


def _fake_for(exchange: str, fakes: tuple[FakeExchange, ...]) -> FakeExchange:
    named = [fake for fake in fakes if fake.name == exchange.split("_")[0]]
    if len(named) == 1:
        return named[0]
    if len(fakes) == 1:
        return fakes[0]
    names = ", ".join(fake.name for fake in fakes)
    raise ValueError(
        f"supervisor_for: no fake for exchange {exchange!r} among {names}; name the "
        f"fake after the exchange or set the connection's url to one fake's url"
    )


def _url(exchange: str, fake: FakeExchange) -> str:
    path = _COMBINED_PATH.get(exchange)
    return fake.url if path is None else fake.url.removesuffix("/ws") + path


def _pointed_dict(data: Mapping[str, Any], fakes: tuple[FakeExchange, ...]) -> dict[str, Any]:
    """``data`` with each connection that sets no url pointed at its fake."""
    out = dict(data)
    defaults = data.get("defaults", {})
    connections = data.get("connections")
    if isinstance(connections, Mapping) and isinstance(defaults, Mapping):
        pointed = {}
        for name, table in connections.items():
            if isinstance(table, Mapping) and "url" not in table and "url" not in defaults:
                exchange = table.get("exchange", defaults.get("exchange"))
                if isinstance(exchange, str):
                    table = {**table, "url": _url(exchange, _fake_for(exchange, fakes))}
            pointed[name] = table
        out["connections"] = pointed
    return out


def _pointed(config: Config, fakes: tuple[FakeExchange, ...]) -> Config:
    """``config`` with each connection that sets no url pointed at its fake."""
    connections = tuple(
        spec
        if spec.url is not None
        else msgspec.structs.replace(spec, url=_url(spec.exchange, _fake_for(spec.exchange, fakes)))
        for spec in config.connections
    )
    return msgspec.structs.replace(config, connections=connections)
