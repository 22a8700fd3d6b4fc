//! One CheckOrderStream call. Once broken it stays broken: the client opens a new one and
//! never sends on, nor believes an answer from, a broken stream.
//!
//! The sidecar answers in request order, so every answer must be for the oldest
//! unanswered request; anything else means the stream cannot be trusted and it is broken.
//! Checks queue their requests (under one lock); the transport pulls them through
//! [`RequestStream`] (the sender side: a request whose check already gave up is dropped
//! there, never sent), and the client's background task reads the answers and hands each to
//! its check.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tonic::codegen::tokio_stream::Stream;

use crate::pb;
use crate::verdict::{verdict_from_answer, Cause, Verdict};

/// Checks queued or unanswered on one stream beyond which a check fails closed.
pub(crate) const MAX_IN_FLIGHT: usize = 4096;

struct Outgoing {
    request: pb::CheckOrderStreamRequest,
    done: oneshot::Sender<Verdict>,
    queued: Instant,
}

struct Unanswered {
    id: u64,
    done: oneshot::Sender<Verdict>,
    queued: Instant,
}

#[derive(Default)]
struct State {
    /// Queued by checks, not yet pulled by the transport.
    queue: VecDeque<Outgoing>,
    /// Pulled (sent), in send order.
    unanswered: VecDeque<Unanswered>,
    broken: Option<(Cause, String)>,
    waker: Option<Waker>,
}

pub(crate) struct CheckStream {
    state: Mutex<State>,
    stall_after: Duration,
    broken: watch::Sender<bool>,
    headers: watch::Sender<bool>,
    answered: AtomicBool,
}

impl CheckStream {
    pub(crate) fn new(stall_after: Duration) -> CheckStream {
        CheckStream {
            state: Mutex::default(),
            stall_after,
            broken: watch::Sender::new(false),
            headers: watch::Sender::new(false),
            answered: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_broken(&self) -> bool {
        *self.broken.borrow()
    }

    /// Why the stream broke, if it did.
    pub(crate) fn failure(&self) -> Option<(Cause, String)> {
        self.lock().broken.clone()
    }

    /// Resolves once the stream is broken.
    pub(crate) async fn wait_broken(&self) {
        let mut rx = self.broken.subscribe();
        let _ = rx.wait_for(|broken| *broken).await;
    }

    /// The sidecar sent the stream's response headers: it is live.
    pub(crate) fn set_headers(&self) {
        self.headers.send_replace(true);
    }

    /// Resolves once the response headers came.
    pub(crate) async fn wait_headers(&self) {
        let mut rx = self.headers.subscribe();
        let _ = rx.wait_for(|headers| *headers).await;
    }

    /// Whether at least one answer came on this stream.
    pub(crate) fn answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    /// Queues one request; `done` receives its verdict. On a broken stream, or with too
    /// many checks in flight, the failure is returned instead.
    #[allow(clippy::result_large_err)] // the error is the cold path
    pub(crate) fn send(
        &self,
        request: pb::CheckOrderStreamRequest,
        done: oneshot::Sender<Verdict>,
    ) -> Result<(), Verdict> {
        let waker = {
            let mut state = self.lock();
            if let Some((cause, why)) = &state.broken {
                return Err(Verdict::failed(
                    *cause,
                    format!("the stream is broken: {why}"),
                ));
            }
            if state.queue.len() + state.unanswered.len() >= MAX_IN_FLIGHT {
                return Err(Verdict::failed(
                    Cause::ClientError,
                    format!("more than {MAX_IN_FLIGHT} checks in flight"),
                ));
            }
            state.queue.push_back(Outgoing {
                request,
                done,
                queued: Instant::now(),
            });
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Called by a check whose deadline passed. One late answer is jitter; no answer at all
    /// for `stall_after` is a hung stream (or a connection that never came), replaced.
    pub(crate) fn expired(&self) {
        let mut state = self.lock();
        let oldest = state
            .unanswered
            .front()
            .map(|u| u.queued)
            .or_else(|| state.queue.front().map(|o| o.queued));
        if oldest.is_some_and(|t| t.elapsed() > self.stall_after) {
            let why = format!("no answer for {:?}; stream replaced", self.stall_after);
            self.break_locked(&mut state, Cause::Deadline, why);
        }
    }

    /// Matches an answer to the oldest unanswered request; false once broken.
    pub(crate) fn on_answer(&self, answer: &pb::CheckOrderStreamResponse) -> bool {
        let mut state = self.lock();
        if state.broken.is_some() {
            return false;
        }
        let Some(expected) = state.unanswered.pop_front() else {
            let why = format!(
                "answer to request {}, which was never sent",
                answer.request_id
            );
            self.break_locked(&mut state, Cause::Malformed, why);
            return false;
        };
        if answer.request_id != expected.id {
            let why = format!(
                "answer to request {}, expected {}; stream replaced",
                answer.request_id, expected.id
            );
            let _ = expected
                .done
                .send(Verdict::failed(Cause::Malformed, why.clone()));
            self.break_locked(&mut state, Cause::Malformed, why);
            return false;
        }
        drop(state);
        self.answered.store(true, Ordering::Relaxed);
        let _ = expected.done.send(verdict_from_answer(answer));
        true
    }

    /// Breaks the stream: every check in flight on it is answered with `cause` at once.
    pub(crate) fn fail(&self, cause: Cause, why: impl Into<String>) {
        let mut state = self.lock();
        self.break_locked(&mut state, cause, why.into());
    }

    fn break_locked(&self, state: &mut State, cause: Cause, why: String) {
        if state.broken.is_some() {
            return;
        }
        for u in state.unanswered.drain(..) {
            let _ = u.done.send(Verdict::failed(cause, why.clone()));
        }
        for o in state.queue.drain(..) {
            let _ = o.done.send(Verdict::failed(cause, why.clone()));
        }
        state.broken = Some((cause, why));
        if let Some(waker) = state.waker.take() {
            waker.wake(); // the request stream ends
        }
        self.broken.send_replace(true);
    }
}

/// The requests of one stream, as the transport pulls them: the sender side.
pub(crate) struct RequestStream(pub(crate) Arc<CheckStream>);

impl Stream for RequestStream {
    type Item = pb::CheckOrderStreamRequest;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.0.lock();
        if state.broken.is_some() {
            return Poll::Ready(None);
        }
        while let Some(outgoing) = state.queue.pop_front() {
            if outgoing.done.is_closed() {
                continue; // its check gave up before it could be sent: never send it
            }
            state.unanswered.push_back(Unanswered {
                id: outgoing.request.request_id,
                done: outgoing.done,
                queued: outgoing.queued,
            });
            return Poll::Ready(Some(outgoing.request));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
