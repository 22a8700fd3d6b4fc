// Package bench is what the benchmark clients essbench (benchmarks/check_latency.py
// --client go) and peersbench (make bench-peers) share: benchmarks/workload.py's orders, the
// unary and stream workers (one checked call at a time), the "segments on stdin, one JSON
// line each" loop, the process's CPU time and the versions line.
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// benchmarks/workload.py's constants: its orders are ALLOWED by the benchmarks' sidecar
// config (and by benchmarks/peers/policy).
const (
	Account        = "ACC-1"
	Strategy       = "STRAT-1"
	Symbol         = "BTC-USD"
	Mark           = 100.0
	DistinctPrices = 10000 // prices Mark .. Mark * 1.01
)

// Orders makes the orders of one process: "<12 hex, random>-<count>" ids, as ess_client and
// benchmarks/workload.py make them, and a price cycling over DistinctPrices values, so that
// no five are identical within a second. The count is atomic: workers may share one Orders.
type Orders struct {
	prefix string
	count  atomic.Uint64
}

// NewOrders draws the random client_order_id prefix.
func NewOrders() (*Orders, error) {
	random := make([]byte, 6)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("client_order_id prefix: %w", err)
	}
	return &Orders{prefix: hex.EncodeToString(random)}, nil
}

// Next is the next order's client_order_id and price.
func (o *Orders) Next() (id string, price float64) {
	n := o.count.Add(1)
	return o.prefix + "-" + strconv.FormatUint(n, 10), Mark * (1 + float64(n%DistinctPrices)*1e-6)
}

// Proto is the next order as a CheckOrderRequest.
func (o *Orders) Proto() *essv1.CheckOrderRequest {
	id, price := o.Next()
	return &essv1.CheckOrderRequest{
		Account: Account, Strategy: Strategy, Symbol: Symbol, Side: essv1.Side_SIDE_BUY,
		Quantity: 1.0, Price: price, ClientOrderId: id,
	}
}

// OPAInput is the next order as OPA's request body: {"input": <the order>} (ess.rego's input).
func (o *Orders) OPAInput() []byte {
	id, price := o.Next()
	body := make([]byte, 0, 192)
	body = append(body, `{"input":{"account":"`+Account+`","strategy":"`+Strategy+
		`","symbol":"`+Symbol+`","side":"BUY","quantity":1,"price":`...)
	body = strconv.AppendFloat(body, price, 'g', -1, 64)
	body = append(body, `,"client_order_id":"`...)
	body = append(body, id...)
	return append(body, `"}}`...)
}

// Worker makes calls one at a time, for one goroutine: Prepare makes the next request (off
// the timed path), Call sends it and checks the answer, Close ends what the worker opened.
type Worker interface {
	Prepare()
	Call() error
	Close() error
}

// Unary is a Worker of unary CheckOrder calls, each checked ALLOWED.
type Unary struct {
	client essv1.GuardServiceClient
	orders *Orders
	order  *essv1.CheckOrderRequest
}

// NewUnary makes a Unary worker; workers may share one client and one Orders.
func NewUnary(client essv1.GuardServiceClient, orders *Orders) *Unary {
	return &Unary{client: client, orders: orders}
}

func (u *Unary) Prepare() { u.order = u.orders.Proto() }

func (u *Unary) Call() error {
	reply, err := u.client.CheckOrder(context.Background(), u.order)
	if err != nil {
		return fmt.Errorf("CheckOrder: %w", err)
	}
	if !reply.GetAllowed() {
		return fmt.Errorf("CheckOrder denied: %v", reply)
	}
	return nil
}

func (u *Unary) Close() error { return nil }

// Stream is a Worker with one long-lived CheckOrderStream of its own: one request in flight,
// each answer checked (the request_id echoed, ALLOWED).
type Stream struct {
	stream  grpc.BidiStreamingClient[essv1.CheckOrderStreamRequest, essv1.CheckOrderStreamResponse]
	orders  *Orders
	lastID  uint64
	request *essv1.CheckOrderStreamRequest
}

// NewStream opens the worker's CheckOrderStream.
func NewStream(client essv1.GuardServiceClient, orders *Orders) (*Stream, error) {
	stream, err := client.CheckOrderStream(context.Background())
	if err != nil {
		return nil, fmt.Errorf("open CheckOrderStream: %w", err)
	}
	return &Stream{stream: stream, orders: orders}, nil
}

func (s *Stream) Prepare() {
	s.lastID++
	s.request = &essv1.CheckOrderStreamRequest{RequestId: s.lastID, Order: s.orders.Proto()}
}

func (s *Stream) Call() error {
	if err := s.stream.Send(s.request); err != nil {
		return fmt.Errorf("stream send %d: %w", s.lastID, err)
	}
	reply, err := s.stream.Recv()
	if err != nil {
		return fmt.Errorf("stream answer for %d: %w", s.lastID, err)
	}
	if reply.GetRequestId() != s.lastID || !reply.GetDecision().GetAllowed() {
		return fmt.Errorf("stream answer for %d was %v", s.lastID, reply)
	}
	return nil
}

// Close half-closes the stream and waits for the server to end the call.
func (s *Stream) Close() error {
	if err := s.stream.CloseSend(); err != nil {
		return err
	}
	if _, err := s.stream.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("stream end: %v", err)
	}
	return nil
}

// Segments reads one positive number a line from in (what: what the number is, for the
// error), and writes what segment(number) returns as one JSON line to out, until EOF.
func Segments(in io.Reader, out *json.Encoder, what string, segment func(int) (any, error)) error {
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(lines.Text()))
		if err != nil || n < 1 {
			return fmt.Errorf("expected %s on stdin, got %q", what, lines.Text())
		}
		answer, err := segment(n)
		if err != nil {
			return err
		}
		if err := out.Encode(answer); err != nil {
			return err
		}
	}
	return lines.Err()
}

// Fail answers {"error": "..."} on out and exits 1.
func Fail(out *json.Encoder, err error) {
	_ = out.Encode(map[string]string{"error": err.Error()})
	os.Exit(1)
}

// CPUTime is this process's user+system CPU time in ns (0 if it cannot be read).
func CPUTime() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return usage.Utime.Nano() + usage.Stime.Nano()
}

// Versions is "go1.x, grpc-go vX", as --version prints it.
func Versions() string {
	grpcVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "google.golang.org/grpc" {
				grpcVersion = dep.Version
			}
		}
	}
	return fmt.Sprintf("%s, grpc-go %s", runtime.Version(), grpcVersion)
}
