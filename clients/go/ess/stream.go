package ess

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// outboxSize bounds the requests queued for the writer; beyond it a check fails closed.
const outboxSize = 4096

type checkRPC = grpc.BidiStreamingClient[essv1.CheckOrderStreamRequest, essv1.CheckOrderStreamResponse]

// pendingCheck is one request sent on a stream and not answered yet. done is buffered and
// receives exactly one verdict (the answer, or the stream's failure); a caller that gave up
// on its deadline simply never reads it.
type pendingCheck struct {
	id   uint64
	sent time.Time
	done chan Verdict
}

// checkStream is one CheckOrderStream call. Once broken it stays broken: the client opens
// a new one and never sends on, nor believes an answer from, a broken stream.
//
// The sidecar answers in request order, so every answer must be for the oldest unanswered
// request; anything else means the stream cannot be trusted and it is broken. Requests are
// queued in send order under mu and written by one goroutine (a gRPC stream takes one
// write at a time, and a write may block on flow control: a caller must never).
type checkStream struct {
	rpc        checkRPC
	cancel     context.CancelFunc
	stallAfter time.Duration
	outbox     chan *essv1.CheckOrderStreamRequest
	brokenCh   chan struct{} // closed when broken
	answered   atomic.Bool   // at least one answer came

	mu         sync.Mutex
	unanswered []*pendingCheck // in send order
	broken     bool
	cause      Cause
	why        string
}

func newCheckStream(rpc checkRPC, cancel context.CancelFunc, stallAfter time.Duration) *checkStream {
	s := &checkStream{
		rpc:        rpc,
		cancel:     cancel,
		stallAfter: stallAfter,
		outbox:     make(chan *essv1.CheckOrderStreamRequest, outboxSize),
		brokenCh:   make(chan struct{}),
	}
	go s.write()
	go s.read()
	return s
}

func (s *checkStream) isBroken() bool {
	select {
	case <-s.brokenCh:
		return true
	default:
		return false
	}
}

// failure is "<cause>: <why>" of a broken stream ("" if it is not broken).
func (s *checkStream) failure() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.broken {
		return ""
	}
	return s.cause.String() + ": " + s.why
}

// send queues one request; the pendingCheck receives its verdict. On a broken stream, or
// a full outbox, it returns the failure instead.
func (s *checkStream) send(id uint64, order *essv1.CheckOrderRequest) (*pendingCheck, Verdict) {
	p := &pendingCheck{id: id, sent: time.Now(), done: make(chan Verdict, 1)}
	request := &essv1.CheckOrderStreamRequest{RequestId: id, Order: order}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return nil, failed(s.cause, "the stream is broken: "+s.why)
	}
	select {
	case s.outbox <- request:
	default:
		return nil, failed(CauseClientError, fmt.Sprintf("more than %d checks queued", outboxSize))
	}
	s.unanswered = append(s.unanswered, p)
	return p, Verdict{}
}

// expired is called by a check whose deadline passed. One late answer is jitter; no
// answer at all for stallAfter is a hung stream, which is replaced.
func (s *checkStream) expired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.unanswered) > 0 && time.Since(s.unanswered[0].sent) > s.stallAfter {
		s.breakLocked(CauseDeadline, fmt.Sprintf("no answer for %v; stream replaced", s.stallAfter))
	}
}

func (s *checkStream) write() {
	for {
		select {
		case request := <-s.outbox:
			if err := s.rpc.Send(request); err != nil {
				if !errors.Is(err, io.EOF) { // io.EOF: the reader gets the stream's status
					s.fail(failureOf(err).Cause, "send failed: "+err.Error())
				}
				return
			}
		case <-s.brokenCh:
			return
		}
	}
}

func (s *checkStream) read() {
	for {
		answer, err := s.rpc.Recv()
		if err != nil {
			v := failureOf(err)
			s.fail(v.Cause, v.Message)
			return
		}
		if !s.onAnswer(answer) {
			return
		}
	}
}

// onAnswer matches an answer to the oldest unanswered request; false once broken.
func (s *checkStream) onAnswer(answer *essv1.CheckOrderStreamResponse) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return false
	}
	if len(s.unanswered) == 0 {
		s.breakLocked(CauseMalformed, fmt.Sprintf("answer to request %d, which was never sent",
			answer.GetRequestId()))
		return false
	}
	expected := s.unanswered[0]
	s.unanswered[0] = nil
	s.unanswered = s.unanswered[1:]
	if answer.GetRequestId() != expected.id {
		why := fmt.Sprintf("answer to request %d, expected %d; stream replaced",
			answer.GetRequestId(), expected.id)
		expected.done <- failed(CauseMalformed, why)
		s.breakLocked(CauseMalformed, why)
		return false
	}
	s.answered.Store(true)
	expected.done <- verdictFromAnswer(answer)
	return true
}

// fail breaks the stream with cause: every request in flight is answered with it at once.
func (s *checkStream) fail(cause Cause, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.breakLocked(cause, why)
}

func (s *checkStream) breakLocked(cause Cause, why string) {
	if s.broken {
		return
	}
	s.broken, s.cause, s.why = true, cause, why
	close(s.brokenCh)
	s.cancel() // ends the call: the reader and the writer return
	for _, p := range s.unanswered {
		p.done <- failed(cause, why)
	}
	s.unanswered = nil
}
