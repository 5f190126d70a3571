"""The make-before-break continuity ledger, synchronously: every branch, and parity with
the trade-id / book-sequence rules the actor used before it was built on marks."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import ConnectionSpec
from actors.exchanges import (
    Batch,
    BinanceProtocol,
    BookDelta,
    BookSnapshot,
    DeribitProtocol,
    Message,
    Ticker,
    Trade,
)
from actors.exchanges.sdk import Mark, default_mark
from actors.exchanges.sdk.books import prefixed_mark
from actors.handover import ContinuityLedger

ONE = Decimal(1)


def trade(tid: int | str, symbol: str = "BTC-USDT") -> Trade:
    return Trade(
        connection="c",
        exchange="x",
        received_at=0.0,
        symbol=symbol,
        side="buy",
        price=ONE,
        amount=ONE,
        trade_id=str(tid),
        timestamp=0,
    )


def delta(prev: int | None, seq: int | None, symbol: str = "BTC-USDT") -> BookDelta:
    return BookDelta(
        connection="c",
        exchange="x",
        received_at=0.0,
        symbol=symbol,
        bids=(),
        asks=(),
        sequence=seq,
        prev_sequence=prev,
        timestamp=None,
    )


def snapshot(seq: int | None, symbol: str = "BTC-USDT") -> BookSnapshot:
    return BookSnapshot(
        connection="c",
        exchange="x",
        received_at=0.0,
        symbol=symbol,
        bids=(),
        asks=(),
        sequence=seq,
        timestamp=None,
    )


def ticker(symbol: str = "BTC-USDT") -> Ticker:
    return Ticker(
        connection="c",
        exchange="x",
        received_at=0.0,
        symbol=symbol,
        bid=ONE,
        bid_size=ONE,
        ask=ONE,
        ask_size=ONE,
        timestamp=None,
    )


def ledger() -> ContinuityLedger:
    return ContinuityLedger(default_mark)


# -- caught_up ---------------------------------------------------------------------


def test_not_caught_up_before_the_successor_buffered_anything() -> None:
    led = ledger()
    assert not led.caught_up()
    led.delivered((trade(5),))
    assert not led.caught_up()


def test_unmarked_messages_alone_make_a_buffer_that_is_caught_up() -> None:
    led = ledger()
    led.delivered((ticker(),))
    led.buffered((ticker(), ticker("ETH-USDT")))
    assert led.caught_up()


def test_a_trade_id_in_no_known_format_never_counts_as_caught_up() -> None:
    # Audit M4(b): such a trade used to carry no mark at all, so the switch counted as
    # gap-free at once and duplicates passed. Its stream's continuity is unknown now.
    led = ledger()
    led.delivered((ticker(),))
    led.buffered((ticker(), trade("abc")))
    assert not led.caught_up()
    assert led.unknown == {("trade", "BTC-USDT")}
    only_old = ledger()
    only_old.delivered((trade(9), trade("abc")))
    only_old.buffered((trade(10),))
    assert not only_old.caught_up()
    assert only_old.unseen((trade(9), trade("abc"), trade(10))) == (trade("abc"), trade(10))
    assert only_old.passed


def test_trades_caught_up_when_the_old_session_reached_the_successors_first_id() -> None:
    led = ledger()
    led.delivered((trade(8), trade(9)))
    led.buffered((trade(10), trade(11)))  # continues from 9
    assert led.caught_up()


def test_trades_not_caught_up_while_the_old_session_is_behind() -> None:
    led = ledger()
    led.delivered((trade(8),))
    led.buffered((trade(10),))  # 9 is still unread on the old socket
    assert not led.caught_up()
    led.delivered((trade(9),))
    assert led.caught_up()


def test_trades_past_the_successors_start_are_caught_up_too() -> None:
    led = ledger()
    led.delivered((trade(12),))
    led.buffered((trade(10),))
    assert led.caught_up()


def test_trade_streams_must_be_the_same_on_both_sides() -> None:
    only_old = ledger()
    only_old.delivered((trade(9), trade(3, "ETH-USDT")))
    only_old.buffered((trade(10),))
    assert not only_old.caught_up()  # ETH may still be behind on the old socket

    only_new = ledger()
    only_new.delivered((trade(9),))
    only_new.buffered((trade(10), trade(4, "ETH-USDT")))
    assert not only_new.caught_up()  # ETH's start may not have reached the old one yet
    only_new.delivered((trade(3, "ETH-USDT"),))
    assert only_new.caught_up()


def test_the_successors_first_position_per_stream_counts_not_later_ones() -> None:
    led = ledger()
    led.buffered((trade(10),))
    led.buffered((trade(20),))
    led.delivered((trade(15),))
    assert led.caught_up()  # 15 >= 9; 20 is not where the buffer starts


def test_delivered_keeps_the_last_position_not_the_highest() -> None:
    led = ledger()
    led.buffered((trade(10),))
    led.delivered((trade(12), trade(5)))
    assert not led.caught_up()


def test_books_caught_up_when_the_old_session_reached_the_first_deltas_prev() -> None:
    led = ledger()
    led.delivered((delta(97, 100),))
    led.buffered((delta(100, 103),))
    assert led.caught_up()
    behind = ledger()
    behind.delivered((delta(94, 97),))
    behind.buffered((delta(100, 103),))
    assert not behind.caught_up()


def test_an_old_book_the_successor_starts_afresh_needs_no_overlap() -> None:
    led = ledger()
    led.delivered((delta(1, 5),))
    led.buffered((snapshot(500), delta(500, 503)))
    assert led.caught_up()


def test_a_snapshot_in_the_old_session_is_a_position_like_any_other() -> None:
    led = ledger()
    led.delivered((snapshot(100),))
    led.buffered((delta(100, 103),))
    assert led.caught_up()


def test_an_old_book_the_successors_buffer_lacks_blocks_the_switch() -> None:
    led = ledger()
    led.delivered((delta(1, 5), delta(1, 5, "ETH-USDT")))
    led.buffered((delta(5, 8),))
    assert not led.caught_up()


def test_a_book_the_old_session_never_delivered_blocks_the_switch() -> None:
    led = ledger()
    led.delivered((delta(1, 5),))
    led.buffered((delta(5, 8), delta(9, 12, "ETH-USDT")))
    assert not led.caught_up()


def test_a_book_started_afresh_by_the_successor_alone_does_not_block() -> None:
    led = ledger()
    led.delivered((delta(1, 5),))
    led.buffered((delta(5, 8), snapshot(40, "ETH-USDT"), delta(40, 41, "ETH-USDT")))
    assert led.caught_up()


def test_a_delta_buffered_before_its_snapshot_still_needs_the_old_stream() -> None:
    # The buffer continued the stream before it restarted it: the old session must have
    # had that stream, though its position no longer matters.
    led = ledger()
    led.delivered((trade(9),))
    led.buffered((trade(10), delta(50, 53), snapshot(60)))
    assert not led.caught_up()
    led.delivered((delta(1, 2),))
    assert led.caught_up()


# -- unseen / passed ---------------------------------------------------------------


def test_unseen_drops_what_the_old_session_delivered_then_stops_checking() -> None:
    led = ledger()
    led.delivered((trade(10), delta(97, 100)))
    assert not led.passed
    batch: Batch = (trade(9), trade(10), trade(11), trade(10), ticker(), trade("x"))
    assert led.unseen(batch) == (trade(11), trade(10), ticker(), trade("x"))
    assert not led.passed
    assert led.unseen((delta(94, 97), delta(97, 100))) == ()
    assert led.unseen((delta(100, 103), delta(97, 100))) == (delta(100, 103), delta(97, 100))
    assert led.passed


def test_unseen_keeps_streams_the_old_session_never_delivered() -> None:
    led = ledger()
    led.delivered((trade(10),))
    assert led.unseen((trade(3, "ETH-USDT"), delta(1, 2))) == (trade(3, "ETH-USDT"), delta(1, 2))
    assert not led.passed


def test_a_fresh_start_drops_the_old_position_of_its_stream() -> None:
    led = ledger()
    led.delivered((delta(97, 100),))
    assert led.unseen((snapshot(90), delta(90, 95))) == (snapshot(90), delta(90, 95))
    assert led.passed


def test_passed_with_nothing_delivered() -> None:
    assert ledger().passed


def test_the_mark_function_is_the_only_source_of_order() -> None:
    # An adapter whose trade ids carry no order marks nothing: nothing is deduplicated.
    led = ContinuityLedger(lambda message: None)
    led.delivered((trade(10),))
    led.buffered((trade(10),))
    assert led.caught_up()
    assert led.unseen((trade(10),)) == (trade(10),)
    assert led.passed


def test_a_custom_mark_decides_streams() -> None:
    def by_symbol(message: Message) -> Mark | None:
        if isinstance(message, Trade):
            n = int(message.trade_id)
            return Mark(("all", ""), n, n - 1)
        return None

    led = ContinuityLedger(by_symbol)
    led.delivered((trade(9, "ETH-USDT"),))
    led.buffered((trade(10),))
    assert led.caught_up()  # one stream across symbols


# -- parity with the rules before marks ------------------------------------------


class _Before:
    """The old ``_Handover`` bookkeeping of actors/connection.py (at 593178c), verbatim
    apart from the trio parts, as the oracle for the ledger."""

    def __init__(self) -> None:
        self.last_trade: dict[str, int] = {}
        self.last_sequence: dict[str, int] = {}
        self.first_trade: dict[str, int] = {}
        self.first_prev_sequence: dict[str, int] = {}
        self.snapshots: set[str] = set()
        self.buffer: list[Batch] = []

    def track(self, batch: Batch) -> None:
        for message in batch:
            if isinstance(message, Trade):
                if message.trade_id.isdigit():
                    self.last_trade[message.symbol] = int(message.trade_id)
            elif isinstance(message, (BookDelta, BookSnapshot)) and message.sequence is not None:
                self.last_sequence[message.symbol] = message.sequence

    def hold(self, batch: Batch) -> None:
        self.buffer.append(batch)
        for message in batch:
            if isinstance(message, Trade):
                if message.trade_id.isdigit():
                    self.first_trade.setdefault(message.symbol, int(message.trade_id))
            elif isinstance(message, BookSnapshot):
                self.snapshots.add(message.symbol)
            elif (
                isinstance(message, BookDelta)
                and message.symbol not in self.snapshots
                and message.prev_sequence is not None
            ):
                self.first_prev_sequence.setdefault(message.symbol, message.prev_sequence)

    def caught_up(self) -> bool:
        if not self.buffer:
            return False
        last_trade, first_trade = self.last_trade, self.first_trade
        if last_trade.keys() != first_trade.keys():
            return False
        if any(last_trade[symbol] < first - 1 for symbol, first in first_trade.items()):
            return False
        for symbol, last in self.last_sequence.items():
            if symbol in self.snapshots:
                continue
            prev = self.first_prev_sequence.get(symbol)
            if prev is None or last < prev:
                return False
        return self.first_prev_sequence.keys() <= self.last_sequence.keys()

    def unseen(self, batch: Batch) -> Batch:
        kept = []
        for message in batch:
            if isinstance(message, Trade):
                last = self.last_trade.get(message.symbol)
                if last is not None and message.trade_id.isdigit():
                    if int(message.trade_id) <= last:
                        continue
                    del self.last_trade[message.symbol]
            elif isinstance(message, BookSnapshot):
                self.last_sequence.pop(message.symbol, None)
            elif isinstance(message, BookDelta) and message.sequence is not None:
                last = self.last_sequence.get(message.symbol)
                if last is not None:
                    if message.sequence <= last:
                        continue
                    del self.last_sequence[message.symbol]
            kept.append(message)
        return tuple(kept)

    @property
    def passed(self) -> bool:
        return not self.last_trade and not self.last_sequence


# The domain where default_mark agrees with the rules above: trade ids are decimal,
# snapshots carry a sequence, and a delta has both sequence and prev_sequence or neither
# (see the tests after the property for the messages outside it).
_symbols = st.sampled_from(["BTC-USDT", "ETH-USDT"])
_ids = st.integers(min_value=0, max_value=30)
_messages = st.one_of(
    st.builds(trade, _ids, _symbols),
    st.builds(lambda p, n, s: delta(p, p + n, s), _ids, st.integers(1, 3), _symbols),
    st.builds(delta, st.none(), st.none(), _symbols),
    st.builds(snapshot, _ids, _symbols),
    st.builds(ticker, _symbols),
)
_batches = st.lists(_messages, min_size=1, max_size=4).map(tuple)
_steps = st.lists(
    st.tuples(st.sampled_from(["delivered", "buffered", "unseen"]), _batches), max_size=12
)


@given(_steps)
def test_the_ledger_decides_as_the_rules_before_marks_did(
    steps: list[tuple[str, Batch]],
) -> None:
    led, before = ledger(), _Before()
    for step, batch in steps:
        if step == "delivered":
            led.delivered(batch)
            before.track(batch)
        elif step == "buffered":
            led.buffered(batch)
            before.hold(batch)
        else:
            assert led.unseen(batch) == before.unseen(batch)
        assert led.caught_up() == before.caught_up()
        assert led.passed == before.passed


@given(_steps, st.sampled_from(["delivered", "buffered"]), _symbols)
def test_outside_the_shared_domain_ids_in_no_known_format_block_the_switch_only(
    steps: list[tuple[str, Batch]], side: str, symbol: str
) -> None:
    # Before marks, a trade id such as "t-1" was skipped; now it makes its stream's
    # continuity unknown: unseen() still decides as before, caught_up() never holds.
    odd = (trade("t-1", symbol),)
    led, before = ledger(), _Before()
    getattr(led, side)(odd)
    (before.track if side == "delivered" else before.hold)(odd)
    for step, batch in steps:
        if step == "delivered":
            led.delivered(batch)
            before.track(batch)
        elif step == "buffered":
            led.buffered(batch)
            before.hold(batch)
        else:
            assert led.unseen(batch) == before.unseen(batch)
        assert not led.caught_up()
        assert led.passed == before.passed


def test_outside_the_shared_domain_a_snapshot_without_sequence_is_unordered() -> None:
    # Before marks, such a snapshot restarted its book; default_mark gives it no mark.
    led = ledger()
    led.delivered((delta(1, 5),))
    assert led.unseen((snapshot(None), delta(3, 4))) == (snapshot(None),)


def test_outside_the_shared_domain_a_delta_without_prev_is_unordered() -> None:
    # Before marks, such a delta was deduplicated by its sequence; now it passes.
    led = ledger()
    led.delivered((delta(1, 5),))
    assert led.unseen((delta(None, 4),)) == (delta(None, 4),)


def test_ids_int_cannot_read_carry_no_order() -> None:
    # "²".isdigit() is True but int("²") raises (audit L8): such an id must neither
    # crash a handover nor be compared.
    for trade_id in ("²", "١٢٣", "12a", ""):
        message = Trade(
            connection="c",
            exchange="x",
            received_at=0.0,
            symbol="BTC-USDT",
            side="buy",
            price=Decimal(1),
            amount=Decimal(1),
            trade_id=trade_id,
            timestamp=0,
        )
        # A place in the trade stream that cannot be read (not None since M4(b)).
        assert default_mark(message) == Mark(("trade", "BTC-USDT"), None, None)
        ledger = ContinuityLedger(default_mark)
        ledger.delivered((message,))
        ledger.buffered((message,))
        assert ledger.unseen((message,)) == (message,)
        assert not ledger.caught_up()


# -- id spaces and id formats (audit M4) -----------------------------------------------


def _spec(**keys: object) -> ConnectionSpec:
    return msgspec.convert({"name": "c", **keys}, ConnectionSpec)


def binance_mark(**keys: object) -> Callable[[Message], Mark | None]:
    return BinanceProtocol(_spec(exchange="binance", **keys)).mark


def test_one_binance_trade_stream_per_symbol_keeps_the_ordered_default() -> None:
    mark = binance_mark(channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"])
    assert mark(trade(7)) == Mark(("trade", "BTC-USDT"), 7, 6)
    only_agg = binance_mark(symbols=["BTC-USDT"], raw=["btcusdt@aggTrade"])
    assert only_agg(trade(7)) == Mark(("trade", "BTC-USDT"), 7, 6)


def test_binance_trade_and_aggtrade_of_one_symbol_are_identified_not_ordered() -> None:
    # Audit M4(a): both become a Trade whose trade_id is its own space's id.
    mark = binance_mark(
        channels=["trades"], symbols=["BTC-USDT", "ETH-USDT"], raw=["btcusdt@aggTrade"]
    )
    assert mark(trade(7)) == Mark(("trade", "BTC-USDT"), None, None, ("7", 0))
    assert mark(trade(7, "ETH-USDT")) == Mark(("trade", "ETH-USDT"), 7, 6)


def test_two_id_spaces_under_one_symbol_lose_nothing_and_duplicate_nothing() -> None:
    mark = binance_mark(channels=["trades"], symbols=["BTC-USDT"], raw=["btcusdt@aggTrade"])

    def t(n: int) -> Trade:  # the trade stream's ids
        return trade(6_000_000_000 + n)

    def a(n: int) -> Trade:  # the aggTrade stream's ids, far below
        return trade(3_000_000_000 + n)

    led = ContinuityLedger(mark)
    led.delivered((t(1),))
    led.delivered((a(1),))
    led.buffered((t(2),))
    led.buffered((a(2),))
    assert not led.caught_up()  # the old session has not delivered t(2) yet
    led.delivered((t(2),))
    assert led.caught_up()  # the buffer's first message was delivered: they overlap
    # Before M4, a(2) was dropped here because its id is below the last trade id.
    assert led.unseen((t(2),)) == ()
    assert led.unseen((a(2), t(3), a(3))) == (a(2), t(3), a(3))
    assert led.unseen((t(2), a(1))) == ()  # checked for as long as the actor filters
    assert not led.passed

    default = ledger()
    default.delivered((t(1), a(1), t(2)))
    assert default.unseen((a(2), t(3))) == (t(3),)  # the defect, for the record


def test_deribit_prefixed_trade_ids_compare_by_their_number_per_prefix() -> None:
    # Audit M4(b): "ETH-100" used to carry no mark, so duplicates passed.
    mark = DeribitProtocol(
        _spec(exchange="deribit", channels=["trades"], symbols=["ETH-USD-PERP"])
    ).mark

    def eth(n: int) -> Trade:
        return trade(f"ETH-{n}", "ETH-USD-PERP")

    assert mark(eth(100)) == Mark(("trade ETH", "ETH-USD-PERP"), 100, 99)
    assert mark(trade(100, "ETH-USD-PERP")) == Mark(("trade", "ETH-USD-PERP"), 100, 99)
    assert mark(trade("ETH-", "ETH-USD-PERP")) == Mark(("trade", "ETH-USD-PERP"), None, None)
    led = ContinuityLedger(mark)
    led.delivered((eth(100), eth(101)))
    assert not led.caught_up()
    led.buffered((eth(100), eth(101), eth(102)))
    assert led.caught_up()
    assert led.unseen((eth(100), eth(101), eth(102))) == (eth(102),)
    assert led.passed


def test_prefixed_mark_reads_only_prefix_dash_digits() -> None:
    def m(trade_id: str) -> Mark | None:
        return prefixed_mark(trade(trade_id))

    assert m("ETH-207325731") == Mark(("trade ETH", "BTC-USDT"), 207325731, 207325730)
    assert m("BTC_USDC-12") == Mark(("trade BTC_USDC", "BTC-USDT"), 12, 11)
    for odd in ("207325731", "-12", "ETH-", "ETH-1a", "ETH-²", "ETH"):
        assert m(odd) is None, odd


# -- identified marks ---------------------------------------------------------------------


def by_trade_id(message: Message) -> Mark | None:
    if isinstance(message, Trade):
        return Mark(("trade", message.symbol), None, None, message.trade_id)
    return None


def test_identified_streams_are_caught_up_once_the_buffers_first_message_was_delivered() -> None:
    led = ContinuityLedger(by_trade_id)
    led.delivered((trade("x"), trade("y")))
    led.buffered((trade("z"), trade("w")))
    assert not led.caught_up()
    led.delivered((trade("w"),))
    assert not led.caught_up()  # "w" is not where the buffer starts
    led.delivered((trade("z"),))
    assert led.caught_up()


def test_identified_streams_must_be_the_same_on_both_sides() -> None:
    only_old = ContinuityLedger(by_trade_id)
    only_old.delivered((trade("x"), trade("e", "ETH-USDT")))
    only_old.buffered((trade("x"),))
    assert not only_old.caught_up()
    only_new = ContinuityLedger(by_trade_id)
    only_new.delivered((trade("x"),))
    only_new.buffered((trade("x"), trade("e", "ETH-USDT")))
    assert not only_new.caught_up()


def test_the_oldest_identified_keys_are_forgotten_past_the_bound() -> None:
    led = ContinuityLedger(by_trade_id, max_identified=2)
    led.delivered((trade("x"), trade("y"), trade("z")))
    assert led.unseen((trade("x"), trade("y"), trade("z"))) == (trade("x"),)


def test_max_identified_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^max_identified must be at least 1, got 0$"):
        ContinuityLedger(by_trade_id, max_identified=0)


# -- a buffer whose head was dropped ------------------------------------------------------


def test_rebuffered_records_where_the_shortened_buffer_starts() -> None:
    led = ledger()
    led.delivered((trade(10),))
    led.buffered((trade(9),))
    led.buffered((trade(20),))
    assert led.caught_up()  # 10 >= 8
    led.rebuffered([(trade(20),)])  # the head (9) was dropped: 11..19 are not buffered
    assert not led.caught_up()
    led.delivered((trade(19),))
    assert led.caught_up()


def test_rebuffered_forgets_fresh_starts_and_first_keys_of_the_dropped_head() -> None:
    led = ledger()
    led.delivered((delta(1, 5),))
    led.buffered((snapshot(500),))
    assert led.caught_up()
    led.rebuffered([(delta(600, 601),)])
    assert not led.caught_up()
    ident = ContinuityLedger(by_trade_id)
    ident.delivered((trade("a"),))
    ident.buffered((trade("a"),))
    assert ident.caught_up()
    ident.rebuffered([])
    assert not ident.caught_up()  # an empty buffer never is
