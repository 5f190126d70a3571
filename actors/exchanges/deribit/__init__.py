"""Deribit API v2 adapter: JSON-RPC 2.0 over one WebSocket, public market data.

Layout: :mod:`.wire` (frame Structs), :mod:`.config` (limits, channels, symbols,
``check()``), :mod:`.protocol` (requests, notifications, replies). Request ids live in
the SDK's SubscriptionBook, the heartbeat deadline in its ServerHeartbeat policy, the
shared credit budget in its Pacer (with Reservations to give unsent slots back), book
chains in its BookChain.

Theory of operation
-------------------
Every session opens with ``public/set_heartbeat`` (written at once), then one
``public/subscribe`` request per instrument (its ``trades``, ``ticker`` and ``book``
channels together) and one per ``raw`` channel, released on a pacing schedule. Each request
carries a fresh integer id (increasing for the adapter's whole life, never reused); a
session keeps ``id -> request`` so that the reply confirms the channels listed in its
``result`` or refuses every channel of the request with the error's code and message.

Why one request per instrument: Deribit rejects a multi-channel subscribe *as a whole* when
any one channel is refused (observed 2026-09-21, reference §4.2), so an unknown instrument
or a channel the server refuses must not take other instruments down with it. The channels
of one instrument stand or fall together anyway (an unknown instrument fails all of them).
A ``raw`` channel is unknown territory, so it always travels alone.

Pacing: ``public/subscribe`` has its own credit bucket, 3 000 credits per call from a
30 000 pool refilled at 10 000 per second: a burst of 10 calls, then 3.33 calls per second
(DRB-SUB, nautilus ``nautilus_deribit::common::consts``). We use half the burst and 80 %
of the rate (:data:`SUBSCRIBE_BURST_USED`, :data:`SUBSCRIBE_SPACING`), scheduled with a
GCRA (virtual scheduling) whose state outlives the session: Deribit counts credits per IP
(public traffic) or per account, not per connection, so a reconnect one second after a
burst must not burst again. Slots of requests a session never wrote are given back when
it ends.

Heartbeat: Deribit sends ``heartbeat`` and ``test_request`` notifications every interval
once ``public/set_heartbeat`` is on, and closes the connection at once when a
``test_request`` is not answered with a ``public/test`` request (DRB-HB). We answer each
one immediately (the caller writes the frame); the reply, ``{"result":{"version":..}}``,
is consumed silently. Any frame proves the connection alive; none for
:data:`DEFAULT_HEARTBEAT_TOLERANCE` intervals is a :class:`HeartbeatMissed` (one late
heartbeat is jitter, two missing ones are a dead connection).

Hot path: every frame is decoded once into typed Structs (``_Frame``): the notification's
``data`` is a union of an array of trades and one object type that covers books, quotes,
tickers and platform notices; routing is one dict lookup by channel name. Prices and
amounts are JSON numbers that msgspec turns into exact ``Decimal`` values.

Decisions where Deribit's documentation is silent (docs/adapters.md asks to state them):

- Default heartbeat 10 s: Deribit's minimum; with the default ``stale_after`` of 30 s a
  quiet feed (an option nobody trades) stays alive on heartbeats alone, and a dead
  connection is found after 20 s. ``check()`` rejects intervals below 10 s and intervals
  not below ``stale_after``.
- ``10028 too_many_requests``: Deribit terminates the session after this reply (DRB-RL).
  The adapter refuses the request's channels with code ``10028``, drops the subscribe
  requests it had not written yet (they would only burn credits of a dying session) and
  lets the server's close end the session. It does *not* emit ``ReconnectRequested``: that
  reconnects without delay, straight back into an empty credit bucket; the ordinary
  backoff after a lost connection is what Deribit asks for ("wait, then reconnect").
- A reply whose ``result`` omits a requested channel refuses it with code
  ``unconfirmed``. A failed ``public/set_heartbeat`` or ``public/test`` is reported as a
  malformed frame of kind ``request_failed`` (there is no better event for it).
- Disconnect notices: Deribit's WebSocket announces no planned disconnect. The closest is
  the ``platform_state`` channel (``{"maintenance": true}``); list ``platform_state`` in
  ``raw`` to have its notices delivered as ``RawMessage`` *and* a maintenance start turned
  into ``ReconnectRequested``. It is not subscribed unasked (it costs a subscribe credit
  and would show up among the connection's subscriptions).
- Book gaps: a ``change`` whose ``prev_change_id`` is not the previous ``change_id`` of
  that channel emits ``SequenceGap`` and the delta is still delivered; the chain continues
  from the new ``change_id``. Re-subscribing for a fresh snapshot is left to the book
  maintainer that comes later (it costs subscribe credits).
- ``quote`` with an empty book side: Deribit sends ``null``; it is delivered as price 0,
  size 0, the convention Deribit's own ``ticker`` channel uses for an empty side.
- Channels use the ``100ms`` interval, the fastest one open to unauthenticated
  connections (``raw`` needs ``public/auth``; Deribit answers ``13778``).
- ``raw`` channels that are recognised (``trades.*``, ``quote.*``, ``ticker.*.*``,
  ``book.<instrument>.<interval>``) are decoded into normalized messages like configured
  channels; everything else is delivered as ``RawMessage``.
- Symbols: ``BTC-USD-PERP`` <-> ``BTC-PERPETUAL`` (inverse perpetuals are USD-quoted),
  ``BTC-USDC-PERP`` <-> ``BTC_USDC-PERPETUAL``, spot ``BTC-USDC`` <-> ``BTC_USDC``. Native
  names are accepted in config (and mapped to the normalized form in messages); dated
  futures (``BTC-27DEC24``) and options (``BTC-27DEC24-100000-C``) have no normalized form
  and are passed through as the message symbol. Combo instruments are not recognised as
  symbols; subscribe their channels through ``raw``.
- No limit on channels per connection is documented; subscribing N instruments takes
  about ``(N - 5) * 0.375`` seconds after the first five.
"""

from actors.exchanges.deribit.config import DEFAULT_HEARTBEAT as DEFAULT_HEARTBEAT
from actors.exchanges.deribit.config import (
    DEFAULT_HEARTBEAT_TOLERANCE as DEFAULT_HEARTBEAT_TOLERANCE,
)
from actors.exchanges.deribit.config import DEFAULT_SUBSCRIBE_BURST as DEFAULT_SUBSCRIBE_BURST
from actors.exchanges.deribit.config import DEFAULT_SUBSCRIBE_RATE as DEFAULT_SUBSCRIBE_RATE
from actors.exchanges.deribit.config import DEFAULT_URL as DEFAULT_URL
from actors.exchanges.deribit.config import MIN_HEARTBEAT as MIN_HEARTBEAT
from actors.exchanges.deribit.config import SUBSCRIBE_BURST_USED as SUBSCRIBE_BURST_USED
from actors.exchanges.deribit.config import SUBSCRIBE_SPACING as SUBSCRIBE_SPACING
from actors.exchanges.deribit.protocol import DeribitProtocol as DeribitProtocol

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_HEARTBEAT_TOLERANCE",
    "DEFAULT_SUBSCRIBE_BURST",
    "DEFAULT_SUBSCRIBE_RATE",
    "DEFAULT_URL",
    "MIN_HEARTBEAT",
    "SUBSCRIBE_BURST_USED",
    "SUBSCRIBE_SPACING",
    "DeribitProtocol",
]
