"""The probes' decisions and the metrics, exactly, from hand-made stats snapshots (no I/O)."""

from __future__ import annotations

from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from actors.books import BookStats
from actors.histogram import Buckets
from actors.registry import RestStats, SubscriptionStats
from supervisor import Config, ConnectionStats, Stats, config_from_dict
from supervisor.status import render_metrics
from supervisor.status._health import health, readiness


def conn(name: str, **fields: Any) -> ConnectionStats:
    values: dict[str, Any] = {
        "name": name,
        "exchange": "raw",
        "url": f"ws://{name}.fake.invalid/ws",
        "state": "live",
        "state_for": 1.0,
        "connects": 1,
        "disconnects": 0,
        "restarts": 0,
        "frames": 0,
        "messages": 0,
        "bytes": 0,
        "dropped": 0,
        "queued_bytes": 0,
        "malformed": 0,
        "gaps": 0,
        "rate": 0.0,
        "idle_for": None,
        "backoff": 0.0,
        "last_error": "",
        "subscriptions": {"trades": "live"},
    }
    values.update(fields)
    return ConnectionStats(**values)


def config(*restart: tuple[str, str]) -> Config:
    """Raw connections ``name`` with restart type ``restart``, in that order."""
    return config_from_dict(
        {
            "connections": {
                name: {
                    "exchange": "raw",
                    "url": f"wss://{name}.example.com/ws",
                    "subscribe": ["{}"],
                    "restart": kind,
                }
                for name, kind in restart
            }
        },
        source="<test>",
    )


def as_json(verdict: object) -> Any:
    return msgspec.json.decode(msgspec.json.encode(verdict))


def test_health_names_each_state_and_each_failed_or_silent_topic() -> None:
    cfg = config(("a", "permanent"), ("b", "permanent"), ("t", "temporary"))
    stats = Stats(
        at=5.0,
        connections=(
            conn(
                "a",
                subscriptions={
                    "trades": "live",
                    "books": "silent",
                    "tickers": "failed: 30001 unknown symbol",
                    "new": "pending",
                },
            ),
            conn("b", state="backoff", last_error="ConnectionLost: close code 4000"),
            conn("t", state="failed", subscriptions={"x": "failed: 1 no"}),
        ),
    )
    verdict = health(cfg, stats)
    assert not verdict.ok
    assert as_json(verdict) == {
        "status": "unhealthy",
        "at": 5.0,
        "reasons": [
            {
                "connection": "a",
                "exchange": "raw",
                "why": "subscription",
                "state": "silent",
                "subscription": "books",
            },
            {
                "connection": "a",
                "exchange": "raw",
                "why": "subscription",
                "state": "failed: 30001 unknown symbol",
                "subscription": "tickers",
            },
            {
                "connection": "b",
                "exchange": "raw",
                "why": "state",
                "state": "backoff",
                "last_error": "ConnectionLost: close code 4000",
            },
        ],
    }


def test_without_a_permanent_connection_every_connection_counts() -> None:
    cfg = config(("a", "transient"), ("t", "temporary"))
    stats = Stats(at=1.0, connections=(conn("a"), conn("t", state="connecting", connects=0)))
    assert [r.connection for r in health(cfg, stats).reasons] == ["t"]
    assert [(r.connection, r.why) for r in readiness(cfg, stats, running=True).reasons] == [
        ("t", "never live")
    ]


def test_readiness_accepts_reconnecting_but_not_failed_or_never_live() -> None:
    cfg = config(("a", "permanent"), ("b", "permanent"), ("c", "permanent"))
    ready = Stats(
        at=2.0,
        connections=(
            conn("a"),
            conn("b", state="backoff", connects=3),
            conn("c", state="connecting", connects=1),
        ),
    )
    assert as_json(readiness(cfg, ready, running=True)) == {
        "status": "ok",
        "at": 2.0,
        "reasons": [],
    }
    assert as_json(readiness(cfg, ready, running=False)) == {
        "status": "stopped",
        "at": 2.0,
        "reasons": [],
    }
    not_ready = Stats(
        at=3.0,
        connections=(
            conn("a", state="failed", connects=2, last_error="HandshakeRejected: 403"),
            conn("b", state="connecting", connects=0),
            conn("c", state="stopped"),
        ),
    )
    assert as_json(readiness(cfg, not_ready, running=True)) == {
        "status": "not ready",
        "at": 3.0,
        "reasons": [
            {
                "connection": "a",
                "exchange": "raw",
                "why": "state",
                "state": "failed",
                "last_error": "HandshakeRejected: 403",
            },
            {"connection": "b", "exchange": "raw", "why": "never live", "state": "connecting"},
            {"connection": "c", "exchange": "raw", "why": "state", "state": "stopped"},
        ],
    }


def test_metrics_of_a_snapshot() -> None:
    stats = Stats(
        at=9.0,
        connections=(
            conn(
                "a",
                exchange="binance",
                state="backoff",
                connects=2,
                disconnects=1,
                messages=7,
                idle_for=None,
                probe_rtt=0.25,
                probe_rtt_smoothed=0.5,
                rest=RestStats(used_weight=21),
                subscriptions={"btcusdt@trade": "failed: -1121 Invalid symbol"},
            ),
        ),
    )
    text = render_metrics(stats).decode()
    got = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("connection", "a"), ("exchange", "binance"))
    assert got[("marketprism_connects_total", labels)] == 2.0
    assert got[("marketprism_disconnects_total", labels)] == 1.0
    assert got[("marketprism_messages_total", labels)] == 7.0
    assert got[("marketprism_probe_rtt_last_seconds", labels)] == 0.25
    assert got[("marketprism_probe_rtt_smoothed_seconds", labels)] == 0.5
    assert got[("marketprism_rest_used_weight", labels)] == 21.0
    # Unknown values are left out, not exported as 0.
    assert ("marketprism_idle_seconds", labels) not in got
    assert ("marketprism_clock_offset_seconds", labels) not in got
    assert ("marketprism_rest_held_seconds", labels) not in got
    assert {
        dict(key)["state"]: value
        for (name, key), value in got.items()
        if name == "marketprism_connection_state"
    } == {
        "connecting": 0.0,
        "subscribing": 0.0,
        "live": 0.0,
        "backoff": 1.0,
        "failed": 0.0,
        "stopped": 0.0,
    }
    assert {
        (dict(key)["subscription"], dict(key)["state"]): value
        for (name, key), value in got.items()
        if name == "marketprism_subscription_state"
    } == {
        ("btcusdt@trade", "pending"): 0.0,
        ("btcusdt@trade", "live"): 0.0,
        ("btcusdt@trade", "silent"): 0.0,
        ("btcusdt@trade", "failed"): 1.0,
    }
    # Without histograms (a snapshot built by hand), none are exported.
    assert not [key for key in got if key[0].startswith("marketprism_feed_latency_seconds")]
    assert "# TYPE marketprism_connects_total counter\n" in text
    assert "# TYPE marketprism_connection_state gauge\n" in text


def test_histograms_and_subscription_counts_in_the_metrics() -> None:
    latency = Buckets()
    for value in (-0.004, 0.001, 0.003, 0.02, 0.02, 7.0, 60.0):
        latency.observe(value)
    rtt = Buckets()
    rtt.observe(0.25)
    stats = Stats(
        at=9.0,
        connections=(
            conn(
                "a",
                exchange="okx",
                feed_latency=latency.snapshot(),
                probe_rtt_histogram=rtt.snapshot(),
                subscriptions={"trades:BTC-USDT": "live", "trades:ETH-USDT": "pending"},
                subscription_stats={
                    "trades:BTC-USDT": SubscriptionStats(
                        state="live", state_for=3.0, messages=41, last_message_age=0.5
                    ),
                    "trades:ETH-USDT": SubscriptionStats(state="pending", state_for=3.0),
                },
            ),
        ),
    )
    text = render_metrics(stats).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["marketprism_feed_latency_seconds"].type == "histogram"
    buckets = {
        sample.labels["le"]: sample.value
        for sample in families["marketprism_feed_latency_seconds"].samples
        if sample.name.endswith("_bucket")
    }
    # -0.004 counts as 0; each bound holds what is at or below it, cumulatively.
    assert buckets == {
        "0.001": 2.0,
        "0.0025": 2.0,
        "0.005": 3.0,
        "0.01": 3.0,
        "0.025": 5.0,
        "0.05": 5.0,
        "0.1": 5.0,
        "0.25": 5.0,
        "0.5": 5.0,
        "1.0": 5.0,
        "2.5": 5.0,
        "5.0": 5.0,
        "10.0": 6.0,
        "+Inf": 7.0,
    }
    totals = {
        sample.name: sample.value
        for sample in families["marketprism_feed_latency_seconds"].samples
        if not sample.name.endswith("_bucket")
    }
    assert totals["marketprism_feed_latency_seconds_count"] == 7.0
    assert totals["marketprism_feed_latency_seconds_sum"] == 0.001 + 0.003 + 0.04 + 67.0
    rtt_buckets = [
        (sample.labels["le"], sample.value)
        for sample in families["marketprism_probe_rtt_seconds"].samples
        if sample.name.endswith("_bucket")
    ]
    assert ("0.1", 0.0) in rtt_buckets and ("0.25", 1.0) in rtt_buckets
    subs = {
        (sample.name, sample.labels["subscription"]): sample.value
        for name in (
            "marketprism_subscription_messages",
            "marketprism_subscription_last_message_age_seconds",
        )
        for sample in families[name].samples
    }
    # A topic without data yet has no series (not a 0 that looks like a count).
    assert subs == {
        ("marketprism_subscription_messages_total", "trades:BTC-USDT"): 41.0,
        ("marketprism_subscription_last_message_age_seconds", "trades:BTC-USDT"): 0.5,
    }


def test_local_books_in_the_metrics() -> None:
    valid = BookStats(
        state="valid",
        bids=40,
        asks=38,
        sequence=1234,
        age=0.25,
        resyncs=1,
        reason="sequence gap: update 7->9 does not continue 5",
        snapshots=2,
    )
    syncing = BookStats(
        state="syncing",
        bids=0,
        asks=0,
        sequence=None,
        age=None,
        resyncs=0,
        reason="",
        snapshots=0,
    )
    stats = Stats(
        at=9.0,
        connections=(conn("a", exchange="okx", books={"BTC-USDT": valid, "ETH-USDT": syncing}),),
    )
    text = render_metrics(stats).decode()
    got = {
        (
            sample.name,
            sample.labels["symbol"],
            sample.labels.get("state", "") + sample.labels.get("side", ""),
        ): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("marketprism_book_")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
    assert got == {
        ("marketprism_book_state", "BTC-USDT", "syncing"): 0.0,
        ("marketprism_book_state", "BTC-USDT", "valid"): 1.0,
        ("marketprism_book_state", "BTC-USDT", "invalid"): 0.0,
        ("marketprism_book_state", "ETH-USDT", "syncing"): 1.0,
        ("marketprism_book_state", "ETH-USDT", "valid"): 0.0,
        ("marketprism_book_state", "ETH-USDT", "invalid"): 0.0,
        ("marketprism_book_resyncs_total", "BTC-USDT", ""): 1.0,
        ("marketprism_book_resyncs_total", "ETH-USDT", ""): 0.0,
        ("marketprism_book_snapshots_total", "BTC-USDT", ""): 2.0,
        ("marketprism_book_snapshots_total", "ETH-USDT", ""): 0.0,
        ("marketprism_book_levels", "BTC-USDT", "bid"): 40.0,
        ("marketprism_book_levels", "BTC-USDT", "ask"): 38.0,
        ("marketprism_book_levels", "ETH-USDT", "bid"): 0.0,
        ("marketprism_book_levels", "ETH-USDT", "ask"): 0.0,
        # Only a valid book has an age.
        ("marketprism_book_last_update_age_seconds", "BTC-USDT", ""): 0.25,
    }
