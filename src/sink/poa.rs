//! The POA `addTransaction` sink: batches todos from many concurrent
//! callers and answers each with its own [`Outcome`].
//!
//! How it works:
//! - [`PoaSink::send`](PoaApi::send) queues the item and waits for its
//!   outcome. One batcher task gathers queued items for up to `linger`
//!   (counted from the oldest item) or `max_batch` items, then hands the
//!   batch to a task of its own; at most `max_in_flight` batches are under
//!   way (retries included). While all slots are busy items queue up, so
//!   batches grow under load.
//! - An instance has at most one item in flight: a second item of the same
//!   instance waits for the batch of the first to finish and goes in a later
//!   batch. POA groups the items of one batch by (`transTypeCode, nodeId,
//!   initiator, serialNumber`) and a chained item may name a todo created in
//!   the same batch; keeping an instance's items apart and in order avoids
//!   both.
//! - Whole-batch failures (HTTP 5xx/408/429, outer `code` ≠ 0, timeouts,
//!   connection errors, undocumented bodies) are retried with backoff per
//!   [`retry::classify`]; a 401/403 invalidates the token and resends once at
//!   once. When the budget runs out every item of the batch is rejected
//!   with [`SinkReason::RetriesExhausted`] and the last error.
//! - Each item's outcome comes from `data.errorIds[]`, matched by taskId,
//!   per [`retry::classify_poa_item`]: absent → `Done`; 2003 → `Done`;
//!   400-class → `Reject(ApiRejected)`; 500/2004/2008/2009 → resent alone
//!   (with the other such items) up to `item_retries` times, then
//!   `Reject(RetriesExhausted)`. Resending is safe: taskIds are
//!   deterministic, so a resend of a created todo answers 2003.
//! - A batch body is serialized once per round and reused across retries.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::auth::{self, HeaderStyle, Token, TokenProvider};
use super::config::{PoaConfig, RetryConfig, ms};
use super::http;
use super::instrument::{self, Instruments};
use super::retry::{self, BodyShape, Budget, Call, ItemVerdict, Observed, Verdict};
use super::{Outcome, PoaApi, SinkError, SinkReason};
use crate::contract::poa::{ADD_TRANSACTION_PATH, PoaItem, PoaItemError, PoaResponse, TOKEN_PATH};
use crate::observe::Metrics;

/// The POA sink. Cheap to clone: clones share the batcher, the token cache
/// and the connection pool. The batcher stops when the last clone is
/// dropped and the queued items are answered.
#[derive(Clone)]
pub struct PoaSink {
    tx: mpsc::Sender<Job>,
    /// Shared with the batcher; for [`PoaApi::ready`].
    tokens: TokenProvider,
}

impl std::fmt::Debug for PoaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoaSink").finish_non_exhaustive()
    }
}

/// One queued item and where its outcome goes.
struct Job {
    instance: Box<str>,
    item: PoaItem,
    reply: oneshot::Sender<Outcome>,
    queued_at: Instant,
}

impl PoaSink {
    /// Builds the sink and spawns its batcher on the current Tokio runtime.
    /// It records no metrics; see [`PoaSink::with_metrics`].
    pub fn new(config: PoaConfig) -> Result<Self, SinkError> {
        Self::build(config, None)
    }

    /// Like [`PoaSink::new`], recording requests, latency, batch sizes,
    /// retries and token requests (as `target="poa"`) into `metrics`.
    pub fn with_metrics(config: PoaConfig, metrics: Arc<Metrics>) -> Result<Self, SinkError> {
        Self::build(config, Some(metrics))
    }

    fn build(config: PoaConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, SinkError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SinkError::Config("the POA sink must be created inside a Tokio runtime".into()))?;
        let url = http::join(&config.base_url, ADD_TRANSACTION_PATH)?;
        let token_url = http::join(&config.base_url, TOKEN_PATH)?;
        let instruments = Instruments::new(metrics, "poa");
        let tokens = TokenProvider::instrumented(&config.auth, token_url.as_str(), instruments.clone())?;
        let client = http::client(ms(config.request_timeout_ms), ms(config.connect_timeout_ms))?;
        let sender = Arc::new(Sender {
            client,
            url,
            tokens: tokens.clone(),
            instruments,
            style: HeaderStyle::Authorization {
                prefix: config.authorization_prefix.clone(),
            },
            retry: config.retry.clone(),
            item_retries: config.item_retries,
            item_retry_backoff_ms: config.item_retry_backoff_ms,
        });
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let batcher = Batcher {
            rx,
            done_tx,
            done_rx,
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            busy: HashSet::new(),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            sender,
            linger: ms(config.linger_ms),
            max_batch: config.max_batch,
            open: true,
        };
        runtime.spawn(batcher.run());
        Ok(Self { tx, tokens })
    }
}

fn stopped() -> Outcome {
    Outcome::Reject {
        reason: SinkReason::RetriesExhausted,
        message: "the POA sink stopped before answering".to_owned(),
        attempts: 0,
    }
}

impl PoaApi for PoaSink {
    fn send(&self, instance: &str, item: PoaItem) -> BoxFuture<'_, Outcome> {
        let instance: Box<str> = instance.into();
        async move {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                instance,
                item,
                reply,
                queued_at: Instant::now(),
            };
            if self.tx.send(job).await.is_err() {
                return stopped();
            }
            answer.await.unwrap_or_else(|_| stopped())
        }
        .boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        self.tokens.ready(auth::READY_WAIT).boxed()
    }
}

/// Gathers items into batches; owns which instances are in flight.
struct Batcher {
    rx: mpsc::Receiver<Job>,
    /// Finished batches report their instances here.
    done_tx: mpsc::UnboundedSender<Vec<Box<str>>>,
    done_rx: mpsc::UnboundedReceiver<Vec<Box<str>>>,
    /// Items free to go, at most one per instance.
    ready: VecDeque<Job>,
    /// Items whose instance is busy, in arrival order per instance.
    waiting: HashMap<Box<str>, VecDeque<Job>>,
    /// Instances with an item in `ready` or in flight.
    busy: HashSet<Box<str>>,
    permits: Arc<Semaphore>,
    sender: Arc<Sender>,
    linger: Duration,
    max_batch: usize,
    /// False once every `PoaSink` is dropped.
    open: bool,
}

impl Batcher {
    fn admit(&mut self, job: Job) {
        if self.busy.contains(&job.instance) {
            self.waiting
                .entry(job.instance.clone())
                .or_default()
                .push_back(job);
        } else {
            self.busy.insert(job.instance.clone());
            self.ready.push_back(job);
        }
    }

    fn release(&mut self, instances: Vec<Box<str>>) {
        for instance in instances {
            let next = match self.waiting.get_mut(&instance) {
                Some(queue) => {
                    let next = queue.pop_front();
                    if queue.is_empty() {
                        self.waiting.remove(&instance);
                    }
                    next
                }
                None => None,
            };
            match next {
                // The instance stays busy with its next item.
                Some(job) => self.ready.push_back(job),
                None => {
                    self.busy.remove(&instance);
                }
            }
        }
    }

    fn on_recv(&mut self, job: Option<Job>) {
        match job {
            Some(job) => self.admit(job),
            None => self.open = false,
        }
    }

    async fn run(mut self) {
        loop {
            // 1. Wait for an item that is free to go.
            while self.ready.is_empty() {
                if !self.open && self.busy.is_empty() {
                    return;
                }
                tokio::select! {
                    job = self.rx.recv(), if self.open => self.on_recv(job),
                    Some(done) = self.done_rx.recv() => self.release(done),
                    else => return,
                }
            }
            // 2. Wait for a request slot; keep admitting meanwhile, up to one
            //    batch (the bounded queue pushes back on callers beyond that).
            let permit: OwnedSemaphorePermit = loop {
                let room = self.ready.len() < self.max_batch;
                tokio::select! {
                    biased;
                    permit = self.permits.clone().acquire_owned() => match permit {
                        Ok(p) => break p,
                        // The semaphore is never closed.
                        Err(_) => return,
                    },
                    Some(done) = self.done_rx.recv() => self.release(done),
                    job = self.rx.recv(), if self.open && room => self.on_recv(job),
                }
            };
            // 3. Linger for company, counted from the oldest ready item.
            let deadline = self
                .ready
                .front()
                .map_or_else(Instant::now, |j| j.queued_at + self.linger);
            while self.ready.len() < self.max_batch && self.open {
                tokio::select! {
                    biased;
                    job = self.rx.recv() => self.on_recv(job),
                    Some(done) = self.done_rx.recv() => self.release(done),
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            // 4. Send.
            let n = self.ready.len().min(self.max_batch);
            let jobs: Vec<Job> = self.ready.drain(..n).collect();
            let sender = self.sender.clone();
            let done = self.done_tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                sender.deliver(jobs, done).await;
            });
        }
    }
}

/// Reports a batch's instances as free when dropped, even if the task
/// delivering it panicked: otherwise their next items would wait forever.
struct Release {
    instances: Vec<Box<str>>,
    done: mpsc::UnboundedSender<Vec<Box<str>>>,
}

impl Drop for Release {
    fn drop(&mut self) {
        // Fails only when the batcher is gone, and then nobody waits.
        let _ = self.done.send(std::mem::take(&mut self.instances));
    }
}

/// Sends batches: HTTP, tokens, retries, outcome mapping.
struct Sender {
    client: reqwest::Client,
    url: reqwest::Url,
    tokens: TokenProvider,
    instruments: Instruments,
    style: HeaderStyle,
    retry: RetryConfig,
    item_retries: u32,
    item_retry_backoff_ms: u64,
}

/// A batch POA processed (`code` 0): its failed items.
struct Posted {
    errors: Vec<PoaItemError>,
    attempts: u32,
}

/// A batch that could not be delivered.
struct Failed {
    reason: SinkReason,
    message: String,
    attempts: u32,
}

/// What one request observed.
struct Attempt {
    observed: Observed,
    message: String,
    response: Option<PoaResponse>,
    token: Option<Token>,
}

impl Attempt {
    fn not_sent(message: String) -> Self {
        Self {
            observed: Observed::NotSent,
            message,
            response: None,
            token: None,
        }
    }
}

impl Sender {
    async fn deliver(&self, jobs: Vec<Job>, done: mpsc::UnboundedSender<Vec<Box<str>>>) {
        let n = jobs.len();
        let mut items = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(n);
        let mut release = Release {
            instances: Vec::with_capacity(n),
            done,
        };
        for job in jobs {
            items.push(job.item);
            replies.push(job.reply);
            release.instances.push(job.instance);
        }
        let outcomes = self.send_items(&items).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // The caller may have stopped waiting; nothing to do then.
            let _ = reply.send(outcome);
        }
        drop(release);
    }

    /// The outcome of each item, in order.
    async fn send_items(&self, items: &[PoaItem]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut attempts = vec![0u32; items.len()];
        let mut pending: Vec<usize> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if item.task_id.trim().is_empty() {
                outcomes[i] = Some(Outcome::Reject {
                    reason: SinkReason::ApiRejected,
                    message: "taskId is empty: POA needs it (and flowbridge matches outcomes by it)".into(),
                    attempts: 0,
                });
            } else {
                pending.push(i);
            }
        }
        let mut item_delays = retry::backoff(&self.retry, self.item_retry_backoff_ms);
        let mut round = 0u32;
        while !pending.is_empty() {
            let batch: Vec<&PoaItem> = pending.iter().map(|&i| &items[i]).collect();
            let body = match serde_json::to_vec(&batch) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    for &i in &pending {
                        outcomes[i] = Some(Outcome::Reject {
                            reason: SinkReason::ApiRejected,
                            message: format!("the batch cannot be serialized: {e}"),
                            attempts: attempts[i],
                        });
                    }
                    break;
                }
            };
            let posted = match self.post(body, pending.len(), round > 0).await {
                Ok(p) => p,
                Err(f) => {
                    for &i in &pending {
                        outcomes[i] = Some(Outcome::Reject {
                            reason: f.reason,
                            message: f.message.clone(),
                            attempts: attempts[i] + f.attempts,
                        });
                    }
                    break;
                }
            };
            let mut by_task: HashMap<&str, &PoaItemError> = HashMap::with_capacity(posted.errors.len());
            for e in &posted.errors {
                match e.task_id.as_deref() {
                    Some(t) => {
                        by_task.entry(t).or_insert(e);
                    }
                    None => {
                        tracing::warn!(code = e.code, message = ?e.message, "POA errorIds entry without taskId; ignored")
                    }
                }
            }
            let mut again = Vec::new();
            for &i in &pending {
                attempts[i] += posted.attempts;
                let item = &items[i];
                let Some(e) = by_task.remove(item.task_id.as_str()) else {
                    outcomes[i] = Some(Outcome::Done {
                        task_id: item.task_id.clone(),
                    });
                    continue;
                };
                let text = e.message.as_deref().unwrap_or("");
                outcomes[i] = match retry::classify_poa_item(e.code) {
                    ItemVerdict::Done => Some(Outcome::Done {
                        task_id: item.task_id.clone(),
                    }),
                    ItemVerdict::Reject => Some(Outcome::Reject {
                        reason: SinkReason::ApiRejected,
                        message: format!("POA rejected todo {}: code {}: {text}", item.task_id, e.code),
                        attempts: attempts[i],
                    }),
                    ItemVerdict::Retry if round < self.item_retries => {
                        tracing::info!(task_id = %item.task_id, code = e.code, message = text, round, "POA item failed; will resend");
                        again.push(i);
                        None
                    }
                    ItemVerdict::Retry => Some(Outcome::Reject {
                        reason: SinkReason::RetriesExhausted,
                        message: format!(
                            "POA kept failing todo {} ({} resends): code {}: {text}",
                            item.task_id, self.item_retries, e.code
                        ),
                        attempts: attempts[i],
                    }),
                };
            }
            for (task_id, e) in by_task {
                tracing::warn!(
                    task_id,
                    code = e.code,
                    "POA errorIds names a taskId not in the batch; ignored"
                );
            }
            pending = again;
            round += 1;
            if !pending.is_empty() {
                let delay = item_delays.next().unwrap_or(ms(self.retry.max_backoff_ms));
                tokio::time::sleep(delay).await;
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                // Every index is either answered above or still pending when
                // the loop breaks, and the breaks answer all pending items.
                o.unwrap_or_else(|| Outcome::Reject {
                    reason: SinkReason::RetriesExhausted,
                    message: "internal: no outcome was recorded".into(),
                    attempts: 0,
                })
            })
            .collect()
    }

    /// One batch through the whole-batch retry loop; `resend` when it
    /// carries items resent after item-level failures.
    async fn post(&self, body: Bytes, items: usize, resend: bool) -> Result<Posted, Failed> {
        let mut budget = Budget::new(&self.retry);
        let mut sent = 0u32;
        let mut just_refreshed = false;
        self.instruments.poa_batch(items);
        loop {
            sent += 1;
            if sent > 1 || resend {
                self.instruments.retry();
            }
            let attempt = self.post_once(body.clone()).await;
            let verdict = retry::classify(Call::PoaAddTransaction, attempt.observed);
            let after = match verdict {
                Verdict::Success => {
                    if let Some(resp) = attempt.response {
                        let errors = resp.data.map(|d| d.error_ids).unwrap_or_default();
                        tracing::debug!(
                            items,
                            failed = errors.len(),
                            attempts = sent,
                            "POA batch processed"
                        );
                        return Ok(Posted {
                            errors,
                            attempts: sent,
                        });
                    }
                    // Success is only classified with a parsed response.
                    None
                }
                Verdict::Reject => {
                    return Err(Failed {
                        reason: SinkReason::ApiRejected,
                        message: format!("POA refused the whole batch: {}", attempt.message),
                        attempts: sent,
                    });
                }
                Verdict::RefreshToken => {
                    if let Some(t) = &attempt.token {
                        self.tokens.invalidate(t);
                    }
                    if !just_refreshed {
                        just_refreshed = true;
                        tracing::info!(message = %attempt.message, "POA refused the token; refreshing and resending");
                        continue;
                    }
                    None
                }
                Verdict::Retry { after } => after,
                Verdict::Unknown => None,
            };
            just_refreshed = false;
            match budget.next_delay(after) {
                Some(delay) => {
                    tracing::warn!(items, attempt = sent, ?delay, error = %attempt.message, "POA batch failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(Failed {
                        reason: SinkReason::RetriesExhausted,
                        message: format!("POA batch failed {sent} times; last: {}", attempt.message),
                        attempts: sent,
                    });
                }
            }
        }
    }

    /// One request, recorded with its outcome and latency.
    async fn post_once(&self, body: Bytes) -> Attempt {
        let token = match self.tokens.get().await {
            Ok(t) => t,
            Err(e) => {
                self.instruments
                    .request(instrument::ADD_TRANSACTION, instrument::NO_TOKEN, None);
                return Attempt::not_sent(format!("no POA token: {e}"));
            }
        };
        let (name, value) = match token.header(&self.style) {
            Ok(h) => h,
            Err(e) => {
                self.instruments
                    .request(instrument::ADD_TRANSACTION, instrument::NO_TOKEN, None);
                return Attempt::not_sent(e.to_string());
            }
        };
        let started = Instant::now();
        let attempt = self.send_once(body, token, name, value).await;
        let outcome = match (&attempt.observed, &attempt.response) {
            (Observed::Response { .. }, Some(r))
                if r.data.as_ref().is_some_and(|d| !d.error_ids.is_empty()) =>
            {
                instrument::ITEM_ERRORS
            }
            (observed, _) => instrument::outcome(observed),
        };
        self.instruments
            .request(instrument::ADD_TRANSACTION, outcome, Some(started.elapsed()));
        attempt
    }

    async fn send_once(
        &self,
        body: Bytes,
        token: Token,
        name: reqwest::header::HeaderName,
        value: reqwest::header::HeaderValue,
    ) -> Attempt {
        let sent = self
            .client
            .post(self.url.clone())
            .header(name, value)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt {
                    observed: http::observe_error(&e),
                    message: http::describe(&e),
                    response: None,
                    token: Some(token),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = http::retry_after(&resp);
        let bytes = match http::read_body(resp).await {
            Ok(b) => b,
            Err(e) => {
                return Attempt {
                    observed: match http::observe_error(&e) {
                        Observed::TimedOut => Observed::TimedOut,
                        _ => Observed::Broken,
                    },
                    message: format!(
                        "HTTP {status}, then reading the body failed: {}",
                        http::describe(&e)
                    ),
                    response: None,
                    token: Some(token),
                };
            }
        };
        let (body_shape, response, detail) = match bytes.as_deref().map(serde_json::from_slice::<PoaResponse>)
        {
            None => (
                BodyShape::Undocumented,
                None,
                "body over the size limit".to_owned(),
            ),
            Some(Ok(r)) if r.code == 0 && r.data.is_some() => (BodyShape::Success, Some(r), "ok".to_owned()),
            Some(Ok(r)) if r.code == 0 => (BodyShape::Undocumented, None, "code 0 without data".to_owned()),
            Some(Ok(r)) => {
                let detail = format!("code {}: {}", r.code, r.message.as_deref().unwrap_or(""));
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
        Attempt {
            observed: Observed::Response {
                status,
                body: body_shape,
                retry_after,
            },
            message: format!("HTTP {status}: {detail}"),
            response,
            token: Some(token),
        }
    }
}
