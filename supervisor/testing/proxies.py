"""Real proxies on loopback for tests: tinyproxy, microsocks and danted.

Theory of operation: each ``open_*`` context manager writes a config for one daemon into
a directory the caller owns (a test's ``tmp_path``), starts it in the foreground on a
free loopback port, waits until it accepts TCP connections (polling a connect with a
deadline; never a fixed sleep), yields a :class:`RunningProxy`, and stops it (SIGTERM,
then SIGKILL) on the way out, so no daemon outlives its block.

Each daemon binds its *outgoing* connections to its own loopback address
(``outgoing``, e.g. ``127.0.0.3``; Linux routes all of 127.0.0.0/8 to ``lo``), so the
server behind it can tell from the peer address alone which proxy a connection came
through: the proof of a route comes from the far end, not from our own logs.

The daemons are Debian's packages (``tinyproxy``, ``microsocks``, ``dante-server``);
``.ci/run`` installs them. A missing binary raises :class:`ProxyUnavailable` saying
which package to install: tests that need a proxy fail rather than skip.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final
from urllib.parse import quote

import trio

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "ProxyUnavailable",
    "RunningProxy",
    "free_port",
    "open_danted",
    "open_microsocks",
    "open_tinyproxy",
]

#: Seconds a daemon may take to accept its first connection.
DEFAULT_START_TIMEOUT: Final = 10.0
#: Seconds a daemon may take to exit after SIGTERM before it is killed.
_STOP_TIMEOUT: Final = 5.0
#: Between two connect attempts while waiting for a daemon to listen.
_POLL_INTERVAL: Final = 0.02
_LISTEN: Final = "127.0.0.1"


class ProxyUnavailable(RuntimeError):
    """A proxy daemon is not installed, or did not start."""


@dataclasses.dataclass(frozen=True)
class RunningProxy:
    """A proxy daemon that is accepting connections.

    Attributes:
        kind: ``tinyproxy``, ``microsocks`` or ``danted``.
        scheme: the scheme to reach it with (``http``, ``socks4``, ``socks5``, ...).
        host: its listening address.
        port: its listening port.
        outgoing: the loopback address its outgoing connections come from.
        username: the user name it requires, if any.
        password: the password it requires, if any.
        log: the file it logs to (tinyproxy, danted), else its captured output.
    """

    kind: str
    scheme: str
    host: str
    port: int
    outgoing: str
    username: str | None
    password: str | None
    log: Path

    def url(self, *, scheme: str | None = None, password: str | None = None) -> str:
        """Its proxy URL, with its credentials (or ``password`` instead of its own)."""
        userinfo = ""
        if self.username is not None:
            secret = self.password if password is None else password
            userinfo = quote(self.username, safe="")
            if secret is not None:
                userinfo += ":" + quote(secret, safe="")
            userinfo += "@"
        return f"{scheme or self.scheme}://{userinfo}{self.host}:{self.port}"

    def log_text(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port(host: str = _LISTEN) -> int:
    """A TCP port free on ``host`` right now (the daemon binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _binary(name: str, package: str) -> str:
    for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        candidate = Path(folder, name)
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ProxyUnavailable(
            f"{name} is not installed; install it with: apt-get install -y {package}"
        )
    return found


#: What starting a daemon takes: its command line, what it will be, where its output goes.
_Launch = tuple[list[str], RunningProxy, Path]


@asynccontextmanager
async def _running(launch: _Launch) -> AsyncIterator[RunningProxy]:
    argv, proxy, output = launch
    with output.open("wb") as sink:
        process = await trio.lowlevel.open_process(
            list(argv), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        await _wait_listening(proxy, process, output)
        yield proxy
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(_STOP_TIMEOUT):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _wait_listening(proxy: RunningProxy, process: trio.Process, output: Path) -> None:
    with trio.move_on_after(DEFAULT_START_TIMEOUT):
        while process.returncode is None:
            try:
                stream = await trio.open_tcp_stream(proxy.host, proxy.port)
            except OSError:
                await trio.sleep(_POLL_INTERVAL)
                process.poll()
                continue
            await stream.aclose()
            return
    said = _tail(output)
    if process.returncode is not None:
        raise ProxyUnavailable(
            f"{proxy.kind} exited with {process.returncode} before listening on "
            f"{proxy.host}:{proxy.port}: {said}"
        )
    raise ProxyUnavailable(
        f"{proxy.kind} did not listen on {proxy.host}:{proxy.port} within "
        f"{DEFAULT_START_TIMEOUT:g} s: {said}"
    )


def _tail(output: Path) -> str:
    return output.read_text(errors="replace").strip()[-2000:]


@asynccontextmanager
async def open_tinyproxy(
    folder: Path,
    *,
    outgoing: str = "127.0.0.2",
    auth: tuple[str, str] | None = None,
    connect_ports: Sequence[int] = (),
) -> AsyncIterator[RunningProxy]:
    """Run tinyproxy (HTTP CONNECT) on loopback for the duration of the block.

    Args:
        folder: where its config and log go (created if missing).
        outgoing: the loopback address its outgoing connections are bound to.
        auth: ``(user, password)`` it requires (``BasicAuth``), or none.
        connect_ports: the only ports CONNECT may reach; empty allows every port.

    Raises:
        ProxyUnavailable: tinyproxy is not installed, or did not start within
            ``DEFAULT_START_TIMEOUT``.
    """
    async with _running(_tinyproxy(folder, outgoing, auth, connect_ports)) as running:
        yield running


def _tinyproxy(
    folder: Path, outgoing: str, auth: tuple[str, str] | None, connect_ports: Sequence[int]
) -> _Launch:
    binary = _binary("tinyproxy", "tinyproxy")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / f"tinyproxy-{port}.log"
    lines = [
        f"Port {port}",
        f"Listen {_LISTEN}",
        f"Bind {outgoing}",
        "Timeout 30",
        f'LogFile "{log}"',
        "LogLevel Connect",
        "MaxClients 50",
        "Allow 127.0.0.0/8",
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    if auth is not None:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    conf = folder / f"tinyproxy-{port}.conf"
    conf.write_text("\n".join(lines) + "\n")
    proxy = RunningProxy(
        kind="tinyproxy",
        scheme="http",
        host=_LISTEN,
        port=port,
        outgoing=outgoing,
        username=None if auth is None else auth[0],
        password=None if auth is None else auth[1],
        log=log,
    )
    return [binary, "-d", "-c", str(conf)], proxy, folder / f"tinyproxy-{port}.out"


@asynccontextmanager
async def open_microsocks(
    folder: Path,
    *,
    outgoing: str = "127.0.0.3",
    auth: tuple[str, str] | None = None,
) -> AsyncIterator[RunningProxy]:
    """Run microsocks (SOCKS5, optionally with user/password) for the duration of the block.

    microsocks logs nothing useful; what it did shows at the next hop (the peer address
    there is ``outgoing``).

    Raises:
        ProxyUnavailable: microsocks is not installed, or did not start.
    """
    async with _running(_microsocks(folder, outgoing, auth)) as running:
        yield running


def _microsocks(folder: Path, outgoing: str, auth: tuple[str, str] | None) -> _Launch:
    binary = _binary("microsocks", "microsocks")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, "-i", _LISTEN, "-p", str(port), "-b", outgoing]
    if auth is not None:
        argv += ["-u", auth[0], "-P", auth[1]]
    output = folder / f"microsocks-{port}.out"
    proxy = RunningProxy(
        kind="microsocks",
        scheme="socks5",
        host=_LISTEN,
        port=port,
        outgoing=outgoing,
        username=None if auth is None else auth[0],
        password=None if auth is None else auth[1],
        log=output,
    )
    return argv, proxy, output


@asynccontextmanager
async def open_danted(
    folder: Path,
    *,
    outgoing: str = "127.0.0.4",
) -> AsyncIterator[RunningProxy]:
    """Run Dante's danted (SOCKS4 and SOCKS5, no authentication) for the block.

    Its log records every connection it passes, with both ends. (Dante does not speak
    SOCKS4a.)

    Raises:
        ProxyUnavailable: danted (package dante-server) is not installed, or did not start.
    """
    async with _running(_danted(folder, outgoing)) as running:
        yield running


def _danted(folder: Path, outgoing: str) -> _Launch:
    binary = _binary("danted", "dante-server")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / f"danted-{port}.log"
    lines = [
        f"logoutput: {log}",
        f"internal: {_LISTEN} port = {port}",
        f"external: {outgoing}",
        "socksmethod: none",
        "clientmethod: none",
    ]
    if os.geteuid() == 0:
        # As root danted wants to know whom to be; without these it refuses to start.
        lines += ["user.privileged: root", "user.unprivileged: nobody"]
    lines += [
        "client pass {",
        "  from: 127.0.0.0/8 to: 0.0.0.0/0",
        "  log: connect disconnect error",
        "}",
        "socks pass {",
        "  from: 127.0.0.0/8 to: 0.0.0.0/0",
        "  command: connect",
        "  log: connect disconnect error",
        "}",
    ]
    conf = folder / f"danted-{port}.conf"
    conf.write_text("\n".join(lines) + "\n")
    proxy = RunningProxy(
        kind="danted",
        scheme="socks5",
        host=_LISTEN,
        port=port,
        outgoing=outgoing,
        username=None,
        password=None,
        log=log,
    )
    argv = [binary, "-f", str(conf), "-p", str(folder / f"danted-{port}.pid")]
    return argv, proxy, folder / f"danted-{port}.out"
