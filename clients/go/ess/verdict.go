package ess

import (
	"fmt"
	"strings"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
)

// ReasonClientFailClosed is the reason a Verdict gives when the client could not get a
// trustworthy decision from the sidecar and denied the order itself.
const ReasonClientFailClosed = "CLIENT_FAIL_CLOSED"

// Cause says why a check failed closed. CauseNone marks a decision of the sidecar.
type Cause uint8

const (
	// CauseNone: the verdict is the sidecar's own decision (allowed or denied).
	CauseNone Cause = iota
	// CauseDeadline: no answer within the check's deadline.
	CauseDeadline
	// CauseUnavailable: the sidecar cannot be reached, or is shutting down.
	CauseUnavailable
	// CauseStreamBroken: the stream ended, or failed with CANCELLED, INTERNAL or UNKNOWN.
	CauseStreamBroken
	// CauseRequestError: the sidecar rejected the order as bad input (Verdict.Field).
	CauseRequestError
	// CauseMalformed: an answer this client cannot trust (unknown reason, allowed
	// contradicting the reason, neither decision nor error, a wrong request_id).
	CauseMalformed
	// CauseRefused: the sidecar refused the call (UNAUTHENTICATED, PERMISSION_DENIED,
	// UNIMPLEMENTED, ...).
	CauseRefused
	// CauseCanceled: the caller's context was cancelled before an answer came.
	CauseCanceled
	// CauseClientError: the client is closed, overloaded, or hit a bug of its own.
	CauseClientError

	numCauses
)

var causeNames = [numCauses]string{
	"", "deadline", "unavailable", "stream_broken", "request_error", "malformed", "refused",
	"canceled", "client_error",
}

// Causes lists every failure cause, in a fixed order (for metrics).
func Causes() []Cause {
	causes := make([]Cause, 0, numCauses-1)
	for c := CauseDeadline; c < numCauses; c++ {
		causes = append(causes, c)
	}
	return causes
}

// String is the cause's name, e.g. "deadline"; "" for CauseNone.
func (c Cause) String() string {
	if c < numCauses {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// Verdict is the answer to "may I send this order?". Allowed is the only field an executor
// must obey.
type Verdict struct {
	Allowed bool
	// The sidecar's reason; DECISION_REASON_UNSPECIFIED when the check failed closed.
	Reason essv1.DecisionReason
	// The sidecar's message, or why the check failed closed.
	Message string
	// CauseNone for a decision of the sidecar; otherwise why the client denied the order.
	Cause Cause
	// With CauseRequestError: the offending field, e.g. "order.quantity".
	Field         string
	StateVersion  uint64
	DecisionID    string
	BlockingScope string // "GLOBAL" or "KIND:id" of the scope that denied it, if any
	// The order's client_order_id (made up by the client when none was given): send the
	// order with it, and report its fills and updates with it.
	ClientOrderID string
}

// FailedClosed reports whether the client denied the order itself for lack of a
// trustworthy decision.
func (v Verdict) FailedClosed() bool { return v.Cause != CauseNone }

// ReasonName is the reason without its prefix, e.g. "SCOPE_TRIPPED", or
// "CLIENT_FAIL_CLOSED" when the check failed closed.
func (v Verdict) ReasonName() string {
	if v.Cause != CauseNone {
		return ReasonClientFailClosed
	}
	return strings.TrimPrefix(v.Reason.String(), "DECISION_REASON_")
}

func failed(cause Cause, message string) Verdict {
	return Verdict{Cause: cause, Message: message}
}

// ScopeString is "GLOBAL" or "KIND:id", the way operators write scopes.
func ScopeString(scope *essv1.Scope) string {
	kind := strings.TrimPrefix(scope.GetKind().String(), "SCOPE_KIND_")
	if scope.GetKind() == essv1.ScopeKind_SCOPE_KIND_GLOBAL {
		return kind
	}
	return kind + ":" + scope.GetId()
}

// verdictFromDecision trusts a decision only if it is complete and self-consistent.
func verdictFromDecision(decision *essv1.CheckOrderResponse) Verdict {
	if decision == nil {
		return failed(CauseMalformed, "answer carries no decision")
	}
	reason := decision.GetReason()
	if _, known := essv1.DecisionReason_name[int32(reason)]; !known ||
		reason == essv1.DecisionReason_DECISION_REASON_UNSPECIFIED {
		return failed(CauseMalformed, fmt.Sprintf("unknown decision reason %d", int32(reason)))
	}
	if decision.GetAllowed() != (reason == essv1.DecisionReason_DECISION_REASON_ALLOWED) {
		return failed(CauseMalformed, fmt.Sprintf("allowed=%t contradicts reason %s",
			decision.GetAllowed(), reason))
	}
	verdict := Verdict{
		Allowed:      decision.GetAllowed(),
		Reason:       reason,
		Message:      decision.GetMessage(),
		StateVersion: decision.GetStateVersion(),
		DecisionID:   decision.GetDecisionId(),
	}
	if decision.GetBlockingScope() != nil {
		verdict.BlockingScope = ScopeString(decision.GetBlockingScope())
	}
	return verdict
}

// verdictFromAnswer reads one CheckOrderStream answer (its request_id already matched).
func verdictFromAnswer(answer *essv1.CheckOrderStreamResponse) Verdict {
	switch result := answer.GetResult().(type) {
	case *essv1.CheckOrderStreamResponse_Decision:
		return verdictFromDecision(result.Decision)
	case *essv1.CheckOrderStreamResponse_Error:
		message := result.Error.GetMessage()
		if message == "" {
			message = "the sidecar rejected the order"
		}
		verdict := failed(CauseRequestError, message)
		verdict.Field = result.Error.GetField()
		return verdict
	default:
		return failed(CauseMalformed, "answer carries neither a decision nor an error")
	}
}
