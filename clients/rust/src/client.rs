//! The client: one channel, one long-lived CheckOrderStream kept open in the background.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::connector::{Connector, Target};
use crate::failures::FailureBook;
use crate::pb::guard_service_client::GuardServiceClient;
use crate::pb::{self, Side};
use crate::stream::{CheckStream, RequestStream};
use crate::verdict::{failure_of, verdict_from_decision, Cause, Verdict};
use crate::Error;

/// The per-check deadline unless configured: a missed deadline is a denial.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(5);
/// A deadline too far to represent as an instant (`Duration::MAX`) is this far away.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 86_400);
/// Bounds the RPCs other than checks.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(1);
/// A stream with a check unanswered for this long is taken for hung and replaced.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(1);
/// At most one log line per failure cause per interval.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// The stream's reopen backoff: a same-host sidecar restarted by its supervisor is found
/// again within about a second.
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(50);
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(1);
/// How long one connection attempt may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The generated stub on the client's channel, with the bearer token interceptor.
pub type Stub = GuardServiceClient<InterceptedService<Channel, Bearer>>;

/// What [`Client::check`] asks about.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Order {
    pub account: String,
    pub strategy: String,
    pub symbol: String,
    /// `Side::Buy` or `Side::Sell`.
    pub side: Side,
    /// Positive and finite.
    pub quantity: f64,
    /// Positive and finite; for a market order, the price expected.
    pub price: f64,
    /// Informational: a REDUCE_ONLY scope admits the order only if it does not grow the
    /// absolute position.
    pub reduce_only: bool,
    /// Unique per account; made up by the client when empty ([`Verdict::client_order_id`]).
    pub client_order_id: String,
    /// A cancel/replace of that working order (its quantity is the new order's leaves).
    pub replaces_client_order_id: String,
}

impl Order {
    pub fn new(
        account: impl Into<String>,
        strategy: impl Into<String>,
        symbol: impl Into<String>,
        side: Side,
        quantity: f64,
        price: f64,
    ) -> Order {
        Order {
            account: account.into(),
            strategy: strategy.into(),
            symbol: symbol.into(),
            side,
            quantity,
            price,
            ..Order::default()
        }
    }

    /// The same order with this client_order_id.
    pub fn with_client_order_id(mut self, client_order_id: impl Into<String>) -> Order {
        self.client_order_id = client_order_id.into();
        self
    }

    fn into_request(self, client_order_id: String) -> pb::CheckOrderRequest {
        pb::CheckOrderRequest {
            account: self.account,
            strategy: self.strategy,
            symbol: self.symbol,
            side: self.side as i32,
            quantity: self.quantity,
            price: self.price,
            reduce_only: self.reduce_only,
            client_order_id,
            replaces_client_order_id: self.replaces_client_order_id,
        }
    }
}

/// Sends `authorization: Bearer <token>` with every call (none without a token).
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

struct TlsFiles {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
}

/// Configures a [`Client`]: `Client::builder(target)...build()`.
pub struct ClientBuilder {
    target: String,
    deadline: Duration,
    rpc_timeout: Duration,
    stall_after: Duration,
    log_interval: Duration,
    connect_timeout: Duration,
    reconnect_base: Duration,
    reconnect_max: Duration,
    token: Option<String>,
    tls: Option<ClientTlsConfig>,
    tls_files: Option<TlsFiles>,
    endpoint: Option<Box<dyn FnOnce(Endpoint) -> Endpoint + Send>>,
}

impl ClientBuilder {
    /// The default per-check deadline (default 5 ms); [`Client::check_with_deadline`]
    /// overrides it per check.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Bounds the RPCs other than checks (default 1 s); zero fails [`ClientBuilder::build`].
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// A stream with a check unanswered for this long is replaced (default 1 s); zero fails
    /// [`ClientBuilder::build`] (every late answer would break the stream).
    pub fn stall_after(mut self, stall_after: Duration) -> Self {
        self.stall_after = stall_after;
        self
    }

    /// At most one log line per failure cause per interval (default 1 s); the next line
    /// says how many were suppressed.
    pub fn log_interval(mut self, interval: Duration) -> Self {
        self.log_interval = interval;
        self
    }

    /// How long one connection attempt may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The stream's reopen backoff, first and longest delay (default 50 ms, 1 s).
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.reconnect_base = base;
        self.reconnect_max = max;
        self
    }

    /// Sends `authorization: Bearer <token>` with every call (a sidecar with
    /// authentication on); the raw stub's calls included. Space, tab, CR and LF around it
    /// are dropped (a CRLF file's `tok\r` is `tok`, as for the sidecar and every client);
    /// a byte outside printable ASCII (0x20-0x7E) left inside fails
    /// [`ClientBuilder::build`] ([`Error::InvalidToken`]). Empty once stripped: no token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// TLS (rustls) with this configuration: CA certificates, a client identity for
    /// mutual TLS, the server name. Unix sockets too (the name defaults to `localhost`).
    pub fn tls(mut self, config: ClientTlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// TLS from PEM files: `ca` the CA bundle that signed the sidecar's certificate
    /// (`None`: the system roots), `cert` and `key` a client certificate for mutual TLS
    /// (both or neither), `server_name` the name to verify (`None`: the target's host). A
    /// file that cannot be read fails [`ClientBuilder::build`].
    pub fn tls_files(
        mut self,
        ca: Option<impl Into<PathBuf>>,
        cert: Option<impl Into<PathBuf>>,
        key: Option<impl Into<PathBuf>>,
        server_name: Option<impl Into<String>>,
    ) -> Self {
        self.tls_files = Some(TlsFiles {
            ca: ca.map(Into::into),
            cert: cert.map(Into::into),
            key: key.map(Into::into),
            server_name: server_name.map(Into::into),
        });
        self
    }

    /// Adjusts tonic's `Endpoint` (HTTP/2 keepalive, window sizes, ...).
    pub fn configure_endpoint(
        mut self,
        f: impl FnOnce(Endpoint) -> Endpoint + Send + 'static,
    ) -> Self {
        self.endpoint = Some(Box::new(f));
        self
    }

    /// Makes the client. It does not wait for the sidecar (see [`Client::connect`]): it
    /// starts connecting, and keeps a check stream open, in the background. Must be called
    /// within a tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        if self.deadline.is_zero() {
            return Err(Error::InvalidOption(
                "the check deadline must be > 0".into(),
            ));
        }
        // Else every RPC but the checks (trigger, heartbeats, fills) would fail unsent.
        if self.rpc_timeout.is_zero() {
            return Err(Error::InvalidOption(
                "the RPC timeout (rpc_timeout) must be > 0".into(),
            ));
        }
        // Else every late answer would break the stream and deny every check in flight.
        if self.stall_after.is_zero() {
            return Err(Error::InvalidOption("stall_after must be > 0".into()));
        }
        if self.reconnect_base.is_zero() || self.reconnect_max < self.reconnect_base {
            return Err(Error::InvalidOption(
                "the reconnect backoff must be 0 < base <= max".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidOption(
                "a Client must be built within a tokio runtime".into(),
            ));
        }
        let (target, https) = Target::parse(&self.target)?;
        let tls = match (self.tls, self.tls_files) {
            (Some(config), _) => Some(config),
            (None, Some(files)) => Some(tls_from_files(files)?),
            (None, None) if https => Some(ClientTlsConfig::new().with_native_roots()),
            (None, None) => None,
        };
        let mut endpoint = Endpoint::from_shared(target.uri(tls.is_some()))
            .map_err(|e| Error::InvalidTarget(format!("{:?}: {e}", self.target)))?;
        if let Some(config) = tls {
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| Error::Tls(with_sources(&e)))?;
        }
        if let Some(configure) = self.endpoint {
            endpoint = configure(endpoint);
        }
        let token = match self.token.as_deref().map(check_token).transpose()? {
            None | Some("") => None,
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| Error::InvalidToken("not a valid header value".into()))?,
            ),
        };
        let live = Arc::new(AtomicUsize::new(0));
        let connector = Connector {
            target: Arc::new(target),
            timeout: self.connect_timeout,
            live: live.clone(),
        };
        let channel = endpoint.connect_with_connector_lazy(connector);
        let stub = GuardServiceClient::with_interceptor(channel.clone(), Bearer(token));
        let shared = Arc::new(Shared {
            stub,
            channel,
            deadline: self.deadline,
            rpc_timeout: self.rpc_timeout,
            stall_after: self.stall_after,
            reconnect_base: self.reconnect_base,
            reconnect_max: self.reconnect_max,
            closed: AtomicBool::new(false),
            shutdown: watch::Sender::new(false),
            failures: FailureBook::new(self.log_interval),
            request_ids: AtomicU64::new(0),
            order_prefix: random_prefix(),
            order_ids: AtomicU64::new(0),
            streams_opened: AtomicU64::new(0),
            slot: watch::Sender::new(Slot::default()),
            live,
        });
        let task = tokio::spawn(maintain(shared.clone()));
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

fn tls_from_files(files: TlsFiles) -> Result<ClientTlsConfig, Error> {
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|e| Error::Tls(format!("{what} {}: {e}", path.display())))
    };
    let mut config = ClientTlsConfig::new();
    config = match &files.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA", ca)?)),
        None => config.with_native_roots(),
    };
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("certificate", cert)?,
                read("key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Tls(
                "a client certificate needs both its cert and key files".into(),
            ))
        }
    }
    if let Some(name) = files.server_name {
        config = config.domain_name(name);
    }
    Ok(config)
}

/// An error and its causes, e.g. "transport error: <what rustls said>".
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// 12 random hex digits: no other client's ids start the same way.
fn random_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS's random source.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.write_u64(CLIENTS.fetch_add(1, Ordering::Relaxed));
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// The token stripped of space, tab, CR and LF around it (Python's rule, review 54e), or
/// the refusal of a byte outside printable ASCII (0x20-0x7E) left, which the other clients
/// cannot send either (tonic would take a tab or a non-ASCII byte), saying where in the
/// token as given, not what.
fn check_token(given: &str) -> Result<&str, Error> {
    let space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let token = given.trim_start_matches(space);
    let lead = given.len() - token.len();
    let token = token.trim_end_matches(space);
    match token
        .bytes()
        .enumerate()
        .find(|(_, b)| !(0x20..=0x7e).contains(b))
        .map(|(i, b)| (lead + i, b))
    {
        None => Ok(token),
        Some((i, b)) if b < 0x80 => Err(Error::InvalidToken(format!(
            "byte {i} is the control character {b:#04x}; only 0x20-0x7E may be sent"
        ))),
        Some((i, _)) => Err(Error::InvalidToken(format!(
            "byte {i} is not ASCII; only 0x20-0x7E may be sent"
        ))),
    }
}

/// The stream checks go to (none while reconnecting), and why the last one broke.
#[derive(Clone, Default)]
struct Slot {
    stream: Option<Arc<CheckStream>>,
    last_failure: Option<(Cause, String)>,
}

pub(crate) struct Shared {
    pub(crate) stub: Stub,
    pub(crate) channel: Channel,
    pub(crate) deadline: Duration,
    pub(crate) rpc_timeout: Duration,
    stall_after: Duration,
    reconnect_base: Duration,
    reconnect_max: Duration,
    closed: AtomicBool,
    shutdown: watch::Sender<bool>,
    failures: FailureBook,
    request_ids: AtomicU64,
    order_prefix: String,
    order_ids: AtomicU64,
    streams_opened: AtomicU64,
    slot: watch::Sender<Slot>,
    live: Arc<AtomicUsize>,
}

struct Inner {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.shut_down();
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// A client of one sidecar. Cheap to clone (clones share one channel and one stream);
/// safe to use from many tasks at once. The background task ends when the last clone is
/// dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder for a client of the sidecar at `target`: `"unix:/path/ess.sock"`
    /// (fastest) or `"host:port"` (`"https://host:port"` for TLS with the system roots).
    pub fn builder(target: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            target: target.into(),
            deadline: DEFAULT_DEADLINE,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            stall_after: DEFAULT_STALL_AFTER,
            log_interval: DEFAULT_LOG_INTERVAL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reconnect_base: DEFAULT_RECONNECT_BASE,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            token: None,
            tls: None,
            tls_files: None,
            endpoint: None,
        }
    }

    /// A client with the defaults: `Client::builder(target).build()`.
    pub fn new(target: impl Into<String>) -> Result<Client, Error> {
        Client::builder(target).build()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Waits until the check stream is open and the sidecar has answered its start (the
    /// stream's response headers), so that the first check pays for one message only. If
    /// the headers do not come within `timeout` it still returns `Ok` once connected;
    /// otherwise [`Error::NotReached`]. The client keeps trying in the background either way.
    pub async fn connect(&self, timeout: Duration) -> Result<(), Error> {
        let shared = self.shared();
        let deadline = deadline_after(timeout);
        let mut slot = shared.slot.subscribe();
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let (stream, last_failure) = {
                let current = slot.borrow_and_update();
                (current.stream.clone(), current.last_failure.clone())
            };
            if let Some(stream) = stream.filter(|s| !s.is_broken()) {
                tokio::select! {
                    _ = stream.wait_headers() => return Ok(()),
                    _ = stream.wait_broken() => continue,
                    _ = tokio::time::sleep_until(deadline) => {
                        // No headers (an older sidecar sends none before its first answer):
                        // reached if connected, and no stream failed since the last one that
                        // the sidecar started.
                        let last_failure = shared.slot.borrow().last_failure.clone();
                        if shared.live.load(Ordering::SeqCst) > 0 && !stream.is_broken() && last_failure.is_none() {
                            return Ok(());
                        }
                        let why = last_failure.map(|(c, why)| format!(" (last: {c}: {why})")).unwrap_or_default();
                        return Err(Error::NotReached(format!("no stream within {timeout:?}{why}")));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, slot.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    let why = last_failure
                        .map(|(c, why)| format!(" (last: {c}: {why})"))
                        .unwrap_or_default();
                    return Err(Error::NotReached(format!(
                        "no stream within {timeout:?}{why}"
                    )));
                }
            }
        }
    }

    /// An id no other order of this client has, nor (a random per-client prefix) any other
    /// client's: `<12 hex digits>-<n>`.
    pub fn new_client_order_id(&self) -> String {
        let shared = self.shared();
        let n = shared.order_ids.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", shared.order_prefix)
    }

    /// May this order be sent? Asked over the client's stream within the client's deadline
    /// (5 ms by default). Obey [`Verdict::allowed`], and send the order with
    /// [`Verdict::client_order_id`]. It never fails: a missed deadline, an unreachable
    /// sidecar, a broken stream, a rejected order or an answer that cannot be trusted is a
    /// denial with [`Verdict::cause`] set, counted and logged.
    pub async fn check(&self, order: Order) -> Verdict {
        self.check_with_deadline(order, self.shared().deadline)
            .await
    }

    /// [`Client::check`] with this check's own deadline.
    pub async fn check_with_deadline(&self, mut order: Order, deadline: Duration) -> Verdict {
        let client_order_id = self.take_client_order_id(&mut order);
        let verdict = self
            .check_on_stream(order.into_request(client_order_id.clone()), deadline)
            .await;
        self.settle(verdict, client_order_id)
    }

    /// [`Client::check`] over the unary CheckOrder RPC, with the same fail-closed rules:
    /// simpler, slower, and it may pay for connecting within its deadline.
    pub async fn check_unary(&self, order: Order) -> Verdict {
        self.check_unary_with_deadline(order, self.shared().deadline)
            .await
    }

    /// [`Client::check_unary`] with this check's own deadline.
    pub async fn check_unary_with_deadline(&self, mut order: Order, deadline: Duration) -> Verdict {
        let client_order_id = self.take_client_order_id(&mut order);
        let shared = self.shared();
        let verdict = if shared.closed.load(Ordering::Acquire) {
            Verdict::failed(Cause::ClientError, "the client is closed")
        } else {
            let mut request = Request::new(order.into_request(client_order_id.clone()));
            // tonic panics on a grpc-timeout too long to write (Duration::MAX).
            request.set_timeout(deadline.min(FAR_FUTURE));
            let mut stub = shared.stub.clone();
            let expires = deadline_after(deadline);
            match tokio::time::timeout_at(expires, stub.check_order(request)).await {
                Ok(Ok(answer)) => on_time(
                    verdict_from_decision(Some(answer.get_ref())),
                    expires,
                    deadline,
                ),
                // tonic's own enforcement of the gRPC deadline says CANCELLED.
                Ok(Err(_)) | Err(_) if now() >= expires => missed(deadline),
                Ok(Err(status)) => failure_of(&status),
                Err(_) => missed(deadline),
            }
        };
        self.settle(verdict, client_order_id)
    }

    /// Fail-closed denials so far, by cause (only causes that happened).
    pub fn failures(&self) -> BTreeMap<Cause, u64> {
        self.shared().failures.snapshot()
    }

    /// Check streams opened; more than one means a stream was replaced.
    pub fn streams_opened(&self) -> u64 {
        self.shared().streams_opened.load(Ordering::Relaxed)
    }

    /// Whether a connection to the sidecar is open right now.
    pub fn is_connected(&self) -> bool {
        self.shared().live.load(Ordering::SeqCst) > 0
    }

    /// The generated stub on the client's channel (the token included), for the RPCs this
    /// crate does not wrap.
    pub fn raw(&self) -> Stub {
        self.shared().stub.clone()
    }

    /// The client's tonic channel.
    pub fn channel(&self) -> Channel {
        self.shared().channel.clone()
    }

    /// Denies the checks in flight, ends the stream and the background task; later checks
    /// are denied ([`Cause::ClientError`]). Other clones are closed too. Its heartbeats stop
    /// without deregistering (their scopes trip at the ttl, as for an executor that died);
    /// later heartbeats are refused.
    pub async fn close(&self) {
        self.shared().shut_down();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn take_client_order_id(&self, order: &mut Order) -> String {
        if order.client_order_id.is_empty() {
            self.new_client_order_id()
        } else {
            std::mem::take(&mut order.client_order_id)
        }
    }

    /// A failed verdict becomes a counted, logged denial.
    fn settle(&self, mut verdict: Verdict, client_order_id: String) -> Verdict {
        verdict.client_order_id = client_order_id;
        if verdict.cause.is_some() {
            verdict.allowed = false;
            self.shared().failures.record(&verdict);
        }
        verdict
    }

    async fn check_on_stream(&self, order: pb::CheckOrderRequest, within: Duration) -> Verdict {
        let shared = self.shared();
        let deadline = deadline_after(within);
        let stream = match self.await_stream(deadline, within).await {
            Ok(stream) => stream,
            Err(verdict) => return verdict,
        };
        let (done, answer) = oneshot::channel();
        let request_id = shared.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let request = pb::CheckOrderStreamRequest {
            request_id,
            order: Some(order),
        };
        if let Err(verdict) = stream.send(request, done) {
            return verdict;
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(verdict)) => on_time(verdict, deadline, within),
            Ok(Err(_)) => Verdict::failed(Cause::ClientError, "the stream dropped the check"),
            Err(_) => {
                stream.expired();
                missed(within)
            }
        }
    }

    /// The open stream, waiting for one (within the check's deadline) only while one is
    /// being opened: a sidecar known to be unreachable denies at once.
    async fn await_stream(
        &self,
        deadline: Instant,
        within: Duration,
    ) -> Result<Arc<CheckStream>, Verdict> {
        let shared = self.shared();
        let mut slot = shared.slot.subscribe();
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return Err(Verdict::failed(Cause::ClientError, "the client is closed"));
            }
            let last_failure = {
                let current = slot.borrow_and_update();
                match &current.stream {
                    Some(stream) if !stream.is_broken() => return Ok(stream.clone()),
                    Some(_) => None,
                    None => current.last_failure.clone(),
                }
            };
            if let Some((Cause::Unavailable, why)) = &last_failure {
                return Err(Verdict::failed(
                    Cause::Unavailable,
                    format!("the sidecar is unreachable ({why}); reconnecting"),
                ));
            }
            match tokio::time::timeout_at(deadline, slot.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(Verdict::failed(Cause::ClientError, "the client is closed"))
                }
                Err(_) => {
                    let last = last_failure
                        .map(|(c, why)| format!(" (last: {c}: {why})"))
                        .unwrap_or_default();
                    return Err(Verdict::failed(
                        Cause::Deadline,
                        format!("no stream to the sidecar within {within:?}{last}"),
                    ));
                }
            }
        }
    }
}

impl Shared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Says `true` once the client is closed.
    pub(crate) fn on_close(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn shut_down(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(stream) = self.slot.borrow().stream.clone() {
            stream.fail(Cause::ClientError, "the client was closed");
        }
        self.shutdown.send_replace(true);
        // Wakes checks and connects waiting for a stream: they see `closed`.
        self.slot.send_modify(|slot| slot.stream = None);
    }

    /// The stream checks go to from now on; the last failure stays known until a stream is
    /// started by the sidecar (`started`).
    fn install(&self, stream: Arc<CheckStream>) {
        self.slot.send_modify(|slot| slot.stream = Some(stream));
    }

    fn started(&self) {
        self.slot
            .send_if_modified(|slot| slot.last_failure.take().is_some());
    }

    fn uninstall(&self, stream: &Arc<CheckStream>) {
        let failure = stream.failure();
        self.slot.send_if_modified(|slot| match &slot.stream {
            Some(current) if Arc::ptr_eq(current, stream) => {
                *slot = Slot {
                    stream: None,
                    last_failure: failure,
                };
                true
            }
            _ => false,
        });
    }
}

/// Keeps one check stream open: opens one (it is usable at once: checks queue on it while
/// it connects), reads its answers, and when it breaks replaces it; streams that break
/// without ever answering (a refusal, an unreachable sidecar) are reopened with a growing
/// backoff.
async fn maintain(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut delay = shared.reconnect_base;
    while !*shutdown.borrow_and_update() {
        let stream = Arc::new(CheckStream::new(shared.stall_after));
        shared.streams_opened.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        shared.install(stream.clone());
        if shared.closed.load(Ordering::Acquire) {
            stream.fail(Cause::ClientError, "the client was closed");
        }
        run_stream(&shared, &stream).await;
        shared.uninstall(&stream);
        if stream.answered() || opened.elapsed() > shared.reconnect_max {
            delay = shared.reconnect_base;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        }
        delay = (delay * 2).min(shared.reconnect_max);
    }
}

/// One stream's life: the call (its response headers), then its answers, until it breaks.
async fn run_stream(shared: &Shared, stream: &Arc<CheckStream>) {
    let mut stub = shared.stub.clone();
    let call = stub.check_order_stream(RequestStream(stream.clone()));
    let mut answers = tokio::select! {
        _ = stream.wait_broken() => return,
        result = call => match result {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let failure = failure_of(&status);
                stream.fail(failure.cause.unwrap_or(Cause::StreamBroken), failure.message);
                return;
            }
        },
    };
    stream.set_headers();
    shared.started();
    let broken = stream.wait_broken();
    tokio::pin!(broken);
    loop {
        tokio::select! {
            _ = &mut broken => return,
            answer = answers.message() => match answer {
                Ok(Some(answer)) => {
                    if !stream.on_answer(&answer) {
                        return;
                    }
                }
                Ok(None) => {
                    stream.fail(Cause::StreamBroken, "the sidecar ended the stream");
                    return;
                }
                Err(status) => {
                    let failure = failure_of(&status);
                    stream.fail(failure.cause.unwrap_or(Cause::StreamBroken), failure.message);
                    return;
                }
            },
        }
    }
    // Dropping `answers` cancels the call.
}

/// The clock a check's answer is judged against its deadline by: tokio's, which the tests
/// move on (on their own thread) to make an answer late.
fn now() -> Instant {
    let now = Instant::now();
    #[cfg(test)]
    let now = now + crate::tests::clock_skew();
    now
}

/// `verdict`, unless it came at or past `deadline`, `within` after the check began: tokio's
/// timeouts poll what they bound before their timer, so they take an answer that is there
/// when the deadline is due, or long past it (review 35: the unary check took those); past
/// the deadline, the check fails closed whatever came.
fn on_time(verdict: Verdict, deadline: Instant, within: Duration) -> Verdict {
    if now() >= deadline {
        missed(within)
    } else {
        verdict
    }
}

fn missed(within: Duration) -> Verdict {
    Verdict::failed(Cause::Deadline, format!("no answer within {within:?}"))
}

/// `within` from now; a duration too long to add (`Duration::MAX`) is [`FAR_FUTURE`] from
/// now, as tokio's own timeouts do, rather than a panic: a check never panics.
fn deadline_after(within: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(within).unwrap_or(now + FAR_FUTURE)
}
