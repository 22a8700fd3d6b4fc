package ess

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// causeOfCode is the failure cause of a call or stream that ended with code: the
// connectivity codes are told apart; anything else is the sidecar refusing the call.
func causeOfCode(code codes.Code) Cause {
	switch code {
	case codes.Unavailable:
		return CauseUnavailable
	case codes.DeadlineExceeded:
		return CauseDeadline
	case codes.Canceled, codes.Internal, codes.Unknown:
		return CauseStreamBroken
	case codes.InvalidArgument:
		return CauseRequestError
	default:
		return CauseRefused
	}
}

// failureOf turns an RPC error into a fail-closed verdict.
func failureOf(err error) Verdict {
	if errors.Is(err, io.EOF) {
		return failed(CauseStreamBroken, "the sidecar ended the stream")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return failed(CauseDeadline, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return failed(CauseCanceled, err.Error())
	}
	st, _ := status.FromError(err)
	return failed(causeOfCode(st.Code()), fmt.Sprintf("%s: %s", st.Code(), st.Message()))
}

// failureBook counts failed checks by cause and logs them, at most once per interval per
// cause, so that a dead sidecar under a high order rate does not flood the log.
type failureBook struct {
	counts   [numCauses]atomic.Uint64
	logger   *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	nextLog    [numCauses]time.Time
	suppressed [numCauses]uint64
}

func (b *failureBook) record(v Verdict) {
	b.counts[v.Cause].Add(1)
	if b.logger == nil {
		return
	}
	now := time.Now()
	b.mu.Lock()
	if now.Before(b.nextLog[v.Cause]) {
		b.suppressed[v.Cause]++
		b.mu.Unlock()
		return
	}
	b.nextLog[v.Cause] = now.Add(b.interval)
	more := b.suppressed[v.Cause]
	b.suppressed[v.Cause] = 0
	b.mu.Unlock()
	attrs := []any{"cause", v.Cause.String(), "message", v.Message}
	if v.Field != "" {
		attrs = append(attrs, "field", v.Field)
	}
	if more > 0 {
		attrs = append(attrs, "suppressed", more)
	}
	b.logger.Warn("ess check failed closed", attrs...)
}

func (b *failureBook) snapshot() map[Cause]uint64 {
	out := make(map[Cause]uint64)
	for c := CauseDeadline; c < numCauses; c++ {
		if n := b.counts[c].Load(); n > 0 {
			out[c] = n
		}
	}
	return out
}
