package ess_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// syncBuffer is a log destination safe for the heartbeat goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// scripted is an Alive that answers, beat by beat, what the test feeds it: "yes", "no" or
// "panic" (a closed feed: no). It blocks until fed, which holds the beats meanwhile.
func scripted(feed <-chan string) func() bool {
	return func() bool {
		switch <-feed {
		case "yes":
			return true
		case "panic":
			panic("the loop's state is corrupt")
		default:
			return false
		}
	}
}

func awaitBeat(t *testing.T, beats <-chan *essv1.HeartbeatRequest) *essv1.HeartbeatRequest {
	t.Helper()
	select {
	case beat := <-beats:
		return beat
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat within 5 s")
		return nil
	}
}

// Review 54a: the heartbeat beat on while the executor's trading loop was dead, so only the
// death of the whole process tripped the scope. With Alive, a beat is sent only while it
// says true; false or a panic withholds it (counted, logged once each way).
func TestHeartbeatIsWithheldWhileNotAliveAndResumes(t *testing.T) {
	logs := &syncBuffer{}
	h := newHarness(t, allow, ess.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	h.fake.beats = make(chan *essv1.HeartbeatRequest, 16)
	feed := make(chan string, 16)
	feed <- "yes" // the first beat, in StartHeartbeat
	hb, err := h.client.StartHeartbeat(context.Background(), ess.HeartbeatConfig{
		ExecutorID: "exec-1", Scope: &essv1.Scope{}, TTL: time.Second,
		Interval: time.Millisecond, Alive: scripted(feed)})
	if err != nil {
		t.Fatal(err)
	}
	awaitBeat(t, h.fake.beats)
	for _, answer := range []string{"no", "panic", "no", "yes"} {
		feed <- answer
	}
	awaitBeat(t, h.fake.beats) // only the "yes" beats: the tick before it has finished
	if n := hb.Skipped(); n != 3 {
		t.Fatalf("%d beats withheld, want 3", n)
	}
	h.fake.mu.Lock()
	sent := len(h.fake.heartbeats)
	h.fake.mu.Unlock()
	if sent != 2 {
		t.Fatalf("%d heartbeats sent, want 2", sent)
	}
	if w, r := logs.count("heartbeat withheld"), logs.count("heartbeat resumed"); w != 1 || r != 1 {
		t.Fatalf("logged %d withheld and %d resumed, want 1 each:\n%s", w, r, logs.buf.String())
	}
	close(feed) // not alive from now on, and never blocking: Stop can end the goroutine
	if err := hb.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Not alive at the start: nothing would register the executor, so nothing could trip its
// scope; StartHeartbeat refuses, and sends nothing.
func TestHeartbeatNotAliveAtTheStartIsAnErrorAndSendsNothing(t *testing.T) {
	h := newHarness(t, allow)
	for _, answer := range []string{"no", "panic"} {
		feed := make(chan string, 1)
		feed <- answer
		hb, err := h.client.StartHeartbeat(context.Background(), ess.HeartbeatConfig{
			ExecutorID: "exec-1", Scope: &essv1.Scope{}, TTL: time.Second,
			Alive: scripted(feed)})
		if err == nil {
			hb.Stop(context.Background())
			t.Fatalf("%s: started", answer)
		}
		if !strings.Contains(err.Error(), "Alive") {
			t.Fatalf("%s: %v", answer, err)
		}
	}
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	if len(h.fake.heartbeats) != 0 {
		t.Fatalf("%d heartbeats sent", len(h.fake.heartbeats))
	}
}

// Review 54e: after Close the heartbeats beat on, failing every interval. Close now halts
// them without deregistering (the scope trips at the TTL); a later Stop sends nothing, and
// a closed client starts no heartbeat.
// Review 54g: Close waited for the heartbeats' goroutines, so a Close from a heartbeat's
// own Alive or OnError waited for itself, for good, and one while Alive blocked waited as
// long; Close now tells them to end and goes on.
func TestCloseFromAHeartbeatsOwnAliveReturns(t *testing.T) {
	h := newHarness(t, allow)
	h.fake.beats = make(chan *essv1.HeartbeatRequest, 16)
	closed := make(chan struct{})
	var asked atomic.Int32
	config := ess.HeartbeatConfig{ExecutorID: "exec-1", Scope: &essv1.Scope{},
		TTL: time.Second, Interval: time.Millisecond, Alive: func() bool {
			if asked.Add(1) == 3 { // at start, then the goroutine's first tick: a beat
				h.client.Close()
				close(closed)
			}
			return true
		}}
	hb, err := h.client.StartHeartbeat(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close from Alive has not returned in 10 s")
	}
	if err := hb.Stop(context.Background()); err != nil {
		t.Fatalf("Stop after Close: %v", err)
	}
}

// Review 54h: Stop waited for the heartbeat's goroutine, so a Stop from its own Alive
// waited for itself, for good, and the executor was never deregistered.
func TestStopFromTheHeartbeatsOwnAliveDeregisters(t *testing.T) {
	h := newHarness(t, allow)
	h.fake.beats = make(chan *essv1.HeartbeatRequest, 64)
	stopped := make(chan error, 1)
	var asked atomic.Int32
	var hb *ess.Heartbeater
	ready := make(chan struct{})
	config := ess.HeartbeatConfig{ExecutorID: "exec-1", Scope: &essv1.Scope{},
		TTL: time.Second, Interval: time.Millisecond, Alive: func() bool {
			if asked.Add(1) == 3 { // on the goroutine, once StartHeartbeat has returned
				<-ready
				stopped <- hb.Stop(context.Background())
			}
			return true
		}}
	var err error
	hb, err = h.client.StartHeartbeat(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop from Alive: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop from Alive has not returned in 10 s")
	}
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	last := h.fake.heartbeats[len(h.fake.heartbeats)-1]
	if !last.GetDeregister() {
		t.Fatal("no deregistration, or a beat after it")
	}
}

func TestCloseHaltsHeartbeatsWithoutDeregisteringAndRefusesNewOnes(t *testing.T) {
	h := newHarness(t, allow)
	h.fake.beats = make(chan *essv1.HeartbeatRequest, 16)
	config := ess.HeartbeatConfig{ExecutorID: "exec-1", Scope: &essv1.Scope{},
		TTL: time.Second, Interval: time.Millisecond}
	hb, err := h.client.StartHeartbeat(context.Background(), config)
	if err != nil {
		t.Fatal(err)
	}
	awaitBeat(t, h.fake.beats)
	awaitBeat(t, h.fake.beats) // one from the goroutine
	h.client.Close()
	if err := hb.Stop(context.Background()); err != nil { // a beat in flight has ended
		t.Fatalf("Stop after Close: %v", err)
	}
	h.fake.mu.Lock()
	sent := len(h.fake.heartbeats)
	h.fake.mu.Unlock()
	h.fake.mu.Lock()
	defer h.fake.mu.Unlock()
	for _, beat := range h.fake.heartbeats {
		if beat.GetDeregister() {
			t.Fatal("a closed client deregistered its executor")
		}
	}
	if len(h.fake.heartbeats) != sent {
		t.Fatalf("%d heartbeats after the goroutine ended", len(h.fake.heartbeats)-sent)
	}
	_, err = h.client.StartHeartbeat(context.Background(), config)
	if !errors.Is(err, ess.ErrClosed) {
		t.Fatalf("a heartbeat started on a closed client: %v", err)
	}
}
