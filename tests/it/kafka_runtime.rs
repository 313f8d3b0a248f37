//! The Kafka runtime over real TCP against librdkafka's mock cluster.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use flowbridge::contract::{aicc::AiccTaskInfo, poa::PoaItem};
use flowbridge::kafka::consumer::{self, ConsumerSettings};
use flowbridge::kafka::dlq::{KafkaDeadLetters, headers as h};
use flowbridge::kafka::embedded::EmbeddedBroker;
use flowbridge::observe::Metrics;
use flowbridge::pipeline::{DeadLetter, DeadLetterSink, Pipeline};
use flowbridge::sink::SinkReason;
use flowbridge::sink::{AiccApi, Outcome, PoaApi};
use flowbridge::state::{AiccIntent, MemoryStore};
use flowbridge::workflow::Registry;

#[derive(Default)]
struct Recorder {
    poa: Mutex<Vec<PoaItem>>,
    aicc: Mutex<Vec<AiccTaskInfo>>,
    dlq: Mutex<Vec<DeadLetter>>,
}

impl PoaApi for Recorder {
    fn send(&self, _instance: &str, item: PoaItem) -> BoxFuture<'_, Outcome> {
        let task_id = item.task_id.clone();
        if item.node_id == "office" && item.serial_number.as_deref() == Some("BAD-POA") {
            return async {
                Outcome::Reject {
                    reason: SinkReason::ApiRejected,
                    message: "item code 400: handlers and handlingGroup are all null".into(),
                    attempts: 1,
                }
            }
            .boxed();
        }
        self.poa.lock().unwrap().push(item);
        async move { Outcome::Done { task_id } }.boxed()
    }
}

impl AiccApi for Recorder {
    fn create(&self, info: AiccTaskInfo) -> BoxFuture<'_, Outcome> {
        let mut v = self.aicc.lock().unwrap();
        v.push(info);
        let task_id = format!("aicc-{}", v.len());
        async move { Outcome::Done { task_id } }.boxed()
    }
    fn find(&self, _intent: AiccIntent) -> BoxFuture<'_, Result<Option<String>, String>> {
        async { Ok(None) }.boxed()
    }
}

impl DeadLetterSink for Recorder {
    fn send<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), String>> {
        // Only used as the in-memory dead-letter sink of the smoke test.
        self.dlq.lock().unwrap().push(record.clone());
        async { Ok(()) }.boxed()
    }
}

fn produce(bootstrap: &str, topic: &str, lines: &[&str]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let key = v["serialNumber"].as_str().unwrap_or("none").to_owned();
        p.send(BaseRecord::to(topic).key(&key).payload(*line)).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_flow_through_the_mock_cluster() {
    let broker = EmbeddedBroker::start(1).unwrap();
    broker.create_topic("events", 3).unwrap();
    let mut lines: Vec<&str> = Vec::new();
    for (_, text) in flowbridge::samples::EVENTS {
        lines.extend(text.lines());
    }
    lines.push("{not json");
    produce(broker.bootstrap_servers(), "events", &lines);

    let rec = Arc::new(Recorder::default());
    let pipeline = Arc::new(Pipeline {
        workflows: Arc::new(Registry::embedded()),
        store: Arc::new(MemoryStore::new()),
        poa: rec.clone(),
        aicc: rec.clone(),
        dlq: rec.clone(),
        metrics: Arc::new(Metrics::new()),
    });
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", broker.bootstrap_servers());
    let settings = ConsumerSettings {
        group_id: "t1".into(),
        topics: vec!["events".into()],
        ..ConsumerSettings::default()
    };
    let running = consumer::start(&client, &settings, pipeline.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipeline.metrics.events_consumed.get() < lines.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "consumed only {}",
            pipeline.metrics.events_consumed.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    assert_eq!(rec.poa.lock().unwrap().len(), 15);
    assert_eq!(rec.aicc.lock().unwrap().len(), 5);
    let dlq = rec.dlq.lock().unwrap();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].reason, "malformed_event");
}

fn pipeline_with(rec: Arc<Recorder>, dlq: Arc<dyn DeadLetterSink>) -> Arc<Pipeline> {
    Arc::new(Pipeline {
        workflows: Arc::new(Registry::embedded()),
        store: Arc::new(MemoryStore::new()),
        poa: rec.clone(),
        aicc: rec,
        dlq,
        metrics: Arc::new(Metrics::new()),
    })
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Reads every record of `topic` from the beginning.
fn read_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", "reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(m.detach());
        }
    }
    out
}

fn header_str(m: &rdkafka::message::OwnedMessage, key: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|hd| hd.key == key)
        .and_then(|hd| hd.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_events_land_in_the_dlq_with_original_record_and_reason_headers() {
    let broker = EmbeddedBroker::start(1).unwrap();
    broker.create_topic("events", 2).unwrap();
    broker.create_topic("events.dlq", 1).unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();
    let ev = |id: &str, wf: &str, sn: &str, from: Option<&str>, to: &str| {
        let mut v = serde_json::json!({"eventId": id, "workflow": wf, "serialNumber": sn, "to": to,
            "assignees": ["t001"], "variables": {"studentName": "李雷", "days": 1}});
        if let Some(f) = from {
            v["from"] = f.into();
        }
        v.to_string()
    };
    // (payload, expected reason, expected stage)
    let cases: Vec<(String, &str, &str)> = vec![
        ("{\"workflow\": ".to_owned(), "malformed_event", "decode"),
        (ev("e1", "no-such-flow", "S1", None, "a"), "unknown_workflow", "decide"),
        (ev("e2", "leave-approval", "S2", None, "nowhere"), "unknown_node", "decide"),
        (ev("e3", "leave-approval", "S3", Some("counselor"), "end"), "invalid_transition", "decide"),
        (
            serde_json::json!({"eventId": "e4", "workflow": "leave-approval", "serialNumber": "S4", "to": "counselor",
                "assignees": ["t001"], "variables": {"days": 1}}).to_string(),
            "template_error",
            "decide",
        ),
    ];
    let mut lines: Vec<String> = cases.iter().map(|(p, _, _)| p.clone()).collect();
    // A POA rejection: the office todo of BAD-POA is refused by the API.
    for (i, (f, t)) in [
        (None, "counselor"),
        (Some("counselor"), "days_check"),
        (Some("days_check"), "office"),
    ]
    .into_iter()
    .enumerate()
    {
        lines.push(ev(&format!("b{i}"), "leave-approval", "BAD-POA", f, t));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    produce(&bootstrap, "events", &refs);

    let rec = Arc::new(Recorder::default());
    let dlq = Arc::new(KafkaDeadLetters::new(client(&bootstrap), None).unwrap());
    let pipeline = pipeline_with(rec.clone(), dlq);
    let metrics = pipeline.metrics.clone();
    let settings = ConsumerSettings {
        group_id: "dlq-test".into(),
        topics: vec!["events".into()],
        ..ConsumerSettings::default()
    };
    let running = consumer::start(&client(&bootstrap), &settings, pipeline).unwrap();
    let ends = flowbridge::kafka::high_watermarks(&client(&bootstrap), "events").unwrap();
    assert!(
        running.wait_committed(&ends, Duration::from_secs(30)).await,
        "offsets never reached the end {ends:?}: committed {:?}, in flight {}, consumed {}, dead-lettered {}",
        running.committed(),
        running.in_flight(),
        metrics.events_consumed.get(),
        metrics.sum("flowbridge_dlq_produced_total", &[])
    );
    running.stop().await;

    let records = read_all(&bootstrap, "events.dlq", cases.len() + 1);
    assert_eq!(
        records.len(),
        cases.len() + 1,
        "one DLQ record per rejected event"
    );
    for (payload, reason, stage) in &cases {
        let m = records
            .iter()
            .find(|m| m.payload() == Some(payload.as_bytes()))
            .unwrap_or_else(|| panic!("no DLQ record with the original value {payload}"));
        assert_eq!(header_str(m, h::REASON).as_deref(), Some(*reason), "{payload}");
        assert_eq!(header_str(m, h::STAGE).as_deref(), Some(*stage));
        let source = header_str(m, h::SOURCE).unwrap();
        assert!(source.starts_with("events/"), "source header {source}");
        assert!(!header_str(m, h::MESSAGE).unwrap().is_empty());
        assert_eq!(header_str(m, h::ATTEMPTS).as_deref(), Some("1"));
        assert!(header_str(m, h::TIMESTAMP).is_some());
    }
    let poa = records
        .iter()
        .find(|m| header_str(m, h::STAGE).as_deref() == Some("poa"))
        .unwrap();
    assert_eq!(header_str(poa, h::REASON).as_deref(), Some("api_rejected"));
    assert_eq!(header_str(poa, h::WORKFLOW).as_deref(), Some("leave-approval"));
    assert_eq!(header_str(poa, h::SERIAL_NUMBER).as_deref(), Some("BAD-POA"));
    assert_eq!(poa.key(), Some(&b"BAD-POA"[..]), "original key kept");
    assert!(header_str(poa, h::MESSAGE).unwrap().contains("handlers"));
}
