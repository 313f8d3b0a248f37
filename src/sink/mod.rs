//! Sinks: the POA and AICC clients that turn actions into outcomes.
//!
//! The runtime sees only final outcomes: a sink retries what retrying can
//! fix within its budget (tokens, backoff, `Retry-After`) and then answers
//! [`Outcome::Reject`]. AICC creates are not idempotent, so an AICC create
//! whose result is unknown answers [`Outcome::Unknown`] and must be
//! reconciled ([`AiccApi::find`]) before any resend.
//!
//! - [`poa::PoaSink`]: batching `addTransaction` client, per-item outcomes;
//! - [`aicc::AiccSink`]: create-task client with the reconcile step
//!   ([`aicc::AiccSink::create_reconciled`]);
//! - [`auth`]: tokens; [`retry`]: the pure retry policy; [`config`]: the
//!   `poa:`/`aicc:` config sections.
//!
//! Built with `with_metrics`, a sink records every request (endpoint,
//! outcome, latency), POA batch sizes, retries and token requests into the
//! shared [`Metrics`](crate::observe::Metrics); its `ready()` tells whether
//! a token can be had now (for `/readyz`).
#![warn(missing_docs)]

pub mod aicc;
pub mod auth;
pub mod config;
mod http;
mod instrument;
pub mod poa;
pub mod retry;

pub use aicc::AiccSink;
pub use config::{AiccConfig, AuthConfig, OAuthConfig, PoaConfig, RetryConfig, StaticTokenConfig};
pub use poa::PoaSink;

use futures::future::BoxFuture;

use crate::contract::{aicc::AiccTaskInfo, poa::PoaItem};
use crate::state::AiccIntent;

/// Why a sink gave up on an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkReason {
    /// The API answered that this item is invalid (POA item code 400, AICC
    /// 4xx with a `resCode`): resending cannot help.
    ApiRejected,
    /// Retryable failures until the retry budget ran out.
    RetriesExhausted,
    /// An AICC create of unknown outcome that reconciling could not settle.
    AiccUnreconciled,
}

impl SinkReason {
    /// The label used in dead-letter headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkReason::ApiRejected => "api_rejected",
            SinkReason::RetriesExhausted => "retries_exhausted",
            SinkReason::AiccUnreconciled => "aicc_unreconciled",
        }
    }
}

/// Why a sink could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// A setting is invalid (bad URL, zero batch size, …).
    #[error("invalid sink configuration: {0}")]
    Config(String),
}

impl std::fmt::Display for SinkReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The final outcome of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Created (or already existed: POA 2003). `task_id` is the POA taskId
    /// or the id AICC returned.
    Done {
        /// The POA taskId, or the id AICC generated.
        task_id: String,
    },
    /// Given up; goes to the dead-letter topic with this reason.
    Reject {
        /// Machine-readable: for headers and metrics.
        reason: SinkReason,
        /// For humans: the last error, with status and API message.
        message: String,
        /// Requests that carried the action.
        attempts: u32,
    },
    /// AICC only: the create may or may not have happened (timeout after
    /// sending, connection reset mid-response). Reconcile before resending.
    Unknown {
        /// What made the outcome unknown.
        message: String,
        /// Requests that carried the action.
        attempts: u32,
    },
}

/// The POA `addTransaction` sink. Implementations batch concurrent sends.
pub trait PoaApi: Send + Sync + 'static {
    /// Sends one todo of instance `instance` (two items of one instance are
    /// never in the same batch) and resolves with its own outcome.
    fn send(&self, instance: &str, item: PoaItem) -> BoxFuture<'_, Outcome>;

    /// For readiness: whether a token can be had now.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// The AICC task sink.
pub trait AiccApi: Send + Sync + 'static {
    /// Creates a task once (no blind resend on an ambiguous failure).
    fn create(&self, info: AiccTaskInfo) -> BoxFuture<'_, Outcome>;
    /// Looks for a task created by `intent` (`task/list` by creatorId,
    /// title and relateId/ownerId): `Ok(Some(id))` if it exists.
    fn find(&self, intent: AiccIntent) -> BoxFuture<'_, Result<Option<String>, String>>;

    /// For readiness: whether a token can be had now.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}
