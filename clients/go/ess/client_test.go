package ess_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// generous is a deadline for checks whose answer, not its speed, is tested.
var generous = ess.Within(5 * time.Second)

func check(t *testing.T, h *harness, opts ...ess.CheckOption) ess.Verdict {
	t.Helper()
	return h.client.Check(context.Background(), order, opts...)
}

func expectFailure(t *testing.T, v ess.Verdict, cause ess.Cause) {
	t.Helper()
	if v.Allowed || v.Cause != cause || v.ReasonName() != ess.ReasonClientFailClosed {
		t.Fatalf("want a %v fail-closed denial, got %+v", cause, v)
	}
}

func TestAllowedAndDeniedDecisionsAreTheSidecars(t *testing.T) {
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		if request.GetOrder().GetStrategy() == "tripped" {
			return reply{answer: decision(request.GetRequestId(), &essv1.CheckOrderResponse{
				Reason:        essv1.DecisionReason_DECISION_REASON_SCOPE_TRIPPED,
				Message:       "STRATEGY:tripped is TRIPPED",
				BlockingScope: &essv1.Scope{Kind: essv1.ScopeKind_SCOPE_KIND_STRATEGY, Id: "tripped"},
				DecisionId:    "d-2",
			})}
		}
		return allow(n, request)
	})
	allowed := check(t, h, generous)
	if !allowed.Allowed || allowed.Cause != ess.CauseNone || allowed.ReasonName() != "ALLOWED" ||
		allowed.DecisionID != allowed.ClientOrderID || allowed.StateVersion != 7 {
		t.Fatalf("want allowed, got %+v", allowed)
	}
	tripped := order
	tripped.Strategy = "tripped"
	denied := h.client.Check(context.Background(), tripped, generous)
	if denied.Allowed || denied.FailedClosed() || denied.ReasonName() != "SCOPE_TRIPPED" ||
		denied.BlockingScope != "STRATEGY:tripped" || denied.Message != "STRATEGY:tripped is TRIPPED" {
		t.Fatalf("want SCOPE_TRIPPED, got %+v", denied)
	}
	if len(h.client.Failures()) != 0 {
		t.Fatalf("a decision of the sidecar is not a failure: %v", h.client.Failures())
	}
}

func TestMalformedAnswersAreDenials(t *testing.T) {
	cases := map[string]func(id uint64) *essv1.CheckOrderStreamResponse{
		"unknown reason": func(id uint64) *essv1.CheckOrderStreamResponse {
			return decision(id, &essv1.CheckOrderResponse{Allowed: true, Reason: 99})
		},
		"unspecified reason": func(id uint64) *essv1.CheckOrderStreamResponse {
			return decision(id, &essv1.CheckOrderResponse{Allowed: false})
		},
		"allowed with a denial's reason": func(id uint64) *essv1.CheckOrderStreamResponse {
			return decision(id, &essv1.CheckOrderResponse{Allowed: true,
				Reason: essv1.DecisionReason_DECISION_REASON_SCOPE_TRIPPED})
		},
		"denied with ALLOWED": func(id uint64) *essv1.CheckOrderStreamResponse {
			return decision(id, &essv1.CheckOrderResponse{Allowed: false,
				Reason: essv1.DecisionReason_DECISION_REASON_ALLOWED})
		},
		"neither decision nor error": func(id uint64) *essv1.CheckOrderStreamResponse {
			return &essv1.CheckOrderStreamResponse{RequestId: id}
		},
		"empty decision": func(id uint64) *essv1.CheckOrderStreamResponse {
			return &essv1.CheckOrderStreamResponse{RequestId: id,
				Result: &essv1.CheckOrderStreamResponse_Decision{}}
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(_ int, request *essv1.CheckOrderStreamRequest) reply {
				return reply{answer: answer(request.GetRequestId())}
			})
			expectFailure(t, check(t, h, generous), ess.CauseMalformed)
			if got := h.client.Failures()[ess.CauseMalformed]; got != 1 {
				t.Fatalf("malformed counted %d times", got)
			}
		})
	}
}

func TestRequestErrorIsADenialNamingTheField(t *testing.T) {
	h := newHarness(t, func(_ int, request *essv1.CheckOrderStreamRequest) reply {
		return reply{answer: &essv1.CheckOrderStreamResponse{RequestId: request.GetRequestId(),
			Result: &essv1.CheckOrderStreamResponse_Error{Error: &essv1.RequestError{
				Code: int32(codes.InvalidArgument), Field: "order.quantity", Message: "must be > 0"}}}}
	})
	v := check(t, h, generous)
	expectFailure(t, v, ess.CauseRequestError)
	if v.Field != "order.quantity" || v.Message != "must be > 0" {
		t.Fatalf("got %+v", v)
	}
	// The stream stays open: a bad order is not a broken stream.
	check(t, h, generous)
	if h.client.StreamsOpened() != 1 {
		t.Fatalf("streams opened: %d", h.client.StreamsOpened())
	}
}

func TestInvalidUTF8IsARequestErrorThatSparesTheStream(t *testing.T) {
	received, release := make(chan struct{}), make(chan struct{})
	var seen atomic.Int32
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		seen.Add(1)
		close(received)
		<-release
		return allow(n, request)
	})
	good := make(chan ess.Verdict, 1)
	go func() { good <- check(t, h, generous) }()
	<-received // the good check is in flight on the stream
	bad := order
	bad.Symbol = "AAPL\xff"
	v := h.client.Check(context.Background(), bad, generous)
	expectFailure(t, v, ess.CauseRequestError)
	if v.Field != "order.symbol" {
		t.Fatalf("want the field named, got %+v", v)
	}
	expectFailure(t, h.client.CheckUnary(context.Background(), bad, generous), ess.CauseRequestError)
	close(release)
	if v := <-good; !v.Allowed {
		t.Fatalf("the good check in flight should be answered: %+v", v)
	}
	if seen.Load() != 1 || h.client.StreamsOpened() != 1 {
		t.Fatalf("requests seen %d, streams opened %d", seen.Load(), h.client.StreamsOpened())
	}
}

func TestWrongRequestIDDeniesAndReplacesTheStream(t *testing.T) {
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		if n == 1 {
			r := allow(n, request)
			r.answer.RequestId += 1000
			return r
		}
		return allow(n, request)
	})
	expectFailure(t, check(t, h, generous), ess.CauseMalformed)
	// The next check waits (within its deadline) for the new stream and is answered there.
	if v := check(t, h, generous); !v.Allowed {
		t.Fatalf("the replaced stream should allow: %+v", v)
	}
	if h.fake.streams.Load() != 2 || h.client.StreamsOpened() != 2 {
		t.Fatalf("want 2 streams, server saw %d, client opened %d", h.fake.streams.Load(),
			h.client.StreamsOpened())
	}
}

func TestMissedDeadlineIsADenialOnTime(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, func(_ int, request *essv1.CheckOrderStreamRequest) reply {
		if request.GetOrder().GetSymbol() == "SLOW" {
			<-release
		}
		return allow(0, request)
	})
	defer close(release)
	slow := order
	slow.Symbol = "SLOW"
	started := time.Now()
	v := h.client.Check(context.Background(), slow) // the default: 5 ms
	elapsed := time.Since(started)
	expectFailure(t, v, ess.CauseDeadline)
	if elapsed < 5*time.Millisecond || elapsed > 100*time.Millisecond {
		t.Fatalf("a 5 ms deadline took %v", elapsed)
	}
	started = time.Now()
	expectFailure(t, h.client.Check(context.Background(), slow, ess.Within(30*time.Millisecond)),
		ess.CauseDeadline)
	if elapsed := time.Since(started); elapsed < 30*time.Millisecond || elapsed > 200*time.Millisecond {
		t.Fatalf("a 30 ms deadline took %v", elapsed)
	}
	// The context's deadline, when earlier, wins.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	started = time.Now()
	expectFailure(t, h.client.Check(ctx, slow, generous), ess.CauseDeadline)
	if elapsed := time.Since(started); elapsed > time.Second {
		t.Fatalf("the context's 10 ms took %v", elapsed)
	}
	if got := h.client.Failures()[ess.CauseDeadline]; got != 3 {
		t.Fatalf("deadline counted %d times", got)
	}
}

func TestAnswerAfterTheDeadlineIsADenial(t *testing.T) {
	// The fake moves the clock an hour on before it answers "LATE": the answer is there
	// but the deadline has passed, as when select picks an answer over a deadline due at
	// the same moment.
	var skew atomic.Int64
	defer ess.SetClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })()
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		if request.GetOrder().GetSymbol() == "LATE" {
			skew.Store(int64(time.Hour))
		}
		return allow(n, request)
	})
	late := order
	late.Symbol = "LATE"
	expectFailure(t, h.client.Check(context.Background(), late, generous), ess.CauseDeadline)
	skew.Store(0)
	if v := check(t, h, generous); !v.Allowed {
		t.Fatalf("an answer on time is taken, got %+v", v)
	}
	// The unary call too: its answer returned after the deadline (review 35: taken).
	h.fake.unary = func(request *essv1.CheckOrderRequest) (*essv1.CheckOrderResponse, error) {
		if request.GetSymbol() == "LATE" {
			skew.Store(int64(time.Hour))
		}
		return &essv1.CheckOrderResponse{Allowed: true,
			Reason: essv1.DecisionReason_DECISION_REASON_ALLOWED, DecisionId: "d"}, nil
	}
	expectFailure(t, h.client.CheckUnary(context.Background(), late, generous), ess.CauseDeadline)
	skew.Store(0)
	if v := h.client.CheckUnary(context.Background(), order, generous); !v.Allowed {
		t.Fatalf("a unary answer on time is taken, got %+v", v)
	}
}

func TestCancelledContextIsADenial(t *testing.T) {
	h := newHarness(t, func(_ int, request *essv1.CheckOrderStreamRequest) reply {
		return reply{} // never answers
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	expectFailure(t, h.client.Check(ctx, order, generous), ess.CauseCanceled)
}

func TestManyChecksInFlightAreMatchedByRequestID(t *testing.T) {
	var delays atomic.Int64
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		r := allow(n, request)
		r.delay = time.Duration(delays.Add(1)%3) * 100 * time.Microsecond
		return r
	})
	const workers, each = 32, 25
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				o := order
				o.ClientOrderID = fmt.Sprintf("w%d-%d", w, i)
				v := h.client.Check(context.Background(), o, generous)
				if !v.Allowed || v.DecisionID != o.ClientOrderID || v.ClientOrderID != o.ClientOrderID {
					errs <- fmt.Sprintf("%s got %+v", o.ClientOrderID, v)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if h.fake.streams.Load() != 1 {
		t.Fatalf("every check should share one stream, saw %d", h.fake.streams.Load())
	}
}

func TestBrokenStreamDeniesAtOnceAndIsReplaced(t *testing.T) {
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		if n == 1 {
			return reply{end: status.Error(codes.Unavailable, "shutting down")}
		}
		return allow(n, request)
	})
	started := time.Now()
	v := check(t, h, generous)
	expectFailure(t, v, ess.CauseUnavailable)
	if elapsed := time.Since(started); elapsed > time.Second {
		t.Fatalf("a broken stream should deny at once, took %v", elapsed)
	}
	if v := check(t, h, generous); !v.Allowed {
		t.Fatalf("the new stream should allow: %+v", v)
	}
}

func TestStreamEndedOrRefused(t *testing.T) {
	for name, c := range map[string]struct {
		end   error
		cause ess.Cause
	}{
		"internal":        {status.Error(codes.Internal, "boom"), ess.CauseStreamBroken},
		"unauthenticated": {status.Error(codes.Unauthenticated, "no token"), ess.CauseRefused},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
				return reply{end: c.end}
			})
			expectFailure(t, check(t, h, generous), c.cause)
		})
	}
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		return reply{finish: true}
	})
	expectFailure(t, check(t, h, generous), ess.CauseStreamBroken)
}

func TestHungStreamIsReplacedAfterStallAfter(t *testing.T) {
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		if n == 1 {
			return reply{} // hung: never answers
		}
		return allow(n, request)
	}, ess.WithStallAfter(50*time.Millisecond))
	expectFailure(t, check(t, h), ess.CauseDeadline)
	time.Sleep(60 * time.Millisecond)
	expectFailure(t, check(t, h), ess.CauseDeadline) // its expiry finds the stream stalled
	deadline := time.Now().Add(5 * time.Second)
	for !check(t, h, generous).Allowed {
		if time.Now().After(deadline) {
			t.Fatal("the hung stream was never replaced")
		}
	}
	if h.client.StreamsOpened() < 2 {
		t.Fatalf("streams opened: %d", h.client.StreamsOpened())
	}
}

func TestSidecarDownFailsClosedAndIsFoundAgain(t *testing.T) {
	fake := &fakeGuard{behave: allow}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := listener.Addr().String()
	server := grpc.NewServer()
	essv1.RegisterGuardServiceServer(server, fake)
	go server.Serve(listener)
	client, err := ess.New(address, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if v := client.Check(context.Background(), order, generous); !v.Allowed {
		t.Fatalf("want allowed: %+v", v)
	}
	server.Stop()
	for range 3 {
		started := time.Now()
		v := client.Check(context.Background(), order)
		if v.Allowed || !v.FailedClosed() {
			t.Fatalf("a stopped sidecar must deny: %+v", v)
		}
		if elapsed := time.Since(started); elapsed > 100*time.Millisecond {
			t.Fatalf("the denial took %v", elapsed)
		}
	}
	// The same address again: the client finds it by itself.
	listener, err = net.Listen("tcp", address)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", address, err)
	}
	server = grpc.NewServer()
	essv1.RegisterGuardServiceServer(server, fake)
	go server.Serve(listener)
	defer server.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := client.Check(context.Background(), order, ess.Within(2*time.Second))
		if v.Allowed {
			break
		}
		if !v.FailedClosed() || time.Now().After(deadline) {
			t.Fatalf("never reconnected: %+v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNeverReachedSidecarFailsClosed(t *testing.T) {
	listener, _ := net.Listen("tcp", "127.0.0.1:0")
	address := listener.Addr().String()
	listener.Close() // nothing listens there
	client, err := ess.New(address, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := client.Connect(ctx); err == nil {
		t.Fatal("Connect to nothing succeeded")
	}
	v := client.Check(context.Background(), order)
	if v.Allowed || !v.FailedClosed() {
		t.Fatalf("want a fail-closed denial, got %+v", v)
	}
	if v := client.CheckUnary(context.Background(), order); v.Allowed || !v.FailedClosed() {
		t.Fatalf("want a fail-closed unary denial, got %+v", v)
	}
}

func TestClosedClientDenies(t *testing.T) {
	h := newHarness(t, allow)
	h.client.Close()
	expectFailure(t, check(t, h, generous), ess.CauseClientError)
	expectFailure(t, h.client.CheckUnary(context.Background(), order), ess.CauseClientError)
	if err := h.client.Connect(context.Background()); err != ess.ErrClosed {
		t.Fatalf("Connect on a closed client: %v", err)
	}
}

// An RPC timeout <= 0 fails New, as a check deadline <= 0 does (review: it was taken, and
// every RPC but the checks then failed DEADLINE_EXCEEDED unsent).
func TestNonPositiveTimeoutsFailNew(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := ess.New("localhost:1", ess.WithRPCTimeout(d))
		if err == nil || !strings.Contains(err.Error(), "WithRPCTimeout") {
			t.Errorf("WithRPCTimeout(%v): %v", d, err)
		}
		if _, err := ess.New("localhost:1", ess.WithDeadline(d)); err == nil {
			t.Errorf("WithDeadline(%v) taken", d)
		}
	}
	client, err := ess.New("localhost:1", ess.WithRPCTimeout(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
}

func TestClientOrderIDsAreMadeUpWhenMissing(t *testing.T) {
	var seen sync.Map
	h := newHarness(t, func(n int, request *essv1.CheckOrderStreamRequest) reply {
		seen.Store(request.GetOrder().GetClientOrderId(), true)
		return allow(n, request)
	})
	shape := regexp.MustCompile(`^[0-9a-f]{12}-[0-9]+$`)
	ids := map[string]bool{}
	for range 5 {
		v := check(t, h, generous)
		if !shape.MatchString(v.ClientOrderID) || ids[v.ClientOrderID] {
			t.Fatalf("bad or repeated id %q", v.ClientOrderID)
		}
		if _, sent := seen.Load(v.ClientOrderID); !sent {
			t.Fatalf("%q was not the id sent", v.ClientOrderID)
		}
		ids[v.ClientOrderID] = true
	}
	other := newHarness(t, allow)
	a, b := strings.Split(h.client.NewClientOrderID(), "-")[0], strings.Split(other.client.NewClientOrderID(), "-")[0]
	if a == b {
		t.Fatalf("two clients share the prefix %s", a)
	}
	given := order
	given.ClientOrderID = "mine-1"
	if v := h.client.Check(context.Background(), given, generous); v.ClientOrderID != "mine-1" || v.DecisionID != "mine-1" {
		t.Fatalf("a given id must be used: %+v", v)
	}
}

func TestTokenIsSentAsBearer(t *testing.T) {
	h := newHarness(t, allow, ess.WithToken("s3cret"))
	h.fake.unary = func(r *essv1.CheckOrderRequest) (*essv1.CheckOrderResponse, error) {
		return &essv1.CheckOrderResponse{Allowed: true, Reason: essv1.DecisionReason_DECISION_REASON_ALLOWED}, nil
	}
	check(t, h, generous)
	h.client.CheckUnary(context.Background(), order, generous)
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if len(h.fake.auth) != 2 || h.fake.auth[0] != "Bearer s3cret" || h.fake.auth[1] != "Bearer s3cret" {
		t.Fatalf("authorization metadata seen: %q", h.fake.auth)
	}
}

func TestCheckUnaryFailsClosedTheSameWay(t *testing.T) {
	h := newHarness(t, allow)
	cases := []struct {
		name   string
		answer func() (*essv1.CheckOrderResponse, error)
		cause  ess.Cause
	}{
		{"allowed", func() (*essv1.CheckOrderResponse, error) {
			return &essv1.CheckOrderResponse{Allowed: true, Reason: essv1.DecisionReason_DECISION_REASON_ALLOWED, DecisionId: "d"}, nil
		}, ess.CauseNone},
		{"unknown reason", func() (*essv1.CheckOrderResponse, error) {
			return &essv1.CheckOrderResponse{Allowed: true, Reason: 42}, nil
		}, ess.CauseMalformed},
		{"allowed contradicts reason", func() (*essv1.CheckOrderResponse, error) {
			return &essv1.CheckOrderResponse{Allowed: true, Reason: essv1.DecisionReason_DECISION_REASON_ORDER_RATE}, nil
		}, ess.CauseMalformed},
		{"invalid argument", func() (*essv1.CheckOrderResponse, error) {
			return nil, status.Error(codes.InvalidArgument, "order.price: must be > 0")
		}, ess.CauseRequestError},
		{"unavailable", func() (*essv1.CheckOrderResponse, error) {
			return nil, status.Error(codes.Unavailable, "draining")
		}, ess.CauseUnavailable},
		{"permission denied", func() (*essv1.CheckOrderResponse, error) {
			return nil, status.Error(codes.PermissionDenied, "reconciler")
		}, ess.CauseRefused},
		{"too slow", func() (*essv1.CheckOrderResponse, error) {
			time.Sleep(200 * time.Millisecond)
			return &essv1.CheckOrderResponse{Allowed: true, Reason: essv1.DecisionReason_DECISION_REASON_ALLOWED}, nil
		}, ess.CauseDeadline},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.fake.unary = func(*essv1.CheckOrderRequest) (*essv1.CheckOrderResponse, error) { return c.answer() }
			within := generous
			if c.cause == ess.CauseDeadline {
				within = ess.Within(20 * time.Millisecond)
			}
			v := h.client.CheckUnary(context.Background(), order, within)
			if c.cause == ess.CauseNone {
				if !v.Allowed || v.DecisionID != "d" {
					t.Fatalf("want allowed, got %+v", v)
				}
				return
			}
			expectFailure(t, v, c.cause)
		})
	}
}

func TestFailuresAreLoggedRateLimited(t *testing.T) {
	var records []slog.Record
	var mu sync.Mutex
	logger := slog.New(handlerFunc(func(r slog.Record) {
		mu.Lock()
		defer mu.Unlock()
		records = append(records, r)
	}))
	h := newHarness(t, func(_ int, request *essv1.CheckOrderStreamRequest) reply {
		return reply{answer: decision(request.GetRequestId(), &essv1.CheckOrderResponse{Reason: 99})}
	}, ess.WithLogger(logger), ess.WithLogInterval(time.Hour))
	for range 50 {
		expectFailure(t, check(t, h, generous), ess.CauseMalformed)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(records) != 1 || h.client.Failures()[ess.CauseMalformed] != 50 {
		t.Fatalf("want 1 log line and 50 counted, got %d lines, %v", len(records), h.client.Failures())
	}
}

func TestFillsUpdatesAndPositions(t *testing.T) {
	h := newHarness(t, allow)
	ctx := context.Background()
	fill, err := h.client.ReportFill(ctx, ess.Fill{Account: "acc-1", Strategy: "momo", Symbol: "AAPL",
		Side: ess.Buy, Quantity: 2, Price: 100, ClientOrderID: "c-1", FillID: "f-1"})
	if err != nil || fill.GetPosition() != 2 {
		t.Fatalf("fill: %v %v", fill, err)
	}
	zero, one, three, cumQty := 0.0, 1.0, 3.0, 5.0
	if _, err := h.client.ReportOrderUpdate(ctx, ess.OrderUpdate{Account: "acc-1", ClientOrderID: "c-1",
		Status: essv1.OrderStatus_ORDER_STATUS_OPEN, RemainingQuantity: &three}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.ReportOrderUpdate(ctx, ess.OrderUpdate{Account: "acc-1", ClientOrderID: "c-1",
		Status: essv1.OrderStatus_ORDER_STATUS_CANCELLED}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.ReportOrderUpdate(ctx, ess.OrderUpdate{Account: "acc-1", ClientOrderID: "c-1",
		Status: essv1.OrderStatus_ORDER_STATUS_OPEN, RemainingQuantity: &one, FilledQuantity: &cumQty}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.ReportOrderUpdate(ctx, ess.OrderUpdate{Account: "acc-1", ClientOrderID: "c-1",
		Status: essv1.OrderStatus_ORDER_STATUS_CANCELLED, FilledQuantity: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.SyncPositions(ctx, ess.Snapshot{Account: "acc-1", Equity: 1e6,
		Positions:          []*essv1.Position{{Strategy: "momo", Symbol: "AAPL", Quantity: 2, MarkPrice: 100}},
		OpenOrdersComplete: true}); err != nil {
		t.Fatal(err)
	}
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	f := h.fake.fills[0]
	if f.GetClientOrderId() != "c-1" || f.GetFillId() != "f-1" || f.GetSide() != ess.Buy {
		t.Fatalf("fill sent: %v", f)
	}
	if u := h.fake.updates[0]; u.RemainingQuantity == nil || *u.RemainingQuantity != 3 {
		t.Fatalf("an OPEN update carries the remaining quantity: %v", u)
	}
	if u := h.fake.updates[1]; u.RemainingQuantity != nil {
		t.Fatalf("a CANCELLED update carries none: %v", u)
	}
	for _, u := range h.fake.updates[:2] {
		if u.FilledQuantity != nil {
			t.Fatalf("no FilledQuantity given, none sent: %v", u)
		}
	}
	if u := h.fake.updates[2]; u.FilledQuantity == nil || *u.FilledQuantity != 5 || u.GetRemainingQuantity() != 1 {
		t.Fatalf("an update carries the filled quantity given: %v", u)
	}
	if u := h.fake.updates[3]; u.FilledQuantity == nil || *u.FilledQuantity != 0 || u.RemainingQuantity != nil {
		t.Fatalf("a filled quantity of 0 is sent, with any status: %v", u)
	}
	if s := h.fake.syncs[0]; !s.GetOpenOrdersComplete() || len(s.GetPositions()) != 1 || s.GetEquity() != 1e6 {
		t.Fatalf("sync sent: %v", s)
	}
}

// An OPEN update built without RemainingQuantity is sent without it, never as 0 leaves
// (which would release a live order's reservation): the sidecar refuses it. An explicit 0
// (filled in full, fills not reported yet) is sent as 0.
func TestOpenUpdateWithoutRemainingIsNotSentAsZero(t *testing.T) {
	h := newHarness(t, allow)
	ctx := context.Background()
	if _, err := h.client.ReportOrderUpdate(ctx, ess.OrderUpdate{Account: "acc-1", ClientOrderID: "c-1",
		Status: essv1.OrderStatus_ORDER_STATUS_OPEN}); err != nil {
		t.Fatal(err)
	}
	zero, filled := 0.0, 2.0
	if _, err := h.client.ReportOrderUpdate(ctx, ess.OrderUpdate{Account: "acc-1", ClientOrderID: "c-1",
		Status: essv1.OrderStatus_ORDER_STATUS_OPEN, RemainingQuantity: &zero, FilledQuantity: &filled}); err != nil {
		t.Fatal(err)
	}
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if u := h.fake.updates[0]; u.RemainingQuantity != nil {
		t.Fatalf("an OPEN update without RemainingQuantity carries none, not %v: %v", *u.RemainingQuantity, u)
	}
	if u := h.fake.updates[1]; u.RemainingQuantity == nil || *u.RemainingQuantity != 0 {
		t.Fatalf("an explicit 0 left is sent: %v", u)
	}
}

func TestHeartbeatBeatsUntilStopAndDeregisters(t *testing.T) {
	h := newHarness(t, allow)
	scope, err := ess.ParseScope("STRATEGY:momo")
	if err != nil {
		t.Fatal(err)
	}
	hb, err := h.client.StartHeartbeat(context.Background(), ess.HeartbeatConfig{
		ExecutorID: "exec-1", Scope: scope, TTL: 300 * time.Millisecond, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if hb.State() != essv1.State_STATE_ARMED || hb.Err() != nil {
		t.Fatalf("state %v err %v", hb.State(), hb.Err())
	}
	if err := hb.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.fake.mu.Lock()
	beats := append([]*essv1.HeartbeatRequest(nil), h.fake.heartbeats...)
	h.fake.mu.Unlock()
	if len(beats) < 3 { // the first beat, at least one tick, the deregistration
		t.Fatalf("only %d heartbeats in 100 ms at 20 ms", len(beats))
	}
	last := beats[len(beats)-1]
	if !last.GetDeregister() || last.GetTtlMs() != 300 || last.GetExecutorId() != "exec-1" ||
		ess.ScopeString(last.GetScope()) != "STRATEGY:momo" {
		t.Fatalf("last heartbeat: %v", last)
	}
	for _, beat := range beats[:len(beats)-1] {
		if beat.GetDeregister() {
			t.Fatal("deregistered before Stop")
		}
	}
	time.Sleep(60 * time.Millisecond)
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if len(h.fake.heartbeats) != len(beats) {
		t.Fatal("heartbeats went on after Stop")
	}
}

// Review 42e: an Interval not shorter than the TTL was taken, and the scope of a live executor
// tripped for a missed heartbeat while the Heartbeater ran (Python's start_heartbeat
// refuses it).
func TestHeartbeatRefusesAnIntervalNotShorterThanTheTTL(t *testing.T) {
	h := newHarness(t, allow)
	scope, err := ess.ParseScope("STRATEGY:momo")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ttl, interval time.Duration }{
		{300 * time.Millisecond, 300 * time.Millisecond},
		{300 * time.Millisecond, time.Second},
		{300 * time.Millisecond, -time.Millisecond},
		{1900 * time.Microsecond, 1500 * time.Microsecond}, // the TTL is sent as 1 ms
	} {
		hb, err := h.client.StartHeartbeat(context.Background(), ess.HeartbeatConfig{
			ExecutorID: "exec-1", Scope: scope, TTL: c.ttl, Interval: c.interval})
		if err == nil {
			hb.Stop(context.Background())
			t.Fatalf("TTL %v, Interval %v: started", c.ttl, c.interval)
		}
		if !strings.Contains(err.Error(), "heartbeat interval") {
			t.Fatalf("TTL %v, Interval %v: %v", c.ttl, c.interval, err)
		}
	}
	h.fake.mu.Lock()
	sent := len(h.fake.heartbeats)
	h.fake.mu.Unlock()
	if sent != 0 {
		t.Fatalf("%d heartbeats sent for a refused config", sent)
	}
	// The default (TTL/3) is shorter than the TTL, even the shortest (whose first beat may
	// miss its 333 µs timeout: that error is not the refusal).
	hb, err := h.client.StartHeartbeat(context.Background(), ess.HeartbeatConfig{
		ExecutorID: "exec-1", Scope: scope, TTL: time.Millisecond})
	if err != nil && strings.Contains(err.Error(), "heartbeat interval") {
		t.Fatal(err)
	} else if err == nil {
		hb.Stop(context.Background())
	}
	hb, err = h.client.StartHeartbeat(context.Background(), ess.HeartbeatConfig{
		ExecutorID: "exec-1", Scope: scope, TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	fake := &fakeGuard{behave: allow}
	_, listener := serve(t, fake, tlsServer(t, certPEM, keyPEM))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client, err := ess.New("passthrough:///localhost", dialer(listener), quiet,
		ess.WithTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"}))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if v := client.Check(context.Background(), order, generous); !v.Allowed {
		t.Fatalf("want allowed over TLS: %+v", v)
	}
	files, err := ess.New("passthrough:///localhost", dialer(listener), quiet,
		ess.WithTLSFiles(writeTemp(t, "ca.pem", certPEM), "", "", "localhost"))
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if v := files.Check(context.Background(), order, generous); !v.Allowed {
		t.Fatalf("want allowed over TLS from files: %+v", v)
	}
	// A client that does not trust the certificate never gets an answer: denied.
	untrusting, err := ess.New("passthrough:///localhost", dialer(listener), quiet,
		ess.WithTLS(&tls.Config{RootCAs: x509.NewCertPool(), ServerName: "localhost"}))
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	if v := untrusting.Check(context.Background(), order, ess.Within(300*time.Millisecond)); v.Allowed || !v.FailedClosed() {
		t.Fatalf("an untrusted sidecar must not be believed: %+v", v)
	}
	if _, err := ess.New("localhost:1", ess.WithTLSFiles(filepath.Join(t.TempDir(), "none.pem"), "", "", "")); err == nil {
		t.Fatal("a missing CA file must fail New")
	}
}

func TestParseScopeAndSide(t *testing.T) {
	for text, want := range map[string]string{"GLOBAL": "GLOBAL", "global": "GLOBAL",
		"STRATEGY:momo": "STRATEGY:momo", "account:A-1": "ACCOUNT:A-1", "SYMBOL:AAPL": "SYMBOL:AAPL"} {
		scope, err := ess.ParseScope(text)
		if err != nil || ess.ScopeString(scope) != want {
			t.Errorf("%q: %v %v", text, scope, err)
		}
	}
	for _, bad := range []string{"", "STRATEGY:", "momo", "PLANET:x", "\u017fymbol:aapl"} {
		if _, err := ess.ParseScope(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if side, err := ess.ParseSide("sell"); err != nil || side != ess.Sell {
		t.Error("sell")
	}
	if _, err := ess.ParseSide("hold"); err == nil {
		t.Error("hold parsed")
	}
}

type handlerFunc func(slog.Record)

func (h handlerFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (h handlerFunc) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h handlerFunc) WithGroup(string) slog.Handler                 { return h }

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func writeTemp(t testing.TB, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Review 54a: a token with a control or non-ASCII byte was taken, and every check then
// failed closed with a misleading "deadline" cause. Review 54e: Python's rule in every
// client: space, tab, CR and LF around it are dropped (a CRLF file's "tok\r" is "tok"), and
// a byte outside 0x20-0x7E left inside fails New, naming its position, not the token.
func TestTokenOutsidePrintableASCIIFailsNewWithoutPrintingIt(t *testing.T) {
	for token, at := range map[string]string{"zq\r9": "byte 2 ", "\tzq\n9": "byte 3 ",
		"z\tq9": "byte 1 ", "z\x00q9": "byte 1 ", "zq9\x7f": "byte 3 ", "zq9ö": "byte 3 "} {
		_, err := ess.New("localhost:1", ess.WithToken(token))
		if !errors.Is(err, ess.ErrInvalidToken) || !strings.Contains(err.Error(), at) {
			t.Fatalf("token %q: %v", token, err)
		}
		if strings.Contains(err.Error(), "zq") || strings.Contains(err.Error(), "q9") {
			t.Fatalf("the error prints the token: %v", err)
		}
	}
	client, err := ess.New("localhost:1", ess.WithToken(" printable ~ASCII! "))
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
}

// Review 54e: the ASCII space around a token is not sent.
func TestTokenIsSentStripped(t *testing.T) {
	h := newHarness(t, allow, ess.WithToken(" \ts3cret\r\n"))
	check(t, h, generous)
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if len(h.fake.auth) != 1 || h.fake.auth[0] != "Bearer s3cret" {
		t.Fatalf("authorization metadata seen: %q", h.fake.auth)
	}
}

// Review 54a: WithReconnectBackoff(0, 0) reopened a refused stream in a tight loop, and a
// stall_after <= 0 would break the stream on every late answer.
func TestBadBackoffOrStallAfterFailsNewNamingTheOption(t *testing.T) {
	cases := []struct {
		option ess.Option
		named  string
	}{
		{ess.WithReconnectBackoff(0, 0), "WithReconnectBackoff"},
		{ess.WithReconnectBackoff(-time.Millisecond, time.Second), "WithReconnectBackoff"},
		{ess.WithReconnectBackoff(2*time.Second, time.Second), "WithReconnectBackoff"},
		{ess.WithStallAfter(0), "WithStallAfter"},
		{ess.WithStallAfter(-time.Second), "WithStallAfter"},
	}
	for _, c := range cases {
		if _, err := ess.New("localhost:1", c.option); err == nil ||
			!strings.Contains(err.Error(), c.named) {
			t.Errorf("want an error naming %s, got %v", c.named, err)
		}
	}
	client, err := ess.New("localhost:1", ess.WithReconnectBackoff(time.Second, time.Second),
		ess.WithStallAfter(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	client.Close()
}

// Review 54a: a check denied for want of a stream said only "no stream within 5ms", so a
// wrong token looked like a slow sidecar; it now says why the last stream broke.
func TestNoStreamDenialSaysWhyTheLastStreamBroke(t *testing.T) {
	refuse := grpc.StreamInterceptor(func(any, grpc.ServerStream, *grpc.StreamServerInfo,
		grpc.StreamHandler) error {
		return status.Error(codes.Unauthenticated, "bad token")
	})
	_, listener := serve(t, &fakeGuard{behave: allow}, refuse)
	client, err := ess.New("passthrough:///bufnet", dialer(listener), quiet,
		ess.WithReconnectBackoff(time.Hour, time.Hour)) // one refused stream, then none
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := client.Check(context.Background(), order)
		if v.Cause == ess.CauseDeadline {
			if !strings.Contains(v.Message, "last: refused: Unauthenticated: bad token") {
				t.Fatalf("the denial does not say the refusal: %q", v.Message)
			}
			break
		}
		if v.Allowed || time.Now().After(deadline) {
			t.Fatalf("never denied for want of a stream: %+v", v)
		}
	}
	if n := client.StreamsOpened(); n != 1 {
		t.Fatalf("%d streams opened with a backoff of an hour", n)
	}
}
