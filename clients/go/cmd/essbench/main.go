// Command essbench measures CheckOrder / CheckOrderStream latency as a Go executor sees it:
// one call in flight, the orders benchmarks/check_latency.py sends (benchmarks/workload.py:
// each with its own client_order_id, the price cycling within 1 % of the mark so that no
// five are identical within a second), every answer checked (ALLOWED; on the stream, the
// request_id echoed). Each order is made before its call is timed.
//
// Against a sidecar, the harness syncs the mark and ends the working orders between
// segments; run on its own against a sidecar, essbench needs one that has a mark for
// ACC-1/BTC-USD (100) and working-order caps above --warmup + --calls.
//
// One run, JSON summary on stdout (percentiles nearest-rank, in µs; client_cpu is this
// process's user+system CPU per measured call). Options are grpc-go's defaults, as a Go
// executor would start with; --window BYTES fixes the HTTP/2 flow-control windows, which
// turns off grpc-go's BDP estimation (a WINDOW_UPDATE and a PING after about every other
// answer here, and the server's PING ack):
//
//	essbench --target unix:/tmp/ess.sock --api stream --calls 20000 --warmup 2000
//
// Segments, for benchmarks/check_latency.py --client go: one channel (and, for --api stream,
// one long-lived stream) for the life of the process; each line "N" on stdin runs N calls and
// answers one JSON line {"latencies_ns": [...], "cpu_ns": ...}; EOF on stdin ends the process.
// On any failure it answers {"error": "..."} and exits 1.
//
//	essbench --target 127.0.0.1:50051 --api unary --segments
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/bench"
)

// caller runs n calls one at a time and returns each call's latency. The orders are
// benchmarks/workload.py's (bench.Orders), each made before its call is timed.
type caller struct{ worker bench.Worker }

func (c caller) run(n int) ([]int64, error) {
	latencies := make([]int64, n)
	for i := range latencies {
		c.worker.Prepare()
		start := time.Now()
		err := c.worker.Call()
		latencies[i] = int64(time.Since(start))
		if err != nil {
			return nil, err
		}
	}
	return latencies, nil
}

func (c caller) close() error { return c.worker.Close() }

func newCaller(conn *grpc.ClientConn, api string) (caller, error) {
	client := essv1.NewGuardServiceClient(conn)
	made, err := bench.NewOrders()
	if err != nil {
		return caller{}, err
	}
	if api == "unary" {
		return caller{bench.NewUnary(client, made)}, nil
	}
	stream, err := bench.NewStream(client, made)
	return caller{stream}, err
}

// measure runs one segment with the garbage collector paused, as the Python harness does
// for its own client, so a collection does not land in one server's tail by chance.
func measure(c caller, n int) (latencies []int64, cpuNs int64, err error) {
	runtime.GC()
	previous := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(previous)
	cpu := bench.CPUTime()
	latencies, err = c.run(n)
	return latencies, bench.CPUTime() - cpu, err
}

// percentile is nearest-rank on sorted latencies, in µs (check_latency.py's definition).
func percentile(sorted []int64, q float64) float64 {
	i := max(0, int(math.Ceil(q*float64(len(sorted))))-1)
	return float64(sorted[i]) / 1000
}

func oneRun(c caller, target, api string, calls, warmup int) (map[string]any, error) {
	if _, _, err := measure(c, warmup); err != nil {
		return nil, err
	}
	start := time.Now()
	latencies, cpuNs, err := measure(c, calls)
	wall := time.Since(start)
	if err != nil {
		return nil, err
	}
	slices.Sort(latencies)
	return map[string]any{
		"target": target, "api": api, "calls": calls, "warmup": warmup,
		"p50_us": percentile(latencies, 0.50), "p99_us": percentile(latencies, 0.99),
		"p99.9_us": percentile(latencies, 0.999), "calls_per_s": float64(calls) / wall.Seconds(),
		"client_cpu_us_per_call": float64(cpuNs) / 1000 / float64(calls),
		"client":                 bench.Versions(),
	}, nil
}

func segments(c caller, in io.Reader, out *json.Encoder) error {
	err := bench.Segments(in, out, "a positive call count", func(n int) (any, error) {
		latencies, cpuNs, err := measure(c, n)
		return map[string]any{"latencies_ns": latencies, "cpu_ns": cpuNs}, err
	})
	if err != nil {
		return err
	}
	return c.close()
}

func main() {
	target := flag.String("target", "", "unix:/path/to.sock or host:port")
	api := flag.String("api", "stream", "unary (CheckOrder) or stream (CheckOrderStream)")
	calls := flag.Int("calls", 20000, "measured calls")
	warmup := flag.Int("warmup", 2000, "unmeasured calls first")
	segmented := flag.Bool("segments", false, "read call counts from stdin (check_latency.py)")
	version := flag.Bool("version", false, "print the Go and grpc-go versions and exit")
	window := flag.Int("window", 0, "fixed HTTP/2 window in bytes; 0: grpc-go's default (BDP pings)")
	flag.Parse()
	if *version {
		fmt.Println(bench.Versions())
		return
	}
	if *target == "" || (*api != "unary" && *api != "stream") || *calls < 1 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "usage: essbench --target T --api unary|stream"+
			" [--calls N] [--warmup N] [--window BYTES] [--segments]")
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) { bench.Fail(out, err) }
	options := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *window > 0 { // a window set by hand turns grpc-go's BDP pings off
		options = append(options, grpc.WithInitialWindowSize(int32(*window)),
			grpc.WithInitialConnWindowSize(int32(*window)))
	}
	conn, err := grpc.NewClient(*target, options...)
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	c, err := newCaller(conn, *api)
	if err != nil {
		fail(err)
	}
	if *segmented {
		err = segments(c, os.Stdin, out)
	} else {
		var summary map[string]any
		if summary, err = oneRun(c, *target, *api, *calls, *warmup); err == nil {
			err = out.Encode(summary)
		}
		if err == nil {
			err = c.close()
		}
	}
	if err != nil {
		fail(err)
	}
}
