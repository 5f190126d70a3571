"""A bot author's test: only the public API and the installed pytest plugin's fixtures
(``fake_okx``, ``fake_binance``, ``supervisor_for``), as docs/testing.md shows it."""

import trio
import trio.testing

from supervisor import Trade
from supervisor.testing import FakeExchange
from supervisor.testing.pytest_plugin import SupervisorFor

CONFIG = {
    "connections": {
        "okx": {"exchange": "okx", "channels": ["trades"], "symbols": ["BTC-USDT"]},
    }
}


async def test_my_bot_survives_a_reconnect_and_gets_its_subscriptions_back(
    autojump_clock: trio.testing.MockClock, fake_okx: FakeExchange, supervisor_for: SupervisorFor
) -> None:
    async with supervisor_for(CONFIG, fake_okx) as sup:
        trades = sup.messages()
        first = await anext(trades)
        await fake_okx.close(1001, "restarting")  # the venue drops us
        second = await anext(trades)  # ... and after the backoff we are back
        stats = await sup.stats()
    assert isinstance(first, Trade) and isinstance(second, Trade)
    assert [s.subscribed for s in fake_okx.sessions] == [True, True]
    assert stats.connections[0].subscriptions == {"trades:BTC-USDT": "live"}
    assert stats.connections[0].connects == 2


async def test_a_symbol_added_at_run_time_keeps_flowing_after_a_reconnect(
    autojump_clock: trio.testing.MockClock,
    fake_binance: FakeExchange,
    supervisor_for: SupervisorFor,
) -> None:
    config = {
        "connections": {
            "spot": {"exchange": "binance", "channels": ["trades"], "symbols": ["BTC-USDT"]}
        }
    }
    async with supervisor_for(config, fake_binance) as sup:
        await sup.subscribe("spot", symbols=["ETH-USDT"])
        await fake_binance.close(1001, "restarting")
        seen: set[str] = set()
        async for msg in sup.messages():
            if trio.current_time() > 2.0:  # after the reconnect
                assert isinstance(msg, Trade)
                seen.add(msg.symbol)
            if seen == {"BTC-USDT", "ETH-USDT"}:
                break
    assert len(fake_binance.sessions) == 2
    assert '"ethusdt@trade"' in fake_binance.sessions[1].received[0]
