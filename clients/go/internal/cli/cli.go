// Package cli is what ess-check, ess-smoke and ess-bench share: flag parsing with the
// usage exit code, and the one line printed for a verdict.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ess-sidecar/ess-sidecar/clients/go/ess"
)

// Exit codes of ess-check.
const (
	ExitAllowed = 0
	ExitDenied  = 2
	ExitUsage   = 64 // EX_USAGE
)

// MaxDeadlineMS bounds a deadline in ms: a longer one is a typo, and a far longer one
// (1e300) would overflow time.Duration into a nonsense deadline.
const MaxDeadlineMS = 3_600_000

// MinDeadlineMS bounds it below: a shorter one is a typo too, and 5e-324 rounds to a zero
// Duration, which the library reads as "the default".
const MinDeadlineMS = 0.001

// The longest HOST (DNS's longest name) and unix PATH in bytes (sun_path's 108 with the
// NUL: a longer one never connects).
const (
	maxHostChars     = 253
	maxUnixPathBytes = 107
)

// MaxNumberChars bounds a number's text, and so every parser: ParseFloat misread one of
// 800 digits (review 52d: 1e13 as a far smaller number, allowed).
const MaxNumberChars = 64

// Line is the one line ess-check prints: "ALLOWED <decision_id>" or
// "DENIED <REASON> <message>" (REASON without DECISION_REASON_; CLIENT_FAIL_CLOSED, and the
// message led by the cause, when the check failed closed).
func Line(v ess.Verdict) string {
	if v.Allowed { // one line too, whatever the id holds (review 58e)
		return strings.TrimRight("ALLOWED "+strings.Join(strings.Fields(v.DecisionID), " "), " ")
	}
	message := v.Message
	if v.FailedClosed() {
		message = v.Cause.String() + ": " + message
	}
	// One line, whatever the message holds.
	message = strings.Join(strings.Fields(message), " ")
	return strings.TrimRight("DENIED "+v.ReasonName()+" "+message, " ")
}

// The one grammar of every client's programs (tests/clients/smoke.py). ParseFloat alone
// takes "1_0" as 10 and "0x10" as 16: numbers the operator did not write.
var (
	plainDecimal = regexp.MustCompile(`^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	port         = regexp.MustCompile(`^[0-9]{1,5}$`)
	// HOST (review 52d): a dotted quad, an RFC 1123 name (a numeric last label only as a
	// dotted quad: gRPC's resolvers read 127.1 and 2130706433 their own ways) or [IPv6].
	ipv4  = regexp.MustCompile(`^` + octet + `(\.` + octet + `){3}$`)
	label = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	// review 52e: a name ending in a number is an address to the URL standard (0x7f.1
	// reached 127.0.0.1 in two clients), so only a dotted quad may end in one; review 53b:
	// a last label that starts with a digit (a.1b) Java's URI refused, so a name's last
	// label starts with a letter (RFC 2396's toplabel), which covers both.
	topLabel = regexp.MustCompile(`^[A-Za-z]`)
	ipv6  = regexp.MustCompile(`^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$`)
)

const octet = `(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])`

// Fields splits an ess-smoke line on ASCII whitespace only, as every client's ess-smoke
// does (strings.Fields splits on U+0085 and U+2028 too, inside one word elsewhere).
func Fields(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool {
		return strings.ContainsRune(" \t\n\v\f\r", r)
	})
}

// IsTarget reports whether text is in the grammar: HOST:PORT (isHost, PORT 1-65535) or
// unix:PATH (isUnixPath).
func IsTarget(text string) bool {
	if path, ok := strings.CutPrefix(text, "unix:"); ok {
		return isUnixPath(path)
	}
	colon := strings.LastIndexByte(text, ':')
	if colon < 0 || !isHost(text[:colon]) || !port.MatchString(text[colon+1:]) {
		return false
	}
	number, _ := strconv.Atoi(text[colon+1:])
	return number >= 1 && number <= 65535
}

// isHost: a dotted quad, an RFC 1123 name of at most 253 characters (one trailing dot may
// end it; its last label starting with a letter), or [IPv6]
// by netip's reading.
func isHost(host string) bool {
	if inside, ok := strings.CutPrefix(host, "["); ok {
		inside, ok = strings.CutSuffix(inside, "]")
		address, err := netip.ParseAddr(inside)
		return ok && ipv6.MatchString(inside) && err == nil && address.Is6()
	}
	if ipv4.MatchString(host) {
		return true
	}
	if len(host) > maxHostChars {
		return false
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	for _, part := range labels {
		if !label.MatchString(part) {
			return false
		}
	}
	return topLabel.MatchString(labels[len(labels)-1])
}

// isUnixPath: 1-107 bytes (sun_path's) of printable ASCII, not led or ended by a space,
// none of %, ? and # (review 52d: gRPC's URI syntax reached another file, q?x.sock as q),
// and // only as ///abs (the clients read //host/x and ////x apart).
func isUnixPath(path string) bool {
	if path == "" || len(path) > maxUnixPathBytes || path[0] == ' ' ||
		path[len(path)-1] == ' ' {
		return false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < ' ' || c > '~' || c == '%' || c == '?' || c == '#' {
			return false
		}
	}
	if strings.HasPrefix(path, "//") {
		return len(path) > 3 && strings.HasPrefix(path, "///") && path[3] != '/'
	}
	return true
}

// Target is a --target flag: HOST:PORT or unix:PATH, else a usage error, so that a typo
// does not look like an outage (a check that fails closed).
type Target struct{ Value string }

func (t *Target) String() string {
	if t == nil {
		return ""
	}
	return t.Value
}

// Dial is the target as gRPC is given it: HOST:PORT as dns:///HOST:PORT, where gRPC would
// read a host that is one of its schemes as the scheme (review 53b: "unix-abstract:1"
// reached the abstract Unix socket "1", "UNIX:1" the socket file ./1).
func (t *Target) Dial() string {
	if strings.HasPrefix(t.Value, "unix:") {
		return t.Value
	}
	return "dns:///" + t.Value
}

func (t *Target) Set(text string) error {
	if !IsTarget(text) {
		return fmt.Errorf("expected HOST:PORT or unix:PATH, got %q", text)
	}
	t.Value = text
	return nil
}

// Positive is a float flag that must be plain decimal, finite and > 0.
type Positive struct {
	Value float64
	set   bool
}

func (p *Positive) String() string {
	if p == nil || !p.set && p.Value == 0 {
		return ""
	}
	return strconv.FormatFloat(p.Value, 'g', -1, 64)
}

func (p *Positive) Set(text string) error {
	if len(text) > MaxNumberChars {
		return fmt.Errorf("longer than %d characters", MaxNumberChars)
	}
	if !plainDecimal.MatchString(text) {
		return fmt.Errorf("not a plain decimal number: %q", text)
	}
	value, err := strconv.ParseFloat(text, 64)
	if err != nil { // out of range
		return fmt.Errorf("must be a finite number > 0, got %s", text)
	}
	if !(value > 0) || math.IsInf(value, 1) {
		return fmt.Errorf("must be a finite number > 0, got %s", text)
	}
	p.Value, p.set = value, true
	return nil
}

// DeadlineMS is a deadline flag in ms: a Positive of MinDeadlineMS to MaxDeadlineMS.
type DeadlineMS struct{ Positive }

func (d *DeadlineMS) Set(text string) error {
	var p Positive
	if err := p.Set(text); err != nil {
		return err
	}
	if p.Value < MinDeadlineMS {
		return fmt.Errorf("must be at least %g, got %s", MinDeadlineMS, text)
	}
	if p.Value > MaxDeadlineMS {
		return fmt.Errorf("must be at most %d, got %s", MaxDeadlineMS, text)
	}
	d.Positive = p
	return nil
}

// Duration is the deadline as a time.Duration.
func (d *DeadlineMS) Duration() time.Duration { return Millis(&d.Positive) }

// Millis is a Positive read as milliseconds.
func Millis(p *Positive) time.Duration {
	return time.Duration(p.Value * float64(time.Millisecond))
}

// NewFlagSet makes a flag set whose -h / --help prints synopsis, about and the flags.
func NewFlagSet(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	synopses[fs] = synopsis
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n%s\n", synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

var synopses = map[*flag.FlagSet]string{}

// Parse parses args with fs (from NewFlagSet): -h / --help alone prints the usage and
// exits 0; beside any other argument, or a bad, unknown or missing flag (required lists the
// flags that must be given) or a stray argument, prints the synopsis and the error on
// stderr and exits 64.
func Parse(fs *flag.FlagSet, args []string, required ...string) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		// Help beside other arguments exits 64, not 0 (ess-check's "allowed"), so that
		// `ess-check ... --help && send` sends nothing; alone, it is a plain question.
		for _, arg := range args {
			if !helpFlags[arg] {
				Usage(fs, errors.New("--help given with other arguments: nothing was checked"))
			}
		}
		fs.SetOutput(os.Stdout)
		fs.Usage()
		os.Exit(0)
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err == nil {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		var missing []string
		for _, name := range required {
			if !given[name] {
				missing = append(missing, "--"+name)
			}
		}
		if len(missing) > 0 {
			err = fmt.Errorf("the following arguments are required: %s", strings.Join(missing, ", "))
		}
	}
	if err == nil {
		// Review 52d: a value that is not UTF-8 reached the library, which failed closed.
		fs.Visit(func(f *flag.Flag) {
			if err == nil && !utf8.ValidString(f.Value.String()) {
				err = fmt.Errorf("argument --%s: not valid UTF-8: %q", f.Name, f.Value.String())
			}
		})
	}
	if err != nil {
		Usage(fs, errors.New(dashes.Replace(err.Error())))
	}
}

// helpFlags are the arguments the flag package takes for help.
var helpFlags = map[string]bool{"-h": true, "--h": true, "-help": true, "--help": true}

// dashes names flags as the synopsis does, "--name", in the flag package's errors ("-name").
var dashes = strings.NewReplacer("for flag -", "for flag --", "argument: -", "argument: --",
	"not defined: -", "not defined: --")

// NotBlank makes an empty or blank value of any of the flags names a usage error: an empty
// --coid would have the library make one up that ess-check never prints.
func NotBlank(fs *flag.FlagSet, names ...string) {
	for _, name := range names {
		if strings.TrimSpace(fs.Lookup(name).Value.String()) == "" {
			Usage(fs, fmt.Errorf("argument --%s: must not be empty", name))
		}
	}
}

// Refused is the usage error for options ess.New refused: --token for ess.ErrInvalidToken
// (a "\r" from a CRLF file, say), else --target, the one other flag it reads unchecked.
func Refused(fs *flag.FlagSet, err error) {
	if errors.Is(err, ess.ErrInvalidToken) {
		Usage(fs, fmt.Errorf("argument --token: %w", err))
	}
	Usage(fs, fmt.Errorf("argument --target: %w", err))
}

// Usage prints the synopsis and err on stderr and exits 64.
func Usage(fs *flag.FlagSet, err error) {
	fmt.Fprintf(os.Stderr, "usage: %s\n%s: %v\n", synopses[fs], fs.Name(), err)
	os.Exit(ExitUsage)
}
