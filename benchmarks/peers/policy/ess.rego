# The sidecar's order check (docs/design.md, "Limits" and "The exposure model") as far as a
# stateless policy can have it, for benchmarks/peers: OPA's REST API is timed against the
# sidecar, so both must give the same decision for the same order. The harness checks that
# they do on the probe orders of benchmarks/peers/probes.py before it times anything.
#
# POST /v1/data/ess/decision {"input": {"account", "strategy", "symbol", "side": "BUY" |
# "SELL", "quantity", "price", "client_order_id"}} -> {"result": {"allowed", "reason"}},
# reason a DecisionReason name without its prefix ("ALLOWED", "SCOPE_TRIPPED", ...).
#
# Modelled, in the sidecar's order (the first failure wins): a TRIPPED scope among GLOBAL,
# ACCOUNT:<account>, STRATEGY:<strategy>, SYMBOL:<symbol>; order quantity and notional
# (per symbol, else the default; a SELL valued at max(mark, price), MARK_UNKNOWN with no
# mark nor reference_price); the price band against the account's mark, else the symbol's
# reference_price (skipped with neither); then, for an order that grows the account's net
# position in the symbol or the strategy's own, EQUITY_UNKNOWN, MARK_UNKNOWN (no mark, no
# reference_price), and the symbol, strategy and portfolio exposure after the order, valued
# at max(mark, price), in % of equity. Positions, marks, equity and scope states are data
# (data.json), which the harness also gives the sidecar (SyncPositions, Trigger).
#
# Numbers are OPA's (arbitrary precision; each arithmetic operation costs some 10 us on the
# benchmark's machine, which is most of this policy's evaluation time); the probes keep away
# from the limits' edges, where they and the sidecar's doubles could round apart.
#
# Not modelled, because they need state the sidecar keeps and a policy engine does not:
# working orders (counted in the sidecar's exposure; the harness ends them after every
# probe), MAX_WORKING_ORDERS, DUPLICATE_ORDER, ORDER_RATE; nor COOLING_DOWN, REDUCE_ONLY,
# MAX_POSITIONS and QUANTITY_UNREPRESENTABLE (no probe reaches them).
package ess

import rego.v1

default decision := {"allowed": false, "reason": "UNSPECIFIED"}

decision := {"allowed": reason == "ALLOWED", "reason": reason}

symbol := upper(input.symbol) # symbols are case-insensitive in the sidecar

# Point look-ups into data (data.ess_state.accounts[id], not the whole document): OPA
# then reads only what the order touches.
account := data.ess_state.accounts[input.account]

account := {} if not data.ess_state.accounts[input.account]

positions := object.get(account, "positions", [])

marks := object.get(account, "marks", {})

limits := object.union(data.ess_state.limits.default, symbol_limits)

symbol_limits := data.ess_state.limits.symbols[symbol]

symbol_limits := {} if not data.ess_state.limits.symbols[symbol]

covering := [
	"GLOBAL",
	concat(":", ["ACCOUNT", input.account]),
	concat(":", ["STRATEGY", input.strategy]),
	concat(":", ["SYMBOL", symbol]),
]

delta := input.quantity if input.side == "BUY"

delta := 0 - input.quantity if input.side == "SELL"

# Net position of the account in the order's symbol, and the strategy's own (its leg).
net := sum([p.quantity | some p in positions; p.symbol == symbol])

leg := sum([p.quantity | some p in positions; p.symbol == symbol; p.strategy == input.strategy])

grows_net if abs(net + delta) > abs(net)

grows_leg if abs(leg + delta) > abs(leg)

grows if {
	data.ess_state.limits.exposure_enabled
	grows_net
}

grows if {
	data.ess_state.limits.exposure_enabled
	grows_leg
}

# The account's mark, else the symbol's configured reference price (none: no mark).
mark_of(s) := marks[s]

mark_of(s) := ref if {
	not marks[s]
	ref := object.get(object.get(data.ess_state.limits.symbols, s, {}), "reference_price", 0)
	ref > 0
}

equity := account.equity if account.equity > 0

valued_at := max([mark_of(symbol), input.price])

# A BUY's notional at its limit price; a SELL may execute above its limit, at the market.
notional_price := input.price if input.side == "BUY"

notional_price := valued_at if input.side == "SELL"

percent := 100 / equity

# Every other leg's |position| x mark: of the order's strategy, and of the whole account.
others := [[p.strategy, abs(p.quantity) * mark_of(p.symbol)] |
	some p in positions
	p.quantity != 0
	not own(p)
]

own(p) if {
	p.strategy == input.strategy
	p.symbol == symbol
}

leg_notional := abs(leg + delta) * valued_at

strategy_pct := (leg_notional + sum([v | some [s, v] in others; s == input.strategy])) * percent

portfolio_pct := (leg_notional + sum([v | some [_, v] in others])) * percent

reason := "SCOPE_TRIPPED" if {
	some s in covering
	data.ess_state.scopes[s] == "TRIPPED"
} else := "MAX_ORDER_QUANTITY" if {
	limits.max_order_quantity > 0
	input.quantity > limits.max_order_quantity
} else := "MARK_UNKNOWN" if {
	limits.max_order_notional > 0
	input.side == "SELL"
	not mark_of(symbol)
} else := "MAX_ORDER_NOTIONAL" if {
	limits.max_order_notional > 0
	input.quantity * notional_price > limits.max_order_notional
} else := "PRICE_BAND" if {
	limits.price_band_pct > 0
	mark := mark_of(symbol)
	(abs(input.price - mark) / mark) * 100 > limits.price_band_pct
} else := "EQUITY_UNKNOWN" if {
	grows
	not equity
} else := "MARK_UNKNOWN" if {
	grows
	not mark_of(symbol)
} else := "SYMBOL_EXPOSURE" if {
	grows
	grows_net
	(abs(net + delta) * valued_at) * percent > data.ess_state.limits.max_symbol_exposure_pct
} else := "STRATEGY_EXPOSURE" if {
	grows
	grows_leg
	strategy_pct > data.ess_state.limits.max_strategy_exposure_pct
} else := "PORTFOLIO_EXPOSURE" if {
	grows
	grows_leg
	portfolio_pct > data.ess_state.limits.max_portfolio_exposure_pct
} else := "ALLOWED"
