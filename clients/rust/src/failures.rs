//! Counts failed checks by cause and logs them, at most once per interval per cause, so
//! that a dead sidecar under a high order rate does not flood the log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::FAR_FUTURE;
use crate::verdict::{Cause, Verdict};

const CAUSES: usize = Cause::ALL.len();

pub(crate) struct FailureBook {
    counts: [AtomicU64; CAUSES],
    interval: Duration,
    log: Mutex<[LogState; CAUSES]>,
}

#[derive(Clone, Copy, Default)]
struct LogState {
    next: Option<Instant>,
    suppressed: u64,
}

impl FailureBook {
    pub(crate) fn new(interval: Duration) -> FailureBook {
        FailureBook {
            counts: Default::default(),
            interval,
            log: Mutex::new([LogState::default(); CAUSES]),
        }
    }

    pub(crate) fn record(&self, verdict: &Verdict) {
        let Some(cause) = verdict.cause else { return };
        self.counts[cause.index()].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let suppressed = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let state = &mut log[cause.index()];
            if state.next.is_some_and(|next| now < next) {
                state.suppressed += 1;
                return;
            }
            // An interval too long to add (Duration::MAX) is "never again", not a panic.
            state.next = Some(now.checked_add(self.interval).unwrap_or(now + FAR_FUTURE));
            std::mem::take(&mut state.suppressed)
        };
        tracing::warn!(
            cause = cause.as_str(),
            why = %verdict.message,
            field = %verdict.field,
            client_order_id = %verdict.client_order_id,
            suppressed,
            "ess check failed closed"
        );
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<Cause, u64> {
        Cause::ALL
            .iter()
            .filter_map(|&cause| {
                let n = self.counts[cause.index()].load(Ordering::Relaxed);
                (n > 0).then_some((cause, n))
            })
            .collect()
    }
}
