//! Thin wrappers of the RPCs other than checks: they return the gRPC error like any call,
//! bounded by the client's RPC timeout (1 s by default).

use std::future::Future;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::client::{Client, FAR_FUTURE};
use crate::pb::{self, OrderStatus, Side};

/// One incremental fill of an order the sidecar allowed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fill {
    pub account: String,
    pub strategy: String,
    pub symbol: String,
    pub side: Side,
    pub quantity: f64,
    pub price: f64,
    /// Required: the order the fill is of.
    pub client_order_id: String,
    /// Required: the venue's execution id; a fill_id already applied is ignored.
    pub fill_id: String,
}

/// A working order ended (`Cancelled`, `Rejected`, `Expired`) or is `Open` with
/// `remaining_quantity` left (the venue's leaves; required with `Open`, sent with `Open`
/// only, and only if `Some`: an `Open` update with `None` is refused by the sidecar,
/// INVALID_ARGUMENT, never taken as 0 leaves; `Some(0.0)` is sent: an order filled in full
/// whose fills are not reported yet). `filled_quantity` is the venue's cumulative filled
/// quantity (FIX CumQty), if known: the fills it counts beyond those reported stay reserved
/// until they arrive. Send it when fills come by a drop copy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderUpdate {
    pub account: String,
    pub client_order_id: String,
    pub status: OrderStatus,
    pub remaining_quantity: Option<f64>,
    pub filled_quantity: Option<f64>,
}

/// A full picture of one account for SyncPositions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub account: String,
    /// > 0, used by the exposure limits.
    pub equity: f64,
    pub positions: Vec<pb::Position>,
    /// The account's open orders. When any are listed, or `open_orders_complete` is set,
    /// they are all of its working orders; otherwise working orders are left as they are.
    pub open_orders: Vec<pb::OpenOrder>,
    pub open_orders_complete: bool,
    /// Per order, the cumulative fills (the venue's CumQty) the positions already count:
    /// fills reported after the snapshot move no position until they pass it. Name every
    /// order open or filled since the positions were read (0 if none of its fills are in
    /// them), or fills count twice or go missing.
    pub included_fills: Vec<pb::IncludedFills>,
}

impl Client {
    /// Runs one unary call bounded by the RPC timeout (sent as the gRPC deadline too).
    pub(crate) async fn unary<T, R, F>(
        &self,
        message: T,
        call: impl FnOnce(crate::Stub, Request<T>) -> F,
    ) -> Result<R, Status>
    where
        F: Future<Output = Result<Response<R>, Status>>,
    {
        let timeout: Duration = self.shared().rpc_timeout;
        let mut request = Request::new(message);
        // tonic panics on a grpc-timeout too long to write (Duration::MAX).
        request.set_timeout(timeout.min(FAR_FUTURE));
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, call(self.raw(), request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            // tonic's own enforcement of the gRPC deadline says CANCELLED.
            Ok(Err(_)) | Err(_) if started.elapsed() >= timeout => Err(Status::deadline_exceeded(
                format!("no answer within {timeout:?}"),
            )),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            ))),
        }
    }

    /// Applies one fill (once per fill_id: `duplicate` otherwise) and returns the signed
    /// position after it; `unchecked` if the sidecar never allowed that order (the account
    /// is then tripped).
    pub async fn report_fill(&self, fill: Fill) -> Result<pb::ReportFillResponse, Status> {
        let request = pb::ReportFillRequest {
            account: fill.account,
            strategy: fill.strategy,
            symbol: fill.symbol,
            side: fill.side as i32,
            quantity: fill.quantity,
            price: fill.price,
            client_order_id: fill.client_order_id,
            fill_id: fill.fill_id,
        };
        self.unary(
            request,
            |mut stub, r| async move { stub.report_fill(r).await },
        )
        .await
    }

    /// Releases a working order's reservation, except what may have been filled but not
    /// reported yet (see OrderUpdate); `known` is false if no such order was working.
    pub async fn report_order_update(
        &self,
        update: OrderUpdate,
    ) -> Result<pb::ReportOrderUpdateResponse, Status> {
        let request = pb::ReportOrderUpdateRequest {
            account: update.account,
            client_order_id: update.client_order_id,
            status: update.status as i32,
            remaining_quantity: update
                .remaining_quantity
                .filter(|_| update.status == OrderStatus::Open),
            filled_quantity: update.filled_quantity,
        };
        self.unary(request, |mut stub, r| async move {
            stub.report_order_update(r).await
        })
        .await
    }

    /// Replaces the account's book (and, with open orders, its working orders).
    pub async fn sync_positions(
        &self,
        snapshot: Snapshot,
    ) -> Result<pb::SyncPositionsResponse, Status> {
        let request = pb::SyncPositionsRequest {
            account: snapshot.account,
            equity: snapshot.equity,
            positions: snapshot.positions,
            open_orders: snapshot.open_orders,
            open_orders_complete: snapshot.open_orders_complete,
            included_fills: snapshot.included_fills,
        };
        self.unary(request, |mut stub, r| async move {
            stub.sync_positions(r).await
        })
        .await
    }

    /// Sends one heartbeat (`deregister`: the executor is shutting down cleanly). See
    /// [`Client::start_heartbeat`] for the dead-man's switch.
    pub async fn heartbeat(
        &self,
        executor_id: &str,
        scope: pb::Scope,
        ttl: Duration,
        deregister: bool,
    ) -> Result<pb::HeartbeatResponse, Status> {
        // Review 54e: a closed client's beats kept its scope alive for ever.
        if self.shared().is_closed() {
            return Err(Status::failed_precondition(
                "ess: the client is closed: no heartbeat is sent",
            ));
        }
        let request = pb::HeartbeatRequest {
            executor_id: executor_id.to_string(),
            scope: Some(scope),
            ttl_ms: u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX),
            deregister,
        };
        self.unary(
            request,
            |mut stub, r| async move { stub.heartbeat(r).await },
        )
        .await
    }

    /// One metric sample for `scope`; the answer says whether it tripped it.
    pub async fn report_metric(
        &self,
        scope: pb::Scope,
        metric: pb::Metric,
        value: f64,
    ) -> Result<pb::ReportMetricResponse, Status> {
        let request = pb::ReportMetricRequest {
            scope: Some(scope),
            metric: metric as i32,
            value,
        };
        self.unary(
            request,
            |mut stub, r| async move { stub.report_metric(r).await },
        )
        .await
    }

    /// The kill switch for a scope (HALT unless the request says otherwise); durable on the
    /// sidecar before it returns. Never refused for what comes with the stop: a reason over
    /// the sidecar's [`MAX_REASON_CHARS`] is cut (one over 4 MiB would never reach it), and
    /// any mode, reason code or directive number is sent, the sidecar noting one it does
    /// not know.
    pub async fn trigger(
        &self,
        mut request: pb::TriggerRequest,
    ) -> Result<pb::TriggerResponse, Status> {
        bound_reason(&mut request.reason);
        self.unary(request, |mut stub, r| async move { stub.trigger(r).await })
            .await
    }

    /// Every scope that is not ARMED, the thresholds and the state version.
    pub async fn get_state(&self) -> Result<pb::GetStateResponse, Status> {
        let request = pb::GetStateRequest::default();
        self.unary(
            request,
            |mut stub, r| async move { stub.get_state(r).await },
        )
        .await
    }
}

/// The sidecar's bound on a reason, in characters (ess_sidecar/domain/scopes.py).
pub const MAX_REASON_CHARS: usize = 1024;

/// Cuts `reason` to at most [`MAX_REASON_CHARS`] characters, saying how long it was.
pub(crate) fn bound_reason(reason: &mut String) {
    if reason.len() <= MAX_REASON_CHARS || reason.chars().nth(MAX_REASON_CHARS).is_none() {
        return; // short enough
    }
    let cut = format!(" [\u{2026} cut; {} bytes given]", reason.len());
    let keep = MAX_REASON_CHARS - cut.chars().count();
    let end = reason
        .char_indices()
        .nth(keep)
        .map_or(reason.len(), |(i, _)| i);
    reason.truncate(end);
    reason.push_str(&cut);
}
