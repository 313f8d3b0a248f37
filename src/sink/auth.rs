//! Tokens for the two APIs: fetched with OAuth2 client credentials (or
//! fixed), cached, refreshed before they expire, fetched once for many
//! concurrent callers, and thrown away when the API refuses them.
//!
//! - POA: `POST {base}/oauth2/token`, form `grant_type=client_credentials,
//!   client_id, client_secret, scope`; sent as `Authorization: <prefix><token>`.
//! - AICC: `POST {base}/baas/auth/v1.0/oauth2/token`, form `grant_type,
//!   client_id, client_secret`; sent as `access-token: <token>`.
//!
//! A token is refreshed `refresh_margin` before `expires_in` runs out (at
//! half its life when the life is shorter than the margin). Concurrent
//! callers share one refresh (single flight), and no lock is held while it
//! runs (it runs in its own task). While a token is due for refresh but not
//! yet expired, callers keep getting it and the refresh runs in the
//! background; only without a valid token do callers wait for it. The
//! token endpoint is retried with backoff.
//! After a 401/403 the caller [`invalidate`](TokenProvider::invalidate)s the
//! token it used and asks again. Secrets and tokens are `SecretString`s and
//! header values are marked sensitive: neither reaches logs or `Debug`.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::SinkError;
use super::config::{AuthConfig, OAuthConfig, RetryConfig, ms};
use super::http;
use super::instrument::{self, Instruments};
use super::retry::Budget;

/// Token lifetime assumed when a token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// How long a readiness check waits for a token that is not cached. The
/// refresh goes on in the background, so a slow token endpoint only makes
/// one check fail; keep it below the probe's timeout.
pub const READY_WAIT: Duration = Duration::from_millis(800);

/// Why no token could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token endpoint answered with an error status.
    #[error("token endpoint {url} answered HTTP {status}: {body}")]
    Status {
        /// The token endpoint.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// The start of its body (an OAuth error, never a token).
        body: String,
    },
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint {url} failed: {message}")]
    Transport {
        /// The token endpoint.
        url: String,
        /// The transport error with its causes.
        message: String,
    },
    /// The answer is not a token response.
    #[error("token endpoint {url} answered something that is not a token: {message}")]
    BadResponse {
        /// The token endpoint.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The token cannot go into an HTTP header.
    #[error("the token is not a valid HTTP header value")]
    BadHeader,
}

/// Where the token goes in a request.
#[derive(Clone, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `Authorization: <prefix><token>` (POA).
    Authorization {
        /// Put before the token (`Bearer ` by default).
        prefix: String,
    },
    /// `access-token: <token>` (AICC).
    AccessToken,
}

impl fmt::Debug for HeaderStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderStyle::Authorization { prefix } => write!(f, "Authorization({prefix:?})"),
            HeaderStyle::AccessToken => f.write_str("access-token"),
        }
    }
}

/// A token handed to a caller. `generation` tells
/// [`TokenProvider::invalidate`] which token was refused.
#[derive(Clone)]
pub struct Token {
    value: Arc<SecretString>,
    generation: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(generation {}, [REDACTED])", self.generation)
    }
}

impl Token {
    /// The header carrying this token, marked sensitive (hidden from
    /// hyper's and reqwest's debug output).
    pub fn header(&self, style: &HeaderStyle) -> Result<(HeaderName, HeaderValue), AuthError> {
        let secret = self.value.expose_secret();
        let (name, text) = match style {
            HeaderStyle::Authorization { prefix } => {
                (reqwest::header::AUTHORIZATION, format!("{prefix}{secret}"))
            }
            HeaderStyle::AccessToken => (HeaderName::from_static("access-token"), secret.to_owned()),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| AuthError::BadHeader)?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}

/// Hands out valid tokens; cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct TokenProvider {
    inner: Arc<Inner>,
}

enum Inner {
    Static(Token),
    Oauth {
        fetcher: Arc<Fetcher>,
        slot: Arc<Mutex<Slot>>,
    },
}

type Refresh = Shared<BoxFuture<'static, Result<Cached, AuthError>>>;

#[derive(Default)]
struct Slot {
    current: Option<Cached>,
    refresh: Option<Refresh>,
    generation: u64,
}

#[derive(Clone)]
struct Cached {
    token: Token,
    refresh_at: Instant,
    expires_at: Instant,
}

/// What a token request needs; owns the secret.
struct Fetcher {
    client: reqwest::Client,
    url: reqwest::Url,
    client_id: String,
    client_secret: SecretString,
    scope: Option<String>,
    margin: Duration,
    retry: RetryConfig,
    instruments: Instruments,
    /// The last failed attempt, for readiness reasons; cleared by a success.
    last_error: Mutex<Option<AuthError>>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::Static(_) => f.write_str("TokenProvider::Static([REDACTED])"),
            Inner::Oauth { fetcher, .. } => f
                .debug_struct("TokenProvider::Oauth")
                .field("url", &fetcher.url.as_str())
                .field("client_id", &fetcher.client_id)
                .field("client_secret", &"[REDACTED]")
                .field("scope", &fetcher.scope)
                .field("margin", &fetcher.margin)
                .finish(),
        }
    }
}

/// The token response of both APIs.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenProvider {
    /// A provider per `config`; `default_token_url` is the API's documented
    /// token endpoint below its base URL, used unless the config names one.
    pub fn new(config: &AuthConfig, default_token_url: &str) -> Result<Self, SinkError> {
        Self::instrumented(config, default_token_url, Instruments::default())
    }

    /// Like [`TokenProvider::new`], recording token requests and their
    /// retries into `instruments`.
    pub(crate) fn instrumented(
        config: &AuthConfig,
        default_token_url: &str,
        instruments: Instruments,
    ) -> Result<Self, SinkError> {
        match config {
            AuthConfig::Static(s) => Ok(Self::fixed(s.token.clone())),
            AuthConfig::Oauth(o) => Self::oauth(o, default_token_url, instruments),
        }
    }

    /// A provider that always hands out `token`.
    pub fn fixed(token: SecretString) -> Self {
        Self {
            inner: Arc::new(Inner::Static(Token {
                value: Arc::new(token),
                generation: 0,
            })),
        }
    }

    fn oauth(o: &OAuthConfig, default_token_url: &str, instruments: Instruments) -> Result<Self, SinkError> {
        let url_text = o.token_url.as_deref().unwrap_or(default_token_url);
        let url = reqwest::Url::parse(url_text)
            .map_err(|e| SinkError::Config(format!("bad token URL `{url_text}`: {e}")))?;
        let client = http::client(ms(o.timeout_ms), ms(o.timeout_ms))?;
        Ok(Self {
            inner: Arc::new(Inner::Oauth {
                fetcher: Arc::new(Fetcher {
                    client,
                    url,
                    client_id: o.client_id.clone(),
                    client_secret: o.client_secret.clone(),
                    scope: o.scope.clone(),
                    margin: ms(o.refresh_margin_ms),
                    retry: o.retry.clone(),
                    instruments,
                    last_error: Mutex::new(None),
                }),
                slot: Arc::new(Mutex::new(Slot::default())),
            }),
        })
    }

    /// A token valid now: the cached one, or a fresh one (one refresh for
    /// all concurrent callers).
    pub async fn get(&self) -> Result<Token, AuthError> {
        let (fetcher, slot) = match &*self.inner {
            Inner::Static(t) => return Ok(t.clone()),
            Inner::Oauth { fetcher, slot } => (fetcher, slot),
        };
        let refresh = {
            let mut s = lock(slot);
            let now = Instant::now();
            if let Some(c) = &s.current
                && now < c.refresh_at
            {
                return Ok(c.token.clone());
            }
            let still_valid = s
                .current
                .as_ref()
                .filter(|c| now < c.expires_at)
                .map(|c| c.token.clone());
            let refresh = match &s.refresh {
                Some(r) => r.clone(),
                None => {
                    s.generation += 1;
                    let r = refresh(fetcher.clone(), Arc::downgrade(slot), s.generation)
                        .boxed()
                        .shared();
                    s.refresh = Some(r.clone());
                    // Driven by its own task, so it completes (and fills the
                    // cache) even if every caller waiting on it goes away.
                    tokio::spawn(r.clone());
                    r
                }
            };
            if let Some(token) = still_valid {
                // Due for refresh but not expired: keep using it while the
                // refresh runs in the background.
                return Ok(token);
            }
            refresh
        };
        refresh.await.map(|c| c.token)
    }

    /// For readiness: `Ok` when a token can be had now — a static token
    /// always, a cached unexpired one, or a fresh one fetched within
    /// `within`; otherwise why not (the last failed attempt). Never waits
    /// longer than `within`; a refresh it started goes on in the background.
    pub async fn ready(&self, within: Duration) -> Result<(), String> {
        match tokio::time::timeout(within, self.get()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                let last = match &*self.inner {
                    Inner::Static(_) => None,
                    Inner::Oauth { fetcher, .. } => fetcher.last_error(),
                };
                Err(match last {
                    Some(e) => format!("no token within {within:?}; last attempt: {e}"),
                    None => format!("no token within {within:?} (the token request is under way)"),
                })
            }
        }
    }

    /// The API refused `token` (401/403): forget it, unless a newer one
    /// has replaced it already.
    pub fn invalidate(&self, token: &Token) {
        if let Inner::Oauth { slot, .. } = &*self.inner {
            let mut s = lock(slot);
            if s.current
                .as_ref()
                .is_some_and(|c| c.token.generation == token.generation)
            {
                s.current = None;
            }
        }
    }
}

/// Locks the slot. It is only held for a few field updates, never across
/// an await; a poisoned lock still holds a consistent `Slot`.
fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// One refresh: fetch with backoff, then store the result in the slot.
/// Holds the slot weakly, so a dropped provider is not kept alive.
async fn refresh(
    fetcher: Arc<Fetcher>,
    slot: Weak<Mutex<Slot>>,
    generation: u64,
) -> Result<Cached, AuthError> {
    let result = fetcher.fetch_with_backoff(generation).await;
    if let Some(slot) = slot.upgrade() {
        let mut s = lock(&slot);
        s.refresh = None;
        if let Ok(c) = &result {
            s.current = Some(c.clone());
        }
    }
    result
}

impl Fetcher {
    fn last_error(&self) -> Option<AuthError> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_last_error(&self, e: Option<AuthError>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    async fn fetch_with_backoff(&self, generation: u64) -> Result<Cached, AuthError> {
        let mut budget = Budget::new(&self.retry);
        let mut first = true;
        loop {
            if !first {
                self.instruments.retry();
            }
            first = false;
            let started = Instant::now();
            let (result, outcome) = self.fetch_once(generation).await;
            self.instruments.token(outcome, Some(started.elapsed()));
            match result {
                Ok(c) => {
                    self.set_last_error(None);
                    return Ok(c);
                }
                Err(e) => {
                    self.set_last_error(Some(e.clone()));
                    match budget.next_delay(None) {
                        Some(delay) => {
                            tracing::warn!(error = %e, attempt = budget.attempts() - 1, ?delay, "token request failed; retrying");
                            tokio::time::sleep(delay).await;
                        }
                        None => {
                            tracing::error!(error = %e, attempts = budget.attempts(), "token request failed; giving up for now");
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// One token request, with the `outcome` label it is recorded under.
    async fn fetch_once(&self, generation: u64) -> (Result<Cached, AuthError>, &'static str) {
        let url = self.url.as_str();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "client_credentials"),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let transport = |e: reqwest::Error| {
            let outcome = instrument::outcome(&http::observe_error(&e));
            let err = AuthError::Transport {
                url: url.to_owned(),
                message: http::describe(&e),
            };
            (Err(err), outcome)
        };
        let started = Instant::now();
        let resp = match self.client.post(self.url.clone()).form(&form).send().await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = resp.status().as_u16();
        let body = match http::read_body(resp).await {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => return transport(e),
        };
        if !(200..300).contains(&status) {
            let err = AuthError::Status {
                url: url.to_owned(),
                status,
                body: http::preview(&body),
            };
            return (Err(err), instrument::status_outcome(status));
        }
        let bad = |message: String| {
            let err = AuthError::BadResponse {
                url: url.to_owned(),
                message,
            };
            (Err(err), "bad_body")
        };
        let parsed: TokenResponse = match serde_json::from_slice(&body) {
            Ok(p) => p,
            // The serde error names the position, never the token.
            Err(e) => return bad(e.to_string()),
        };
        let Some(value) = parsed.access_token.filter(|t| !t.expose_secret().is_empty()) else {
            return bad("no access_token".to_owned());
        };
        let lifetime = match parsed.expires_in.as_ref().and_then(seconds) {
            Some(l) => l,
            None => {
                tracing::warn!(
                    url,
                    "token response has no usable expires_in; assuming {DEFAULT_LIFETIME:?}"
                );
                DEFAULT_LIFETIME
            }
        };
        let refresh_in = if self.margin < lifetime {
            lifetime - self.margin
        } else {
            lifetime / 2
        };
        tracing::debug!(url, ?lifetime, ?refresh_in, generation, "token fetched");
        let cached = Cached {
            token: Token {
                value: Arc::new(value),
                generation,
            },
            // Counted from before the request: the token may have been
            // issued at any moment while it was under way.
            refresh_at: started + refresh_in,
            expires_at: started + lifetime,
        };
        (Ok(cached), "ok")
    }
}

/// `expires_in` as a number or a numeric string of seconds.
fn seconds(v: &serde_json::Value) -> Option<Duration> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::config::StaticTokenConfig;

    #[tokio::test]
    async fn debug_hides_secrets_and_tokens() {
        let mut o = OAuthConfig::new("fb-client", "oauth-secret-value");
        o.scope = Some("ttc:v1:writeTtc".into());
        let p = TokenProvider::new(&AuthConfig::Oauth(o.clone()), "http://127.0.0.1:9/oauth2/token").unwrap();
        let text = format!("{p:?} {o:?} {:?}", AuthConfig::Oauth(o.clone()));
        assert!(!text.contains("oauth-secret-value"), "{text}");
        assert!(text.contains("fb-client"));

        let st = AuthConfig::Static(StaticTokenConfig {
            token: SecretString::from("static-token-value"),
        });
        let p = TokenProvider::new(&st, "http://x/").unwrap();
        let token = p.get().await.unwrap();
        let (_, header) = token
            .header(&HeaderStyle::Authorization {
                prefix: "Bearer ".into(),
            })
            .unwrap();
        let text = format!("{p:?} {st:?} {token:?} {header:?}");
        assert!(!text.contains("static-token-value"), "{text}");
        assert_eq!(header.to_str().unwrap(), "Bearer static-token-value");
    }

    #[tokio::test]
    async fn ready_says_why_without_the_secret() {
        let fixed = TokenProvider::fixed(SecretString::from("t"));
        assert_eq!(fixed.ready(READY_WAIT).await, Ok(()));

        // Nothing listens on port 9 of 127.0.0.1: connection refused.
        let mut o = OAuthConfig::new("fb-client", "ready-secret-value");
        o.retry = RetryConfig {
            max_attempts: 2,
            initial_backoff_ms: 1,
            max_backoff_ms: 1,
            max_elapsed_ms: 100,
            jitter: false,
        };
        let p = TokenProvider::new(&AuthConfig::Oauth(o), "http://127.0.0.1:9/oauth2/token").unwrap();
        let err = p.ready(Duration::from_secs(5)).await.unwrap_err();
        assert!(err.contains("127.0.0.1:9/oauth2/token"), "{err}");
        assert!(!err.contains("ready-secret-value"), "{err}");
        // Waiting longer than `within` is not an option: a zero wait still
        // answers, with the last error seen.
        let err = p.ready(Duration::ZERO).await.unwrap_err();
        assert!(
            err.contains("last attempt") && err.contains("127.0.0.1:9"),
            "{err}"
        );
    }

    #[test]
    fn expires_in_accepts_numbers_and_strings() {
        assert_eq!(seconds(&serde_json::json!(7200)), Some(Duration::from_secs(7200)));
        assert_eq!(
            seconds(&serde_json::json!("1800")),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(seconds(&serde_json::json!(0)), None);
        assert_eq!(seconds(&serde_json::json!(null)), None);
    }
}
