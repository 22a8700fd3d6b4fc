//! Verdicts, failure causes, and the rules that decide whether an answer can be trusted.

use std::fmt;

use tonic::{Code, Status};

use crate::pb::{self, check_order_stream_response, DecisionReason};

/// The reason a [`Verdict`] names when the client could not get a trustworthy decision
/// from the sidecar and denied the order itself.
pub const REASON_CLIENT_FAIL_CLOSED: &str = "CLIENT_FAIL_CLOSED";

/// Why a check failed closed (the client denied the order itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// No answer within the check's deadline.
    Deadline,
    /// The sidecar cannot be reached, or answered `UNAVAILABLE` (shutting down, or its
    /// state store cannot make a transition durable).
    Unavailable,
    /// The stream ended, or failed with `CANCELLED`, `INTERNAL` or `UNKNOWN`.
    StreamBroken,
    /// The sidecar rejected the order as bad input ([`Verdict::field`] names the field).
    RequestError,
    /// An answer this client cannot trust: no decision nor error, an unknown or unspecified
    /// reason, `allowed` contradicting `reason == ALLOWED`, or a wrong `request_id`.
    Malformed,
    /// The sidecar refused the call (`UNAUTHENTICATED`, `PERMISSION_DENIED`,
    /// `UNIMPLEMENTED`, ...).
    Refused,
    /// The client is closed, more than 4096 checks are queued on its stream, or it hit a
    /// bug of its own.
    ClientError,
}

impl Cause {
    /// Every cause, in a fixed order (for metrics).
    pub const ALL: [Cause; 7] = [
        Cause::Deadline,
        Cause::Unavailable,
        Cause::StreamBroken,
        Cause::RequestError,
        Cause::Malformed,
        Cause::Refused,
        Cause::ClientError,
    ];

    /// The cause's name, e.g. `"deadline"` (the Go and Python clients use the same).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Deadline => "deadline",
            Cause::Unavailable => "unavailable",
            Cause::StreamBroken => "stream_broken",
            Cause::RequestError => "request_error",
            Cause::Malformed => "malformed",
            Cause::Refused => "refused",
            Cause::ClientError => "client_error",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The cause of a call or stream that ended with `code`: the connectivity codes are
    /// told apart; anything else is the sidecar refusing the call.
    pub fn of_code(code: Code) -> Cause {
        match code {
            Code::Unavailable => Cause::Unavailable,
            Code::DeadlineExceeded => Cause::Deadline,
            Code::Cancelled | Code::Internal | Code::Unknown => Cause::StreamBroken,
            Code::InvalidArgument => Cause::RequestError,
            _ => Cause::Refused,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to "may I send this order?". [`Verdict::allowed`] is the only field an
/// executor must obey.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// The sidecar's reason; `Unspecified` when the check failed closed.
    pub reason: DecisionReason,
    /// The sidecar's message, or why the check failed closed.
    pub message: String,
    /// `None` for a decision of the sidecar; otherwise why the client denied the order.
    pub cause: Option<Cause>,
    /// With [`Cause::RequestError`]: the offending field, e.g. `order.quantity`.
    pub field: String,
    pub state_version: u64,
    pub decision_id: String,
    /// `"GLOBAL"` or `"KIND:id"` of the scope whose state denied the order, if any.
    pub blocking_scope: String,
    /// The order's client_order_id (made up by the client when none was given): send the
    /// order with it, and report its fills and updates with it.
    pub client_order_id: String,
}

impl Verdict {
    /// A denial by the client itself.
    pub fn failed(cause: Cause, message: impl Into<String>) -> Verdict {
        Verdict {
            allowed: false,
            reason: DecisionReason::Unspecified,
            message: message.into(),
            cause: Some(cause),
            field: String::new(),
            state_version: 0,
            decision_id: String::new(),
            blocking_scope: String::new(),
            client_order_id: String::new(),
        }
    }

    /// Whether the client denied the order itself for lack of a trustworthy decision.
    pub fn failed_closed(&self) -> bool {
        self.cause.is_some()
    }

    /// The reason without its `DECISION_REASON_` prefix, e.g. `"SCOPE_TRIPPED"`, or
    /// `"CLIENT_FAIL_CLOSED"` when the check failed closed.
    pub fn reason_name(&self) -> &'static str {
        if self.cause.is_some() {
            return REASON_CLIENT_FAIL_CLOSED;
        }
        let name = self.reason.as_str_name();
        name.strip_prefix("DECISION_REASON_").unwrap_or(name)
    }
}

/// `"GLOBAL"` or `"KIND:id"`, the way operators write scopes.
pub fn scope_string(scope: &pb::Scope) -> String {
    let kind = pb::ScopeKind::try_from(scope.kind)
        .map(|k| k.as_str_name())
        .unwrap_or("SCOPE_KIND_UNSPECIFIED");
    let kind = kind.strip_prefix("SCOPE_KIND_").unwrap_or(kind);
    if scope.kind == pb::ScopeKind::Global as i32 {
        kind.to_string()
    } else {
        format!("{kind}:{}", scope.id)
    }
}

/// Reads `"GLOBAL"` or `"KIND:id"` (KIND one of ACCOUNT, STRATEGY, SYMBOL, in any case).
pub fn parse_scope(text: &str) -> Option<pb::Scope> {
    if text.eq_ignore_ascii_case("GLOBAL") {
        return Some(pb::Scope {
            kind: pb::ScopeKind::Global as i32,
            id: String::new(),
        });
    }
    let (kind, id) = text.split_once(':')?;
    let kind = match kind.to_ascii_uppercase().as_str() {
        "ACCOUNT" => pb::ScopeKind::Account,
        "STRATEGY" => pb::ScopeKind::Strategy,
        "SYMBOL" => pb::ScopeKind::Symbol,
        _ => return None,
    };
    (!id.is_empty()).then(|| pb::Scope {
        kind: kind as i32,
        id: id.to_string(),
    })
}

/// Reads `"buy"` or `"sell"` (any case, with or without `SIDE_`).
pub fn parse_side(text: &str) -> Option<pb::Side> {
    let upper = text.to_ascii_uppercase();
    match upper.strip_prefix("SIDE_").unwrap_or(&upper) {
        "BUY" => Some(pb::Side::Buy),
        "SELL" => Some(pb::Side::Sell),
        _ => None,
    }
}

/// A decision is trusted only if it is complete and self-consistent.
pub(crate) fn verdict_from_decision(decision: Option<&pb::CheckOrderResponse>) -> Verdict {
    let Some(decision) = decision else {
        return Verdict::failed(Cause::Malformed, "answer carries no decision");
    };
    let reason = match DecisionReason::try_from(decision.reason) {
        Ok(DecisionReason::Unspecified) | Err(_) => {
            return Verdict::failed(
                Cause::Malformed,
                format!("unknown decision reason {}", decision.reason),
            )
        }
        Ok(reason) => reason,
    };
    if decision.allowed != (reason == DecisionReason::Allowed) {
        return Verdict::failed(
            Cause::Malformed,
            format!(
                "allowed={} contradicts reason {}",
                decision.allowed,
                reason.as_str_name()
            ),
        );
    }
    Verdict {
        allowed: decision.allowed,
        reason,
        message: decision.message.clone(),
        cause: None,
        field: String::new(),
        state_version: decision.state_version,
        decision_id: decision.decision_id.clone(),
        blocking_scope: decision
            .blocking_scope
            .as_ref()
            .map(scope_string)
            .unwrap_or_default(),
        client_order_id: String::new(),
    }
}

/// One CheckOrderStream answer (its request_id already matched).
pub(crate) fn verdict_from_answer(answer: &pb::CheckOrderStreamResponse) -> Verdict {
    match &answer.result {
        Some(check_order_stream_response::Result::Decision(decision)) => {
            verdict_from_decision(Some(decision))
        }
        Some(check_order_stream_response::Result::Error(error)) => {
            let message = if error.message.is_empty() {
                "the sidecar rejected the order".to_string()
            } else {
                error.message.clone()
            };
            let mut verdict = Verdict::failed(Cause::RequestError, message);
            verdict.field = error.field.clone();
            verdict
        }
        None => Verdict::failed(
            Cause::Malformed,
            "answer carries neither a decision nor an error",
        ),
    }
}

/// An RPC error as a fail-closed verdict.
pub(crate) fn failure_of(status: &Status) -> Verdict {
    let cause = Cause::of_code(status.code());
    let code = format!("{:?}", status.code());
    Verdict::failed(
        cause,
        format!("{}: {}", to_upper_snake(&code), status.message()),
    )
}

/// `DeadlineExceeded` -> `DEADLINE_EXCEEDED`, the way gRPC names codes everywhere else.
fn to_upper_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}
