// Command peersbench is the Go client of benchmarks/peers (make bench-peers): it keeps N
// calls in flight against one subject, a gRPC GuardService (unary CheckOrder or
// CheckOrderStream) or OPA's REST API (POST /v1/data/ess/decision), and times each call.
//
// The orders are benchmarks/workload.py's (clients/go/cmd/essbench makes the same ones):
// ACC-1 / STRAT-1 / BTC-USD, BUY 1, each with its own client_order_id "<12 hex>-<count>"
// and a price cycling over 10,000 values within 1 % of the mark. The count is shared by
// the N workers (an atomic counter), so that N workers never send identical orders at
// once (five identical orders within a second are DUPLICATE_ORDER in the sidecar). Each
// order is made before its call is timed; every answer is checked (ALLOWED; on the stream
// the request_id echoed; from OPA {"result": {"allowed": true}}).
//
// Concurrency N is N goroutines, each with one call in flight at a time:
//
//   - unary: one shared grpc.ClientConn (one HTTP/2 connection), each goroutine a blocking
//     CheckOrder, so up to N calls are multiplexed on the connection;
//   - stream: one shared grpc.ClientConn, each goroutine its own long-lived
//     CheckOrderStream (Send then Recv, one request in flight per stream);
//   - http: one net/http Client whose Transport keeps up to N idle keep-alive connections,
//     so each goroutine ends up with a connection of its own (HTTP/1.1 does not multiplex).
//
// grpc-go's and net/http's default options otherwise, as a Go executor would start with;
// Go's garbage collector stays on (it is concurrent; a real executor runs with it).
//
// Segments, for benchmarks/peers/run.py: the connections and streams live as long as the
// process; each line "MS" on stdin runs the N workers for MS milliseconds (a worker stops
// at its first call that would start after the deadline) and answers one JSON line
// {"latencies_ns": [...], "wall_ns": W, "cpu_ns": C} (C: this process's user+system CPU
// over the segment). EOF on stdin closes the streams and exits. On any failure it answers
// {"error": "..."} and exits 1.
//
//	peersbench --api stream --target unix:/tmp/ess.sock --concurrency 32
//	peersbench --api http --target unix:/tmp/opa.sock --concurrency 8
//	peersbench --version
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// benchmarks/workload.py's constants.
const (
	account        = "ACC-1"
	strategy       = "STRAT-1"
	symbol         = "BTC-USD"
	mark           = 100.0
	distinctPrices = 10000
)

// orders are shared by the workers of one process: unique ids, prices cycling.
type orders struct {
	prefix string
	count  atomic.Uint64
}

func newOrders() (*orders, error) {
	random := make([]byte, 6)
	if _, err := rand.Read(random); err != nil {
		return nil, err
	}
	return &orders{prefix: hex.EncodeToString(random)}, nil
}

func (o *orders) next() (id string, price float64) {
	n := o.count.Add(1)
	return o.prefix + "-" + strconv.FormatUint(n, 10), mark * (1 + float64(n%distinctPrices)*1e-6)
}

func (o *orders) proto() *essv1.CheckOrderRequest {
	id, price := o.next()
	return &essv1.CheckOrderRequest{
		Account: account, Strategy: strategy, Symbol: symbol, Side: essv1.Side_SIDE_BUY,
		Quantity: 1.0, Price: price, ClientOrderId: id,
	}
}

// opaInput is OPA's request body: {"input": <the order>} (ess.rego's input).
func (o *orders) opaInput() []byte {
	id, price := o.next()
	body := make([]byte, 0, 192)
	body = append(body, `{"input":{"account":"`+account+`","strategy":"`+strategy+
		`","symbol":"`+symbol+`","side":"BUY","quantity":1,"price":`...)
	body = strconv.AppendFloat(body, price, 'g', -1, 64)
	body = append(body, `,"client_order_id":"`...)
	body = append(body, id...)
	return append(body, `"}}`...)
}

// worker makes calls one at a time; each worker is used by one goroutine only. prepare
// makes the next order (off the timed path), call sends it and checks the answer.
type worker interface {
	prepare()
	call() error
	close() error
}

type unaryWorker struct {
	client essv1.GuardServiceClient
	orders *orders
	order  *essv1.CheckOrderRequest
}

func (u *unaryWorker) prepare() { u.order = u.orders.proto() }

func (u *unaryWorker) call() error {
	reply, err := u.client.CheckOrder(context.Background(), u.order)
	if err != nil {
		return fmt.Errorf("CheckOrder: %w", err)
	}
	if !reply.GetAllowed() {
		return fmt.Errorf("CheckOrder denied: %v", reply)
	}
	return nil
}

func (u *unaryWorker) close() error { return nil }

type streamWorker struct {
	stream  grpc.BidiStreamingClient[essv1.CheckOrderStreamRequest, essv1.CheckOrderStreamResponse]
	orders  *orders
	lastID  uint64
	request *essv1.CheckOrderStreamRequest
}

func (s *streamWorker) prepare() {
	s.lastID++
	s.request = &essv1.CheckOrderStreamRequest{RequestId: s.lastID, Order: s.orders.proto()}
}

func (s *streamWorker) call() error {
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

func (s *streamWorker) close() error {
	if err := s.stream.CloseSend(); err != nil {
		return err
	}
	if _, err := s.stream.Recv(); !errors.Is(err, io.EOF) { // the server ends the call
		return fmt.Errorf("stream end: %v", err)
	}
	return nil
}

type opaAnswer struct {
	Result *struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	} `json:"result"`
}

type httpWorker struct {
	client *http.Client
	url    string
	orders *orders
	body   []byte
}

func (h *httpWorker) prepare() { h.body = h.orders.opaInput() }

func (h *httpWorker) call() error {
	response, err := h.client.Post(h.url, "application/json", bytes.NewReader(h.body))
	if err != nil {
		return fmt.Errorf("POST %s: %w", h.url, err)
	}
	payload, err := io.ReadAll(response.Body) // read to the end: the connection is reused
	response.Body.Close()
	if err != nil {
		return fmt.Errorf("POST %s: reading the answer: %w", h.url, err)
	}
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", h.url, response.Status, payload)
	}
	var answer opaAnswer
	if err := json.Unmarshal(payload, &answer); err != nil {
		return fmt.Errorf("POST %s: %w: %s", h.url, err, payload)
	}
	if answer.Result == nil || !answer.Result.Allowed {
		return fmt.Errorf("OPA denied or had no decision: %s", payload)
	}
	return nil
}

func (h *httpWorker) close() error { return nil }

// newWorkers opens what the api needs for n workers (see the package comment).
func newWorkers(api, target string, n int) (workers []worker, closeAll func(), err error) {
	made, err := newOrders()
	if err != nil {
		return nil, nil, fmt.Errorf("client_order_id prefix: %w", err)
	}
	if api == "http" {
		transport := &http.Transport{
			MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Hour,
			DisableCompression: true,
		}
		url := target
		if path, ok := strings.CutPrefix(target, "unix:"); ok {
			dialer := &net.Dialer{}
			transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", path)
			}
			url = "http://opa"
		}
		client := &http.Client{Transport: transport}
		for range n {
			workers = append(workers, &httpWorker{client: client, url: url +
				"/v1/data/ess/decision", orders: made})
		}
		return workers, transport.CloseIdleConnections, nil
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	client := essv1.NewGuardServiceClient(conn)
	for range n {
		if api == "unary" {
			workers = append(workers, &unaryWorker{client: client, orders: made})
			continue
		}
		stream, err := client.CheckOrderStream(context.Background())
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("open CheckOrderStream: %w", err)
		}
		workers = append(workers, &streamWorker{stream: stream, orders: made})
	}
	return workers, func() { conn.Close() }, nil
}

// segment runs every worker until the deadline; latencies of all workers, merged.
func segment(workers []worker, d time.Duration) (latencies []int64, wall int64, err error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	deadline := start.Add(d)
	perWorker := make([][]int64, len(workers))
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]int64, 0, 4096)
			for {
				w.prepare()
				begin := time.Now()
				if !begin.Before(deadline) {
					break
				}
				if err := w.call(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				own = append(own, int64(time.Since(begin)))
			}
			perWorker[i] = own
		}()
	}
	wg.Wait()
	wall = int64(time.Since(start))
	if firstErr != nil {
		return nil, 0, firstErr
	}
	for _, own := range perWorker {
		latencies = append(latencies, own...)
	}
	return latencies, wall, nil
}

func cpuTime() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return usage.Utime.Nano() + usage.Stime.Nano()
}

func versions() string {
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

func run(workers []worker, in io.Reader, out *json.Encoder) error {
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		ms, err := strconv.Atoi(strings.TrimSpace(lines.Text()))
		if err != nil || ms < 1 {
			return fmt.Errorf("expected a positive duration in ms on stdin, got %q", lines.Text())
		}
		cpu := cpuTime()
		latencies, wall, err := segment(workers, time.Duration(ms)*time.Millisecond)
		if err != nil {
			return err
		}
		if err := out.Encode(map[string]any{"latencies_ns": latencies, "wall_ns": wall,
			"cpu_ns": cpuTime() - cpu}); err != nil {
			return err
		}
	}
	if err := lines.Err(); err != nil {
		return err
	}
	for _, w := range workers {
		if err := w.close(); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	api := flag.String("api", "", "unary (CheckOrder), stream (CheckOrderStream) or http (OPA)")
	target := flag.String("target", "", "unix:/path/to.sock, host:port, or http://host:port")
	concurrency := flag.Int("concurrency", 1, "calls in flight (goroutines)")
	version := flag.Bool("version", false, "print the Go and grpc-go versions and exit")
	flag.Parse()
	if *version {
		fmt.Println(versions())
		return
	}
	if *target == "" || *concurrency < 1 ||
		(*api != "unary" && *api != "stream" && *api != "http") {
		fmt.Fprintln(os.Stderr, "usage: peersbench --api unary|stream|http --target T"+
			" [--concurrency N]   (then call durations in ms on stdin)")
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) {
		_ = out.Encode(map[string]string{"error": err.Error()})
		os.Exit(1)
	}
	workers, closeAll, err := newWorkers(*api, *target, *concurrency)
	if err != nil {
		fail(err)
	}
	defer closeAll()
	if err := run(workers, os.Stdin, out); err != nil {
		fail(err)
	}
}
