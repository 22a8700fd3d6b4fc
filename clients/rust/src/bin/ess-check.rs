//! Asks an ESS sidecar whether one order may be sent, through the ess_client library:
//!
//! ```text
//! ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X
//!           --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]
//! ```
//!
//! It connects (connecting is not part of the deadline; it waits up to 1 s), checks once
//! and prints one line: `ALLOWED <decision_id>` (exit 0) or `DENIED <REASON> <message>`
//! (exit 2; `DENIED CLIENT_FAIL_CLOSED <cause>: <why>` when it could not get a decision).
//! A usage error (a missing, unknown or bad argument) exits 64; so does `-h` / `--help`
//! beside other arguments (alone, it prints the usage and exits 0).

use std::io::Write;
use std::time::Duration;

use ess_client::cli::{self, Flags};
use ess_client::{Client, Order, DEFAULT_DEADLINE};

const FLAGS: Flags = Flags {
    name: "ess-check",
    synopsis:
        "ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X \
               --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]",
    about:
        "Ask an ESS sidecar whether an order may be sent; exit 0 allowed, 2 denied, 64 usage error.",
    flags: &[
        ("target", "HOST:PORT or unix:PATH"),
        ("token", "bearer token"),
        ("account", "account"),
        ("strategy", "strategy"),
        ("symbol", "symbol"),
        ("side", "buy or sell"),
        ("qty", "quantity (> 0)"),
        ("price", "price (> 0)"),
        ("coid", "client_order_id"),
        ("deadline-ms", "per-check deadline in ms (default 5)"),
    ],
};

fn main() {
    let args = FLAGS.parse(
        FLAGS.args(),
        &[
            "target", "account", "strategy", "symbol", "side", "qty", "price", "coid",
        ],
    );
    let side = match args["side"].as_str() {
        "buy" | "sell" => ess_client::parse_side(&args["side"]).expect("buy or sell"),
        other => FLAGS.usage(&format!(
            "argument --side: invalid choice: {other:?} (choose from 'buy', 'sell')"
        )),
    };
    let quantity = FLAGS.positive(&args, "qty", 0.0);
    let price = FLAGS.positive(&args, "price", 0.0);
    FLAGS.non_blank(&args, &["coid"]);
    FLAGS.target(&args, "target");
    let deadline = FLAGS.deadline_ms(&args, "deadline-ms", DEFAULT_DEADLINE);
    cli::init_logging();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let verdict = runtime.block_on(async {
        let mut builder = Client::builder(&args["target"])
            .deadline(deadline)
            .log_interval(Duration::from_secs(3600));
        if let Some(token) = args.get("token").filter(|t| !t.is_empty()) {
            builder = builder.token(token);
        }
        let client = match builder.build() {
            Ok(client) => client,
            // A target or token the library refuses.
            Err(error) => FLAGS.refused(&error),
        };
        let _ = client.connect(Duration::from_secs(1)).await; // not reached: the check fails closed
        let order = Order::new(
            &args["account"],
            &args["strategy"],
            &args["symbol"],
            side,
            quantity,
            price,
        )
        .with_client_order_id(&args["coid"]);
        let verdict = client.check(order).await;
        client.close().await;
        verdict
    });
    // Not println!, which panics (exit 101) when stdout cannot take it: the exit status is
    // the answer (review 58e).
    let _ = writeln!(std::io::stdout(), "{}", cli::line(&verdict));
    std::process::exit(if verdict.allowed {
        cli::EXIT_ALLOWED
    } else {
        cli::EXIT_DENIED
    });
}
