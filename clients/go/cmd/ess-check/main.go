// Command ess-check asks an ESS sidecar whether one order may be sent, through the ess
// client library, the example every client ships:
//
//	ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X
//	          --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]
//
// It connects (connecting is not part of the deadline; it waits up to 1 s), checks once
// and prints one line: "ALLOWED <decision_id>" (exit 0) or "DENIED <REASON> <message>"
// (exit 2; "DENIED CLIENT_FAIL_CLOSED <cause>: <why>" when it could not get a decision).
// A usage error (a missing, unknown or bad argument) exits 64; so does -h / --help beside
// other arguments (alone, it prints the usage and exits 0).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/cli"
)

func main() {
	fs := cli.NewFlagSet("ess-check", "ess-check --target HOST:PORT|unix:PATH [--token T] --account A"+
		" --strategy S --symbol X --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]",
		"Ask an ESS sidecar whether an order may be sent; exit 0 allowed, 2 denied, 64 usage error.")
	var target cli.Target
	fs.Var(&target, "target", "HOST:PORT or unix:PATH")
	token := fs.String("token", "", "bearer token")
	account := fs.String("account", "", "account")
	strategy := fs.String("strategy", "", "strategy")
	symbol := fs.String("symbol", "", "symbol")
	side := fs.String("side", "", "buy or sell")
	coid := fs.String("coid", "", "client_order_id")
	var qty, price cli.Positive
	deadline := cli.DeadlineMS{Positive: cli.Positive{Value: float64(ess.DefaultDeadline) / float64(time.Millisecond)}}
	fs.Var(&qty, "qty", "quantity (> 0)")
	fs.Var(&price, "price", "price (> 0)")
	fs.Var(&deadline, "deadline-ms", "per-check deadline in ms")
	cli.Parse(fs, os.Args[1:], "target", "account", "strategy", "symbol", "side", "qty", "price", "coid")
	cli.NotBlank(fs, "coid")
	if *side != "buy" && *side != "sell" {
		cli.Usage(fs, fmt.Errorf("argument --side: invalid choice: %q (choose from 'buy', 'sell')", *side))
	}
	orderSide, _ := ess.ParseSide(*side)

	options := []ess.Option{ess.WithDeadline(deadline.Duration()), ess.WithLogInterval(time.Hour)}
	if *token != "" {
		options = append(options, ess.WithToken(*token))
	}
	client, err := ess.New(target.Dial(), options...)
	if err != nil { // a target or token the library refuses
		cli.Refused(fs, err)
	}
	connecting, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = client.Connect(connecting) // not reached: the check fails closed
	cancel()
	verdict := client.Check(context.Background(), ess.Order{
		Account: *account, Strategy: *strategy, Symbol: *symbol, Side: orderSide,
		Quantity: qty.Value, Price: price.Value, ClientOrderID: *coid,
	})
	client.Close()
	fmt.Println(cli.Line(verdict))
	if verdict.Allowed {
		os.Exit(cli.ExitAllowed)
	}
	os.Exit(cli.ExitDenied)
}
