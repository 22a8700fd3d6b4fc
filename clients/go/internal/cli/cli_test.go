package cli

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
)

// With ESS_CLI_ARGS set, the test binary is a child that runs Parse on those arguments (one
// a line); with ESS_CLI_TOKEN, one that makes a client with that token, Refused if New
// refuses it: both exit, so the tests watch them from the parent.
func TestMain(m *testing.M) {
	if token, ok := os.LookupEnv("ESS_CLI_TOKEN"); ok {
		fs := NewFlagSet("ess-check", "ess-check --target T --token T", "Ask a sidecar.")
		if _, err := ess.New("localhost:1", ess.WithToken(token)); err != nil {
			Refused(fs, err)
		}
		os.Exit(99) // taken
	}
	if args, ok := os.LookupEnv("ESS_CLI_ARGS"); ok {
		fs := NewFlagSet("ess-check", "ess-check --target T --coid ID", "Ask a sidecar.")
		fs.Var(&Target{}, "target", "HOST:PORT or unix:PATH")
		fs.String("coid", "", "client_order_id")
		fs.Var(&Positive{}, "qty", "quantity (> 0)")
		Parse(fs, strings.Split(args, "\n"), "target", "coid")
		os.Exit(99) // parsed without exiting: none of these tests' arguments
	}
	os.Exit(m.Run())
}

func exitCode(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return child(t, "ESS_CLI_ARGS="+strings.Join(args, "\n"))
}

// child runs the test binary as a child with env set, for its exit code and stderr.
func child(t *testing.T, env string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// Review 54a: a token ess.New refuses is a usage error naming --token, as in the Rust and
// C++ programs, not --target. Review 54e: a CRLF file's "tok\r" is "tok"; a CR inside is
// refused.
func TestARefusedTokenIsAUsageErrorNamingToken(t *testing.T) {
	code, stderr := child(t, "ESS_CLI_TOKEN=t\rok")
	if code != ExitUsage || !strings.Contains(stderr, "argument --token: ") ||
		!strings.Contains(stderr, "0x0d") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, token := range []string{"tok", "tok\r", " tok\r\n"} {
		if code, stderr := child(t, "ESS_CLI_TOKEN="+token); code != 99 {
			t.Fatalf("a good token %q: exit %d: %s", token, code, stderr)
		}
	}
}

// Help alone exits 0; beside other arguments it is a usage error (review: it exited 0,
// ess-check's "allowed", so `ess-check ... --help && send` sent the order unchecked).
func TestHelpExitsZeroOnlyAlone(t *testing.T) {
	for _, help := range []string{"-h", "--help", "-help"} {
		if code, stderr := exitCode(t, help); code != ExitAllowed {
			t.Errorf("%s alone: exit %d, %s", help, code, stderr)
		}
		for _, args := range [][]string{
			{"--target", "unix:/tmp/ess.sock", "--coid", "o-1", help},
			{help, "--target", "unix:/tmp/ess.sock"},
			{"--coid=o-1", help},
		} {
			code, stderr := exitCode(t, args...)
			if code != ExitUsage || !strings.Contains(stderr, "--help") {
				t.Errorf("%q: exit %d, %s", args, code, stderr)
			}
		}
	}
	if code, stderr := exitCode(t, "-h", "--help"); code != ExitAllowed {
		t.Errorf("help twice: exit %d, %s", code, stderr)
	}
	if code, stderr := exitCode(t, "--target", "h:1"); code != ExitUsage {
		t.Errorf("a missing --coid: exit %d, %s", code, stderr)
	}
}

// Review 52d: a value that is not UTF-8 is a usage error naming its flag.
func TestAValueThatIsNotUTF8IsAUsageError(t *testing.T) {
	code, stderr := exitCode(t, "--target", "h:1", "--coid", "o-\xff")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != ExitUsage || !strings.Contains(lines[len(lines)-1], "--coid") {
		t.Errorf("exit %d, %s", code, stderr)
	}
}

// One grammar in every client's programs (review 52a): ParseFloat took "1_0" as 10, and a
// mistyped target was a check that failed closed, like an outage.
func TestNumbersAndTargetsHaveOneGrammar(t *testing.T) {
	order := func(target, qty string) []string {
		return []string{"--target", target, "--coid", "o-1", "--qty", qty}
	}
	for _, qty := range []string{"1", "1.5", ".5", "1e3", "+2", "100", "2."} {
		if code, stderr := exitCode(t, order("127.0.0.1:50051", qty)...); code != 99 {
			t.Errorf("--qty %q: exit %d, %s", qty, code, stderr)
		}
	}
	for _, qty := range []string{"1_0", "0x10", "1d", "0x1p4", " 1", "1 ", "", "1e", ".", "-1", "inf"} {
		code, stderr := exitCode(t, order("127.0.0.1:50051", qty)...)
		if code != ExitUsage || !strings.Contains(stderr, "--qty") {
			t.Errorf("--qty %q: exit %d, %s", qty, code, stderr)
		}
	}
	for _, target := range []string{"127.0.0.1:50051", "localhost:1", "[::1]:50051",
		"unix:/tmp/x.sock", "unix:relative.sock"} {
		if code, stderr := exitCode(t, order(target, "1")...); code != 99 {
			t.Errorf("--target %q: exit %d, %s", target, code, stderr)
		}
	}
	for _, target := range []string{"127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "unix:",
		"unix:/x ", "127.0.0.1", " 127.0.0.1:50051", "http://h:1", "dns:///h:1", "h:1/x",
		"::1:50051", ""} {
		code, stderr := exitCode(t, order(target, "1")...)
		if code != ExitUsage || !strings.Contains(stderr, "--target") {
			t.Errorf("--target %q: exit %d, %s", target, code, stderr)
		}
	}
}

// Review 52d: HOST a dotted quad, an RFC 1123 name or an IPv6 literal netip reads; PATH
// printable ASCII without URI syntax, and // only as ///abs.
func TestHostsAreNamesOrAddressesAndPathsPrintableASCII(t *testing.T) {
	for _, target := range []string{"localhost:1", "a.b-c.d:65535", "[::1]:50051",
		"[::ffff:1.2.3.4]:1", "127.0.0.1:50051", "0.0.0.0:1", "localhost.:1",
		strings.Repeat("a", 63) + ":1", "unix:ess.sock", "unix:///abs", "unix:/tmp/a b",
		"my-host.example.com:1", "0x.example:1", "1.example:1"} {
		if !IsTarget(target) {
			t.Errorf("%q refused", target)
		}
	}
	for _, target := range []string{"_:1", "-:1", "..:1", "a..b:1", "a-.b:1",
		strings.Repeat("a", 64) + ":1", "[1.2.3.4]:1", "[::1::]:1", "127.1:1",
		"2130706433:1", "256.1.1.1:1", "01.2.3.4:1", "1.2.3.4.:1", "unix:q?x.sock",
		"unix:a%2fb", "unix:a#b", "unix://host/x", "unix:////x", "unix://", "unix:/tmp/é",
		// review 52e: a numeric last label (URL standard) unless a dotted quad
		"0x7f000001:1", "0x7f.1:1", "0X7F.0.0.1:1", "1.2.3.0x4:1", "example.1:1", "a.0x:1",
		"a.1b:1", "localhost.1x:1", "1b:1"} {
		if IsTarget(target) {
			t.Errorf("%q taken", target)
		}
	}
}

// The grammar narrowed (review 52c): names or [IPv6] without zones, at most 253 characters;
// unix paths sun_path holds, without control or line-separator characters.
func TestTargetsAreNamesOrAddressesAndPathsASocketHolds(t *testing.T) {
	for _, target := range []string{"a.b-c.d:65535", "[::ffff:1.2.3.4]:1",
		"unix:/tmp/" + strings.Repeat("x", 102)} {
		if !IsTarget(target) {
			t.Errorf("%q refused", target)
		}
	}
	for _, target := range []string{strings.Repeat("h", 100_000) + ":1",
		strings.Repeat("h", 254) + ":1", "héllo:1", "[fe80::1%lo]:1", "[]:1", "h:000001",
		"h:70000/", "\u2028localhost:1", "unix:/tmp/a\nb", "unix:/tmp/a\u2028b",
		"unix:/tmp/a\u0085b", "unix:/tmp/" + strings.Repeat("x", 103),
		"unix:/tmp/" + strings.Repeat("é", 52)} {
		if IsTarget(target) {
			t.Errorf("%.40q taken", target)
		}
	}
}

// Review 52d: ParseFloat read the first as far less than 1e13, and ess-check allowed it.
func TestANumberLongerThan64CharactersIsRefused(t *testing.T) {
	for _, text := range []string{"1" + strings.Repeat("0", 803) + "e-790",
		"1" + strings.Repeat("0", 1000) + "e-1000", "1." + strings.Repeat("0", 63)} {
		var qty Positive
		if err := qty.Set(text); err == nil || !strings.Contains(err.Error(), "longer than 64") {
			t.Errorf("%.40q: %v", text, err)
		}
	}
	var qty Positive
	if err := qty.Set("1." + strings.Repeat("0", 62)); err != nil || qty.Value != 1 {
		t.Errorf("64 characters: %v", err)
	}
}

func TestADeadlineIsAtLeastAMicrosecondAndANumberMayBeSubnormal(t *testing.T) {
	for _, text := range []string{"5e-324", "1e-7", "0.0009", strings.Repeat("9", 100_000)} {
		var deadline DeadlineMS
		if err := deadline.Set(text); err == nil {
			t.Errorf("deadline %.40q taken", text)
		}
	}
	var deadline DeadlineMS
	if err := deadline.Set("0.001"); err != nil || deadline.Duration() != time.Microsecond {
		t.Errorf("deadline 0.001: %v, %v", err, deadline.Duration())
	}
	var qty Positive
	if err := qty.Set("5e-324"); err != nil {
		t.Errorf("qty 5e-324: %v", err)
	}
}

func TestSmokeLinesSplitOnASCIIWhitespaceOnly(t *testing.T) {
	got := Fields(" a\u2028b\u0085c\t\vd\f\re\n")
	if strings.Join(got, "|") != "a\u2028b\u0085c|d|e" {
		t.Errorf("%q", got)
	}
}

// Review 58e: an allowed answer's id with a newline printed a second line, "DENIED ...",
// under the ALLOWED one; Python's and TypeScript's printed one.
func TestAnAllowedLineIsOneLineWhateverItsIDHolds(t *testing.T) {
	allowed := ess.Verdict{Allowed: true, DecisionID: "x\nDENIED SCOPE_TRIPPED  y "}
	if got := Line(allowed); got != "ALLOWED x DENIED SCOPE_TRIPPED y" {
		t.Fatalf("Line = %q", got)
	}
	if got := Line(ess.Verdict{Allowed: true}); got != "ALLOWED" {
		t.Fatalf("Line = %q", got)
	}
}
