"""No secret anywhere (issue 13, audit M7): plant secrets, capture every output, look.

One supervisor runs over loopback TCP against the fake exchange with a token in the
URL's path and query, and a raw ``login`` frame with an API key, passphrase and
signature; a second connection points at a port that refuses, so connect errors are
produced too, and the fake first answers the upgrade with 503, so a handshake error is.
Then a config with secrets is loaded wrong, and ``marketprism check`` reads a good and a
bad config file with secrets. Every log record (DEBUG and up, with tracebacks), the
stats snapshot as JSON, every error text, every ``repr``/``str`` and the CLI's stdout and
stderr are captured and searched for each planted secret.

A second test plants proxy passwords: in a connection's ``proxy``, a ``[defaults]``
chain, the environment and an invalid proxy URL, and runs ``marketprism probe`` through
a real tinyproxy that requires them (right and wrong password, text and ``--json``);
config reprs, routes, config problems, ``check`` and the probe's stdout and stderr are
searched for them. Proxy *user names* are shown on purpose (``user:***@``, see
:func:`actors.redact.redact_url`), so the planted user name is not a secret there.

To cover a new output, capture its text into ``outputs`` and plant its secrets in
``SECRETS``: :func:`helpers.assert_no_secrets` does the rest.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio
from helpers import SUBSCRIBE, assert_no_secrets
from test_probe import ENV, binance, peers, rest, run_probe, write_config

from actors import ConfigError
from actors.net import TcpTlsConnector
from supervisor import config_from_dict, loads_config, open_supervisor
from supervisor.cli import main as cli_main
from supervisor.testing import open_fake_exchange
from supervisor.testing.proxies import open_tinyproxy
from supervisor.wiring import resolve_routes

API_KEY = "AK-5f2e9c0a-key"
PASSPHRASE = "hunter2-passphrase"
SIGN = "c2lnbmF0dXJlLXNlY3JldA=="
TOKEN = "SECRET-TOKEN-77"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnLWp3dA"
LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
USER = "APIKEY-USER-1d4e"
PASSWORD = "s3cret-password"
SECRETS = (API_KEY, PASSPHRASE, SIGN, TOKEN, JWT, LISTEN_KEY, USER, PASSWORD)
PROXY_USER = "probe-user"
PROXY_PASSWORD = "Pr0xy-pa55word-41"
WRONG_PASSWORD = "Wr0ng-pa55word-17"
CHAIN_PASSWORD = "Ch41n-pa55word-23"
ENV_PASSWORD = "Env-pa55word-88"
PROXY_SECRETS = (PROXY_PASSWORD, WRONG_PASSWORD, CHAIN_PASSWORD, ENV_PASSWORD)

LOGIN = (
    '{"op":"login","args":[{"apiKey":"' + API_KEY + '","passphrase":"' + PASSPHRASE + '",'
    '"timestamp":"1538054050","sign":"' + SIGN + '"}]}'
)


class CountingConnector:
    """The production connector, counting attempts per URL; wakes a waiter at a count."""

    def __init__(self) -> None:
        self._connect = TcpTlsConnector()
        self.attempts: Counter[str] = Counter()
        self._waiters: list[tuple[str, int, trio.Event]] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        self.attempts[url] += 1
        for wanted, count, event in self._waiters:
            if wanted == url and self.attempts[url] >= count:
                event.set()
        return await self._connect(url)

    async def wait_for(self, url: str, count: int) -> None:
        """Return once ``url`` was attempted ``count`` times."""
        event = trio.Event()
        self._waiters.append((url, count, event))
        if self.attempts[url] >= count:
            event.set()
        await event.wait()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def secret_url(base: str) -> str:
    """``base`` (``ws://host:port/ws``) with a listenKey path and credentials in the query."""
    return f"{base}/{LISTEN_KEY}?token={TOKEN}&jwt={JWT}&sig={SIGN}"


async def test_no_secret_reaches_logs_stats_errors_reprs_or_check(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    refusing_port: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: dict[str, str] = {}

    # -- a running supervisor --------------------------------------------------------
    async with open_fake_exchange(name="a", transport="tcp", interval=0.05) as fake:
        fake.refuse(0.2, status=503)
        down_url = secret_url(f"ws://127.0.0.1:{refusing_port}/ws")
        config = config_from_dict(
            {
                "supervisor": {"shutdown_timeout": 1.0},
                "defaults": {
                    "exchange": "raw",
                    "subscribe": [LOGIN, SUBSCRIBE],
                    "backoff": {"initial": 0.05, "max": 0.1, "jitter": "none"},
                },
                "connections": {
                    "a": {"url": secret_url(fake.url)},
                    "down": {"url": down_url},
                },
            }
        )
        connector = CountingConnector()
        with trio.fail_after(30):
            async with open_supervisor(config, connector=connector) as sup:
                await fake.wait_until(lambda f: f.refused >= 1)
                async for message in sup.messages():
                    if message.connection == "a":
                        break
                # The third attempt starts after the second failure was recorded.
                await connector.wait_for(down_url, 3)
                stats = await sup.stats()
    # The wire still carries the frames as configured.
    assert fake.sessions[-1].received[:2] == [LOGIN, SUBSCRIBE]
    a, down = stats.connections
    assert a.subscriptions == {
        'subscribe[0] {"op":"login","args":"***"}': "live",
        f"subscribe[1] {SUBSCRIBE}": "live",
    }
    assert a.url == f"{fake.url}/***?token=***&jwt=***&sig=***"
    assert a.last_error.startswith("HandshakeRejected: ")
    assert down.last_error.startswith("ConnectError: cannot connect to ")
    outputs["stats"] = msgspec.json.encode(stats).decode()
    outputs["stats repr"] = repr(stats)
    outputs["repr(config)"] = repr(config)
    outputs["str(config)"] = str(config)

    # -- config errors ---------------------------------------------------------------
    with pytest.raises(ConfigError) as bad:
        loads_config(
            "[connections.x]\n"
            'exchange = "okx"\n'
            f'url = "https://{USER}:{PASSWORD}@ws.okx.com/ws?token={TOKEN}"\n'
            "[connections.y]\n"
            'exchange = "raw"\n'
            f'url = ["wss://h.example/ws?jwt={JWT}"]\n'
            f"subscribe = '{LOGIN}'\n"
            f'overflow = "{LISTEN_KEY}"\n'
            f'api_key = "{API_KEY}"\n'
        )
    outputs["config error"] = str(bad.value)
    outputs["config error problems"] = repr(bad.value.problems)
    outputs["config error repr"] = repr(bad.value)
    assert bad.value.problems[2:5] == [
        "<string>:6: connections.y.url: ['wss://h.example/ws?jwt=***'] is an array "
        "(expected a string)",
        '<string>:7: connections.y.subscribe: \'{"op":"login","args":"***"}\' is a '
        "string (expected an array of strings)",
        # A token pasted into the wrong key is masked whole: the line says which it is.
        "<string>:8: connections.y.overflow: unknown overflow '***' "
        "(expected one of: block, drop_oldest, drop_newest)",
    ]
    assert len(bad.value.problems) == 6  # and the url twice (not ws, credentials), api_key

    # -- marketprism check -----------------------------------------------------------
    good = tmp_path / "good.toml"
    good.write_text(
        "[connections.feed]\n"
        'exchange = "raw"\n'
        f'url = "{secret_url("wss://stream.example.com/ws")}"\n'
        f"subscribe = ['{LOGIN}']\n",
        encoding="utf-8",
    )
    broken = tmp_path / "broken.toml"
    broken.write_text(
        "[connections.feed]\n"
        'exchange = "raw"\n'
        f'url = "wss://{USER}:{PASSWORD}@stream.example.com/ws/{LISTEN_KEY}?token={TOKEN}"\n'
        f"subscribe = '{LOGIN}'\n",
        encoding="utf-8",
    )
    capsys.readouterr()
    assert cli_main(["check", str(good)]) == 0
    assert cli_main(["check", str(broken)]) == 2
    captured = capsys.readouterr()
    outputs["check stdout"] = captured.out
    outputs["check stderr"] = captured.err
    assert captured.out.splitlines()[0] == f"{good}: OK: 1 connection(s): feed"
    assert captured.err.splitlines() == [
        f"{broken}:3: connections.feed.url: 'wss://***@stream.example.com/ws/***?token=***' "
        "has credentials in clear (expected a URL without user:password@; keep secrets out "
        "of the config)",
        f'{broken}:4: connections.feed.subscribe: \'{{"op":"login","args":"***"}}\' '
        "is a string (expected an array of strings)",
    ]

    outputs["logs"] = caplog.text
    assert "connected to" in caplog.text  # the logs did see the URL, masked
    assert_no_secrets(outputs, SECRETS)


def test_assert_no_secrets_names_every_leak() -> None:
    with pytest.raises(AssertionError) as leak:
        assert_no_secrets(
            {"logs": f"connected to wss://h/ws?token={TOKEN}", "stats": '"k": "a%2Fb"'},
            [TOKEN, "a/b", "absent"],
        )
    assert str(leak.value).splitlines()[:3] == [
        "secrets leaked:",
        f"{TOKEN!r} in logs: ...connected to wss://h/ws?token={TOKEN}...",
        '\'a/b\' in stats: ..."k": "a%2Fb"...',
    ]


async def test_no_proxy_password_in_config_routes_check_or_probe(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: dict[str, str] = {}
    user = PROXY_USER

    # -- config and routes -------------------------------------------------------------
    config = loads_config(
        "[defaults]\n"
        'exchange = "binance"\n'
        f'proxy = ["socks5h://{user}:{CHAIN_PASSWORD}@10.0.0.1:1080", "http://10.0.0.2:3128"]\n'
        "[connections.a]\n"
        'channels = ["trades"]\n'
        'symbols = ["BTC-USDT"]\n'
        f'proxy = "http://{user}:{PROXY_PASSWORD}@10.0.0.3:3128"\n'
        "[connections.b]\n"
        'exchange = "okx"\n'
        'channels = ["trades"]\n'
        'symbols = ["BTC-USDT"]\n',
        source="proxies.toml",
    )
    routes = resolve_routes(config, {})
    assert [route.describe() for route in routes] == [
        f"http://{user}:***@10.0.0.3:3128 (connections.a.proxy)",
        f"socks5h://{user}:***@10.0.0.1:1080 -> http://10.0.0.2:3128 ([defaults] proxy)",
    ]
    outputs["repr(config)"] = repr(config)
    outputs["str(config)"] = str(config)
    outputs["routes"] = repr(routes) + str([str(r) for r in routes])
    outputs["hops"] = repr([hop for route in routes for hop in route.hops])
    okx = config_from_dict(
        {"connections": {"c": {"exchange": "okx", "channels": ["trades"], "symbols": ["BTC-USDT"]}}}
    )
    with pytest.raises(ConfigError) as env_error:
        resolve_routes(okx, {"HTTPS_PROXY": f"socks9://{user}:{ENV_PASSWORD}@h:1"})
    assert env_error.value.problems == [
        f"<dict>: connections.c: environment HTTPS_PROXY: 'socks9://{user}:***@h:1' has an "
        "unsupported scheme 'socks9' (expected http, https, socks4, socks4a, socks5, socks5h)"
    ]
    outputs["environment proxy error"] = str(env_error.value)
    with pytest.raises(ConfigError) as bad:
        loads_config(
            "[connections.x]\n"
            'exchange = "okx"\n'
            f'proxy = ["socks4://{user}:{PROXY_PASSWORD}@h:1", "none"]\n'
        )
    outputs["proxy config error"] = str(bad.value)
    assert bad.value.problems == [
        "<string>:3: connections.x.proxy: at index 0: "
        f"'socks4://{user}:***@h:1': SOCKS4 has no passwords, only a user id (expected "
        "socks4://userid@host:port, or socks5:// for user:password)",
    ]

    # -- marketprism check with proxies ------------------------------------------------
    checked = tmp_path / "checked.toml"
    checked.write_text(
        "[connections.a]\n"
        'exchange = "okx"\n'
        'channels = ["trades"]\n'
        'symbols = ["BTC-USDT"]\n'
        f'proxy = "socks5://{user}:{PROXY_PASSWORD}@127.0.0.1:1080"\n'
        "[connections.b]\n"
        'exchange = "okx"\n'
        'channels = ["trades"]\n'
        'symbols = ["BTC-USDT"]\n'
        f'proxy = "socks5://{user}:{WRONG_PASSWORD}@127.0.0.1:0"\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    assert cli_main(["check", str(checked)]) == 2
    captured = capsys.readouterr()
    outputs["check stdout"], outputs["check stderr"] = captured.out, captured.err
    assert captured.err == (
        f"{checked}:10: connections.b.proxy: 'socks5://{user}:***@127.0.0.1:0' has an "
        "invalid port (expected a port from 1 to 65535)\n"
    )

    # -- marketprism probe through a proxy that needs the password ----------------------
    with trio.fail_after(60):
        async with (
            binance() as fake,
            rest() as api,
            open_tinyproxy(tmp_path, auth=(user, PROXY_PASSWORD)) as proxy,
        ):
            right = write_config(tmp_path / "right.toml", fake.url, f'proxy = "{proxy.url()}"\n')
            wrong = write_config(
                tmp_path / "wrong.toml",
                fake.url,
                f'proxy = "{proxy.url(password=WRONG_PASSWORD)}"\n',
            )
            for name, args in {
                "probe": ["spot", "--config", str(right), "--rest-url", api.url],
                "probe --json": ["spot", "--config", str(right), "--json", "--rest-url", api.url],
                "probe wrong password": ["spot", "--config", str(wrong)],
                "probe wrong password --json": ["spot", "--config", str(wrong), "--json"],
            }.items():
                result = await run_probe(*args, cwd=tmp_path)
                outputs[f"{name} stdout"] = result.stdout.decode()
                outputs[f"{name} stderr"] = result.stderr.decode()
                assert result.returncode == (1 if "wrong" in name else 0), outputs
            # A bare URL through an environment proxy with a password in it.
            env = {**ENV, "HTTP_PROXY": proxy.url()}
            result = await run_probe(fake.url, cwd=tmp_path, env=env)
            outputs["probe URL stdout"] = result.stdout.decode()
            outputs["probe URL stderr"] = result.stderr.decode()
            assert result.returncode == 0, outputs
    # The probes did go through the proxy with the password, and showed the hop masked.
    assert peers(fake) == [proxy.outgoing] * 3
    hop = f"http://{user}:***@127.0.0.1:{proxy.port}"
    assert f"{hop} (connections.spot.proxy)" in outputs["probe stdout"]
    assert f"({hop}) rejected the credentials" in outputs["probe wrong password stdout"]
    assert f"{hop} (environment HTTP_PROXY)" in outputs["probe URL stdout"]

    outputs["logs"] = caplog.text
    assert_no_secrets(outputs, PROXY_SECRETS)
