"""actors.net.websocket on its own: close codes become ClosedNormally or ConnectionLost,
and the socket is closed on the way out (the supervisor tests cover rejection, hang-ups
and file descriptors end to end)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from helpers import SUBSCRIBE

from actors import ConnectionLost
from actors.net.websocket import ClosedNormally, open_websocket
from supervisor.testing import open_fake_exchange


@pytest.mark.parametrize("transport", ["fast", "reference"])
@pytest.mark.parametrize("code", [1000, 1001])
async def test_the_peers_close_code_decides_the_error(
    autojump_clock: trio.testing.MockClock, code: int, transport: str
) -> None:
    async with open_fake_exchange(name="a", transport="memory", interval=1.0) as fake:
        with trio.fail_after(10):
            async with (
                trio.open_nursery() as nursery,
                open_websocket(
                    nursery,
                    fake.url,
                    connector=fake.connect,
                    connect_timeout=5.0,
                    max_message_size=1 << 20,
                    close_timeout=1.0,
                    transport=transport,
                ) as ws,
            ):
                await ws.send(SUBSCRIBE)
                await ws.receive()
                assert ws.last_received == trio.current_time()
                await fake.close(code, "bye")
                if code == 1000:
                    with pytest.raises(ClosedNormally):
                        while True:
                            await ws.receive()
                else:
                    with pytest.raises(ConnectionLost) as caught:
                        while True:
                            await ws.receive()
                    assert (caught.value.code, caught.value.reason) == (1001, "bye")
                    assert str(caught.value).startswith(
                        "connection lost: close code 1001 (GOING_AWAY) 'bye' from "
                    )
        await fake.wait_until(lambda f: not f.sessions[0].open)
