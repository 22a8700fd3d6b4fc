// Command ess-smoke drives one long-lived ess client for the cross-language smoke test
// (tests/clients/smoke.py):
//
//	ess-smoke --target T [--token T] [--deadline-ms N]
//
// It connects (up to 5 s) before it reads stdin; for each line
// "check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]" it prints, flushed,
// "<microseconds the library's Check took> <the ess-check line>". It exits 0 at EOF, 64
// on a usage error or a line it cannot read.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/cli"
)

func main() {
	fs := cli.NewFlagSet("ess-smoke", "ess-smoke --target T [--token T] [--deadline-ms N]",
		"One long-lived client; stdin lines 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID"+
			" [DEADLINE_MS]', one answer line each: '<microseconds> <the ess-check line>'.")
	target := fs.String("target", "", "HOST:PORT or unix:PATH")
	token := fs.String("token", "", "bearer token")
	deadline := cli.DeadlineMS{Positive: cli.Positive{Value: float64(ess.DefaultDeadline) / float64(time.Millisecond)}}
	fs.Var(&deadline, "deadline-ms", "default per-check deadline in ms")
	cli.Parse(fs, os.Args[1:], "target")
	cli.NotBlank(fs, "target")

	options := []ess.Option{ess.WithDeadline(deadline.Duration())}
	if *token != "" {
		options = append(options, ess.WithToken(*token))
	}
	client, err := ess.New(*target, options...)
	if err != nil {
		cli.Usage(fs, err)
	}
	defer client.Close()
	connecting, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = client.Connect(connecting) // as an executor does when it starts
	cancel()

	input := bufio.NewScanner(os.Stdin)
	for input.Scan() {
		fields := strings.Fields(input.Text())
		if len(fields) == 0 {
			continue
		}
		order, opts, err := parseLine(fields)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ess-smoke: %v: %q\n", err, input.Text())
			client.Close()
			os.Exit(cli.ExitUsage)
		}
		started := time.Now()
		verdict := client.Check(context.Background(), order, opts...)
		elapsed := time.Since(started).Microseconds()
		fmt.Printf("%d %s\n", elapsed, cli.Line(verdict)) // os.Stdout is unbuffered
	}
}

// parseLine reads "check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]". An
// unknown side is left to the sidecar to reject (a fail-closed denial).
func parseLine(fields []string) (ess.Order, []ess.CheckOption, error) {
	if fields[0] != "check" || len(fields) < 8 || len(fields) > 9 {
		return ess.Order{}, nil, fmt.Errorf("expected 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]'")
	}
	side, _ := ess.ParseSide(fields[4])
	quantity, err := strconv.ParseFloat(fields[5], 64)
	if err != nil {
		return ess.Order{}, nil, fmt.Errorf("bad QTY")
	}
	price, err := strconv.ParseFloat(fields[6], 64)
	if err != nil {
		return ess.Order{}, nil, fmt.Errorf("bad PRICE")
	}
	order := ess.Order{Account: fields[1], Strategy: fields[2], Symbol: fields[3], Side: side,
		Quantity: quantity, Price: price, ClientOrderID: fields[7]}
	var opts []ess.CheckOption
	if len(fields) == 9 {
		var deadline cli.DeadlineMS
		if err := deadline.Set(fields[8]); err != nil {
			return ess.Order{}, nil, fmt.Errorf("bad DEADLINE_MS: %v", err)
		}
		opts = append(opts, ess.Within(deadline.Duration()))
	}
	return order, opts, nil
}
