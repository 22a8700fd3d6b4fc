package ess

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// HeartbeatConfig configures a dead-man's switch: Scope trips if the sidecar hears no
// heartbeat from ExecutorID for TTL.
type HeartbeatConfig struct {
	ExecutorID string
	Scope      *essv1.Scope
	TTL        time.Duration // 1 ms to 1 hour, sent in whole ms
	// How often to beat; default (0) TTL/3, so one lost beat does not trip the scope. One
	// that is negative or not shorter than the TTL is an error: the scope would trip.
	Interval time.Duration
	// Called (from the heartbeat goroutine) with each failed beat; default: logged.
	OnError func(error)
	// Whether the executor's trading loop is alive, asked before each beat (from the
	// heartbeat goroutine); nil: the beats prove only that the process is alive. A false, or
	// a panic, withholds the beat (Skipped counts it; the first withheld and the first sent
	// again are logged), so the scope trips at its TTL as if the executor had died; beats
	// resume when it says true again (a trip stays latched: an operator resets it). One
	// that blocks holds the beats, and the scope trips: keep it to reading an atomic.
	Alive func() bool
}

// Heartbeater beats in the background until Stop.
type Heartbeater struct {
	client *Client
	config HeartbeatConfig
	ttlMs  uint32
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once // Stop's
	halted sync.Once // closing stop: Stop's or the client's Close's
	// Held while a beat is sent: Stop takes it after telling the goroutine to end, so a
	// beat in flight ends first and none follows the deregistration, though Stop never
	// waits for the goroutine (review 54h: from its own Alive or OnError it waited for
	// itself, for good).
	beating sync.Mutex

	mu        sync.Mutex
	lastState essv1.State
	lastErr   error
	skipped   uint64
	withheld  bool // the last beat was withheld for Alive
}

// StartHeartbeat sends a first heartbeat (its error is returned, and nothing is started)
// and then one every Interval until Stop. An Interval not shorter than the TTL is an
// error, and nothing is sent; so is an Alive that is not true at the start (nothing would
// register the executor, and its scope could never trip), and a closed client (ErrClosed).
func (c *Client) StartHeartbeat(ctx context.Context, config HeartbeatConfig) (*Heartbeater, error) {
	if config.TTL < time.Millisecond || config.TTL > time.Hour {
		return nil, errors.New("ess: heartbeat TTL must be 1 ms to 1 hour")
	}
	ttl := config.TTL.Truncate(time.Millisecond) // what the sidecar is sent
	if config.Interval < 0 {
		return nil, fmt.Errorf("ess: a heartbeat interval must be > 0 (0: TTL/3), got %v",
			config.Interval)
	}
	if config.Interval == 0 {
		config.Interval = ttl / 3
	}
	if config.Interval >= ttl {
		return nil, fmt.Errorf("ess: a heartbeat interval of %v is not shorter than its TTL"+
			" of %v: the scope would trip", config.Interval, ttl)
	}
	if config.OnError == nil {
		logger := c.opts.logger
		config.OnError = func(err error) {
			logger.Warn("ess heartbeat failed", "executor_id", config.ExecutorID, "error", err)
		}
	}
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: no heartbeat can be started", ErrClosed)
	}
	h := &Heartbeater{client: c, config: config, ttlMs: uint32(ttl / time.Millisecond),
		stop: make(chan struct{}), done: make(chan struct{})}
	if !h.alive() {
		return nil, fmt.Errorf("ess: heartbeat of %s not started: its Alive is not true;"+
			" nothing sent", config.ExecutorID)
	}
	if err := h.beat(ctx); err != nil {
		return nil, err
	}
	if !c.keep(h) { // closed during the first beat: the scope trips at the TTL
		return nil, fmt.Errorf("%w: no heartbeat can be started", ErrClosed)
	}
	return h, nil
}

// keep starts h's goroutine and keeps h for Close to halt, unless the client is closed.
func (c *Client) keep(h *Heartbeater) bool {
	c.heartbeatsMu.Lock()
	defer c.heartbeatsMu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.heartbeats[h] = struct{}{}
	go h.run()
	return true
}

// haltHeartbeats stops the heartbeats Close found running, without deregistering: the
// executor is gone with its client, so its scope trips at the TTL (review 54e: they beat
// on, failing every interval; as Python's, Java's and TypeScript's).
// It tells them to end and does not wait: Close may be called from a heartbeat's own
// OnError or Alive, and an Alive may block (review 54g: Close deadlocked in both); the
// connection Close then closes ends a beat in flight, and none starts after it.
func (c *Client) haltHeartbeats() {
	c.heartbeatsMu.Lock()
	running := c.heartbeats
	c.heartbeats = nil // keep adds none once closed
	c.heartbeatsMu.Unlock()
	for h := range running {
		h.signal()
	}
}

// signal tells the goroutine to end.
func (h *Heartbeater) signal() {
	h.halted.Do(func() { close(h.stop) })
}

func (h *Heartbeater) beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(h.config.Interval, h.client.opts.rpcTimeout))
	defer cancel()
	answer, err := h.client.Heartbeat(ctx, h.config.ExecutorID, h.config.Scope, h.ttlMs, false)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = err
	if err == nil {
		h.lastState = answer.GetState()
	}
	return err
}

func (h *Heartbeater) run() {
	defer close(h.done)
	ticker := time.NewTicker(h.config.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-ticker.C:
			if h.client.closed.Load() { // Close is halting it
				return
			}
			alive := h.alive()
			if h.halting() { // stopped or closed while Alive ran: no beat after that
				return
			}
			if !h.withhold(alive) {
				sent, err := h.beatUnlessHalting()
				if !sent {
					return
				}
				if err != nil && !h.halting() {
					h.config.OnError(err) // not holding beating: it may call Stop
				}
			}
		}
	}
}

// beatUnlessHalting sends a beat unless Stop or Close has told the goroutine to end.
func (h *Heartbeater) beatUnlessHalting() (bool, error) {
	h.beating.Lock()
	defer h.beating.Unlock()
	if h.halting() {
		return false, nil
	}
	return true, h.beat(context.Background())
}

// halting says whether Stop or Close has told the goroutine to end.
func (h *Heartbeater) halting() bool {
	select {
	case <-h.stop:
		return true
	default:
		return h.client.closed.Load()
	}
}

// alive asks config.Alive (true when unset); a panic in it is not alive.
func (h *Heartbeater) alive() (alive bool) {
	if h.config.Alive == nil {
		return true
	}
	defer func() {
		if r := recover(); r != nil {
			alive = false
			h.client.opts.logger.Warn("ess heartbeat Alive panicked: not alive",
				"executor_id", h.config.ExecutorID, "panic", r)
		}
	}()
	return h.config.Alive()
}

// withhold counts a beat withheld (alive false) and logs the changes of alive; it says
// whether to withhold this one.
func (h *Heartbeater) withhold(alive bool) bool {
	h.mu.Lock()
	changed := h.withheld == alive
	h.withheld = !alive
	if !alive {
		h.skipped++
	}
	h.mu.Unlock()
	switch logger := h.client.opts.logger; {
	case changed && !alive:
		logger.Warn("ess heartbeat withheld: the executor is not alive; its scope trips at"+
			" the TTL", "executor_id", h.config.ExecutorID, "ttl", h.config.TTL)
	case changed:
		logger.Info("ess heartbeat resumed: the executor is alive again",
			"executor_id", h.config.ExecutorID)
	}
	return !alive
}

// Skipped counts the beats withheld because Alive was not true.
func (h *Heartbeater) Skipped() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.skipped
}

// State is the scope's state in the last successful heartbeat's answer.
func (h *Heartbeater) State() essv1.State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastState
}

// Err is the last heartbeat's error, nil if it succeeded.
func (h *Heartbeater) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

// Stop ends the heartbeats and deregisters the executor, so that the scope does not trip
// when the TTL lapses. The deregistration's error is returned (only the first Stop sends
// it). Call it on a clean shutdown only: do not defer it, for a deferred Stop runs on a
// panic too, and deregisters an executor that died (its scope would then never trip).
// After the client's Close it only stops: it sends nothing and returns nil (the scope
// trips at the TTL).
func (h *Heartbeater) Stop(ctx context.Context) error {
	var err error
	h.once.Do(func() {
		h.signal()
		h.beating.Lock() // a beat in flight ends first, and none starts after
		h.beating.Unlock()
		c := h.client
		c.heartbeatsMu.Lock()
		delete(c.heartbeats, h)
		c.heartbeatsMu.Unlock()
		if !c.closed.Load() {
			_, err = c.Heartbeat(ctx, h.config.ExecutorID, h.config.Scope, h.ttlMs, true)
		}
	})
	return err
}
