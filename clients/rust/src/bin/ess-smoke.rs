//! Drives one long-lived ess_client for the cross-language smoke test
//! (tests/clients/smoke.py):
//!
//! ```text
//! ess-smoke --target T [--token T] [--deadline-ms N]
//! ```
//!
//! It connects (up to 5 s) before it reads stdin; for each line
//! `check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]` it prints, flushed,
//! `<microseconds the library's check took> <the ess-check line>`. It exits 0 at EOF, 64 on
//! a usage error or a line it cannot read.

use std::io::Write;
use std::time::{Duration, Instant};

use ess_client::cli::{self, Flags};
use ess_client::{Client, Order, Side, DEFAULT_DEADLINE};
use tokio::io::AsyncBufReadExt;

const FLAGS: Flags = Flags {
    name: "ess-smoke",
    synopsis: "ess-smoke --target T [--token T] [--deadline-ms N]",
    about: "One long-lived client; stdin lines 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID \
            [DEADLINE_MS]', one answer line each: '<microseconds> <the ess-check line>'.",
    flags: &[
        ("target", "HOST:PORT or unix:PATH"),
        ("token", "bearer token"),
        (
            "deadline-ms",
            "default per-check deadline in ms (default 5)",
        ),
    ],
};

fn main() {
    let args = FLAGS.parse(FLAGS.args(), &["target"]);
    FLAGS.target(&args, "target");
    let deadline = FLAGS.deadline_ms(&args, "deadline-ms", DEFAULT_DEADLINE);
    cli::init_logging();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(async {
        let mut builder = Client::builder(&args["target"]).deadline(deadline);
        if let Some(token) = args.get("token").filter(|t| !t.is_empty()) {
            builder = builder.token(token);
        }
        let client = match builder.build() {
            Ok(client) => client,
            // A target or token the library refuses.
            Err(error) => FLAGS.refused(&error),
        };
        let _ = client.connect(Duration::from_secs(5)).await; // as an executor does when it starts
        let mut input = tokio::io::BufReader::new(tokio::io::stdin());
        let mut stdout = std::io::stdout();
        let mut raw = Vec::new();
        for number in 1.. {
            raw.clear();
            if !matches!(input.read_until(b'\n', &mut raw).await, Ok(n) if n > 0) {
                break;
            }
            let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // Review 52d: `lines()` stopped silently (exit 0) at a line that is not UTF-8.
            let Ok(text) = std::str::from_utf8(line) else {
                let lossy = String::from_utf8_lossy(line);
                eprintln!("ess-smoke: line {number} is not valid UTF-8: {lossy:?}");
                client.close().await;
                return cli::EXIT_USAGE;
            };
            let fields = cli::words(&text);
            if fields.is_empty() {
                continue;
            }
            let (order, within) = match parse_line(&fields) {
                Ok(parsed) => parsed,
                Err(why) => {
                    eprintln!("ess-smoke: {why}: {text:?}");
                    client.close().await;
                    return cli::EXIT_USAGE;
                }
            };
            let started = Instant::now();
            let verdict = match within {
                Some(within) => client.check_with_deadline(order, within).await,
                None => client.check(order).await,
            };
            let elapsed = started.elapsed().as_micros();
            let _ = writeln!(stdout, "{elapsed} {}", cli::line(&verdict));
            let _ = stdout.flush();
        }
        client.close().await;
        0
    });
    std::process::exit(code);
}

/// `check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]`. An unknown side is
/// left to the sidecar to reject (a fail-closed denial).
fn parse_line(fields: &[&str]) -> Result<(Order, Option<Duration>), String> {
    if fields[0] != "check" || !(8..=9).contains(&fields.len()) {
        return Err(
            "expected 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]'".into(),
        );
    }
    let side = ess_client::parse_side(fields[4]).unwrap_or(Side::Unspecified);
    let quantity = cli::positive(fields[5]).map_err(|why| format!("bad QTY: {why}"))?;
    let price = cli::positive(fields[6]).map_err(|why| format!("bad PRICE: {why}"))?;
    let order = Order::new(fields[1], fields[2], fields[3], side, quantity, price)
        .with_client_order_id(fields[7]);
    let within = match fields.get(8) {
        Some(ms) => Some(cli::deadline_ms(ms).map_err(|why| format!("bad DEADLINE_MS: {why}"))?),
        None => None,
    };
    Ok((order, within))
}
