//! Sink configuration: what the runtime's config file holds under its
//! `poa:` and `aicc:` keys.
//!
//! Raw serde structs with `deny_unknown_fields` (a typo is an error, not a
//! silently ignored setting) and defaults for everything but the base URL
//! and the credentials. Durations are integer milliseconds, named `*_ms`.
//! Secrets are [`SecretString`]s: their `Debug` prints `[REDACTED]`.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::SinkError;

/// Backoff for retryable failures: exponential from `initial_backoff_ms`,
/// doubling up to `max_backoff_ms`, with jitter; gives up after
/// `max_attempts` requests or once `max_elapsed_ms` have passed since the
/// first one, whichever comes first. A `Retry-After` longer than the
/// computed delay wins (if it still fits in the total budget).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Requests in all, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff_ms: u64,
    /// Ceiling of one computed delay (not of `Retry-After`).
    pub max_backoff_ms: u64,
    /// Total time budget from the first request; a retry that would start
    /// after it is not made.
    pub max_elapsed_ms: u64,
    /// Random jitter on each delay, so replicas do not retry in lockstep.
    pub jitter: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            max_elapsed_ms: 60_000,
            jitter: true,
        }
    }
}

impl RetryConfig {
    /// A budget for token endpoints: fewer, shorter retries (the API call
    /// around it has its own budget).
    pub fn token_default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff_ms: 200,
            max_backoff_ms: 2_000,
            max_elapsed_ms: 10_000,
            jitter: true,
        }
    }

    pub(crate) fn validate(&self, what: &str) -> Result<(), SinkError> {
        if self.max_attempts == 0 {
            return Err(SinkError::Config(format!(
                "{what}.max_attempts must be at least 1"
            )));
        }
        Ok(())
    }
}

/// How a sink gets its token.
///
/// YAML: `auth: {oauth: {client_id: …, client_secret: …, scope: …}}` or
/// `auth: {static: {token: …}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthConfig {
    /// OAuth2 client credentials against the API's token endpoint.
    Oauth(OAuthConfig),
    /// A fixed token (e.g. issued out of band); never refreshed.
    Static(StaticTokenConfig),
}

/// OAuth2 client-credentials settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The client id the API issued to flowbridge.
    pub client_id: String,
    /// Sent in the token request form only; never logged.
    pub client_secret: SecretString,
    /// POA: comma-separated scopes (`ttc:v1:writeTtc,ttc:v1:writeTransaction`);
    /// omitted from the form when absent. AICC takes no scope.
    #[serde(default)]
    pub scope: Option<String>,
    /// Token endpoint; default: the API's documented path below `base_url`.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Refresh this long before `expires_in` runs out (half the lifetime
    /// when the lifetime is shorter than the margin).
    #[serde(default = "default_refresh_margin_ms")]
    pub refresh_margin_ms: u64,
    /// Timeout of one token request.
    #[serde(default = "default_token_timeout_ms")]
    pub timeout_ms: u64,
    /// Backoff when the token endpoint fails.
    #[serde(default = "RetryConfig::token_default")]
    pub retry: RetryConfig,
}

impl OAuthConfig {
    /// Client credentials with default margin, timeout and backoff.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            scope: None,
            token_url: None,
            refresh_margin_ms: default_refresh_margin_ms(),
            timeout_ms: default_token_timeout_ms(),
            retry: RetryConfig::token_default(),
        }
    }
}

/// A fixed token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenConfig {
    /// The raw token (POA adds `authorization_prefix` in front of it).
    pub token: SecretString,
}

fn default_refresh_margin_ms() -> u64 {
    60_000
}
fn default_token_timeout_ms() -> u64 {
    10_000
}
fn default_authorization_prefix() -> String {
    "Bearer ".to_owned()
}
fn default_linger_ms() -> u64 {
    5
}
fn default_max_batch() -> usize {
    100
}
fn default_max_in_flight() -> usize {
    4
}
fn default_queue_capacity() -> usize {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}
fn default_item_retries() -> u32 {
    3
}
fn default_item_retry_backoff_ms() -> u64 {
    500
}
fn default_reconcile_delay_ms() -> u64 {
    1_000
}

/// The POA `addTransaction` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoaConfig {
    /// Scheme, host and port (and any path prefix) of POA, without the
    /// `/apis/ttc/...` path.
    pub base_url: String,
    /// How to get a token.
    pub auth: AuthConfig,
    /// Put before the token in `Authorization` (the docs show the bare
    /// token; public clients send `Bearer `).
    #[serde(default = "default_authorization_prefix")]
    pub authorization_prefix: String,
    /// How long the first item of a batch waits for company.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Items per `addTransaction` request at most.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Requests under way at once (retries of a batch included).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Items queued for the batcher before `send` waits (back-pressure).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Timeout of one request, response body included.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Timeout of establishing a connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Backoff for whole-batch failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Resends of one item after an item-level `500` or `2004/2008/2009`
    /// (a `previousTaskId` may not be visible yet) before it is rejected.
    #[serde(default = "default_item_retries")]
    pub item_retries: u32,
    /// First delay before such a resend; doubles each round.
    #[serde(default = "default_item_retry_backoff_ms")]
    pub item_retry_backoff_ms: u64,
}

impl PoaConfig {
    /// Defaults for everything but the base URL and the credentials.
    pub fn new(base_url: impl Into<String>, auth: AuthConfig) -> Self {
        Self {
            base_url: base_url.into(),
            auth,
            authorization_prefix: default_authorization_prefix(),
            linger_ms: default_linger_ms(),
            max_batch: default_max_batch(),
            max_in_flight: default_max_in_flight(),
            queue_capacity: default_queue_capacity(),
            request_timeout_ms: default_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            retry: RetryConfig::default(),
            item_retries: default_item_retries(),
            item_retry_backoff_ms: default_item_retry_backoff_ms(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SinkError> {
        for (name, v) in [
            ("max_batch", self.max_batch),
            ("max_in_flight", self.max_in_flight),
            ("queue_capacity", self.queue_capacity),
        ] {
            if v == 0 {
                return Err(SinkError::Config(format!("poa.{name} must be at least 1")));
            }
        }
        self.retry.validate("poa.retry")?;
        if let AuthConfig::Oauth(o) = &self.auth {
            o.retry.validate("poa.auth.oauth.retry")?;
        }
        Ok(())
    }
}

/// The AICC create-task sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiccConfig {
    /// `https://{domain}`, without `/service/AICC__Case/...`.
    pub base_url: String,
    /// How to get a token.
    pub auth: AuthConfig,
    /// Timeout of one request, response body included.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Timeout of establishing a connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Backoff for failures where nothing was created (5xx, 408, 429,
    /// connection refused); also used by `task/list`.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Wait before looking for a create of unknown outcome, so a create
    /// still in progress on AICC's side has time to show up in `task/list`.
    #[serde(default = "default_reconcile_delay_ms")]
    pub reconcile_delay_ms: u64,
}

impl AiccConfig {
    /// Defaults for everything but the base URL and the credentials.
    pub fn new(base_url: impl Into<String>, auth: AuthConfig) -> Self {
        Self {
            base_url: base_url.into(),
            auth,
            request_timeout_ms: default_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            retry: RetryConfig::default(),
            reconcile_delay_ms: default_reconcile_delay_ms(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SinkError> {
        self.retry.validate("aicc.retry")?;
        if let AuthConfig::Oauth(o) = &self.auth {
            o.retry.validate("aicc.auth.oauth.retry")?;
        }
        Ok(())
    }
}

pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_shape_with_defaults_and_unknown_keys_rejected() {
        let cfg: PoaConfig = serde_saphyr::from_str(
            "base_url: http://127.0.0.1:1\nauth:\n  oauth:\n    client_id: fb\n    client_secret: s3cr3t\n    scope: ttc:v1:writeTtc\nlinger_ms: 2\nretry:\n  max_attempts: 3\n",
        )
        .unwrap();
        assert_eq!(cfg.linger_ms, 2);
        assert_eq!(cfg.max_batch, 100);
        assert_eq!(cfg.retry.max_attempts, 3);
        assert_eq!(cfg.retry.max_backoff_ms, RetryConfig::default().max_backoff_ms);
        assert_eq!(cfg.authorization_prefix, "Bearer ");
        assert!(
            matches!(cfg.auth, AuthConfig::Oauth(ref o) if o.scope.as_deref() == Some("ttc:v1:writeTtc"))
        );

        let typo =
            serde_saphyr::from_str::<PoaConfig>("base_url: x\nauth: {static: {token: t}}\nlinger: 2\n");
        assert!(typo.is_err());
        let typo = serde_saphyr::from_str::<AiccConfig>(
            "base_url: x\nauth: {oauth: {client_id: a, client_secret: b, scopes: c}}\n",
        );
        assert!(typo.is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let cfg: AiccConfig = serde_saphyr::from_str(
            "base_url: http://x\nauth:\n  oauth:\n    client_id: fb\n    client_secret: hunter2-secret\n",
        )
        .unwrap();
        let text = format!("{cfg:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        let st = StaticTokenConfig {
            token: SecretString::from("tok-very-secret"),
        };
        assert!(!format!("{st:?}").contains("tok-very-secret"));
    }
}
