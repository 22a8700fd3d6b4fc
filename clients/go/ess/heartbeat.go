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
}

// Heartbeater beats in the background until Stop.
type Heartbeater struct {
	client *Client
	config HeartbeatConfig
	ttlMs  uint32
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu        sync.Mutex
	lastState essv1.State
	lastErr   error
}

// StartHeartbeat sends a first heartbeat (its error is returned, and nothing is started)
// and then one every Interval until Stop. An Interval not shorter than the TTL is an
// error, and nothing is sent.
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
	h := &Heartbeater{client: c, config: config, ttlMs: uint32(ttl / time.Millisecond),
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := h.beat(ctx); err != nil {
		return nil, err
	}
	go h.run()
	return h, nil
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
			if err := h.beat(context.Background()); err != nil {
				h.config.OnError(err)
			}
		}
	}
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
func (h *Heartbeater) Stop(ctx context.Context) error {
	var err error
	h.once.Do(func() {
		close(h.stop)
		<-h.done
		_, err = h.client.Heartbeat(ctx, h.config.ExecutorID, h.config.Scope, h.ttlMs, true)
	})
	return err
}
