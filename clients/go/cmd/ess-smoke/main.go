// Command ess-smoke drives one long-lived ess client for the cross-language smoke test
// (tests/clients/smoke.py):
//
//	ess-smoke --target T [--token T] [--deadline-ms N]
//
// It connects (up to 5 s) before it reads stdin; for each line
// "check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]" it prints, flushed,
// "<microseconds the library's Check took> <the ess-check line>"; for each line "trigger
// ..." the answer of a Trigger (see trigger). It exits 0 at EOF, 64
// on a usage error or a line it cannot read.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
	essv1 "github.com/ess-sidecar/ess-sidecar/clients/go/essv1"
	"github.com/ess-sidecar/ess-sidecar/clients/go/internal/cli"
)

func main() {
	fs := cli.NewFlagSet("ess-smoke", "ess-smoke --target T [--token T] [--deadline-ms N]",
		"One long-lived client; stdin lines 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID"+
			" [DEADLINE_MS]', one answer line each: '<microseconds> <the ess-check line>'.")
	var target cli.Target
	fs.Var(&target, "target", "HOST:PORT or unix:PATH")
	token := fs.String("token", "", "bearer token")
	deadline := cli.DeadlineMS{Positive: cli.Positive{Value: float64(ess.DefaultDeadline) / float64(time.Millisecond)}}
	fs.Var(&deadline, "deadline-ms", "default per-check deadline in ms")
	cli.Parse(fs, os.Args[1:], "target")

	options := []ess.Option{ess.WithDeadline(deadline.Duration())}
	if *token != "" {
		options = append(options, ess.WithToken(*token))
	}
	client, err := ess.New(target.Dial(), options...)
	if err != nil { // a target or token the library refuses
		cli.Refused(fs, err)
	}
	defer client.Close()
	connecting, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = client.Connect(connecting) // as an executor does when it starts
	cancel()

	input := bufio.NewScanner(os.Stdin)
	input.Buffer(make([]byte, 64<<10), 64<<20) // a trigger line may carry megabytes
	for input.Scan() {
		fields := cli.Fields(input.Text())
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "trigger" {
			fmt.Println(trigger(client, fields[1:]))
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

// trigger runs "trigger SCOPE MODE CODE DIRECTIVES REASON_HEX" (DIRECTIVES comma-separated;
// "-" for the default, none or an empty reason; REASON_HEX the reason's bytes, as they
// are: not necessarily UTF-8) through Client.Trigger, the request built by hand if every
// value is a number (or left out), else by ess.NewTrigger: "STATE VERSION",
// or "ERROR CODE" when it did not return.
func trigger(client *ess.Client, words []string) string {
	words = append(words, "-", "-", "-", "-", "-")[:5]
	for i, word := range words {
		if word == "-" {
			words[i] = ""
		}
	}
	reason, err := hex.DecodeString(words[4])
	if err != nil {
		return "ERROR bad REASON_HEX"
	}
	scope, err := ess.ParseScope(words[0])
	if err != nil {
		scope = &essv1.Scope{Id: words[0]} // the sidecar's to refuse
	}
	var directives []string
	if words[3] != "" {
		directives = strings.Split(words[3], ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	request := ess.NewTrigger(scope, string(reason), words[1], words[2], directives...)
	if typed := typedTrigger(scope, string(reason), words[1:3], directives); typed != nil {
		request = typed // as most callers send it: the reason exactly as it was given
	}
	answer, err := client.Trigger(ctx, request)
	if err != nil {
		return "ERROR " + status.Code(err).String()
	}
	return fmt.Sprintf("%s %d", strings.TrimPrefix(answer.State.String(), "STATE_"), answer.StateVersion)
}

// typedTrigger is the request built by hand, when the mode, code and directives are all
// numbers (or left out); nil otherwise.
func typedTrigger(scope *essv1.Scope, reason string, modeCode, directives []string) *essv1.TriggerRequest {
	var numbers []int32
	for _, word := range append(append([]string{}, modeCode...), directives...) {
		number := int64(0)
		if word != "" {
			var err error
			if number, err = strconv.ParseInt(word, 10, 32); err != nil {
				return nil
			}
		}
		numbers = append(numbers, int32(number))
	}
	request := &essv1.TriggerRequest{Scope: scope, Reason: reason,
		Mode: essv1.TriggerMode(numbers[0]), ReasonCode: essv1.TriggerReason(numbers[1])}
	for _, number := range numbers[2:] {
		request.Directives = append(request.Directives, essv1.Directive(number))
	}
	return request
}

// parseLine reads "check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]". An
// unknown side is left to the sidecar to reject (a fail-closed denial).
func parseLine(fields []string) (ess.Order, []ess.CheckOption, error) {
	if fields[0] != "check" || len(fields) < 8 || len(fields) > 9 {
		return ess.Order{}, nil, fmt.Errorf("expected 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]'")
	}
	side, _ := ess.ParseSide(fields[4])
	var quantity, price cli.Positive
	if err := quantity.Set(fields[5]); err != nil {
		return ess.Order{}, nil, fmt.Errorf("bad QTY: %v", err)
	}
	if err := price.Set(fields[6]); err != nil {
		return ess.Order{}, nil, fmt.Errorf("bad PRICE: %v", err)
	}
	order := ess.Order{Account: fields[1], Strategy: fields[2], Symbol: fields[3], Side: side,
		Quantity: quantity.Value, Price: price.Value, ClientOrderID: fields[7]}
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
