// Command ess-bench measures checks through the ess library's stream Check against a live
// sidecar:
//
//	ess-bench --target unix:/tmp/ess.sock --checks 10000 --inflight 8
//
// --inflight goroutines share one client (one stream) and check until --checks checks are
// done, after --warmup unmeasured ones. It prints one line
// "p50_us=.. p99_us=.. checks_per_s=.." (nearest-rank percentiles of each Check call; the
// rate over the wall time of the measured checks), and on stderr how many were not
// allowed, by reason: the sidecar must allow them all (a config without exposure, rate,
// duplicate and working-order limits), or the figures measure something else. Exit 1 if
// any check was not allowed.
package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/cli"
)

func main() {
	fs := cli.NewFlagSet("ess-bench", "ess-bench --target unix:PATH|HOST:PORT [--checks 10000] [--inflight 1]",
		"Measure checks through the library's stream Check: p50_us=.. p99_us=.. checks_per_s=..")
	var target cli.Target
	fs.Var(&target, "target", "HOST:PORT or unix:PATH")
	token := fs.String("token", "", "bearer token")
	checks := fs.Int("checks", 10000, "measured checks")
	warmup := fs.Int("warmup", 1000, "unmeasured checks first")
	inflight := fs.Int("inflight", 1, "checks in flight (goroutines sharing the client)")
	account := fs.String("account", "bench-acc", "account of the orders")
	strategy := fs.String("strategy", "bench", "strategy of the orders")
	symbol := fs.String("symbol", "BENCH", "symbol of the orders")
	deadline := cli.DeadlineMS{Positive: cli.Positive{Value: 1000}}
	fs.Var(&deadline, "deadline-ms", "per-check deadline in ms (high: measure, do not deny)")
	cli.Parse(fs, os.Args[1:], "target")
	if *checks < 1 || *inflight < 1 || *warmup < 0 {
		cli.Usage(fs, fmt.Errorf("--checks and --inflight must be >= 1, --warmup >= 0"))
	}

	options := []ess.Option{ess.WithDeadline(deadline.Duration())}
	if *token != "" {
		options = append(options, ess.WithToken(*token))
	}
	client, err := ess.New(target.Dial(), options...)
	if err != nil { // a target or token the library refuses
		cli.Refused(fs, err)
	}
	defer client.Close()
	connecting, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := client.Connect(connecting); err != nil {
		fmt.Fprintln(os.Stderr, "ess-bench:", err)
		os.Exit(1)
	}
	cancel()

	order := ess.Order{Account: *account, Strategy: *strategy, Symbol: *symbol, Side: ess.Buy,
		Quantity: 1, Price: 100}
	var mu sync.Mutex
	denied := map[string]int{}
	run := func(total int, latencies []time.Duration) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		started := time.Now()
		for range *inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				for {
					i := next.Add(1) - 1
					if i >= int64(total) {
						return
					}
					t0 := time.Now()
					verdict := client.Check(ctx, order)
					elapsed := time.Since(t0)
					if latencies != nil {
						latencies[i] = elapsed
					}
					if !verdict.Allowed {
						mu.Lock()
						denied[cli.Line(verdict)[len("DENIED "):]]++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(started)
	}
	run(*warmup, nil)
	latencies := make([]time.Duration, *checks)
	wall := run(*checks, latencies)
	slices.Sort(latencies)
	fmt.Printf("p50_us=%.1f p99_us=%.1f checks_per_s=%.0f\n", micros(rank(latencies, 0.50)),
		micros(rank(latencies, 0.99)), float64(*checks)/wall.Seconds())
	if len(denied) > 0 {
		for line, n := range denied {
			fmt.Fprintf(os.Stderr, "ess-bench: %d not allowed: %s\n", n, line)
		}
		os.Exit(1)
	}
}

// rank is the nearest-rank percentile of sorted.
func rank(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
