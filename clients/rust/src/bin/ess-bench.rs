//! Measures checks through the ess_client library's stream check against a live sidecar:
//!
//! ```text
//! ess-bench --target unix:/tmp/ess.sock --checks 10000 --inflight 8
//! ```
//!
//! `--inflight` tasks share one client (one stream) and check until `--checks` checks are
//! done, after `--warmup` unmeasured ones. It prints one line
//! `p50_us=.. p99_us=.. checks_per_s=..` (nearest-rank percentiles of each check call; the
//! rate over the wall time of the measured checks), and on stderr how many were not
//! allowed, by reason: the sidecar must allow them all (a config without exposure, rate,
//! duplicate and working-order limits), or the figures measure something else. Exit 1 if
//! any check was not allowed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ess_client::cli::{self, Flags};
use ess_client::{Client, Order, Side};

const FLAGS: Flags = Flags {
    name: "ess-bench",
    synopsis:
        "ess-bench --target unix:PATH|HOST:PORT [--checks 10000] [--inflight 1] [--warmup 1000]",
    about: "Measure checks through the library's stream check: p50_us=.. p99_us=.. checks_per_s=..",
    flags: &[
        ("target", "HOST:PORT or unix:PATH"),
        ("token", "bearer token"),
        ("checks", "measured checks (default 10000)"),
        ("warmup", "unmeasured checks first (default 1000)"),
        (
            "inflight",
            "checks in flight: tasks sharing the client (default 1)",
        ),
        (
            "threads",
            "runtime worker threads (default 2; 0: a current-thread runtime)",
        ),
        ("account", "account of the orders (default bench-acc)"),
        ("strategy", "strategy of the orders (default bench)"),
        ("symbol", "symbol of the orders (default BENCH)"),
        (
            "deadline-ms",
            "per-check deadline in ms (default 1000: measure, do not deny)",
        ),
    ],
};

fn main() {
    let args = FLAGS.parse(FLAGS.args(), &["target"]);
    let checks = FLAGS.count(&args, "checks", 10_000, 1);
    let warmup = FLAGS.count(&args, "warmup", 1_000, 0);
    let inflight = FLAGS.count(&args, "inflight", 1, 1);
    let threads = FLAGS.count(&args, "threads", 2, 0);
    FLAGS.target(&args, "target");
    let deadline = FLAGS.deadline_ms(&args, "deadline-ms", Duration::from_secs(1));
    let get = |name: &str, default: &str| {
        args.get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let order = Order::new(
        get("account", "bench-acc"),
        get("strategy", "bench"),
        get("symbol", "BENCH"),
        Side::Buy,
        1.0,
        100.0,
    );
    cli::init_logging();

    let runtime = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
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
        if let Err(error) = client.connect(Duration::from_secs(5)).await {
            eprintln!("ess-bench: {error}");
            return 1;
        }
        let denied = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
        run(&client, &order, warmup, inflight, None, &denied).await;
        let latencies = Arc::new(Mutex::new(vec![Duration::ZERO; checks]));
        let started = Instant::now();
        run(
            &client,
            &order,
            checks,
            inflight,
            Some(latencies.clone()),
            &denied,
        )
        .await;
        let wall = started.elapsed();
        client.close().await;
        let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
        latencies.sort_unstable();
        println!(
            "p50_us={:.1} p99_us={:.1} checks_per_s={:.0}",
            micros(rank(&latencies, 0.50)),
            micros(rank(&latencies, 0.99)),
            checks as f64 / wall.as_secs_f64()
        );
        let denied = denied.lock().unwrap();
        for (line, n) in denied.iter() {
            eprintln!("ess-bench: {n} not allowed: {line}");
        }
        if denied.is_empty() {
            0
        } else {
            1
        }
    });
    std::process::exit(code);
}

/// `total` checks by `inflight` tasks sharing the client.
async fn run(
    client: &Client,
    order: &Order,
    total: usize,
    inflight: usize,
    latencies: Option<Arc<Mutex<Vec<Duration>>>>,
    denied: &Arc<Mutex<BTreeMap<String, usize>>>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..inflight)
        .map(|_| {
            let (client, order, next, latencies, denied) = (
                client.clone(),
                order.clone(),
                next.clone(),
                latencies.clone(),
                denied.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let t0 = Instant::now();
                    let verdict = client.check(order.clone()).await;
                    let elapsed = t0.elapsed();
                    mine.push((i, elapsed));
                    if !verdict.allowed {
                        let line = cli::line(&verdict);
                        *denied
                            .lock()
                            .unwrap()
                            .entry(line["DENIED ".len()..].to_string())
                            .or_default() += 1;
                    }
                }
                if let Some(latencies) = latencies {
                    let mut latencies = latencies.lock().unwrap();
                    for (i, elapsed) in mine {
                        latencies[i] = elapsed;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// The nearest-rank percentile of `sorted`.
fn rank(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p * sorted.len() as f64).ceil() as usize).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
