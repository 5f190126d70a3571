"""Prometheus exposition of one stats snapshot, through prometheus_client.

Theory of operation
-------------------
``collect()`` of a prometheus_client collector is synchronous, and ``sup.stats()`` is
not, so the request task takes the snapshot first and hands it to a
:class:`SnapshotCollector`, which only reads it. Each scrape gets its own
``CollectorRegistry`` (never the process-global ``REGISTRY``, which would leak one
supervisor's series into another's and keep a reference to a stopped supervisor).

Every counter is a registry counter that is cumulative over the connection's life (the
registry adds each session's traffic to it and never resets it on a reconnect), so the
``_total`` series never go down while the process lives. A restarted process starts
them at 0 again, which Prometheus' ``rate()`` treats as a counter reset.

State is exported the way kube-state-metrics exports a pod's phase: one gauge with a
``state`` label and one series per possible state, exactly one of them 1 (one-hot).
That keeps every series present all the time (no series appearing and vanishing as the
state changes, which breaks ``rate()``-free alerts like ``== 1 for 5m``), and lets
``sum by (state)`` count connections per state.

Feed latency and probe round trips are also exported as histograms
(``marketprism_feed_latency_seconds``, ``marketprism_probe_rtt_seconds``) built from the
registry's cumulative bucket counts (:mod:`actors.histogram`), so Prometheus can
aggregate them across connections and compute any quantile over any window
(``histogram_quantile(0.99, rate(marketprism_feed_latency_seconds_bucket[5m]))``); the
``_p50``/``_p99`` gauges are the registry's own last-minute percentiles, kept for quick
reads.

Local books (issue 15) get the same one-hot ``marketprism_book_state`` per
``(connection, symbol)``, with ``_book_resyncs_total`` and ``_book_snapshots_total``
(cumulative over the connection's life), ``_book_levels{side}`` and
``_book_last_update_age_seconds``.

Adding a field of :class:`~actors.registry.ConnectionStats` to the exposition is one
line in :data:`COUNTERS`, :data:`GAUGES` or :data:`HISTOGRAMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from typing import Final

import msgspec
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from actors.histogram import Histogram
from actors.registry import ConnectionState, ConnectionStats, Stats

__all__ = ["COUNTERS", "GAUGES", "HISTOGRAMS", "SnapshotCollector", "render_metrics"]

#: Every metric name starts with this.
PREFIX: Final = "marketprism_"
#: The labels every per-connection series carries.
LABELS: Final = ("connection", "exchange")
#: The states a subscription can be in (``failed: CODE MSG`` counts as ``failed``).
SUBSCRIPTION_STATES: Final = ("pending", "live", "silent", "failed")


class Field(msgspec.Struct, frozen=True):
    """One exported number per connection.

    Attributes:
        name: the metric name after the prefix (without ``_total`` for counters: the
            client adds it).
        help: the HELP text.
        read: reads the value from a connection's stats; ``None`` leaves the series
            out for that connection (not known yet).
    """

    name: str
    help: str
    read: Callable[[ConnectionStats], float | None]


def _rest(field: str) -> Callable[[ConnectionStats], float | None]:
    def read(conn: ConnectionStats) -> float | None:
        value: float | None = getattr(conn.rest, field) if conn.rest is not None else None
        return value

    return read


#: Cumulative counters, one line each.
COUNTERS: Final = (
    Field("connects", "Sessions whose WebSocket handshake succeeded.", attrgetter("connects")),
    Field("disconnects", "Sessions that ended.", attrgetter("disconnects")),
    Field("restarts", "Restarts the supervisor scheduled.", attrgetter("restarts")),
    Field("frames_received", "WebSocket messages received.", attrgetter("frames")),
    Field("messages", "Normalized messages produced.", attrgetter("messages")),
    Field("received_bytes", "WebSocket payload bytes received.", attrgetter("bytes")),
    Field("dropped_messages", "Messages the overflow policy dropped.", attrgetter("dropped")),
    Field("malformed_frames", "Frames that could not be understood.", attrgetter("malformed")),
    Field("gaps", "Book sequence gaps detected.", attrgetter("gaps")),
    Field("silent_subscriptions", "Times a subscription went silent.", attrgetter("silent_total")),
)

#: Gauges, one line each.
GAUGES: Final = (
    Field("connection_state_seconds", "Seconds in the current state.", attrgetter("state_for")),
    Field("backoff_seconds", "Current (or last) restart delay.", attrgetter("backoff")),
    Field(
        "queued_bytes",
        "Estimated bytes of decoded messages waiting for the consumer.",
        attrgetter("queued_bytes"),
    ),
    Field("idle_seconds", "Seconds since the last frame.", attrgetter("idle_for")),
    Field(
        "messages_per_second",
        "Messages per second over the last few seconds.",
        attrgetter("rate"),
    ),
    Field(
        "clock_offset_seconds",
        "The venue's clock minus ours, from its server-time endpoint.",
        attrgetter("clock_offset"),
    ),
    Field(
        "probe_rtt_last_seconds",
        "Round trip of the last answered liveness probe or ping.",
        attrgetter("probe_rtt"),
    ),
    Field(
        "probe_rtt_smoothed_seconds",
        "Smoothed probe round trip (RFC 6298 SRTT).",
        attrgetter("probe_rtt_smoothed"),
    ),
    Field("messages_per_second_1s", "Messages per second, last second.", attrgetter("rate_1s")),
    Field("messages_per_second_1m", "Messages per second, last minute.", attrgetter("rate_1m")),
    Field("session_uptime_seconds", "Seconds live in this session.", attrgetter("session_uptime")),
    Field("queue_depth", "Batches waiting for the consumer.", attrgetter("queue_depth")),
    Field("backoff_attempt", "Consecutive restart delays so far.", attrgetter("attempt")),
    Field(
        "feed_latency_p50_seconds",
        "Median exchange-to-local feed latency over the last minute.",
        attrgetter("feed_latency_p50"),
    ),
    Field(
        "feed_latency_p99_seconds",
        "99th percentile exchange-to-local feed latency over the last minute.",
        attrgetter("feed_latency_p99"),
    ),
    Field(
        "rest_used_weight",
        "REST weight counted in the venue's current window, at the last call.",
        _rest("used_weight"),
    ),
    Field(
        "rest_held_seconds",
        "Seconds the REST host was still held (429/418) at the last call.",
        _rest("held_for"),
    ),
)


class HistogramField(msgspec.Struct, frozen=True):
    """One exported histogram per connection (``None`` leaves it out)."""

    name: str
    help: str
    read: Callable[[ConnectionStats], Histogram | None]


#: Histograms, one line each; cumulative like the counters.
HISTOGRAMS: Final = (
    HistogramField(
        "feed_latency_seconds",
        "Exchange-to-local feed latency, one sample per traffic flush, clock offset applied.",
        attrgetter("feed_latency"),
    ),
    HistogramField(
        "probe_rtt_seconds",
        "Round trips of answered liveness probes and pings.",
        attrgetter("probe_rtt_histogram"),
    ),
)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """``histogram``'s cumulative buckets as prometheus_client takes them, ``+Inf`` last."""
    buckets = [
        (str(float(bound)), float(count))
        for bound, count in zip(histogram.bounds, histogram.counts, strict=True)
    ]
    buckets.append(("+Inf", float(histogram.count)))
    return buckets


class SnapshotCollector(Collector):
    """A prometheus_client collector over one :class:`~actors.registry.Stats` snapshot.

    Args:
        stats: the snapshot, taken by the caller before the registry collects.
    """

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family of the snapshot (the prometheus_client protocol)."""
        conns = self._stats.connections
        for field in COUNTERS:
            counter = CounterMetricFamily(PREFIX + field.name, field.help, labels=LABELS)
            for conn in conns:
                value = field.read(conn)
                if value is not None:
                    counter.add_metric([conn.name, conn.exchange], value)
            yield counter
        for field in GAUGES:
            gauge = GaugeMetricFamily(PREFIX + field.name, field.help, labels=LABELS)
            for conn in conns:
                value = field.read(conn)
                if value is not None:
                    gauge.add_metric([conn.name, conn.exchange], value)
            yield gauge
        for hfield in HISTOGRAMS:
            family = HistogramMetricFamily(PREFIX + hfield.name, hfield.help, labels=LABELS)
            for conn in conns:
                histogram = hfield.read(conn)
                if histogram is not None:
                    family.add_metric(
                        [conn.name, conn.exchange], _buckets(histogram), histogram.sum
                    )
            yield family
        reasons = CounterMetricFamily(
            PREFIX + "disconnects_by_reason",
            "Sessions that ended, by why (close CODE, reset, stale, tls, ...).",
            labels=(*LABELS, "reason"),
        )
        for conn in conns:
            for reason, count in conn.disconnects_by_reason.items():
                reasons.add_metric([conn.name, conn.exchange, reason], count)
        yield reasons
        state = GaugeMetricFamily(
            PREFIX + "connection_state",
            "1 for the state the connection is in, 0 for the others.",
            labels=(*LABELS, "state"),
        )
        for conn in conns:
            for possible in ConnectionState:
                state.add_metric(
                    [conn.name, conn.exchange, possible.value],
                    float(conn.state == possible.value),
                )
        yield state
        subscription = GaugeMetricFamily(
            PREFIX + "subscription_state",
            "1 for the state the subscription is in, 0 for the others.",
            labels=(*LABELS, "subscription", "state"),
        )
        for conn in conns:
            for topic, described in conn.subscriptions.items():
                current = described.split(":", 1)[0]
                for name in SUBSCRIPTION_STATES:
                    subscription.add_metric(
                        [conn.name, conn.exchange, topic, name], float(current == name)
                    )
        yield subscription
        messages = CounterMetricFamily(
            PREFIX + "subscription_messages",
            "Data frames of the subscription, across sessions.",
            labels=(*LABELS, "subscription"),
        )
        age = GaugeMetricFamily(
            PREFIX + "subscription_last_message_age_seconds",
            "Seconds since the subscription's latest data frame.",
            labels=(*LABELS, "subscription"),
        )
        for conn in conns:
            for topic, sub in conn.subscription_stats.items():
                labels = [conn.name, conn.exchange, topic]
                if sub.messages is not None:
                    messages.add_metric(labels, sub.messages)
                if sub.last_message_age is not None:
                    age.add_metric(labels, sub.last_message_age)
        yield messages
        yield age
        yield from _book_families(conns)


#: The states a local book can be in (actors/books.py).
BOOK_STATES: Final = ("syncing", "valid", "invalid")


def _book_families(conns: Sequence[ConnectionStats]) -> Iterator[Metric]:
    """One-hot book states, resyncs, snapshots, levels and age, per local book."""
    book_labels = (*LABELS, "symbol")
    state = GaugeMetricFamily(
        PREFIX + "book_state",
        "1 for the state the local book is in (syncing, valid, invalid), 0 for the others.",
        labels=(*book_labels, "state"),
    )
    resyncs = CounterMetricFamily(
        PREFIX + "book_resyncs",
        "Doubts found in the local book (gap, checksum, crossed, no bridge), each a resync.",
        labels=book_labels,
    )
    snapshots = CounterMetricFamily(
        PREFIX + "book_snapshots",
        "Snapshots the local book was synced from (the stream's or REST), refreshes included.",
        labels=book_labels,
    )
    levels = GaugeMetricFamily(
        PREFIX + "book_levels",
        "Price levels in the local book, per side.",
        labels=(*book_labels, "side"),
    )
    age = GaugeMetricFamily(
        PREFIX + "book_last_update_age_seconds",
        "Seconds since the local book's last update arrived (valid books only).",
        labels=book_labels,
    )
    for conn in conns:
        for symbol, book in conn.books.items():
            labels = [conn.name, conn.exchange, symbol]
            for name in BOOK_STATES:
                state.add_metric([*labels, name], float(book.state == name))
            resyncs.add_metric(labels, book.resyncs)
            snapshots.add_metric(labels, book.snapshots)
            levels.add_metric([*labels, "bid"], book.bids)
            levels.add_metric([*labels, "ask"], book.asks)
            if book.age is not None:
                age.add_metric(labels, book.age)
    yield from (state, resyncs, snapshots, levels, age)


def render_metrics(stats: Stats) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``stats``.

    Args:
        stats: one snapshot from ``sup.stats()``.

    Returns:
        The body to serve as ``text/plain; version=0.0.4; charset=utf-8``.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(stats))
    return generate_latest(registry)
