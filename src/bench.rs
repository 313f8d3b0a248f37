//! `flowbridge bench`: the end-to-end benchmark, in one run on one broker
//! and one machine.
//!
//! It generates a stream of random valid walks over the sample POA
//! workflows ([`scenario::stream`]), produces it to a topic of several
//! partitions, then consumes that same topic several times, each with a
//! consumer group of its own, and compares:
//!
//! - **(a) bare**: an rdkafka consumer that decodes nothing and does
//!   nothing: the upper bound for this broker and machine;
//! - **(b) flowbridge**: the real runtime ([`runtime::start`]): decode →
//!   decide → POA batching against the in-process simulator → redb with
//!   group commit → offsets; once with no added API latency and once with
//!   [`BenchOptions::added_latency_ms`] added to every request;
//! - **(c) naive**: the same work one event at a time, sequentially: read the
//!   state, decide, one HTTP call per todo, one state transaction per event
//!   (on a sample of the stream, extrapolated, as the report says);
//! - **paced**: flowbridge again while a producer writes at half of (b)'s
//!   rate, for the latency from the Kafka timestamp to the todo accepted by
//!   the simulator (the simulator stamps each todo it accepts).
//!
//! Every run gets a fresh simulator and a fresh redb file, and is checked
//! to have created exactly the todos an offline replay of the same events
//! decides — a run that did less work is an error, not a fast result.
//!
//! Time of a run: from its first event consumed to its last event finished
//! (todo accepted, state committed). CPU: process CPU time (getrusage) minus
//! the threads of the simulators and of the embedded broker, which run in
//! the same process. Memory: peak RSS (`VmHWM`, reset per run where the
//! kernel allows) and its growth during the run per instance.
//!
//! With `FLOWBRIDGE_TEST_BOOTSTRAP` set, it runs against that broker (topics
//! created with the admin API) instead of the embedded one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::KafkaConfig;
use crate::engine::{self, Action};
use crate::event::{Event, Source};
use crate::kafka::embedded::EmbeddedBroker;
use crate::runtime::{self, BridgeConfig};
use crate::scenario;
use crate::sim::{self, Faults, SimOptions};
use crate::sink::{AiccConfig, AuthConfig, OAuthConfig, PoaApi, PoaConfig, PoaSink};
use crate::state::{InstanceKey, InstanceState, RedbStore, StateStore, StoreConfig, StoreKind};
use crate::workflow::{Registry, Workflow};

/// The sample workflows whose todos go to POA (the bench measures the POA
/// path; AICC creates record an intent before each call by design).
pub const WORKFLOWS: [&str; 2] = ["leave-approval", "thesis-review"];

/// Budget of one partition of the embedded broker (librdkafka's mock
/// cluster drops the oldest data beyond 5 MiB per partition).
const PARTITION_BUDGET: usize = 4 * 1024 * 1024;

/// `fetch.wait.max.ms` of the bridge against the embedded broker: the mock
/// cluster answers a fetch that found no data only after this wait, even
/// when data arrives meanwhile (`rdkafka_mock_handlers.c`), where a real
/// broker answers as soon as data arrives; librdkafka's 500 ms default
/// would then dominate the paced run's latency.
const EMBEDDED_FETCH_WAIT_MS: u32 = 5;

/// Environment variable naming an external broker to run against.
pub const BOOTSTRAP_ENV: &str = "FLOWBRIDGE_TEST_BOOTSTRAP";

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Events in the stream (the walks are cut there).
    pub events: usize,
    /// Instances the events are spread over.
    pub instances: usize,
    /// Partitions of the topics; `None` = enough to keep each under the
    /// embedded broker's budget (at least 4).
    pub partitions: Option<i32>,
    /// Events the naive bridge processes (its rate is extrapolated).
    pub naive_events: usize,
    /// How long the paced run produces.
    pub paced_secs: f64,
    /// Latency added to every simulator request in the second (b) run.
    pub added_latency_ms: u64,
    /// Seed of the generated stream.
    pub seed: u64,
    /// An external broker (`FLOWBRIDGE_TEST_BOOTSTRAP`); `None` = embedded.
    pub bootstrap: Option<String>,
    /// Which runs to make (all by default; fewer for profiling).
    pub runs: Vec<Run>,
    /// The paced run's rate; `None` = half of (b)'s.
    pub paced_rate: Option<f64>,
}

/// The runs of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Run {
    /// (a) bare consume.
    Bare,
    /// (b) flowbridge, no added latency.
    Flowbridge,
    /// (b) flowbridge with the added latency.
    FlowbridgeLatency,
    /// (c) the naive bridge.
    Naive,
    /// flowbridge paced at half of (b), for latency.
    Paced,
}

impl Run {
    /// Every run, in the order they are made.
    pub const ALL: [Run; 5] = [
        Run::Bare,
        Run::Flowbridge,
        Run::FlowbridgeLatency,
        Run::Naive,
        Run::Paced,
    ];
}

impl BenchOptions {
    /// The full benchmark: 200k events over 20k instances.
    pub fn full() -> Self {
        Self {
            events: 200_000,
            instances: 20_000,
            partitions: None,
            naive_events: 3_000,
            paced_secs: 10.0,
            added_latency_ms: 5,
            seed: 7,
            bootstrap: std::env::var(BOOTSTRAP_ENV).ok().filter(|s| !s.is_empty()),
            runs: Run::ALL.to_vec(),
            paced_rate: None,
        }
    }

    /// A run of a few seconds for CI: it shows that everything works, its
    /// figures mean little.
    pub fn quick() -> Self {
        Self {
            events: 5_000,
            instances: 500,
            naive_events: 300,
            paced_secs: 2.0,
            ..Self::full()
        }
    }
}

/// Command-line options of `flowbridge bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A small run (well under a minute) that checks the bench works; its
    /// figures are not the benchmark.
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object on stdout instead of the table (progress goes
    /// to stderr either way).
    #[arg(long)]
    pub json: bool,
    /// Events in the stream [default: 200000, --quick 5000].
    #[arg(long)]
    pub events: Option<usize>,
    /// Instances the events are spread over [default: 20000, --quick 500].
    #[arg(long)]
    pub instances: Option<usize>,
    /// Partitions [default: enough for 4 MiB each, at least 4].
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Events the naive bridge runs before its rate is extrapolated
    /// [default: 3000, --quick 300].
    #[arg(long)]
    pub naive_events: Option<usize>,
    /// Seconds the paced (latency) run produces [default: 10, --quick 2].
    #[arg(long)]
    pub paced_secs: Option<f64>,
    /// Latency added to every simulator request in the second flowbridge run.
    #[arg(long, default_value_t = 5)]
    pub added_latency_ms: u64,
    /// Seed of the generated stream.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Only these runs (comma-separated), e.g. `--runs flowbridge` to
    /// profile one [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub runs: Vec<Run>,
    /// Rate of the paced run, events/s [default: half of (b)'s].
    #[arg(long)]
    pub paced_rate: Option<f64>,
}

impl BenchArgs {
    /// The options these arguments ask for.
    pub fn options(&self) -> BenchOptions {
        let base = if self.quick {
            BenchOptions::quick()
        } else {
            BenchOptions::full()
        };
        BenchOptions {
            events: self.events.unwrap_or(base.events),
            instances: self.instances.unwrap_or(base.instances),
            partitions: self.partitions.or(base.partitions),
            naive_events: self.naive_events.unwrap_or(base.naive_events),
            paced_secs: self.paced_secs.unwrap_or(base.paced_secs),
            added_latency_ms: self.added_latency_ms,
            seed: self.seed,
            bootstrap: base.bootstrap,
            runs: if self.runs.is_empty() {
                base.runs
            } else {
                self.runs.clone()
            },
            paced_rate: self.paced_rate,
        }
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// 1-minute load average when the bench started (others' work makes
    /// the figures noisy).
    pub load_average_at_start: f64,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Todos measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `bare`, `flowbridge`, `flowbridge_5ms`, `naive`, `paced`.
    pub name: String,
    /// What it is, for the table.
    pub label: String,
    /// Events it processed.
    pub events: usize,
    /// From its first event consumed to its last finished.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_s: f64,
    /// CPU seconds per million events of the process minus the simulators
    /// and the embedded broker.
    pub cpu_s_per_m_events: f64,
    /// Same, the whole process (simulators and embedded broker included).
    pub process_cpu_s_per_m_events: f64,
    /// Peak RSS of the process during the run (since the start of the
    /// process when the kernel cannot reset the peak).
    pub peak_rss_bytes: u64,
    /// Peak RSS during the run minus RSS at its start.
    pub rss_growth_bytes: u64,
    /// Todos the simulator accepted.
    pub todos: usize,
    /// Kafka timestamp → todo accepted, when measured.
    pub latency: Option<Latency>,
}

/// Everything `flowbridge bench` measured; `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Where it ran.
    pub machine: Machine,
    /// `embedded (librdkafka mock cluster, 127.0.0.1)` or the bootstrap.
    pub broker: String,
    /// Workflows the stream walks.
    pub workflows: Vec<String>,
    /// Events in the stream.
    pub events: usize,
    /// Instances they belong to.
    pub instances: usize,
    /// Partitions of the topics.
    pub partitions: i32,
    /// Bytes of the stream's payloads.
    pub payload_bytes: usize,
    /// Todos an offline replay of the stream decides.
    pub todos: usize,
    /// (a).
    pub bare_events_per_s: f64,
    /// (b) with no added latency.
    pub flowbridge_events_per_s: f64,
    /// (b) with the added latency.
    pub flowbridge_added_latency_events_per_s: f64,
    /// The latency added in that run, ms.
    pub added_latency_ms: u64,
    /// (c), extrapolated from its sample.
    pub naive_events_per_s: f64,
    /// Events the naive bridge processed.
    pub naive_sample_events: usize,
    /// Whether (c)'s rate is extrapolated from a sample.
    pub naive_extrapolated: bool,
    /// (b)/(a).
    pub ratio_b_over_a: f64,
    /// (b)/(c).
    pub ratio_b_over_c: f64,
    /// The paced run's target rate.
    pub paced_target_events_per_s: f64,
    /// Where that rate came from: `half of (b)` or `--paced-rate`.
    pub paced_target_source: &'static str,
    /// The rate the paced run reached; below the target when the machine
    /// could not sustain it (its latency then includes a backlog).
    pub paced_achieved_events_per_s: f64,
    /// Latency of the paced run: Kafka timestamp → todo accepted.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// Peak RSS of the whole bench process (broker, simulators, stream
    /// included).
    pub peak_rss_bytes: u64,
    /// RSS growth during (b) per instance of the stream.
    pub rss_growth_per_instance_bytes: f64,
    /// (b)'s CPU seconds per million events (simulators and broker
    /// excluded).
    pub cpu_s_per_m_events: f64,
    /// Every run.
    pub runs: Vec<RunReport>,
}

/// `flowbridge bench`: runs the benchmark, prints the table (or the JSON
/// object with `--json`) on `out` and progress on `progress`.
pub fn main(args: &BenchArgs, out: &mut dyn Write, progress: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let report = run_blocking(&args.options(), progress)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(table(&report).as_bytes())?;
    }
    Ok(())
}

/// Runs the benchmark on runtimes of its own: the bridge's (one worker per
/// core) and the simulators' (one thread, so its CPU can be told apart).
pub fn run_blocking(opts: &BenchOptions, progress: &mut (dyn Write + Send)) -> anyhow::Result<BenchReport> {
    let sims = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SIM_THREAD)
        .enable_all()
        .build()
        .context("starting the simulators' runtime")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(run(opts, sims.handle().clone(), progress));
    drop(rt);
    sims.shutdown_timeout(Duration::from_secs(5));
    report
}

/// Name of the simulators' threads (excluded from the bridge's CPU).
const SIM_THREAD: &str = "fb-bench-sim";
/// Name of the paced producer's thread.
const PRODUCER_THREAD: &str = "fb-bench-prod";

/// Runs the benchmark; the simulators are spawned on `sims`.
pub async fn run(
    opts: &BenchOptions,
    sims: tokio::runtime::Handle,
    progress: &mut (dyn Write + Send),
) -> anyhow::Result<BenchReport> {
    let machine = machine();
    let registry = Arc::new(Registry::embedded());
    let stream = Stream::generate(&registry, opts)?;
    let partitions = opts.partitions.unwrap_or_else(|| {
        i32::try_from(stream.payload_bytes.div_ceil(PARTITION_BUDGET).max(4)).unwrap_or(i32::MAX)
    });
    writeln!(
        progress,
        "bench: {} events over {} instances ({}), {} todos, {:.1} MiB of payloads, {partitions} partitions; load average {:.2}",
        stream.payloads.len(),
        stream.instances,
        WORKFLOWS.join(", "),
        stream.todos(stream.payloads.len()),
        stream.payload_bytes as f64 / 1048576.0,
        machine.load_average_at_start
    )?;

    let broker = Broker::start(opts.bootstrap.as_deref())?;
    let tag = format!("fb-bench-{}-{}", std::process::id(), crate::state::now_ms());
    let topic = format!("{tag}-events");
    broker.create_topic(&topic, partitions).await?;
    let t = Instant::now();
    produce_all(&broker.client(), &topic, &stream)?;
    check_topic(&broker.client(), &topic, stream.payloads.len())?;
    writeln!(
        progress,
        "bench: produced to {topic} in {:.1} s",
        t.elapsed().as_secs_f64()
    )?;
    let dir = TempDir::new(&tag)?;

    let n = stream.payloads.len();

    let ran = |r: Run| opts.runs.contains(&r);
    let bridge = |group: String, topic: String, latency_ms: u64, pace: Option<(f64, usize)>| BridgeRun {
        client: broker.client(),
        brokers: broker.bootstrap().to_owned(),
        topic,
        group,
        registry: registry.clone(),
        sims: sims.clone(),
        dir: dir.path().to_owned(),
        latency_ms,
        embedded: matches!(broker, Broker::Embedded(_)),
        pace,
    };
    let mut runs: Vec<RunReport> = Vec::new();
    let rate_of =
        |runs: &[RunReport], name: &str| runs.iter().find(|r| r.name == name).map(|r| r.events_per_s);

    if ran(Run::Bare) {
        writeln!(progress, "bench: (a) bare consume …")?;
        let r = bare_run(&broker.client(), &topic, &format!("{tag}-bare"), n).await?;
        writeln!(progress, "bench:   {:.0} events/s", r.events_per_s)?;
        runs.push(r);
    }
    for (run, latency) in [
        (Run::Flowbridge, 0),
        (Run::FlowbridgeLatency, opts.added_latency_ms),
    ] {
        if !ran(run) {
            continue;
        }
        writeln!(progress, "bench: (b) flowbridge, +{latency} ms per request …")?;
        let r = bridge_run(
            bridge(format!("{tag}-fb{latency}"), topic.clone(), latency, None),
            &stream,
        )
        .await?;
        writeln!(progress, "bench:   {:.0} events/s", r.events_per_s)?;
        runs.push(r);
    }
    if ran(Run::Naive) {
        let sample = opts.naive_events.min(n).max(1);
        writeln!(progress, "bench: (c) naive, {sample} events …")?;
        let r = naive_run(NaiveRun {
            client: broker.client(),
            topic: &topic,
            group: &format!("{tag}-naive"),
            registry: &registry,
            sims: &sims,
            dir: dir.path(),
            events: sample,
        })
        .await?;
        writeln!(progress, "bench:   {:.0} events/s", r.events_per_s)?;
        runs.push(r);
    }
    let mut paced_rate = 0.0;
    let mut paced_source = "half of (b)";
    if ran(Run::Paced) {
        let rate = match (opts.paced_rate, rate_of(&runs, "flowbridge")) {
            (Some(r), _) => {
                paced_source = "--paced-rate";
                r
            }
            (None, Some(b)) => b / 2.0,
            (None, None) => bail!("the paced run needs --paced-rate when the flowbridge run is left out"),
        }
        .max(1.0);
        paced_rate = rate;
        let paced_events = ((rate * opts.paced_secs) as usize).clamp(1, n);
        let paced_topic = format!("{tag}-paced");
        broker.create_topic(&paced_topic, partitions).await?;
        writeln!(
            progress,
            "bench: paced at {rate:.0} events/s, {paced_events} events …"
        )?;
        let r = bridge_run(
            bridge(format!("{tag}-paced"), paced_topic, 0, Some((rate, paced_events))),
            &stream,
        )
        .await?;
        let lat = r.latency.unwrap_or_default();
        writeln!(
            progress,
            "bench:   p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            lat.p50_ms, lat.p99_ms, lat.max_ms
        )?;
        runs.push(r);
    }

    let get = |name: &str| runs.iter().find(|r| r.name == name);
    let rate = |name: &str| get(name).map_or(0.0, |r| r.events_per_s);
    let (a, b, c) = (rate("bare"), rate("flowbridge"), rate("naive"));
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    let lat = get("paced").and_then(|r| r.latency).unwrap_or_default();
    let naive_sample = get("naive").map_or(0, |r| r.events);
    let b_run = get("flowbridge");
    Ok(BenchReport {
        machine,
        broker: broker.describe(),
        workflows: WORKFLOWS.iter().map(|s| (*s).to_owned()).collect(),
        events: n,
        instances: stream.instances,
        partitions,
        payload_bytes: stream.payload_bytes,
        todos: stream.todos(n),
        bare_events_per_s: a,
        flowbridge_events_per_s: b,
        flowbridge_added_latency_events_per_s: rate(&format!("flowbridge_{}ms", opts.added_latency_ms)),
        added_latency_ms: opts.added_latency_ms,
        naive_events_per_s: c,
        naive_sample_events: naive_sample,
        naive_extrapolated: naive_sample > 0 && naive_sample < n,
        ratio_b_over_a: ratio(b, a),
        ratio_b_over_c: ratio(b, c),
        paced_target_events_per_s: paced_rate,
        paced_target_source: paced_source,
        paced_achieved_events_per_s: rate("paced"),
        p50_ms: lat.p50_ms,
        p99_ms: lat.p99_ms,
        max_ms: lat.max_ms,
        peak_rss_bytes: memory().peak_since_start,
        rss_growth_per_instance_bytes: b_run.map_or(0.0, |r| {
            r.rss_growth_bytes as f64 / stream.instances.max(1) as f64
        }),
        cpu_s_per_m_events: b_run.map_or(0.0, |r| r.cpu_s_per_m_events),
        runs,
    })
}

/// The report as a table.
pub fn table(r: &BenchReport) -> String {
    use std::fmt::Write as _;
    let mib = |b: u64| b as f64 / 1048576.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "flowbridge bench: {} events over {} instances ({}), {} todos, {} partitions",
        r.events,
        r.instances,
        r.workflows.join(", "),
        r.todos,
        r.partitions
    );
    let _ = writeln!(s, "broker: {}", r.broker);
    let _ = writeln!(
        s,
        "machine: {} cores, {}, {:.1} GiB; load average at start {:.2}\n",
        r.machine.cores,
        r.machine.cpu,
        r.machine.memory_bytes as f64 / 1073741824.0,
        r.machine.load_average_at_start
    );
    let _ = writeln!(
        s,
        "{:<44} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>16}",
        "run", "events", "seconds", "events/s", "CPU s/M", "peak RSS", "RSS +", "p50/p99/max ms"
    );
    for run in &r.runs {
        let lat = run.latency.map_or_else(
            || "-".to_owned(),
            |l| format!("{:.0}/{:.0}/{:.0}", l.p50_ms, l.p99_ms, l.max_ms),
        );
        let _ = writeln!(
            s,
            "{:<44} {:>8} {:>8.2} {:>10.0} {:>9.1} {:>8.0}M {:>8.0}M {:>16}",
            run.label,
            run.events,
            run.seconds,
            run.events_per_s,
            run.cpu_s_per_m_events,
            mib(run.peak_rss_bytes),
            mib(run.rss_growth_bytes),
            lat
        );
    }
    let _ = writeln!(
        s,
        "\n(b)/(a) = {:.2}   (b)/(c) = {:.1}x{}",
        r.ratio_b_over_a,
        r.ratio_b_over_c,
        if r.naive_extrapolated {
            format!(
                "   ((c) ran {} of {} events; its rate is extrapolated)",
                r.naive_sample_events, r.events
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "latency, Kafka timestamp → todo accepted by the simulator, paced at {:.0} events/s ({}), reached {:.0}/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        r.paced_target_events_per_s,
        r.paced_target_source,
        r.paced_achieved_events_per_s,
        r.p50_ms,
        r.p99_ms,
        r.max_ms
    );
    if r.paced_achieved_events_per_s < 0.95 * r.paced_target_events_per_s {
        let _ = writeln!(
            s,
            "  the paced run fell short of its target: the producer, broker and simulators share the machine, so its latency includes a backlog"
        );
    }
    let _ = writeln!(
        s,
        "memory: peak RSS {:.0} MiB (whole process: broker, simulators, stream); RSS growth during (b) {:.0} bytes per instance",
        mib(r.peak_rss_bytes),
        r.rss_growth_per_instance_bytes
    );
    let _ = writeln!(
        s,
        "CPU s/M: CPU seconds per million events, simulators and embedded broker excluded"
    );
    s
}

/// A directory removed when dropped (the redb files of the runs).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(tag);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The generated stream and what an offline replay decides for it.
struct Stream {
    /// (key, payload) per event, in order.
    payloads: Vec<(String, String)>,
    payload_bytes: usize,
    instances: usize,
    /// taskId → index of the event that creates it.
    task_event: HashMap<String, u32>,
    /// Todos created by events `0..=i`.
    todos_upto: Vec<u32>,
}

impl Stream {
    fn generate(registry: &Registry, opts: &BenchOptions) -> anyhow::Result<Stream> {
        let wfs: Vec<&Workflow> = WORKFLOWS
            .iter()
            .map(|id| {
                registry
                    .get(id)
                    .map(|w| w.as_ref())
                    .with_context(|| format!("sample workflow {id} is missing"))
            })
            .collect::<anyhow::Result<_>>()?;
        // Longer walks (more loops taken) until the instances make enough
        // events (estimated on a few hundred instances); the interleaved
        // stream is then cut at `events`.
        let instances = opts.instances.max(1);
        let probe = instances.min(400);
        let max_visits = (2..=8)
            .find(|&v| {
                let made = scenario::stream_with_visits(&wfs, probe, "P", opts.seed, v).len();
                made * instances >= opts.events * probe * 21 / 20
            })
            .unwrap_or(8);
        let values = scenario::stream_with_visits(&wfs, instances, "B", opts.seed, max_visits);
        let mut payloads = Vec::with_capacity(values.len().min(opts.events));
        let mut payload_bytes = 0;
        for v in values.into_iter().take(opts.events) {
            let key = v["serialNumber"].as_str().unwrap_or_default().to_owned();
            let payload = v.to_string();
            payload_bytes += payload.len();
            payloads.push((key, payload));
        }
        // Offline replay: which todo comes from which event.
        let mut states: HashMap<InstanceKey, InstanceState> = HashMap::new();
        let mut task_event = HashMap::new();
        let mut todos_upto = Vec::with_capacity(payloads.len());
        let mut todos = 0u32;
        for (i, (_, payload)) in payloads.iter().enumerate() {
            let event = Event::decode(
                payload.as_bytes(),
                Source::File {
                    file: "bench",
                    line: i + 1,
                },
            )
            .map_err(|e| anyhow::anyhow!("generated event {i} does not decode: {e}"))?;
            let key = InstanceKey::new(&event.workflow, &event.serial_number);
            let d = engine::decide(registry, states.get(&key), &event);
            if let Some(r) = d.rejection {
                bail!("generated event {i} is rejected: {}", r.message);
            }
            for a in &d.actions {
                if let Action::Poa(t) = a {
                    task_event.insert(t.item.task_id.clone(), i as u32);
                    todos += 1;
                }
            }
            if let Some(next) = d.next_state {
                states.insert(key, next);
            }
            todos_upto.push(todos);
        }
        Ok(Stream {
            instances: states.len(),
            payloads,
            payload_bytes,
            task_event,
            todos_upto,
        })
    }

    /// Todos created by the first `n` events.
    fn todos(&self, n: usize) -> usize {
        n.checked_sub(1)
            .and_then(|i| self.todos_upto.get(i))
            .map_or(0, |&t| t as usize)
    }
}

/// The broker the bench runs against.
enum Broker {
    Embedded(EmbeddedBroker),
    External(String),
}

impl Broker {
    fn start(bootstrap: Option<&str>) -> anyhow::Result<Broker> {
        Ok(match bootstrap {
            Some(b) => Broker::External(b.to_owned()),
            None => Broker::Embedded(EmbeddedBroker::start(1).context("starting the embedded broker")?),
        })
    }

    fn bootstrap(&self) -> &str {
        match self {
            Broker::Embedded(b) => b.bootstrap_servers(),
            Broker::External(b) => b,
        }
    }

    fn describe(&self) -> String {
        match self {
            Broker::Embedded(b) => format!(
                "embedded (librdkafka mock cluster in this process, {})",
                b.bootstrap_servers()
            ),
            Broker::External(b) => format!("{b} ({BOOTSTRAP_ENV})"),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        match self {
            Broker::Embedded(b) => b
                .create_topic(name, partitions)
                .with_context(|| format!("creating topic {name}")),
            Broker::External(_) => {
                let admin: AdminClient<DefaultClientContext> =
                    self.client().create().context("creating the admin client")?;
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let results = admin
                    .create_topics(
                        [&topic],
                        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
                    )
                    .await
                    .with_context(|| format!("creating topic {name}"))?;
                for r in results {
                    r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
                }
                Ok(())
            }
        }
    }
}

fn producer(client: &ClientConfig) -> anyhow::Result<BaseProducer> {
    let mut c = client.clone();
    c.set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("linger.ms", "1")
        .set("acks", "all");
    // As the tests do against tansu 0.6 (docs/architecture.md, "Brokers").
    if std::env::var(crate::demo::ONE_RECORD_PER_BATCH_ENV).is_ok_and(|v| v == "1") {
        c.set("batch.num.messages", "1");
    }
    c.create().context("creating the bench producer")
}

/// Sends one record, waiting while the local queue is full; `timestamp`
/// (ms) is the record's Kafka timestamp when given.
fn send(
    p: &BaseProducer,
    topic: &str,
    key: &str,
    payload: &str,
    timestamp: Option<i64>,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    if let Some(ts) = timestamp {
        record = record.timestamp(ts);
    }
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                r,
            )) => {
                record = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("producing to {topic}: {e}"),
        }
    }
}

fn produce_all(client: &ClientConfig, topic: &str, stream: &Stream) -> anyhow::Result<()> {
    let p = producer(client)?;
    for (i, (key, payload)) in stream.payloads.iter().enumerate() {
        send(&p, topic, key, payload, None)?;
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(120))
        .with_context(|| format!("flushing {topic}"))?;
    Ok(())
}

/// Checks that every event is in the topic, none dropped by the broker.
fn check_topic(
    client: &ClientConfig,
    topic: &str,
    expected: usize,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let consumer: BaseConsumer = client.create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ends = BTreeMap::new();
    let mut total = 0;
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if low != 0 {
                bail!(
                    "partition {} of {topic} starts at offset {low}: the broker dropped data (more partitions needed)",
                    p.id()
                );
            }
            total += high;
            ends.insert((topic.to_owned(), p.id()), high);
        }
    }
    if total != expected as i64 {
        bail!("{topic} holds {total} events, expected {expected}");
    }
    Ok(ends)
}

/// CPU and memory readings.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// Process CPU seconds (getrusage).
    process_cpu: f64,
    /// CPU seconds of the simulators', the embedded broker's and the
    /// paced producer's threads.
    excluded_cpu: f64,
    rss: u64,
}

impl Sample {
    fn now() -> Self {
        Sample {
            at: Instant::now(),
            process_cpu: process_cpu(),
            excluded_cpu: excluded_cpu(),
            rss: memory().rss,
        }
    }
}

/// Process CPU time (user + system), seconds.
fn process_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is a
    // zeroed, properly aligned `rusage` owned by this frame.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds of this process's threads that are not the system under
/// test: the simulators' runtime, librdkafka's mock cluster, the paced
/// producer.
fn excluded_cpu() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut sum = 0.0;
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... ; comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        if !(comm.starts_with(SIM_THREAD) || comm.starts_with(PRODUCER_THREAD) || comm == "rdk:mock") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the comm: state is field 3; utime and stime are fields 14, 15.
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        sum += (field(14) + field(15)) / ticks;
    }
    sum
}

/// Memory of the process, bytes.
struct Memory {
    rss: u64,
    /// Peak since the last reset (or the start).
    peak: u64,
    /// Peak since the process started, resets notwithstanding.
    peak_since_start: u64,
}

static PEAK_BEFORE_RESET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let peak = kib("VmHWM:");
    Memory {
        rss: kib("VmRSS:"),
        peak,
        peak_since_start: peak.max(PEAK_BEFORE_RESET.load(Ordering::Relaxed)),
    }
}

/// Returns freed heap memory to the system (the stream's generation leaves
/// a lot), so the runs' RSS figures start from what is in use.
fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions; it only releases free
    // memory of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resets the peak RSS to the current RSS (Linux ≥ 4.0); keeps the old
/// peak for the whole-process figure.
fn reset_peak() {
    trim_heap();
    let m = memory();
    PEAK_BEFORE_RESET.fetch_max(m.peak, Ordering::Relaxed);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    let load_average_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory_bytes,
        load_average_at_start,
    }
}

/// A run's report from its samples.
#[allow(clippy::too_many_arguments)]
fn report(
    name: &str,
    label: String,
    events: usize,
    start: Sample,
    first: Instant,
    last: Instant,
    end: Sample,
    todos: usize,
    latency: Option<Latency>,
) -> RunReport {
    let seconds = last.duration_since(first).as_secs_f64().max(1e-6);
    let per_m = 1e6 / events.max(1) as f64;
    let process = end.process_cpu - start.process_cpu;
    let excluded = end.excluded_cpu - start.excluded_cpu;
    let peak = memory().peak;
    RunReport {
        name: name.to_owned(),
        label,
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        cpu_s_per_m_events: (process - excluded).max(0.0) * per_m,
        process_cpu_s_per_m_events: process * per_m,
        peak_rss_bytes: peak,
        rss_growth_bytes: peak
            .saturating_sub(start.rss)
            .max(end.rss.saturating_sub(start.rss)),
        todos,
        latency,
    }
}

/// (a): counts messages, touches nothing.
async fn bare_run(client: &ClientConfig, topic: &str, group: &str, n: usize) -> anyhow::Result<RunReport> {
    let mut c = client.clone();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = c.create()?;
    consumer.subscribe(&[topic])?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        reset_peak();
        let start = Sample::now();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut first = None;
        let mut count = 0usize;
        while count < n {
            if Instant::now() > deadline {
                bail!("bare consumer: {count} of {n} events from {topic} in 600 s");
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(_)) => {
                    first.get_or_insert_with(Instant::now);
                    count += 1;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "bare consumer"),
                None => {}
            }
        }
        let last = Instant::now();
        let end = Sample::now();
        Ok(report(
            "bare",
            "(a) bare consume (decode nothing)".into(),
            n,
            start,
            first.unwrap_or(start.at),
            last,
            end,
            0,
            None,
        ))
    })
    .await?
}

/// Simulators spawned on the simulators' runtime.
struct Sims {
    handle: tokio::runtime::Handle,
    poa: Option<sim::poa::PoaSim>,
    aicc: Option<sim::aicc::AiccSim>,
}

impl Sims {
    async fn start(handle: &tokio::runtime::Handle, latency_ms: u64) -> anyhow::Result<Sims> {
        let opts = SimOptions {
            faults: Faults {
                latency_ms,
                ..Faults::default()
            },
            ..SimOptions::default()
        };
        let o = opts.clone();
        let poa = handle
            .spawn(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                sim::poa::spawn(l, o).await
            })
            .await??;
        let aicc = handle
            .spawn(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                sim::aicc::spawn(l, opts).await
            })
            .await??;
        Ok(Sims {
            handle: handle.clone(),
            poa: Some(poa),
            aicc: Some(aicc),
        })
    }

    fn poa(&self) -> &sim::poa::PoaSim {
        self.poa.as_ref().expect("present until shutdown")
    }

    fn poa_config(&self) -> PoaConfig {
        PoaConfig::new(self.poa().base_url(), oauth(self.poa().credentials()))
    }

    fn aicc_config(&self) -> AiccConfig {
        let a = self.aicc.as_ref().expect("present until shutdown");
        AiccConfig::new(a.base_url(), oauth(a.credentials()))
    }

    async fn shutdown(mut self) {
        if let (Some(p), Some(a)) = (self.poa.take(), self.aicc.take()) {
            let _ = self
                .handle
                .spawn(async move {
                    p.shutdown().await;
                    a.shutdown().await;
                })
                .await;
        }
    }
}

fn oauth(creds: (String, secrecy::SecretString)) -> AuthConfig {
    AuthConfig::Oauth(OAuthConfig::new(creds.0, creds.1.expose_secret()))
}

/// Checks the simulator accepted exactly the todos the replay decided.
fn check_todos(sims: &Sims, expected: usize, what: &str) -> anyhow::Result<usize> {
    let got = sims.poa().todo_count();
    if got != expected {
        bail!("{what}: the simulator accepted {got} todos, the replay decides {expected}");
    }
    Ok(got)
}

struct BridgeRun {
    client: ClientConfig,
    brokers: String,
    topic: String,
    group: String,
    registry: Arc<Registry>,
    sims: tokio::runtime::Handle,
    dir: std::path::PathBuf,
    latency_ms: u64,
    /// Against the embedded broker (see [`EMBEDDED_FETCH_WAIT_MS`]).
    embedded: bool,
    /// Produce while consuming: (events/s, events).
    pace: Option<(f64, usize)>,
}

/// (b) and the paced run: the real runtime, as `flowbridge run` starts it.
async fn bridge_run(r: BridgeRun, stream: &Stream) -> anyhow::Result<RunReport> {
    let sims = Sims::start(&r.sims, r.latency_ms).await?;
    let mut properties = BTreeMap::new();
    if r.embedded {
        properties.insert("fetch.wait.max.ms".to_owned(), EMBEDDED_FETCH_WAIT_MS.to_string());
    }
    let cfg = BridgeConfig {
        kafka: KafkaConfig {
            brokers: r.brokers.clone(),
            group_id: r.group.clone(),
            topics: vec![r.topic.clone()],
            dlq_topic: Some(format!("{}.dlq", r.topic)),
            properties,
            workers: 8,
            lane_capacity: 512,
            max_batch: 256,
            commit_interval_ms: 500,
            drain_timeout_ms: 10_000,
        },
        workflows: "workflows".into(),
        state: StoreConfig {
            kind: StoreKind::Redb,
            path: r.dir.join(format!("{}.redb", r.group)),
            ..StoreConfig::default()
        },
        poa: Some(sims.poa_config()),
        aicc: Some(sims.aicc_config()),
        metrics_addr: None,
        shutdown_grace_ms: 30_000,
    };
    let n = r.pace.map_or(stream.payloads.len(), |(_, n)| n);
    let expected = stream.todos(n);
    let registry = Registry::clone(&r.registry);
    reset_peak();
    let start = Sample::now();
    let bridge = runtime::start(&cfg, registry).await?;

    // The paced run waits for its partitions, then produces at its pace.
    let mut timestamps = Vec::new();
    let producer = match r.pace {
        None => None,
        Some((rate, n)) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while bridge.running.assigned().is_empty() {
                if Instant::now() > deadline {
                    bail!("the paced run's consumer got no partitions in 60 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let p = producer(&r.client)?;
            let payloads: Vec<(String, String)> = stream.payloads[..n].to_vec();
            let topic = r.topic.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let handle = std::thread::Builder::new()
                .name(PRODUCER_THREAD.into())
                .spawn(move || paced_produce(&p, &topic, &payloads, rate, &stop))?;
            Some(handle)
        }
    };

    let metrics = bridge.pipeline.metrics.clone();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    loop {
        let consumed = metrics.events_consumed.get() as usize;
        if consumed > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if consumed >= n && bridge.running.in_flight() == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}: {consumed} of {n} events consumed in 600 s", r.group);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let last = Instant::now();
    let end = Sample::now();
    if let Some(h) = producer {
        timestamps = h
            .join()
            .map_err(|_| anyhow::anyhow!("the paced producer panicked"))??;
    }
    let ends = check_topic(&r.client, &r.topic, n)?;
    if !bridge
        .running
        .wait_committed(&ends, Duration::from_secs(30))
        .await
    {
        bail!("{}: offsets not committed to the end within 30 s", r.group);
    }
    bridge.stop().await;
    let todos = check_todos(&sims, expected, &r.group)?;
    let latency = if r.pace.is_some() {
        Some(latencies(&sims, stream, &timestamps))
    } else {
        None
    };
    sims.shutdown().await;
    let label = match r.pace {
        Some((rate, _)) => format!("(b) flowbridge, paced at {rate:.0}/s"),
        None => format!("(b) flowbridge, +{} ms per request", r.latency_ms),
    };
    let name = match (r.pace, r.latency_ms) {
        (Some(_), _) => "paced".to_owned(),
        (None, 0) => "flowbridge".to_owned(),
        (None, ms) => format!("flowbridge_{ms}ms"),
    };
    Ok(report(
        &name,
        label,
        n,
        start,
        first.unwrap_or(start.at),
        last,
        end,
        todos,
        latency,
    ))
}

/// Produces `payloads` at `rate` per second, stamping each record's Kafka
/// timestamp; returns the timestamps (ms).
fn paced_produce(
    p: &BaseProducer,
    topic: &str,
    payloads: &[(String, String)],
    rate: f64,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<i64>> {
    let started = Instant::now();
    let mut stamps = Vec::with_capacity(payloads.len());
    let mut i = 0;
    while i < payloads.len() && !stop.load(Ordering::Relaxed) {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(payloads.len());
        while i < due {
            let ts = crate::state::now_ms();
            let (key, payload) = &payloads[i];
            send(p, topic, key, payload, Some(ts))?;
            stamps.push(ts);
            i += 1;
        }
        p.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    p.flush(Duration::from_secs(60))
        .with_context(|| format!("flushing {topic}"))?;
    Ok(stamps)
}

/// Kafka timestamp → accepted, over every todo of the paced run.
fn latencies(sims: &Sims, stream: &Stream, stamps: &[i64]) -> Latency {
    let mut ms: Vec<i64> = sims
        .poa()
        .accept_times()
        .into_iter()
        .filter_map(|(task, at)| {
            let i = *stream.task_event.get(&task)? as usize;
            Some(at - stamps.get(i)?)
        })
        .collect();
    ms.sort_unstable();
    let pct = |p: f64| {
        if ms.is_empty() {
            return 0.0;
        }
        let i = ((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1;
        ms[i] as f64
    };
    Latency {
        count: ms.len(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: ms.last().copied().unwrap_or(0) as f64,
    }
}

struct NaiveRun<'a> {
    client: ClientConfig,
    topic: &'a str,
    group: &'a str,
    registry: &'a Arc<Registry>,
    sims: &'a tokio::runtime::Handle,
    dir: &'a Path,
    events: usize,
}

/// (c): one event at a time — read the state, decide, one HTTP call per
/// todo (a POA sink that sends batches of one, one at a time), one state
/// transaction per event; offsets auto-committed (the librdkafka default,
/// cheaper than committing per event).
async fn naive_run(r: NaiveRun<'_>) -> anyhow::Result<RunReport> {
    let sims = Sims::start(r.sims, 0).await?;
    let mut poa = sims.poa_config();
    poa.max_batch = 1;
    poa.max_in_flight = 1;
    poa.linger_ms = 0;
    let sink = PoaSink::new(poa)?;
    let store = RedbStore::open(r.dir.join(format!("{}.redb", r.group))).await?;
    let mut c = r.client.clone();
    c.set("group.id", r.group).set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = c.create()?;
    consumer.subscribe(&[r.topic])?;

    reset_peak();
    let start = Sample::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    let mut count = 0;
    while count < r.events {
        if Instant::now() > deadline {
            bail!("naive: {count} of {} events in 600 s", r.events);
        }
        let m = consumer.recv().await?;
        first.get_or_insert_with(Instant::now);
        let event = Event::decode(
            m.payload().unwrap_or_default(),
            Source::Kafka {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
            },
        )?;
        let key = InstanceKey::new(&event.workflow, &event.serial_number);
        let state = store.get(&key).await?;
        let decision = engine::decide(r.registry, state.as_ref(), &event);
        if let Some(rej) = decision.rejection {
            bail!("naive: event rejected: {}", rej.message);
        }
        for action in decision.actions {
            if let Action::Poa(todo) = action {
                match sink.send(&event.serial_number, todo.item).await {
                    crate::sink::Outcome::Done { .. } => {}
                    other => bail!("naive: todo not created: {other:?}"),
                }
            }
        }
        if let Some(next) = decision.next_state {
            store.put(&next).await?;
        }
        count += 1;
    }
    let last = Instant::now();
    let end = Sample::now();
    // Which events it took depends on how partitions interleave; count the
    // todos it made rather than predicting them.
    let todos = sims.poa().todo_count();
    drop(consumer);
    drop(sink);
    sims.shutdown().await;
    Ok(report(
        "naive",
        format!("(c) naive, one event at a time ({count} events)"),
        count,
        start,
        first.unwrap_or(start.at),
        last,
        end,
        todos,
        None,
    ))
}
