"""``fake_exchange_in_thread``: the same fakes, for tests whose loop is asyncio's."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import websockets

from supervisor import config_from_dict
from supervisor.aio import open_supervisor
from supervisor.testing import FakeOkx
from supervisor.testing.threaded import fake_exchange_in_thread


def test_an_asyncio_client_talks_to_a_threaded_fake_and_sees_its_faults() -> None:
    before = threading.active_count()
    with fake_exchange_in_thread("okx", FakeOkx(), interval=0.05) as venue:
        assert venue.url.startswith("ws://127.0.0.1:")

        async def client() -> tuple[dict[str, object], dict[str, object], int | None]:
            async with websockets.connect(venue.url) as ws:
                args = [{"channel": "trades", "instId": "BTC-USDT"}]
                await ws.send(json.dumps({"op": "subscribe", "args": args}))
                ack = json.loads(await ws.recv())
                data = json.loads(await ws.recv())
                # The fault runs in the fake's thread; this loop must keep running to
                # see the close, so the blocking call goes to a worker thread.
                await asyncio.to_thread(venue.call, venue.fake.close, 4000, "maintenance")
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await ws.recv()
                return ack, data, ws.close_code

        ack, data, code = asyncio.run(client())
        sessions = venue.read(lambda fake: [(s.index, s.subscribed) for s in fake.sessions])
    assert (ack["event"], ack["arg"]) == ("subscribe", {"channel": "trades", "instId": "BTC-USDT"})
    assert data["arg"] == {"channel": "trades", "instId": "BTC-USDT"}
    assert code == 4000
    assert sessions == [(0, True)]
    assert threading.active_count() == before  # the fake's thread has ended


def test_a_fake_that_cannot_start_says_so() -> None:
    with (
        pytest.raises(RuntimeError, match="the fake exchange 'x' did not start") as failed,
        fake_exchange_in_thread("x", interval=-1.0),
    ):
        pass  # pragma: no cover - never entered
    assert failed.value.__cause__ is not None


def test_the_asyncio_front_door_reconnects_to_a_threaded_fake() -> None:
    # docs/testing.md's asyncio example, as a test.
    with fake_exchange_in_thread("okx", FakeOkx(), interval=0.05) as venue:
        table = {
            "exchange": "okx",
            "url": venue.url,
            "channels": ["trades"],
            "symbols": ["BTC-USDT"],
            "backoff": {"initial": 0.05, "jitter": "none"},
        }
        config = config_from_dict({"connections": {"okx": table}})

        async def bot() -> int:
            async with open_supervisor(config) as sup:
                await anext(sup.messages())
                await asyncio.to_thread(venue.call, venue.fake.close, 1001, "restarting")
                async for _ in sup.messages():  # until a message of the new session
                    stats = (await sup.stats()).connections[0]
                    if stats.connects == 2:
                        return stats.disconnects
            raise AssertionError("the stream ended")

        assert asyncio.run(bot()) == 1
        assert venue.read(lambda fake: [s.subscribed for s in fake.sessions]) == [True, True]
