"""The machinery every exchange adapter shares (sans-IO: no trio, no clock, no sockets)."""

from actors.exchanges.sdk.books import BookChain as BookChain
from actors.exchanges.sdk.books import Mark as Mark
from actors.exchanges.sdk.books import default_mark as default_mark

__all__ = ["BookChain", "Mark", "default_mark"]
