//! The AICC create-task sink, and the reconcile step that keeps a create
//! of unknown outcome from becoming a duplicate task.
//!
//! AICC generates task ids, so a create is **not idempotent**. The sink
//! therefore resends a create only when nothing can have been created (per
//! [`retry::classify`]: connection refused, 5xx other than 504, 408, 429,
//! a refused token). A create that may have happened (timeout after
//! sending, connection broken mid-response, a 2xx it cannot read, 504)
//! answers [`Outcome::Unknown`] at once.
//!
//! [`AiccSink::create_reconciled`] is what the runtime calls: it settles an
//! `Unknown` by looking the task up (`task/list` by creatorId + title +
//! ownerId/relateId) after `reconcile_delay`; found → `Done` with its id;
//! not found → **one** resend; if that one is unknown too, one more look,
//! then `Reject(AiccUnreconciled)`. A failed look-up never leads to a
//! resend: it answers `Reject(AiccUnreconciled)` (the dead-letter record
//! says what to check by hand).
//!
//! Limitation: `task/list` cannot tell apart two tasks with the same title,
//! owner, creator and relateId (e.g. two visits of one node). The look-up
//! prefers a task whose description contains the intent id, then the most
//! recently created one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::auth::{self, HeaderStyle, TokenProvider};
use super::config::{AiccConfig, RetryConfig, ms};
use super::http;
use super::instrument::{self, Instruments};
use super::retry::{self, BodyShape, Budget, Call, Observed, Verdict};
use super::{AiccApi, Outcome, SinkError, SinkReason};
use crate::contract::aicc::{
    AiccTaskInfo, CREATE_TASK_PATH, CreateTaskRequest, CreatedTask, Envelope, LIST_LIMIT_MAX, LIST_TASK_PATH,
    ListTasksRequest, ListTasksResult, ListedTask, TOKEN_PATH,
};
use crate::observe::Metrics;
use crate::state::AiccIntent;

/// Pages of `task/list` a look-up reads at most (100 tasks each).
const MAX_LIST_PAGES: u32 = 10;

/// The AICC sink. Cheap to clone (clones share tokens and connections).
#[derive(Clone)]
pub struct AiccSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AiccSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiccSink")
            .field("create_url", &self.inner.create_url.as_str())
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: reqwest::Client,
    create_url: reqwest::Url,
    list_url: reqwest::Url,
    tokens: TokenProvider,
    instruments: Instruments,
    retry: RetryConfig,
    reconcile_delay: Duration,
}

/// A look-up (`task/list`) that did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AICC task/list failed after {attempts} attempt(s): {message}")]
pub struct FindError {
    /// The last error.
    pub message: String,
    /// `task/list` requests made.
    pub attempts: u32,
}

/// How a call through the retry loop ended.
enum Ended<T> {
    Ok(T, u32),
    Rejected(String, u32),
    Exhausted(String, u32),
    Unknown(String, u32),
}

impl AiccSink {
    /// Builds the sink (no background task; no runtime needed until used).
    /// It records no metrics; see [`AiccSink::with_metrics`].
    pub fn new(config: AiccConfig) -> Result<Self, SinkError> {
        Self::build(config, None)
    }

    /// Like [`AiccSink::new`], recording requests, latency, retries and
    /// token requests (as `target="aicc"`) into `metrics`.
    pub fn with_metrics(config: AiccConfig, metrics: Arc<Metrics>) -> Result<Self, SinkError> {
        Self::build(config, Some(metrics))
    }

    fn build(config: AiccConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, SinkError> {
        config.validate()?;
        let instruments = Instruments::new(metrics, "aicc");
        let create_url = http::join(&config.base_url, CREATE_TASK_PATH)?;
        let list_url = http::join(&config.base_url, LIST_TASK_PATH)?;
        let token_url = http::join(&config.base_url, TOKEN_PATH)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client: http::client(ms(config.request_timeout_ms), ms(config.connect_timeout_ms))?,
                create_url,
                list_url,
                tokens: TokenProvider::instrumented(&config.auth, token_url.as_str(), instruments.clone())?,
                instruments,
                retry: config.retry.clone(),
                reconcile_delay: ms(config.reconcile_delay_ms),
            }),
        })
    }

    /// Creates a task once: `Done(taskId)`, `Reject`, or `Unknown` when it
    /// may have been created (never resent blindly).
    pub async fn create_task(&self, info: &AiccTaskInfo) -> Outcome {
        let body = match serde_json::to_vec(&CreateTaskRequest {
            task_info: info.clone(),
        }) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return Outcome::Reject {
                    reason: SinkReason::ApiRejected,
                    message: format!("the task cannot be serialized: {e}"),
                    attempts: 0,
                };
            }
        };
        let ended = self
            .inner
            .call::<CreatedTask>(Call::AiccCreate, &self.inner.create_url, body, |r| {
                !r.task_id.trim().is_empty()
            })
            .await;
        match ended {
            Ended::Ok(created, _) => Outcome::Done {
                task_id: created.task_id,
            },
            Ended::Rejected(message, attempts) => Outcome::Reject {
                reason: SinkReason::ApiRejected,
                message: format!("AICC refused the task: {message}"),
                attempts,
            },
            Ended::Exhausted(message, attempts) => Outcome::Reject {
                reason: SinkReason::RetriesExhausted,
                message: format!("AICC create failed {attempts} times; last: {message}"),
                attempts,
            },
            Ended::Unknown(message, attempts) => Outcome::Unknown {
                message: format!("AICC create may or may not have happened: {message}"),
                attempts,
            },
        }
    }

    /// Looks for the task `intent` created: `Ok(Some(id))` if `task/list`
    /// shows one with its exact title, creator, owner and relateId.
    pub async fn find_task(&self, intent: &AiccIntent) -> Result<Option<String>, FindError> {
        let mut candidates: Vec<ListedTask> = Vec::new();
        let mut attempts = 0;
        for page in 0..MAX_LIST_PAGES {
            let request = ListTasksRequest {
                creator_id: intent.creator_id.clone(),
                title: Some(intent.title.clone()),
                owner_id: Some(intent.owner_id.clone()),
                relate_id: intent.relate_id.clone(),
                start: page * LIST_LIMIT_MAX,
                limit: LIST_LIMIT_MAX,
                ..ListTasksRequest::default()
            };
            let body = serde_json::to_vec(&request).map_err(|e| FindError {
                message: format!("the request cannot be serialized: {e}"),
                attempts,
            })?;
            let ended = self
                .inner
                .call::<ListTasksResult>(Call::AiccList, &self.inner.list_url, Bytes::from(body), |_| true)
                .await;
            let result = match ended {
                Ended::Ok(r, n) => {
                    attempts += n;
                    r
                }
                Ended::Rejected(message, n) | Ended::Exhausted(message, n) | Ended::Unknown(message, n) => {
                    return Err(FindError {
                        message,
                        attempts: attempts + n,
                    });
                }
            };
            let listed = result.task_list.len() as u64;
            candidates.extend(result.task_list.into_iter().filter(|t| matches(t, intent)));
            let seen = u64::from(page * LIST_LIMIT_MAX) + listed;
            if listed == 0 || seen >= result.count {
                break;
            }
        }
        Ok(pick(candidates, intent))
    }

    /// Creates the task for `intent`, settling an unknown outcome by looking
    /// it up before at most one resend (policy in the module docs).
    pub async fn create_reconciled(&self, intent: &AiccIntent, info: AiccTaskInfo) -> Outcome {
        let mut total = 0;
        let mut history = Vec::new();
        for resend in [false, true] {
            if resend {
                self.inner.instruments.retry();
            }
            match self.create_task(&info).await {
                Outcome::Unknown { message, attempts } => {
                    total += attempts;
                    history.push(message);
                }
                Outcome::Reject {
                    reason,
                    message,
                    attempts,
                } => {
                    return Outcome::Reject {
                        reason,
                        message,
                        attempts: total + attempts,
                    };
                }
                done @ Outcome::Done { .. } => return done,
            }
            tokio::time::sleep(self.inner.reconcile_delay).await;
            match self.find_task(intent).await {
                Ok(Some(task_id)) => {
                    tracing::info!(intent = %intent.intent_id, %task_id, "AICC create of unknown outcome had happened");
                    return Outcome::Done { task_id };
                }
                Ok(None) if !resend => {
                    tracing::warn!(intent = %intent.intent_id, "AICC create of unknown outcome did not happen; resending once");
                }
                Ok(None) => {}
                Err(e) => {
                    return Outcome::Reject {
                        reason: SinkReason::AiccUnreconciled,
                        message: format!(
                            "AICC create of unknown outcome ({}) could not be checked: {e}",
                            history.join("; ")
                        ),
                        attempts: total + e.attempts,
                    };
                }
            }
        }
        Outcome::Reject {
            reason: SinkReason::AiccUnreconciled,
            message: format!(
                "AICC create of intent {} had an unknown outcome twice and task/list does not show it ({})",
                intent.intent_id,
                history.join("; ")
            ),
            attempts: total,
        }
    }
}

/// Whether a listed task is the one `intent` would have created. Fields the
/// listing leaves out were already filtered on by AICC; the title is a
/// fuzzy filter there, so it must be present and equal here.
fn matches(t: &ListedTask, intent: &AiccIntent) -> bool {
    t.title.as_deref() == Some(intent.title.as_str())
        && t.creator_id.as_deref().is_none_or(|c| c == intent.creator_id)
        && t.owner_id.as_deref().is_none_or(|o| o == intent.owner_id)
        && match (&intent.relate_id, &t.relate_id) {
            (Some(want), Some(got)) => want == got,
            _ => true,
        }
}

/// The best candidate: one naming the intent id in its description, else
/// the most recently created, else the last listed.
fn pick(candidates: Vec<ListedTask>, intent: &AiccIntent) -> Option<String> {
    candidates
        .into_iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| {
            let named = |t: &ListedTask| {
                t.description
                    .as_deref()
                    .is_some_and(|d| d.contains(&intent.intent_id))
            };
            (named(a), &a.created_date, ia).cmp(&(named(b), &b.created_date, ib))
        })
        .map(|(_, t)| t.task_id)
}

impl Inner {
    /// One call through the retry loop; `valid` checks the `result` of a
    /// `resCode "0"` answer (an empty taskId is not a success).
    async fn call<T: DeserializeOwned>(
        &self,
        call: Call,
        url: &reqwest::Url,
        body: Bytes,
        valid: impl Fn(&T) -> bool,
    ) -> Ended<T> {
        let mut budget = Budget::new(&self.retry);
        let mut sent = 0u32;
        let mut just_refreshed = false;
        let endpoint = match call {
            Call::AiccList => instrument::TASK_LIST,
            _ => instrument::TASK,
        };
        loop {
            sent += 1;
            if sent > 1 {
                self.instruments.retry();
            }
            let started = tokio::time::Instant::now();
            let (observed, message, result, token) = self.call_once::<T>(url, body.clone(), &valid).await;
            match token {
                // No token: nothing was sent.
                None => self.instruments.request(endpoint, instrument::NO_TOKEN, None),
                Some(_) => self.instruments.request(
                    endpoint,
                    instrument::outcome(&observed),
                    Some(started.elapsed()),
                ),
            }
            let verdict = retry::classify(call, observed);
            let after = match verdict {
                Verdict::Success => match result {
                    Some(r) => return Ended::Ok(r, sent),
                    // Success is only classified with a parsed result.
                    None => None,
                },
                Verdict::Reject => return Ended::Rejected(message, sent),
                Verdict::Unknown => return Ended::Unknown(message, sent),
                Verdict::RefreshToken => {
                    if let Some(t) = &token {
                        self.tokens.invalidate(t);
                    }
                    if !just_refreshed {
                        just_refreshed = true;
                        tracing::info!(%message, "AICC refused the token; refreshing and resending");
                        continue;
                    }
                    None
                }
                Verdict::Retry { after } => after,
            };
            just_refreshed = false;
            match budget.next_delay(after) {
                Some(delay) => {
                    tracing::warn!(?call, attempt = sent, ?delay, error = %message, "AICC call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Ended::Exhausted(message, sent),
            }
        }
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        url: &reqwest::Url,
        body: Bytes,
        valid: &impl Fn(&T) -> bool,
    ) -> (Observed, String, Option<T>, Option<super::auth::Token>) {
        let token = match self.tokens.get().await {
            Ok(t) => t,
            Err(e) => return (Observed::NotSent, format!("no AICC token: {e}"), None, None),
        };
        let (name, value) = match token.header(&HeaderStyle::AccessToken) {
            Ok(h) => h,
            Err(e) => return (Observed::NotSent, e.to_string(), None, None),
        };
        let sent = self
            .client
            .post(url.clone())
            .header(name, value)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return (http::observe_error(&e), http::describe(&e), None, Some(token)),
        };
        let status = resp.status().as_u16();
        let retry_after = http::retry_after(&resp);
        let bytes = match http::read_body(resp).await {
            Ok(b) => b,
            Err(e) => {
                let observed = match http::observe_error(&e) {
                    Observed::TimedOut => Observed::TimedOut,
                    _ => Observed::Broken,
                };
                let message = format!(
                    "HTTP {status}, then reading the body failed: {}",
                    http::describe(&e)
                );
                return (observed, message, None, Some(token));
            }
        };
        let parsed = bytes.as_deref().map(serde_json::from_slice::<Envelope<T>>);
        let (shape, result, detail) = match parsed {
            None => (
                BodyShape::Undocumented,
                None,
                "body over the size limit".to_owned(),
            ),
            Some(Ok(env)) if env.res_code == "0" => match env.result {
                Some(r) if valid(&r) => (BodyShape::Success, Some(r), "resCode 0".to_owned()),
                _ => (
                    BodyShape::Undocumented,
                    None,
                    "resCode 0 without the expected result".to_owned(),
                ),
            },
            Some(Ok(env)) => {
                let detail = format!(
                    "resCode {}: {}",
                    env.res_code,
                    env.res_msg.as_deref().unwrap_or("")
                );
                (BodyShape::ApiError, None, detail)
            }
            Some(Err(_)) => (
                BodyShape::Undocumented,
                None,
                format!(
                    "not the documented JSON: {}",
                    http::preview(bytes.as_deref().unwrap_or_default())
                ),
            ),
        };
        let observed = Observed::Response {
            status,
            body: shape,
            retry_after,
        };
        (observed, format!("HTTP {status}: {detail}"), result, Some(token))
    }
}

impl AiccApi for AiccSink {
    fn create(&self, info: AiccTaskInfo) -> BoxFuture<'_, Outcome> {
        async move { self.create_task(&info).await }.boxed()
    }

    fn find(&self, intent: AiccIntent) -> BoxFuture<'_, Result<Option<String>, String>> {
        async move { self.find_task(&intent).await.map_err(|e| e.to_string()) }.boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        self.inner.tokens.ready(auth::READY_WAIT).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent() -> AiccIntent {
        AiccIntent {
            intent_id: "int-1".into(),
            node: "n".into(),
            visit: 1,
            title: "Repair".into(),
            creator_id: "c1".into(),
            owner_id: "o1".into(),
            relate_id: Some("r1".into()),
        }
    }

    fn listed(id: &str, title: &str, created: &str) -> ListedTask {
        ListedTask {
            task_id: id.into(),
            title: Some(title.into()),
            owner_id: Some("o1".into()),
            creator_id: Some("c1".into()),
            relate_id: Some("r1".into()),
            created_date: Some(created.into()),
            ..ListedTask::default()
        }
    }

    #[test]
    fn matching_is_exact_on_title_and_prefers_the_newest() {
        let i = intent();
        assert!(!matches(&listed("a", "Repair 2", "2026-01-01 00:00:00"), &i));
        let mut other_relate = listed("b", "Repair", "2026-01-01 00:00:00");
        other_relate.relate_id = Some("r2".into());
        assert!(!matches(&other_relate, &i));
        let got = pick(
            vec![
                listed("old", "Repair", "2026-01-01 00:00:00"),
                listed("new", "Repair", "2026-01-02 00:00:00"),
            ],
            &i,
        );
        assert_eq!(got.as_deref(), Some("new"));
        let mut named = listed("named", "Repair", "2025-01-01 00:00:00");
        named.description = Some("created for int-1".into());
        let got = pick(vec![named, listed("new", "Repair", "2026-01-02 00:00:00")], &i);
        assert_eq!(got.as_deref(), Some("named"));
        assert_eq!(pick(vec![], &i), None);
    }
}
