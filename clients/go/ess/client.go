// Package ess is a thin, fail-closed Go client of the ESS sidecar (service
// ess.v1.GuardService): ask before every order "may I send this?".
//
// Client.Check asks over one long-lived CheckOrderStream (many checks in flight, answers
// matched by request_id) and never returns an error: anything short of a clear,
// self-consistent answer from the sidecar within the check's deadline is a denial whose
// Cause says why (Verdict.ReasonName() is then "CLIENT_FAIL_CLOSED"). A broken stream is
// replaced in the background; no answer is ever taken from a stream that broke.
//
// The other RPCs (fills, order updates, positions, heartbeats, metrics, triggers) are thin
// wrappers that return the gRPC error like any call.
package ess

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// ErrClosed is returned by Connect on a closed client.
var ErrClosed = errors.New("ess: the client is closed")

// Sides of an order.
const (
	Buy  = essv1.Side_SIDE_BUY
	Sell = essv1.Side_SIDE_SELL
)

// Order is what Check asks about.
type Order struct {
	Account  string
	Strategy string
	Symbol   string
	Side     essv1.Side // Buy or Sell
	Quantity float64    // > 0
	Price    float64    // > 0; for a market order, the price expected
	// Informational: a REDUCE_ONLY scope admits the order only if it does not grow the
	// absolute position.
	ReduceOnly bool
	// Unique per account; made up by the client when empty (Verdict.ClientOrderID).
	ClientOrderID string
	// A cancel/replace of that working order.
	ReplacesClientOrderID string
}

func (o *Order) request(clientOrderID string) *essv1.CheckOrderRequest {
	return &essv1.CheckOrderRequest{
		Account: o.Account, Strategy: o.Strategy, Symbol: o.Symbol, Side: o.Side,
		Quantity: o.Quantity, Price: o.Price, ReduceOnly: o.ReduceOnly,
		ClientOrderId: clientOrderID, ReplacesClientOrderId: o.ReplacesClientOrderID,
	}
}

// invalidUTF8 is a request error naming the first string of request that is not valid
// UTF-8, which protobuf refuses to marshal: on the shared stream that refusal would end the
// stream and deny every check in flight, so such an order is denied before it is sent.
func invalidUTF8(request *essv1.CheckOrderRequest) (Verdict, bool) {
	for _, f := range [...]struct{ name, value string }{
		{"order.account", request.GetAccount()},
		{"order.strategy", request.GetStrategy()},
		{"order.symbol", request.GetSymbol()},
		{"order.client_order_id", request.GetClientOrderId()},
		{"order.replaces_client_order_id", request.GetReplacesClientOrderId()},
	} {
		if !utf8.ValidString(f.value) {
			verdict := failed(CauseRequestError, "not valid UTF-8; not sent")
			verdict.Field = f.name
			return verdict, true
		}
	}
	return Verdict{}, false
}

// Client is a client of one sidecar, safe for concurrent use. Close it when done.
type Client struct {
	conn     *grpc.ClientConn
	stub     essv1.GuardServiceClient
	opts     options
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   atomic.Bool
	failures failureBook

	requestIDs    atomic.Uint64
	orderPrefix   string
	orderIDs      atomic.Uint64
	streamsOpened atomic.Uint64

	mu     sync.Mutex
	stream *checkStream  // the stream checks go to; nil while (re)connecting
	ready  chan struct{} // closed once stream is set
	// Why the last stream broke ("" if none has): a check denied for want of a stream says
	// it, so that a wrong token does not look like a slow sidecar.
	lastFailure string

	heartbeatsMu sync.Mutex
	heartbeats   map[*Heartbeater]struct{} // running; Close halts them
}

// New makes a client of the sidecar at target: "unix:/path/ess.sock" (fastest) or
// "host:port". It does not wait for the sidecar (see Connect); it starts connecting, and
// keeps a check stream open, in the background.
func New(target string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	transport := insecure.NewCredentials()
	if o.tlsFiles != nil {
		config, err := o.tlsFiles.config()
		if err != nil {
			return nil, err
		}
		o.tlsConfig = config
	}
	if o.tlsConfig != nil {
		transport = credentials.NewTLS(o.tlsConfig)
	}
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: o.reconnectBase, Multiplier: 1.6, Jitter: 0.2,
				MaxDelay: o.reconnectMax},
			MinConnectTimeout: time.Second,
		}),
	}
	if o.token != "" {
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(bearer(o.token)))
	}
	conn, err := grpc.NewClient(target, append(dialOptions, o.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("ess: %w", err)
	}
	prefix := make([]byte, 6)
	if _, err := rand.Read(prefix); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ess: client_order_id prefix: %w", err)
	}
	c := &Client{
		conn:        conn,
		stub:        essv1.NewGuardServiceClient(conn),
		opts:        o,
		orderPrefix: hex.EncodeToString(prefix) + "-",
		ready:       make(chan struct{}),
		heartbeats:  map[*Heartbeater]struct{}{},
	}
	c.failures.logger, c.failures.interval = o.logger, o.logInterval
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.maintain()
	return c, nil
}

// Connect waits until a check stream is open, so the first check does not pay for
// connecting. It returns ctx's error if that does not happen in time (bound ctx!); the
// client keeps trying in the background either way.
func (c *Client) Connect(ctx context.Context) error {
	for {
		if c.closed.Load() {
			return ErrClosed
		}
		s, ready := c.current()
		if s != nil {
			// The sidecar sends the stream's headers as soon as it starts: waiting for them
			// leaves no set-up cost to the first check. Reached either way: the headers are a
			// bonus (an older sidecar sends none before its first answer).
			opened := make(chan struct{})
			go func() {
				_, _ = s.rpc.Header()
				close(opened)
			}()
			select {
			case <-opened:
			case <-ctx.Done():
			case <-s.brokenCh:
			}
			return nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return fmt.Errorf("ess: sidecar not reached: %w", ctx.Err())
		}
	}
}

// NewClientOrderID returns an id no other order of this client has, nor (a random
// per-client prefix) any other client's.
func (c *Client) NewClientOrderID() string {
	return c.orderPrefix + strconv.FormatUint(c.orderIDs.Add(1), 10)
}

// Check asks whether order may be sent, over the client's stream. Obey Verdict.Allowed,
// and send the order with Verdict.ClientOrderID. It never fails: a missed deadline (the
// client's, Within's, or ctx's), an unreachable sidecar, a broken stream, a rejected order
// or an answer that cannot be trusted is a denial with Cause set, counted and logged.
func (c *Client) Check(ctx context.Context, order Order, opts ...CheckOption) (verdict Verdict) {
	clientOrderID := order.ClientOrderID
	if clientOrderID == "" {
		clientOrderID = c.NewClientOrderID()
	}
	defer c.settle(&verdict, clientOrderID)
	request := order.request(clientOrderID)
	if verdict, bad := invalidUTF8(request); bad {
		return verdict
	}
	return c.checkOnStream(ctx, request, c.deadline(opts))
}

// CheckUnary is Check over the unary CheckOrder RPC, with the same fail-closed rules:
// simpler, slower, and it may pay for connecting within its deadline.
func (c *Client) CheckUnary(ctx context.Context, order Order, opts ...CheckOption) (verdict Verdict) {
	clientOrderID := order.ClientOrderID
	if clientOrderID == "" {
		clientOrderID = c.NewClientOrderID()
	}
	defer c.settle(&verdict, clientOrderID)
	if c.closed.Load() {
		return failed(CauseClientError, "the client is closed")
	}
	request := order.request(clientOrderID)
	if verdict, bad := invalidUTF8(request); bad {
		return verdict
	}
	d := c.deadline(opts)
	expires := now().Add(d)
	callCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	answer, err := c.stub.CheckOrder(callCtx, request)
	if err != nil {
		if ctx.Err() != nil {
			return contextFailure(ctx)
		}
		return failureOf(err)
	}
	return onTime(verdictFromDecision(answer), expires, d)
}

// Failures counts failed checks by cause since New.
func (c *Client) Failures() map[Cause]uint64 { return c.failures.snapshot() }

// StreamsOpened counts check streams opened; more than one means a stream was replaced.
func (c *Client) StreamsOpened() uint64 { return c.streamsOpened.Load() }

// Conn is the client's gRPC connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Raw is the generated stub on the client's connection (the token included), for the
// RPCs this package does not wrap.
func (c *Client) Raw() essv1.GuardServiceClient { return c.stub }

// Close denies the checks in flight, ends the stream, stops the heartbeats without
// deregistering (their scopes trip at the TTL; see Heartbeater.Stop) and closes the
// connection; later checks are denied (CauseClientError), later heartbeats refused.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if s, _ := c.current(); s != nil {
		s.fail(CauseClientError, "the client was closed")
	}
	c.haltHeartbeats() // told to end, not waited for: a beat in flight ends with conn
	c.cancel()
	c.wg.Wait()
	return c.conn.Close()
}

// settle makes a failed verdict a counted, logged denial, and a panic a denial too.
func (c *Client) settle(verdict *Verdict, clientOrderID string) {
	if r := recover(); r != nil {
		*verdict = failed(CauseClientError, fmt.Sprintf("client bug: %v", r))
	}
	verdict.ClientOrderID = clientOrderID
	if verdict.Cause != CauseNone {
		verdict.Allowed = false
		c.failures.record(*verdict)
	}
}

func (c *Client) deadline(opts []CheckOption) time.Duration {
	o := checkOptions{deadline: c.opts.deadline}
	for _, opt := range opts {
		opt(&o)
	}
	if o.deadline <= 0 {
		return c.opts.deadline
	}
	return o.deadline
}

// now is the clock a check's answer is judged against its deadline by (tests move it).
var now = time.Now

func (c *Client) checkOnStream(ctx context.Context, request *essv1.CheckOrderRequest, d time.Duration) Verdict {
	expires := now().Add(d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	s, verdict := c.awaitStream(ctx, timer, d)
	if s == nil {
		return verdict
	}
	pending, verdict := s.send(c.requestIDs.Add(1), request)
	if pending == nil {
		return verdict
	}
	select {
	case verdict := <-pending.done:
		// select picks at random when the deadline is also due.
		return onTime(verdict, expires, d)
	case <-timer.C:
		s.expired()
		return failed(CauseDeadline, fmt.Sprintf("no answer within %v", d))
	case <-ctx.Done():
		return contextFailure(ctx)
	}
}

// onTime is verdict if its answer came before expires, the check's deadline d from its
// start; an answer at or past it (one a select took over a deadline due at the same time,
// or a unary call that returned late) is a denial even though it is there.
func onTime(verdict Verdict, expires time.Time, d time.Duration) Verdict {
	if !now().Before(expires) {
		return failed(CauseDeadline, fmt.Sprintf("no answer within %v", d))
	}
	return verdict
}

// awaitStream returns the open stream, waiting for one (within the check's deadline) only
// while the connection is being made: a sidecar known to be unreachable denies at once.
func (c *Client) awaitStream(ctx context.Context, timer *time.Timer, d time.Duration) (*checkStream, Verdict) {
	for {
		if c.closed.Load() {
			return nil, failed(CauseClientError, "the client is closed")
		}
		s, ready, last := c.currentOrLastFailure()
		if s != nil {
			return s, Verdict{}
		}
		if state := c.conn.GetState(); state == connectivity.TransientFailure {
			return nil, failed(CauseUnavailable, "the sidecar is unreachable; reconnecting")
		}
		select {
		case <-ready:
		case <-timer.C:
			return nil, failed(CauseDeadline, fmt.Sprintf("no stream to the sidecar within %v%s",
				d, last))
		case <-ctx.Done():
			return nil, contextFailure(ctx)
		}
	}
}

func contextFailure(ctx context.Context) Verdict {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return failed(CauseDeadline, "the caller's context expired")
	}
	return failed(CauseCanceled, "the caller's context was cancelled")
}

// current is the usable stream (nil if none) and the channel closed when one is set.
func (c *Client) current() (*checkStream, chan struct{}) {
	s, ready, _ := c.currentOrLastFailure()
	return s, ready
}

// currentOrLastFailure is current, and " (last: <cause>: <why>)" if a stream broke before.
func (c *Client) currentOrLastFailure() (*checkStream, chan struct{}, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != nil && c.stream.isBroken() {
		c.lastFailure = c.stream.failure()
		c.stream, c.ready = nil, make(chan struct{})
	}
	last := ""
	if c.lastFailure != "" {
		last = " (last: " + c.lastFailure + ")"
	}
	return c.stream, c.ready, last
}

func (c *Client) install(s *checkStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stream = s
	close(c.ready)
}

func (c *Client) uninstall(s *checkStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream == s {
		c.stream, c.ready = nil, make(chan struct{})
	}
	if s.isBroken() {
		c.lastFailure = s.failure()
	}
}

// maintain keeps one check stream open: it opens one (waiting for the connection), and
// when it breaks, replaces it; streams that break without ever answering (a refusal) are
// reopened with a growing backoff.
func (c *Client) maintain() {
	defer c.wg.Done()
	delay := c.opts.reconnectBase
	for c.ctx.Err() == nil {
		if s, err := c.open(); err == nil {
			opened := time.Now()
			c.install(s)
			select {
			case <-s.brokenCh:
			case <-c.ctx.Done():
			}
			c.uninstall(s)
			if s.answered.Load() || time.Since(opened) > c.opts.reconnectMax {
				delay = c.opts.reconnectBase
				continue
			}
		}
		select {
		case <-time.After(delay):
		case <-c.ctx.Done():
		}
		delay = min(delay*2, c.opts.reconnectMax)
	}
}

func (c *Client) open() (*checkStream, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	rpc, err := c.stub.CheckOrderStream(ctx, grpc.WaitForReady(true))
	if err != nil {
		cancel()
		return nil, err
	}
	c.streamsOpened.Add(1)
	return newCheckStream(rpc, cancel, c.opts.stallAfter), nil
}
