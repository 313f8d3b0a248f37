//! The Kafka side: consuming with per-partition offset tracking, the
//! dead-letter producer, and the embedded broker for `demo` and tests.

pub mod consumer;
pub mod dlq;
pub mod embedded;
pub mod offsets;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// High watermarks (next offset to be written) of every partition of
/// `topic`: (topic, partition) → offset.
pub fn high_watermarks(client: &ClientConfig, topic: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let consumer: BaseConsumer = client.create()?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut out = BTreeMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            out.insert((topic.to_owned(), p.id()), high);
        }
    }
    Ok(out)
}
