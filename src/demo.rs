//! `flowbridge demo`: the main job on embedded defaults, in one process.
//!
//! An embedded Kafka-protocol broker (librdkafka's mock cluster, over TCP on
//! 127.0.0.1), the POA and AICC simulators, the sample workflows, a redb
//! state file in a temporary directory and the real run loop. A scripted
//! stream (many instances through loops, branches, parallel reviews and AICC
//! flows, plus a few bad events) is produced, a short POA outage is injected
//! part-way, and when every offset is committed the demo prints what
//! happened — and checks it against what the simulators recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::KafkaConfig;
use crate::kafka::dlq::headers;
use crate::kafka::embedded::EmbeddedBroker;
use crate::runtime::{self, BridgeConfig};
use crate::scenario;
use crate::sim::{self, Faults, FaultsPatch, SimOptions};
use crate::sink::config::{AiccConfig, AuthConfig, OAuthConfig, PoaConfig};
use crate::state::{StoreConfig, StoreKind};
use crate::workflow::{Registry, Workflow};

/// The events topic of the demo's embedded broker.
pub const TOPIC: &str = "workflow-events";

/// Environment variable naming an external Kafka-compatible broker for the
/// end-to-end tests (e.g. tansu); unset = the embedded mock cluster.
pub const TEST_BOOTSTRAP_ENV: &str = "FLOWBRIDGE_TEST_BOOTSTRAP";

/// `1` makes [`Stack::produce`] write one record per batch.
pub const ONE_RECORD_PER_BATCH_ENV: &str = "FLOWBRIDGE_TEST_ONE_RECORD_PER_BATCH";

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Workflow instances in the scripted stream.
    pub instances: usize,
    pub partitions: i32,
    pub seed: u64,
    /// Length of the POA outage that starts at the second POA request
    /// (0 = none).
    pub outage_ms: u64,
    /// Lifetime of the simulators' tokens (short, so refreshes happen).
    pub token_lifetime_ms: u64,
    pub metrics_addr: Option<SocketAddr>,
    /// After the report, keep serving until SIGINT/SIGTERM.
    pub keep_running: bool,
    /// Print progress lines on stderr.
    pub progress: bool,
    /// Run on this broker instead of the embedded one (tests).
    pub external_bootstrap: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            instances: 400,
            partitions: 4,
            seed: 2026,
            outage_ms: 1500,
            token_lifetime_ms: 4000,
            metrics_addr: None,
            keep_running: false,
            progress: true,
            external_bootstrap: None,
        }
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The in-process environment: a broker, both simulators, a scratch
/// directory, and the events topic with its `.dlq`.
pub struct Stack {
    /// The embedded broker, unless an external one is used.
    pub broker: Option<EmbeddedBroker>,
    pub bootstrap: String,
    /// The events topic; its dead letters go to `<topic>.dlq`.
    pub topic: String,
    pub partitions: i32,
    pub poa: sim::poa::PoaSim,
    pub aicc: sim::aicc::AiccSim,
    pub dir: TempDir,
    /// End offset per partition of what `produce` wrote (from delivery
    /// reports: brokers' watermark answers vary, tansu's memory store has none).
    ends: std::sync::Mutex<BTreeMap<(String, i32), i64>>,
}

impl Stack {
    /// Starts the embedded broker with topic [`TOPIC`] and both simulators
    /// on 127.0.0.1.
    pub async fn start(partitions: i32, faults: Faults) -> anyhow::Result<Stack> {
        Self::start_on(None, partitions, faults).await
    }

    /// Like [`Stack::start`], but on the broker named by
    /// [`TEST_BOOTSTRAP_ENV`] when it is set (with a fresh topic name).
    pub async fn for_tests(partitions: i32, faults: Faults) -> anyhow::Result<Stack> {
        Self::start_on(std::env::var(TEST_BOOTSTRAP_ENV).ok(), partitions, faults).await
    }

    /// On `external` (bootstrap servers) with a topic of a fresh name
    /// created through the Admin API, or on a new embedded broker.
    pub async fn start_on(
        external: Option<String>,
        partitions: i32,
        faults: Faults,
    ) -> anyhow::Result<Stack> {
        let dlq_partitions = 1;
        let (broker, bootstrap, topic) = match external {
            Some(bootstrap) => {
                // Tests of one process start stacks concurrently, often
                // within the same millisecond: the counter keeps names apart.
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let topic = format!(
                    "fb-{}-{}-{}",
                    std::process::id(),
                    crate::state::now_ms() % 1_000_000_000,
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                create_topics(
                    &bootstrap,
                    &[(&topic, partitions), (&format!("{topic}.dlq"), dlq_partitions)],
                )
                .await?;
                (None, bootstrap, topic)
            }
            None => {
                let broker = EmbeddedBroker::start(1).context("starting the embedded broker")?;
                broker.create_topic(TOPIC, partitions)?;
                broker.create_topic(&format!("{TOPIC}.dlq"), dlq_partitions)?;
                let bootstrap = broker.bootstrap_servers().to_owned();
                (Some(broker), bootstrap, TOPIC.to_owned())
            }
        };
        let opts = SimOptions {
            faults,
            ..SimOptions::default()
        };
        let poa = sim::poa::spawn(TcpListener::bind("127.0.0.1:0").await?, opts.clone()).await?;
        let aicc = sim::aicc::spawn(TcpListener::bind("127.0.0.1:0").await?, opts).await?;
        Ok(Stack {
            broker,
            bootstrap,
            topic,
            partitions,
            poa,
            aicc,
            dir: TempDir::new("flowbridge-demo")?,
            ends: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// (topic, partition) → end offset of everything produced so far.
    pub fn ends(&self) -> BTreeMap<(String, i32), i64> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A consumer-group name unique to this stack's topic (an external
    /// broker keeps groups between runs).
    pub fn group(&self, name: &str) -> String {
        if self.broker.is_some() {
            name.to_owned()
        } else {
            format!("{name}-{}", self.topic)
        }
    }

    /// A bridge config for this stack: consumer group `group`, a redb file
    /// in the scratch directory.
    pub fn config(&self, group: &str) -> BridgeConfig {
        let (id, secret) = self.poa.credentials();
        let oauth = || AuthConfig::Oauth(OAuthConfig::new(id.clone(), secret.expose_secret().to_owned()));
        let mut poa = PoaConfig::new(self.poa.base_url(), oauth());
        poa.retry.max_elapsed_ms = 60_000;
        BridgeConfig {
            kafka: KafkaConfig {
                brokers: self.bootstrap.clone(),
                group_id: self.group(group),
                topics: vec![self.topic.clone()],
                dlq_topic: None,
                // Short group timers: the mock cluster's coordinator waits a
                // session timeout before completing a rebalance.
                properties: BTreeMap::from([
                    ("statistics.interval.ms".to_owned(), "500".to_owned()),
                    ("session.timeout.ms".to_owned(), "6000".to_owned()),
                    ("heartbeat.interval.ms".to_owned(), "500".to_owned()),
                ]),
                workers: 8,
                lane_capacity: 512,
                max_batch: 256,
                commit_interval_ms: 200,
                drain_timeout_ms: 10_000,
            },
            workflows: PathBuf::from("workflows"),
            state: StoreConfig {
                kind: StoreKind::Redb,
                path: self.dir.0.join("flowbridge.redb"),
                ..StoreConfig::default()
            },
            poa: Some(poa),
            aicc: Some(AiccConfig::new(self.aicc.base_url(), oauth())),
            metrics_addr: None,
            shutdown_grace_ms: 30_000,
        }
    }

    /// The client config for this broker.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// Produces JSON lines keyed by their `serialNumber` (so one instance's
    /// events share a partition and keep their order).
    pub fn produce(&self, lines: &[String]) -> anyhow::Result<()> {
        let mut config = self.client();
        config.set("acks", "all");
        // tansu 0.6 (memory engine) was seen to stall a partition whose
        // fetch position, after a rebalance, falls inside a multi-record
        // batch; `.ci/run` sets this for its tansu run (see docs/architecture.md).
        if std::env::var(ONE_RECORD_PER_BATCH_ENV).is_ok_and(|v| v == "1") {
            config.set("batch.num.messages", "1");
        }
        let p: BaseProducer<EndsContext> = config.create_with_context(EndsContext::default())?;
        for line in lines {
            let key = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["serialNumber"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unkeyed".to_owned());
            let mut record = BaseRecord::to(&self.topic).key(&key).payload(line);
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((e, r))
                        if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        p.poll(Duration::from_millis(10));
                        record = r;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        p.flush(Duration::from_secs(30))?;
        let delivered = p.context().take()?;
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, end) in delivered {
            let slot = ends.entry((self.topic.clone(), partition)).or_default();
            *slot = (*slot).max(end);
        }
        Ok(())
    }

    /// Reads the dead-letter topic: reason → count.
    pub fn dead_letters(&self, expected: usize) -> anyhow::Result<BTreeMap<String, usize>> {
        let c: BaseConsumer = self
            .client()
            .set("group.id", "flowbridge-demo-dlq-reader")
            .set("auto.offset.reset", "earliest")
            .create()?;
        c.subscribe(&[&format!("{}.dlq", self.topic)])?;
        let mut out = BTreeMap::new();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen < expected && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                seen += 1;
                let reason = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == headers::REASON).and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| "?".into());
                *out.entry(reason).or_default() += 1;
            }
        }
        Ok(out)
    }
}

/// Creates topics through the Admin API (any Kafka-compatible broker).
async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await? {
        if let Err((topic, e)) = result {
            bail!("creating topic {topic} on {bootstrap}: {e}");
        }
    }
    Ok(())
}

/// Collects delivery reports: partition → offset after the last delivered
/// record, or the first delivery error.
#[derive(Default)]
struct EndsContext {
    ends: std::sync::Mutex<(BTreeMap<i32, i64>, Option<String>)>,
}

impl EndsContext {
    fn take(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut g = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.1.take() {
            bail!("producing the stream: {e}");
        }
        Ok(std::mem::take(&mut g.0))
    }
}

impl rdkafka::ClientContext for EndsContext {}

impl rdkafka::producer::ProducerContext for EndsContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let mut g = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(m) => {
                let end = g.0.entry(m.partition()).or_default();
                *end = (*end).max(m.offset() + 1);
            }
            Err((e, _)) => {
                g.1.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// What the engine says a stream must produce: a dry-run replay of the
/// same lines with in-memory state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Every POA taskId, exactly once.
    pub poa_task_ids: std::collections::BTreeSet<String>,
    pub aicc_tasks: usize,
    /// Reason → count of rejected lines.
    pub rejections: BTreeMap<String, usize>,
}

/// Replays `lines` through the engine (dry run) to get what a correct run
/// must create.
pub fn expected(registry: &Registry, lines: &[String]) -> anyhow::Result<Expected> {
    let mut replayer = crate::replay::Replayer::default();
    let mut out = Vec::new();
    let text = lines.join("\n");
    replayer.run(registry, "expected", text.as_bytes(), &mut out)?;
    let mut e = Expected::default();
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        if let Some(reason) = v["rejected"].as_str() {
            *e.rejections.entry(reason.to_owned()).or_default() += 1;
        } else if v["target"] == "poa" {
            e.poa_task_ids
                .insert(v["taskId"].as_str().unwrap_or_default().to_owned());
        } else {
            e.aicc_tasks += 1;
        }
    }
    Ok(e)
}

/// Differences between what the simulators recorded and `expected`: POA
/// todos by taskId (missing, unexpected, recorded twice) and the AICC task
/// count (a duplicate create shows as one too many).
pub fn compare(stack: &Stack, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let todos = stack.poa.todos();
    let mut seen = std::collections::BTreeSet::new();
    for t in &todos {
        if !seen.insert(t.task_id.clone()) {
            problems.push(format!("POA todo {} recorded twice", t.task_id));
        }
    }
    let missing = expected.poa_task_ids.difference(&seen).count();
    let unexpected = seen.difference(&expected.poa_task_ids).count();
    if missing > 0 || unexpected > 0 {
        problems.push(format!(
            "POA todos: {missing} expected but not recorded, {unexpected} recorded but not expected"
        ));
    }
    let aicc = stack.aicc.tasks().len();
    if aicc != expected.aicc_tasks {
        problems.push(format!(
            "AICC tasks: {aicc} recorded, {} expected",
            expected.aicc_tasks
        ));
    }
    problems
}

/// What the demo saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub events_produced: usize,
    pub events_consumed: u64,
    pub todos_first: u64,
    pub todos_chained: u64,
    pub aicc_tasks: u64,
    /// Reason → count, read back from the dead-letter topic.
    pub dead_letters: BTreeMap<String, usize>,
    /// Reason → count the scripted bad events should produce.
    pub expected_dead_letters: BTreeMap<String, usize>,
    pub poa_todos_recorded: usize,
    pub poa_transactions_recorded: usize,
    pub aicc_tasks_recorded: usize,
    pub retries: u64,
    /// POA requests the simulator refused during the injected outage.
    pub poa_refused_in_outage: u64,
    /// Tokens the simulators issued (more than 2 = refreshed on expiry).
    pub tokens_issued: u64,
    /// Problems found by cross-checking; empty when consistent.
    pub problems: Vec<String>,
}

/// Runs the demo, printing progress on stderr and the report on `out`.
pub async fn run(opts: &DemoOptions, out: &mut (impl Write + Send)) -> anyhow::Result<Report> {
    let registry = Registry::embedded();
    let stack = Stack::start_on(
        opts.external_bootstrap.clone(),
        opts.partitions,
        Faults {
            token_lifetime_ms: opts.token_lifetime_ms,
            ..Faults::default()
        },
    )
    .await?;

    // The scripted stream: random valid walks, then the bad events.
    let workflows: Vec<&Workflow> = registry.workflows().into_iter().map(|w| w.as_ref()).collect();
    let mut lines: Vec<String> = scenario::stream(&workflows, opts.instances, "D", opts.seed)
        .iter()
        .map(ToString::to_string)
        .collect();
    let completed = workflows
        .iter()
        .position(|w| w.id == "leave-approval")
        .map(|i| format!("D{i:06}"))
        .context("the leave-approval sample is embedded")?;
    let bad = scenario::bad_events(&completed);
    for (line, _) in &bad {
        lines.push(line.clone());
    }
    let expected = expected(&registry, &lines)?;
    stack.produce(&lines)?;
    let ends = stack.ends();

    // Armed in the simulator rather than timed from here: the whole stream
    // can pass between two looks at the counters, the second request cannot
    // (one instance never has two items in a batch, so there are several).
    if opts.outage_ms > 0 {
        stack.poa.patch_faults(FaultsPatch {
            outage_for_ms: Some(opts.outage_ms),
            outage_after_requests: Some(2),
            ..FaultsPatch::default()
        });
        eprintln!(
            "demo: POA outage for {} ms from the second request (the sink retries; nothing is dead-lettered)",
            opts.outage_ms
        );
    }

    let mut cfg = stack.config("flowbridge-demo");
    cfg.metrics_addr = opts.metrics_addr;
    let bridge = runtime::start(&cfg, registry.clone()).await?;
    let metrics = bridge.pipeline.metrics.clone();
    if let Some(addr) = bridge.metrics_addr {
        eprintln!("metrics: http://{addr}/metrics  (also /healthz, /readyz)");
    }
    eprintln!(
        "demo: {} events ({} instances over {} workflows, {} bad) on {} partitions of {} at {}",
        lines.len(),
        opts.instances,
        workflows.len(),
        bad.len(),
        opts.partitions,
        stack.topic,
        stack.bootstrap
    );

    // Progress, and the wait for every offset to be committed.
    let total = lines.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_print = Instant::now();
    loop {
        let consumed = metrics.events_consumed.get();
        if bridge
            .running
            .wait_committed(&ends, Duration::from_millis(1))
            .await
        {
            break;
        }
        if opts.progress && last_print.elapsed() >= Duration::from_millis(500) {
            eprintln!(
                "  consumed {consumed}/{total}  todos {}  AICC {}  dead-lettered {}  lag {}",
                metrics.sum("flowbridge_todos_created_total", &[("target", "poa")]),
                metrics.sum("flowbridge_todos_created_total", &[("target", "aicc")]),
                metrics.sum("flowbridge_dlq_produced_total", &[]),
                metrics.sum("kafka_consumergroup_group_sum_lag", &[]),
            );
            last_print = Instant::now();
        }
        if Instant::now() > deadline {
            bail!("the stream was not fully processed within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    if opts.keep_running {
        eprintln!("demo: stream processed; still running (Ctrl-C to stop)");
        crate::shutdown::signalled().await;
    }
    let report = Report {
        events_produced: lines.len(),
        events_consumed: metrics.events_consumed.get(),
        todos_first: metrics.sum("flowbridge_todos_created_total", &[("kind", "first")]) as u64,
        todos_chained: metrics.sum("flowbridge_todos_created_total", &[("kind", "chained")]) as u64,
        aicc_tasks: metrics.sum("flowbridge_todos_created_total", &[("target", "aicc")]) as u64,
        dead_letters: stack.dead_letters(bad.len())?,
        expected_dead_letters: expected.rejections.clone(),
        poa_todos_recorded: stack.poa.todos().len(),
        poa_transactions_recorded: stack.poa.transactions().len(),
        aicc_tasks_recorded: stack.aicc.tasks().len(),
        retries: metrics.sum("flowbridge_retries_total", &[]) as u64,
        poa_refused_in_outage: stack.poa.stats().injected,
        tokens_issued: stack.poa.stats().tokens_issued + stack.aicc.stats().tokens_issued,
        problems: Vec::new(),
    };
    bridge.stop().await;
    let mut report = check(report, &stack);
    report.problems.extend(compare(&stack, &expected));
    print_report(&report, &stack, out)?;
    Ok(report)
}

/// Cross-checks the counters against what the simulators recorded.
fn check(mut r: Report, stack: &Stack) -> Report {
    if r.events_consumed < r.events_produced as u64 {
        r.problems.push(format!(
            "consumed {} of {} events",
            r.events_consumed, r.events_produced
        ));
    }
    let created = r.todos_first + r.todos_chained;
    if r.poa_todos_recorded as u64 != created {
        r.problems.push(format!(
            "POA simulator recorded {} todos, flowbridge created {created}",
            r.poa_todos_recorded
        ));
    }
    if r.poa_transactions_recorded as u64 != r.todos_first {
        r.problems.push(format!(
            "{} transactions recorded but {} first todos created",
            r.poa_transactions_recorded, r.todos_first
        ));
    }
    if r.aicc_tasks_recorded as u64 != r.aicc_tasks {
        r.problems.push(format!(
            "AICC simulator recorded {} tasks, flowbridge created {}",
            r.aicc_tasks_recorded, r.aicc_tasks
        ));
    }
    let todos = stack.poa.todos();
    let ids: HashSet<&str> = todos.iter().map(|t| t.task_id.as_str()).collect();
    if ids.len() != todos.len() {
        r.problems.push("a POA taskId was recorded twice".into());
    }
    for t in &todos {
        if let Some(p) = &t.previous_task_id
            && !ids.contains(p.as_str())
        {
            r.problems
                .push(format!("todo {} chains to unknown {p}", t.task_id));
        }
    }
    if r.dead_letters != r.expected_dead_letters {
        r.problems.push(format!(
            "dead letters {:?}, expected exactly {:?}",
            r.dead_letters, r.expected_dead_letters
        ));
    }
    r
}

fn print_report(r: &Report, stack: &Stack, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "\nflowbridge demo report")?;
    writeln!(out, "  events produced     {}", r.events_produced)?;
    writeln!(out, "  events consumed     {}", r.events_consumed)?;
    writeln!(
        out,
        "  POA todos           {} first, {} chained",
        r.todos_first, r.todos_chained
    )?;
    writeln!(out, "  AICC tasks          {}", r.aicc_tasks)?;
    writeln!(
        out,
        "  POA outage          {} requests refused by the simulator, then retried",
        r.poa_refused_in_outage
    )?;
    writeln!(
        out,
        "  tokens issued       {} (short-lived: refreshed before expiry)",
        r.tokens_issued
    )?;
    writeln!(
        out,
        "  dead letters        {}",
        r.dead_letters.values().sum::<usize>()
    )?;
    for (reason, n) in &r.dead_letters {
        writeln!(out, "    {reason:<20} {n}")?;
    }
    writeln!(
        out,
        "  simulators recorded {} POA todos in {} transactions, {} AICC tasks",
        r.poa_todos_recorded, r.poa_transactions_recorded, r.aicc_tasks_recorded
    )?;

    // A few transaction chains, as the POA simulator recorded them: the
    // longest of each workflow (by transaction type).
    let todos = stack.poa.todos();
    let by_id: HashMap<&str, &sim::poa::SimTodo> = todos.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let mut best: BTreeMap<String, sim::poa::SimTransaction> = BTreeMap::new();
    for t in stack.poa.transactions() {
        let cur = best.get(&t.trans_type_code).map_or(0, |b| b.todos.len());
        if t.todos.len() > cur {
            best.insert(t.trans_type_code.clone(), t);
        }
    }
    writeln!(
        out,
        "\ntransaction chains recorded by the POA simulator (longest per type):"
    )?;
    for t in best.values() {
        writeln!(
            out,
            "  {} {} ({} todos)",
            t.trans_type_code,
            t.serial_number.as_deref().unwrap_or("?"),
            t.todos.len()
        )?;
        for id in &t.todos {
            let Some(todo) = by_id.get(id.as_str()) else {
                continue;
            };
            let link = todo
                .previous_task_id
                .as_deref()
                .and_then(|p| by_id.get(p))
                .map(|p| format!("← {}", p.item.node_name))
                .unwrap_or_else(|| "opens the transaction".into());
            writeln!(
                out,
                "    {:<8} {:<12} {link}",
                todo.item.node_name,
                &id[..id.len().min(11)]
            )?;
        }
    }
    if r.problems.is_empty() {
        writeln!(
            out,
            "\n✓ every event consumed and committed; simulators and counters agree; every rejection in the DLQ with its reason"
        )?;
    } else {
        writeln!(out, "\n✗ inconsistencies:")?;
        for p in &r.problems {
            writeln!(out, "  - {p}")?;
        }
    }
    Ok(())
}
