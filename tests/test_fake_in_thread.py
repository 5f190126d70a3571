"""``fake_exchange_in_thread``: the same fakes, for tests whose loop is asyncio's."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import websockets

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
