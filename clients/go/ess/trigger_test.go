package ess

import (
	"strings"
	"testing"
	"unicode/utf8"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
	"google.golang.org/protobuf/proto"
)

// A stop is never refused for what comes with it (the e2e test against a real sidecar is
// tests/clients/test_go_client.py).
func TestTriggerToSendMakesAnyReasonSendable(t *testing.T) {
	request := &essv1.TriggerRequest{Scope: &essv1.Scope{Kind: essv1.ScopeKind_SCOPE_KIND_GLOBAL},
		Reason: "stop \xff\xfe now", Mode: essv1.TriggerMode(99), Directives: []essv1.Directive{42}}
	sent := triggerToSend(request)
	if sent.Reason != "stop \uFFFD now" || sent.Mode != 99 || len(sent.Directives) != 1 {
		t.Fatalf("sent %v", sent)
	}
	if request.Reason != "stop \xff\xfe now" {
		t.Fatalf("the caller's request was changed: %q", request.Reason)
	}
	if _, err := proto.Marshal(sent); err != nil {
		t.Fatalf("not sendable: %v", err)
	}
	huge := triggerToSend(&essv1.TriggerRequest{Reason: strings.Repeat("é", 3<<20)})
	if n := utf8.RuneCountInString(huge.Reason); n > MaxReasonRunes || !strings.HasPrefix(huge.Reason, "éé") {
		t.Fatalf("%d runes: %q", n, huge.Reason[:40])
	}
	fine := &essv1.TriggerRequest{Reason: "fine"}
	if triggerToSend(fine) != fine {
		t.Fatal("a valid request should be sent as it is")
	}
}

func TestNewTriggerNotesWhatItCannotCarry(t *testing.T) {
	request := NewTrigger(nil, "why\xff", "PANIC", "risk", "CANCEL_ALL", "cancel-open-orders", "42")
	want := "why\uFFFD (mode PANIC unknown: halted; reason_code risk unknown: user-initiated;" +
		" directive CANCEL_ALL unknown: left out)"
	if request.Reason != want || request.Mode != essv1.TriggerMode_TRIGGER_MODE_HALT ||
		request.ReasonCode != essv1.TriggerReason_TRIGGER_REASON_USER_INITIATED {
		t.Fatalf("got %v", request)
	}
	if got := request.Directives; len(got) != 2 || got[0] != essv1.Directive_DIRECTIVE_CANCEL_OPEN_ORDERS || got[1] != 42 {
		t.Fatalf("directives %v", got)
	}
	if r := NewTrigger(nil, "", "reduce-only", "", "99999999999"); r.Mode != essv1.TriggerMode_TRIGGER_MODE_REDUCE_ONLY ||
		len(r.Directives) != 0 || !strings.Contains(r.Reason, "directive 99999999999 unknown: left out") {
		t.Fatalf("got %v", r)
	}
	huge := NewTrigger(nil, strings.Repeat("x", 5<<20), "PANIC", "")
	if n := utf8.RuneCountInString(huge.Reason); n > MaxReasonRunes || !strings.HasSuffix(huge.Reason, "(mode PANIC unknown: halted)") {
		t.Fatalf("%d runes: %q", n, huge.Reason[len(huge.Reason)-80:])
	}
}
