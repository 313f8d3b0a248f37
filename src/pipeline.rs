//! One micro-batch of events through decide → sinks → state → ack.
//!
//! A worker takes the events waiting for it (up to a batch size), groups them
//! by instance, and runs the instances concurrently — each instance's events
//! strictly in order. Todos go to the sinks (the POA sink batches them across
//! instances); then every changed state is written in one transaction
//! (group commit); rejected events go to the dead-letter sink; only then are
//! the events reported finished, so their offsets may be committed.
//!
//! The same code serves the Kafka runtime, `demo` and the tests; only the
//! source and the sink implementations differ.
//!
//! Every event is processed inside one `event` span carrying `workflow`,
//! `serialNumber`, `eventId`, `topic`, `partition` and `offset`, so every
//! log line about it (sinks, retries, dead letters) names it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures::future::join_all;
use tracing::Instrument as _;

use crate::engine::{self, Action, AiccCreate};
use crate::event::{DecodeError, Event};
use crate::observe::Metrics;
use crate::observe::metrics::{ReasonLabels, RejectedLabels, TargetLabels, TodoLabels, WorkflowLabels};
use crate::sink::{AiccApi, Outcome, PoaApi, SinkReason};
use crate::state::Status;
use crate::state::{InstanceKey, InstanceState, StateStore, StoreError};
use crate::workflow::Registry;

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp, ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// One consumed record, decoded.
#[derive(Debug, Clone)]
pub struct Work {
    pub origin: Origin,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub event: Result<Event, DecodeError>,
}

/// A record for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The original key, value and headers.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub origin: Origin,
    /// Machine-readable reason (`invalid_transition`, `api_rejected`, …).
    pub reason: &'static str,
    /// Where it failed: `decode`, `decide`, `poa`, `aicc`, `state`.
    pub stage: &'static str,
    pub message: String,
    pub workflow: Option<String>,
    pub serial_number: Option<String>,
    pub attempts: u32,
}

/// Where rejected events go. Returns once the record is durably accepted.
pub trait DeadLetterSink: Send + Sync + 'static {
    fn send<'a>(&'a self, record: &'a DeadLetter) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// How an event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Applied,
    Duplicate,
    DeadLettered { reason: &'static str },
}

/// The span of one event's processing. Fields are recorded by reference
/// (`Display`), so building it copies nothing when no subscriber wants it.
fn event_span(origin: &Origin, event: Option<&Event>) -> tracing::Span {
    let span = tracing::info_span!(
        "event",
        workflow = tracing::field::Empty,
        serialNumber = tracing::field::Empty,
        eventId = tracing::field::Empty,
        topic = %origin.topic,
        partition = origin.partition,
        offset = origin.offset,
    );
    if let Some(e) = event {
        span.record("workflow", e.workflow.as_str());
        span.record("serialNumber", e.serial_number.as_str());
        span.record("eventId", e.event_id.as_str());
    }
    span
}

/// Retry policy for the pipeline's own dependencies (state store, DLQ):
/// failures there cannot be dead-lettered, so the partition waits.
const BACKEND_RETRY_MIN: Duration = Duration::from_millis(50);
const BACKEND_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a micro-batch retries instances whose state write conflicted.
const CONFLICT_RETRIES: u32 = 3;

/// Everything a worker needs.
pub struct Pipeline {
    pub workflows: Arc<Registry>,
    pub store: Arc<dyn StateStore>,
    pub poa: Arc<dyn PoaApi>,
    pub aicc: Arc<dyn AiccApi>,
    pub dlq: Arc<dyn DeadLetterSink>,
    pub metrics: Arc<Metrics>,
}

/// Result of one instance's events within a micro-batch.
struct InstanceRun {
    key: InstanceKey,
    /// The state to write, when it changed.
    state: Option<InstanceState>,
    outcomes: Vec<(usize, Result<Disposition, DeadLetterDraft>)>,
}

/// A dead letter before the original record is attached.
struct DeadLetterDraft {
    reason: &'static str,
    stage: &'static str,
    message: String,
    attempts: u32,
}

impl Pipeline {
    /// Processes a micro-batch; returns each work's origin with how it
    /// ended, in the order given. Returns only when every state write and
    /// dead letter is done.
    pub async fn process(&self, batch: Vec<Work>) -> Vec<(Origin, Disposition)> {
        let n = batch.len();
        let mut results: Vec<Option<Result<Disposition, DeadLetterDraft>>> = (0..n).map(|_| None).collect();
        let mut groups: Vec<(InstanceKey, Vec<usize>)> = Vec::new();
        let mut index: HashMap<InstanceKey, usize> = HashMap::new();
        for (i, w) in batch.iter().enumerate() {
            self.metrics.events_consumed.inc();
            match &w.event {
                Ok(e) => {
                    let key = InstanceKey::new(&e.workflow, &e.serial_number);
                    match index.get(&key) {
                        Some(&g) => groups[g].1.push(i),
                        None => {
                            index.insert(key.clone(), groups.len());
                            groups.push((key, vec![i]));
                        }
                    }
                }
                Err(e) => {
                    results[i] = Some(Err(DeadLetterDraft {
                        reason: engine::Reason::MalformedEvent.as_str(),
                        stage: "decode",
                        message: e.to_string(),
                        attempts: 1,
                    }))
                }
            }
        }

        let mut pending = groups;
        for attempt in 0..=CONFLICT_RETRIES {
            if pending.is_empty() {
                break;
            }
            let keys: Vec<InstanceKey> = pending.iter().map(|(k, _)| k.clone()).collect();
            let states = self
                .with_backend_retry("load states", || self.store.get_many(&keys))
                .await;
            let runs = join_all(
                pending
                    .iter()
                    .zip(states)
                    .map(|((key, idxs), state)| self.run_instance(key.clone(), state, idxs, &batch)),
            )
            .await;
            let conflicted = self.commit(runs, &mut results).await;
            pending.retain(|(k, _)| conflicted.contains(k));
            if attempt == CONFLICT_RETRIES {
                for (key, idxs) in &pending {
                    for &i in idxs {
                        results[i] = Some(Err(DeadLetterDraft {
                            reason: "state_conflict",
                            stage: "state",
                            message: format!(
                                "instance {key} was changed by another replica {CONFLICT_RETRIES} times in a row"
                            ),
                            attempts: CONFLICT_RETRIES + 1,
                        }));
                    }
                }
            }
        }

        // Dead letters, then report.
        let mut out = Vec::with_capacity(n);
        for (w, r) in batch.into_iter().zip(results) {
            let disposition = match r.expect("every work gets a result") {
                Ok(d) => d,
                Err(draft) => {
                    let (workflow, serial_number) = match &w.event {
                        Ok(e) => (Some(e.workflow.clone()), Some(e.serial_number.clone())),
                        Err(_) => (None, None),
                    };
                    let record = DeadLetter {
                        key: w.key,
                        payload: w.payload,
                        headers: w.headers,
                        origin: w.origin.clone(),
                        reason: draft.reason,
                        stage: draft.stage,
                        message: draft.message,
                        workflow,
                        serial_number,
                        attempts: draft.attempts,
                    };
                    let span = event_span(&record.origin, w.event.as_ref().ok());
                    async {
                        tracing::warn!(
                            reason = record.reason,
                            stage = record.stage,
                            attempts = record.attempts,
                            message = %record.message,
                            "event rejected; writing it to the dead-letter topic"
                        );
                        self.with_backend_retry("write to the dead-letter topic", || self.dlq.send(&record))
                            .await;
                    }
                    .instrument(span)
                    .await;
                    self.metrics
                        .events_rejected
                        .get_or_create(&RejectedLabels {
                            workflow: record.workflow.clone().unwrap_or_default(),
                            reason: draft.reason.to_owned(),
                            stage: draft.stage.to_owned(),
                        })
                        .inc();
                    self.metrics
                        .dlq_produced
                        .get_or_create(&ReasonLabels {
                            reason: draft.reason.to_owned(),
                        })
                        .inc();
                    Disposition::DeadLettered { reason: draft.reason }
                }
            };
            out.push((w.origin, disposition));
        }
        out
    }

    /// Writes the changed states in one transaction; records outcomes of
    /// the instances written; returns the keys that conflicted (their
    /// outcomes are left open for a retry).
    async fn commit(
        &self,
        mut runs: Vec<InstanceRun>,
        results: &mut [Option<Result<Disposition, DeadLetterDraft>>],
    ) -> Vec<InstanceKey> {
        let mut delay = BACKEND_RETRY_MIN;
        // Moved out of the runs once (retries reuse them); given back to
        // their runs if a conflict splits the batch.
        let changed: Vec<bool> = runs.iter().map(|r| r.state.is_some()).collect();
        let states: Vec<InstanceState> = runs.iter_mut().filter_map(|r| r.state.take()).collect();
        loop {
            // The store stamps version and write time.
            let started = Instant::now();
            let write = if states.is_empty() {
                Ok(Vec::new())
            } else {
                self.store.put_batch(&states).await
            };
            match write {
                Ok(_) => {
                    if !states.is_empty() {
                        self.metrics
                            .state_write_latency
                            .observe(started.elapsed().as_secs_f64());
                        self.metrics.state_batch_size.observe(states.len() as f64);
                    }
                    for run in runs {
                        for (i, r) in run.outcomes {
                            results[i] = Some(r);
                        }
                    }
                    return Vec::new();
                }
                Err(StoreError::Conflict { keys }) => {
                    tracing::warn!(instances = %keys.len(), "state version conflict; re-reading those instances");
                    let mut states = states.into_iter();
                    for (run, _) in runs.iter_mut().zip(&changed).filter(|(_, c)| **c) {
                        run.state = states.next();
                    }
                    let (conflicted, rest): (Vec<_>, Vec<_>) =
                        runs.into_iter().partition(|r| keys.contains(&r.key));
                    let conflicted_keys: Vec<InstanceKey> = conflicted.into_iter().map(|r| r.key).collect();
                    // Write the others now; the conflicted ones are re-run.
                    let again = Box::pin(self.commit(rest, results)).await;
                    debug_assert!(again.is_empty() || again.iter().all(|k| !conflicted_keys.contains(k)));
                    return conflicted_keys.into_iter().chain(again).collect();
                }
                Err(e) => {
                    tracing::error!(error = %e, "state write failed; retrying in {delay:?} (offsets wait)");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKEND_RETRY_MAX);
                }
            }
        }
    }

    /// Retries an operation of the pipeline's own backends until it works:
    /// the events wait (their offsets are not committed), nothing is dropped.
    async fn with_backend_retry<'a, T, E, F, Fut>(&'a self, what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>> + 'a,
        E: std::fmt::Display,
    {
        let mut delay = BACKEND_RETRY_MIN;
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    tracing::error!(error = %e, "{what} failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKEND_RETRY_MAX);
                }
            }
        }
    }

    /// One instance's events, in order.
    async fn run_instance(
        &self,
        key: InstanceKey,
        stored: Option<InstanceState>,
        idxs: &[usize],
        batch: &[Work],
    ) -> InstanceRun {
        let mut state = stored;
        let mut changed = false;
        let mut outcomes = Vec::with_capacity(idxs.len());
        for &i in idxs {
            let work = &batch[i];
            let event = work.event.as_ref().expect("grouped events decoded");
            let outcome = self
                .run_event(&key, &mut state, &mut changed, event)
                .instrument(event_span(&work.origin, Some(event)))
                .await;
            outcomes.push((i, outcome));
        }
        InstanceRun {
            key,
            state: if changed { state } else { None },
            outcomes,
        }
    }

    /// One event of an instance: decide, create its todos, advance `state`
    /// (setting `changed` when it did).
    async fn run_event(
        &self,
        key: &InstanceKey,
        state: &mut Option<InstanceState>,
        changed: &mut bool,
        event: &Event,
    ) -> Result<Disposition, DeadLetterDraft> {
        // Before the actions: an AICC create records its intent in `state`
        // on the way, which must not count as the instance already active.
        let was_active = state.as_ref().is_some_and(|s| s.status == Status::Active);
        let decision = engine::decide(&self.workflows, state.as_ref(), event);
        let wf_labels = WorkflowLabels {
            workflow: key.workflow.clone(),
        };
        if decision.duplicate {
            self.metrics.events_duplicate.get_or_create(&wf_labels).inc();
            tracing::debug!("duplicate event skipped");
            return Ok(Disposition::Duplicate);
        }
        if let Some(r) = decision.rejection {
            return Err(DeadLetterDraft {
                reason: r.reason.as_str(),
                stage: "decide",
                message: r.message,
                attempts: 1,
            });
        }
        let Some(mut next) = decision.next_state else {
            return Ok(Disposition::Applied);
        };
        let todos = decision.actions.len();
        for action in decision.actions {
            match action {
                Action::Poa(todo) => match self.poa.send(&key.serial_number, todo.item).await {
                    Outcome::Done { .. } => {
                        self.metrics
                            .todos_created
                            .get_or_create(&TodoLabels {
                                target: "poa",
                                kind: todo.kind.as_str(),
                            })
                            .inc();
                    }
                    Outcome::Reject {
                        reason,
                        message,
                        attempts,
                    } => {
                        return Err(DeadLetterDraft {
                            reason: reason.as_str(),
                            stage: "poa",
                            message,
                            attempts,
                        });
                    }
                    Outcome::Unknown { message, attempts } => {
                        return Err(DeadLetterDraft {
                            reason: SinkReason::RetriesExhausted.as_str(),
                            stage: "poa",
                            message,
                            attempts,
                        });
                    }
                },
                Action::Aicc(create) => {
                    let task_id = self.aicc_create(key, &next, state, changed, &create).await?;
                    next.version = state.as_ref().map_or(0, |s| s.version);
                    next.resolve_aicc(&create.intent_id, &task_id);
                    self.metrics
                        .todos_created
                        .get_or_create(&TodoLabels {
                            target: "aicc",
                            kind: "task",
                        })
                        .inc();
                }
            }
        }
        self.metrics.events_applied.get_or_create(&wf_labels).inc();
        let is_active = next.status == Status::Active;
        if was_active != is_active {
            let g = self.metrics.active_instances.get_or_create(&wf_labels);
            if is_active {
                g.inc()
            } else {
                g.dec()
            };
        }
        *state = Some(next);
        *changed = true;
        tracing::debug!(todos, "event applied");
        Ok(Disposition::Applied)
    }

    /// Creates an AICC task exactly once as far as the API allows: the
    /// intent is stored before the call; an intent found already stored (a
    /// redelivery after a crash) is reconciled with `find` first; an unknown
    /// outcome is reconciled before at most one resend.
    async fn aicc_create(
        &self,
        key: &InstanceKey,
        next: &InstanceState,
        state: &mut Option<InstanceState>,
        changed: &mut bool,
        create: &AiccCreate,
    ) -> Result<String, DeadLetterDraft> {
        let intent = next
            .pending_aicc
            .iter()
            .find(|p| p.intent_id == create.intent_id)
            .cloned()
            .expect("decide records an intent for every AICC create");
        let unreconciled = |message: String, attempts| DeadLetterDraft {
            reason: SinkReason::AiccUnreconciled.as_str(),
            stage: "aicc",
            message,
            attempts,
        };
        let already_pending = state
            .as_ref()
            .is_some_and(|s| s.pending_aicc.iter().any(|p| p.intent_id == create.intent_id));
        if already_pending {
            match self.aicc.find(intent.clone()).await {
                Ok(Some(id)) => return Ok(id),
                Ok(None) => {}
                Err(e) => {
                    return Err(unreconciled(
                        format!("reconcile of a pending create failed: {e}"),
                        1,
                    ));
                }
            }
        } else {
            // Record the intent before the call (its own small write: AICC
            // creates are not idempotent, so a crash must leave a trace).
            let mut with_intent = state
                .clone()
                .unwrap_or_else(|| InstanceState::new(&key.workflow, &key.serial_number));
            with_intent.pending_aicc.push(intent.clone());
            match self.store.put_batch(std::slice::from_ref(&with_intent)).await {
                Ok(v) => {
                    with_intent.version = v[0];
                    *state = Some(with_intent);
                    *changed = true;
                }
                Err(e) => {
                    return Err(DeadLetterDraft {
                        reason: "state_error",
                        stage: "state",
                        message: format!("could not record the AICC intent before creating: {e}"),
                        attempts: 1,
                    });
                }
            }
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.aicc.create(create.task_info.clone()).await {
                Outcome::Done { task_id } => return Ok(task_id),
                Outcome::Reject {
                    reason,
                    message,
                    attempts: a,
                } => {
                    return Err(DeadLetterDraft {
                        reason: reason.as_str(),
                        stage: "aicc",
                        message,
                        attempts: a,
                    });
                }
                Outcome::Unknown { message, .. } => match self.aicc.find(intent.clone()).await {
                    Ok(Some(id)) => return Ok(id),
                    Ok(None) if attempts < 2 => {
                        tracing::warn!(intent = %create.intent_id, "AICC create of unknown outcome not found; resending once");
                        self.metrics
                            .retries
                            .get_or_create(&TargetLabels { target: "aicc" })
                            .inc();
                    }
                    Ok(None) => {
                        return Err(unreconciled(
                            format!("create outcome unknown twice: {message}"),
                            attempts,
                        ));
                    }
                    Err(e) => {
                        return Err(unreconciled(
                            format!("create outcome unknown ({message}); reconcile failed: {e}"),
                            attempts,
                        ));
                    }
                },
            }
        }
    }
}
