package ess_test

import (
	"context"
	"testing"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
)

// BenchmarkCheck is the client's own cost: Check against an in-process fake sidecar that
// answers at once (go test -bench Check -run '^$' ./ess/).
func BenchmarkCheck(b *testing.B) {
	h := newHarness(b, allow)
	within := ess.Within(time.Second)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if v := h.client.Check(context.Background(), order, within); !v.Allowed {
			b.Fatal(v)
		}
	}
}

func BenchmarkCheckParallel(b *testing.B) {
	h := newHarness(b, allow)
	within := ess.Within(time.Second)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v := h.client.Check(context.Background(), order, within); !v.Allowed {
				b.Error(v)
				return
			}
		}
	})
}
