// Command peersbench is the Go client of benchmarks/peers (make bench-peers): it keeps N
// calls in flight against one subject, a gRPC GuardService (unary CheckOrder or
// CheckOrderStream) or OPA's REST API (POST /v1/data/ess/decision), and times each call.
//
// The orders are benchmarks/workload.py's (internal/bench, shared with cmd/essbench):
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
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/bench"
)

type opaAnswer struct {
	Result *struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	} `json:"result"`
}

// httpWorker is a bench.Worker (beside bench.Unary and bench.Stream) that POSTs each order
// to OPA's decision API; the workers share one bench.Orders (its count is atomic).
type httpWorker struct {
	client *http.Client
	url    string
	orders *bench.Orders
	body   []byte
}

func (h *httpWorker) Prepare() { h.body = h.orders.OPAInput() }

func (h *httpWorker) Call() error {
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

func (h *httpWorker) Close() error { return nil }

// newWorkers opens what the api needs for n workers (see the package comment).
func newWorkers(api, target string, n int) (workers []bench.Worker, closeAll func(), err error) {
	made, err := bench.NewOrders()
	if err != nil {
		return nil, nil, err
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
			workers = append(workers, bench.NewUnary(client, made))
			continue
		}
		stream, err := bench.NewStream(client, made)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		workers = append(workers, stream)
	}
	return workers, func() { conn.Close() }, nil
}

// segment runs every worker until the deadline; latencies of all workers, merged.
func segment(workers []bench.Worker, d time.Duration) (latencies []int64, wall int64, err error) {
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
				w.Prepare()
				begin := time.Now()
				if !begin.Before(deadline) {
					break
				}
				if err := w.Call(); err != nil {
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

func run(workers []bench.Worker, in io.Reader, out *json.Encoder) error {
	err := bench.Segments(in, out, "a positive duration in ms", func(ms int) (any, error) {
		cpu := bench.CPUTime()
		latencies, wall, err := segment(workers, time.Duration(ms)*time.Millisecond)
		return map[string]any{"latencies_ns": latencies, "wall_ns": wall,
			"cpu_ns": bench.CPUTime() - cpu}, err
	})
	if err != nil {
		return err
	}
	for _, w := range workers {
		if err := w.Close(); err != nil {
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
		fmt.Println(bench.Versions())
		return
	}
	if *target == "" || *concurrency < 1 ||
		(*api != "unary" && *api != "stream" && *api != "http") {
		fmt.Fprintln(os.Stderr, "usage: peersbench --api unary|stream|http --target T"+
			" [--concurrency N]   (then call durations in ms on stdin)")
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) { bench.Fail(out, err) }
	workers, closeAll, err := newWorkers(*api, *target, *concurrency)
	if err != nil {
		fail(err)
	}
	defer closeAll()
	if err := run(workers, os.Stdin, out); err != nil {
		fail(err)
	}
}
