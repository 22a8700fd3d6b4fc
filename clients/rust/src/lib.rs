//! A thin, **fail-closed** async client of the ESS sidecar (`ess.v1.GuardService`): ask
//! before every order "may I send this?".
//!
//! [`Client::check`] asks over one long-lived `CheckOrderStream` (many checks in flight
//! from many tasks, answers matched by `request_id`) and never returns an error: anything
//! short of a clear, self-consistent answer from the sidecar within the check's deadline
//! (5 ms by default) is a denial whose [`Verdict::cause`] says why
//! ([`Verdict::reason_name`] is then `"CLIENT_FAIL_CLOSED"`). A broken stream is replaced
//! in the background; no answer is ever taken from a stream that broke.
//!
//! The other RPCs (fills, order updates, positions, heartbeats, metrics, triggers) are thin
//! wrappers that return the gRPC [`tonic::Status`] like any call.
//!
//! ```no_run
//! use std::time::Duration;
//! use ess_client::{Client, Order, Side};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let guard = Client::builder("unix:/run/ess/ess.sock").token("executor-token").build()?;
//! guard.connect(Duration::from_secs(1)).await?;
//! let verdict = guard.check(Order::new("acc-1", "momo", "AAPL", Side::Buy, 10.0, 187.5)).await;
//! if !verdict.allowed {
//!     println!("denied: {} {}", verdict.reason_name(), verdict.message);
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;

mod client;
mod connector;
mod failures;
mod heartbeat;
mod rpc;
mod stream;
mod verdict;

#[doc(hidden)]
pub mod cli;

/// The generated `ess.v1` messages, enums, client and server (`tonic-prost-build`, from
/// `proto/ess/v1/guard.proto` at build time).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("ess.v1");
}

pub use client::{
    Bearer, Client, ClientBuilder, Order, Stub, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEADLINE,
    DEFAULT_LOG_INTERVAL, DEFAULT_RECONNECT_BASE, DEFAULT_RECONNECT_MAX, DEFAULT_RPC_TIMEOUT,
    DEFAULT_STALL_AFTER,
};
pub use heartbeat::{Alive, HeartbeatConfig, Heartbeater, OnHeartbeatError};
pub use pb::{DecisionReason, OrderStatus, Side};
pub use rpc::{Fill, OrderUpdate, Snapshot, MAX_REASON_CHARS};
pub use tonic::transport::{Certificate, ClientTlsConfig, Identity};
pub use tonic::{Code, Status};
pub use verdict::{
    parse_scope, parse_side, scope_string, Cause, Verdict, REASON_CLIENT_FAIL_CLOSED,
};

/// What can go wrong outside of checks (which never fail: they deny).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The target is not `unix:/path`, `host:port` or `http(s)://host:port`.
    InvalidTarget(String),
    /// A bad option (a zero deadline or stall_after, a bad reconnect backoff, no runtime).
    InvalidOption(String),
    /// A token with a byte outside printable ASCII (0x20-0x7E) once stripped of the ASCII
    /// space around it, such as a tab inside; it says where, never the token.
    InvalidToken(String),
    /// A TLS file could not be read, or the TLS configuration was refused.
    Tls(String),
    /// [`Client::connect`] did not get a stream in time (the client keeps trying).
    NotReached(String),
    /// The client is closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidTarget(why) => write!(f, "ess: invalid target {why}"),
            Error::InvalidOption(why) => write!(f, "ess: {why}"),
            Error::InvalidToken(why) => write!(f, "ess: invalid token: {why}"),
            Error::Tls(why) => write!(f, "ess: TLS: {why}"),
            Error::NotReached(why) => write!(f, "ess: sidecar not reached: {why}"),
            Error::Closed => f.write_str("ess: the client is closed"),
        }
    }
}

impl std::error::Error for Error {}

/// The README's example, compiled and run by `cargo test` (with no sidecar, it fails closed).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests;
