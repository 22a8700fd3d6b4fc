//! The dead-man's switch: a task that heartbeats until stopped, and deregisters on stop.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use crate::client::Client;
use crate::pb;

/// A callback for each failed heartbeat.
pub type OnHeartbeatError = Arc<dyn Fn(&Status) + Send + Sync>;

/// Whether the executor's trading loop is alive (see [`HeartbeatConfig::alive`]).
pub type Alive = Arc<dyn Fn() -> bool + Send + Sync>;

/// `scope` trips if the sidecar hears no heartbeat from `executor_id` for `ttl`.
#[derive(Clone)]
pub struct HeartbeatConfig {
    pub executor_id: String,
    pub scope: pb::Scope,
    /// 1 ms to 1 hour, sent in whole ms.
    pub ttl: Duration,
    /// How often to beat; `None`: ttl / 3 (so one lost beat does not trip the scope). Zero,
    /// or not shorter than the ttl, is an error: the scope would trip.
    pub interval: Option<Duration>,
    /// Called with each failed beat; `None`: logged (tracing, warn). A panic in it is caught
    /// and logged, and the beats go on.
    pub on_error: Option<OnHeartbeatError>,
    /// Whether the executor's trading loop is alive, asked before each beat (on tokio's
    /// blocking pool); `None`: the beats prove only that the process is alive. `false`, or a
    /// panic, withholds the beat ([`Heartbeater::skipped`] counts it; the first withheld and
    /// the first sent again are logged), so the scope trips at its ttl as if the executor
    /// had died; beats resume when it says `true` again (a trip stays latched: an operator
    /// resets it). One that blocks holds the beats, and the scope trips (and `stop` waits
    /// for it): keep it to reading an atomic.
    pub alive: Option<Alive>,
}

impl HeartbeatConfig {
    pub fn new(executor_id: impl Into<String>, scope: pb::Scope, ttl: Duration) -> HeartbeatConfig {
        HeartbeatConfig {
            executor_id: executor_id.into(),
            scope,
            ttl,
            interval: None,
            on_error: None,
            alive: None,
        }
    }
}

#[derive(Default)]
struct LastBeat {
    state: Option<pb::State>,
    error: Option<Status>,
}

/// The beats withheld for `alive`, and whether the last one was.
#[derive(Default)]
struct Withheld {
    count: AtomicU64,
    last: AtomicBool,
}

/// Heartbeats in the background until [`Heartbeater::stop`]. Dropped without `stop`, or when
/// its client is closed, it stops beating without deregistering: the scope trips when the
/// TTL lapses, as it would if the executor died.
pub struct Heartbeater {
    client: Client,
    config: HeartbeatConfig,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    last: Arc<Mutex<LastBeat>>,
    withheld: Arc<Withheld>,
}

impl Client {
    /// Sends a first heartbeat (its error is returned, and nothing is started), then one
    /// every interval until [`Heartbeater::stop`]. An interval that is zero or not shorter
    /// than the ttl is an error (`InvalidArgument`), and nothing is sent; so is an `alive`
    /// not `true` at the start (`FailedPrecondition`: nothing would register the executor),
    /// and a closed client (`FailedPrecondition`).
    pub async fn start_heartbeat(&self, config: HeartbeatConfig) -> Result<Heartbeater, Status> {
        if config.ttl < Duration::from_millis(1) || config.ttl > Duration::from_secs(3600) {
            return Err(Status::invalid_argument(
                "the heartbeat ttl must be 1 ms to 1 hour",
            ));
        }
        // What the sidecar is sent: whole ms.
        let ttl = Duration::from_millis(config.ttl.as_millis() as u64);
        let interval = config.interval.unwrap_or(ttl / 3);
        if interval.is_zero() {
            return Err(Status::invalid_argument(
                "a heartbeat interval must be > 0 (None: ttl / 3)",
            ));
        }
        if interval >= ttl {
            return Err(Status::invalid_argument(format!(
                "a heartbeat interval of {interval:?} is not shorter than its ttl of {ttl:?}: \
                 the scope would trip"
            )));
        }
        if self.shared().is_closed() {
            return Err(Status::failed_precondition(
                "ess: the client is closed: no heartbeat can be started",
            ));
        }
        if !alive(&config).await {
            return Err(Status::failed_precondition(format!(
                "heartbeat of {} not started: its alive is not true; nothing sent",
                config.executor_id
            )));
        }
        let last = Arc::new(Mutex::new(LastBeat::default()));
        beat(self, &config, &last).await?;
        let withheld = Arc::new(Withheld::default());
        let (stop, mut stopped) = watch::channel(false);
        let (client, beat_config, beat_last) = (self.clone(), config.clone(), last.clone());
        let beat_withheld = withheld.clone();
        let mut closed = self.shared().on_close();
        let task = tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let tick = || async {
                let alive = alive(&beat_config).await;
                if beat_withheld.withhold(&beat_config, alive) {
                    return;
                }
                if let Err(status) = beat(&client, &beat_config, &beat_last).await {
                    report(&beat_config, &status);
                }
            };
            loop {
                // Review 54e: the client's close ends the beats, a tick in progress too;
                // `stop` lets that tick end, so that no beat follows its deregistration.
                tokio::select! {
                    _ = async { let _ = stopped.wait_for(|s| *s).await; } => return,
                    _ = async { let _ = closed.wait_for(|c| *c).await; } => return,
                    _ = ticker.tick() => {}
                }
                tokio::select! {
                    _ = async { let _ = closed.wait_for(|c| *c).await; } => return,
                    _ = tick() => {}
                }
            }
        });
        Ok(Heartbeater {
            client: self.clone(),
            config,
            stop,
            task: Some(task),
            last,
            withheld,
        })
    }
}

/// Asks `config.alive` (true when `None`) on the blocking pool, so that one that blocks
/// holds the beats but not a runtime thread; a panic in it is not alive.
async fn alive(config: &HeartbeatConfig) -> bool {
    let Some(alive) = config.alive.clone() else {
        return true;
    };
    match tokio::task::spawn_blocking(move || alive()).await {
        Ok(alive) => alive,
        Err(error) => {
            tracing::warn!(executor_id = %config.executor_id, %error,
                "ess heartbeat alive panicked: not alive");
            false
        }
    }
}

impl Withheld {
    /// Counts a beat withheld (not alive) and logs the changes of alive; whether to withhold.
    fn withhold(&self, config: &HeartbeatConfig, alive: bool) -> bool {
        if !alive {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        let was_withheld = self.last.swap(!alive, Ordering::Relaxed);
        if was_withheld == alive {
            if alive {
                tracing::info!(executor_id = %config.executor_id,
                    "ess heartbeat resumed: the executor is alive again");
            } else {
                tracing::warn!(executor_id = %config.executor_id, ttl = ?config.ttl,
                    "ess heartbeat withheld: the executor is not alive; its scope trips at \
                     the ttl");
            }
        }
        !alive
    }
}

/// Hands a failed beat to `on_error`, catching a panic in it: one would end this task, and
/// with it the beats, and the sidecar would trip a live executor's scope at the TTL while
/// its `Heartbeater` looked alive.
fn report(config: &HeartbeatConfig, status: &Status) {
    let Some(on_error) = &config.on_error else {
        tracing::warn!(executor_id = %config.executor_id, error = %status,
            "ess heartbeat failed");
        return;
    };
    if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| on_error(status))) {
        let why = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(not a string)");
        tracing::warn!(executor_id = %config.executor_id, error = %status, panic = why,
            "ess heartbeat on_error panicked; beating on");
    }
}

async fn beat(
    client: &Client,
    config: &HeartbeatConfig,
    last: &Mutex<LastBeat>,
) -> Result<(), Status> {
    let result = client
        .heartbeat(&config.executor_id, config.scope.clone(), config.ttl, false)
        .await;
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(answer) => {
            last.state = pb::State::try_from(answer.state).ok();
            last.error = None;
            Ok(())
        }
        Err(status) => {
            last.error = Some(status.clone());
            Err(status)
        }
    }
}

impl Heartbeater {
    /// The scope's state in the last successful heartbeat's answer.
    pub fn state(&self) -> Option<pb::State> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).state
    }

    /// The beats withheld because `alive` was not `true`.
    pub fn skipped(&self) -> u64 {
        self.withheld.count.load(Ordering::Relaxed)
    }

    /// The last heartbeat's error, `None` if it succeeded.
    pub fn error(&self) -> Option<Status> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    /// Ends the heartbeats and deregisters the executor, so that the scope does not trip
    /// when the TTL lapses; returns the deregistration's answer. After its client's
    /// [`Client::close`] it only stops: it sends nothing, and returns `Ok(None)` (the scope
    /// trips at the ttl).
    pub async fn stop(mut self) -> Result<Option<pb::HeartbeatResponse>, Status> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if self.client.shared().is_closed() {
            return Ok(None);
        }
        let answer = self.client.heartbeat(
            &self.config.executor_id,
            self.config.scope.clone(),
            self.config.ttl,
            true,
        );
        answer.await.map(Some)
    }
}

impl Drop for Heartbeater {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
