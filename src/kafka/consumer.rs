//! The consumer: at-least-once consumption with per-instance ordering.
//!
//! A dedicated thread owns the librdkafka consumer. It polls, decodes, and
//! hands each event to one of N worker lanes chosen by its instance key, so
//! one instance's events are processed in order while different instances
//! run concurrently. Lanes are bounded channels: when they are full the
//! thread blocks and stops polling (backpressure; nothing is buffered
//! without limit). Workers process micro-batches through the
//! [`Pipeline`] and mark offsets finished in the [`OffsetTracker`]; the
//! thread commits the contiguous finished prefix every `commit_interval`,
//! synchronously: one broker round trip per interval, and an offset counts
//! as committed only once the broker acknowledged it.
//!
//! Rebalance and shutdown are two small state changes on that thread:
//! on revoke it waits (up to `drain_timeout`) for the revoked partitions'
//! in-flight events, commits them synchronously, then lets them go; on
//! shutdown it stops polling, lets the lanes drain, commits, and closes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use rdkafka::statistics::Statistics;

use super::offsets::OffsetTracker;
use crate::event::{Event, Source};
use crate::observe::Metrics;
use crate::observe::metrics::{GroupLabels, GroupPartitionLabels, PartitionLabels};
use crate::pipeline::{Origin, Pipeline, Work};

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub group_id: String,
    pub topics: Vec<String>,
    /// Worker lanes (instances are spread over them by key).
    pub workers: usize,
    /// Events waiting per lane before the consumer stops polling.
    pub lane_capacity: usize,
    /// Most events a worker takes into one micro-batch.
    pub max_batch: usize,
    pub commit_interval: Duration,
    /// How long a revoke or shutdown waits for in-flight events.
    pub drain_timeout: Duration,
    pub poll_timeout: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "flowbridge".into(),
            topics: vec!["workflow-events".into()],
            workers: 8,
            lane_capacity: 512,
            max_batch: 256,
            commit_interval: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(10),
            poll_timeout: Duration::from_millis(50),
        }
    }
}

/// State shared by the consumer thread, its rebalance callbacks and the
/// workers. Locks are held for bookkeeping only, never across I/O.
#[derive(Debug, Default)]
pub struct Shared {
    tracker: Mutex<OffsetTracker>,
    assigned: Mutex<BTreeSet<(String, i32)>>,
    stop: AtomicBool,
    /// Set to leave without the final commit (a crash, for tests).
    abandon: AtomicBool,
    drain_timeout: Duration,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // Tracker updates are single operations; a panic elsewhere cannot
        // leave it half-changed, so a poisoned lock is still usable.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn assigned(&self) -> MutexGuard<'_, BTreeSet<(String, i32)>> {
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until none of `only`'s events (all when `None`) are in flight,
    /// or the drain timeout passes. Returns whether it drained.
    fn drain(&self, only: Option<&[(String, i32)]>) -> bool {
        let deadline = Instant::now() + self.drain_timeout;
        loop {
            let left = self.tracker().in_flight(only);
            if left == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    in_flight = left,
                    "drain timed out; uncommitted events will be redelivered"
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The librdkafka context: rebalance callbacks and statistics (lag).
pub struct Context {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    group: String,
    /// Partitions whose lag gauge is set, to remove those no longer active.
    lag_series: Mutex<BTreeSet<GroupPartitionLabels>>,
}

impl ClientContext for Context {
    /// Consumer lag per partition from librdkafka's statistics: partitions
    /// this consumer actively fetches, lag = high watermark − committed.
    fn stats(&self, stats: Statistics) {
        let mut current = BTreeSet::new();
        let mut sum = 0i64;
        for (topic, t) in &stats.topics {
            for (&partition, p) in &t.partitions {
                if partition < 0 || p.fetch_state != "active" || p.consumer_lag < 0 {
                    continue;
                }
                let labels = GroupPartitionLabels {
                    group: self.group.clone(),
                    topic: topic.clone(),
                    partition: partition.to_string(),
                };
                self.metrics
                    .consumer_lag
                    .get_or_create(&labels)
                    .set(p.consumer_lag);
                sum += p.consumer_lag;
                current.insert(labels);
            }
        }
        let mut series = self.lag_series.lock().unwrap_or_else(|p| p.into_inner());
        for gone in series.difference(&current) {
            self.metrics.consumer_lag.remove(gone);
        }
        *series = current;
        self.metrics
            .consumer_lag_sum
            .get_or_create(&GroupLabels {
                group: self.group.clone(),
            })
            .set(sum);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(partitions = ?parts, "partitions revoked: draining and committing");
            self.shared.drain(Some(&parts));
            if !self.shared.abandon.load(Ordering::SeqCst) {
                commit(consumer, &self.shared, Some(&parts));
            }
            self.shared.tracker().remove(&parts);
            let mut assigned = self.shared.assigned();
            for (topic, partition) in &parts {
                assigned.remove(&(topic.clone(), *partition));
                self.metrics.time_lag.remove(&PartitionLabels {
                    topic: topic.clone(),
                    partition: partition.to_string(),
                });
            }
            self.metrics.partitions_assigned.set(assigned.len() as i64);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut assigned = self.shared.assigned();
            for e in tpl.elements() {
                assigned.insert((e.topic().to_owned(), e.partition()));
            }
            self.metrics.partitions_assigned.set(assigned.len() as i64);
            tracing::info!(partitions = ?assigned, "partitions assigned");
        }
    }
}

/// Commits the committable offsets (of `only`, or all).
fn commit(consumer: &BaseConsumer<Context>, shared: &Shared, only: Option<&[(String, i32)]>) {
    let offsets: Vec<(String, i32, i64)> = shared
        .tracker()
        .to_commit()
        .into_iter()
        .filter(|(t, p, _)| only.is_none_or(|o| o.iter().any(|(ot, op)| ot == t && op == p)))
        .collect();
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (t, p, o) in &offsets {
        if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "bad offset {t}/{p}@{o}");
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            let mut t = shared.tracker();
            for (topic, p, o) in &offsets {
                t.committed(topic, *p, *o);
            }
        }
        Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
    }
}

/// Read-only view of a running consumer (for `/readyz`).
#[derive(Clone)]
pub struct Probe(Arc<Shared>);

impl Probe {
    pub fn partitions_assigned(&self) -> usize {
        self.0.assigned().len()
    }
}

/// A running consumer.
pub struct Running {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Committed offsets: (topic, partition) → next offset.
    pub fn committed(&self) -> BTreeMap<(String, i32), i64> {
        self.shared
            .tracker()
            .partitions()
            .filter_map(|(t, p, o)| o.last_committed().map(|c| ((t.to_owned(), p), c)))
            .collect()
    }

    /// Events handed out and not finished.
    pub fn in_flight(&self) -> usize {
        self.shared.tracker().in_flight(None)
    }

    /// Partitions currently assigned.
    pub fn assigned(&self) -> Vec<(String, i32)> {
        self.shared.assigned().iter().cloned().collect()
    }

    /// A cheap handle for readiness checks.
    pub fn probe(&self) -> Probe {
        Probe(self.shared.clone())
    }

    /// Waits until every partition in `targets` ((topic, partition) → end
    /// offset) has committed up to its end offset; false on timeout.
    pub async fn wait_committed(&self, targets: &BTreeMap<(String, i32), i64>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let committed = self.committed();
            if targets
                .iter()
                .all(|(k, end)| *end == 0 || committed.get(k).is_some_and(|c| c >= end))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop: stop polling, drain (up to the drain timeout), commit,
    /// close.
    pub async fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.join().await;
    }

    /// Leaves like a crash: stops without committing what finished since the
    /// last periodic commit (for tests of redelivery).
    pub async fn abandon(mut self) {
        self.shared.abandon.store(true, Ordering::SeqCst);
        self.shared.stop.store(true, Ordering::SeqCst);
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
    }
}

/// Starts consuming `settings.topics` with `client` (bootstrap servers and
/// any librdkafka properties) into `pipeline`. Must be called inside a
/// tokio runtime (workers are tasks).
pub fn start(
    client: &ClientConfig,
    settings: &ConsumerSettings,
    pipeline: Arc<Pipeline>,
) -> anyhow::Result<Running> {
    let shared = Arc::new(Shared {
        drain_timeout: settings.drain_timeout,
        ..Shared::default()
    });
    let mut config = client.clone();
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    if config.get("auto.offset.reset").is_none() {
        config.set("auto.offset.reset", "earliest");
    }
    if config.get("statistics.interval.ms").is_none() {
        config.set("statistics.interval.ms", "5000");
    }
    let consumer: BaseConsumer<Context> = config.create_with_context(Context {
        shared: shared.clone(),
        metrics: pipeline.metrics.clone(),
        group: settings.group_id.clone(),
        lag_series: Mutex::new(BTreeSet::new()),
    })?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let mut senders = Vec::with_capacity(settings.workers);
    let mut workers = Vec::with_capacity(settings.workers);
    for _ in 0..settings.workers.max(1) {
        let (tx, rx) = mpsc::channel(settings.lane_capacity.max(1));
        senders.push(tx);
        workers.push(tokio::spawn(worker(
            rx,
            pipeline.clone(),
            shared.clone(),
            settings.max_batch.max(1),
        )));
    }
    let thread_shared = shared.clone();
    let settings = settings.clone();
    let thread = std::thread::Builder::new()
        .name("flowbridge-consumer".into())
        .spawn(move || consume(consumer, thread_shared, senders, settings))?;
    Ok(Running {
        shared,
        thread: Some(thread),
        workers,
    })
}

async fn worker(
    mut rx: mpsc::Receiver<Work>,
    pipeline: Arc<Pipeline>,
    shared: Arc<Shared>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let done = pipeline.process(std::mem::take(&mut batch)).await;
        let mut t = shared.tracker();
        for (origin, _) in &done {
            t.finish(&origin.topic, origin.partition, origin.offset);
        }
    }
}

/// Sets the time-lag and in-flight gauges from the tracker.
fn observe_time_lag(shared: &Shared, metrics: &Metrics) {
    let now = crate::state::now_ms();
    let tracker = shared.tracker();
    for (topic, partition, offsets) in tracker.partitions() {
        let age = offsets
            .oldest_unfinished_ms()
            .map_or(0.0, |ts| (now - ts).max(0) as f64 / 1000.0);
        metrics
            .time_lag
            .get_or_create(&PartitionLabels {
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .set(age);
    }
    metrics.events_in_flight.set(tracker.in_flight(None) as i64);
}

fn lane_of(event: &Result<Event, crate::event::DecodeError>, partition: i32, lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match event {
        Ok(e) => {
            e.workflow.hash(&mut h);
            e.serial_number.hash(&mut h);
        }
        Err(_) => partition.hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

/// The consumer thread.
fn consume(
    consumer: BaseConsumer<Context>,
    shared: Arc<Shared>,
    senders: Vec<mpsc::Sender<Work>>,
    settings: ConsumerSettings,
) {
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    let mut last_commit = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        match consumer.poll(settings.poll_timeout) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error"),
            Some(Ok(m)) => {
                let topic = match topics.get(m.topic()) {
                    Some(t) => t.clone(),
                    None => {
                        let t: Arc<str> = Arc::from(m.topic());
                        topics.insert(m.topic().to_owned(), t.clone());
                        t
                    }
                };
                let payload = m.payload().unwrap_or_default().to_vec();
                let event = Event::decode(
                    &payload,
                    Source::Kafka {
                        topic: &topic,
                        partition: m.partition(),
                        offset: m.offset(),
                    },
                );
                let origin = Origin {
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                };
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let lane = lane_of(&event, origin.partition, senders.len());
                shared.tracker().track(
                    &origin.topic,
                    origin.partition,
                    origin.offset,
                    origin.timestamp_ms,
                );
                let work = Work {
                    origin,
                    key: m.key().map(<[u8]>::to_vec),
                    payload,
                    headers,
                    event,
                };
                if senders[lane].blocking_send(work).is_err() {
                    tracing::error!("worker lane closed; stopping the consumer");
                    break;
                }
            }
        }
        if last_commit.elapsed() >= settings.commit_interval {
            commit(&consumer, &shared, None);
            last_commit = Instant::now();
            observe_time_lag(&shared, &consumer.context().metrics);
        }
    }
    // Shutdown: no new events; the lanes drain; commit what finished.
    drop(senders);
    shared.drain(None);
    if !shared.abandon.load(Ordering::SeqCst) {
        commit(&consumer, &shared, None);
    }
    tracing::info!("consumer stopped");
    // Dropping the consumer leaves the group (its revoke finds nothing in flight).
}
