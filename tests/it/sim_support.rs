//! Helpers for the sink and simulator tests: simulators on 127.0.0.1 and
//! fast retry budgets.

use flowbridge::sim::{self, SimOptions};
use flowbridge::sink::RetryConfig;
use tokio::net::TcpListener;

async fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0 works on any test machine")
}

/// A POA simulator on a free port of 127.0.0.1.
pub async fn poa_sim(opts: SimOptions) -> sim::poa::PoaSim {
    sim::poa::spawn(local_listener().await, opts)
        .await
        .expect("the POA simulator starts")
}

/// An AICC simulator on a free port of 127.0.0.1.
pub async fn aicc_sim(opts: SimOptions) -> sim::aicc::AiccSim {
    sim::aicc::spawn(local_listener().await, opts)
        .await
        .expect("the AICC simulator starts")
}

/// Retries in milliseconds, so failure paths stay fast.
pub fn fast_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        max_elapsed_ms: 5_000,
        jitter: true,
    }
}
