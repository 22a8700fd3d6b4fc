package ess

import "time"

// SetClock has checks judge their answers against their deadlines by clock; the function
// it returns puts the real clock back.
func SetClock(clock func() time.Time) (restore func()) {
	now = clock
	return func() { now = time.Now }
}
