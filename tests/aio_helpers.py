"""Helpers for the asyncio front door's tests: a fake exchange in a Trio thread of its own.

An asyncio test cannot share its Trio run with a fake (the one Trio run of its thread is
the supervisor's guest), so the fake runs under ``trio.run`` in a separate thread and the
supervisor reaches it over loopback TCP. The asyncio side awaits the fake's Trio
functions with :meth:`FakeThread.call`: the result comes back through
``loop.call_soon_threadsafe``, so waiting on the fake never blocks the loop (and with it
the supervisor's guest run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple

import trio

from supervisor.testing import FakeExchange, open_fake_exchange

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: Bound on every blocking wait of the test thread for the fake's thread.
THREAD_DEADLINE = 30.0


class FakeThread:
    """``open_fake_exchange(**options)`` (TCP), run by ``trio.run`` in its own thread.

    ``with FakeThread(name="a") as fake_thread:`` starts it and waits until it listens;
    leaving the block closes the fake (its sessions get 1001) and joins the thread.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake exchange", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> FakeThread:
        self._thread.start()
        if not self._ready.wait(THREAD_DEADLINE):
            raise TimeoutError("the fake exchange did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._token.run_sync_soon(self._stop.set)
        self._thread.join(THREAD_DEADLINE)
        assert not self._thread.is_alive(), "the fake exchange's thread did not end"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        async with open_fake_exchange(**self._options) as fake, trio.open_nursery() as nursery:
            self.fake: FakeExchange = fake
            self._nursery = nursery
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    @property
    def url(self) -> str:
        return self.fake.url

    async def call(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Await ``fn(*args)`` run in the fake's Trio thread, from asyncio."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        async def run() -> None:
            try:
                done.set_result(await fn(*args))
            except Exception as exc:
                done.set_exception(exc)

        self._token.run_sync_soon(self._nursery.start_soon, run)
        return await asyncio.wrap_future(done)

    async def wait_until(self, predicate: Callable[[FakeExchange], bool]) -> None:
        """``fake.wait_until(predicate)``, awaited from asyncio."""
        await self.call(self.fake.wait_until, predicate)

    def sync(self, fn: Callable[[], T]) -> T:
        """Run a quick synchronous ``fn()`` in the fake's thread and return its result."""
        return trio.from_thread.run_sync(fn, trio_token=self._token)


def open_fds() -> set[str]:
    """This process's open file descriptors (Linux)."""
    return set(os.listdir("/proc/self/fd"))


class OneByteReads(trio.abc.Stream):
    """A TCP stream whose reads return at most one byte.

    The supervisor makes one batch of each read of the socket; a burst of frames may
    arrive in one read or in several, as the kernel pleases. One byte per read makes it
    one batch per frame, whatever the timing, so a ``buffer`` of N batches holds N
    frames and the drops of an overflow policy are exact.
    """

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(1)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._inner.aclose()


async def one_byte_reads(url: str) -> trio.abc.Stream:
    """A connector (``open_supervisor(connector=...)``) for ``ws://HOST:PORT/...``."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return OneByteReads(await trio.open_tcp_stream(parts.hostname, parts.port))
