"""The orders the latency benchmarks send, and how their sidecar is set up for them.

Since the order lifecycle, a benchmark cannot send one order over and over: a
client_order_id is required and unique per account (a reused one is DUPLICATE_ORDER), five
identical orders within a second are DUPLICATE_ORDER, an allowed order is working until
evidence ends it and working orders are capped (1000 per account, 500 per strategy:
MAX_WORKING_ORDERS), and with the exposure limits on an order needs a mark for its symbol
(MARK_UNKNOWN). So:

- every order has its own client_order_id, "<12 hex, random per client>-<count>" as
  ess_client makes them, and its price cycles over DISTINCT_PRICES values within 1 % of
  the mark, so no five are identical within the window at any realistic rate;
- the sidecar's config is the shipped one but for the rate limit (off: one strategy sends
  thousands of orders a second) and the working-order caps, raised only if one run of
  calls is longer than the shipped cap (never in the default runs);
- before the first call, and after every warm-up chunk and measured segment, off the
  timed path and outside the server-CPU window, `settle` sends the sidecar a SyncPositions
  snapshot: equity, the mark (a zero-quantity position) and an empty, complete list of
  open orders, which ends every order the segment made working. Each segment therefore
  starts from an account with no working orders, as a busy account under the caps would,
  and the exposure limits (on, as shipped) value every order against a synced mark.

The orders are ALLOWED through every limit: the equity is large enough that a segment's
working orders stay far below the exposure limits.
"""

from __future__ import annotations

import secrets

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.domain.limits import LimitSettings

ACCOUNT, STRATEGY, SYMBOL = "ACC-1", "STRAT-1", "BTC-USD"
MARK = 100.0
EQUITY = 1e12  # a segment's working orders are a negligible share of it
DISTINCT_PRICES = 10_000  # prices MARK .. MARK * 1.01, in steps of MARK / 1e6
_SHIPPED = LimitSettings()
# The longest run of calls with no settle in between that the shipped caps admit (every
# order is on one account and strategy).
SHIPPED_RUN = min(_SHIPPED.max_working_orders_per_account,
                  _SHIPPED.max_working_orders_per_strategy)


def price(n: int) -> float:
    return MARK * (1.0 + (n % DISTINCT_PRICES) * 1e-6)


class Orders:
    """A client's orders: each with its own client_order_id and a cycling price."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._count = 0

    def next(self) -> pb.CheckOrderRequest:
        self._count += 1
        n = self._count
        return pb.CheckOrderRequest(account=ACCOUNT, strategy=STRATEGY, symbol=SYMBOL,
                                    side=pb.SIDE_BUY, quantity=1.0, price=price(n),
                                    client_order_id=f"{self._prefix}-{n}")


def chunks(calls: int, most: int = SHIPPED_RUN) -> list[int]:
    """`calls` split into runs of at most `most` (for the warm-up, which is not timed)."""
    return [min(most, calls - done) for done in range(0, calls, most)]


def limits(longest_run: int) -> dict[str, object]:
    """The [limits] of the benchmark sidecar, for runs of at most `longest_run` calls
    between two settles."""
    cap = max(longest_run, SHIPPED_RUN)
    return {"max_orders_per_second": 0, "exposure_enabled": True,
            "max_working_orders_per_account": max(cap, _SHIPPED.max_working_orders_per_account),
            "max_working_orders_per_strategy": max(cap,
                                                   _SHIPPED.max_working_orders_per_strategy)}


def config(longest_run: int) -> str:
    """limits() as the sidecar's TOML config file."""
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
             for k, v in limits(longest_run).items()]
    return "[limits]\n" + "\n".join(lines) + "\n"


SETTLE = pb.SyncPositionsRequest(
    account=ACCOUNT, equity=EQUITY,
    positions=[pb.Position(strategy=STRATEGY, symbol=SYMBOL, quantity=0, mark_price=MARK)],
    open_orders_complete=True)


class Settler:
    """Sends SETTLE to one sidecar over its own channel; checks that no order is left
    working."""

    def __init__(self, target: str, metadata: tuple = ()) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.GuardServiceStub(self._channel)
        self._metadata = metadata or None

    def __call__(self) -> None:
        reply = self._stub.SyncPositions(SETTLE, timeout=30, metadata=self._metadata)
        if reply.working_orders:
            raise RuntimeError(f"{reply.working_orders} orders still working after a sync"
                               " with an empty list of open orders")

    def close(self) -> None:
        self._channel.close()
