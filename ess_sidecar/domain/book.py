"""The book the limits read: per account, positions, working orders, marks and equity.

Each quantity a limit measures is a `Leg`: a position and the working orders that could
still move it, kept per side. An account has one leg per (strategy, symbol), what the
strategy holds, and one per symbol, the account's net across its strategies.

Every aggregate a check reads is kept current as orders are reserved, filled and ended and
as marks move, so a check reads a few numbers whatever the number of working orders or
legs (docs/design.md, "The exposure model"):

- each leg's worst case (`peak`);
- per account, how many symbols have a non-zero net worst case (max positions);
- per account, the sum of worst case × price over each strategy's legs and over all of
  them (the strategy and portfolio limits), and which legs have a worst case but no price.
  A leg's worst case is valued side by side: each side's worst position at the larger
  of the mark and the highest limit price of the working orders on that side (`Leg.worth`),
  so no order is valued under its own price.

The sums are updated by differences, which round. Each update adds a bound on its
rounding error to the account's `slack`; a check whose answer that error could change
(its exposure within `slack` of a limit) first has the sums made again from the legs,
which resets `slack` to zero. So an incremental sum never decides where a fresh one would
decide otherwise."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .ids import nameable
from .orders import Side

# Bound on the relative rounding error of one update: a subtraction and two additions,
# each within half an ulp (2**-53), counted twice over to be safe.
ROUNDING: Final = 2.0 ** -51
# How far past zero a reduction may take a position, relative to it: what the sums of
# working orders round by (reduced_by), as fills are matched within working.FILL_TOLERANCE.
PAST_ZERO: Final = 1e-9
_SLACK: Final = 1.0 + PAST_ZERO
# Final: the compiled domain reads these as C statics (Side.BUY is two dict lookups).
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL


def no_reference(symbol: str) -> float:
    return 0.0


class Prices:
    """The limit prices of the working orders on one side of a leg: how many at each, and
    the highest (`top`). The highest is kept by a heap whose entries for prices no longer
    counted are dropped when they come to the top, so no change walks the prices: a
    re-quote of the best bid among 1,000 costs a few heap steps (review 33)."""

    __slots__ = ("top", "_counts", "_heap")

    def __init__(self) -> None:
        self.top = 0.0  # 0: no working order
        self._counts: dict[float, int] = {}
        self._heap: list[float] = []  # prices negated: heapq keeps the least first

    def add(self, price: float) -> None:
        count = self._counts.get(price, 0)
        self._counts[price] = count + 1
        if not count:
            heapq.heappush(self._heap, -price)
            if price > self.top:
                self.top = price

    def remove(self, price: float) -> None:
        counts = self._counts
        count = counts[price] - 1
        if count:
            counts[price] = count
            return
        del counts[price]
        heap = self._heap
        if price == self.top:
            while heap and -heap[0] not in counts:
                heapq.heappop(heap)
            self.top = -heap[0] if heap else 0.0
        if len(heap) > 2 * len(counts) + 64:  # prices gone below the top pile up: rebuild
            self._heap = [-price for price in counts]
            heapq.heapify(self._heap)


class Leg:
    """One position and the working orders on each side of it."""

    __slots__ = ("position", "buying", "selling", "working", "peak", "buy_top", "sell_top",
                 "_bids", "_asks")

    def __init__(self) -> None:
        self.position = 0.0
        self.buying = 0.0  # remaining quantity of working buys
        self.selling = 0.0
        self.working = 0  # how many working orders are on it
        self.peak = 0.0  # worst(), kept current by settle(): checks read it
        self.buy_top = 0.0  # the highest limit price of the working buys (0: none)
        self.sell_top = 0.0  # and of the working sells
        self._bids: Prices | None = None  # made with the first working order on a side
        self._asks: Prices | None = None

    def worst(self, buy: float = 0.0, sell: float = 0.0) -> float:
        """The largest absolute position if every working order on one side filled,
        with `buy` or `sell` more working."""
        return max(abs(self.position + self.buying + buy),
                   abs(self.position - self.selling - sell))

    def worth(self, mark: float, buy: float = 0.0, sell: float = 0.0,
              price: float = 0.0) -> float:
        """The worst case's value: each side's worst position at the larger of `mark` and
        the highest limit price of the working orders on that side, so that no order is
        valued under its own price; `buy` or `sell`: an order of that quantity at `price`
        working too. Finite: quantities and prices are bounded (orders.py)."""
        position = self.position
        bid = self.buy_top if self.buy_top > mark else mark
        if buy and price > bid:
            bid = price
        ask = self.sell_top if self.sell_top > mark else mark
        if sell and price > ask:
            ask = price
        long = abs(position + self.buying + buy) * bid
        short = abs(position - self.selling - sell) * ask
        return long if long >= short else short

    def settle(self, peak: float) -> None:
        """The worst case has changed to `peak`, or a side's highest price has (a subclass
        updates its totals)."""
        self.peak = peak

    def move(self, quantity: float) -> None:
        """The position changes by a (signed) fill."""
        self.position += quantity
        self.settle(self.worst())

    def set_position(self, quantity: float) -> None:
        self.position = quantity
        self.settle(self.worst())

    def reduced_by(self, side: Side, quantity: float) -> bool:
        """Whether an order only reduces this position: even if it and every working
        order on its side filled, the position would shrink without crossing zero (by
        more than the rounding of the sums: review 35, a sell of exactly what was left of
        a long, 14.30146 less sells of 1.322 and 9.501, was not reducing, and REDUCE_ONLY
        denied it)."""
        if side is _SELL:
            return self.position > 0.0 and self.selling + quantity <= self.position * _SLACK
        return self.position < 0.0 and self.buying + quantity <= -self.position * _SLACK

    def idle(self) -> bool:
        return not self.position and not self.working

    def reserve(self, side: Side, quantity: float, price: float) -> None:
        """A new working order: `quantity` on `side`, at the limit `price`."""
        self.working += 1
        self._price(side, price)
        self.widen(side, quantity)

    def widen(self, side: Side, quantity: float) -> None:
        """The working orders already counted on `side` reserve `quantity` more."""
        if side is _BUY:
            self.buying += quantity
        else:
            self.selling += quantity
        position = self.position  # worst(), inline: this runs for every allowed order
        self.settle(max(abs(position + self.buying), abs(position - self.selling)))

    def release(self, side: Side, quantity: float, ended: bool, price: float = 0.0) -> None:
        """Take `quantity` off the working orders on `side`; `ended`: one order fewer,
        and its limit `price` (0: none to take out) leaves the side's prices."""
        if price:
            self._unprice(side, price)
        if ended:
            self.working -= 1
        if not self.working:  # exact zero: no drift left behind by float sums
            self.buying = self.selling = 0.0
        elif side is _BUY:
            self.buying = max(0.0, self.buying - quantity)
        else:
            self.selling = max(0.0, self.selling - quantity)
        self.settle(self.worst())

    def priced(self, side: Side, price: float, counted: bool) -> None:
        """Count a limit `price` on `side` (`counted`), or stop counting it, for an order
        whose quantity is counted already (a replace in flight, a snapshot's re-pricing)."""
        if counted:
            self._price(side, price)
        else:
            self._unprice(side, price)
        self.settle(self.peak)

    def _price(self, side: Side, price: float) -> None:
        if side is _BUY:
            if self._bids is None:
                self._bids = Prices()
            self._bids.add(price)
            self.buy_top = self._bids.top
        else:
            if self._asks is None:
                self._asks = Prices()
            self._asks.add(price)
            self.sell_top = self._asks.top

    def _unprice(self, side: Side, price: float) -> None:
        prices = self._bids if side is _BUY else self._asks
        assert prices is not None
        prices.remove(price)
        if side is _BUY:
            self.buy_top = prices.top
        else:
            self.sell_top = prices.top

    def saved(self) -> tuple[float, float, int]:
        return self.buying, self.selling, self.working

    def restore(self, saved: tuple[float, float, int]) -> None:
        self.buying, self.selling, self.working = saved
        self.settle(self.worst())


class NetLeg(Leg):
    """The account's net leg in a symbol: counts toward the symbols held."""

    __slots__ = ("_account",)

    def __init__(self, account: AccountBook) -> None:
        super().__init__()
        self._account = account

    def settle(self, peak: float) -> None:
        if (peak > 0.0) is not (self.peak > 0.0):
            self._account.held += 1 if peak > 0.0 else -1
        self.peak = peak


class StrategyLeg(Leg):
    """A strategy's leg in a symbol: its worst case × price counts toward the strategy's
    and the account's exposure."""

    __slots__ = ("_account", "strategy", "symbol", "value")

    def __init__(self, account: AccountBook, strategy: str, symbol: str) -> None:
        super().__init__()
        self._account, self.strategy, self.symbol = account, strategy, symbol
        self.value = 0.0  # worth(price), as last counted in the account's sums

    def settle(self, peak: float) -> None:
        self.peak = peak
        self._account.revalue(self)


@dataclass(slots=True)
class Exposure:
    """A strategy's legs in an account, and the sum of their worst case × price."""

    legs: int = 0
    value: float = 0.0


@dataclass
class AccountBook:
    equity: float | None = None
    marks: dict[str, float] = field(default_factory=dict)
    # Per symbol, what a fill's price may be within (the price band) to move the mark:
    # the last snapshot's mark, the broker's word, else the first fill's price. A mark
    # walked by fills, each within the band of the one before, would have no bound.
    anchors: dict[str, float] = field(default_factory=dict)
    legs: dict[tuple[str, str], StrategyLeg] = field(default_factory=dict)
    nets: dict[str, NetLeg] = field(default_factory=dict)  # symbol
    reference: Callable[[str], float] = no_reference  # the price without a mark (0: none)
    held: int = 0  # symbols whose net worst case is not zero
    strategies: dict[str, Exposure] = field(default_factory=dict)
    total: float = 0.0  # the sum over every strategy
    slack: float = 0.0  # bound on the rounding error of the sums
    unpriced: dict[tuple[str, str], None] = field(default_factory=dict)  # worst case, no price
    # Open orders its last snapshot listed and the sidecar could not adopt (order ids at
    # limits.max_remembered_orders): what they reserve is unknown, so its orders are denied
    unadopted: int = 0
    # Its legs (a position, working orders) whose strategy or symbol no request can name,
    # journaled before stop 60 with two spaces in a row (ids.py), -> whether the strategy
    # is one. What they hold may be a renamed strategy's or symbol's now, so its orders
    # are judged by no limit but allowed only if they reduce (exposure.check_unnamed;
    # review 60a: a renamed strategy went to 105 % against 60 %; 60b: a renamed symbol
    # to 58 % against 30 %, and an order revived after a snapshot). Kept as legs come
    # and go, replayed or not.
    unnamed: dict[tuple[str, str], bool] = field(default_factory=dict)
    _holders: dict[str, dict[str, StrategyLeg]] = field(default_factory=dict)  # by symbol

    def leg(self, strategy: str, symbol: str) -> StrategyLeg:
        """The strategy's leg in the symbol (created empty)."""
        leg = self.legs.get((strategy, symbol))
        if leg is None:
            leg = self.legs[(strategy, symbol)] = StrategyLeg(self, strategy, symbol)
            self._holders.setdefault(symbol, {})[strategy] = leg
            named = nameable(strategy)
            if not (named and nameable(symbol)):
                self.unnamed[(strategy, symbol)] = not named
            exposure = self.strategies.get(strategy)
            if exposure is None:
                exposure = self.strategies[strategy] = Exposure()
            exposure.legs += 1
        return leg

    def net(self, symbol: str) -> NetLeg:
        net = self.nets.get(symbol)
        if net is None:
            net = self.nets[symbol] = NetLeg(self)
        return net

    def price(self, symbol: str) -> float:
        """What a unit of the symbol is worth here: the mark, else the reference (0: none)."""
        mark = self.marks.get(symbol)
        return mark if mark is not None else self.reference(symbol)

    def set_mark(self, symbol: str, mark: float) -> None:
        if self.marks.get(symbol) != mark:
            self.marks[symbol] = mark
            for leg in self._holders.get(symbol, {}).values():
                self.revalue(leg)

    def revalue(self, leg: StrategyLeg) -> None:
        """Count the leg's worst case × price in the sums, in place of what it was."""
        peak = leg.peak
        if peak:
            price = self.price(leg.symbol)
            if price:
                value = leg.worth(price)
                if self.unpriced:
                    self.unpriced.pop((leg.strategy, leg.symbol), None)
            else:
                value = 0.0
                self.unpriced[(leg.strategy, leg.symbol)] = None
        else:
            value = 0.0
            if self.unpriced:
                self.unpriced.pop((leg.strategy, leg.symbol), None)
        old = leg.value
        if value != old:
            leg.value = value
            before = self.total
            self.strategies[leg.strategy].value += value - old
            self.total = before + (value - old)
            self.slack += (value + old + abs(before) + abs(self.total)) * ROUNDING

    def exposure_with(self, strategy: str, change: float) -> tuple[float, float]:
        """The strategy's and the account's sums with `change` added to one of its legs."""
        exposure = self.strategies.get(strategy)
        return (exposure.value if exposure else 0.0) + change, self.total + change

    def exposure_counting(self, strategy: str, leg: Leg, value: float) -> tuple[float, float]:
        """The strategy's and the account's sums with `leg` counted at `value`, made from
        the legs and exactly rounded (math.fsum): for a comparison rounding could decide."""
        others = [(each.strategy, each.value) for each in self.legs.values() if each is not leg]
        return (math.fsum([v for s, v in others if s == strategy] + [value]),
                math.fsum([v for _, v in others] + [value]))

    def resum(self) -> None:
        """Make the sums again from the legs, exactly rounded: no slack left."""
        for exposure in self.strategies.values():
            exposure.value = 0.0
        by_strategy: dict[str, list[float]] = {}
        for leg in self.legs.values():
            by_strategy.setdefault(leg.strategy, []).append(leg.value)
        for strategy, values in by_strategy.items():
            self.strategies[strategy].value = math.fsum(values)
        self.total = math.fsum(leg.value for leg in self.legs.values())
        self.slack = 0.0

    def tidy(self, strategy: str, symbol: str) -> None:
        """Forget legs that hold nothing, so idle ids cost no memory."""
        leg = self.legs.get((strategy, symbol))
        if leg is not None and leg.idle():
            del self.legs[(strategy, symbol)]
            if self.unnamed:
                self.unnamed.pop((strategy, symbol), None)
            holders = self._holders[symbol]
            del holders[strategy]
            if not holders:
                del self._holders[symbol]
            exposure = self.strategies[strategy]
            exposure.legs -= 1
            exposure.value -= leg.value  # 0: an idle leg has no worst case
            if not exposure.legs:
                del self.strategies[strategy]
            if not self.legs:  # nothing held: the sums are exactly zero again
                self.total = self.slack = 0.0
        net = self.nets.get(symbol)
        if net is not None and net.idle():
            del self.nets[symbol]


class Book:
    """Every account's book. `reference` prices a symbol no mark is known for (0: none)."""

    def __init__(self, reference: Callable[[str], float] = no_reference) -> None:
        self.accounts: dict[str, AccountBook] = {}
        self._reference = reference
        # Read by checks of an account nothing is known of, never written; it prices by
        # the reference too (review 30: a SELL's notional needs it).
        self.nobody = AccountBook(reference=reference)

    def account(self, account: str) -> AccountBook:
        book = self.accounts.get(account)
        if book is None:
            book = self.accounts[account] = AccountBook(reference=self._reference)
        return book

    def peek(self, account: str) -> AccountBook | None:
        return self.accounts.get(account)

    def forget_if_empty(self, account: str) -> None:
        """Drop an account that holds nothing (no equity, marks, positions, working
        orders or orders left out), so idle ids cost no memory; forgetting it loses no
        information."""
        book = self.accounts.get(account)
        if book is not None and book.equity is None and not (book.marks or book.legs
                                                             or book.nets or book.unadopted):
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
