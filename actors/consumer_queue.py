"""The bounded queue between one connection and its consumer, with an overflow policy.

Theory of operation: the reader must keep draining the socket (so heartbeats are answered
and the watchdog measures the exchange, not the consumer), yet memory must stay bounded.
Each connection therefore owns one queue of batches, bounded twice: at most ``capacity``
batches (config ``buffer``) and at most ``max_bytes`` estimated bytes (config
``buffer_bytes``). Counting batches alone is not a bound on memory: one 4 MiB OKX book
frame decodes to about 33 MiB of Decimals and tuples (audit M8), so 1024 of them would hold
about 33 GiB. ``put`` applies the connection's :class:`~actors._spec.Overflow` policy when
a batch does not fit under either bound: ``block`` waits until it fits (back-pressure
reaches TCP), ``drop_newest`` discards the incoming batch, ``drop_oldest`` takes the oldest
queued batches out until it fits. Drops are counted in messages, not batches.

Conflated batches (:meth:`ConsumerQueue.put_latest`, the book tops of ``book_top``): a
batch put under a key replaces the batch put under the same key while that one is still
queued, in its place, so a slow consumer finds the newest value where the first one
was instead of a queue of stale ones.

A batch larger than the whole byte budget is admitted when the queue is empty: otherwise
``block`` would wait for ever and the drop policies would drop every such batch. So the
queue holds at most ``max_bytes`` estimated bytes, or a single batch.

What a batch weighs (:func:`batch_bytes`) is an estimate of the memory its messages hold,
computed from the messages: a fixed cost per ``Trade`` and ``Ticker``, a fixed cost plus a
cost per price level for books (a level is a tuple of two ``Decimal``, about 270 bytes), and
for a ``RawMessage`` a walk of its JSON value that looks at most ``_SAMPLE`` items of each
array or object and extrapolates the rest (exact for the uniform arrays exchanges send; a
value built to hide its bulk from the sample is under-counted, and is still bounded by
``max_message_size``). The costs were measured with ``tracemalloc`` on CPython 3.11 (a test
keeps the estimate within a factor of 2). The estimate is computed in the queue, so the
session's ``deliver(batch)`` needs no size, and costs about 0.2 microseconds for a
one-trade batch: far less than decoding the frame did.

What one connection can hold at most, then: the queue (``buffer_bytes``, or one batch
bigger than that), plus, under ``block``, the batch a waiting ``put`` holds; and before
decoding, one read of the socket (256 KiB) and the frame parser's one unfinished message
(at most ``max_message_size``) on the fast transport, or trio-websocket's queue of up to
64 received messages of up to ``max_message_size`` each on the reference transport
(``actors/net/websocket.py``). The consumer reads every queue through one
:class:`MergedReceiver`, which holds no batch of its own. With the defaults (64 MiB, 4 MiB
messages decoding to at most about 33 MiB), fast transport: about 64 + 33 + 4 = 101 MiB,
where the batch count alone allowed about 33 GiB.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Hashable
from typing import Any, Final

import trio

from actors._spec import DEFAULT_BUFFER_BYTES, Overflow
from actors.exchanges.messages import (
    Batch,
    BookDelta,
    BookSnapshot,
    BookTop,
    RawMessage,
    Ticker,
    Trade,
)

__all__ = ["ConsumerQueue", "MergedReceiver", "QueueReceiver", "batch_bytes", "json_bytes"]

# Estimated bytes, measured with tracemalloc on CPython 3.11 (64-bit) for messages built
# by the adapters from real frames; see tests/test_consumer_queue_bytes.py.
#: A batch: its tuple and the ``received_at`` float its messages share; plus a pointer each.
_BATCH: Final = 64
_POINTER: Final = 8
#: A Trade: the Struct, two Decimals, the trade id string and the timestamp int.
_TRADE: Final = 410
#: A Ticker: the Struct, four Decimals and the timestamp int.
_TICKER: Final = 560
#: A book message without its levels: the Struct, two tuples, sequence and timestamp ints.
_BOOK: Final = 250
#: One price level: a 2-tuple of Decimals (104 bytes each) and its slot in the side tuple.
_LEVEL: Final = 272
#: A RawMessage without its JSON value.
_RAW: Final = 80
_FIXED: Final[dict[type, int]] = {Trade: _TRADE, Ticker: _TICKER}

# A decoded JSON value (msgspec: object keys are shared, values are not).
_STR: Final = 49  # plus one byte per character (ASCII)
_INT: Final = 32
_FLOAT: Final = 24
_DICT: Final = 120  # plus _DICT_ITEM per member
_DICT_ITEM: Final = 24
_LIST: Final = 56  # plus one pointer per item
#: Items looked at per array or object; the others are counted like the ones looked at.
_SAMPLE: Final = 16
#: Arrays and objects looked into per value; past this, an unseen item counts _UNSEEN.
_EXPANSIONS: Final = 1024
_UNSEEN: Final = 64
#: Ready batches :meth:`MergedReceiver.receive` takes in a row before it yields to the
#: scheduler (see its docstring).
_READY_STREAK: Final = 64


def json_bytes(value: Any) -> int:
    """Estimated bytes held by a JSON value as msgspec decodes it (``RawMessage.data``).

    Looks at no more than ``_SAMPLE`` items of any array or object and no more than
    ``_EXPANSIONS`` containers in all, so its cost is bounded whatever the value's size or
    depth; no recursion, so a value nested as deep as msgspec allows is fine.
    """
    total = 0.0
    stack: list[tuple[Any, float]] = [(value, 1.0)]
    expansions = 0
    while stack:
        item, weight = stack.pop()
        kind = type(item)
        if kind is str:
            total += weight * (_STR + len(item))
        elif kind is int:
            total += weight * _INT
        elif kind is float:
            total += weight * _FLOAT
        elif kind is dict or kind is list:
            count = len(item)
            if kind is dict:
                total += weight * (_DICT + _DICT_ITEM * count)
            else:
                total += weight * (_LIST + _POINTER * count)
            if not count:
                continue
            expansions += 1
            if expansions > _EXPANSIONS:
                total += weight * count * _UNSEEN
                continue
            values = item.values() if kind is dict else item
            if count <= _SAMPLE:
                stack.extend([(v, weight) for v in values])
                continue
            if kind is dict:
                sample = list(itertools.islice(values, _SAMPLE))
            else:
                sample = item[:: count // _SAMPLE][:_SAMPLE]  # evenly spaced
            share = weight * count / len(sample)
            stack.extend([(v, share) for v in sample])
        # True, False and None are shared singletons: nothing of their own.
    return int(total)


def batch_bytes(batch: Batch) -> int:
    """Estimated bytes the messages of ``batch`` hold (see the module docstring)."""
    size = _BATCH + _POINTER * len(batch)
    fixed = _FIXED
    for message in batch:
        cost = fixed.get(type(message))
        if cost is not None:
            size += cost
        elif isinstance(message, (BookDelta, BookSnapshot, BookTop)):
            size += _BOOK + _LEVEL * (len(message.bids) + len(message.asks))
        elif isinstance(message, RawMessage):
            size += _RAW + json_bytes(message.data)
    return size


class ConsumerQueue:
    """One connection's queue toward the consumer.

    The consumer reads :attr:`receive`; the connection's sessions call :meth:`put`.

    Args:
        policy: what to do when a batch does not fit.
        capacity: the most batches held at once (config ``buffer``, at least 1).
        max_bytes: the most estimated bytes held at once (config ``buffer_bytes``, at
            least 1); a single batch larger than this is admitted into an empty queue.

    Raises:
        ValueError: ``capacity`` or ``max_bytes`` is below 1.
    """

    def __init__(
        self, policy: Overflow, capacity: int, *, max_bytes: int = DEFAULT_BUFFER_BYTES
    ) -> None:
        if capacity < 1:
            raise ValueError(f"ConsumerQueue capacity must be at least 1, got {capacity!r}")
        if max_bytes < 1:
            raise ValueError(f"ConsumerQueue max_bytes must be at least 1, got {max_bytes!r}")
        self.policy = policy
        self.capacity = capacity
        self.max_bytes = max_bytes
        #: Messages discarded by the overflow policy since creation.
        self.dropped = 0
        #: Estimated bytes of the batches queued now (:func:`batch_bytes` of each).
        self.queued_bytes = 0
        self._batches: collections.deque[tuple[Batch, int] | _Latest] = collections.deque()
        #: key -> the queued conflated entry put under it (:meth:`put_latest`).
        self._latest: dict[Hashable, _Latest] = {}
        self._closed = False
        self._receiver_closed = False
        # Putters waiting for room (block), and the consumer waiting for a batch.
        self._room = trio.lowlevel.ParkingLot()
        self._ready = trio.lowlevel.ParkingLot()
        #: The consumer's end: a trio ``ReceiveChannel`` of batches.
        self.receive = QueueReceiver(self)
        #: The receiver this queue is read through instead, if it was added to one.
        self._merged: MergedReceiver | None = None
        #: Entries the merged receiver still has a turn for that were dropped since.
        self._stale = 0

    def __len__(self) -> int:
        """Batches queued now."""
        return len(self._batches)

    def _fits(self, size: int) -> bool:
        batches = self._batches
        return not batches or (
            len(batches) < self.capacity and self.queued_bytes + size <= self.max_bytes
        )

    def _check_open(self) -> None:
        if self._receiver_closed:
            raise trio.BrokenResourceError("the consumer closed this connection's queue")
        if self._closed:
            raise trio.ClosedResourceError("this connection's queue was closed")

    async def put(self, batch: Batch) -> None:
        """Queue one batch under the overflow policy.

        Cancellation: atomic. With ``block`` a cancelled ``put`` queued nothing; the drop
        policies never wait.

        Raises:
            trio.ClosedResourceError: the queue was closed with :meth:`close`.
            trio.BrokenResourceError: the consumer closed :attr:`receive`.
        """
        size = batch_bytes(batch)
        if self.policy is Overflow.BLOCK:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_open()
            while not self._fits(size):
                await self._room.park()
                self._check_open()
            self._append(batch, size)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await trio.lowlevel.checkpoint()
        self._check_open()
        if not self._fits(size):
            if self.policy is Overflow.DROP_NEWEST:
                self.dropped += len(batch)
                return
            # DROP_OLDEST: take the oldest out until the new one fits (an empty queue
            # always admits it).
            while not self._fits(size):
                self._drop_oldest()
        self._append(batch, size)

    async def put_latest(self, key: Hashable, batch: Batch) -> None:
        """Queue ``batch``, or, while a batch put under ``key`` is still queued, put
        ``batch`` in its place (the queue does not grow; the one replaced is not counted
        as dropped: it was only ever a stale value of the same thing).

        Otherwise as :meth:`put`: the overflow policy applies to a new entry.

        Cancellation: atomic, as :meth:`put`.

        Raises:
            trio.ClosedResourceError: the queue was closed with :meth:`close`.
            trio.BrokenResourceError: the consumer closed :attr:`receive`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        size = batch_bytes(batch)
        if self._replaced(key, batch, size):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if not self._fits(size):
            if self.policy is Overflow.BLOCK:
                while not self._fits(size):
                    await self._room.park()
                    self._check_open()
                    if self._replaced(key, batch, size):  # put meanwhile by another task
                        return
            elif self.policy is Overflow.DROP_NEWEST:
                self.dropped += len(batch)
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            else:
                while not self._fits(size):
                    self._drop_oldest()
        entry = _Latest((batch, size))
        entry.key = key
        self._latest[key] = entry
        self._batches.append(entry)
        self.queued_bytes += size
        self._announce()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _replaced(self, key: Hashable, batch: Batch, size: int) -> bool:
        """Put ``batch`` in the place of the entry queued under ``key``, if there is one."""
        entry = self._latest.get(key)
        if entry is None:
            return False
        self.queued_bytes += size - entry[1]
        entry[0], entry[1] = batch, size
        return True

    def seal(self, key: Hashable) -> None:
        """The batch queued under ``key`` (if any) stays as it is: the next
        :meth:`put_latest` under ``key`` queues anew, behind what was put since (a top
        must not jump back before the ``BookInvalid`` that followed it)."""
        self._latest.pop(key, None)

    def _drop_oldest(self) -> None:
        oldest = self._batches.popleft()
        batch, size = oldest
        self.queued_bytes -= size
        self.dropped += len(batch)
        if self._merged is not None:
            self._stale += 1  # its turn in the merged order comes first: skipped then
        if type(oldest) is _Latest and self._latest.get(oldest.key) is oldest:
            del self._latest[oldest.key]

    def _append(self, batch: Batch, size: int) -> None:
        self._batches.append((batch, size))
        self.queued_bytes += size
        self._announce()

    def _announce(self) -> None:
        """A new entry was queued: wake whoever reads this queue."""
        merged = self._merged
        if merged is not None:
            merged._queued(self)
        elif self._ready:
            self._ready.unpark()

    def _take_nowait(self) -> Batch:
        if self._receiver_closed:
            raise trio.ClosedResourceError("this queue's receiving end was closed")
        if not self._batches:
            if self._closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        entry = self._batches.popleft()
        batch, size = entry
        self.queued_bytes -= size
        if type(entry) is _Latest and self._latest.get(entry.key) is entry:
            del self._latest[entry.key]
        if self._room:
            self._room.unpark_all()
        return batch

    async def _wait_ready(self) -> None:
        await self._ready.park()

    def _close_receiving(self) -> None:
        if self._receiver_closed:
            return
        self._receiver_closed = True
        self._batches.clear()
        self._latest.clear()
        self.queued_bytes = 0
        self._ready.unpark_all()
        self._room.unpark_all()

    def close(self) -> None:
        """Stop accepting batches; the consumer still drains what is queued. Idempotent."""
        self._closed = True
        self._ready.unpark_all()
        self._room.unpark_all()


class _Latest(list[Any]):
    """A conflated queue entry: ``[batch, size]``, replaced in place, with its key."""

    __slots__ = ("key",)

    key: Hashable


class QueueReceiver(trio.abc.ReceiveChannel[Batch]):
    """The consumer's end of a :class:`ConsumerQueue` (``async for batch in receiver``)."""

    def __init__(self, queue: ConsumerQueue) -> None:
        self._queue = queue

    def receive_nowait(self) -> Batch:
        """The oldest queued batch, without waiting.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: the queue was closed and is drained.
            trio.ClosedResourceError: this end was closed with :meth:`aclose`.
        """
        return self._queue._take_nowait()

    async def receive(self) -> Batch:
        """The oldest queued batch, waiting for one if need be.

        Cancellation: atomic; a cancelled call took nothing.

        Raises:
            trio.EndOfChannel: the queue was closed and is drained.
            trio.ClosedResourceError: this end was closed with :meth:`aclose`.
        """
        queue = self._queue
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                batch = queue._take_nowait()
            except trio.WouldBlock:
                await queue._wait_ready()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch

    async def aclose(self) -> None:
        """Close the consumer's end: queued batches are discarded and later puts raise
        ``trio.BrokenResourceError``. Idempotent.

        Cancellation: the end is closed even if this call is cancelled.
        """
        self._queue._close_receiving()
        await trio.lowlevel.checkpoint()


class MergedReceiver(trio.abc.ReceiveChannel[Batch]):
    """One consumer's end of many :class:`ConsumerQueue`, in the order batches were queued.

    Theory of operation: each queue added with :meth:`add` tells this receiver whenever it
    queues a new entry, and the receiver keeps the queues' turns in one FIFO: a turn is a
    queue, and taking a turn takes that queue's oldest batch. So the consumer reads
    every connection's batches in the order they were put, with no task in between (a
    task per queue moving batches into one channel cost a task switch per batch and held
    one batch per connection outside any bound). Each queue's overflow policy, bounds
    and back-pressure are its own, as before: a batch stays in its queue until the
    consumer takes it.

    An entry a queue drops (``drop_oldest``) is its oldest, whose turn is the queue's
    first in the FIFO: the queue counts it, and that turn is skipped. A conflated entry
    replaced in place (:meth:`ConsumerQueue.put_latest`) keeps its turn.

    The stream ends (``trio.EndOfChannel``) once :meth:`close` was called and every turn
    is taken.

    Fairness: a ready batch is taken without a schedule point, up to
    ``_READY_STREAK`` in a row (a cancellation is still honoured at once). Trio runs each
    runnable task one step per scheduling round, so a consumer that yielded on every
    batch would take one batch per round while each of a hundred busy connections put
    one: under load the consumer would fall ever further behind the sessions that feed
    it, and fill their queues instead of draining them.
    """

    def __init__(self) -> None:
        self._streak = 0
        self._turns: collections.deque[ConsumerQueue] = collections.deque()
        self._queues: list[ConsumerQueue] = []
        self._ready = trio.lowlevel.ParkingLot()
        self._closed = False
        self._receiver_closed = False

    def add(self, queue: ConsumerQueue) -> None:
        """Read ``queue`` through this receiver from now on (not through its own)."""
        queue._merged = self
        self._queues.append(queue)
        for _ in range(len(queue)):
            self._turns.append(queue)

    def remove(self, queue: ConsumerQueue) -> None:
        """Stop reading ``queue``: what it still holds is discarded, later puts raise
        ``trio.BrokenResourceError``."""
        self._queues.remove(queue)
        self._turns = collections.deque(q for q in self._turns if q is not queue)
        queue._close_receiving()

    def _queued(self, queue: ConsumerQueue) -> None:
        self._turns.append(queue)
        if self._ready:
            self._ready.unpark()

    def close(self) -> None:
        """No more queues will be read: the stream ends once what is queued is taken."""
        self._closed = True
        self._ready.unpark_all()

    def receive_nowait(self) -> Batch:
        """The batch whose turn is next, without waiting.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: :meth:`close` was called and everything was taken.
            trio.ClosedResourceError: this end was closed with :meth:`aclose`.
        """
        if self._receiver_closed:
            raise trio.ClosedResourceError("this receiving end was closed")
        turns = self._turns
        while turns:
            queue = turns.popleft()
            if queue._stale:
                queue._stale -= 1
                continue
            try:
                return queue._take_nowait()
            except trio.WouldBlock:
                continue  # its entry was cleared with the queue's receiving end
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Batch:
        """The batch whose turn is next, waiting for one if need be.

        Cancellation: atomic; a cancelled call took nothing.

        Raises:
            trio.EndOfChannel: :meth:`close` was called and everything was taken.
            trio.ClosedResourceError: this end was closed with :meth:`aclose`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._streak < _READY_STREAK:
            try:
                batch = self.receive_nowait()
            except trio.WouldBlock:
                pass
            else:
                self._streak += 1
                return batch
        self._streak = 0
        while True:
            try:
                batch = self.receive_nowait()
            except trio.WouldBlock:
                await self._ready.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch

    async def aclose(self) -> None:
        """Close the consumer's end: every queue's batches are discarded and later puts
        raise ``trio.BrokenResourceError``. Idempotent.

        Cancellation: the end is closed even if this call is cancelled.
        """
        if not self._receiver_closed:
            self._receiver_closed = True
            self._turns.clear()
            for queue in self._queues:
                queue._close_receiving()
            self._ready.unpark_all()
        await trio.lowlevel.checkpoint()
