"""Binance spot (``binance``) and USD-M perpetual futures (``binance_usdm``) adapters.

Layout: :mod:`.wire` (payload Structs), :mod:`.config` (limits, stream names,
``check()``), :mod:`.protocol` (routes, the hot path, acks). Subscription ids, acks and
bisection live in the SDK's SubscriptionBook, pacing in its Pacer, book chains in its
BookChain.

Theory of operation
-------------------
One connection is one combined stream. The adapter connects to the bare combined-stream
base (``/stream``) and adds its streams with live ``SUBSCRIBE`` requests, so every data
frame arrives in the ``{"stream": NAME, "data": PAYLOAD}`` envelope and is routed by its
stream name with one dict lookup. Binance writes ``stream`` as the first key, so the hot
path reads the name straight off the frame's prefix (a ``startswith`` and a ``find``, no
parsing) and then decodes the whole frame exactly once with the msgspec Struct of that
stream's payload type. Anything else (acks, errors, notices, frames without envelope as a
``/ws`` URL delivers them, a reordered envelope) takes the slow path: one decode into a
small probe Struct, then, for a payload, a second decode with the payload's Struct.

Channels map to streams (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):

=========  ======================  ==============================================
channel    stream                  message
=========  ======================  ==============================================
trades     ``<sym>@trade``         Trade (``t`` id, ``T`` time, ``m`` -> side)
ticker     ``<sym>@bookTicker``    Ticker (spot: no time -> ``None``; USD-M: ``T``)
book       ``<sym>@depth@100ms``   BookDelta (``sequence`` = ``u``)
=========  ======================  ==============================================

Book sequencing: there is no REST snapshot yet, so the first diff of each stream after
subscribing starts the chain unchecked. From then on spot reports ``prev_sequence =
U - 1`` and a gap when ``U != previous u + 1``; USD-M reports ``prev_sequence = pu`` and a
gap when ``pu != previous u``. A gap is a ``SequenceGap`` event; the delta is still
delivered and the chain goes on from its ``u``.

Subscribing: every session sends the streams in ``SUBSCRIBE`` requests of at most
``DEFAULT_MAX_PARAMS`` names, paced ``DEFAULT_SUBSCRIBE_SPACING`` (spot) or
``DEFAULT_USDM_SUBSCRIBE_SPACING`` (USD-M) apart so that, together with the pongs our
WebSocket client sends (at most one per server ping), no 1 s window ever holds as many
incoming messages as Binance allows. Request ids are unsigned integers counting up from 1
for the adapter's life. ``{"result":null,"id":N}`` confirms every stream of request N;
``{"error":{"code":C,"msg":M},"id":N}`` refuses them with code ``str(C)``.

Heartbeat: Binance's server pings (spot every 20 s, USD-M every 3 min) and drops a client
that does not pong in time; trio-websocket answers every ping by itself, so the adapter has
no heartbeat timer. ``serverShutdown`` (raw or ``!serverShutdown`` in an envelope) ->
``ReconnectRequested``.

Decisions where the references are silent:

- **Invalid streams in a batch.** Spot rejects a whole ``SUBSCRIBE`` with code 2 if one
  name is invalid. Rather than fail every stream of the batch, the adapter bisects: a
  refused multi-stream request is re-sent as two halves (paced like the rest) until the
  invalid names stand alone; only those end up ``failed`` (one bad name among 200 costs
  about 16 extra requests, 8 s on spot). Other codes (e.g. 4 "Too many subscriptions")
  fail the whole request at once.
- **USD-M URL split (2026).** ``@bookTicker``, ``@depth*`` and ``@trade`` are served under
  ``/public`` (GOB-809, RUSTRADE tier map; §2 of the reference), ``@aggTrade``,
  ``@markPrice``, ``@kline_*``, ``@ticker``, ``@miniTicker``, ``@forceOrder``... under
  ``/market``. All three channels are therefore ``/public``, the default endpoint. The
  default URL switches to ``/market`` when only ``/market`` streams are configured; a
  connection needing both is a config error suggesting two connections, and so is a
  ``/public`` or ``/market`` URL given with streams of the other path.
- **Recognised raw topics.** ``raw`` streams of the types above are decoded like the
  channels, ``@aggTrade`` becomes a ``Trade`` whose ``trade_id`` is the aggregate id
  ``a``, partial depth (``@depth5|10|20``) becomes a ``BookSnapshot``; every other raw
  stream is delivered as a ``RawMessage`` holding the whole envelope (so the stream name
  comes along).
- **Timestamps.** Trade and USD-M ticker/depth use ``T`` (the matching-engine time the
  event happened); spot depth has only ``E``; spot bookTicker has none (``None``).
- **Symbols.** ``BTC-USDT`` -> ``btcusdt``. A native ``BTCUSDT`` is accepted and mapped
  back by splitting off a known quote asset (``KNOWN_QUOTES``, longest match first); if
  none matches, the native name is the message symbol. Native names must be written in
  upper case, as Binance lists them; stream names are the lower-cased symbol.
- **Frames without envelope** (a ``/ws`` URL) are routed by ``e`` and ``s``; when a
  symbol has several depth streams they cannot be told apart, and the first configured
  one takes them. Prefer ``/stream``.
- An ack or error for a request id we never sent, or an error with ``"id":null``, is
  counted as a malformed frame: it cannot be attributed to a stream.
- ``heartbeat`` and ``subscribe`` are config errors on a Binance connection: neither
  means anything here, and silently ignoring a key the user set would hide a mistake.
"""

from actors.exchanges.binance.config import DEFAULT_MAX_PARAMS as DEFAULT_MAX_PARAMS
from actors.exchanges.binance.config import DEFAULT_MAX_STREAMS as DEFAULT_MAX_STREAMS
from actors.exchanges.binance.config import DEFAULT_SUBSCRIBE_SPACING as DEFAULT_SUBSCRIBE_SPACING
from actors.exchanges.binance.config import (
    DEFAULT_USDM_SUBSCRIBE_SPACING as DEFAULT_USDM_SUBSCRIBE_SPACING,
)
from actors.exchanges.binance.config import KNOWN_QUOTES as KNOWN_QUOTES
from actors.exchanges.binance.protocol import BinanceProtocol as BinanceProtocol
from actors.exchanges.binance.protocol import BinanceUsdmProtocol as BinanceUsdmProtocol

__all__ = [
    "DEFAULT_MAX_PARAMS",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_SUBSCRIBE_SPACING",
    "DEFAULT_USDM_SUBSCRIBE_SPACING",
    "KNOWN_QUOTES",
    "BinanceProtocol",
    "BinanceUsdmProtocol",
]
