"""A fake exchange in a thread of its own, for tests whose event loop is not Trio's.

An asyncio bot (or any client) can be tested against the same rule-enforcing fakes over
loopback TCP: :func:`fake_exchange_in_thread` runs :func:`open_fake_exchange` in a
background thread with its own ``trio.run`` and hands back a :class:`ThreadedFake`::

    with fake_exchange_in_thread("okx", FakeOkx()) as venue:
        config = {"connections": {"okx": {"exchange": "okx", "url": venue.url, ...}}}
        async with supervisor.aio.open_supervisor(config_from_dict(config)) as sup:
            ...
            venue.call(venue.fake.close, 1001, "restarting")   # a fault, in the fake's thread
            assert venue.read(lambda fake: len(fake.sessions)) == 2

Theory of operation: the thread runs the fake until the ``with`` block exits, then
cancels it and joins the thread (bounded by ``stop_timeout``). Every use of the fake's
state from the caller's thread goes through :meth:`ThreadedFake.call` (an async
function) or :meth:`ThreadedFake.read` (a plain one), which run it in the fake's
thread and return its result, so the fake is never touched from two threads at once.
Both block the calling thread until done: from an asyncio test, wrap them in
``await asyncio.to_thread(venue.call, ...)`` when the fake's reply needs the test's own
loop to make progress meanwhile (a fault whose effect the client must see to answer).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio

from supervisor.testing.fake import FakeExchange, SessionHandler, open_fake_exchange

__all__ = ["ThreadedFake", "fake_exchange_in_thread"]

T = TypeVar("T")


class ThreadedFake:
    """A running fake exchange in its own thread (see the module docstring).

    Attributes:
        fake: the :class:`FakeExchange`; read or change it only through :meth:`call` or
            :meth:`read`.
        url: where clients connect (``ws://127.0.0.1:PORT/ws``); safe to read anywhere.
    """

    def __init__(self, fake: FakeExchange, token: trio.lowlevel.TrioToken) -> None:
        self.fake = fake
        self.url = fake.url
        self._token = token

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the fake's thread and return its result (blocks)."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def read(self, fn: Callable[[FakeExchange], T]) -> T:
        """Return ``fn(fake)``, evaluated in the fake's thread (blocks)."""
        return trio.from_thread.run_sync(fn, self.fake, trio_token=self._token)


@contextlib.contextmanager
def fake_exchange_in_thread(
    name: str,
    handler: SessionHandler | None = None,
    *,
    interval: float = 1.0,
    stop_timeout: float = 10.0,
    **options: Any,
) -> Iterator[ThreadedFake]:
    """Run a fake exchange on loopback TCP in a background thread while the block runs.

    Args:
        name: the fake's name.
        handler: the venue's rules (``FakeOkx()``, ``FakeBinance()``, ...), or ``None``
            for the generic numbered feed.
        interval: seconds between data frames.
        stop_timeout: seconds to wait for the thread to end after the block.
        **options: more keyword arguments for :func:`open_fake_exchange`.

    Raises:
        RuntimeError: the fake did not start (its error is the cause), or its thread
            did not end within ``stop_timeout``.
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with open_fake_exchange(
            name=name, transport="tcp", interval=interval, handler=handler, **options
        ) as fake:
            box["venue"] = ThreadedFake(fake, trio.lowlevel.current_trio_token())
            cancel = trio.CancelScope()
            box["cancel"] = cancel
            started.set()
            with cancel:
                await trio.sleep_forever()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name=f"fake exchange {name}", daemon=True)
    thread.start()
    started.wait()
    if "venue" not in box:
        thread.join()
        raise RuntimeError(f"the fake exchange {name!r} did not start") from box.get("error")
    venue: ThreadedFake = box["venue"]
    try:
        yield venue
    finally:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(box["cancel"].cancel, trio_token=venue._token)
        thread.join(stop_timeout)
        if thread.is_alive():
            raise RuntimeError(f"the fake exchange {name!r} did not stop within {stop_timeout:g} s")
        if "error" in box:
            raise RuntimeError(f"the fake exchange {name!r} failed") from box["error"]
