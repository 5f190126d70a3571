"""``sup.messages()`` and ``sup.batches()`` on the asyncio side: one batch per step.

See :mod:`supervisor.aio` ("Backpressure").
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import final

import trio

from actors import MergedReceiver
from actors.exchanges import Batch, Message
from supervisor.aio._bridge import Guest

__all__ = ["AioBatchStream", "AioMessageStream"]


def _receive_nowait(receiver: MergedReceiver) -> Batch | None:
    try:
        return receiver.receive_nowait()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return None


async def _receive(receiver: trio.abc.ReceiveChannel[Batch]) -> Batch | None:
    try:
        return await receiver.receive()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return None


@final
class AioBatchStream:
    """``async for batch in sup.batches()``: one :class:`~actors.exchanges.Batch` per step.

    Each step takes the next batch from the supervisor's queues (see the module's
    "Backpressure"); iteration ends when the supervisor has stopped and everything
    queued was taken. Created by :meth:`AioSupervisor.batches` only.
    """

    def __init__(self, guest: Guest, receiver: trio.abc.ReceiveChannel[Batch]) -> None:
        self._guest = guest
        self._receiver = receiver
        # A queued batch is taken synchronously inside the guest, without a Trio task.
        self._nowait: Callable[[], Batch | None] | None = (
            functools.partial(_receive_nowait, receiver)
            if isinstance(receiver, MergedReceiver)
            else None
        )
        self._kept: Batch | None = None
        self._ended = False

    def __aiter__(self) -> AioBatchStream:
        return self

    async def __anext__(self) -> Batch:
        """The next batch; ``StopAsyncIteration`` once the supervisor stopped.

        Raises:
            RuntimeError: the supervisor's run ended before the stream did.

        Cancellation: atomic; a batch taken after the cancellation is kept for the next
        call.
        """
        if self._kept is not None:
            batch, self._kept = self._kept, None
            return batch
        if self._ended:
            raise StopAsyncIteration
        receiver = self._receiver
        got = await self._guest.call(
            "sup.batches()",
            _receive,
            receiver,
            nowait=None if self._nowait is None else self._nowait,
            orphan=self._keep,
        )
        if got is None:
            self._ended = True
            raise StopAsyncIteration
        return got

    def _keep(self, batch: Batch | None) -> None:
        if batch is None:
            self._ended = True
        else:
            self._kept = batch


@final
class AioMessageStream:
    """``async for msg in sup.messages()``: the messages of each batch, one by one.

    Created by :meth:`AioSupervisor.messages` only.
    """

    def __init__(self, batches: AioBatchStream) -> None:
        self._batches = batches
        self._pending: Batch = ()
        self._next = 0

    def __aiter__(self) -> AioMessageStream:
        return self

    async def __anext__(self) -> Message:
        """The next message; ``StopAsyncIteration`` once the supervisor stopped.

        Raises:
            RuntimeError: the supervisor's run ended before the stream did.

        Cancellation: atomic; nothing is consumed by a cancelled call.
        """
        if self._next < len(self._pending):
            message = self._pending[self._next]
            self._next += 1
            return message
        batch = await self._batches.__anext__()
        self._pending, self._next = batch, 1
        return batch[0]
