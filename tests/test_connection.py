"""ConnectionActor: one adapter factory, and successors that subscribe what the connection
subscribes now (run-time changes included)."""

from __future__ import annotations

import math

import msgspec
import trio
import trio.testing
from handover_venue import Venue

from actors import (
    ConnectionActor,
    ConnectionSpec,
    ConsumerQueue,
    Overflow,
    RegistryActor,
    RegistryClient,
)
from actors.exchanges import BinanceProtocol, ExchangeProtocol
from actors.exchanges.messages import Subscribe
from actors.registry import Registered, RegistryEvent
from supervisor.testing import FakeBinance, open_fake_exchange


async def test_a_successor_subscribes_what_the_connection_subscribes_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    binance = FakeBinance()
    built: list[ExchangeProtocol] = []

    def new_adapter(spec: ConnectionSpec) -> ExchangeProtocol:
        proto = BinanceProtocol(spec)
        built.append(proto)
        return proto

    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=binance
    ) as fake:
        spec = msgspec.convert(
            {
                "name": "b",
                "exchange": "binance",
                "url": fake.url.replace("/ws", "/stream"),
                "channels": ["trades"],
                "symbols": ["BTC-USDT"],
            },
            ConnectionSpec,
        )
        send, receive = trio.open_memory_channel[RegistryEvent](math.inf)
        actor = ConnectionActor(
            spec,
            new_adapter=new_adapter,
            queue=ConsumerQueue(Overflow.DROP_OLDEST, 1000),
            registry=(actor_registry := RegistryClient(send)),
            connector=fake.connect,
            close_timeout=1.0,
        )
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                registry = RegistryActor(connect_attempts=10, connect_interval=1.0)
                nursery.start_soon(registry.run, receive)
                await actor_registry.report(
                    Registered(connection="b", exchange="binance", url=actor.url)
                )
                await nursery.start(actor.run_session)
                assert [proto.spec for proto in built] == [spec]
                actor.protocol.send(Subscribe(symbols=("ETH-USDT",)), trio.current_time())
                await trio.sleep_until(trio.current_time() + 2.0)  # the next frames wake it
                assert fake.sessions[0].received[-1] == (
                    '{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":2}'
                )
                await binance.server_shutdown()
                await trio.sleep_until(trio.current_time() + 15.0)
                assert len(built) == 2
                assert built[1].spec.symbols == ("BTC-USDT", "ETH-USDT")
                assert fake.sessions[1].received[0] == (
                    '{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}'
                )
                assert actor.protocol is built[1]
                assert set(actor.protocol.subscriptions.values()) == {"live"}
                nursery.cancel_scope.cancel(reason="test over")


async def test_run_session_has_started_once_a_successor_took_over_before_the_first_was_live(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The first session's SUBSCRIBE is never acked; the exchange announces a disconnect;
    # the successor is acked at once and takes over: that is when the connection is live.
    venue = Venue()
    venue.held[0] = []
    async with open_fake_exchange(
        name="binance", transport="memory", interval=1.0, handler=venue
    ) as fake:
        spec = msgspec.convert(
            {
                "name": "b",
                "exchange": "binance",
                "url": fake.url.replace("/ws", "/stream"),
                "channels": ["trades"],
                "symbols": ["BTC-USDT"],
            },
            ConnectionSpec,
        )
        send, receive = trio.open_memory_channel[RegistryEvent](math.inf)
        actor = ConnectionActor(
            spec,
            new_adapter=BinanceProtocol,
            queue=ConsumerQueue(Overflow.DROP_OLDEST, 1000),
            registry=(actor_registry := RegistryClient(send)),
            connector=fake.connect,
            close_timeout=1.0,
        )
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                registry = RegistryActor(connect_attempts=10, connect_interval=1.0)
                nursery.start_soon(registry.run, receive)
                await actor_registry.report(
                    Registered(connection="b", exchange="binance", url=actor.url)
                )

                async def announce() -> None:
                    await fake.wait_until(lambda f: f.sessions and f.sessions[0].sent > 0)
                    await trio.sleep_until(2.5)
                    await venue.announce(0)

                nursery.start_soon(announce)
                await nursery.start(actor.run_session)
                # connected and acked at 2.5; its first trade (3.5) continues what the
                # first session delivered at 3: the switch, and the start
                assert trio.current_time() == 3.5
                assert actor.live_since == 3.5
                assert [s.open for s in fake.sessions] == [False, True]
                nursery.cancel_scope.cancel(reason="test over")
