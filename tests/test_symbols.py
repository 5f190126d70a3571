"""SymbolMap: native <-> normalized names, with a bounded memory (audit L7)."""

from __future__ import annotations

from actors.exchanges.sdk.symbols import SymbolMap


def _native(symbol: str) -> str | None:
    return symbol.replace("-", "_") if "-" in symbol else None


def test_config_symbols_are_registered_and_frame_names_cached_up_to_the_limit() -> None:
    calls: list[str] = []

    def normalized(native: str) -> str:
        calls.append(native)
        return native.replace("_", "-")

    symbols = SymbolMap(_native, normalized, limit=3)
    assert symbols.add("BTC-USDT") == "BTC_USDT"
    assert symbols.add("NOT A SYMBOL") is None
    assert symbols.normalized("BTC_USDT") == "BTC-USDT"
    # Names seen only in frames: remembered while there is room, then computed again.
    for _ in range(2):
        assert [symbols.normalized(f"X{i}_USD") for i in range(5)] == [
            f"X{i}-USD" for i in range(5)
        ]
    first_round = ["X0_USD", "X1_USD", "X2_USD", "X3_USD", "X4_USD"]
    assert calls == ["BTC_USDT", *first_round, "X2_USD", "X3_USD", "X4_USD"]
    assert len(symbols.natives()) == 3  # never more than the limit
