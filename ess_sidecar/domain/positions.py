"""The position book the limits read: signed positions, marks and equity per account."""

from __future__ import annotations

from collections.abc import Iterable

from .orders import Fill, PositionSnapshot, Side


class PositionBook:
    """Positions keyed by account, then (strategy, symbol); marks by symbol."""

    def __init__(self) -> None:
        self._positions: dict[str, dict[tuple[str, str], float]] = {}
        self._equity: dict[str, float] = {}
        self._marks: dict[str, float] = {}

    def position(self, account: str, strategy: str, symbol: str) -> float:
        return self._positions.get(account, {}).get((strategy, symbol), 0.0)

    def positions(self, account: str) -> dict[tuple[str, str], float]:
        return self._positions.get(account, {})

    def equity(self, account: str) -> float | None:
        return self._equity.get(account)

    def mark(self, symbol: str) -> float | None:
        return self._marks.get(symbol)

    def set_equity(self, account: str, equity: float) -> None:
        self._equity[account] = equity

    def apply_fill(self, fill: Fill) -> float:
        """Apply one fill; its price becomes the symbol's mark. Returns the new position."""
        book = self._positions.setdefault(fill.account, {})
        key = (fill.strategy, fill.symbol)
        delta = fill.quantity if fill.side is Side.BUY else -fill.quantity
        position = book.get(key, 0.0) + delta
        if position:
            book[key] = position
        else:
            book.pop(key, None)
        self._marks[fill.symbol] = fill.price
        return position

    def sync(self, account: str, equity: float, snapshot: Iterable[PositionSnapshot]) -> int:
        """Replace the account's book with a full snapshot. Returns the open positions."""
        book: dict[tuple[str, str], float] = {}
        for position in snapshot:
            if position.quantity:
                book[(position.strategy, position.symbol)] = position.quantity
            if position.mark_price:
                self._marks[position.symbol] = position.mark_price
        self._positions[account] = book
        self._equity[account] = equity
        return len(book)
