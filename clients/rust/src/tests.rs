//! The library against an in-process fake sidecar: gRPC over h2 on a loopback port (or a
//! Unix socket), whose answers each test scripts, malformed ones included.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::{JoinHandle, JoinSet};
use tonic::codegen::{http, Bytes};

use crate::pb::{self, check_order_stream_response::Result as Answer, DecisionReason};
use crate::{
    cli, Cause, Client, Error, Fill, HeartbeatConfig, Order, OrderStatus, OrderUpdate, Side,
    Snapshot,
};

const GENEROUS: Duration = Duration::from_secs(5);

thread_local! {
    /// How far this thread's tests move the clock a check's answer is judged by.
    static CLOCK_SKEW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

pub(crate) fn clock_skew() -> Duration {
    CLOCK_SKEW.with(Cell::get)
}

/// What the fake does with one check.
#[derive(Clone)]
enum Action {
    Answer(pb::CheckOrderStreamResponse),
    Delay(Duration, pb::CheckOrderStreamResponse),
    /// Never answers.
    Silence,
    /// Ends the stream (or the unary call) with this gRPC status code.
    End(i32, &'static str),
}

type Script = Arc<dyn Fn(&pb::CheckOrderStreamRequest) -> Action + Send + Sync>;

#[derive(Default)]
struct Seen {
    coids: Vec<String>,
    authorization: Vec<String>,
    heartbeats: Vec<pb::HeartbeatRequest>,
    fills: Vec<pb::ReportFillRequest>,
    updates: Vec<pb::ReportOrderUpdateRequest>,
    syncs: Vec<pb::SyncPositionsRequest>,
}

struct FakeState {
    script: Mutex<Script>,
    token: Option<String>,
    headers_first: bool,
    streams: AtomicUsize,
    /// How many of the next heartbeats to refuse (UNAVAILABLE); they are still seen.
    failing_heartbeats: AtomicUsize,
    seen: Mutex<Seen>,
}

enum Listen {
    Tcp(u16),
    Unix(std::path::PathBuf),
}

/// A fake sidecar; `kill` drops the listener and every connection, `start` serves again on
/// the same address.
struct Fake {
    state: Arc<FakeState>,
    listen: Listen,
    server: Option<JoinHandle<()>>,
}

fn decision(
    request: &pb::CheckOrderStreamRequest,
    reason: DecisionReason,
) -> pb::CheckOrderStreamResponse {
    let coid = request
        .order
        .as_ref()
        .map(|o| o.client_order_id.clone())
        .unwrap_or_default();
    pb::CheckOrderStreamResponse {
        request_id: request.request_id,
        result: Some(Answer::Decision(pb::CheckOrderResponse {
            allowed: reason == DecisionReason::Allowed,
            reason: reason as i32,
            message: if reason == DecisionReason::Allowed {
                String::new()
            } else {
                format!("denied {coid}")
            },
            state_version: 7,
            blocking_scope: None,
            decision_id: format!("d-{coid}"),
        })),
    }
}

fn allow(request: &pb::CheckOrderStreamRequest) -> Action {
    Action::Answer(decision(request, DecisionReason::Allowed))
}

fn coid(request: &pb::CheckOrderStreamRequest) -> &str {
    request
        .order
        .as_ref()
        .map(|o| o.client_order_id.as_str())
        .unwrap_or("")
}

impl Fake {
    async fn tcp(
        script: impl Fn(&pb::CheckOrderStreamRequest) -> Action + Send + Sync + 'static,
    ) -> Fake {
        Fake::with(Listen::Tcp(0), None, true, Arc::new(script)).await
    }

    async fn with(
        listen: Listen,
        token: Option<&str>,
        headers_first: bool,
        script: Script,
    ) -> Fake {
        let state = Arc::new(FakeState {
            script: Mutex::new(script),
            token: token.map(str::to_string),
            headers_first,
            streams: AtomicUsize::new(0),
            failing_heartbeats: AtomicUsize::new(0),
            seen: Mutex::default(),
        });
        let mut fake = Fake {
            state,
            listen,
            server: None,
        };
        fake.start().await;
        fake
    }

    fn target(&self) -> String {
        match &self.listen {
            Listen::Tcp(port) => format!("127.0.0.1:{port}"),
            Listen::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    fn script(
        &self,
        script: impl Fn(&pb::CheckOrderStreamRequest) -> Action + Send + Sync + 'static,
    ) {
        *self.state.script.lock().unwrap() = Arc::new(script);
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.state.seen.lock().unwrap())
    }

    async fn start(&mut self) {
        let state = self.state.clone();
        self.server = Some(match &mut self.listen {
            Listen::Tcp(port) => {
                let listener = TcpListener::bind(("127.0.0.1", *port)).await.expect("bind");
                *port = listener.local_addr().unwrap().port();
                tokio::spawn(async move {
                    let mut connections = JoinSet::new();
                    while let Ok((io, _)) = listener.accept().await {
                        io.set_nodelay(true).unwrap();
                        connections.spawn(serve(io, state.clone()));
                    }
                })
            }
            Listen::Unix(path) => {
                let _ = std::fs::remove_file(&*path);
                let listener = UnixListener::bind(&*path).expect("bind");
                tokio::spawn(async move {
                    let mut connections = JoinSet::new();
                    while let Ok((io, _)) = listener.accept().await {
                        connections.spawn(serve(io, state.clone()));
                    }
                })
            }
        });
    }

    /// Like a killed sidecar: the listener and every connection go at once.
    async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn serve<T: AsyncRead + AsyncWrite + Unpin>(io: T, state: Arc<FakeState>) {
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    let mut calls = JoinSet::new();
    while let Some(Ok((request, respond))) = connection.accept().await {
        calls.spawn(call(request, respond, state.clone()));
    }
}

type Respond = h2::server::SendResponse<Bytes>;

fn headers(status: Option<(i32, &str)>) -> http::Response<()> {
    let mut response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    if let Some((code, message)) = status {
        response = response
            .header("grpc-status", code.to_string())
            .header("grpc-message", message);
    }
    response.body(()).unwrap()
}

fn trailers(code: i32, message: &str) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", code.to_string().parse().unwrap());
    trailers.insert("grpc-message", message.parse().unwrap());
    trailers
}

fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The next whole gRPC message in `buffer`, if there is one.
fn take_message(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    if buffer.len() < 5 {
        return None;
    }
    let length = u32::from_be_bytes(buffer[1..5].try_into().unwrap()) as usize;
    if buffer.len() < 5 + length {
        return None;
    }
    let message = buffer[5..5 + length].to_vec();
    buffer.drain(..5 + length);
    Some(message)
}

/// Trailers-only: the whole answer is one status.
fn refuse(mut respond: Respond, code: i32, message: &str) {
    let _ = respond.send_response(headers(Some((code, message))), true);
}

async fn call(request: http::Request<h2::RecvStream>, mut respond: Respond, state: Arc<FakeState>) {
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    state
        .seen
        .lock()
        .unwrap()
        .authorization
        .push(authorization.clone());
    if let Some(token) = &state.token {
        if authorization != format!("Bearer {token}") {
            return refuse(respond, 16, "missing or unknown bearer token");
        }
    }
    let mut body = request.into_body();
    if path == "/ess.v1.GuardService/CheckOrderStream" {
        state.streams.fetch_add(1, Ordering::SeqCst);
        return check_stream(body, respond, state).await;
    }
    let mut buffer = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        buffer.extend_from_slice(&chunk);
    }
    let Some(message) = take_message(&mut buffer) else {
        return refuse(respond, 13, "no message");
    };
    let reply = |respond: &mut Respond, answer: Bytes| {
        if let Ok(mut send) = respond.send_response(headers(None), false) {
            let _ = send.send_data(answer, false);
            let _ = send.send_trailers(trailers(0, ""));
        }
    };
    let mut seen = state.seen.lock().unwrap();
    match path.rsplit('/').next().unwrap_or("") {
        "CheckOrder" => {
            drop(seen);
            let order = pb::CheckOrderRequest::decode(message.as_slice()).unwrap();
            state
                .seen
                .lock()
                .unwrap()
                .coids
                .push(order.client_order_id.clone());
            let request = pb::CheckOrderStreamRequest {
                request_id: 0,
                order: Some(order),
            };
            let script = state.script.lock().unwrap().clone();
            let answer = match script(&request) {
                Action::Answer(answer) => answer,
                Action::Delay(delay, answer) => {
                    tokio::time::sleep(delay).await;
                    answer
                }
                Action::Silence => return std::future::pending().await,
                Action::End(code, message) => return refuse(respond, code, message),
            };
            match answer.result {
                Some(Answer::Decision(decision)) => reply(&mut respond, frame(&decision)),
                Some(Answer::Error(error)) => refuse(respond, error.code, &error.message),
                None => reply(&mut respond, frame(&pb::CheckOrderResponse::default())),
            }
        }
        "Heartbeat" => {
            seen.heartbeats
                .push(pb::HeartbeatRequest::decode(message.as_slice()).unwrap());
            let failing = &state.failing_heartbeats;
            let fail = |n: usize| n.checked_sub(1);
            if failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, fail)
                .is_ok()
            {
                return refuse(respond, 14, "heartbeat refused by the test");
            }
            reply(
                &mut respond,
                frame(&pb::HeartbeatResponse {
                    state: pb::State::Armed as i32,
                    state_version: 1,
                    deregistered: None,
                }),
            );
        }
        "ReportFill" => {
            let fill = pb::ReportFillRequest::decode(message.as_slice()).unwrap();
            let answer = pb::ReportFillResponse {
                position: fill.quantity,
                ..Default::default()
            };
            seen.fills.push(fill);
            reply(&mut respond, frame(&answer));
        }
        "ReportOrderUpdate" => {
            seen.updates
                .push(pb::ReportOrderUpdateRequest::decode(message.as_slice()).unwrap());
            reply(
                &mut respond,
                frame(&pb::ReportOrderUpdateResponse { known: true }),
            );
        }
        "SyncPositions" => {
            let sync = pb::SyncPositionsRequest::decode(message.as_slice()).unwrap();
            let answer = pb::SyncPositionsResponse {
                positions: sync.positions.len() as u32,
                working_orders: 0,
            };
            seen.syncs.push(sync);
            reply(&mut respond, frame(&answer));
        }
        _ => {
            drop(seen);
            refuse(respond, 12, "not in the fake")
        }
    }
}

/// Answers checks in request order, as the sidecar does, by the test's script.
async fn check_stream(mut body: h2::RecvStream, mut respond: Respond, state: Arc<FakeState>) {
    let mut send = if state.headers_first {
        let Ok(send) = respond.send_response(headers(None), false) else {
            return;
        };
        Some(send)
    } else {
        None
    };
    let mut buffer = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        buffer.extend_from_slice(&chunk);
        while let Some(message) = take_message(&mut buffer) {
            let request = pb::CheckOrderStreamRequest::decode(message.as_slice()).unwrap();
            state
                .seen
                .lock()
                .unwrap()
                .coids
                .push(coid(&request).to_string());
            let script = state.script.lock().unwrap().clone();
            let action = script(&request);
            if send.is_none() {
                let Ok(opened) = respond.send_response(headers(None), false) else {
                    return;
                };
                send = Some(opened);
            }
            let send = send.as_mut().unwrap();
            match action {
                Action::Answer(answer) => {
                    let _ = send.send_data(frame(&answer), false);
                }
                Action::Delay(delay, answer) => {
                    tokio::time::sleep(delay).await;
                    let _ = send.send_data(frame(&answer), false);
                }
                Action::Silence => {}
                Action::End(code, message) => {
                    let _ = send.send_trailers(trailers(code, message));
                    return;
                }
            }
        }
    }
    match send {
        Some(mut send) => {
            let _ = send.send_trailers(trailers(0, ""));
        }
        None => refuse(respond, 0, ""),
    }
}

fn client(fake: &Fake) -> Client {
    Client::builder(fake.target())
        .deadline(GENEROUS)
        .build()
        .unwrap()
}

fn order(coid: &str) -> Order {
    Order::new("acc-1", "momo", "AAPL", Side::Buy, 1.0, 100.0).with_client_order_id(coid)
}

#[tokio::test]
async fn allows_and_matches_answers_to_checks() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    client.connect(GENEROUS).await.unwrap();
    for n in 1..=3 {
        let verdict = client.check(order(&format!("c-{n}"))).await;
        assert!(verdict.allowed, "{verdict:?}");
        assert_eq!(verdict.cause, None);
        assert_eq!(verdict.reason, DecisionReason::Allowed);
        assert_eq!(verdict.reason_name(), "ALLOWED");
        assert_eq!(verdict.decision_id, format!("d-c-{n}"));
        assert_eq!(verdict.client_order_id, format!("c-{n}"));
        assert_eq!(verdict.state_version, 7);
    }
    assert_eq!(client.streams_opened(), 1);
    assert!(client.failures().is_empty());
    assert!(client.is_connected());
}

#[tokio::test]
async fn makes_up_client_order_ids() {
    let fake = Fake::tcp(allow).await;
    let (one, two) = (client(&fake), client(&fake));
    let first = one.check(order("")).await;
    let second = one.check(order("")).await;
    let other = two.check(order("")).await;
    for verdict in [&first, &second, &other] {
        assert!(verdict.allowed, "{verdict:?}");
        let (prefix, n) = verdict.client_order_id.split_once('-').unwrap();
        assert_eq!(prefix.len(), 12);
        assert!(prefix.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(n.parse::<u64>().is_ok());
        assert_eq!(
            verdict.decision_id,
            format!("d-{}", verdict.client_order_id)
        );
    }
    assert_ne!(first.client_order_id, second.client_order_id);
    assert_ne!(
        first.client_order_id.split('-').next(),
        other.client_order_id.split('-').next()
    );
    let sent = fake.seen(|s| s.coids.clone());
    assert_eq!(
        sent,
        [&first, &second, &other].map(|v| v.client_order_id.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_checks_in_flight_from_many_tasks() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    client.connect(GENEROUS).await.unwrap();
    let mut tasks = JoinSet::new();
    for task in 0..16 {
        let client = client.clone();
        tasks.spawn(async move {
            for n in 0..25 {
                let coid = format!("t{task}-{n}");
                let verdict = client.check(order(&coid)).await;
                assert!(verdict.allowed, "{verdict:?}");
                assert_eq!(verdict.decision_id, format!("d-{coid}"));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(client.streams_opened(), 1);
    assert_eq!(fake.seen(|s| s.coids.len()), 400);
}

#[tokio::test]
async fn a_denial_by_the_sidecar_is_not_a_failure() {
    let fake = Fake::tcp(|request| {
        let mut answer = decision(request, DecisionReason::ScopeTripped);
        if let Some(Answer::Decision(d)) = &mut answer.result {
            d.blocking_scope = Some(pb::Scope {
                kind: pb::ScopeKind::Strategy as i32,
                id: "momo".into(),
            });
        }
        Action::Answer(answer)
    })
    .await;
    let client = client(&fake);
    let verdict = client.check(order("c-1")).await;
    assert!(!verdict.allowed);
    assert!(!verdict.failed_closed());
    assert_eq!(verdict.reason_name(), "SCOPE_TRIPPED");
    assert_eq!(verdict.blocking_scope, "STRATEGY:momo");
    assert_eq!(cli::line(&verdict), "DENIED SCOPE_TRIPPED denied c-1");
    assert!(client.failures().is_empty());
}

#[tokio::test]
async fn malformed_answers_fail_closed() {
    fn with(request: &pb::CheckOrderStreamRequest, allowed: bool, reason: i32) -> Action {
        let mut answer = decision(request, DecisionReason::Allowed);
        if let Some(Answer::Decision(d)) = &mut answer.result {
            d.allowed = allowed;
            d.reason = reason;
        }
        Action::Answer(answer)
    }
    let fake = Fake::tcp(|request| match coid(request) {
        "unknown-reason" => with(request, false, 99),
        "unknown-reason-allowed" => with(request, true, 99),
        "unspecified" => with(request, false, 0),
        "allowed-but-tripped" => with(request, true, DecisionReason::ScopeTripped as i32),
        "denied-but-allowed" => with(request, false, DecisionReason::Allowed as i32),
        "empty" => Action::Answer(pb::CheckOrderStreamResponse {
            request_id: request.request_id,
            result: None,
        }),
        _ => allow(request),
    })
    .await;
    let client = client(&fake);
    let cases = [
        "unknown-reason",
        "unknown-reason-allowed",
        "unspecified",
        "allowed-but-tripped",
        "denied-but-allowed",
        "empty",
    ];
    for case in cases {
        let verdict = client.check(order(case)).await;
        assert!(!verdict.allowed, "{case}: {verdict:?}");
        assert_eq!(verdict.cause, Some(Cause::Malformed), "{case}: {verdict:?}");
        assert_eq!(verdict.reason_name(), "CLIENT_FAIL_CLOSED");
        assert_eq!(verdict.client_order_id, case);
        assert!(
            cli::line(&verdict).starts_with("DENIED CLIENT_FAIL_CLOSED malformed: "),
            "{verdict:?}"
        );
    }
    // A malformed decision denies that check only: the stream is still trusted.
    assert!(client.check(order("fine")).await.allowed);
    assert_eq!(client.streams_opened(), 1);
    assert_eq!(
        client.failures().get(&Cause::Malformed),
        Some(&(cases.len() as u64))
    );
}

#[tokio::test]
async fn a_wrong_request_id_breaks_the_stream() {
    let fake = Fake::tcp(|request| {
        let mut answer = decision(request, DecisionReason::Allowed);
        if coid(request) == "misnumbered" {
            answer.request_id += 1000;
        }
        Action::Answer(answer)
    })
    .await;
    let client = client(&fake);
    assert!(client.check(order("before")).await.allowed);
    let verdict = client.check(order("misnumbered")).await;
    assert!(!verdict.allowed, "{verdict:?}");
    assert_eq!(verdict.cause, Some(Cause::Malformed));
    assert!(verdict.message.contains("expected"), "{verdict:?}");
    // Never believed again: the next check goes to a new stream.
    let after = client.check(order("after")).await;
    assert!(after.allowed, "{after:?}");
    assert_eq!(client.streams_opened(), 2);
    assert_eq!(fake.state.streams.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_error_names_the_field() {
    let fake = Fake::tcp(|request| {
        Action::Answer(pb::CheckOrderStreamResponse {
            request_id: request.request_id,
            result: Some(Answer::Error(pb::RequestError {
                code: 3,
                field: "order.quantity".into(),
                message: "order.quantity must be positive".into(),
            })),
        })
    })
    .await;
    let client = client(&fake);
    let verdict = client.check(order("c-1")).await;
    assert_eq!(verdict.cause, Some(Cause::RequestError));
    assert_eq!(verdict.field, "order.quantity");
    assert_eq!(
        cli::line(&verdict),
        "DENIED CLIENT_FAIL_CLOSED request_error: order.quantity must be positive"
    );
    assert_eq!(client.streams_opened(), 1);
}

#[tokio::test]
async fn a_missed_deadline_fails_closed_and_the_late_answer_is_dropped() {
    let fake = Fake::tcp(|request| match coid(request) {
        "slow" => Action::Delay(
            Duration::from_millis(300),
            decision(request, DecisionReason::Allowed),
        ),
        _ => allow(request),
    })
    .await;
    let client = Client::builder(fake.target())
        .deadline(Duration::from_millis(20))
        .build()
        .unwrap();
    client.connect(GENEROUS).await.unwrap();
    let started = Instant::now();
    let verdict = client.check(order("slow")).await;
    let elapsed = started.elapsed();
    assert_eq!(verdict.cause, Some(Cause::Deadline), "{verdict:?}");
    assert!(!verdict.allowed);
    assert!(
        elapsed >= Duration::from_millis(20) && elapsed < Duration::from_millis(250),
        "{elapsed:?}"
    );
    // The next check waits behind the late answer (in order), which goes nowhere.
    let next = client.check_with_deadline(order("next"), GENEROUS).await;
    assert!(next.allowed, "{next:?}");
    assert_eq!(next.decision_id, "d-next");
    assert_eq!(client.streams_opened(), 1);
    assert_eq!(client.failures().get(&Cause::Deadline), Some(&1));
}

#[tokio::test]
async fn an_answer_after_the_deadline_is_a_denial_even_when_it_is_there() {
    // The fake (on this test's thread) moves the clock an hour on before it answers "late":
    // the answer is there when the check's timeout polls it, but the deadline has passed.
    let fake = Fake::tcp(|request| {
        if coid(request).starts_with("late") {
            CLOCK_SKEW.with(|skew| skew.set(Duration::from_secs(3600)));
        }
        allow(request)
    })
    .await;
    let client = client(&fake);
    client.connect(GENEROUS).await.unwrap();
    let late = client.check(order("late-1")).await;
    assert_eq!(late.cause, Some(Cause::Deadline), "{late:?}");
    CLOCK_SKEW.with(|skew| skew.set(Duration::ZERO));
    // The unary check too (review 35: it took the answer).
    let late = client.check_unary(order("late-2")).await;
    assert_eq!(late.cause, Some(Cause::Deadline), "{late:?}");
    assert!(!late.allowed);
    CLOCK_SKEW.with(|skew| skew.set(Duration::ZERO));
    for verdict in [
        client.check(order("on-time-1")).await,
        client.check_unary(order("on-time-2")).await,
    ] {
        assert!(verdict.allowed, "{verdict:?}");
    }
    assert_eq!(client.failures().get(&Cause::Deadline), Some(&2));
}

#[tokio::test]
async fn an_endless_deadline_is_far_away_not_a_panic() {
    let fake = Fake::tcp(|request| match coid(request) {
        "bad" => Action::End(3, "order.price: must be > 0"),
        _ => allow(request),
    })
    .await;
    let client = Client::builder(fake.target())
        .deadline(Duration::MAX)
        .rpc_timeout(Duration::MAX)
        .log_interval(Duration::MAX)
        .build()
        .unwrap();
    client.connect(Duration::MAX).await.unwrap();
    for verdict in [
        client.check(order("c-1")).await,
        client
            .check_with_deadline(order("c-2"), Duration::MAX)
            .await,
        client
            .check_unary_with_deadline(order("c-3"), Duration::MAX)
            .await,
    ] {
        assert!(verdict.allowed, "{verdict:?}");
    }
    // Failures logged with an interval too long to add: the first logs, the rest wait.
    for _ in 0..2 {
        let bad = client
            .check_unary_with_deadline(order("bad"), Duration::MAX)
            .await;
        assert_eq!(bad.cause, Some(Cause::RequestError), "{bad:?}");
    }
    let update = OrderUpdate {
        account: "acc-1".into(),
        client_order_id: "c-1".into(),
        status: OrderStatus::Cancelled,
        remaining_quantity: None,
        filled_quantity: None,
    };
    assert!(client.report_order_update(update).await.is_ok());
}

#[tokio::test]
async fn a_stalled_stream_is_replaced() {
    let fake = Fake::tcp(|_| Action::Silence).await;
    let client = Client::builder(fake.target())
        .deadline(Duration::from_millis(20))
        .stall_after(Duration::from_millis(100))
        .build()
        .unwrap();
    client.connect(GENEROUS).await.unwrap();
    let started = Instant::now();
    while client.streams_opened() < 2 {
        let verdict = client.check(order("")).await;
        assert!(!verdict.allowed);
        assert!(started.elapsed() < GENEROUS, "never replaced");
    }
    fake.script(allow);
    let started = Instant::now();
    loop {
        let verdict = client
            .check_with_deadline(order(""), Duration::from_secs(1))
            .await;
        if verdict.allowed {
            break;
        }
        assert!(started.elapsed() < GENEROUS, "{verdict:?}");
    }
}

#[tokio::test]
async fn an_unreachable_sidecar_fails_closed_within_the_deadline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(format!("127.0.0.1:{port}")).unwrap();
    let error = client
        .connect(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotReached(_)), "{error:?}");
    for _ in 0..5 {
        let started = Instant::now();
        let verdict = client.check(order("")).await;
        let elapsed = started.elapsed();
        assert!(verdict.failed_closed() && !verdict.allowed, "{verdict:?}");
        assert!(
            matches!(verdict.cause, Some(Cause::Unavailable | Cause::Deadline)),
            "{verdict:?}"
        );
        assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
        assert!(cli::line(&verdict).starts_with("DENIED CLIENT_FAIL_CLOSED "));
    }
    let unary = client.check_unary(order("")).await;
    assert!(unary.failed_closed(), "{unary:?}");
    assert!(!client.is_connected());
}

#[tokio::test]
async fn a_broken_stream_fails_its_checks_and_is_replaced() {
    let fake = Fake::tcp(|request| match coid(request) {
        "boom" => Action::End(13, "internal error"),
        _ => allow(request),
    })
    .await;
    let client = client(&fake);
    assert!(client.check(order("before")).await.allowed);
    let verdict = client.check(order("boom")).await;
    assert_eq!(verdict.cause, Some(Cause::StreamBroken), "{verdict:?}");
    let after = client.check(order("after")).await;
    assert!(after.allowed, "{after:?}");
    assert_eq!(client.streams_opened(), 2);
}

#[tokio::test]
async fn a_restarted_sidecar_is_found_again() {
    let mut fake = Fake::tcp(allow).await;
    let client = Client::builder(fake.target()).build().unwrap(); // the 5 ms default
    client.connect(GENEROUS).await.unwrap();
    assert!(
        client
            .check_with_deadline(order(""), GENEROUS)
            .await
            .allowed
    );
    fake.kill().await;
    for _ in 0..3 {
        let started = Instant::now();
        let verdict = client.check(order("")).await;
        assert!(verdict.failed_closed(), "{verdict:?}");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.start().await;
    let started = Instant::now();
    loop {
        let verdict = client
            .check_with_deadline(order(""), Duration::from_secs(1))
            .await;
        if verdict.allowed {
            break;
        }
        assert!(verdict.failed_closed(), "{verdict:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(client.streams_opened() >= 2);
    let failures = client.failures();
    assert!(failures.values().sum::<u64>() >= 3, "{failures:?}");
}

#[tokio::test]
async fn the_bearer_token_goes_with_every_call() {
    let fake = Fake::with(Listen::Tcp(0), Some("sekret"), true, Arc::new(allow)).await;
    let client = Client::builder(fake.target())
        .deadline(GENEROUS)
        .token("sekret")
        .build()
        .unwrap();
    assert!(client.check(order("c-1")).await.allowed);
    assert!(client.check_unary(order("c-2")).await.allowed);
    let scope = crate::parse_scope("STRATEGY:momo").unwrap();
    client
        .heartbeat("ex-1", scope, Duration::from_secs(1), false)
        .await
        .unwrap();
    let sent = fake.seen(|s| s.authorization.clone());
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|a| a == "Bearer sekret"), "{sent:?}");
    // Review 54e: a CRLF file's token, stripped as by the sidecar.
    let crlf = Client::builder(fake.target()).token(" \tsekret\r\n");
    let stripped = crlf.deadline(GENEROUS).build().unwrap();
    assert!(stripped.check_unary(order("c-5")).await.allowed);

    let anonymous = client_without_token(&fake);
    let refused = anonymous
        .connect(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::NotReached(why) if why.contains("UNAUTHENTICATED")),
        "{refused:?}"
    );
    let verdict = anonymous.check(order("c-3")).await;
    assert_eq!(verdict.cause, Some(Cause::Refused), "{verdict:?}");
    assert!(verdict.message.contains("UNAUTHENTICATED"), "{verdict:?}");
    let unary = anonymous.check_unary(order("c-4")).await;
    assert_eq!(unary.cause, Some(Cause::Refused), "{unary:?}");
    let error = anonymous.report_fill(Fill::default()).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unauthenticated);
}

fn client_without_token(fake: &Fake) -> Client {
    Client::builder(fake.target())
        .deadline(GENEROUS)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_unary_check_fails_closed_by_the_same_rules() {
    let fake = Fake::tcp(|request| match coid(request) {
        "slow" => Action::Delay(
            Duration::from_millis(300),
            decision(request, DecisionReason::Allowed),
        ),
        "tripped-but-allowed" => {
            let mut answer = decision(request, DecisionReason::ScopeTripped);
            if let Some(Answer::Decision(d)) = &mut answer.result {
                d.allowed = true;
            }
            Action::Answer(answer)
        }
        "bad" => Action::Answer(pb::CheckOrderStreamResponse {
            request_id: 0,
            result: Some(Answer::Error(pb::RequestError {
                code: 3,
                field: "order.price".into(),
                message: "bad price".into(),
            })),
        }),
        "gone" => Action::End(14, "shutting down"),
        _ => allow(request),
    })
    .await;
    let client = client(&fake);
    let allowed = client.check_unary(order("ok")).await;
    assert!(allowed.allowed, "{allowed:?}");
    assert_eq!(allowed.decision_id, "d-ok");
    let malformed = client.check_unary(order("tripped-but-allowed")).await;
    assert_eq!(malformed.cause, Some(Cause::Malformed), "{malformed:?}");
    let bad = client.check_unary(order("bad")).await;
    assert_eq!(bad.cause, Some(Cause::RequestError), "{bad:?}");
    let gone = client.check_unary(order("gone")).await;
    assert_eq!(gone.cause, Some(Cause::Unavailable), "{gone:?}");
    let started = Instant::now();
    let slow = client
        .check_unary_with_deadline(order("slow"), Duration::from_millis(20))
        .await;
    assert_eq!(slow.cause, Some(Cause::Deadline), "{slow:?}");
    assert!(started.elapsed() < Duration::from_millis(250));
    assert!(!malformed.allowed && !bad.allowed && !gone.allowed && !slow.allowed);
}

#[tokio::test]
async fn fills_updates_and_snapshots_are_reported() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let verdict = client.check(order("")).await;
    let fill = client
        .report_fill(Fill {
            account: "acc-1".into(),
            strategy: "momo".into(),
            symbol: "AAPL".into(),
            side: Side::Buy,
            quantity: 0.5,
            price: 100.0,
            client_order_id: verdict.client_order_id.clone(),
            fill_id: "exec-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(fill.position, 0.5);
    let open = OrderUpdate {
        account: "acc-1".into(),
        client_order_id: verdict.client_order_id.clone(),
        status: OrderStatus::Open,
        remaining_quantity: Some(0.5),
        filled_quantity: Some(0.5),
    };
    assert!(
        client
            .report_order_update(open.clone())
            .await
            .unwrap()
            .known
    );
    client
        .report_order_update(OrderUpdate {
            status: OrderStatus::Cancelled,
            ..open
        })
        .await
        .unwrap();
    let position = pb::Position {
        strategy: "momo".into(),
        symbol: "AAPL".into(),
        quantity: 0.5,
        mark_price: 100.0,
    };
    let snapshot = Snapshot {
        account: "acc-1".into(),
        equity: 1e6,
        positions: vec![position],
        open_orders: vec![],
        open_orders_complete: true,
        included_fills: vec![],
    };
    assert_eq!(client.sync_positions(snapshot).await.unwrap().positions, 1);
    fake.seen(|seen| {
        assert_eq!(seen.fills[0].client_order_id, verdict.client_order_id);
        assert_eq!(seen.fills[0].fill_id, "exec-1");
        assert_eq!(seen.fills[0].side, Side::Buy as i32);
        assert_eq!(seen.updates[0].status, OrderStatus::Open as i32);
        assert_eq!(seen.updates[0].remaining_quantity, Some(0.5));
        assert_eq!(seen.updates[1].status, OrderStatus::Cancelled as i32);
        assert_eq!(seen.updates[1].remaining_quantity, None);
        assert!(seen.syncs[0].open_orders_complete);
    });
}

/// An `Open` update built without a remaining quantity is sent without one, never as 0
/// leaves (which would release a live order's reservation): the sidecar refuses it. An
/// explicit `Some(0.0)` (filled in full, fills not reported yet) is sent as 0.
#[tokio::test]
async fn an_open_update_without_remaining_is_not_sent_as_zero() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let unset = OrderUpdate {
        account: "acc-1".into(),
        client_order_id: "c-1".into(),
        status: OrderStatus::Open,
        ..OrderUpdate::default()
    };
    client.report_order_update(unset.clone()).await.unwrap();
    client
        .report_order_update(OrderUpdate {
            remaining_quantity: Some(0.0),
            filled_quantity: Some(2.0),
            ..unset
        })
        .await
        .unwrap();
    fake.seen(|seen| {
        assert_eq!(seen.updates[0].status, OrderStatus::Open as i32);
        assert_eq!(seen.updates[0].remaining_quantity, None);
        assert_eq!(seen.updates[1].remaining_quantity, Some(0.0));
        assert_eq!(seen.updates[1].filled_quantity, Some(2.0));
    });
}

#[tokio::test]
async fn the_heartbeat_beats_until_stopped_and_deregisters() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let scope = crate::parse_scope("strategy:momo").unwrap();
    let config = HeartbeatConfig::new("executor-1", scope.clone(), Duration::from_millis(300));
    let heartbeater = client.start_heartbeat(config).await.unwrap();
    assert_eq!(heartbeater.state(), Some(pb::State::Armed));
    tokio::time::sleep(Duration::from_millis(350)).await;
    heartbeater.stop().await.unwrap();
    let beats = fake.seen(|s| s.heartbeats.clone());
    assert!(beats.len() >= 3, "{beats:?}");
    let (last, before) = beats.split_last().unwrap();
    assert!(last.deregister);
    assert!(before
        .iter()
        .all(|b| !b.deregister && b.ttl_ms == 300 && b.executor_id == "executor-1"));
    assert_eq!(last.scope.as_ref(), Some(&scope));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        fake.seen(|s| s.heartbeats.len()),
        beats.len(),
        "beats after stop"
    );

    let invalid = HeartbeatConfig::new("executor-1", scope, Duration::ZERO);
    assert!(client.start_heartbeat(invalid).await.is_err());
}

/// Review 42e: an interval not shorter than the ttl was taken, and the scope of a live executor
/// tripped for a missed heartbeat while its `Heartbeater` ran (Python's refuses it).
#[tokio::test]
async fn an_interval_not_shorter_than_the_ttl_is_refused() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let scope = crate::parse_scope("strategy:momo").unwrap();
    for (ttl, interval) in [
        (Duration::from_millis(300), Duration::from_millis(300)),
        (Duration::from_millis(300), Duration::from_secs(1)),
        (Duration::from_millis(300), Duration::ZERO),
        (Duration::from_micros(1900), Duration::from_micros(1500)), // sent as 1 ms
    ] {
        let mut config = HeartbeatConfig::new("executor-1", scope.clone(), ttl);
        config.interval = Some(interval);
        let status = match client.start_heartbeat(config).await {
            Ok(_) => panic!("ttl {ttl:?}, interval {interval:?}: started"),
            Err(status) => status,
        };
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("heartbeat interval"),
            "{status:?}"
        );
    }
    assert_eq!(
        fake.seen(|s| s.heartbeats.len()),
        0,
        "a refused config sent a beat"
    );
    // The default (ttl / 3) is shorter than the ttl, even the shortest.
    let shortest = HeartbeatConfig::new("executor-1", scope, Duration::from_millis(1));
    client
        .start_heartbeat(shortest)
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
}

/// Review 42e: a panicking `on_error` ended the heartbeat task, silently: the beats stopped and
/// the sidecar would trip the scope of a live executor whose `Heartbeater` looked alive.
#[tokio::test]
async fn a_panicking_on_error_does_not_stop_the_beats() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let scope = crate::parse_scope("strategy:momo").unwrap();
    let mut config = HeartbeatConfig::new("executor-1", scope, Duration::from_millis(150));
    let errors = Arc::new(AtomicUsize::new(0));
    let counted = errors.clone();
    config.on_error = Some(Arc::new(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        panic!("on_error panics (as the test means it to)");
    }));
    let heartbeater = client.start_heartbeat(config).await.unwrap();
    fake.state.failing_heartbeats.store(2, Ordering::SeqCst);
    // The first beat, two refused (on_error panics each time), then two answered.
    let start = Instant::now();
    while fake.seen(|s| s.heartbeats.len()) < 5 {
        assert!(
            start.elapsed() < GENEROUS,
            "the beats stopped: {} seen, on_error called {} times",
            fake.seen(|s| s.heartbeats.len()),
            errors.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(errors.load(Ordering::SeqCst), 2);
    assert!(heartbeater.error().is_none());
    assert_eq!(heartbeater.state(), Some(pb::State::Armed));
    heartbeater.stop().await.unwrap();
    assert!(fake.seen(|s| s.heartbeats.last().unwrap().deregister));
}

/// An `alive` that answers, beat by beat, what the test sends it (a dropped sender: not
/// alive), and says on `asked` each time it is asked, before it blocks for its answer.
fn scripted(
    answers: std::sync::mpsc::Receiver<&'static str>,
    asked: tokio::sync::mpsc::UnboundedSender<()>,
) -> crate::Alive {
    let answers = Mutex::new(answers);
    Arc::new(move || {
        let _ = asked.send(());
        let answer = answers.lock().unwrap().recv(); // unlocked before a panic
        match answer {
            Ok("yes") => true,
            Ok("panic") => panic!("the loop's state is corrupt (as the test means it to)"),
            _ => false,
        }
    })
}

/// A heartbeat of `executor-1` every ms, its `alive` [`scripted`]: the config, the feed of
/// answers and the asks.
fn scripted_config(
    scope: pb::Scope,
) -> (
    HeartbeatConfig,
    std::sync::mpsc::Sender<&'static str>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (feed, answers) = std::sync::mpsc::channel();
    let (asked_tx, asked) = tokio::sync::mpsc::unbounded_channel();
    let mut config = HeartbeatConfig::new("executor-1", scope, Duration::from_secs(1));
    config.interval = Some(Duration::from_millis(1));
    config.alive = Some(scripted(answers, asked_tx));
    (config, feed, asked)
}

/// Review 54a: the heartbeat beat on while the executor's trading loop was dead, so only the
/// death of the whole process tripped the scope. A beat is now sent only while `alive` says
/// true; false or a panic withholds it, counted.
#[tokio::test]
async fn beats_are_withheld_while_not_alive_and_resume() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let scope = crate::parse_scope("strategy:momo").unwrap();
    let (config, feed, mut asked) = scripted_config(scope);
    for answer in ["yes", "no", "panic", "no", "yes"] {
        feed.send(answer).unwrap();
    }
    let heartbeater = client.start_heartbeat(config).await.unwrap();
    // Asked a sixth time: the fifth ("yes") beat has been sent.
    for n in 1..=6 {
        tokio::time::timeout(GENEROUS, asked.recv())
            .await
            .unwrap_or_else(|_| panic!("alive asked only {} times", n - 1));
    }
    assert_eq!(heartbeater.skipped(), 3);
    assert_eq!(fake.seen(|s| s.heartbeats.len()), 2);
    drop(feed); // not alive from now on, and never blocking: stop can end the task
    heartbeater.stop().await.unwrap();
    assert!(fake.seen(|s| s.heartbeats.last().unwrap().deregister));
}

/// Review 54e: a closed client's heartbeats beat on, and a new one could be started, so its
/// scope never tripped. Close now ends them, a tick in progress too, without deregistering;
/// `stop` then sends nothing, and a closed client sends and starts no heartbeat.
#[tokio::test]
async fn close_ends_the_heartbeats_without_deregistering() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let scope = crate::parse_scope("strategy:momo").unwrap();
    let (mut config, feed, mut asked) = scripted_config(scope.clone());
    feed.send("yes").unwrap();
    feed.send("yes").unwrap();
    let heartbeater = client.start_heartbeat(config.clone()).await.unwrap();
    for n in 1..=3 {
        // The third ask blocks: a tick in progress.
        tokio::time::timeout(GENEROUS, asked.recv())
            .await
            .unwrap_or_else(|_| panic!("alive asked only {} times", n - 1));
    }
    client.close().await;
    let stopped = tokio::time::timeout(GENEROUS, heartbeater.stop()).await;
    assert!(matches!(stopped, Ok(Ok(None))), "{stopped:?}");
    drop(feed);
    fake.seen(|s| {
        assert_eq!(s.heartbeats.len(), 2);
        assert!(s.heartbeats.iter().all(|b| !b.deregister));
    });
    let ttl = Duration::from_secs(1);
    assert!(client
        .heartbeat("executor-1", scope, ttl, false)
        .await
        .is_err());
    config.alive = None;
    let refused = client.start_heartbeat(config).await.err().unwrap();
    assert!(refused.message().contains("closed"), "{refused:?}");
    assert_eq!(fake.seen(|s| s.heartbeats.len()), 2);
}

/// Not alive at the start: nothing would register the executor, so nothing could trip its
/// scope; start_heartbeat refuses, and sends nothing.
#[tokio::test]
async fn not_alive_at_the_start_is_refused_and_sends_nothing() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    let scope = crate::parse_scope("strategy:momo").unwrap();
    for answer in ["no", "panic"] {
        let (feed, answers) = std::sync::mpsc::channel();
        feed.send(answer).unwrap();
        let mut config = HeartbeatConfig::new("executor-1", scope.clone(), Duration::from_secs(1));
        config.alive = Some(scripted(answers, tokio::sync::mpsc::unbounded_channel().0));
        match client.start_heartbeat(config).await {
            Ok(_) => panic!("{answer}: started"),
            Err(status) => assert_eq!(status.code(), tonic::Code::FailedPrecondition),
        }
    }
    assert_eq!(fake.seen(|s| s.heartbeats.len()), 0);
}

/// Review 54a: the token rule is the other clients' (0x20-0x7E); tonic alone took a tab and
/// non-ASCII bytes. The error says where, never the token. Review 54e: Python's rule: space,
/// tab, CR and LF around it are dropped first (a CRLF file's `tok\r` is `tok`).
#[tokio::test]
async fn a_token_outside_printable_ascii_is_refused_without_printing_it() {
    let refused = [
        ("zq\r9", 2),
        ("\tzq\n9", 3),
        ("z\tq9", 1),
        ("z\0q9", 1),
        ("zq9\x7f", 3),
        ("zq9ö", 3),
    ];
    for (token, at) in refused {
        match Client::builder("127.0.0.1:1").token(token).build() {
            Err(error @ Error::InvalidToken(_)) => {
                let error = error.to_string();
                assert!(error.contains(&format!("byte {at} ")), "{token:?}: {error}");
                assert!(!error.contains("q9"), "the token is printed: {error}")
            }
            other => panic!("{token:?} was taken: {:?}", other.map(|_| ())),
        }
    }
    assert!(Client::builder("127.0.0.1:1")
        .token(" printable ~ASCII! ")
        .build()
        .is_ok());
}

#[tokio::test]
async fn over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("ess-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = Fake::with(
        Listen::Unix(dir.join("ess.sock")),
        None,
        true,
        Arc::new(allow),
    )
    .await;
    assert!(fake.target().starts_with("unix:/"));
    let client = Client::builder(fake.target())
        .deadline(GENEROUS)
        .build()
        .unwrap();
    client.connect(GENEROUS).await.unwrap();
    assert!(client.check(order("c-1")).await.allowed);
    assert!(client.check_unary(order("c-2")).await.allowed);
    drop(fake);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn connect_reports_reached_without_headers_once_connected() {
    let fake = Fake::with(Listen::Tcp(0), None, false, Arc::new(allow)).await;
    let client = client(&fake);
    let started = Instant::now();
    client.connect(Duration::from_millis(300)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(client.check(order("c-1")).await.allowed);
}

#[tokio::test]
async fn a_closed_client_denies() {
    let fake = Fake::tcp(allow).await;
    let client = client(&fake);
    assert!(client.check(order("")).await.allowed);
    let clone = client.clone();
    client.close().await;
    for verdict in [
        clone.check(order("")).await,
        clone.check_unary(order("")).await,
    ] {
        assert_eq!(verdict.cause, Some(Cause::ClientError), "{verdict:?}");
    }
    assert_eq!(clone.connect(GENEROUS).await, Err(Error::Closed));
}

#[tokio::test]
async fn bad_options_are_refused() {
    assert!(matches!(
        Client::new("nowhere"),
        Err(Error::InvalidTarget(_))
    ));
    assert!(matches!(
        Client::builder("127.0.0.1:1")
            .deadline(Duration::ZERO)
            .build(),
        Err(Error::InvalidOption(_))
    ));
    assert!(matches!(
        Client::builder("127.0.0.1:1").token("bad\ntoken").build(),
        Err(Error::InvalidToken(_))
    ));
    let missing = Client::builder("127.0.0.1:1").tls_files(
        Some("/nonexistent/ca.pem"),
        None::<&str>,
        None::<&str>,
        None::<&str>,
    );
    assert!(matches!(missing.build(), Err(Error::Tls(_))));
}

/// Review 42e: help exited 0, ess-check's "allowed", even beside an order's flags, so
/// `ess-check ... --help && send` sent the order unchecked.
#[test]
fn help_beside_other_arguments_is_a_usage_error() {
    let flags = cli::Flags {
        name: "ess-check",
        synopsis: "ess-check --target T --coid ID",
        about: "Ask a sidecar.",
        flags: &[
            ("target", "HOST:PORT or unix:PATH"),
            ("coid", "client_order_id"),
        ],
    };
    let parse = |args: &[&str]| flags.try_parse(args.iter().map(|a| a.to_string()), &["target"]);
    for help in ["-h", "--help"] {
        assert_eq!(parse(&[help]), Ok(None));
        for args in [
            vec!["--target", "unix:/tmp/ess.sock", "--coid", "o-1", help],
            vec![help, "--target", "unix:/tmp/ess.sock"],
            vec!["--coid=o-1", help],
        ] {
            match parse(&args) {
                Err(why) => assert!(why.contains("--help"), "{args:?}: {why}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }
    assert_eq!(parse(&["-h", "--help"]), Ok(None));
    assert!(parse(&["--coid", "o-1"]).is_err());
    let values = parse(&["--target", "t"]).unwrap().unwrap();
    assert_eq!(values["target"], "t");
}

/// Review 52a: each language's programs read numbers their own way (`1_0`, `0x10`, ` 1`):
/// one grammar (targets: `hosts_are_names_or_addresses_and_paths_printable_ascii`).
#[test]
fn numbers_have_one_grammar() {
    for good in ["1", "1.5", ".5", "1e3", "+2", "100", "2.", "2.e3", "1E-2"] {
        assert!(cli::positive(good).is_ok(), "{good:?}");
    }
    for bad in [
        "1_0", "0x10", "1d", "0x1p4", " 1", "1 ", "", "1e", ".", "++1", "-1", "0", "inf", "NaN",
        "1e400", "\u{ff11}",
    ] {
        assert!(cli::positive(bad).is_err(), "{bad:?}");
    }
}

/// Review 52d: an argument that is not UTF-8 panicked (exit 101); it is a usage error naming
/// its flag.
#[test]
fn an_argument_that_is_not_utf8_names_its_flag() {
    use std::os::unix::ffi::OsStringExt;
    let bad = || std::ffi::OsString::from_vec(b"c\xff".to_vec());
    let given = |args: Vec<std::ffi::OsString>| cli::utf8_args(args).expect_err("not UTF-8");
    let error = given(vec!["--qty".into(), "1".into(), "--coid".into(), bad()]);
    assert!(error.starts_with("argument --coid: "), "{error}");
    let mut eq = b"--coid=".to_vec();
    eq.extend(b"c\xff");
    let error = given(vec![std::ffi::OsString::from_vec(eq)]);
    assert!(error.starts_with("argument --coid: "), "{error}");
    assert_eq!(
        cli::utf8_args(vec!["--qty".into(), "1".into()]),
        Ok(vec!["--qty".to_string(), "1".to_string()])
    );
}

/// Review 52d: HOST a dotted quad, an RFC 1123 name or an IPv6 literal `Ipv6Addr` reads;
/// PATH printable ASCII without URI syntax, and `//` only as `///abs`.
#[test]
fn hosts_are_names_or_addresses_and_paths_printable_ascii() {
    let (label_63, label_64) = (
        format!("{}:1", "a".repeat(63)),
        format!("{}:1", "a".repeat(64)),
    );
    for good in [
        "localhost:1",
        "a.b-c.d:65535",
        "[::1]:50051",
        "[::ffff:1.2.3.4]:1",
        "127.0.0.1:50051",
        "0.0.0.0:1",
        "localhost.:1",
        &label_63,
        "unix:ess.sock",
        "unix:///abs",
        "unix:/tmp/a b",
        "my-host.example.com:1",
        "0x.example:1",
        "1.example:1",
        "unix:/tmp/x.sock",
    ] {
        assert_eq!(cli::target(good), Ok(()), "{good:?}");
    }
    // Review 52a: a mistyped target was a check that failed closed, like an outage.
    for bad in [
        "127.0.0.1:abc",
        "127.0.0.1:99999",
        "127.0.0.1:0",
        "unix:",
        "unix: /x",
        "127.0.0.1",
        " 127.0.0.1:50051",
        "http://h:1",
        "dns:///h:1",
        "h:1/x",
        "::1:50051",
        "[::1]",
        "",
        "_:1",
        "-:1",
        "..:1",
        "a..b:1",
        "a-.b:1",
        &label_64,
        "[1.2.3.4]:1",
        "[::1::]:1",
        "127.1:1",
        "2130706433:1",
        "256.1.1.1:1",
        "01.2.3.4:1",
        "1.2.3.4.:1",
        "unix:q?x.sock",
        "unix:a%2fb",
        "unix:a#b",
        "unix://host/x",
        "unix:////x",
        "unix://",
        "unix:/tmp/\u{e9}",
        // review 52e: a numeric last label (URL standard) unless a dotted quad
        "a.1b:1",
        "localhost.1x:1",
        "1b:1",
        "0x7f000001:1",
        "0x7f.1:1",
        "0X7F.0.0.1:1",
        "1.2.3.0x4:1",
        "example.1:1",
        "a.0x:1",
    ] {
        assert!(cli::target(bad).is_err(), "{bad:?}");
    }
}

/// Review 52c: the grammar narrowed to names or [IPv6] without zones, at most 253
/// characters, and unix paths sun_path holds, without control or line-separator characters;
/// deadlines of at least a microsecond; subnormal numbers are numbers.
#[test]
fn targets_are_names_or_addresses_and_paths_a_socket_holds() {
    let long_path = format!("unix:/tmp/{}", "x".repeat(102));
    for good in ["a.b-c.d:65535", "[::ffff:1.2.3.4]:1", &long_path] {
        assert_eq!(cli::target(good), Ok(()), "{good:?}");
    }
    let bad = [
        format!("{}:1", "h".repeat(100_000)),
        format!("{}:1", "h".repeat(254)),
        format!("{long_path}x"),
        format!("unix:/tmp/{}", "\u{e9}".repeat(52)),
    ];
    let fixed = [
        "h\u{e9}llo:1",
        "[fe80::1%lo]:1",
        "[]:1",
        "h:000001",
        "h:70000/",
        "\u{2028}localhost:1",
        "unix:/tmp/a\nb",
        "unix:/tmp/a\u{2028}b",
        "unix:/tmp/a\u{85}b",
    ];
    for bad in bad.iter().map(String::as_str).chain(fixed) {
        let error = cli::target(bad).expect_err(bad);
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(!error.contains(['\u{2028}', '\u{85}']), "{error}");
    }
    for bad in ["5e-324", "1e-7", "0.0009", &"9".repeat(100_000)] {
        assert!(cli::deadline_ms(bad).is_err(), "{bad:.40}");
    }
    assert_eq!(cli::deadline_ms("0.001"), Ok(Duration::from_micros(1)));
    assert!(cli::positive("5e-324").is_ok());
    assert!(cli::positive(&"9".repeat(100_000)).is_err());
    // Review 52d: Go's ParseFloat read the first as far less than 1e13, and allowed it.
    for long in [
        format!("1{}e-790", "0".repeat(803)),
        format!("1{}e-1000", "0".repeat(1000)),
        format!("1.{}", "0".repeat(63)),
    ] {
        let error = cli::positive(&long).expect_err(&long);
        assert!(error.contains("longer than 64"), "{error}");
    }
    assert_eq!(cli::positive(&format!("1.{}", "0".repeat(62))), Ok(1.0));
    assert_eq!(
        cli::words(" a\u{2028}b\u{85}c\t\x0Bd\x0C\re\n"),
        ["a\u{2028}b\u{85}c", "d", "e"]
    );
}

/// Review 42e: a zero RPC timeout was taken, and every RPC but the checks (trigger, heartbeats,
/// fills) then failed DEADLINE_EXCEEDED unsent. Review 54a: a zero stall_after too, and each
/// late answer would then break the stream, denying every check in flight.
#[tokio::test]
async fn a_zero_rpc_timeout_or_stall_after_is_refused() {
    let builder = || Client::builder("127.0.0.1:1");
    for (named, built) in [
        ("rpc_timeout", builder().rpc_timeout(Duration::ZERO).build()),
        ("stall_after", builder().stall_after(Duration::ZERO).build()),
    ] {
        match built {
            Err(Error::InvalidOption(why)) => assert!(why.contains(named), "{why}"),
            other => panic!("a zero {named} was taken: {:?}", other.map(|_| ())),
        }
    }
    assert!(Client::builder("127.0.0.1:1")
        .rpc_timeout(Duration::from_nanos(1))
        .build()
        .is_ok());
}

#[test]
fn no_client_outside_a_runtime() {
    assert!(matches!(
        Client::new("127.0.0.1:1"),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
fn lines_and_names() {
    let mut verdict = crate::Verdict::failed(Cause::Deadline, "no answer\nwithin  5ms");
    assert_eq!(
        cli::line(&verdict),
        "DENIED CLIENT_FAIL_CLOSED deadline: no answer within 5ms"
    );
    verdict = crate::Verdict {
        allowed: true,
        cause: None,
        reason: DecisionReason::Allowed,
        decision_id: "d-1".into(),
        ..verdict
    };
    assert_eq!(cli::line(&verdict), "ALLOWED d-1");
    verdict.decision_id = "x\nDENIED SCOPE_TRIPPED  y ".into(); // review 58e: one line
    assert_eq!(cli::line(&verdict), "ALLOWED x DENIED SCOPE_TRIPPED y");
    assert_eq!(
        crate::scope_string(&pb::Scope {
            kind: pb::ScopeKind::Global as i32,
            id: String::new()
        }),
        "GLOBAL"
    );
    assert_eq!(
        crate::parse_scope("GLOBAL").map(|s| s.kind),
        Some(pb::ScopeKind::Global as i32)
    );
    assert_eq!(crate::parse_scope("bogus:x"), None);
    assert_eq!(crate::parse_scope("ACCOUNT:"), None);
    assert_eq!(crate::parse_side("SIDE_SELL"), Some(Side::Sell));
    assert_eq!(crate::parse_side("hold"), None);
    assert_eq!(
        Cause::ALL.map(Cause::as_str).join(","),
        "deadline,unavailable,stream_broken,request_error,malformed,refused,client_error"
    );
    assert_eq!(
        crate::verdict::failure_of(&tonic::Status::deadline_exceeded("x")).message,
        "DEADLINE_EXCEEDED: x"
    );
}

/// A stop is never refused for what comes with it: a reason over 4 MiB would never reach
/// the sidecar (RESOURCE_EXHAUSTED); it is cut to the sidecar's bound.
#[test]
fn a_huge_trigger_reason_is_cut_to_the_sidecars_bound() {
    let mut reason = "\u{e9}".repeat(3 << 20);
    crate::rpc::bound_reason(&mut reason);
    assert!(
        reason.chars().count() <= crate::rpc::MAX_REASON_CHARS,
        "{}",
        reason.len()
    );
    assert!(reason.starts_with("\u{e9}\u{e9}"));
    let mut fine = String::from("fine");
    crate::rpc::bound_reason(&mut fine);
    assert_eq!(fine, "fine");
}
