"""Config checks every adapter shares, worded once.

Each returns ``(key, problem)`` pairs in the form ``check()`` reports them; the config
loader prefixes ``FILE:LINE: connections.NAME.`` to the key. Exchange-specific checks
(symbol forms, raw topic syntax, request budgets) stay in each adapter's ``config.py``
but use :func:`not_used` and the same "problem (expected ...)" shape.
"""

from __future__ import annotations

from collections.abc import Collection

from actors._spec import ConnectionSpec

__all__ = ["Problem", "check_channels", "not_used"]

#: ``(key, problem)``: the config key and what is wrong with it.
Problem = tuple[str, str]

#: The normalized channels, in the order error messages list them.
_ORDER = ("trades", "ticker", "book")


def _listed(channels: Collection[str], conjunction: str) -> str:
    names = [c for c in _ORDER if c in channels] + sorted(set(channels) - set(_ORDER))
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + f" {conjunction} {names[-1]}"


def not_used(key: str, exchange: str, instead: str) -> Problem:
    """A key this adapter has no use for: silently ignoring it would hide a mistake."""
    return (key, f"not used by the {exchange} adapter ({instead})")


def check_channels(
    spec: ConnectionSpec, channels: Collection[str], *, raw: str, why_needed: str = ""
) -> list[Problem]:
    """Unknown channels, channels without symbols (and back), nothing to subscribe.

    Args:
        spec: the decoded connection.
        channels: the normalized channels the adapter supports.
        raw: what ``raw`` holds on this exchange, for the message (``streams``,
            ``topics``, ``Deribit channels``).
        why_needed: appended to "nothing to subscribe" when the exchange punishes an
            empty connection (``": OKX closes ..."``).
    """
    problems: list[Problem] = []
    for channel in spec.channels:
        if channel not in channels:
            problems.append(
                ("channels", f"unknown channel {channel!r} (expected {_listed(channels, 'or')})")
            )
    if spec.channels and not spec.symbols:
        problems.append(
            ("symbols", "missing (expected at least one symbol for the channels, e.g. BTC-USDT)")
        )
    if spec.symbols and not spec.channels:
        problems.append(
            ("channels", f"missing (expected {_listed(channels, 'and/or')} for the symbols)")
        )
    if not spec.channels and not spec.symbols and not spec.raw:
        problems.append(
            (
                "channels",
                f"nothing to subscribe (expected channels and symbols, or raw {raw}{why_needed})",
            )
        )
    return problems
