"""RegistryActor bookkeeping and ConsumerQueue overflow policies, without sockets."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
import trio.testing

from actors import ConsumerQueue, MergedReceiver, Overflow, RegistryActor
from actors.consumer_queue import batch_bytes
from actors.exchanges import BookDelta, RawMessage
from actors.registry import (
    Connected,
    ConnectionState,
    Disconnected,
    PermitRequest,
    Registered,
    RegistryClient,
    RegistryEvent,
    Restarting,
    SnapshotRequest,
    StateChanged,
    Stats,
    Traffic,
)


def registry() -> RegistryActor:
    return RegistryActor(connect_attempts=3, connect_interval=1.0, rate_window=5.0)


def test_grants_at_most_attempts_per_interval_per_host() -> None:
    reg = registry()
    assert [reg.grant("h", 0.0) for _ in range(7)] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0]
    assert reg.grant("other", 0.0) == 0.0  # hosts are paced independently
    assert reg.grant("h", 10.0) == 10.0  # old grants have left the window
    assert reg.grant("h", 10.5) == 10.5
    assert reg.grant("h", 10.5) == 10.5
    assert reg.grant("h", 10.6) == 11.0


def traffic(at: float, messages: int, **extra: int | float) -> Traffic:
    fields: dict[str, int | float] = {
        "frames": messages,
        "bytes": 10 * messages,
        "dropped": 0,
        "malformed": 0,
        "gaps": 0,
        "last_frame_at": at,
    }
    fields.update(extra)
    return Traffic(connection="a", messages=messages, at=at, **fields)  # type: ignore[arg-type]


def test_snapshot_folds_events() -> None:
    reg = registry()
    reg.handle(Registered(connection="a", exchange="raw", url="ws://x/ws"), 0.0)
    reg.handle(StateChanged(connection="a", state=ConnectionState.LIVE, at=1.0), 1.0)
    reg.handle(Connected(connection="a", at=1.0), 1.0)
    reg.handle(traffic(1.0, 10), 1.0)
    reg.handle(traffic(2.0, 10, dropped=3, malformed=1), 2.0)
    reg.handle(Disconnected(connection="a", error="ConnectionLost: x", at=3.0), 3.0)
    reg.handle(Restarting(connection="a", delay=0.5, at=3.0), 3.0)
    (conn,) = reg.snapshot(4.0).connections
    assert (conn.name, conn.exchange, conn.url) == ("a", "raw", "ws://x/ws")
    assert (conn.state, conn.state_for) == ("backoff", 1.0)
    assert (conn.connects, conn.disconnects, conn.restarts) == (1, 1, 1)
    assert (conn.frames, conn.messages, conn.bytes) == (20, 20, 200)
    assert (conn.dropped, conn.malformed) == (3, 1)
    assert conn.idle_for == 2.0
    assert (conn.backoff, conn.last_error) == (0.5, "ConnectionLost: x")
    assert conn.rate == 10 / 3.0  # 10 messages counted after the first sample at t=1


def test_rate_covers_the_last_window_and_decays() -> None:
    reg = registry()
    reg.handle(Registered(connection="a", exchange="raw", url="ws://x/ws"), 0.0)
    for t in range(1, 21):
        reg.handle(traffic(float(t), 100), float(t))  # 100 messages per second
    (conn,) = reg.snapshot(20.0).connections
    assert conn.rate == 100.0
    (conn,) = reg.snapshot(40.0).connections
    assert conn.rate == 0.0  # nothing in the last 5 s
    assert conn.idle_for == 20.0


async def test_a_stopped_registry_answers_what_was_queued_and_refuses_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Audit M6: cancelled with requests still queued, the registry dropped them unread
    # and their callers waited for ever.
    reg = registry()
    send, receive = trio.open_memory_channel[RegistryEvent](16)
    client = RegistryClient(send)
    scope = trio.CancelScope()

    async def run_registry(*, task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await reg.run(receive, task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_registry)
        await client.report(Registered(connection="a", exchange="raw", url="ws://x/ws"))
        await trio.testing.wait_all_tasks_blocked()  # the registry waits for events
        scope.cancel()  # delivered at once: the queue below is never read by the loop
        stats_replies = []
        for _ in range(3):
            reply, answer = trio.open_memory_channel[Stats](1)
            send.send_nowait(SnapshotRequest(reply=reply))
            stats_replies.append(answer)
        send.send_nowait(traffic(0.0, 5))  # applied before the next request
        reply, answer = trio.open_memory_channel[Stats](1)
        send.send_nowait(SnapshotRequest(reply=reply))
        stats_replies.append(answer)
        permit_reply, permit_answer = trio.open_memory_channel[float](1)
        send.send_nowait(PermitRequest(host="h", reply=permit_reply))
    # answered before the registry's task ended
    answers = [answer.receive_nowait() for answer in stats_replies]
    assert [s.connections[0].messages for s in answers] == [0, 0, 0, 5]
    assert permit_answer.receive_nowait() == 0.0
    # a request after the registry stopped fails at once instead of waiting
    with pytest.raises(trio.BrokenResourceError):
        await client.snapshot()


def batch(n: int) -> tuple[RawMessage, ...]:
    return (RawMessage(connection="a", exchange="raw", received_at=0.0, data=n),)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [(Overflow.DROP_NEWEST, [0, 1]), (Overflow.DROP_OLDEST, [3, 4])],
)
async def test_outbox_drop_policies(policy: Overflow, kept: list[int]) -> None:
    queue = ConsumerQueue(policy, 2)
    for n in range(5):
        await queue.put(batch(n))
    queue.close()
    assert [b[0].data async for b in queue.receive] == kept
    assert queue.dropped == 3


async def test_outbox_block_waits_for_the_consumer(autojump_clock: trio.testing.MockClock) -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 1)
    await queue.put(batch(0))
    with trio.move_on_after(5.0) as waited:
        await queue.put(batch(1))
    assert waited.cancelled_caught
    assert queue.receive.receive_nowait()[0].data == 0
    await queue.put(batch(2))
    assert queue.dropped == 0


def test_outbox_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match=r"^ConsumerQueue capacity must be at least 1, got 0$"):
        ConsumerQueue(Overflow.BLOCK, 0)


# -- the byte budget (audit M8) ----------------------------------------------------------


def book(levels: int, seq: int = 0) -> tuple[BookDelta, ...]:
    """A one-delta batch with ``levels`` bid levels: 64 + 8 + 250 + 272 per level bytes."""
    bids = tuple((Decimal(100 + i), Decimal(1)) for i in range(levels))
    return (
        BookDelta(
            connection="a",
            exchange="okx",
            received_at=0.0,
            symbol="BTC-USDT",
            bids=bids,
            asks=(),
            sequence=seq,
            prev_sequence=None,
            timestamp=None,
        ),
    )


#: batch_bytes of book(1), book(2), book(3): the estimate's own constants, pinned.
B1, B2, B3 = 594, 866, 1138


def drain(queue: ConsumerQueue) -> list[int]:
    """Drain ``queue``; the sequence numbers of what it held, in order."""
    seqs: list[int] = []
    while True:
        try:
            (message,) = queue.receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return seqs
        assert isinstance(message, BookDelta) and message.sequence is not None
        seqs.append(message.sequence)


def test_batch_bytes_is_a_fixed_cost_plus_one_per_level() -> None:
    assert [batch_bytes(book(n)) for n in (1, 2, 3)] == [B1, B2, B3]
    assert batch_bytes(book(1) + book(2)) == 64 + 2 * 8 + 2 * 250 + 3 * 272
    assert batch_bytes(()) == 64


async def test_drop_newest_keeps_what_fits_in_bytes() -> None:
    queue = ConsumerQueue(Overflow.DROP_NEWEST, 100, max_bytes=B1 + B2)
    for seq, levels in enumerate((1, 2, 1, 3)):
        await queue.put(book(levels, seq))
    assert (queue.queued_bytes, queue.dropped, len(queue)) == (B1 + B2, 2, 2)
    assert drain(queue) == [0, 1]
    assert queue.queued_bytes == 0


async def test_drop_oldest_drops_until_the_new_batch_fits() -> None:
    queue = ConsumerQueue(Overflow.DROP_OLDEST, 100, max_bytes=3 * B1)
    for seq in range(3):
        await queue.put(book(1, seq))
    assert (queue.queued_bytes, queue.dropped) == (3 * B1, 0)
    await queue.put(book(3, 3))  # B3 > 2 * B1: two of the oldest go
    assert (queue.queued_bytes, queue.dropped) == (B1 + B3, 2)
    await queue.put(book(1, 4))  # B1 + B3 + B1 is over 3 * B1: the oldest goes
    assert (queue.queued_bytes, queue.dropped) == (B3 + B1, 3)
    assert drain(queue) == [3, 4]


async def test_the_batch_count_still_bounds_the_queue() -> None:
    queue = ConsumerQueue(Overflow.DROP_OLDEST, 2, max_bytes=1 << 30)
    for seq in range(4):
        await queue.put(book(1, seq))
    assert (queue.queued_bytes, queue.dropped) == (2 * B1, 2)
    assert drain(queue) == [2, 3]


@pytest.mark.parametrize("policy", list(Overflow))
async def test_a_batch_bigger_than_the_budget_enters_an_empty_queue(policy: Overflow) -> None:
    queue = ConsumerQueue(policy, 100, max_bytes=B1)
    await queue.put(book(3, 0))
    assert (queue.queued_bytes, queue.dropped) == (B3, 0)
    assert drain(queue) == [0]
    assert queue.queued_bytes == 0


async def test_drop_oldest_makes_room_for_a_batch_bigger_than_the_budget() -> None:
    queue = ConsumerQueue(Overflow.DROP_OLDEST, 100, max_bytes=B2)
    await queue.put(book(1, 0))
    await queue.put(book(3, 1))  # empties the queue, then enters it alone
    assert (queue.queued_bytes, queue.dropped) == (B3, 1)
    await queue.put(book(1, 2))  # the big one goes
    assert (queue.queued_bytes, queue.dropped) == (B1, 2)
    assert drain(queue) == [2]


async def test_block_waits_for_bytes_then_for_an_empty_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 100, max_bytes=B1 + B2)
    await queue.put(book(1, 0))
    await queue.put(book(2, 1))
    with trio.move_on_after(5.0) as waited:
        await queue.put(book(1, 2))
    assert waited.cancelled_caught  # a cancelled put queued nothing
    assert (queue.queued_bytes, len(queue)) == (B1 + B2, 2)
    taken: list[tuple[float, int]] = []

    async def consumer() -> None:
        for _ in range(3):
            await trio.sleep(1.0)
            (message,) = await queue.receive.receive()
            assert isinstance(message, BookDelta) and message.sequence is not None
            taken.append((trio.current_time(), message.sequence))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await queue.put(book(1, 2))  # fits once batch 0 is taken
        assert (trio.current_time(), queue.queued_bytes) == (6.0, B2 + B1)
        await queue.put(book(3, 3))  # bigger than the budget: waits for an empty queue
        assert (trio.current_time(), queue.queued_bytes) == (8.0, B3)
    assert taken == [(6.0, 0), (7.0, 1), (8.0, 2)]
    assert queue.dropped == 0


async def test_a_cancelled_receive_takes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 10)
    with trio.move_on_after(1.0) as waited:
        await queue.receive.receive()
    assert waited.cancelled_caught
    await queue.put(book(1, 0))
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.receive.receive()
    assert (queue.queued_bytes, len(queue)) == (B1, 1)
    assert drain(queue) == [0]


async def test_closing_lets_the_consumer_drain_then_ends_the_stream() -> None:
    queue = ConsumerQueue(Overflow.DROP_NEWEST, 10)
    await queue.put(book(1, 0))
    queue.close()
    queue.close()  # idempotent
    with pytest.raises(trio.ClosedResourceError, match=r"^this connection's queue was closed$"):
        await queue.put(book(1, 1))
    assert [b[0].sequence async for b in queue.receive] == [0]  # type: ignore[union-attr]
    with pytest.raises(trio.EndOfChannel):
        queue.receive.receive_nowait()


async def test_closing_wakes_a_waiting_consumer_and_a_waiting_put(
    autojump_clock: trio.testing.MockClock,
) -> None:
    empty = ConsumerQueue(Overflow.BLOCK, 1)
    full = ConsumerQueue(Overflow.BLOCK, 1)
    await full.put(book(1, 0))
    woken: list[tuple[str, float]] = []

    async def consume() -> None:
        with pytest.raises(trio.EndOfChannel):
            await empty.receive.receive()
        woken.append(("receive", trio.current_time()))

    async def produce() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await full.put(book(1, 1))
        woken.append(("put", trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        nursery.start_soon(produce)
        await trio.sleep(3.0)
        empty.close()
        full.close()
    assert sorted(woken) == [("put", 3.0), ("receive", 3.0)]
    assert drain(full) == [0]  # what was queued is still there to drain


async def test_a_closed_receiving_end_breaks_the_queue() -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 10)
    await queue.put(book(1, 0))
    await queue.receive.aclose()
    await queue.receive.aclose()  # idempotent
    assert (queue.queued_bytes, len(queue)) == (0, 0)
    with pytest.raises(trio.BrokenResourceError):
        await queue.put(book(1, 1))
    with pytest.raises(trio.ClosedResourceError):
        await queue.receive.receive()


def test_queue_rejects_a_zero_byte_budget() -> None:
    with pytest.raises(ValueError, match=r"^ConsumerQueue max_bytes must be at least 1, got 0$"):
        ConsumerQueue(Overflow.BLOCK, 1, max_bytes=0)


async def test_snapshot_reads_queued_bytes_from_the_queue_when_taken() -> None:
    reg = registry()
    queue = ConsumerQueue(Overflow.BLOCK, 10)
    reg.watch_queue("a", queue)
    reg.handle(Registered(connection="a", exchange="raw", url="ws://x/ws"), 0.0)
    (conn,) = reg.snapshot(0.0).connections
    assert conn.queued_bytes == 0
    await queue.put(book(1, 0))
    await queue.put(book(3, 1))
    reg.handle(traffic(1.0, 10, dropped=2), 1.0)
    reg.handle(traffic(2.0, 10, dropped=3), 2.0)
    (conn,) = reg.snapshot(2.0).connections
    assert (conn.queued_bytes, conn.dropped) == (B1 + B3, 5)  # a level, and a count
    assert drain(queue) == [0, 1]
    # No traffic report since: the level is read from the queue itself.
    (conn,) = reg.snapshot(3.0).connections
    assert (conn.queued_bytes, conn.dropped) == (0, 5)


# -- conflated entries (book tops) -------------------------------------------------------


async def test_put_latest_replaces_the_queued_entry_of_its_key_in_place() -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 10)
    await queue.put_latest("a", book(1, seq=1))
    await queue.put(book(1, seq=2))
    await queue.put_latest("b", book(1, seq=3))
    await queue.put_latest("a", book(3, seq=4))  # replaces seq 1, where it was
    assert (len(queue), queue.queued_bytes) == (3, B3 + B1 + B1)
    (first,) = queue.receive.receive_nowait()
    assert isinstance(first, BookDelta) and first.sequence == 4
    # Taken: the next one under "a" queues anew, behind what came since.
    await queue.put(book(1, seq=5))
    await queue.put_latest("a", book(1, seq=6))
    assert drain(queue) == [2, 3, 5, 6]
    assert (queue.dropped, queue.queued_bytes) == (0, 0)


async def test_a_sealed_entry_stays_and_the_next_queues_behind() -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 10)
    await queue.put_latest("a", book(1, seq=1))
    await queue.put(book(1, seq=2))  # e.g. the BookInvalid that followed the top
    queue.seal("a")
    await queue.put_latest("a", book(1, seq=3))
    await queue.put_latest("a", book(1, seq=4))  # replaces 3, not the sealed 1
    assert drain(queue) == [1, 2, 4]
    # Taking the sealed entry did not forget the newer one's key.
    await queue.put_latest("a", book(1, seq=5))
    assert drain(queue) == [5]


@pytest.mark.parametrize(
    ("policy", "kept", "dropped"),
    [(Overflow.DROP_NEWEST, [1, 2], 1), (Overflow.DROP_OLDEST, [2, 3], 1)],
)
async def test_a_new_conflated_entry_follows_the_overflow_policy(
    policy: Overflow, kept: list[int], dropped: int
) -> None:
    queue = ConsumerQueue(policy, 2)
    await queue.put_latest("a", book(1, seq=1))
    await queue.put(book(1, seq=2))
    await queue.put_latest("b", book(1, seq=3))  # a new key: no room
    assert drain(queue) == kept and queue.dropped == dropped
    # Whatever was dropped took its key along: "a" queues anew.
    await queue.put_latest("a", book(1, seq=7))
    assert drain(queue) == [7]


async def test_put_latest_under_block_waits_for_room_unless_it_replaces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = ConsumerQueue(Overflow.BLOCK, 1)
    await queue.put_latest("a", book(1, seq=1))
    await queue.put_latest("a", book(1, seq=2))  # replaces: never waits
    with trio.move_on_after(5.0) as waited:
        await queue.put_latest("b", book(1, seq=3))
    assert waited.cancelled_caught and len(queue) == 1
    assert drain(queue) == [2]


# -- one consumer reading every connection's queue (MergedReceiver) ----------------------


def merged_data(merged: MergedReceiver) -> list[object]:
    out: list[object] = []
    while True:
        try:
            taken = merged.receive_nowait()
        except trio.WouldBlock:
            return out
        out.extend(m.data for m in taken if isinstance(m, RawMessage))


async def test_the_merged_receiver_hands_out_batches_in_the_order_they_were_queued() -> None:
    a, b = ConsumerQueue(Overflow.BLOCK, 10), ConsumerQueue(Overflow.BLOCK, 10)
    merged = MergedReceiver()
    await a.put(batch("a0"))  # queued before it was added: its turn is kept
    merged.add(a)
    merged.add(b)
    for name in ("b1", "a2", "a3", "b4"):
        await (a if name[0] == "a" else b).put(batch(name))
    assert merged_data(merged) == ["a0", "b1", "a2", "a3", "b4"]
    assert (len(a), len(b), a.queued_bytes, b.queued_bytes) == (0, 0, 0, 0)


async def test_a_dropped_batch_loses_its_turn_and_a_replaced_one_keeps_it() -> None:
    a = ConsumerQueue(Overflow.DROP_OLDEST, 2)
    b = ConsumerQueue(Overflow.BLOCK, 10)
    merged = MergedReceiver()
    merged.add(a)
    merged.add(b)
    await a.put(batch("a0"))
    await b.put(batch("b1"))
    await a.put(batch("a2"))
    await a.put(batch("a3"))  # a0 dropped: a's first turn (before b1) is skipped
    await b.put_latest("top", batch("b4"))
    await a.put(batch("a5"))  # a2 dropped
    await b.put_latest("top", batch("b6"))  # replaces b4 in its turn
    assert merged_data(merged) == ["b1", "a3", "b6", "a5"]
    assert a.dropped == 2


async def test_the_merged_stream_ends_once_closed_and_drained_and_its_end_breaks_puts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = ConsumerQueue(Overflow.BLOCK, 1)
    merged = MergedReceiver()
    merged.add(a)
    got: list[object] = []

    async def consume() -> None:
        async for taken in merged:
            got.extend(m.data for m in taken if isinstance(m, RawMessage))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await a.put(batch(0))
        await a.put(batch(1))  # waits until the consumer took 0 (capacity 1)
        merged.close()
    assert got == [0, 1]
    with pytest.raises(trio.EndOfChannel):
        merged.receive_nowait()

    b = ConsumerQueue(Overflow.BLOCK, 1)
    broken = MergedReceiver()
    broken.add(b)
    await b.put(batch(0))
    await broken.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await b.put(batch(1))
    with pytest.raises(trio.ClosedResourceError):
        broken.receive_nowait()


async def test_the_merged_receiver_takes_ready_batches_in_a_row_then_yields() -> None:
    # A consumer behind many busy connections must not be held to one batch per
    # scheduling round (MergedReceiver's docstring): 64 ready batches come without a
    # schedule point (another runnable task does not run meanwhile), the 65th yields.
    queue = ConsumerQueue(Overflow.BLOCK, 1000)
    merged = MergedReceiver()
    merged.add(queue)
    for n in range(100):
        await queue.put(batch(n))
    steps = 0

    async def other_task() -> None:
        nonlocal steps
        while True:
            steps += 1
            await trio.lowlevel.checkpoint()

    taken: list[object] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        while not steps:  # let it start (it never blocks: always runnable from now on)
            await trio.lowlevel.checkpoint()
        before = steps
        for _ in range(64):
            taken.append((await merged.receive())[0].data)
        assert steps == before
        with trio.testing.assert_checkpoints():
            taken.append((await merged.receive())[0].data)
        nursery.cancel_scope.cancel()
    assert taken == list(range(65))
