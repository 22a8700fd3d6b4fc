package ess

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
	"google.golang.org/protobuf/proto"
)

// MaxReasonRunes is the sidecar's bound on a reason (ess_sidecar/domain/scopes.py): it
// cuts a longer one itself, but one over 4 MiB never reaches it (ResourceExhausted).
const MaxReasonRunes = 1024

// notedDirectives: as many unknown directives as the sidecar notes in a reason.
const notedDirectives = 16

// NewTrigger is the TriggerRequest for a stop of scope given by names, as essctl trigger
// reads them; it never fails for what comes with the stop. A mode, reason code or
// directive is matched loosely (any case, with or without its prefix, "-" for "_"; an
// int32 number in decimal is passed through, the sidecar noting one it does not know): an
// unknown mode is HALT, an unknown reason code USER_INITIATED (the default when empty),
// an unknown directive left out, each noted in the reason. The reason is cut to
// MaxReasonRunes, notes included; Trigger makes it valid UTF-8.
func NewTrigger(scope *essv1.Scope, reason, mode, reasonCode string, directives ...string) *essv1.TriggerRequest {
	var notes []string
	request := &essv1.TriggerRequest{Scope: scope,
		Mode: essv1.TriggerMode_TRIGGER_MODE_HALT, ReasonCode: essv1.TriggerReason_TRIGGER_REASON_USER_INITIATED}
	if mode != "" {
		if number, ok := enumOf(essv1.TriggerMode_value, "TRIGGER_MODE_", mode); ok {
			request.Mode = essv1.TriggerMode(number)
		} else {
			notes = append(notes, fmt.Sprintf("mode %s unknown: halted", shown(mode)))
		}
	}
	if reasonCode != "" {
		if number, ok := enumOf(essv1.TriggerReason_value, "TRIGGER_REASON_", reasonCode); ok {
			request.ReasonCode = essv1.TriggerReason(number)
		} else {
			notes = append(notes, fmt.Sprintf("reason_code %s unknown: user-initiated", shown(reasonCode)))
		}
	}
	unknown := 0
	for _, directive := range directives {
		if number, ok := enumOf(essv1.Directive_value, "DIRECTIVE_", directive); ok {
			request.Directives = append(request.Directives, essv1.Directive(number))
			continue
		}
		if unknown++; unknown <= notedDirectives {
			notes = append(notes, fmt.Sprintf("directive %s unknown: left out", shown(directive)))
		}
	}
	if unknown > notedDirectives {
		notes = append(notes, fmt.Sprintf("%d more unknown directives left out", unknown-notedDirectives))
	}
	request.Reason = BoundedReason(reason, notes...)
	return request
}

// BoundedReason is reason as valid UTF-8 (U+FFFD for each invalid byte sequence), cut so
// that it and notes (in parentheses after it) fit MaxReasonRunes.
func BoundedReason(reason string, notes ...string) string {
	note := ""
	if len(notes) > 0 {
		note = " (" + strings.Join(notes, "; ") + ")"
		note = cutRunes(strings.ToValidUTF8(cutBytes(note, 4*MaxReasonRunes), "\uFFFD"), MaxReasonRunes/2)
	}
	room := MaxReasonRunes - utf8.RuneCountInString(note)
	// At most 4 bytes a rune: what lies past 4*room bytes is never shown nor scanned.
	kept := cutBytes(reason, 4*room)
	text := strings.ToValidUTF8(kept, "\uFFFD")
	if len(kept) < len(reason) || utf8.RuneCountInString(text) > room {
		cut := fmt.Sprintf(" [… cut; %d bytes given]", len(reason))
		text = cutRunes(text, room-utf8.RuneCountInString(cut)) + cut
	}
	return text + note
}

// reasonValid: a reason Trigger sends as it is.
func reasonValid(reason string) bool {
	return len(reason) <= 4*MaxReasonRunes && utf8.ValidString(reason) &&
		utf8.RuneCountInString(reason) <= MaxReasonRunes
}

// triggerToSend is request with a reason the sidecar can be sent (valid UTF-8, at most
// MaxReasonRunes): a copy if it must change, request untouched.
func triggerToSend(request *essv1.TriggerRequest) *essv1.TriggerRequest {
	if request == nil || reasonValid(request.GetReason()) {
		return request
	}
	sent := proto.Clone(request).(*essv1.TriggerRequest) // the string shared, not copied
	sent.Reason = BoundedReason(request.Reason)
	return sent
}

func cutBytes(text string, most int) string {
	if most < 0 {
		most = 0
	}
	if len(text) > most {
		return text[:most]
	}
	return text
}

func cutRunes(text string, most int) string {
	if most <= 0 {
		return ""
	}
	count := 0
	for i := range text {
		if count == most {
			return text[:i]
		}
		count++
	}
	return text
}

// enumOf reads an enum value loosely: a name in any case, with or without prefix, "-" or
// " " for "_"; or an int32 number in decimal.
func enumOf(values map[string]int32, prefix, given string) (int32, bool) {
	if number, err := strconv.ParseInt(strings.TrimSpace(given), 10, 64); err == nil {
		return int32(number), number >= math.MinInt32 && number <= math.MaxInt32
	}
	if len(given) > 100 {
		return 0, false
	}
	name := strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(strings.TrimSpace(given)))
	for _, candidate := range []string{name, prefix + name} {
		if number, ok := values[candidate]; ok {
			return number, true
		}
	}
	return 0, false
}

// shown is a given name in a note: valid UTF-8, at most 40 runes.
func shown(name string) string {
	text := strings.ToValidUTF8(cutBytes(name, 160), "\uFFFD")
	if utf8.RuneCountInString(text) > 40 {
		return cutRunes(text, 39) + "…"
	}
	return text
}
