"""GuardClient and the order lifecycle against a real sidecar: the client_order_ids the
client makes up, fills tied to the orders the sidecar allowed, and the evidence that ends a
working order (an order update, a snapshot of open orders)."""

from __future__ import annotations

from conftest import RELAXED_TIMEOUT_S, SidecarProcess

from ess.v1 import guard_pb2 as pb
from ess_client import GuardClient

ACCOUNT = "acc-1"
ORDER = dict(account=ACCOUNT, strategy="momo", symbol="AAPL", side="BUY", quantity=10.0,
             price=100.0)
FILL = dict(account=ACCOUNT, strategy="momo", symbol="AAPL", side="BUY", price=100.0)
# Exposure: the symbol limit is 30 % of equity, 300 AAPL at 100. One BIG order fits; a
# second one, counted with the first still working, does not.
EQUITY = 100_000.0
MARK = pb.Position(strategy="momo", symbol="AAPL", quantity=0, mark_price=100.0)
BIG = {**ORDER, "quantity": 200.0}


async def test_a_check_without_a_client_order_id_gets_one_unique_across_clients(
        client: GuardClient, sidecar: SidecarProcess) -> None:
    async with GuardClient(sidecar.uds_target, check_timeout_s=RELAXED_TIMEOUT_S) as other:
        verdicts = [await guard.check(**{**ORDER, "quantity": quantity})
                    for guard in (client, other) for quantity in (1.0, 2.0)]
    assert all(v.allowed for v in verdicts), verdicts
    ids = [v.client_order_id for v in verdicts]
    assert all(ids) and len(set(ids)) == 4
    # The sidecar keeps each order working under the id the verdict names.
    working = sidecar.working_orders(ACCOUNT)
    assert sorted(w.client_order_id for w in working) == sorted(ids)
    assert {w.client_order_id: w.decision_id for w in working} == {
        v.client_order_id: v.decision_id for v in verdicts}


async def test_a_given_client_order_id_is_kept_and_reusing_it_is_a_duplicate(
        client: GuardClient) -> None:
    first = await client.check(**ORDER, client_order_id="mine-1")
    assert (first.allowed, first.client_order_id) == (True, "mine-1")
    again = await client.check(**ORDER, client_order_id="mine-1")
    assert (again.allowed, again.reason, again.failure, again.client_order_id) == (
        False, pb.DECISION_REASON_DUPLICATE_ORDER, None, "mine-1")


async def test_a_fill_moves_the_position_once_per_fill_id_and_draws_down_its_order(
        client: GuardClient, sidecar: SidecarProcess) -> None:
    verdict = await client.check(**ORDER)
    assert verdict.allowed
    fill = {**FILL, "quantity": 4.0, "client_order_id": verdict.client_order_id}
    first = await client.report_fill(**fill, fill_id="exec-1")
    assert (first.position, first.duplicate, first.unchecked) == (4.0, False, False)
    assert first.account_state == pb.STATE_ARMED
    replay = await client.report_fill(**fill, fill_id="exec-1")
    assert (replay.position, replay.duplicate, replay.unchecked) == (4.0, True, False)
    second = await client.report_fill(**fill, fill_id="exec-2")
    assert (second.position, second.duplicate) == (8.0, False)
    [working] = sidecar.working_orders(ACCOUNT)
    assert (working.client_order_id, working.quantity, working.remaining_quantity) == (
        verdict.client_order_id, 10.0, 2.0)


async def test_a_fill_of_an_order_never_allowed_is_unchecked_and_trips_the_account(
        client: GuardClient) -> None:
    fill = await client.report_fill(**FILL, quantity=5.0, client_order_id="past-the-guard",
                                    fill_id="exec-9")
    assert (fill.unchecked, fill.duplicate, fill.position) == (True, False, 5.0)
    assert fill.account_state == pb.STATE_TRIPPED
    verdict = await client.check(**ORDER)
    assert (verdict.allowed, verdict.reason, verdict.blocking_scope) == (
        False, pb.DECISION_REASON_SCOPE_TRIPPED, f"ACCOUNT:{ACCOUNT}")
    [scope] = (await client.get_state()).scopes
    assert (scope.scope.kind, scope.scope.id, scope.state, scope.breaker) == (
        pb.SCOPE_KIND_ACCOUNT, ACCOUNT, pb.STATE_TRIPPED, "unchecked_order")


async def test_with_exposure_on_an_order_needs_a_mark_synced_for_its_symbol(
        exposure_client: GuardClient) -> None:
    await exposure_client.sync_positions(ACCOUNT, EQUITY, [])
    assert (await exposure_client.check(**ORDER)).reason == pb.DECISION_REASON_MARK_UNKNOWN
    await exposure_client.sync_positions(ACCOUNT, EQUITY, [MARK])  # quantity 0, a mark
    assert (await exposure_client.check(**ORDER)).allowed


async def test_report_order_update_releases_the_reservation(
        exposure_client: GuardClient) -> None:
    guard = exposure_client
    await guard.sync_positions(ACCOUNT, EQUITY, [MARK])
    first = await guard.check(**BIG)
    assert first.allowed
    denied = await guard.check(**BIG)
    assert (denied.allowed, denied.reason) == (False, pb.DECISION_REASON_SYMBOL_EXPOSURE)
    shrunk = await guard.report_order_update(ACCOUNT, first.client_order_id, "OPEN",
                                             remaining_quantity=150.0)
    assert shrunk.known
    assert (await guard.check(**BIG)).reason == pb.DECISION_REASON_SYMBOL_EXPOSURE  # 350
    cancelled = await guard.report_order_update(ACCOUNT, first.client_order_id, "CANCELLED")
    assert cancelled.known
    assert (await guard.check(**BIG)).allowed
    again = await guard.report_order_update(ACCOUNT, first.client_order_id, "CANCELLED")
    assert not again.known  # it had ended: nothing changed


async def test_an_update_with_the_venues_filled_quantity_keeps_its_unreported_fills(
        exposure_client: GuardClient, exposure_sidecar) -> None:
    """A cancel whose fills the drop copy has not reported yet: they stay reserved."""
    guard = exposure_client
    await guard.sync_positions(ACCOUNT, EQUITY, [MARK])
    first = await guard.check(**BIG)
    cancelled = await guard.report_order_update(ACCOUNT, first.client_order_id, "CANCELLED",
                                                filled_quantity=120.0)
    assert cancelled.known
    [tail] = exposure_sidecar.working_orders(ACCOUNT)
    assert (tail.client_order_id, tail.remaining_quantity) == (first.client_order_id, 120.0)
    assert (await guard.check(**BIG)).reason == pb.DECISION_REASON_SYMBOL_EXPOSURE


async def test_sync_positions_with_open_orders_ends_the_working_orders_it_does_not_list(
        exposure_client: GuardClient, exposure_sidecar: SidecarProcess) -> None:
    guard = exposure_client
    await guard.sync_positions(ACCOUNT, EQUITY, [MARK])
    first = await guard.check(**BIG)
    assert first.allowed
    silent = await guard.sync_positions(ACCOUNT, EQUITY, [MARK])  # says nothing of orders
    assert (silent.positions, silent.working_orders) == (0, 1)
    assert (await guard.check(**BIG)).reason == pb.DECISION_REASON_SYMBOL_EXPOSURE
    synced = await guard.sync_positions(ACCOUNT, EQUITY, [MARK], open_orders=[])
    assert synced.working_orders == 0
    assert exposure_sidecar.working_orders(ACCOUNT) == []
    second = await guard.check(**BIG)
    assert second.allowed
    listed = pb.OpenOrder(client_order_id=second.client_order_id, strategy="momo",
                          symbol="AAPL", side=pb.SIDE_BUY, remaining_quantity=200.0,
                          price=100.0)
    kept = await guard.sync_positions(ACCOUNT, EQUITY, [MARK], open_orders=[listed])
    assert kept.working_orders == 1
    assert (await guard.check(**BIG)).reason == pb.DECISION_REASON_SYMBOL_EXPOSURE


async def test_sync_positions_names_the_fills_its_positions_already_count(
        client: GuardClient) -> None:
    verdict = await client.check(**ORDER)
    held = pb.Position(strategy="momo", symbol="AAPL", quantity=10.0, mark_price=100.0)
    await client.sync_positions(ACCOUNT, EQUITY, [held], open_orders=[],
                                included_fills={verdict.client_order_id: 10.0})
    late = await client.report_fill(**FILL, quantity=10.0, fill_id="exec-late",
                                    client_order_id=verdict.client_order_id)
    assert (late.position, late.unchecked) == (10.0, False)  # in the snapshot already
