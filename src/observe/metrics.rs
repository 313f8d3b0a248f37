//! Every metric flowbridge exports, defined in one place with fixed label
//! sets. Counters get the `_total` suffix on export.
//!
//! Consumer lag follows the de-facto family of kafka-lag exporters
//! (`kafka_consumergroup_group_lag{group,topic,partition}`,
//! `kafka_consumergroup_group_sum_lag{group}`) so existing dashboards and
//! alerts work; `flowbridge_consumer_time_lag_seconds` adds what offset lag
//! cannot show: how old the oldest unfinished event of a partition is.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowLabels {
    pub workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    pub workflow: String,
    pub reason: String,
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TodoLabels {
    /// `poa` or `aicc`.
    pub target: &'static str,
    /// `first`, `chained` or `task`.
    pub kind: &'static str,
}

/// Labels of one API request. Every value is a fixed string, so recording
/// a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `poa` or `aicc`.
    pub target: &'static str,
    /// `addTransaction`, `token`, `task`, `task/list`.
    pub endpoint: &'static str,
    /// `ok`, `item_errors` (POA processed the batch but refused some items),
    /// `api_error` (the documented error envelope), `bad_body`,
    /// `unauthorized` (401/403), `http_4xx`, `http_5xx`, `http_other`,
    /// `timeout`, `connect`, `broken` (the connection broke after sending),
    /// `no_token` (not sent: no token could be had).
    pub outcome: &'static str,
}

/// Labels of a request-latency series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// `poa` or `aicc`.
    pub target: &'static str,
    /// As in [`ApiLabels::endpoint`].
    pub endpoint: &'static str,
}

/// Labels naming a downstream API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// `poa` or `aicc`.
    pub target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `poa` or `aicc`.
    pub target: &'static str,
    /// `ok` or `error`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct GroupPartitionLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The registry and handles to every metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_consumed: Counter,
    pub events_applied: Family<WorkflowLabels, Counter>,
    pub events_duplicate: Family<WorkflowLabels, Counter>,
    pub events_rejected: Family<RejectedLabels, Counter>,
    pub todos_created: Family<TodoLabels, Counter>,
    pub api_requests: Family<ApiLabels, Counter>,
    pub api_latency: Family<EndpointLabels, Histogram>,
    pub poa_batch_size: Histogram,
    pub retries: Family<TargetLabels, Counter>,
    pub dlq_produced: Family<ReasonLabels, Counter>,
    pub token_refreshes: Family<TokenLabels, Counter>,
    pub active_instances: Family<WorkflowLabels, Gauge>,
    pub state_write_latency: Histogram,
    pub state_batch_size: Histogram,
    pub consumer_lag: Family<GroupPartitionLabels, Gauge>,
    pub consumer_lag_sum: Family<GroupLabels, Gauge>,
    pub time_lag: Family<PartitionLabels, FloatGauge>,
    pub partitions_assigned: Gauge,
    pub events_in_flight: Gauge,
    /// 1 when the last readiness check passed (what `/readyz` answers),
    /// 0 when it did not; checked periodically and on every `/readyz`.
    pub ready: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let events_consumed = Counter::default();
        r.register(
            "flowbridge_events_consumed",
            "Events read from Kafka",
            events_consumed.clone(),
        );
        let events_applied = Family::<WorkflowLabels, Counter>::default();
        r.register(
            "flowbridge_events_applied",
            "Events applied (state advanced, todos created)",
            events_applied.clone(),
        );
        let events_duplicate = Family::<WorkflowLabels, Counter>::default();
        r.register(
            "flowbridge_events_duplicate",
            "Events skipped as already applied",
            events_duplicate.clone(),
        );
        let events_rejected = Family::<RejectedLabels, Counter>::default();
        r.register(
            "flowbridge_events_rejected",
            "Events rejected to the dead-letter topic, by reason and stage",
            events_rejected.clone(),
        );
        let todos_created = Family::<TodoLabels, Counter>::default();
        r.register(
            "flowbridge_todos_created",
            "Todos created: POA first/chained, AICC tasks",
            todos_created.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        r.register(
            "flowbridge_api_requests",
            "Requests to POA and AICC (token requests included) by endpoint and outcome; outcome no_token = not sent, no token",
            api_requests.clone(),
        );
        let api_latency =
            Family::<EndpointLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        r.register(
            "flowbridge_api_request_duration_seconds",
            "Latency of requests sent to POA and AICC, response body included",
            api_latency.clone(),
        );
        let poa_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        r.register(
            "flowbridge_poa_batch_size",
            "Items per addTransaction batch (a resend round of failed items counts as a batch; a retry of the same body does not)",
            poa_batch_size.clone(),
        );
        let retries = Family::<TargetLabels, Counter>::default();
        r.register(
            "flowbridge_retries",
            "Requests repeating an earlier failed one (whole-batch retries, item resends, token-request retries, AICC resends after reconciling)",
            retries.clone(),
        );
        let dlq_produced = Family::<ReasonLabels, Counter>::default();
        r.register(
            "flowbridge_dlq_produced",
            "Records produced to the dead-letter topic",
            dlq_produced.clone(),
        );
        let token_refreshes = Family::<TokenLabels, Counter>::default();
        r.register(
            "flowbridge_token_refreshes",
            "Token requests by outcome",
            token_refreshes.clone(),
        );
        let active_instances = Family::<WorkflowLabels, Gauge>::default();
        r.register(
            "flowbridge_active_instances",
            "Instances started and not yet completed or cancelled, as seen by this process",
            active_instances.clone(),
        );
        let state_write_latency = latency_histogram();
        r.register(
            "flowbridge_state_write_duration_seconds",
            "State-store batch write latency",
            state_write_latency.clone(),
        );
        let state_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        r.register(
            "flowbridge_state_batch_size",
            "Instances per state-store write (group commit)",
            state_batch_size.clone(),
        );
        let consumer_lag = Family::<GroupPartitionLabels, Gauge>::default();
        r.register(
            "kafka_consumergroup_group_lag",
            "Offset lag per partition (high watermark − committed), from librdkafka statistics",
            consumer_lag.clone(),
        );
        let consumer_lag_sum = Family::<GroupLabels, Gauge>::default();
        r.register(
            "kafka_consumergroup_group_sum_lag",
            "Offset lag summed over the group's partitions on this consumer",
            consumer_lag_sum.clone(),
        );
        let time_lag = Family::<PartitionLabels, FloatGauge>::default();
        r.register(
            "flowbridge_consumer_time_lag_seconds",
            "Age of the oldest unfinished event per partition (now − Kafka timestamp); 0 when none",
            time_lag.clone(),
        );
        let partitions_assigned = Gauge::default();
        r.register(
            "flowbridge_partitions_assigned",
            "Partitions assigned to this consumer",
            partitions_assigned.clone(),
        );
        let events_in_flight = Gauge::default();
        r.register(
            "flowbridge_events_in_flight",
            "Events consumed and not yet finished",
            events_in_flight.clone(),
        );
        let ready = Gauge::default();
        r.register(
            "flowbridge_ready",
            "1 when ready (partitions assigned, state store reachable, tokens obtainable), else 0",
            ready.clone(),
        );
        Self {
            registry: r,
            events_consumed,
            events_applied,
            events_duplicate,
            events_rejected,
            todos_created,
            api_requests,
            api_latency,
            poa_batch_size,
            retries,
            dlq_produced,
            token_refreshes,
            active_instances,
            state_write_latency,
            state_batch_size,
            consumer_lag,
            consumer_lag_sum,
            time_lag,
            partitions_assigned,
            events_in_flight,
            ready,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Sum of every sample of `name` whose labels contain all of
    /// `labels` (`key="value"` pairs), read from the exposition text — the
    /// same numbers a scrape sees.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum_samples(&self.encode(), name, labels)
    }
}

/// Sums the samples of metric `name` in exposition `text` whose label set
/// contains every `labels` pair.
pub fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let has_all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            if !has_all {
                return None;
            }
            value.parse::<f64>().ok()
        })
        // An empty f64 sum is -0.0; adding 0.0 makes it print as 0.
        .sum::<f64>()
        + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_lag_families_and_sums_by_label() {
        let m = Metrics::new();
        m.events_consumed.inc_by(3);
        for (wf, n) in [("a", 2), ("b", 5)] {
            m.events_applied
                .get_or_create(&WorkflowLabels { workflow: wf.into() })
                .inc_by(n);
        }
        m.consumer_lag
            .get_or_create(&GroupPartitionLabels {
                group: "g".into(),
                topic: "t".into(),
                partition: "0".into(),
            })
            .set(7);
        let text = m.encode();
        assert!(
            text.contains("kafka_consumergroup_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 7"),
            "{text}"
        );
        assert_eq!(m.sum("flowbridge_events_consumed_total", &[]), 3.0);
        assert_eq!(m.sum("flowbridge_events_applied_total", &[]), 7.0);
        assert_eq!(
            m.sum("flowbridge_events_applied_total", &[("workflow", "b")]),
            5.0
        );
    }
}
