"""Shared helpers for the supervisor's own tests."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import trio

from supervisor import Config, config_from_dict
from supervisor.testing import FakeExchange, route

#: The frame every test connection sends after connecting.
SUBSCRIBE = '{"op":"subscribe","args":["trades"]}'


def make_config(
    *fakes: FakeExchange,
    supervisor: dict[str, Any] | None = None,
    backoff: dict[str, Any] | None = None,
    per_connection: dict[str, dict[str, Any]] | None = None,
    **defaults: Any,
) -> Config:
    """A config with one raw connection per fake (named after it), deterministic backoff."""
    per_connection = per_connection or {}
    return config_from_dict(
        {
            "supervisor": {"shutdown_timeout": 1.0, **(supervisor or {})},
            "defaults": {
                "exchange": "raw",
                "subscribe": [SUBSCRIBE],
                "stale_after": 5.0,
                "backoff": {
                    "initial": 1.0,
                    "max": 8.0,
                    "multiplier": 2.0,
                    "jitter": "none",
                    "reset_after": 10.0,
                    **(backoff or {}),
                },
                **defaults,
            },
            "connections": {
                fake.name: {"url": fake.url, **per_connection.get(fake.name, {})} for fake in fakes
            },
        },
        source="<test>",
    )


class RecordingConnector:
    """Routes to memory fakes and records the trio time of every connection attempt."""

    def __init__(self, *fakes: FakeExchange) -> None:
        self._route: Callable[[str], Awaitable[trio.abc.Stream]] = route(*fakes)
        self.attempts: list[tuple[float, str]] = []

    async def __call__(self, url: str) -> trio.abc.Stream:
        self.attempts.append((trio.current_time(), url))
        return await self._route(url)

    def times(self, url: str | None = None) -> list[float]:
        return [t for t, u in self.attempts if url is None or u == url]


def assert_no_secrets(outputs: Mapping[str, str], secrets: Iterable[str]) -> None:
    """Fail if any planted secret appears in any captured output, naming every leak.

    Each secret is also looked for percent-encoded and JSON-escaped, the forms a URL or
    an encoded stats snapshot would carry it in. To cover one more kind of output (a
    proxy's error, ``marketprism probe``), capture its text under a name and add it to
    ``outputs``.

    Args:
        outputs: what was captured, by a name that says where it came from (``"logs"``,
            ``"stats"``, ``"check stderr"``).
        secrets: the secret strings planted in the config, frames and URLs.
    """
    leaks = []
    for secret in secrets:
        forms = {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}
        for where, text in outputs.items():
            for form in sorted(forms):
                at = text.find(form)
                if at >= 0:
                    context = text[max(0, at - 60) : at + len(form) + 20]
                    leaks.append(f"{secret!r} in {where}: ...{context}...")
                    break
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
