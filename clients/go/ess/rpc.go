package ess

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// Fill is one incremental fill of an order the sidecar allowed.
type Fill struct {
	Account, Strategy, Symbol string
	Side                      essv1.Side
	Quantity, Price           float64
	ClientOrderID             string // required: the order the fill is of
	FillID                    string // required: the venue's execution id
}

// OrderUpdate says a working order ended (CANCELLED, REJECTED, EXPIRED) or is OPEN with
// RemainingQuantity left (the venue's leaves; required with OPEN, sent with OPEN only, and
// only if non-nil: an OPEN update without it is refused by the sidecar, INVALID_ARGUMENT,
// never taken as 0 leaves; a 0 that is set is sent: an order filled in full whose fills are
// not reported yet). FilledQuantity is the venue's cumulative filled quantity (FIX CumQty),
// if known (nil: unknown, not sent; 0 is sent): the fills it counts beyond those reported
// stay reserved until they arrive. Without it an OPEN update releases nothing. Set it when
// fills come by a separate drop copy.
type OrderUpdate struct {
	Account           string
	ClientOrderID     string
	Status            essv1.OrderStatus
	RemainingQuantity *float64
	FilledQuantity    *float64
}

// Snapshot is a full picture of one account for SyncPositions.
type Snapshot struct {
	Account   string
	Equity    float64 // > 0, used by the exposure limits
	Positions []*essv1.Position
	// The account's open orders. When any are listed, or OpenOrdersComplete is set, they
	// are all of its working orders; otherwise working orders are left as they are.
	OpenOrders         []*essv1.OpenOrder
	OpenOrdersComplete bool
	// Per order, the cumulative fills (the venue's CumQty) the positions already count:
	// fills reported after the snapshot move no position until they pass it. Name every
	// order open or filled since the positions were read (0 if none of its fills are in
	// them), or fills count twice or go missing.
	IncludedFills []*essv1.IncludedFills
}

// rpcContext bounds a call by the client's RPC timeout unless ctx has a deadline.
func (c *Client) rpcContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.opts.rpcTimeout)
}

// ReportFill applies one fill (once per FillID: Duplicate otherwise) and returns the
// signed position after it; Unchecked if the sidecar never allowed that order (the
// account is then tripped).
func (c *Client) ReportFill(ctx context.Context, fill Fill) (*essv1.ReportFillResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	return c.stub.ReportFill(ctx, &essv1.ReportFillRequest{
		Account: fill.Account, Strategy: fill.Strategy, Symbol: fill.Symbol, Side: fill.Side,
		Quantity: fill.Quantity, Price: fill.Price, ClientOrderId: fill.ClientOrderID,
		FillId: fill.FillID,
	})
}

// ReportOrderUpdate releases (or, OPEN, shrinks) a working order's reservation, except
// what may have been filled but not reported yet (see OrderUpdate); Known is false if no
// such order was working.
func (c *Client) ReportOrderUpdate(ctx context.Context, update OrderUpdate) (*essv1.ReportOrderUpdateResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	request := &essv1.ReportOrderUpdateRequest{
		Account: update.Account, ClientOrderId: update.ClientOrderID, Status: update.Status,
	}
	if update.Status == essv1.OrderStatus_ORDER_STATUS_OPEN && update.RemainingQuantity != nil {
		remaining := *update.RemainingQuantity
		request.RemainingQuantity = &remaining
	}
	if update.FilledQuantity != nil {
		filled := *update.FilledQuantity
		request.FilledQuantity = &filled
	}
	return c.stub.ReportOrderUpdate(ctx, request)
}

// SyncPositions replaces the account's book (and, with open orders, its working orders).
func (c *Client) SyncPositions(ctx context.Context, snapshot Snapshot) (*essv1.SyncPositionsResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	return c.stub.SyncPositions(ctx, &essv1.SyncPositionsRequest{
		Account: snapshot.Account, Equity: snapshot.Equity, Positions: snapshot.Positions,
		OpenOrders: snapshot.OpenOrders, OpenOrdersComplete: snapshot.OpenOrdersComplete,
		IncludedFills: snapshot.IncludedFills,
	})
}

// ReportMetric sends one metric sample for scope; the answer says whether it tripped it.
func (c *Client) ReportMetric(ctx context.Context, scope *essv1.Scope, metric essv1.Metric, value float64) (*essv1.ReportMetricResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	return c.stub.ReportMetric(ctx, &essv1.ReportMetricRequest{Scope: scope, Metric: metric, Value: value})
}

// Trigger is the kill switch for scope (HALT unless request says otherwise); durable on the
// sidecar before it returns. It never fails here for what comes with the stop: a reason
// that is not valid UTF-8 is sent with U+FFFD, one over MaxReasonRunes cut (a copy of
// request; request is left as it is); any mode, reason code or directive number is sent,
// the sidecar noting one it does not know. NewTrigger reads them by name.
func (c *Client) Trigger(ctx context.Context, request *essv1.TriggerRequest) (*essv1.TriggerResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	return c.stub.Trigger(ctx, triggerToSend(request))
}

// GetState lists every scope that is not ARMED, the thresholds and the state version.
func (c *Client) GetState(ctx context.Context) (*essv1.GetStateResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	return c.stub.GetState(ctx, &essv1.GetStateRequest{})
}

// Heartbeat sends one heartbeat (deregister: the executor is shutting down cleanly).
func (c *Client) Heartbeat(ctx context.Context, executorID string, scope *essv1.Scope, ttlMs uint32, deregister bool) (*essv1.HeartbeatResponse, error) {
	ctx, cancel := c.rpcContext(ctx)
	defer cancel()
	return c.stub.Heartbeat(ctx, &essv1.HeartbeatRequest{
		ExecutorId: executorID, Scope: scope, TtlMs: ttlMs, Deregister: deregister,
	})
}

var scopeKinds = map[string]essv1.ScopeKind{
	"ACCOUNT":  essv1.ScopeKind_SCOPE_KIND_ACCOUNT,
	"STRATEGY": essv1.ScopeKind_SCOPE_KIND_STRATEGY,
	"SYMBOL":   essv1.ScopeKind_SCOPE_KIND_SYMBOL,
}

// ParseScope reads "GLOBAL" or "KIND:id" (KIND one of ACCOUNT, STRATEGY, SYMBOL, in any
// case of ASCII letters, as the sidecar reads it: "ſymbol" is no kind).
func ParseScope(text string) (*essv1.Scope, error) {
	if strings.EqualFold(text, "GLOBAL") {
		return &essv1.Scope{Kind: essv1.ScopeKind_SCOPE_KIND_GLOBAL}, nil
	}
	kind, id, found := strings.Cut(text, ":")
	ascii := strings.IndexFunc(kind, func(r rune) bool { return r > unicode.MaxASCII }) < 0
	if k, ok := scopeKinds[strings.ToUpper(kind)]; ok && ascii && found && id != "" {
		return &essv1.Scope{Kind: k, Id: id}, nil
	}
	return nil, fmt.Errorf("ess: scope %q is not GLOBAL or ACCOUNT:, STRATEGY:, SYMBOL:<id>", text)
}

// ParseSide reads "buy" or "sell" (any case, with or without "SIDE_").
func ParseSide(text string) (essv1.Side, error) {
	switch strings.TrimPrefix(strings.ToUpper(text), "SIDE_") {
	case "BUY":
		return Buy, nil
	case "SELL":
		return Sell, nil
	}
	return essv1.Side_SIDE_UNSPECIFIED, fmt.Errorf("ess: side %q is not buy or sell", text)
}
