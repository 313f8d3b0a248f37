//! The dead-letter producer: rejected events with their original key, value
//! and headers plus `flowbridge.*` headers saying why.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::pipeline::{DeadLetter, DeadLetterSink};

/// Header names on every dead-lettered record.
pub mod headers {
    pub const REASON: &str = "flowbridge.reason";
    pub const STAGE: &str = "flowbridge.stage";
    pub const MESSAGE: &str = "flowbridge.message";
    pub const WORKFLOW: &str = "flowbridge.workflow";
    pub const SERIAL_NUMBER: &str = "flowbridge.serial_number";
    pub const SOURCE: &str = "flowbridge.source";
    pub const ATTEMPTS: &str = "flowbridge.attempts";
    pub const TIMESTAMP: &str = "flowbridge.timestamp";
}

/// Produces dead letters to Kafka; a send returns once the broker
/// acknowledged the record (`acks=all`).
pub struct KafkaDeadLetters {
    producer: FutureProducer,
    /// Fixed topic, or `None` for `<source topic>.dlq`.
    topic: Option<String>,
    timeout: Duration,
}

impl KafkaDeadLetters {
    /// `config` carries the connection properties (bootstrap servers,
    /// security); producer settings for durability are added here.
    pub fn new(mut config: ClientConfig, topic: Option<String>) -> rdkafka::error::KafkaResult<Self> {
        config.set("acks", "all").set("message.timeout.ms", "30000");
        Ok(Self {
            producer: config.create()?,
            topic,
            timeout: Duration::from_secs(30),
        })
    }

    /// The topic a dead letter of `source_topic` goes to.
    pub fn topic_for(&self, source_topic: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{source_topic}.dlq"))
    }
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    fn send<'a>(&'a self, r: &'a DeadLetter) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let topic = self.topic_for(&r.origin.topic);
            let source = r.origin.to_string();
            let attempts = r.attempts.to_string();
            let now = crate::state::now_ms().to_string();
            let mut h = OwnedHeaders::new_with_capacity(r.headers.len() + 8);
            for (k, v) in &r.headers {
                h = h.insert(header(k, v));
            }
            h = h
                .insert(header(headers::REASON, r.reason.as_bytes()))
                .insert(header(headers::STAGE, r.stage.as_bytes()))
                .insert(header(headers::MESSAGE, r.message.as_bytes()))
                .insert(header(headers::SOURCE, source.as_bytes()))
                .insert(header(headers::ATTEMPTS, attempts.as_bytes()))
                .insert(header(headers::TIMESTAMP, now.as_bytes()));
            if let Some(w) = &r.workflow {
                h = h.insert(header(headers::WORKFLOW, w.as_bytes()));
            }
            if let Some(s) = &r.serial_number {
                h = h.insert(header(headers::SERIAL_NUMBER, s.as_bytes()));
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).payload(&r.payload[..]).headers(h);
            if let Some(k) = &r.key {
                record = record.key(&k[..]);
            }
            if let Some(ts) = r.origin.timestamp_ms {
                record = record.timestamp(ts);
            }
            self.producer
                .send(record, self.timeout)
                .await
                .map(|_| ())
                .map_err(|(e, _)| format!("producing to {topic}: {e}"))
        }
        .boxed()
    }
}
