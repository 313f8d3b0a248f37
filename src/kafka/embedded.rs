//! An embedded Kafka-protocol broker: librdkafka's mock cluster, reachable
//! over TCP on 127.0.0.1 like any broker. Used by `demo` and the fast test
//! suite. It keeps at most about 5 MiB per partition.

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, Producer};

/// A running mock cluster; stops when dropped.
pub struct EmbeddedBroker {
    /// The client that owns the mock cluster (librdkafka ties the cluster's
    /// life to it).
    owner: BaseProducer,
    bootstrap: String,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a cluster of `brokers` brokers with the consumer-group initial
    /// rebalance delay set to 0 (the default 3 s delay only slows tests).
    pub fn start(brokers: u32) -> KafkaResult<EmbeddedBroker> {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .set("log_level", "3")
            .create()?;
        let bootstrap = owner
            .client()
            .mock_cluster()
            .ok_or(KafkaError::ClientCreation(
                "the mock cluster did not start".into(),
            ))?
            .bootstrap_servers();
        // SAFETY: the handle is the live mock cluster owned by `owner`'s
        // client (non-null checked); the call only sets a group setting.
        unsafe {
            let cluster = rdkafka_sys::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
            if !cluster.is_null() {
                rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
            }
        }
        Ok(EmbeddedBroker { owner, bootstrap })
    }

    /// `host:port,…` to give clients as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: i32) -> KafkaResult<()> {
        self.owner
            .client()
            .mock_cluster()
            .ok_or(KafkaError::ClientCreation("the mock cluster is gone".into()))?
            .create_topic(name, partitions, 1)
    }
}
