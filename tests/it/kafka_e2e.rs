//! End-to-end runs of the bridge over real TCP: the embedded Kafka-protocol
//! broker, or the broker named by `FLOWBRIDGE_TEST_BOOTSTRAP` (e.g. tansu,
//! started by `.ci/run`); the POA and AICC simulators; redb or PostgreSQL.
//! Every test compares what the simulators recorded with what a dry-run
//! replay of the same stream says must exist: no todo lost, none twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use flowbridge::demo::{self, DemoOptions, Stack, TEST_BOOTSTRAP_ENV};
use flowbridge::runtime;
use flowbridge::scenario;
use flowbridge::sim::{Faults, FaultsPatch};
use flowbridge::state::{self, StateStore};
use flowbridge::workflow::{Registry, Workflow};

/// A generated stream produced to `stack`: its lines, the workflows, and
/// what a dry-run replay says the run must create.
struct Produced {
    lines: Vec<String>,
    reg: Registry,
    expected: demo::Expected,
}

fn produce(stack: &Stack, instances: usize, seed: u64) -> Produced {
    let reg = Registry::embedded();
    let wfs: Vec<&Workflow> = reg.workflows().into_iter().map(|w| w.as_ref()).collect();
    let lines: Vec<String> = scenario::stream(&wfs, instances, "T", seed)
        .iter()
        .map(ToString::to_string)
        .collect();
    stack.produce(&lines).unwrap();
    let expected = demo::expected(&reg, &lines).unwrap();
    Produced { lines, reg, expected }
}

/// Polls `cond` every 20 ms until it holds or `secs` pass.
async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The group's committed offsets as the broker has them.
fn group_committed(stack: &Stack, group: &str) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = stack
        .client()
        .set("group.id", stack.group(group))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..stack.partitions {
        tpl.add_partition(&stack.topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

fn all_committed(stack: &Stack, group: &str) -> bool {
    let committed = group_committed(stack, group);
    stack.ends().iter().all(|(k, end)| committed.get(k) == Some(end))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_demo_scenario_runs_clean() {
    let opts = DemoOptions {
        instances: 120,
        outage_ms: 500,
        progress: false,
        external_bootstrap: std::env::var(TEST_BOOTSTRAP_ENV).ok(),
        ..DemoOptions::default()
    };
    let mut out = Vec::new();
    let report = demo::run(&opts, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(report.problems.is_empty(), "{text}");
    assert!(
        report.todos_chained > report.todos_first && report.aicc_tasks > 0,
        "{text}"
    );
    assert!(
        report.poa_refused_in_outage > 0,
        "the outage was not exercised: {text}"
    );
    assert_eq!(report.dead_letters.values().sum::<usize>(), 7, "{text}");
    assert!(text.contains("opens the transaction"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_dropped_mid_stream_loses_nothing_and_duplicates_nothing() {
    let stack = Stack::for_tests(
        4,
        Faults {
            latency_ms: 2,
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let Produced { lines, reg, expected } = produce(&stack, 250, 11);
    let cfg = stack.config("restart");
    let store = state::open(&cfg.state).await.unwrap();

    let first = runtime::start_with_store(&cfg, reg.clone(), store.clone())
        .await
        .unwrap();
    let first_metrics = first.pipeline.metrics.clone();
    eventually(60, "half the stream", || {
        first_metrics.events_consumed.get() >= lines.len() as u64 / 2
    })
    .await;
    first.abandon().await; // no final commit: what it did since the last commit is redelivered

    let second = runtime::start_with_store(&cfg, reg, store.clone()).await.unwrap();
    eventually(60, "all offsets committed", || all_committed(&stack, "restart")).await;
    let redelivered = second
        .pipeline
        .metrics
        .sum("flowbridge_events_duplicate_total", &[]);
    let dlq = dead_lettered(&first_metrics) + dead_lettered(&second.pipeline.metrics);
    second.stop().await;

    assert_eq!(dlq, 0.0);
    assert_eq!(demo::compare(&stack, &expected), Vec::<String>::new());
    eprintln!("events redelivered and skipped as duplicates: {redelivered}");
}

fn dead_lettered(m: &flowbridge::observe::Metrics) -> f64 {
    m.sum("flowbridge_dlq_produced_total", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_rebalancing_mid_stream_share_postgres_without_loss_or_duplicates() {
    let schema = crate::state_store::fresh_schema();
    let Some(pg) = crate::state_store::pg_store(&schema).await else {
        return;
    };
    let pg = Arc::new(pg);
    let store: Arc<dyn StateStore> = pg.clone();
    let stack = Stack::for_tests(
        4,
        Faults {
            latency_ms: 60,
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let Produced { lines, reg, expected } = produce(&stack, 250, 12);
    // Small lanes and batches: the stream must outlast the rebalance.
    let mut cfg = stack.config("rebalance");
    cfg.kafka.workers = 2;
    cfg.kafka.lane_capacity = 8;
    cfg.kafka.max_batch = 8;

    let a = runtime::start_with_store(&cfg, reg.clone(), store.clone())
        .await
        .unwrap();
    let ma = a.pipeline.metrics.clone();
    eventually(60, "a third of the stream", || {
        ma.events_consumed.get() >= lines.len() as u64 / 3
    })
    .await;
    let b = runtime::start_with_store(&cfg, reg, store.clone()).await.unwrap();
    let probe_a = a.running.probe();
    let probe_b = b.running.probe();
    eventually(60, "a rebalance giving both consumers partitions", || {
        probe_a.partitions_assigned() > 0 && probe_b.partitions_assigned() > 0
    })
    .await;
    eventually(90, "all offsets committed", || all_committed(&stack, "rebalance")).await;
    let applied_b = b.pipeline.metrics.sum("flowbridge_events_applied_total", &[]);
    let dlq = dead_lettered(&a.pipeline.metrics) + dead_lettered(&b.pipeline.metrics);
    a.stop().await;
    b.stop().await;

    assert!(
        applied_b > 0.0,
        "the second consumer applied nothing: the rebalance was not mid-stream"
    );
    assert_eq!(dlq, 0.0);
    assert_eq!(demo::compare(&stack, &expected), Vec::<String>::new());
    crate::state_store::drop_schema(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poa_outage_is_retried_and_everything_is_delivered_after_it() {
    let stack = Stack::for_tests(2, Faults::default()).await.unwrap();
    stack.poa.patch_faults(FaultsPatch {
        outage: Some(true),
        ..FaultsPatch::default()
    });
    let Produced { reg, expected, .. } = produce(&stack, 60, 13);
    let bridge = runtime::start(&stack.config("outage"), reg).await.unwrap();
    eventually(30, "requests refused by the outage", || {
        let s = stack.poa.stats();
        s.injected + s.token_refused >= 3
    })
    .await;
    assert!(
        stack.poa.todos().is_empty(),
        "nothing gets through during the outage"
    );
    stack.poa.patch_faults(FaultsPatch {
        outage: Some(false),
        ..FaultsPatch::default()
    });
    eventually(60, "all offsets committed", || all_committed(&stack, "outage")).await;
    let dlq = dead_lettered(&bridge.pipeline.metrics);
    bridge.stop().await;
    assert_eq!(dlq, 0.0, "an outage within the retry budget dead-letters nothing");
    assert_eq!(demo::compare(&stack, &expected), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_zero() {
    // Slow POA so that work is in flight when the signal arrives.
    let stack = Stack::for_tests(4, Faults::default()).await.unwrap();
    stack.poa.patch_faults(FaultsPatch {
        latency_ms: Some(300),
        ..FaultsPatch::default()
    });
    let Produced { lines, reg, expected } = produce(&stack, 200, 14);
    let (id, _) = stack.poa.credentials();
    let redb = stack.dir.0.join("flowbridge.redb");
    let config = format!(
        r#"
kafka:
  brokers: {brokers}
  group_id: {group}
  topics: [{topic}]
  commit_interval_ms: 200
  workers: 2
  lane_capacity: 4
  max_batch: 4
  properties: {{session.timeout.ms: "6000", heartbeat.interval.ms: "500"}}
workflows: {workflows}
state: {{kind: redb, path: {redb}}}
poa:
  base_url: {poa}
  auth: {{oauth: {{client_id: {id}, client_secret: "${{SIM_SECRET}}"}}}}
aicc:
  base_url: {aicc}
  auth: {{oauth: {{client_id: {id}, client_secret: "${{SIM_SECRET}}"}}}}
shutdown_grace_ms: 20000
"#,
        brokers = stack.bootstrap,
        group = stack.group("sigterm"),
        topic = stack.topic,
        workflows = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows"),
        redb = redb.display(),
        poa = stack.poa.base_url(),
        aicc = stack.aicc.base_url(),
    );
    let path = stack.dir.0.join("flowbridge.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flowbridge"))
        .args(["run", "--config"])
        .arg(&path)
        .env("SIM_SECRET", "flowbridge-sim-secret")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    eventually(60, "the first todos", || !stack.poa.todos().is_empty()).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "flowbridge did not exit within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit}");
    let committed: i64 = group_committed(&stack, "sigterm").values().sum();
    assert!(committed > 0, "nothing was committed on the way out");
    let recorded_at_exit = stack.poa.todos().len();
    stack.poa.patch_faults(FaultsPatch {
        latency_ms: Some(0),
        ..FaultsPatch::default()
    });

    // A new run of the same group on the same state finishes the stream:
    // what the first run drained and committed is not redone.
    let mut cfg = stack.config("sigterm");
    cfg.state.path = redb;
    let bridge = runtime::start(&cfg, reg).await.unwrap();
    eventually(60, "all offsets committed", || all_committed(&stack, "sigterm")).await;
    let consumed_after = bridge.pipeline.metrics.events_consumed.get();
    bridge.stop().await;
    assert!(
        (consumed_after as usize) <= lines.len() - committed as usize,
        "the second run re-read committed events: {consumed_after} read, {committed} were committed"
    );
    assert!(
        recorded_at_exit < expected.poa_task_ids.len(),
        "SIGTERM came after the whole stream"
    );
    assert_eq!(demo::compare(&stack, &expected), Vec::<String>::new());
}
