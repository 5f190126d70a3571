"""The session pump's order: a frame's events and replies are handled before its batch
is delivered (review 2026-11 §1: a SequenceGap used to be logged one loop turn after
the consumer already held the gapped delta)."""

from __future__ import annotations

import logging

import msgspec
import pytest
import trio
import trio.testing

from actors import ConnectionSpec, ConsumerQueue, Overflow, RegistryClient
from actors.exchanges import AdapterState, Batch, BookDelta, ExchangeProtocol, RawProtocol
from actors.exchanges.messages import SequenceGap
from actors.exchanges.sdk.protocol import Frame
from actors.registry import RegistryEvent
from actors.session import Session, TrafficCounter


class GapOnSecondFrame(ExchangeProtocol):
    """Every frame is one book delta; the second one skips an id and asks for a pong."""

    exchange = "test"

    def topics(self) -> list[str]:
        return ["book"]

    def _configure(self, spec: ConnectionSpec) -> None:
        pass

    def _subscribe(self, now: float, topics: list[str]) -> None:
        pass  # confirmed by the first frame

    def _unsubscribe(self, now: float, topics: list[str]) -> None:
        pass

    def decode(self, data: Frame, now: float, received_at: float) -> Batch:
        if self.state.name == "SUBSCRIBING":
            self.confirm(["book"])
        seq = int(data)
        prev = seq - 1 if seq != 5 else 3
        if prev != seq - 1:
            self.emit(SequenceGap(symbol="BTC-USDT", expected=seq - 1, received=prev))
            self.send_now("pong")
        return (
            BookDelta(
                connection="s",
                exchange="test",
                received_at=received_at,
                symbol="BTC-USDT",
                bids=(),
                asks=(),
                sequence=seq,
                prev_sequence=prev,
                timestamp=None,
            ),
        )


class ScriptedSocket:
    """Stands in for actors.net.websocket.WebSocket: hands out frames, records writes."""

    url = "wss://test.invalid/ws"

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames
        self.sent: list[Frame] = []
        self.last_received = 0.0

    async def receive(self) -> str:
        if not self.frames:
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        return self.frames.pop(0)

    async def receive_batch(self) -> list[str | bytes]:
        """One frame per read, as a paced feed delivers them."""
        return [await self.receive()]

    async def send(self, frame: Frame) -> None:
        self.sent.append(frame)
        await trio.lowlevel.checkpoint()


async def test_a_gap_is_counted_and_logged_and_its_reply_written_before_the_delta_is_delivered(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "marketprism.connection")
    spec = ConnectionSpec(name="s", exchange="test", url=ScriptedSocket.url)
    proto = GapOnSecondFrame(spec)
    socket = ScriptedSocket(["4", "5", "6"])
    send, receive = trio.open_memory_channel[RegistryEvent](100)
    traffic = TrafficCounter("s", RegistryClient(send), ConsumerQueue(Overflow.BLOCK, 10))
    seen: list[tuple[int | None, int, int, list[Frame]]] = []

    async def deliver(batch: Batch) -> None:
        (delta,) = batch
        assert isinstance(delta, BookDelta)
        gaps_logged = sum("book sequence gap" in r.getMessage() for r in caplog.records)
        seen.append((delta.sequence, traffic.gaps, gaps_logged, list(socket.sent)))

    async def ignore(*args: object) -> None:
        pass

    session = Session(
        "s",
        proto,
        socket,  # type: ignore[arg-type]
        stale_after=30.0,
        traffic=traffic,
        deliver=deliver,
        on_subscriptions=ignore,
        on_notice=ignore,
    )
    session.start()
    with trio.fail_after(10):
        await session.pump(until=lambda: len(seen) == 3)
    assert seen == [
        (4, 0, 0, []),
        (5, 1, 1, ["pong"]),  # the gap was handled before the consumer got the delta
        (6, 1, 1, ["pong"]),
    ]
    assert caplog.records[0].getMessage() == (
        "s: BTC-USDT book sequence gap: expected to continue from 4, got 3"
    )
    receive.close()


async def test_a_session_live_at_start_writes_its_frames_before_it_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The raw adapter needs no acks: it is LIVE as soon as the session starts, and the
    # actor then reports LIVE and calls task_status.started(). Its subscribe frames must
    # be on the wire by then (found in review: the pump checked until() first).
    spec = msgspec.convert(
        {"name": "r", "exchange": "raw", "url": ScriptedSocket.url, "subscribe": ["hello"]},
        ConnectionSpec,
    )
    proto = RawProtocol(spec)
    socket = ScriptedSocket([])
    send, receive = trio.open_memory_channel[RegistryEvent](100)
    queue = ConsumerQueue(Overflow.BLOCK, 10)

    async def ignore(*args: object) -> None:
        pass

    session = Session(
        "r",
        proto,
        socket,  # type: ignore[arg-type]
        stale_after=30.0,
        traffic=TrafficCounter("r", RegistryClient(send), queue),
        deliver=queue.put,
        on_subscriptions=ignore,
        on_notice=ignore,
    )
    session.start()
    with trio.fail_after(10):
        assert await session.pump(until=lambda: proto.state is AdapterState.LIVE)
    assert socket.sent == ["hello"]
    assert trio.current_time() == 0.0
    receive.close()
