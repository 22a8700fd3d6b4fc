//! What ess-check, ess-smoke and ess-bench share (not part of the library's API): argument
//! parsing with the usage exit code, the one line printed for a verdict, and a logger.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::Verdict;

/// Exit codes of ess-check.
pub const EXIT_ALLOWED: i32 = 0;
pub const EXIT_DENIED: i32 = 2;
/// EX_USAGE.
pub const EXIT_USAGE: i32 = 64;
/// The longest deadline in ms: a longer one is a typo, and a far longer one (1e300) is no
/// `Duration` at all.
pub const MAX_DEADLINE_MS: f64 = 3_600_000.0;
/// The shortest: a shorter one is a typo too, and 5e-324 is no deadline at all.
pub const MIN_DEADLINE_MS: f64 = 0.001;
/// The longest HOST (DNS's longest name) and unix PATH in bytes (sun_path's 108 with the
/// NUL: a longer one never connects).
const MAX_HOST_CHARS: usize = 253;
const MAX_UNIX_PATH_BYTES: usize = 107;
/// The longest number's text: it bounds every parser (review 52d: Go's misread one of 800
/// digits, 1e13 as a far smaller number, and allowed it).
pub const MAX_NUMBER_CHARS: usize = 64;

/// The one line ess-check prints: `ALLOWED <decision_id>` or `DENIED <REASON> <message>`
/// (REASON without `DECISION_REASON_`; `CLIENT_FAIL_CLOSED`, and the message led by the
/// cause, when the check failed closed).
pub fn line(verdict: &Verdict) -> String {
    if verdict.allowed {
        // One line too, whatever the id holds (review 58e).
        let id = verdict.decision_id.split_whitespace().collect::<Vec<_>>().join(" ");
        return format!("ALLOWED {id}").trim_end().to_string();
    }
    let message = match verdict.cause {
        Some(cause) => format!("{cause}: {}", verdict.message),
        None => verdict.message.clone(),
    };
    // One line, whatever the message holds.
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("DENIED {} {message}", verdict.reason_name())
        .trim_end()
        .to_string()
}

/// A program's flags: `--name value` or `--name=value`.
pub struct Flags {
    pub name: &'static str,
    pub synopsis: &'static str,
    pub about: &'static str,
    /// (flag, help, default shown)
    pub flags: &'static [(&'static str, &'static str)],
}

impl Flags {
    /// Parses `args` (without the program name): `-h` / `--help` alone prints the usage and
    /// exits 0; beside other arguments, or an unknown, repeated-without-value or missing flag
    /// (`required`), or a stray argument, prints the synopsis and the error on stderr and
    /// exits 64.
    pub fn parse(
        &self,
        args: impl IntoIterator<Item = String>,
        required: &[&str],
    ) -> HashMap<String, String> {
        match self.try_parse(args, required) {
            Ok(Some(values)) => values,
            Ok(None) => {
                print!("{}", self.help());
                std::process::exit(0);
            }
            Err(why) => self.usage(&why),
        }
    }

    /// The program's arguments (without its name): one that is not UTF-8 is a usage error
    /// naming its flag (review 52d: `std::env::args` panicked, exit 101).
    pub fn args(&self) -> Vec<String> {
        match utf8_args(std::env::args_os().skip(1)) {
            Ok(args) => args,
            Err(why) => self.usage(&why),
        }
    }

    /// [`Flags::parse`] without its exits: `Ok(None)` for help alone, `Err` a usage error.
    pub fn try_parse(
        &self,
        args: impl IntoIterator<Item = String>,
        required: &[&str],
    ) -> Result<Option<HashMap<String, String>>, String> {
        let all: Vec<String> = args.into_iter().collect();
        let is_help = |arg: &str| arg == "-h" || arg == "--help";
        let mut values = HashMap::new();
        let mut args = all.iter().cloned();
        while let Some(arg) = args.next() {
            if is_help(&arg) {
                // Help exits 0, ess-check's "allowed": beside other arguments it is a usage
                // error, so that `ess-check ... --help && send` sends nothing.
                if all.iter().any(|other| !is_help(other)) {
                    return Err("--help given with other arguments: nothing was checked".into());
                }
                return Ok(None);
            }
            let Some(flag) = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-').filter(|f| f.len() > 1))
            else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (flag.to_string(), None),
            };
            if !self.flags.iter().any(|(known, _)| *known == name) {
                return Err(format!("unrecognized argument --{name}"));
            }
            let value = match value.or_else(|| args.next()) {
                Some(value) => value,
                None => return Err(format!("argument --{name}: expected one argument")),
            };
            values.insert(name, value);
        }
        let missing: Vec<String> = required
            .iter()
            .filter(|name| !values.contains_key(**name))
            .map(|name| format!("--{name}"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the following arguments are required: {}",
                missing.join(", ")
            ));
        }
        Ok(Some(values))
    }

    fn help(&self) -> String {
        let mut text = format!("usage: {}\n{}\n", self.synopsis, self.about);
        for (flag, help) in self.flags {
            let _ = writeln!(text, "  --{flag:<12} {help}");
        }
        text
    }

    /// Prints the synopsis and `error` on stderr and exits 64.
    pub fn usage(&self, error: &str) -> ! {
        eprintln!("usage: {}\n{}: {error}", self.synopsis, self.name);
        std::process::exit(EXIT_USAGE);
    }

    /// The usage error for a client the library refused to build: `--token` for
    /// [`Error::InvalidToken`], else `--target`, the one other flag it reads unchecked.
    pub fn refused(&self, error: &crate::Error) -> ! {
        let flag = match error {
            crate::Error::InvalidToken(_) => "token",
            _ => "target",
        };
        self.usage(&format!("argument --{flag}: {error}"))
    }

    /// A flag's value that must be a number > 0 (`default` when absent).
    pub fn positive(&self, values: &HashMap<String, String>, name: &str, default: f64) -> f64 {
        match values.get(name) {
            None => default,
            Some(text) => match positive(text) {
                Ok(value) => value,
                Err(why) => self.usage(&format!("argument --{name}: {why}")),
            },
        }
    }

    /// A flag's value that must be a deadline in ms (see [`deadline_ms`]; `default` when
    /// absent).
    pub fn deadline_ms(
        &self,
        values: &HashMap<String, String>,
        name: &str,
        default: std::time::Duration,
    ) -> std::time::Duration {
        match values.get(name).map(|text| deadline_ms(text)) {
            None => default,
            Some(Ok(deadline)) => deadline,
            Some(Err(why)) => self.usage(&format!("argument --{name}: {why}")),
        }
    }

    /// The flag `name`, if given, must be a target (see [`target`]).
    pub fn target(&self, values: &HashMap<String, String>, name: &str) {
        if let Some(Err(why)) = values.get(name).map(|text| target(text)) {
            self.usage(&format!("argument --{name}: {why}"));
        }
    }

    /// Each of the flags `names` that is given must not be empty or blank: an empty `--coid`
    /// would have the library make one up that ess-check never prints.
    pub fn non_blank(&self, values: &HashMap<String, String>, names: &[&str]) {
        for name in names {
            if values
                .get(*name)
                .is_some_and(|value| value.trim().is_empty())
            {
                self.usage(&format!("argument --{name}: must not be empty"));
            }
        }
    }

    /// A flag's value that must be a whole number >= `min` (`default` when absent).
    pub fn count(
        &self,
        values: &HashMap<String, String>,
        name: &str,
        default: usize,
        min: usize,
    ) -> usize {
        match values.get(name).map(|text| text.trim().parse::<usize>()) {
            None => default,
            Some(Ok(value)) if value >= min => value,
            Some(_) => self.usage(&format!(
                "argument --{name}: must be a whole number >= {min}"
            )),
        }
    }
}

/// `args` as text, or the error naming the flag whose value is not UTF-8.
pub fn utf8_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Vec<String>, String> {
    let mut texts: Vec<String> = Vec::new();
    for arg in args {
        match arg.into_string() {
            Ok(text) => texts.push(text),
            Err(raw) => {
                let lossy = raw.to_string_lossy();
                let flag = match lossy.strip_prefix("--").and_then(|f| f.split_once('=')) {
                    Some((name, _)) => format!("--{name}"),
                    None => texts
                        .last()
                        .filter(|before| before.starts_with('-'))
                        .map_or("an argument".to_string(), |before| {
                            format!("--{}", before.trim_start_matches('-'))
                        }),
                };
                return Err(format!("argument {flag}: not valid UTF-8: {lossy:?}"));
            }
        }
    }
    Ok(texts)
}

/// A plain decimal number (see [`plain_decimal`]) > 0 and finite.
pub fn positive(text: &str) -> Result<f64, String> {
    if text.len() > MAX_NUMBER_CHARS {
        return Err(format!("longer than {MAX_NUMBER_CHARS} characters"));
    }
    if !plain_decimal(text) {
        return Err(format!("not a plain decimal number: {text:?}"));
    }
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() => Ok(value),
        _ => Err(format!("must be a finite number > 0, got {text}")),
    }
}

/// Whether `text` is `[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?`, the one grammar of
/// every client's programs (tests/clients/smoke.py): each language's own parser takes forms
/// of its own (`1_0`, `0x10`, ` 1`), numbers the operator did not write.
pub fn plain_decimal(text: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent_digits = exponent.map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    digits(whole)
        && digits(fraction)
        && !(whole.is_empty() && fraction.is_empty())
        && exponent_digits.is_none_or(|e| !e.is_empty() && digits(e))
}

/// `HOST:PORT` (HOST see [`is_host`]; PORT 1-65535) or `unix:PATH` (see [`is_unix_path`]),
/// the one grammar of every client's programs: a typo is a usage error, not a check that
/// fails closed like an outage.
pub fn target(text: &str) -> Result<(), String> {
    let port = |p: &str| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
    };
    let good = match text.strip_prefix("unix:") {
        Some(path) => is_unix_path(path),
        None => text
            .rsplit_once(':')
            .is_some_and(|(h, p)| is_host(h) && port(p)),
    };
    if good {
        Ok(())
    } else {
        Err(format!("expected HOST:PORT or unix:PATH, got {text:?}"))
    }
}

/// A dotted quad, an RFC 1123 name of at most 253 characters (one trailing dot may end it;
/// its last label starting with a letter: gRPC's resolvers read `127.1` and `2130706433`
/// their own ways), or `[IPv6]` as `Ipv6Addr` reads it (review 52d).
fn is_host(host: &str) -> bool {
    if let Some(inside) = host.strip_prefix('[') {
        return inside.strip_suffix(']').is_some_and(|v6| {
            v6.bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
                && v6.parse::<std::net::Ipv6Addr>().is_ok()
        });
    }
    let octet = |p: &str| {
        (1..=3).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'))
            && p.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| octet(p)) {
        return true;
    }
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // Review 52e: a name ending in a number is an address to the URL standard (`0x7f.1`
    // reached 127.0.0.1 here), so only a dotted quad may end in one; review 53b: a last
    // label that starts with a digit (`a.1b`) Java's URI refused, so a name's last label
    // starts with a letter (RFC 2396's toplabel), which covers both.
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    host.len() <= MAX_HOST_CHARS
        && labels.iter().all(|l| label(l))
        && labels
            .last()
            .is_some_and(|l| l.bytes().next().is_some_and(|c| c.is_ascii_alphabetic()))
}

/// 1-107 bytes (sun_path's) of printable ASCII, not led or ended by a space, none of `%`,
/// `?` and `#` (review 52d: gRPC's URI syntax reached another file elsewhere, `q?x.sock` as
/// `q`), and `//` only as `///abs` (the clients read `//host/x` and `////x` apart).
fn is_unix_path(path: &str) -> bool {
    let b = path.as_bytes();
    (1..=MAX_UNIX_PATH_BYTES).contains(&b.len())
        && b.iter()
            .all(|&c| (b' '..=b'~').contains(&c) && !b"%?#".contains(&c))
        && b[0] != b' '
        && b[b.len() - 1] != b' '
        && (!path.starts_with("//") || b.len() > 3 && path.starts_with("///") && b[3] != b'/')
}

/// An ess-smoke line's words: split on ASCII whitespace only, as every client's ess-smoke
/// does (`split_whitespace` splits on U+0085 and U+2028 too, inside one word elsewhere).
pub fn words(line: &str) -> Vec<&str> {
    line.split([' ', '\t', '\n', '\x0B', '\x0C', '\r'])
        .filter(|word| !word.is_empty())
        .collect()
}

/// A deadline in ms: a number from [`MIN_DEADLINE_MS`] to [`MAX_DEADLINE_MS`].
pub fn deadline_ms(text: &str) -> Result<std::time::Duration, String> {
    match positive(text)? {
        ms if ms < MIN_DEADLINE_MS => {
            Err(format!("must be at least {MIN_DEADLINE_MS}, got {text}"))
        }
        ms if ms > MAX_DEADLINE_MS => Err(format!("must be at most {MAX_DEADLINE_MS}, got {text}")),
        ms => Ok(millis(ms)),
    }
}

/// Milliseconds as a duration.
pub fn millis(ms: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(ms / 1000.0)
}

/// Logs warnings and errors (the library's rate-limited fail-closed lines) on stderr.
pub fn init_logging() {
    let _ = tracing::subscriber::set_global_default(StderrWarnings);
}

struct StderrWarnings;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl tracing::Subscriber for StderrWarnings {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let metadata = event.metadata();
        eprintln!("{} {}:{}", metadata.level(), metadata.target(), fields.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
