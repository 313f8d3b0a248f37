//! Observability: the metrics registry and the operations HTTP endpoint.

pub mod metrics;
pub mod server;

pub use metrics::Metrics;
