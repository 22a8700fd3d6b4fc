package ess_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
)

// The README's example (compiled, not run: it needs a sidecar).
func Example() {
	guard, err := ess.New("unix:/run/ess/ess.sock", ess.WithToken("executor-token"))
	if err != nil {
		log.Fatal(err)
	}
	defer guard.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = guard.Connect(ctx) // warm up; until connected, checks fail closed
	verdict := guard.Check(ctx, ess.Order{Account: "acc-1", Strategy: "momo", Symbol: "AAPL",
		Side: ess.Buy, Quantity: 10, Price: 187.5})
	if !verdict.Allowed { // obey this field, and only this one
		fmt.Println("denied:", verdict.ReasonName(), verdict.Message)
		return
	}
	// Send the order with verdict.ClientOrderID, then report what the venue says of it:
	_, err = guard.ReportFill(ctx, ess.Fill{Account: "acc-1", Strategy: "momo", Symbol: "AAPL",
		Side: ess.Buy, Quantity: 10, Price: 187.4, ClientOrderID: verdict.ClientOrderID,
		FillID: "venue-exec-1"})
	if err != nil {
		log.Print(err)
	}
}
