package ess_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// reply is what the fake sidecar does with one stream request.
type reply struct {
	answer *essv1.CheckOrderStreamResponse // nil: no answer (a hung sidecar)
	delay  time.Duration                   // before answering
	end    error                           // end the stream with this (nil: go on)
	finish bool                            // end the stream with status OK
}

// behavior decides the reply to the request of the stream numbered stream (from 1).
type behavior func(stream int, request *essv1.CheckOrderStreamRequest) reply

// allow answers ALLOWED with the order's client_order_id as decision_id.
func allow(_ int, request *essv1.CheckOrderStreamRequest) reply {
	return reply{answer: decision(request.GetRequestId(), &essv1.CheckOrderResponse{
		Allowed: true, Reason: essv1.DecisionReason_DECISION_REASON_ALLOWED,
		DecisionId: request.GetOrder().GetClientOrderId(), StateVersion: 7,
	})}
}

func decision(requestID uint64, d *essv1.CheckOrderResponse) *essv1.CheckOrderStreamResponse {
	return &essv1.CheckOrderStreamResponse{RequestId: requestID,
		Result: &essv1.CheckOrderStreamResponse_Decision{Decision: d}}
}

// fakeGuard is an in-process GuardService with a programmable CheckOrderStream.
type fakeGuard struct {
	essv1.UnimplementedGuardServiceServer
	behave  behavior
	unary   func(*essv1.CheckOrderRequest) (*essv1.CheckOrderResponse, error)
	streams atomic.Int32

	mu         sync.Mutex
	auth       []string // the authorization metadata of every call
	heartbeats []*essv1.HeartbeatRequest
	beats      chan *essv1.HeartbeatRequest // if set, each heartbeat too (never blocks)
	fills      []*essv1.ReportFillRequest
	updates    []*essv1.ReportOrderUpdateRequest
	syncs      []*essv1.SyncPositionsRequest
}

func (f *fakeGuard) sawAuth(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, md.Get("authorization")...)
}

func (f *fakeGuard) CheckOrderStream(stream grpc.BidiStreamingServer[essv1.CheckOrderStreamRequest, essv1.CheckOrderStreamResponse]) error {
	f.sawAuth(stream.Context())
	n := int(f.streams.Add(1))
	_ = stream.SendHeader(metadata.MD{}) // as the sidecar does: the stream is open
	for {
		request, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		r := f.behave(n, request)
		if r.delay > 0 {
			select {
			case <-time.After(r.delay):
			case <-stream.Context().Done():
				return nil
			}
		}
		if r.answer != nil {
			if err := stream.Send(r.answer); err != nil {
				return err
			}
		}
		if r.end != nil {
			return r.end
		}
		if r.finish {
			return nil
		}
	}
}

func (f *fakeGuard) CheckOrder(ctx context.Context, request *essv1.CheckOrderRequest) (*essv1.CheckOrderResponse, error) {
	f.sawAuth(ctx)
	return f.unary(request)
}

func (f *fakeGuard) Heartbeat(_ context.Context, request *essv1.HeartbeatRequest) (*essv1.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats = append(f.heartbeats, request)
	select {
	case f.beats <- request:
	default:
	}
	return &essv1.HeartbeatResponse{State: essv1.State_STATE_ARMED, StateVersion: 1}, nil
}

func (f *fakeGuard) ReportFill(_ context.Context, request *essv1.ReportFillRequest) (*essv1.ReportFillResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fills = append(f.fills, request)
	return &essv1.ReportFillResponse{Position: request.GetQuantity()}, nil
}

func (f *fakeGuard) ReportOrderUpdate(_ context.Context, request *essv1.ReportOrderUpdateRequest) (*essv1.ReportOrderUpdateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, request)
	return &essv1.ReportOrderUpdateResponse{Known: true}, nil
}

func (f *fakeGuard) SyncPositions(_ context.Context, request *essv1.SyncPositionsRequest) (*essv1.SyncPositionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs = append(f.syncs, request)
	return &essv1.SyncPositionsResponse{Positions: uint32(len(request.GetPositions()))}, nil
}

// harness is a fake sidecar on a bufconn listener and a client of it.
type harness struct {
	fake     *fakeGuard
	server   *grpc.Server
	listener *bufconn.Listener
	client   *ess.Client
}

func serve(t testing.TB, fake *fakeGuard, serverOptions ...grpc.ServerOption) (*grpc.Server, *bufconn.Listener) {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer(serverOptions...)
	essv1.RegisterGuardServiceServer(server, fake)
	go server.Serve(listener)
	t.Cleanup(server.Stop)
	return server, listener
}

func dialer(listener *bufconn.Listener) ess.Option {
	return ess.WithDialOptions(grpc.WithContextDialer(
		func(ctx context.Context, _ string) (net.Conn, error) { return listener.DialContext(ctx) }))
}

// quiet is a logger that drops everything.
var quiet = ess.WithLogger(slog.New(slog.DiscardHandler))

// newHarness starts a fake sidecar with behave and a connected client of it.
func newHarness(t testing.TB, behave behavior, opts ...ess.Option) *harness {
	t.Helper()
	fake := &fakeGuard{behave: behave}
	server, listener := serve(t, fake)
	client, err := ess.New("passthrough:///bufnet", append([]ess.Option{dialer(listener), quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return &harness{fake: fake, server: server, listener: listener, client: client}
}

var order = ess.Order{Account: "acc-1", Strategy: "momo", Symbol: "AAPL", Side: ess.Buy,
	Quantity: 1, Price: 100}

// tlsServer serves TLS with this certificate and key.
func tlsServer(t *testing.T, cert []byte, key []byte) grpc.ServerOption {
	t.Helper()
	creds, err := credentials.NewServerTLSFromFile(writeTemp(t, "cert.pem", cert), writeTemp(t, "key.pem", key))
	if err != nil {
		t.Fatal(err)
	}
	return grpc.Creds(creds)
}
