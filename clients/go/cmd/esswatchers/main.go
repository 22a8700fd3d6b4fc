// Command esswatchers holds many WatchState subscribers open against one sidecar, for
// benchmarks/storm.py: --watchers streams over --conns connections, of which --stalled never
// read (a watcher that hung; the sidecar must cut it off, not wait for it). Go rather than
// Python so that a thousand readers cost the machine little next to the sidecar measured.
//
// Once every reading watcher has its snapshot it prints {"ready": N}. Then each line on stdin
// answers one JSON line: how many transitions the readers received in all, the lowest and
// highest version any reader has reached, how many streams ended and with which status. EOF
// on stdin closes every stream and exits.
//
//	esswatchers --target unix:/tmp/ess.sock --watchers 200 --stalled 10
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/bench"
)

// tally is what the readers saw, shared under its mutex.
type tally struct {
	mu          sync.Mutex
	transitions int64
	last        []uint64 // per reader: the version of its latest transition or snapshot end
	ended       map[string]int
}

func (t *tally) report() map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	lowest, highest := uint64(math.MaxUint64), uint64(0)
	for _, v := range t.last {
		lowest, highest = min(lowest, v), max(highest, v)
	}
	ended := map[string]int{}
	for code, n := range t.ended {
		ended[code] = n
	}
	return map[string]any{"transitions": t.transitions, "lowest_version": lowest,
		"highest_version": highest, "ended": ended}
}

func (t *tally) end(err error) {
	t.mu.Lock()
	t.ended[status.Code(err).String()]++
	t.mu.Unlock()
}

// read is one reading watcher: it counts transitions until its stream ends.
func read(stream grpc.ServerStreamingClient[essv1.WatchStateResponse], index int, t *tally,
	ready *sync.WaitGroup) {
	snapshot := true
	for {
		message, err := stream.Recv()
		if err != nil {
			if snapshot {
				ready.Done()
			}
			t.end(err)
			return
		}
		switch message.GetKind() {
		case essv1.WatchEventKind_WATCH_EVENT_KIND_SNAPSHOT_END:
			t.mu.Lock()
			t.last[index] = message.GetVersion()
			t.mu.Unlock()
			if snapshot {
				snapshot = false
				ready.Done()
			}
		case essv1.WatchEventKind_WATCH_EVENT_KIND_TRANSITION:
			t.mu.Lock()
			t.transitions++
			t.last[index] = message.GetVersion()
			t.mu.Unlock()
		}
	}
}

func run() error {
	target := flag.String("target", "", "the sidecar, e.g. unix:/tmp/ess.sock")
	watchers := flag.Int("watchers", 200, "WatchState streams in all")
	stalled := flag.Int("stalled", 10, "of them, streams that never read")
	conns := flag.Int("conns", 10, "connections the streams are spread over")
	version := flag.Bool("version", false, "print the Go and grpc-go versions and exit")
	flag.Parse()
	if *version {
		fmt.Println(bench.Versions())
		return nil
	}
	if *target == "" || *watchers < 1 || *stalled < 0 || *stalled >= *watchers || *conns < 1 {
		return fmt.Errorf("need --target, --watchers >= 1, 0 <= --stalled < --watchers, --conns >= 1")
	}
	clients := make([]essv1.GuardServiceClient, *conns)
	for i := range clients {
		conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("connect %s: %w", *target, err)
		}
		defer conn.Close()
		clients[i] = essv1.NewGuardServiceClient(conn)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readers := *watchers - *stalled
	t := &tally{last: make([]uint64, readers), ended: map[string]int{}}
	var ready sync.WaitGroup
	ready.Add(readers)
	for i := 0; i < *watchers; i++ {
		stream, err := clients[i%*conns].WatchState(ctx, &essv1.WatchStateRequest{})
		if err != nil {
			return fmt.Errorf("WatchState %d: %w", i, err)
		}
		if i < readers {
			go read(stream, i, t, &ready)
		} // a stalled watcher: the stream stays open, never read
	}
	done := make(chan struct{})
	go func() { ready.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		return fmt.Errorf("not every watcher had its snapshot within 120 s")
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]int{"ready": readers}); err != nil {
		return err
	}
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		if err := out.Encode(t.report()); err != nil {
			return err
		}
	}
	return lines.Err()
}

func main() {
	if err := run(); err != nil {
		json.NewEncoder(os.Stdout).Encode(map[string]string{"error": err.Error()})
		os.Exit(1)
	}
}
