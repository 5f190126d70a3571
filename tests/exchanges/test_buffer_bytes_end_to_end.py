"""A stalled consumer against deep OKX books: ``buffer_bytes`` bounds what a connection
holds (audit M8), end to end through ``open_supervisor`` on MockClock.

The fake is an OKX server side for one ``books`` topic that acks the subscription and then
pushes ``COUNT`` update frames of ``LEVELS`` levels per side, one every 0.1 s (at 0.1, 0.2,
..., 10.0 s), then only answers ``ping``. Each frame decodes to one batch of
``BATCH`` estimated bytes; the connection's budget holds four of them. The consumer reads
nothing until 11 s (the stall is the scenario), then drains.
"""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from trio_websocket import ConnectionClosed

from actors.exchanges.messages import BookDelta
from exchanges.helpers import Dialer, okx_config
from supervisor import open_supervisor
from supervisor.testing import SessionIO, open_fake_exchange

LEVELS = 400
COUNT = 100
FIRST_SEQ = 1000
#: batch_bytes of one decoded frame: batch, one BookDelta, 2 * LEVELS levels.
BATCH = 64 + 8 + 250 + 272 * 2 * LEVELS
BUDGET = 1 << 20  # four batches (871,688 bytes) fit, five do not
STALL_UNTIL = 11.0


class DeepBooks:
    """OKX's server side for one ``books`` subscription, with deep updates."""

    def __init__(self) -> None:
        self.sent = 0

    def frame(self, n: int) -> str:
        level = ["30246.1", "0.00107854", "0", "2"]
        entry = {
            "asks": [level] * LEVELS,
            "bids": [level] * LEVELS,
            "ts": str(1_700_000_000_000 + n),
            "seqId": FIRST_SEQ + n + 1,
            "prevSeqId": FIRST_SEQ + n,
        }
        arg = {"channel": "books", "instId": "BTC-USDT"}
        return json.dumps({"arg": arg, "action": "update", "data": [entry]})

    async def __call__(self, io: SessionIO) -> None:
        request: Any = json.loads(await io.receive())
        for arg in request["args"]:
            await io.send(json.dumps({"event": "subscribe", "arg": arg}), data=False)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pongs, io)
                due = trio.current_time()
                for n in range(COUNT):
                    due = await io.wait_interval(due)
                    await io.send(self.frame(n))
                    self.sent += 1
        except ConnectionClosed:
            pass  # the client left

    async def _pongs(self, io: SessionIO) -> None:
        while True:
            if await io.receive() == "ping":
                await io.send("pong", data=False)


def sequences(batches: list[tuple[Any, ...]]) -> list[int]:
    out: list[int] = []
    for batch in batches:
        for delta in batch:
            assert isinstance(delta, BookDelta) and delta.sequence is not None
            assert len(delta.bids) == len(delta.asks) == LEVELS
            out.append(delta.sequence)
    return out


async def test_drop_oldest_holds_at_most_the_budget_and_counts_the_drops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    books = DeepBooks()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=0.1, handler=books
    ) as fake:
        config = okx_config(
            channels=["book"],
            symbols=["BTC-USDT"],
            overflow="drop_oldest",
            buffer_bytes=BUDGET,
            book_sync=False,  # updates only: this is about the queue
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await trio.sleep_until(STALL_UNTIL)  # the consumer reads nothing till then
                (stalled,) = (await sup.stats()).connections
                got: list[tuple[Any, ...]] = []
                async for batch in sup.batches():
                    got.append(batch)
                    if len(got) == 4:
                        break
                assert trio.current_time() == STALL_UNTIL
                # The queue is empty now and no frame has come since the consumer drained
                # it: stats read the queue's level, not the last traffic report.
                (drained,) = (await sup.stats()).connections
    assert books.sent == COUNT
    assert (stalled.frames, stalled.messages) == (COUNT + 1, COUNT)  # the ack, the books
    # Four fill the budget (nothing waits outside the queue); every other one was
    # dropped, oldest first, and counted.
    assert stalled.queued_bytes == 4 * BATCH <= BUDGET
    assert stalled.dropped == COUNT - 4
    assert (drained.queued_bytes, drained.frames) == (0, stalled.frames)
    assert sequences(got) == [1097, 1098, 1099, 1100]


async def test_block_holds_at_most_the_budget_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    books = DeepBooks()
    async with open_fake_exchange(
        name="okx", transport="memory", interval=0.1, handler=books
    ) as fake:
        config = okx_config(
            channels=["book"],
            symbols=["BTC-USDT"],
            overflow="block",
            buffer_bytes=BUDGET,
            book_sync=False,
        )
        with trio.fail_after(60):
            async with open_supervisor(config, connector=Dialer(fake)) as sup:
                await trio.sleep_until(STALL_UNTIL)  # the consumer reads nothing till then
                (stalled,) = (await sup.stats()).connections
                got: list[tuple[Any, ...]] = []
                async for batch in sup.batches():
                    got.append(batch)
                    # Frames that waited in the socket arrive in one read, as one batch.
                    if sum(map(len, got)) == COUNT:
                        break
                assert trio.current_time() == STALL_UNTIL
    # Four batches fill the queue; the session has waited to put the fifth since 0.5 s
    # (the rest wait in the socket and the fake's send). Stats show the last traffic
    # report, due at 0.25 s (a quarter second after the ack): the ack and the books of
    # 0.1 and 0.2 s; the report due at 0.55 s waits for the pump, which waits for room.
    assert (stalled.frames, stalled.messages, stalled.idle_for) == (3, 2, 10.8)
    assert stalled.queued_bytes == 4 * BATCH <= BUDGET
    assert (stalled.dropped, stalled.restarts) == (0, 0)
    assert sequences(got) == list(range(FIRST_SEQ + 1, FIRST_SEQ + COUNT + 1))
