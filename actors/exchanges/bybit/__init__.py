"""Bybit v5 public WebSocket adapters: spot (``bybit``) and linear perpetuals (``bybit_linear``).

Theory of operation
-------------------
Bybit serves each category on its own path (``/v5/public/spot``, ``/v5/public/linear``)
and chooses streams by message: ``{"req_id":"1","op":"subscribe","args":[topic,...]}``
with at most 10 topics per request (spot's documented limit, used for both) and at most
21,000 characters of ``args``. Each request is answered by one reply carrying its
``req_id``: ``success`` true confirms every topic of it; false refuses the *whole*
request and names the first bad topic (``error:handler not found,topic:X``). The adapter
then fails that topic with the reason as its code, or counts it live when the reason is
``already subscribed``, and requests the other topics again. A refusal that names no
topic (``args size >10``) fails the whole request. Facts and sources:
docs/exchanges/bybit.md.

Channels: ``trades`` -> ``publicTrade.{S}`` (Trade; ``i`` is the id, a decimal string on
spot, a UUID on linear); ``ticker`` -> ``orderbook.1.{S}`` (Ticker from the top of book:
spot ``tickers`` carry no best bid/ask); ``book`` -> ``orderbook.50.{S}`` (BookSnapshot,
then BookDelta with ``sequence = u`` and ``prev_sequence = u - 1``: ``u`` rises by
exactly 1, so a delta whose ``u`` is not the previous ``u + 1`` is a ``SequenceGap``; a
snapshot, including Bybit's ``u = 1`` restart snapshot, starts the chain afresh).
``raw`` topics: ``publicTrade.*`` and ``orderbook.N.*`` are decoded like the channels,
everything else (``tickers.*``, ``kline.*``...) is delivered as ``RawMessage``.

Heartbeat: ``{"op":"ping"}`` every ``heartbeat`` seconds (default 20, Bybit's advice),
whatever arrives: Bybit counts the client's pings. The pong (``ret_msg`` ``pong``, or
``op`` ``pong``) is consumed; no frame within ``heartbeat`` seconds of a ping is a
``HeartbeatMissed``.

Layout: :mod:`.wire` (Structs), :mod:`.config` (limits, topics, symbols, ``check()``),
:mod:`.protocol` (requests, replies, topics). Everything else comes from the SDK.
"""

from actors.exchanges.bybit.protocol import BybitLinearProtocol as BybitLinearProtocol
from actors.exchanges.bybit.protocol import BybitProtocol as BybitProtocol

__all__ = ["BybitLinearProtocol", "BybitProtocol"]
