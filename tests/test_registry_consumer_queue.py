"""RegistryActor bookkeeping and ConsumerQueue overflow policies, without sockets."""

from __future__ import annotations

import pytest
import trio

from actors import ConsumerQueue, Overflow, RegistryActor
from actors.exchanges import RawMessage
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
