//! Recording what the sinks do into the metrics of [`crate::observe::metrics`]:
//! requests by endpoint and outcome with their latency, POA batch sizes,
//! retries, token requests.
//!
//! A sink built without metrics (`PoaSink::new`, `AiccSink::new`) records
//! nothing. Label values are fixed `&'static str`s, so recording allocates
//! nothing once a series exists.

use std::sync::Arc;
use std::time::Duration;

use crate::observe::Metrics;
use crate::observe::metrics::{ApiLabels, EndpointLabels, TargetLabels, TokenLabels};

use super::retry::{BodyShape, Observed};

/// `endpoint` label of `addTransaction`.
pub(crate) const ADD_TRANSACTION: &str = "addTransaction";
/// `endpoint` label of the token endpoints.
pub(crate) const TOKEN: &str = "token";
/// `endpoint` label of AICC's create-task call.
pub(crate) const TASK: &str = "task";
/// `endpoint` label of AICC's `task/list`.
pub(crate) const TASK_LIST: &str = "task/list";

/// `outcome` of a request that was not sent because no token could be had.
pub(crate) const NO_TOKEN: &str = "no_token";
/// `outcome` of a POA batch processed with some items refused.
pub(crate) const ITEM_ERRORS: &str = "item_errors";

/// Where one sink records; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Instruments {
    metrics: Option<Arc<Metrics>>,
    /// `poa` or `aicc`.
    target: &'static str,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("target", &self.target)
            .field("enabled", &self.metrics.is_some())
            .finish()
    }
}

impl Instruments {
    /// Records into `metrics` (nothing when `None`) as `target`.
    pub(crate) fn new(metrics: Option<Arc<Metrics>>, target: &'static str) -> Self {
        Self { metrics, target }
    }

    /// One request to `endpoint` ended with `outcome`; `elapsed` is its
    /// latency when it was sent.
    pub(crate) fn request(&self, endpoint: &'static str, outcome: &'static str, elapsed: Option<Duration>) {
        let Some(m) = &self.metrics else { return };
        m.api_requests
            .get_or_create(&ApiLabels {
                target: self.target,
                endpoint,
                outcome,
            })
            .inc();
        if let Some(elapsed) = elapsed {
            m.api_latency
                .get_or_create(&EndpointLabels {
                    target: self.target,
                    endpoint,
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A request that repeats an earlier failed one.
    pub(crate) fn retry(&self) {
        if let Some(m) = &self.metrics {
            m.retries
                .get_or_create(&TargetLabels { target: self.target })
                .inc();
        }
    }

    /// One token request ended; `outcome` as in [`Self::request`].
    pub(crate) fn token(&self, outcome: &'static str, elapsed: Option<Duration>) {
        self.request(TOKEN, outcome, elapsed);
        if let Some(m) = &self.metrics {
            m.token_refreshes
                .get_or_create(&TokenLabels {
                    target: self.target,
                    outcome: if outcome == "ok" { "ok" } else { "error" },
                })
                .inc();
        }
    }

    /// A POA batch of `items` items goes out.
    pub(crate) fn poa_batch(&self, items: usize) {
        if let Some(m) = &self.metrics {
            m.poa_batch_size.observe(items as f64);
        }
    }
}

/// The `outcome` label of what one sent request observed.
pub(crate) fn outcome(observed: &Observed) -> &'static str {
    match *observed {
        // A transport error before anything was sent (the no-token case is
        // recorded as `no_token` by the caller).
        Observed::NotSent => "connect",
        Observed::TimedOut => "timeout",
        Observed::Broken => "broken",
        Observed::Response { status, body, .. } => match status {
            200..=299 => match body {
                BodyShape::Success => "ok",
                BodyShape::ApiError => "api_error",
                BodyShape::Undocumented => "bad_body",
            },
            401 | 403 => "unauthorized",
            400..=499 => "http_4xx",
            500..=599 => "http_5xx",
            _ => "http_other",
        },
    }
}

/// The `outcome` label of a token-endpoint answer with HTTP `status`.
pub(crate) fn status_outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "bad_body",
        401 | 403 => "unauthorized",
        400..=499 => "http_4xx",
        500..=599 => "http_5xx",
        _ => "http_other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_fixed_labels() {
        let resp = |status, body| Observed::Response {
            status,
            body,
            retry_after: None,
        };
        assert_eq!(outcome(&resp(200, BodyShape::Success)), "ok");
        assert_eq!(outcome(&resp(200, BodyShape::ApiError)), "api_error");
        assert_eq!(outcome(&resp(200, BodyShape::Undocumented)), "bad_body");
        assert_eq!(outcome(&resp(401, BodyShape::Undocumented)), "unauthorized");
        assert_eq!(outcome(&resp(429, BodyShape::Undocumented)), "http_4xx");
        assert_eq!(outcome(&resp(503, BodyShape::Undocumented)), "http_5xx");
        assert_eq!(outcome(&resp(302, BodyShape::Undocumented)), "http_other");
        assert_eq!(outcome(&Observed::TimedOut), "timeout");
        assert_eq!(status_outcome(503), "http_5xx");
    }

    #[test]
    fn records_into_the_shared_registry() {
        let m = Arc::new(Metrics::new());
        let i = Instruments::new(Some(m.clone()), "poa");
        i.request(ADD_TRANSACTION, "ok", Some(Duration::from_millis(3)));
        i.token("http_5xx", Some(Duration::from_millis(1)));
        i.token("ok", Some(Duration::from_millis(1)));
        i.retry();
        i.poa_batch(7);
        assert_eq!(
            m.sum(
                "flowbridge_api_requests_total",
                &[
                    ("target", "poa"),
                    ("endpoint", "addTransaction"),
                    ("outcome", "ok")
                ]
            ),
            1.0
        );
        assert_eq!(
            m.sum(
                "flowbridge_token_refreshes_total",
                &[("target", "poa"), ("outcome", "error")]
            ),
            1.0
        );
        assert_eq!(m.sum("flowbridge_retries_total", &[("target", "poa")]), 1.0);
        assert_eq!(m.sum("flowbridge_poa_batch_size_sum", &[]), 7.0);
        assert_eq!(
            m.sum(
                "flowbridge_api_request_duration_seconds_count",
                &[("endpoint", "token")]
            ),
            2.0
        );
        // Without metrics nothing happens (and nothing panics).
        Instruments::default().request(TASK, "ok", None);
    }
}
