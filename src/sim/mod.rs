//! Simulators of POA and AICC that enforce the contracts of `seeds/`,
//! for tests, the demo and benchmarks, in-process ([`poa::spawn`],
//! [`aicc::spawn`]) or as `flowbridge simulate poa|aicc`.
//!
//! Both issue expiring tokens from their token endpoints and answer 401 to
//! a missing, unknown or expired token; both check every field with the
//! same rules the engine uses ([`crate::contract`]); both record what they
//! accepted. Faults are injected at run time ([`Faults`], through
//! [`SimHandle::patch_faults`] or `POST /_sim/faults`): latency, a failure
//! rate, outages (on/off or for a window), garbage bodies, responses lost
//! after the work was done, refused token requests, short token lifetimes.
//!
//! Control routes (JSON): `GET /_sim/faults`, `POST /_sim/faults` (a
//! [`FaultsPatch`]), `GET /_sim/stats`, plus each simulator's records
//! (`GET /_sim/todos`, `GET /_sim/transactions` for POA; `GET /_sim/tasks`,
//! alias `/_sim/todos`, for AICC).
#![warn(missing_docs)]

pub mod aicc;
pub mod poa;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::state::now_ms;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Settings of a simulator that do not change while it runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The only client the token endpoint accepts.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
    /// POA: a scope every token request must include (none required when
    /// `None`).
    pub required_scope: Option<String>,
    /// POA: what comes before the token in `Authorization`.
    pub authorization_prefix: String,
    /// POA: transaction types that exist without `autoCreateTransType`.
    pub known_trans_types: Vec<String>,
    /// POA: transaction types that exist but are not enabled (item code 500).
    pub disabled_trans_types: Vec<String>,
    /// POA: the apps that exist; empty = any appId.
    pub app_ids: Vec<String>,
    /// Faults (and token lifetime) at start.
    pub faults: Faults,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            client_id: "flowbridge".to_owned(),
            client_secret: SecretString::from("flowbridge-sim-secret"),
            required_scope: None,
            authorization_prefix: "Bearer ".to_owned(),
            known_trans_types: Vec::new(),
            disabled_trans_types: Vec::new(),
            app_ids: Vec::new(),
            faults: Faults::default(),
        }
    }
}

/// Faults to inject, changeable while the simulator runs. Rates are
/// probabilities per API request; `*_next` counters apply to the next N
/// API requests (token requests for `token_fail_next`) and count down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Lifetime of newly issued tokens (`expires_in` is this in whole
    /// seconds, at least 1).
    pub token_lifetime_ms: u64,
    /// Added before every API request is handled.
    pub latency_ms: u64,
    /// Probability of an HTTP 500 (nothing done).
    pub failure_rate: f64,
    /// Probability of an HTTP 200 with an HTML body (nothing done).
    pub garbage_rate: f64,
    /// Every request (token requests too) answers 503 while set.
    pub outage: bool,
    /// `Retry-After` seconds on 503/500 answers, if any.
    pub retry_after_secs: Option<u64>,
    /// The next N API requests answer 503 (nothing done).
    pub fail_next: u32,
    /// The next N API requests answer 200 with an HTML body (nothing done).
    pub garbage_next: u32,
    /// POA: the next N requests answer HTTP 200 with outer `code` -1
    /// (nothing done).
    pub outer_error_next: u32,
    /// The next N API requests are processed, then the connection breaks
    /// in the middle of the response.
    pub lose_response_next: u32,
    /// The next N token requests answer 500.
    pub token_fail_next: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            token_lifetime_ms: 3_600_000,
            latency_ms: 0,
            failure_rate: 0.0,
            garbage_rate: 0.0,
            outage: false,
            retry_after_secs: None,
            fail_next: 0,
            garbage_next: 0,
            outer_error_next: 0,
            lose_response_next: 0,
            token_fail_next: 0,
        }
    }
}

/// A change to [`Faults`]: fields left out stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsPatch {
    /// See [`Faults::token_lifetime_ms`].
    pub token_lifetime_ms: Option<u64>,
    /// See [`Faults::latency_ms`].
    pub latency_ms: Option<u64>,
    /// See [`Faults::failure_rate`].
    pub failure_rate: Option<f64>,
    /// See [`Faults::garbage_rate`].
    pub garbage_rate: Option<f64>,
    /// See [`Faults::outage`].
    pub outage: Option<bool>,
    /// An outage from now for this long (then it ends by itself).
    pub outage_for_ms: Option<u64>,
    /// With `outage_for_ms`: the outage starts only once this many more
    /// API requests have arrived (the last of them is the first refused),
    /// so a test or the demo can hit traffic that has not begun yet.
    pub outage_after_requests: Option<u64>,
    /// See [`Faults::retry_after_secs`] (JSON can set it, not clear it).
    pub retry_after_secs: Option<Option<u64>>,
    /// See [`Faults::fail_next`].
    pub fail_next: Option<u32>,
    /// See [`Faults::garbage_next`].
    pub garbage_next: Option<u32>,
    /// See [`Faults::outer_error_next`].
    pub outer_error_next: Option<u32>,
    /// See [`Faults::lose_response_next`].
    pub lose_response_next: Option<u32>,
    /// See [`Faults::token_fail_next`].
    pub token_fail_next: Option<u32>,
    /// Forget every issued token: the next API request with one gets 401.
    pub revoke_tokens: Option<bool>,
}

/// Counters, for tests and the demo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused (bad client, bad grant, injected failure).
    pub token_refused: u64,
    /// API requests received (control routes not counted).
    pub api_requests: u64,
    /// API requests answered 401.
    pub unauthorized: u64,
    /// API requests answered with an injected fault.
    pub injected: u64,
}

#[derive(Default)]
struct Counters {
    tokens_issued: AtomicU64,
    token_refused: AtomicU64,
    api_requests: AtomicU64,
    unauthorized: AtomicU64,
    injected: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// How a simulator spells its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `{"code": <status>, "message": …}`, token in `Authorization`.
    Poa,
    /// `{"resCode": "<status>", "resMsg": …}`, token in `access-token`.
    Aicc,
}

struct FaultState {
    faults: Faults,
    outage_until: Option<Instant>,
    /// An outage armed to start at the API request with this count.
    outage_armed: Option<(u64, Duration)>,
}

/// What both simulators share: options, faults, tokens, counters.
pub(crate) struct Common {
    flavor: Flavor,
    pub(crate) opts: SimOptions,
    faults: Mutex<FaultState>,
    tokens: Mutex<HashMap<String, Instant>>,
    counters: Counters,
}

/// Locks a simulator mutex; a poisoned lock still holds consistent data
/// (every critical section is a few plain updates).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A simulator's shared state: the common part and its records.
pub struct Shared<S> {
    pub(crate) common: Common,
    pub(crate) book: Mutex<S>,
}

impl Common {
    fn new(flavor: Flavor, opts: SimOptions) -> Self {
        let faults = opts.faults.clone();
        Self {
            flavor,
            opts,
            faults: Mutex::new(FaultState {
                faults,
                outage_until: None,
                outage_armed: None,
            }),
            tokens: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn error(&self, status: StatusCode, message: &str) -> Response {
        let body = match self.flavor {
            Flavor::Poa => serde_json::json!({
                "took": 0,
                "timestamp": now_ms(),
                "code": status.as_u16(),
                "message": message,
            }),
            Flavor::Aicc => serde_json::json!({
                "resCode": status.as_u16().to_string(),
                "resMsg": message,
            }),
        };
        (status, Json(body)).into_response()
    }

    fn with_retry_after(&self, mut resp: Response) -> Response {
        if let Some(secs) = lock(&self.faults).faults.retry_after_secs {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    fn in_outage(&self) -> bool {
        let mut f = lock(&self.faults);
        if let Some((at, length)) = f.outage_armed
            && self.counters.api_requests.load(Ordering::Relaxed) >= at
        {
            f.outage_armed = None;
            f.outage_until = Some(Instant::now() + length);
        }
        if let Some(until) = f.outage_until {
            if Instant::now() < until {
                return true;
            }
            f.outage_until = None;
        }
        f.faults.outage
    }

    /// Decrements a `*_next` counter; true if it was positive.
    fn take(&self, pick: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        let mut f = lock(&self.faults);
        let n = pick(&mut f.faults);
        if *n > 0 {
            *n -= 1;
            true
        } else {
            false
        }
    }

    /// Faults that answer before any work: latency, outage, failures,
    /// garbage. `Some(response)` short-circuits the request.
    pub(crate) async fn inject_before(&self) -> Option<Response> {
        bump(&self.counters.api_requests);
        let (latency, failure_rate, garbage_rate) = {
            let f = lock(&self.faults);
            (f.faults.latency_ms, f.faults.failure_rate, f.faults.garbage_rate)
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let injected = if self.in_outage() || self.take(|f| &mut f.fail_next) {
            Some(self.with_retry_after(
                self.error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable (simulated)"),
            ))
        } else if failure_rate > 0.0 && rand::rng().random::<f64>() < failure_rate {
            Some(self.with_retry_after(
                self.error(StatusCode::INTERNAL_SERVER_ERROR, "internal error (simulated)"),
            ))
        } else if self.take(|f| &mut f.garbage_next)
            || (garbage_rate > 0.0 && rand::rng().random::<f64>() < garbage_rate)
        {
            Some(garbage())
        } else {
            None
        };
        if injected.is_some() {
            bump(&self.counters.injected);
        }
        injected
    }

    /// POA only: an HTTP 200 with outer `code` ≠ 0.
    pub(crate) fn take_outer_error(&self) -> bool {
        let hit = self.take(|f| &mut f.outer_error_next);
        if hit {
            bump(&self.counters.injected);
        }
        hit
    }

    /// The work is done; should the response be lost?
    pub(crate) fn take_lose_response(&self) -> bool {
        let hit = self.take(|f| &mut f.lose_response_next);
        if hit {
            bump(&self.counters.injected);
        }
        hit
    }

    /// Checks the token header of an API request: `Some(401 response)` when
    /// it is missing, unknown or expired.
    pub(crate) fn refuse_token(&self, headers: &HeaderMap) -> Option<Response> {
        let token = match self.flavor {
            Flavor::Poa => headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix(self.opts.authorization_prefix.as_str())),
            Flavor::Aicc => headers.get("access-token").and_then(|v| v.to_str().ok()),
        };
        let problem = match token {
            None | Some("") => Some("missing token"),
            Some(t) => {
                let mut tokens = lock(&self.tokens);
                match tokens.get(t) {
                    None => Some("invalid token"),
                    Some(expires) if Instant::now() >= *expires => {
                        tokens.remove(t);
                        Some("token expired")
                    }
                    Some(_) => None,
                }
            }
        };
        problem.map(|p| {
            bump(&self.counters.unauthorized);
            self.error(StatusCode::UNAUTHORIZED, p)
        })
    }

    /// Checks `Content-Type: application/json`: `Some(415 response)` if not.
    pub(crate) fn refuse_non_json(&self, headers: &HeaderMap) -> Option<Response> {
        let ok = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        (!ok).then(|| {
            self.error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            )
        })
    }

    fn patch(&self, p: FaultsPatch) -> Faults {
        if p.revoke_tokens == Some(true) {
            lock(&self.tokens).clear();
        }
        let mut s = lock(&self.faults);
        let f = &mut s.faults;
        macro_rules! set {
            ($($field:ident),*) => {$(if let Some(v) = p.$field { f.$field = v; })*};
        }
        set!(
            token_lifetime_ms,
            latency_ms,
            failure_rate,
            garbage_rate,
            outage,
            retry_after_secs,
            fail_next,
            garbage_next,
            outer_error_next,
            lose_response_next,
            token_fail_next
        );
        match (p.outage_for_ms, p.outage_after_requests) {
            (Some(ms), Some(after)) => {
                let at = self.counters.api_requests.load(Ordering::Relaxed) + after.max(1);
                s.outage_armed = Some((at, Duration::from_millis(ms)));
            }
            (Some(ms), None) => s.outage_until = Some(Instant::now() + Duration::from_millis(ms)),
            (None, _) => {}
        }
        s.faults.clone()
    }

    fn stats(&self) -> SimStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            tokens_issued: get(&c.tokens_issued),
            token_refused: get(&c.token_refused),
            api_requests: get(&c.api_requests),
            unauthorized: get(&c.unauthorized),
            injected: get(&c.injected),
        }
    }
}

/// The token form of both APIs.
#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

/// `POST` token endpoint (both simulators): client credentials only.
pub(crate) async fn token<S>(
    State(sim): State<Arc<Shared<S>>>,
    form: Result<axum::Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let c = &sim.common;
    let refuse = |status: StatusCode, error: &str, description: &str| {
        bump(&c.counters.token_refused);
        (
            status,
            Json(serde_json::json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if c.in_outage() || c.take(|f| &mut f.token_fail_next) {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "token service unavailable (simulated)",
        );
    }
    let Ok(axum::Form(form)) = form else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if form.client_id.as_deref() != Some(c.opts.client_id.as_str())
        || form.client_secret.as_deref() != Some(c.opts.client_secret.expose_secret())
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    if let Some(required) = &c.opts.required_scope {
        let granted = form.scope.as_deref().unwrap_or("");
        if !required
            .split(',')
            .all(|r| granted.split(',').any(|g| g.trim() == r.trim()))
        {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                &format!("scope must include {required}"),
            );
        }
    }
    let lifetime = Duration::from_millis(lock(&c.faults).faults.token_lifetime_ms);
    let token = random_token();
    lock(&c.tokens).insert(token.clone(), Instant::now() + lifetime);
    bump(&c.counters.tokens_issued);
    let token_type = match c.flavor {
        Flavor::Poa => "bearer",
        Flavor::Aicc => "Bearer",
    };
    Json(serde_json::json!({
        "access_token": token,
        "token_type": token_type,
        "expires_in": lifetime.as_secs().max(1),
    }))
    .into_response()
}

fn random_token() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 20] = rand::random();
    let mut s = String::with_capacity(40);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// A 200 whose body is an HTML error page, as a misbehaving proxy sends.
fn garbage() -> Response {
    let mut resp = Response::new(Body::from(
        "<html><body><h1>502 Bad Gateway</h1>(simulated garbage)</body></html>",
    ));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

/// A 200 whose body breaks off: the client sees the connection drop in the
/// middle of the response.
pub(crate) fn lost_response() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"{\"resCode\":\"0\",\"code\":0,")),
        Err(std::io::Error::other("simulated connection loss")),
    ];
    let mut resp = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn get_faults<S>(State(sim): State<Arc<Shared<S>>>) -> Json<Faults> {
    Json(lock(&sim.common.faults).faults.clone())
}

async fn post_faults<S>(
    State(sim): State<Arc<Shared<S>>>,
    patch: Result<Json<FaultsPatch>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match patch {
        Ok(Json(p)) => Json(sim.common.patch(p)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    }
}

async fn get_stats<S>(State(sim): State<Arc<Shared<S>>>) -> Json<SimStats> {
    Json(sim.common.stats())
}

/// The control routes every simulator has.
fn control_routes<S: Send + 'static>() -> axum::Router<Arc<Shared<S>>> {
    axum::Router::new()
        .route("/_sim/faults", get(get_faults::<S>).post(post_faults::<S>))
        .route("/_sim/stats", get(get_stats::<S>))
}

/// A running simulator. Dropping it stops the server (without waiting).
pub struct SimHandle<S> {
    addr: SocketAddr,
    shared: Arc<Shared<S>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<S> std::fmt::Debug for SimHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .field("flavor", &self.shared.common.flavor)
            .finish_non_exhaustive()
    }
}

/// Serves `router` on `listener` until the handle says stop.
async fn serve<S: Send + 'static>(
    listener: TcpListener,
    flavor: Flavor,
    opts: SimOptions,
    book: S,
    routes: axum::Router<Arc<Shared<S>>>,
) -> anyhow::Result<SimHandle<S>> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        common: Common::new(flavor, opts),
        book: Mutex::new(book),
    });
    let app = routes.merge(control_routes::<S>()).with_state(shared.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "simulator stopped with an error");
        }
    });
    Ok(SimHandle {
        addr,
        shared,
        shutdown: Some(tx),
        task: Some(task),
    })
}

impl<S> SimHandle<S> {
    /// `http://127.0.0.1:PORT`: the base URL to configure a sink with.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client credentials the token endpoint accepts.
    pub fn credentials(&self) -> (String, SecretString) {
        let o = &self.shared.common.opts;
        (o.client_id.clone(), o.client_secret.clone())
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.common.faults).faults.clone()
    }

    /// Applies a change to the faults; returns them as they now are.
    pub fn patch_faults(&self, patch: FaultsPatch) -> Faults {
        self.shared.common.patch(patch)
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        let mut s = lock(&self.shared.common.faults);
        s.faults = faults;
        s.outage_until = None;
        s.outage_armed = None;
    }

    /// Forgets every issued token.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.common.tokens).clear();
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStats {
        self.shared.common.stats()
    }

    /// Stops accepting, lets requests under way finish (for up to 5 s).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl<S> Drop for SimHandle<S> {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Now (UTC) as `YYYY-MM-DD HH:mm:ss`.
pub(crate) fn now_datetime() -> String {
    let secs = now_ms().div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::state::store::civil_date(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_is_in_the_aicc_format() {
        let now = now_datetime();
        assert!(crate::contract::check_datetime("now", &now).is_ok(), "{now}");
        assert!(now.starts_with("20"), "{now}");
    }

    #[test]
    fn faults_patch_is_strict_json() {
        let p: FaultsPatch = serde_json::from_str(r#"{"fail_next": 2, "outage_for_ms": 10}"#).unwrap();
        assert_eq!(p.fail_next, Some(2));
        assert!(serde_json::from_str::<FaultsPatch>(r#"{"fail_nxt": 2}"#).is_err());
    }
}
