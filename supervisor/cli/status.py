"""``marketprism status [HOST:PORT]``: the status table of a running instance.

Theory of operation
-------------------
A client of the status endpoint (``run|demo --status HOST:PORT``): it polls
``GET http://HOST:PORT/status`` every ``--interval`` seconds with one
``httpx.AsyncClient`` (Trio; httpx detects it), decodes the body into
:class:`~actors.registry.Stats` (:func:`~supervisor.cli.table.decode_status`) and shows
:func:`~supervisor.cli.table.status_table` of it: redrawn in place with rich ``Live`` on
a terminal, printed once otherwise (``--once``, the default when stdout is not a
terminal, so ``marketprism status | cat`` prints one table and ends). rich ``Live``
writes from the loop here, which is fine: this process holds no exchange connection
whose pongs a slow terminal could delay.

The first fetch must work: an endpoint that is not there, refuses, does not answer in
:data:`DEFAULT_TIMEOUT` seconds or is not a marketprism status endpoint is one line on
stderr naming the URL and what to do, and exit 1. Later failures (the instance stopped
or restarts) show in the title, with the last table kept, and the view keeps polling.
Ctrl-C ends it with exit 0.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from typing import Final

import httpx
import trio
from rich.console import Console
from rich.live import Live

from actors.registry import Stats
from supervisor.cli.table import DEFAULT_REFRESH, StatusDocumentError, decode_status, status_table

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "StatusUnavailable",
    "fetch_status",
    "run_status",
]

#: Where ``marketprism status`` looks without an argument: the address every example of
#: ``run|demo --status`` in this project uses.
DEFAULT_ADDRESS: Final = "127.0.0.1:9464"
#: Seconds between polls.
DEFAULT_INTERVAL: Final = 1.0
#: Seconds one request may take: the endpoint answers from memory in milliseconds.
DEFAULT_TIMEOUT: Final = 5.0
#: Width of the table when stdout is not a terminal (a pipe or a file): no column cut.
_PIPE_WIDTH: Final = 200

EXIT_OK: Final = 0
EXIT_UNREACHABLE: Final = 1


class StatusUnavailable(Exception):
    """The status endpoint at ``url`` could not be read, for ``problem``.

    Attributes:
        url: the URL asked.
        problem: what went wrong, e.g. ``cannot connect: Connection refused``.
    """

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem


def run_status(host: str, port: int, *, interval: float, once: bool) -> int:
    """``marketprism status``: show the table of the instance serving ``host``:``port``.

    Args:
        host: the status endpoint's host (an IPv6 address without brackets).
        port: its port.
        interval: seconds between polls (redrawn at most 4 times a second).
        once: print one table and return (also when stdout is not a terminal).

    Returns:
        0 after one table (``once``) or Ctrl-C; 1 if the first fetch failed (one line
        on stderr says why and what to do).
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    console = Console(file=sys.stdout)
    if not console.is_terminal:
        once = True
        console.width = max(console.width, _PIPE_WIDTH)
    try:
        return trio.run(_status, address, console, interval, once)
    except StatusUnavailable as exc:
        print(
            f"marketprism status: {exc}; is `marketprism run --status {address}` (or "
            f"`marketprism demo --status {address}`) running?",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_OK
    except BaseExceptionGroup as group:
        # Ctrl-C in the middle of a request may arrive wrapped by a task group inside
        # httpx's stack; it is still only Ctrl-C.
        _, rest = group.split(KeyboardInterrupt)
        if rest is None:
            return EXIT_OK
        raise


async def _status(address: str, console: Console, interval: float, once: bool) -> int:
    url = f"http://{address}/status"
    # trust_env=False: this is a call to a local port, and a proxy from the environment
    # (HTTP_PROXY, ALL_PROXY, with NO_PROXY not listing it) would send it to a machine
    # that cannot reach our loopback, or show a proxy's error page as if it were ours.
    async with httpx.AsyncClient(trust_env=False, timeout=None) as client:
        stats = await fetch_status(client, url)
        if once:
            console.print(status_table(stats, title=_title(url, _now())))
            return EXIT_OK
        title = _title(url, _now())
        with Live(console=console, auto_refresh=False) as live:
            down_since: str | None = None
            while True:
                live.update(status_table(stats, title=title), refresh=True)
                await trio.sleep(max(interval, DEFAULT_REFRESH))
                try:
                    stats = await fetch_status(client, url)
                except StatusUnavailable as exc:
                    down_since = down_since or _now()
                    title = (
                        f"marketprism status: {url}: unreachable since {down_since} "
                        f"({exc.problem}); retrying"
                    )
                else:
                    down_since = None
                    title = _title(url, _now())


async def fetch_status(client: httpx.AsyncClient, url: str) -> Stats:
    """One ``GET url``, decoded.

    Args:
        client: the client to use (trust_env off: see ``_status``).
        url: ``http://HOST:PORT/status``.

    Returns:
        The snapshot the endpoint served.

    Raises:
        StatusUnavailable: no answer (refused, unreachable, nothing within
            :data:`DEFAULT_TIMEOUT` seconds), or not a marketprism status document.

    Cancellation: atomic (a cancelled request has no effect).
    """
    with trio.move_on_after(DEFAULT_TIMEOUT) as deadline:
        try:
            response = await client.get(url)
        except httpx.ConnectError as exc:
            raise StatusUnavailable(url, f"cannot connect: {_reason(exc)}") from None
        except httpx.HTTPError as exc:
            raise StatusUnavailable(url, f"no HTTP answer: {_reason(exc)}") from None
    if deadline.cancelled_caught:
        raise StatusUnavailable(url, f"no answer within {DEFAULT_TIMEOUT:g} s")
    if response.status_code != 200:
        raise StatusUnavailable(
            url,
            f"answered HTTP {response.status_code} {response.reason_phrase}, "
            "not a marketprism status document",
        )
    try:
        return decode_status(response.content)
    except StatusDocumentError as exc:
        raise StatusUnavailable(
            url, f"the answer is not a status document of this marketprism version ({exc})"
        ) from None


def _reason(exc: BaseException) -> str:
    """The innermost OS error's text (``Connection refused``), else ``str(exc)``
    without a final full stop (the caller's sentence goes on).

    httpx under Trio wraps it: httpx.ConnectError <- httpcore.ConnectError <- OSError
    ("all attempts to connect ... failed") <- ExceptionGroup of one error per address.
    """
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop(0)
        if isinstance(current, socket.gaierror):
            return str(current.strerror)
        if isinstance(current, OSError) and current.errno:
            # Trio's own text repeats the address ("Error connecting to (...): ...").
            return os.strerror(current.errno)
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        cause = current.__cause__ or current.__context__
        if cause is not None:
            seen.append(cause)
    return str(exc).rstrip(".") or type(exc).__name__


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%H:%M:%S")


def _title(url: str, at: str) -> str:
    return f"marketprism status: {url} at {at}"
