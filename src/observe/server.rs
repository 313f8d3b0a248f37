//! The operations endpoint: `/metrics` (OpenMetrics text), `/healthz`
//! (the process is alive), `/readyz` (partitions assigned, state store
//! reachable, tokens obtainable; 503 with the reasons otherwise).
//!
//! Every readiness check also sets the `flowbridge_ready` gauge, and
//! [`watch_ready`] checks periodically, so Prometheus (which scrapes
//! `/metrics`, not `/readyz`) can alert on "not ready".

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// What `/readyz` asks.
pub trait ReadyCheck: Send + Sync + 'static {
    /// Reasons the service is not ready; empty when it is.
    fn not_ready(&self) -> BoxFuture<'_, Vec<String>>;
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    ready: Arc<dyn ReadyCheck>,
}

async fn scrape(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Runs the readiness check once and records the result in
/// `flowbridge_ready`; returns the reasons (empty = ready).
pub async fn check_ready(ready: &dyn ReadyCheck, metrics: &Metrics) -> Vec<String> {
    let reasons = ready.not_ready().await;
    metrics.ready.set(i64::from(reasons.is_empty()));
    reasons
}

/// How long not being ready goes unreported in the log (starting up: the
/// first partitions take a moment to be assigned).
const NOT_READY_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Checks readiness every `interval` until `shutdown` resolves. Logs when
/// the service becomes ready, and warns (once per episode, with the
/// reasons) when it has not been ready for [`NOT_READY_GRACE`].
pub async fn watch_ready(
    ready: Arc<dyn ReadyCheck>,
    metrics: Arc<Metrics>,
    interval: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ready_before = false;
    // When the current not-ready episode began, and whether it was reported.
    let mut not_ready_since: Option<(tokio::time::Instant, bool)> =
        Some((tokio::time::Instant::now(), false));
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let reasons = check_ready(ready.as_ref(), &metrics).await;
        if reasons.is_empty() {
            if !ready_before {
                tracing::info!("ready");
            }
            ready_before = true;
            not_ready_since = None;
            continue;
        }
        ready_before = false;
        let (since, reported) = not_ready_since.get_or_insert((tokio::time::Instant::now(), false));
        tracing::debug!(?reasons, "not ready");
        if !*reported && since.elapsed() >= NOT_READY_GRACE {
            tracing::warn!(?reasons, for_s = since.elapsed().as_secs(), "not ready");
            *reported = true;
        }
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let reasons = check_ready(s.ready.as_ref(), &s.metrics).await;
    if reasons.is_empty() {
        (StatusCode::OK, axum::Json(serde_json::json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "reasons": reasons})),
        )
            .into_response()
    }
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<dyn ReadyCheck>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
