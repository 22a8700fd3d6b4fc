"""The book the limits read: per account, positions, working orders, marks and equity.

Each quantity a limit measures is a `Leg`: a position and the working orders that could
still move it, kept per side. An account has one leg per (strategy, symbol), what the
strategy holds, and one per symbol, the account's net across its strategies. The
aggregates are updated as orders are reserved, filled and ended, so a check never walks
the working orders (docs/design.md, "The exposure model")."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .orders import Side


class Leg:
    """One position and the working orders on each side of it."""

    __slots__ = ("position", "buying", "selling", "working", "peak")

    def __init__(self) -> None:
        self.position = 0.0
        self.buying = 0.0  # remaining quantity of working buys
        self.selling = 0.0
        self.working = 0  # how many working orders are on it
        self.peak = 0.0  # worst(), kept current: checks read it for every other leg

    def worst(self, buy: float = 0.0, sell: float = 0.0) -> float:
        """The largest absolute position if every working order on one side filled,
        with `buy` or `sell` more working."""
        return max(abs(self.position + self.buying + buy),
                   abs(self.position - self.selling - sell))

    def move(self, quantity: float) -> None:
        """The position changes by a (signed) fill."""
        self.position += quantity
        self.peak = self.worst()

    def set_position(self, quantity: float) -> None:
        self.position = quantity
        self.peak = self.worst()

    def reduced_by(self, side: Side, quantity: float) -> bool:
        """Whether an order only reduces this position: even if it and every working
        order on its side filled, the position would shrink without crossing zero."""
        if side is Side.SELL:
            return self.position > 0.0 and self.selling + quantity <= self.position
        return self.position < 0.0 and self.buying + quantity <= -self.position

    def idle(self) -> bool:
        return not self.position and not self.working

    def reserve(self, side: Side, quantity: float) -> None:
        if side is Side.BUY:
            self.buying += quantity
        else:
            self.selling += quantity
        self.working += 1
        position = self.position  # worst(), inline: this runs for every allowed order
        self.peak = max(abs(position + self.buying), abs(position - self.selling))

    def release(self, side: Side, quantity: float, ended: bool) -> None:
        """Take `quantity` off the working orders on `side`; `ended`: one order fewer."""
        if ended:
            self.working -= 1
        if not self.working:  # exact zero: no drift left behind by float sums
            self.buying = self.selling = 0.0
        elif side is Side.BUY:
            self.buying = max(0.0, self.buying - quantity)
        else:
            self.selling = max(0.0, self.selling - quantity)
        self.peak = self.worst()


@dataclass
class AccountBook:
    equity: float | None = None
    marks: dict[str, float] = field(default_factory=dict)
    legs: dict[tuple[str, str], Leg] = field(default_factory=dict)  # (strategy, symbol)
    nets: dict[str, Leg] = field(default_factory=dict)  # symbol

    def leg(self, strategy: str, symbol: str) -> Leg:
        """The strategy's leg in the symbol (created empty)."""
        leg = self.legs.get((strategy, symbol))
        if leg is None:
            leg = self.legs[(strategy, symbol)] = Leg()
        return leg

    def net(self, symbol: str) -> Leg:
        net = self.nets.get(symbol)
        if net is None:
            net = self.nets[symbol] = Leg()
        return net

    def strategy_legs(self, strategy: str) -> Iterator[tuple[str, Leg]]:
        return ((symbol, leg) for (owner, symbol), leg in self.legs.items()
                if owner == strategy)

    def tidy(self, strategy: str, symbol: str) -> None:
        """Forget legs that hold nothing, so idle ids cost no memory."""
        if self.legs.get((strategy, symbol), Leg()).idle():
            self.legs.pop((strategy, symbol), None)
        if self.nets.get(symbol, Leg()).idle():
            self.nets.pop(symbol, None)


class Book:
    """Every account's book."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountBook] = {}

    def account(self, account: str) -> AccountBook:
        book = self.accounts.get(account)
        if book is None:
            book = self.accounts[account] = AccountBook()
        return book

    def peek(self, account: str) -> AccountBook | None:
        return self.accounts.get(account)

    def forget_if_empty(self, account: str) -> None:
        """Drop an account that holds nothing (no equity, marks, positions or working
        orders), so idle ids cost no memory; forgetting it loses no information."""
        book = self.accounts.get(account)
        if book is not None and book.equity is None and not (book.marks or book.legs
                                                             or book.nets):
            del self.accounts[account]

    def position(self, account: str, strategy: str, symbol: str) -> float:
        book = self.accounts.get(account)
        leg = book.legs.get((strategy, symbol)) if book else None
        return leg.position if leg else 0.0

    def positions(self, account: str) -> dict[tuple[str, str], float]:
        book = self.accounts.get(account)
        return {key: leg.position for key, leg in book.legs.items() if leg.position} \
            if book else {}

    def equity(self, account: str) -> float | None:
        book = self.accounts.get(account)
        return book.equity if book else None

    def mark(self, account: str, symbol: str) -> float | None:
        book = self.accounts.get(account)
        return book.marks.get(symbol) if book else None

    def set_equity(self, account: str, equity: float) -> None:
        self.account(account).equity = equity
