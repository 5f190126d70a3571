"""The bounded queue between one connection and its consumer, with an overflow policy.

Theory of operation: the reader must keep draining the socket (so heartbeats are answered
and the watchdog measures the exchange, not the consumer), yet memory must stay bounded.
Each connection therefore owns one bounded memory channel of batches. ``put`` applies the
connection's :class:`~actors._spec.Overflow` policy when the channel is full: ``block``
waits (back-pressure reaches TCP), ``drop_newest`` discards the incoming batch,
``drop_oldest`` takes the oldest queued batch out and puts the new one in. Drops are
counted in messages, not batches.
"""

from __future__ import annotations

import trio

from actors._spec import Overflow
from actors.exchanges.messages import Batch

__all__ = ["ConsumerQueue"]


class ConsumerQueue:
    """One connection's queue toward the consumer.

    Args:
        policy: what to do when ``capacity`` batches are already queued.
        capacity: the most batches held at once (at least 1).

    Raises:
        ValueError: ``capacity`` is below 1.
    """

    def __init__(self, policy: Overflow, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ConsumerQueue capacity must be at least 1, got {capacity!r}")
        self.policy = policy
        self._send, self.receive = trio.open_memory_channel[Batch](capacity)
        #: Messages discarded by the overflow policy since creation.
        self.dropped = 0

    async def put(self, batch: Batch) -> None:
        """Queue one batch under the overflow policy.

        Cancellation: atomic. With ``block`` a cancelled ``put`` queued nothing; the drop
        policies never wait.

        Raises:
            trio.ClosedResourceError: the queue was closed with :meth:`close`.
        """
        if self.policy is Overflow.BLOCK:
            await self._send.send(batch)
            return
        await trio.lowlevel.checkpoint()
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            if self.policy is Overflow.DROP_NEWEST:
                self.dropped += len(batch)
                return
            # DROP_OLDEST: the channel is full, so there is an oldest batch to take out
            # and, with no checkpoint in between, room for the new one afterwards.
            oldest = self.receive.receive_nowait()
            self.dropped += len(oldest)
            self._send.send_nowait(batch)

    def close(self) -> None:
        """Stop accepting batches; the consumer still drains what is queued. Idempotent."""
        self._send.close()
