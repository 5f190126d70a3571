"""OKX v5 public WebSocket adapter (``exchange = "okx"``).

Layout: :mod:`.wire` (frame Structs), :mod:`.config` (limits, topics, plan,
``check()``), :mod:`.protocol` (the hot path, acks, notices). Request ids and in-order
acks live in the SDK's SubscriptionBook, the text heartbeat is its ClientPing policy,
request windows its WindowPacer, book chains its BookChain.

Theory of operation
-------------------
OKX has one URL per service (``wss://ws.okx.com:8443/ws/v5/public`` for public market
data) and chooses streams by message: ``{"op":"subscribe","args":[{"channel":"trades",
"instId":"BTC-USDT"}, ...]}``. Every arg is answered by its own frame: an ack
``{"event":"subscribe","arg":{...}}`` or an error ``{"event":"error","code":"60018",
"msg":...}``, which, unlike the ack, does not say which arg it refuses. Data frames are
``{"arg":{"channel":..,"instId":..},"data":[...]}`` (book channels add ``"action"``).
https://www.okx.com/docs-v5/en/#overview-websocket-subscribe

Topics (the native names in stats) are ``channel:instId`` (``trades:BTC-USDT``), just
``channel`` for an arg without parameters (``status``), and
``channel:key=value,...`` for any other arg (``instruments:instType=SPOT``).

Hot path: every frame is decoded once by one envelope Struct whose ``data`` stays a
``msgspec.Raw`` slice; the envelope's ``arg.channel`` picks (one dict lookup) the typed
decoder for that slice, so the bytes of the data are parsed exactly once, whatever the
key order of the frame. The instrument is normalized with one dict lookup built from the
config.

Heartbeat (client-driven, text frames; OKX closes a connection to which nothing was
pushed for 30 s): ``heartbeat`` seconds (default 25, must be < 30) after the last
received frame the adapter sends the text ``ping``; the server answers the text ``pong``.
If no frame at all arrives within another ``heartbeat`` seconds, the adapter reports
``HeartbeatMissed``. ``pong`` is neither delivered nor counted as malformed.

Limits respected when subscribing (https://www.okx.com/docs-v5/en/#overview-websocket):
a subscribe request may not exceed 64 KB, so args are packed greedily into as few
requests as fit in :attr:`OkxProtocol.max_request_bytes` (the whole frame is measured,
which is stricter than measuring ``args`` alone); a connection may send 480
subscribe/unsubscribe requests per hour, so ``check()`` rejects a connection that would
need more than 480 requests. Every request of a checked connection therefore goes out at
the start of the session; should a spec bypass ``check()``, request ``k`` is held until
``start + (k // 480) * 3600`` (released through ``deadline()``/``tick()``), which still
never sends more than 480 in any hour of a session.

Decisions where the OKX documentation is silent:

- Symbols: ``BTC-USDT`` is spot as-is, ``BTC-USDT-PERP`` subscribes ``BTC-USDT-SWAP``.
  Native instIds are accepted in config too: ``BTC-USDT-SWAP`` (delivered as
  ``BTC-USDT-PERP``), dated futures ``BTC-USD-250627`` and options
  ``BTC-USD-250627-100000-C`` (no normalized form exists: delivered under the instId).
  Two config names for the same instrument subscribe it once.
- Channels: ``trades`` -> ``trades``, ``ticker`` -> ``tickers``, ``book`` -> ``books``
  (400 levels, snapshot then updates). ``raw`` topics of channels this adapter knows are
  decoded like them: ``trades-all`` as trades; ``books-l2-tbt``/``books50-l2-tbt`` as
  books; ``books5`` as a ``BookSnapshot`` per push; ``bbo-tbt`` as a ``Ticker``.
  Frames of any other channel are delivered as ``RawMessage`` (the whole frame).
- A ticker (or ``bbo-tbt``) without one side of the book (OKX sends ``""``/no level)
  yields no ``Ticker``: there is no best bid/ask to report. It is not malformed.
- Book sequencing: each update's ``prevSeqId`` must equal the previous ``seqId`` of the
  same channel and instId; otherwise a ``SequenceGap`` is reported once and tracking
  continues from the new ``seqId``. A snapshot restarts the chain. Frames without
  ``seqId`` (captures before 2023) and an update before any snapshot are not checked.
  The deprecated ``checksum`` is ignored (always 0 since 2026-06).
- Which subscription an error refuses: first from the message (OKX names
  ``channel:..., instId:...`` in 60018); else it answers the oldest request with
  unanswered args. Request-level codes (60012 invalid request, 60013 invalid args, 60014
  too frequent, 60019 invalid op) fail every unanswered arg of that request at once; any
  other error counts as one answer, and once every arg of the request is answered (or a
  later request gets an answer: OKX answers requests in order) the args still unacked
  fail with that error's code and message.
- An error while no subscription is outstanding is reported as ``MalformedFrame``
  (kind ``unexpected_error``) so that it is logged once and counted.
- Events: ``notice`` 64008 -> ``ReconnectRequested``. Other notices,
  ``channel-conn-count``, ``channel-conn-count-error``, ``unsubscribe``, ``login`` and any
  other event are ignored silently (they are valid OKX frames, not malformed).
"""

from actors.exchanges.okx.config import CHANNELS as CHANNELS
from actors.exchanges.okx.config import DEFAULT_HEARTBEAT as DEFAULT_HEARTBEAT
from actors.exchanges.okx.config import DEFAULT_MAX_REQUEST_BYTES as DEFAULT_MAX_REQUEST_BYTES
from actors.exchanges.okx.config import (
    DEFAULT_REQUEST_WINDOW as DEFAULT_REQUEST_WINDOW,
)
from actors.exchanges.okx.config import (
    DEFAULT_REQUESTS_PER_WINDOW as DEFAULT_REQUESTS_PER_WINDOW,
)
from actors.exchanges.okx.config import MAX_HEARTBEAT as MAX_HEARTBEAT
from actors.exchanges.okx.protocol import OkxProtocol as OkxProtocol

__all__ = [
    "CHANNELS",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_REQUESTS_PER_WINDOW",
    "DEFAULT_REQUEST_WINDOW",
    "MAX_HEARTBEAT",
    "OkxProtocol",
]
