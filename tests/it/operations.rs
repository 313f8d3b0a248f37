//! Operations against a running bridge, in process and over 127.0.0.1: the
//! embedded Kafka-protocol broker, both simulators, `runtime::start` with
//! its `/metrics`, `/healthz` and `/readyz`.
//!
//! - every metric the Grafana dashboard and the alert rules query is one the
//!   running binary exports, with samples (and every label they group or
//!   filter by exists on it);
//! - a POA outage shows as consumer lag above 0 and a 503 `/readyz`, and
//!   both return to normal after it;
//! - `flowbridge run` with OAuth secrets logs JSON lines carrying the event
//!   span's fields, and never a secret.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flowbridge::kafka::embedded::EmbeddedBroker;
use flowbridge::runtime::{self, Bridge, BridgeConfig};
use flowbridge::sim::{Faults, FaultsPatch, SimOptions};
use flowbridge::workflow::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::sim_support::{aicc_sim, poa_sim};
use crate::support;

const TOPIC: &str = "workflow-events";
const DLQ: &str = "workflow-events.dlq";

// ---------- a running bridge ----------

/// The bridge with everything it talks to.
struct Running {
    broker: EmbeddedBroker,
    poa: flowbridge::sim::poa::PoaSim,
    aicc: flowbridge::sim::aicc::AiccSim,
    bridge: Bridge,
    /// `http://127.0.0.1:PORT` of the operations endpoint.
    ops: String,
    http: reqwest::Client,
}

/// Settings that differ between the tests.
struct Setup {
    partitions: i32,
    poa: SimOptions,
    /// YAML of the `poa.retry` section.
    poa_retry: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            partitions: 3,
            poa: SimOptions::default(),
            poa_retry: "{max_attempts: 6, initial_backoff_ms: 5, max_backoff_ms: 50, max_elapsed_ms: 5000}",
        }
    }
}

/// The YAML config a test bridge runs with: memory store, fast retries,
/// lag statistics every 200 ms, credentials through `${VAR}`s.
fn config_yaml(bootstrap: &str, poa_url: &str, aicc_url: &str, poa_retry: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{bootstrap}"
  group_id: ops-test
  topics: [{TOPIC}]
  dlq_topic: {DLQ}
  properties:
    statistics.interval.ms: "200"
  commit_interval_ms: 100
  drain_timeout_ms: 2000
workflows: "{workflows}"
state:
  kind: memory
poa:
  base_url: {poa_url}
  linger_ms: 2
  request_timeout_ms: 3000
  item_retry_backoff_ms: 5
  retry: {poa_retry}
  auth:
    oauth:
      client_id: ${{POA_CLIENT_ID}}
      client_secret: ${{POA_CLIENT_SECRET}}
      retry: {{max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 20, max_elapsed_ms: 500}}
aicc:
  base_url: {aicc_url}
  request_timeout_ms: 3000
  reconcile_delay_ms: 5
  retry: {{max_attempts: 4, initial_backoff_ms: 5, max_backoff_ms: 20, max_elapsed_ms: 2000}}
  auth:
    oauth:
      client_id: ${{AICC_CLIENT_ID}}
      client_secret: ${{AICC_CLIENT_SECRET}}
metrics_addr: 127.0.0.1:0
shutdown_grace_ms: 10000
"#,
        workflows = support::path("workflows").display(),
    )
}

impl Running {
    async fn start(setup: Setup) -> Running {
        let broker = EmbeddedBroker::start(1).expect("the embedded broker starts");
        broker.create_topic(TOPIC, setup.partitions).unwrap();
        broker.create_topic(DLQ, 1).unwrap();
        let poa = poa_sim(setup.poa).await;
        let aicc = aicc_sim(SimOptions::default()).await;
        let (poa_id, poa_secret) = poa.credentials();
        let (aicc_id, aicc_secret) = aicc.credentials();
        let text = config_yaml(
            broker.bootstrap_servers(),
            &poa.base_url(),
            &aicc.base_url(),
            setup.poa_retry,
        );
        let env = move |k: &str| match k {
            "POA_CLIENT_ID" => Some(poa_id.clone()),
            "POA_CLIENT_SECRET" => Some(poa_secret.expose_secret().to_owned()),
            "AICC_CLIENT_ID" => Some(aicc_id.clone()),
            "AICC_CLIENT_SECRET" => Some(aicc_secret.expose_secret().to_owned()),
            _ => None,
        };
        let cfg: BridgeConfig = flowbridge::config::parse(&text, &env, []).expect("the test config parses");
        let workflows = Registry::load_dir(&cfg.workflows).expect("the sample workflows load");
        let bridge = runtime::start(&cfg, workflows).await.expect("the bridge starts");
        let ops = format!(
            "http://{}",
            bridge.metrics_addr.expect("metrics_addr is configured")
        );
        Running {
            broker,
            poa,
            aicc,
            bridge,
            ops,
            http: reqwest::Client::new(),
        }
    }

    fn bootstrap(&self) -> &str {
        self.broker.bootstrap_servers()
    }

    /// `GET /metrics` over HTTP, as Prometheus scrapes it.
    async fn scrape(&self) -> Scrape {
        let resp = self
            .http
            .get(format!("{}/metrics", self.ops))
            .send()
            .await
            .expect("GET /metrics");
        assert!(resp.status().is_success(), "/metrics answered {}", resp.status());
        Scrape::parse(&resp.text().await.expect("a /metrics body"))
    }

    /// `GET /readyz`: status and JSON body.
    async fn readyz(&self) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/readyz", self.ops))
            .send()
            .await
            .expect("GET /readyz");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.expect("/readyz answers JSON");
        (status, body)
    }

    /// Waits until every partition has committed up to its end.
    async fn wait_all_committed(&self) {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", self.bootstrap());
        let ends = flowbridge::kafka::high_watermarks(&client, TOPIC).unwrap();
        assert!(
            self.bridge
                .running
                .wait_committed(&ends, Duration::from_secs(60))
                .await,
            "offsets never reached {ends:?}: committed {:?}",
            self.bridge.running.committed()
        );
    }

    async fn stop(self) {
        self.bridge.stop().await;
        self.poa.shutdown().await;
        self.aicc.shutdown().await;
    }
}

/// Produces `(partition, key, value)` records (partition `None`: by key).
fn produce(bootstrap: &str, records: &[(Option<i32>, String, String)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (partition, key, value) in records {
        let mut r = BaseRecord::to(TOPIC).key(key.as_str()).payload(value.as_str());
        if let Some(part) = partition {
            r = r.partition(*part);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// A start event of a new leave-approval instance: one first POA todo.
fn leave_start(serial: &str) -> String {
    json!({"eventId": format!("{serial}-start"), "workflow": "leave-approval", "serialNumber": serial,
        "to": "counselor", "assignees": ["t001"], "variables": {"studentName": "李雷", "days": 1}})
    .to_string()
}

/// Polls `probe` until it returns `Some`, or panics with `what` and the
/// last observation at the deadline.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what} did not happen within {timeout:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------- reading an exposition ----------

/// One sample line of an exposition.
#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: samples by the name Prometheus stores them under.
#[derive(Debug, Default)]
struct Scrape {
    series: BTreeMap<String, Vec<Sample>>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample line: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').unwrap_or(rest))),
                None => (series, BTreeMap::new()),
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            s.series
                .entry(name.to_owned())
                .or_default()
                .push(Sample { labels, value });
        }
        s
    }

    fn samples(&self, name: &str) -> &[Sample] {
        self.series.get(name).map_or(&[], Vec::as_slice)
    }

    /// Sum of `name`'s samples whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name)
            .iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Label names on any sample of `name`.
    fn label_names(&self, name: &str) -> BTreeSet<String> {
        self.samples(name)
            .iter()
            .flat_map(|s| s.labels.keys().cloned())
            .collect()
    }
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_owned();
        if key.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} of `{text}` is not quoted");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
    }
}

// ---------- reading PromQL ----------

/// PromQL words that are not metric names.
const PROMQL_KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

/// What an expression selects: metric names, and the label names it
/// filters on (`{l="v"}`) or groups by (`by (l)`).
#[derive(Debug, Default, PartialEq)]
struct Selects {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

/// Metric and label names used by a PromQL expression. A small tokenizer,
/// enough for dashboards and alert rules: string literals, range selectors
/// and grouping clauses are skipped; an identifier followed by `(` is a
/// function or an aggregation; the remaining identifiers are metric names.
fn promql_selects(expr: &str) -> Selects {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Ident(String),
        Punct(char),
    }
    let mut toks = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == '"' || c == '\'' || c == '`' {
            chars.next();
            while let Some(d) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
        } else if c == '[' {
            // Range or subquery: `[5m]`, `[1h:1m]`.
            for d in chars.by_ref() {
                if d == ']' {
                    break;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                chars.next();
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut word = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    word.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            toks.push(Tok::Ident(word));
        } else {
            if !c.is_whitespace() {
                toks.push(Tok::Punct(c));
            }
            chars.next();
        }
    }
    let next_is = |i: usize, p: char| toks.get(i) == Some(&Tok::Punct(p));
    let mut out = Selects::default();
    let mut i = 0;
    let mut in_braces = false;
    while i < toks.len() {
        match &toks[i] {
            Tok::Punct('{') => in_braces = true,
            Tok::Punct('}') => in_braces = false,
            Tok::Ident(w) if in_braces => {
                out.labels.insert(w.clone());
            }
            Tok::Ident(w)
                if matches!(
                    w.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) && next_is(i + 1, '(') =>
            {
                i += 2;
                while i < toks.len() && toks[i] != Tok::Punct(')') {
                    if let Tok::Ident(l) = &toks[i] {
                        out.labels.insert(l.clone());
                    }
                    i += 1;
                }
            }
            // A function, or an aggregation (`sum (…)`, `sum by (…) (…)`).
            Tok::Ident(_)
                if next_is(i + 1, '(')
                    || matches!(toks.get(i + 1), Some(Tok::Ident(w)) if w == "by" || w == "without") => {}
            Tok::Ident(w) if PROMQL_KEYWORDS.contains(&w.to_ascii_lowercase().as_str()) => {}
            Tok::Ident(w) => {
                out.metrics.insert(w.clone());
            }
            Tok::Punct(_) => {}
        }
        i += 1;
    }
    out
}

#[test]
fn promql_reading_finds_metrics_and_labels() {
    let s = promql_selects(
        r#"histogram_quantile(0.99, sum by (target, le) (rate(flowbridge_api_request_duration_seconds_bucket{outcome!="x"}[5m]))) > 0.5 and on (target) up{job="flowbridge"} == 0"#,
    );
    assert_eq!(
        s.metrics,
        BTreeSet::from([
            "flowbridge_api_request_duration_seconds_bucket".to_owned(),
            "up".to_owned()
        ])
    );
    assert_eq!(
        s.labels,
        ["target", "le", "outcome", "job"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
    assert!(promql_selects("sum(rate(x_total[1m])) * 1e3").metrics == BTreeSet::from(["x_total".to_owned()]));
}

/// Every PromQL expression of the dashboard (`targets[].expr`, panels in
/// rows included) with where it is.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(at);
                if let Some(expr) = m.get("expr").and_then(Value::as_str) {
                    out.push((format!("dashboard panel `{at}`"), expr.to_owned()));
                }
                for (_, child) in m {
                    walk(child, title, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, at, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(support::path("deploy/grafana/dashboards/flowbridge.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    walk(&dash, "", &mut out);
    out
}

/// Every alert rule's expression with its name.
fn alert_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(support::path("deploy/alerts.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).expect("alerts.yml is YAML");
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("alerts.yml has groups") {
        for rule in group["rules"].as_array().expect("a group has rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            out.push((format!("alert {name}"), expr.to_owned()));
        }
    }
    out
}

/// Metrics Prometheus records itself for every target (not exported by
/// flowbridge).
const PROMETHEUS_SYNTHETIC: &[&str] = &["up"];

/// Checks every dashboard and alert query against a scrape: each metric has
/// samples (except those in `may_be_empty`), and each label a query filters
/// or groups by is on the samples of its metrics. Returns the problems.
///
/// prometheus-client leaves a labelled family out of the exposition until
/// its first sample, so "exported" can only be seen with samples.
fn unresolved_queries(scrape: &Scrape, may_be_empty: &[&str]) -> Vec<String> {
    let queries: Vec<(String, String)> = dashboard_queries().into_iter().chain(alert_queries()).collect();
    assert!(queries.len() >= 20, "found only {} queries", queries.len());
    let mut problems = Vec::new();
    for (at, expr) in &queries {
        let sel = promql_selects(expr);
        if sel.metrics.is_empty() {
            problems.push(format!("{at}: no metric in `{expr}`"));
        }
        let mut labels = BTreeSet::new();
        let mut all_sampled = true;
        for m in &sel.metrics {
            if PROMETHEUS_SYNTHETIC.contains(&m.as_str()) {
                labels.extend(["job".to_owned(), "instance".to_owned()]);
                continue;
            }
            if scrape.samples(m).is_empty() {
                all_sampled = false;
                if !may_be_empty.contains(&m.as_str()) {
                    problems.push(format!("{at}: `{m}` has no samples in /metrics"));
                }
            }
            labels.extend(scrape.label_names(m));
        }
        if all_sampled {
            for l in sel.labels.difference(&labels) {
                problems.push(format!("{at}: label `{l}` is not on {:?}", sel.metrics));
            }
        }
    }
    problems
}

/// The test traffic here makes every family the dashboard reads have
/// samples (a duplicate, a dead letter, a retry), so labels are checked
/// everywhere; the demo test below checks the same queries against
/// `flowbridge demo` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_queries_resolve_against_the_running_bridge() {
    let run = Running::start(Setup::default()).await;
    // One whole-batch failure, so retries have a sample.
    run.poa.patch_faults(FaultsPatch {
        fail_next: Some(1),
        ..FaultsPatch::default()
    });
    let mut records: Vec<(Option<i32>, String, String)> = Vec::new();
    for (_, text) in flowbridge::samples::EVENTS {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            records.push((
                None,
                v["serialNumber"].as_str().unwrap().to_owned(),
                line.to_owned(),
            ));
        }
    }
    // A duplicate (same eventId) and a malformed record (dead-lettered).
    let first = records[0].clone();
    records.push(first);
    records.push((None, "garbage".into(), "{not json".into()));
    produce(run.bootstrap(), &records);
    run.wait_all_committed().await;

    let partitions = 3;
    let scrape = eventually(
        "per-partition lag series at 0",
        Duration::from_secs(30),
        || async {
            let s = run.scrape().await;
            let lag = s.samples("kafka_consumergroup_group_lag");
            if lag.len() == partitions
                && lag.iter().all(|x| x.value == 0.0)
                && !s.samples("flowbridge_consumer_time_lag_seconds").is_empty()
            {
                Ok(s)
            } else {
                Err(format!("{lag:?}"))
            }
        },
    )
    .await;

    // What the run did shows in the metrics the dashboard reads.
    assert!(
        scrape.sum(
            "flowbridge_todos_created_total",
            &[("target", "poa"), ("kind", "first")]
        ) > 0.0
    );
    assert!(
        scrape.sum(
            "flowbridge_todos_created_total",
            &[("target", "poa"), ("kind", "chained")]
        ) > 0.0
    );
    assert!(
        scrape.sum(
            "flowbridge_todos_created_total",
            &[("target", "aicc"), ("kind", "task")]
        ) > 0.0
    );
    assert_eq!(
        scrape.sum("flowbridge_dlq_produced_total", &[("reason", "malformed_event")]),
        1.0
    );
    assert_eq!(scrape.sum("flowbridge_events_duplicate_total", &[]), 1.0);
    assert!(scrape.sum("flowbridge_retries_total", &[("target", "poa")]) >= 1.0);
    assert!(
        scrape.sum(
            "flowbridge_api_requests_total",
            &[("endpoint", "addTransaction"), ("outcome", "ok")]
        ) > 0.0
    );
    assert!(
        scrape.sum(
            "flowbridge_api_requests_total",
            &[("endpoint", "addTransaction"), ("outcome", "http_5xx")]
        ) >= 1.0
    );
    assert!(
        scrape.sum(
            "flowbridge_api_requests_total",
            &[("target", "aicc"), ("endpoint", "task"), ("outcome", "ok")]
        ) > 0.0
    );
    assert!(
        scrape.sum(
            "flowbridge_token_refreshes_total",
            &[("target", "poa"), ("outcome", "ok")]
        ) > 0.0
    );
    assert!(
        scrape.sum(
            "flowbridge_token_refreshes_total",
            &[("target", "aicc"), ("outcome", "ok")]
        ) > 0.0
    );
    assert!(
        scrape.sum(
            "flowbridge_api_request_duration_seconds_count",
            &[("endpoint", "addTransaction")]
        ) > 0.0
    );
    assert!(scrape.sum("flowbridge_poa_batch_size_count", &[]) > 0.0);
    assert_eq!(
        scrape.sum("kafka_consumergroup_group_sum_lag", &[("group", "ops-test")]),
        0.0
    );

    assert!(
        scrape
            .samples("flowbridge_active_instances")
            .iter()
            .all(|x| x.value >= 0.0),
        "active instances never go negative: {:?}",
        scrape.samples("flowbridge_active_instances")
    );

    // Every query names exported metrics with samples, and only their labels.
    let problems = unresolved_queries(&scrape, &[]);
    assert!(
        problems.is_empty(),
        "queries that would not resolve:\n{}",
        problems.join("\n")
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poa_outage_shows_as_lag_and_not_ready_and_both_recover() {
    let partitions = 3;
    let run = Running::start(Setup {
        partitions,
        // Tokens live 1 s, so during the outage (which also refuses token
        // requests) the cached one runs out and readiness notices.
        poa: SimOptions {
            faults: Faults {
                token_lifetime_ms: 1_000,
                ..Faults::default()
            },
            ..SimOptions::default()
        },
        // Keep retrying through the outage: events wait, nothing is
        // dead-lettered.
        poa_retry: "{max_attempts: 100000, initial_backoff_ms: 20, max_backoff_ms: 200, max_elapsed_ms: 600000}",
    })
    .await;

    // Before: one instance per partition, all committed, lag 0, ready.
    let warmup: Vec<_> = (0..partitions)
        .map(|p| (Some(p), format!("W{p}"), leave_start(&format!("W{p}"))))
        .collect();
    produce(run.bootstrap(), &warmup);
    run.wait_all_committed().await;
    eventually(
        "lag 0 on every partition, and ready",
        Duration::from_secs(30),
        || async {
            let s = run.scrape().await;
            let lag = s.samples("kafka_consumergroup_group_lag");
            let (status, body) = run.readyz().await;
            if lag.len() == partitions as usize && lag.iter().all(|x| x.value == 0.0) && status == 200 {
                Ok(())
            } else {
                Err(format!("lag {lag:?}, /readyz {status} {body}"))
            }
        },
    )
    .await;
    let healthz = run.http.get(format!("{}/healthz", run.ops)).send().await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);

    // Outage: new events cannot be delivered; lag rises, readiness fails.
    run.poa.patch_faults(FaultsPatch {
        outage: Some(true),
        ..FaultsPatch::default()
    });
    let during: Vec<_> = (0..2 * partitions)
        .map(|i| {
            (
                Some(i % partitions),
                format!("O{i}"),
                leave_start(&format!("O{i}")),
            )
        })
        .collect();
    produce(run.bootstrap(), &during);
    let lag_during = eventually("summed lag above 0", Duration::from_secs(30), || async {
        let s = run.scrape().await;
        let lag = s.sum("kafka_consumergroup_group_sum_lag", &[("group", "ops-test")]);
        if lag > 0.0 {
            Ok(lag)
        } else {
            Err(format!("sum lag {lag}"))
        }
    })
    .await;
    assert!(lag_during <= during.len() as f64, "lag {lag_during}");
    let reasons = eventually("/readyz 503 naming POA", Duration::from_secs(30), || async {
        match run.readyz().await {
            (503, body) if body["ready"] == json!(false) && body["reasons"].to_string().contains("poa:") => {
                Ok(body["reasons"].clone())
            }
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert!(
        reasons.to_string().contains("token"),
        "the reason says why: {reasons}"
    );
    let s = run.scrape().await;
    assert_eq!(
        s.sum("flowbridge_ready", &[]),
        0.0,
        "flowbridge_ready follows /readyz"
    );
    assert!(
        s.sum(
            "flowbridge_token_refreshes_total",
            &[("target", "poa"), ("outcome", "error")]
        ) > 0.0,
        "failed token requests are counted"
    );
    assert!(
        s.sum("flowbridge_consumer_time_lag_seconds", &[]) > 0.0,
        "the waiting events have an age"
    );
    assert_eq!(
        s.sum("flowbridge_dlq_produced_total", &[]),
        0.0,
        "nothing is dead-lettered"
    );

    // After: the retries get through, lag returns to 0, ready again.
    run.poa.patch_faults(FaultsPatch {
        outage: Some(false),
        ..FaultsPatch::default()
    });
    run.wait_all_committed().await;
    eventually(
        "lag 0 and ready after the outage",
        Duration::from_secs(30),
        || async {
            let s = run.scrape().await;
            let lag = s.samples("kafka_consumergroup_group_lag");
            let sum = s.sum("kafka_consumergroup_group_sum_lag", &[("group", "ops-test")]);
            let time_lag = s.sum("flowbridge_consumer_time_lag_seconds", &[]);
            let (status, body) = run.readyz().await;
            if lag.len() == partitions as usize
                && lag.iter().all(|x| x.value == 0.0)
                && sum == 0.0
                && time_lag == 0.0
                && status == 200
            {
                Ok(())
            } else {
                Err(format!(
                    "lag {lag:?} sum {sum} time lag {time_lag}, /readyz {status} {body}"
                ))
            }
        },
    )
    .await;
    assert_eq!(run.scrape().await.sum("flowbridge_ready", &[]), 1.0);
    let created: BTreeSet<String> = run
        .poa
        .todos()
        .iter()
        .filter_map(|t| t.item.serial_number.clone())
        .collect();
    for (_, serial, _) in &during {
        assert!(
            created.contains(serial),
            "{serial}'s todo was created after the outage"
        );
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keep_running_serves_lag_and_every_dashboard_query_resolves() {
    // `flowbridge demo --keep-running --metrics-addr …`, as the README says
    // to run it next to Grafana; a small stream keeps the test short.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let stderr_path = dir.path().join("stderr.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flowbridge"))
        .args([
            "demo",
            "--instances",
            "30",
            "--partitions",
            "3",
            "--outage-ms",
            "300",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--keep-running"])
        .current_dir(support::root())
        // The demo's scratch directory goes under ours (a killed demo
        // cannot remove it).
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("flowbridge demo runs");
    let child = Child(child);
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = eventually(
        "the demo's stream processed, lag 0 on 3 partitions",
        Duration::from_secs(120),
        || async {
            let text = match http.get(&url).send().await {
                Ok(r) => r.text().await.map_err(|e| e.to_string())?,
                Err(e) => {
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    return Err(format!("{e}; demo stderr: {log}"));
                }
            };
            let s = Scrape::parse(&text);
            let lag = s.samples("kafka_consumergroup_group_lag");
            let done = lag.len() == 3
                && lag.iter().all(|x| x.value == 0.0)
                && s.sum("flowbridge_events_in_flight", &[]) == 0.0
                && s.sum("flowbridge_events_consumed_total", &[]) > 0.0
                && s.samples("flowbridge_consumer_time_lag_seconds").len() == 3;
            if done { Ok(s) } else { Err(format!("lag {lag:?}")) }
        },
    )
    .await;
    drop(child);
    assert_eq!(scrape.samples("kafka_consumergroup_group_sum_lag").len(), 1);
    assert!(scrape.sum("flowbridge_todos_created_total", &[("kind", "chained")]) > 0.0);
    assert!(scrape.sum("flowbridge_dlq_produced_total", &[]) > 0.0);
    assert!(
        scrape
            .samples("flowbridge_active_instances")
            .iter()
            .all(|x| x.value >= 0.0),
        "active instances never go negative: {:?}",
        scrape.samples("flowbridge_active_instances")
    );
    // The demo's stream has no duplicate events, and whether its short
    // outage meets a request (a retry) is timing; the test above has
    // samples of both and checks their queries fully.
    let problems = unresolved_queries(
        &scrape,
        &["flowbridge_events_duplicate_total", "flowbridge_retries_total"],
    );
    assert!(
        problems.is_empty(),
        "queries that would not resolve against the demo:\n{}",
        problems.join("\n")
    );
}

/// A port free on 127.0.0.1 a moment ago (for a child process to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0 works on any test machine")
        .port()
}

// ---------- logs ----------

/// Kills the child when dropped, so a failing test leaves no process.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_json_with_event_spans_and_never_a_secret() {
    const POA_SECRET: &str = "poa-secret-Zq81xv3P";
    // AICC gets a secret its token endpoint refuses: the error paths log too.
    const AICC_SECRET: &str = "aicc-wrong-secret-Ky72mw0T";
    let broker = EmbeddedBroker::start(1).unwrap();
    broker.create_topic(TOPIC, 2).unwrap();
    broker.create_topic(DLQ, 1).unwrap();
    let poa = poa_sim(SimOptions {
        client_secret: SecretString::from(POA_SECRET),
        ..SimOptions::default()
    })
    .await;
    let aicc = aicc_sim(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowbridge.yaml");
    let ops_port = free_port();
    let text = config_yaml(
        broker.bootstrap_servers(),
        &poa.base_url(),
        &aicc.base_url(),
        "{max_attempts: 3, initial_backoff_ms: 5, max_backoff_ms: 20, max_elapsed_ms: 1000}",
    )
    .replace(
        "metrics_addr: 127.0.0.1:0",
        &format!("metrics_addr: 127.0.0.1:{ops_port}"),
    );
    std::fs::write(&config, text).unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flowbridge"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "trace")
        .env("POA_CLIENT_ID", poa.credentials().0)
        .env("POA_CLIENT_SECRET", POA_SECRET)
        .env("AICC_CLIENT_ID", aicc.credentials().0)
        .env("AICC_CLIENT_SECRET", AICC_SECRET)
        .current_dir(support::root())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("flowbridge runs");
    let _child = Child(child);

    let mut records = Vec::new();
    for name in ["leave-approval.jsonl", "customer-case.jsonl"] {
        let text = std::fs::read_to_string(support::path(&format!("workflows/events/{name}"))).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            records.push((
                None,
                v["serialNumber"].as_str().unwrap().to_owned(),
                line.to_owned(),
            ));
        }
    }
    produce(broker.bootstrap_servers(), &records);
    let http = reqwest::Client::new();
    let readyz = eventually(
        "POA todos, refused AICC tokens and a 503 /readyz",
        Duration::from_secs(60),
        || async {
            let todos = poa.todos().len();
            let refused = aicc.stats().token_refused;
            let ready = match http
                .get(format!("http://127.0.0.1:{ops_port}/readyz"))
                .send()
                .await
            {
                Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
                Err(_) => None,
            };
            match ready {
                Some((503, body)) if todos > 0 && refused > 0 && body.contains("aicc:") => Ok(body),
                other => Err(format!("{todos} todos, {refused} refused, /readyz {other:?}")),
            }
        },
    )
    .await;
    let metrics = http
        .get(format!("http://127.0.0.1:{ops_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    drop(_child);
    let logs = std::fs::read_to_string(&stderr_path).unwrap();

    for secret in [POA_SECRET, AICC_SECRET] {
        for (what, text) in [("logs", &logs), ("/readyz", &readyz), ("/metrics", &metrics)] {
            assert!(!text.contains(secret), "{what} contain a secret:\n{text}");
        }
    }
    // JSON lines; the event span carries the event's identity.
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "too few log lines:\n{logs}");
    let in_span = lines
        .iter()
        .find(|l| l["span"]["name"] == "event" && l["span"]["serialNumber"] == "NUM0001")
        .unwrap_or_else(|| panic!("no log line inside an event span:\n{logs}"));
    for field in ["workflow", "eventId", "topic", "partition", "offset"] {
        assert!(
            !in_span["span"][field].is_null(),
            "span field {field} missing: {in_span}"
        );
    }
    assert!(
        lines.iter().any(|l| l.to_string().contains("token endpoint")),
        "the refused AICC token is logged (without the secret):\n{logs}"
    );
    poa.shutdown().await;
    aicc.shutdown().await;
}
