"""Config -> children: adapter factories and the per-host shared request pacer."""

from __future__ import annotations

import pytest
import trio

from actors import RegistryClient
from actors.exchanges import ADAPTERS, DeribitProtocol, Pacer
from actors.registry import RegistryEvent
from supervisor import Config, config_from_dict
from supervisor.wiring import build_actors


def _config(*urls: str) -> Config:
    return config_from_dict(
        {
            "connections": {
                f"c{index}": {
                    "exchange": "deribit",
                    "url": url,
                    "channels": ["trades"],
                    "symbols": ["BTC-USD-PERP"],
                }
                for index, url in enumerate(urls)
            }
        }
    )


def _pacers(config: Config) -> list[Pacer | None]:
    send, _ = trio.open_memory_channel[RegistryEvent](1)

    async def never(url: str) -> trio.abc.Stream:  # pragma: no cover - nothing connects
        raise AssertionError(url)

    actors = build_actors(
        config, registry=RegistryClient(send), connectors=[never] * len(config.connections)
    )
    assert [actor.spec for actor in actors] == list(config.connections)
    return [actor.protocol.pacer for actor in actors]


def test_connections_to_one_host_share_one_pacer() -> None:
    a, b, c = _pacers(
        _config(
            "wss://www.deribit.com/ws/api/v2",
            "wss://www.deribit.com/ws/api/v2",
            "wss://test.deribit.com/ws/api/v2",
        )
    )
    assert a is not None and c is not None
    assert a is b
    assert a is not c


class _Rerouted(DeribitProtocol):
    """An adapter that picks its endpoint itself, like Binance USD-M's /market."""

    @property
    def url(self) -> str:
        return "wss://same.example/ws"


def test_pacer_host_comes_from_the_url_the_adapter_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config("wss://www.deribit.com/ws/api/v2", "wss://test.deribit.com/ws/api/v2")
    monkeypatch.setitem(ADAPTERS, "deribit", _Rerouted)
    a, b = _pacers(config)
    assert a is not None
    assert a is b
