//! Whether to retry: a pure function of what a call observed, and the
//! backoff budget that bounds retrying.
//!
//! [`classify`] maps (which call × transport failure or HTTP status × body
//! shape) to a [`Verdict`]. It does no I/O, so its whole table is tested
//! below. The rules:
//!
//! | observed | POA `addTransaction`, AICC `task/list` (idempotent) | AICC create (not idempotent) |
//! |---|---|---|
//! | not sent (connect refused/timeout, no token) | retry | retry |
//! | timeout / connection broken after sending | retry | **unknown** |
//! | 2xx + documented success | success | success |
//! | 2xx + documented error (POA outer `code` ≠ 0, AICC `resCode` ≠ "0") | retry (POA) / reject (list) | reject |
//! | 2xx + undocumented body | retry | **unknown** |
//! | 401, 403 | refresh token, resend | refresh token, resend |
//! | 408, 429 | retry (`Retry-After`) | retry (`Retry-After`) |
//! | 504 | retry | **unknown** (the gateway gave up waiting; AICC may have created it) |
//! | other 5xx | retry (`Retry-After`) | retry (`Retry-After`) |
//! | other 4xx | reject | reject |
//! | 1xx/3xx (not followed) | retry | retry |

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use super::config::{RetryConfig, ms};

/// Which call was made: decides what an ambiguous failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// POA `addTransaction`: idempotent through caller-chosen taskIds (2003).
    PoaAddTransaction,
    /// AICC `task` create: not idempotent (AICC generates the id).
    AiccCreate,
    /// AICC `task/list`: a read.
    AiccList,
}

impl Call {
    fn idempotent(self) -> bool {
        !matches!(self, Call::AiccCreate)
    }
}

/// How the body of a complete HTTP response looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// The documented success (POA `code` 0 with `data`; AICC `resCode`
    /// "0" with the expected `result`).
    Success,
    /// The documented error envelope (POA `code` ≠ 0; AICC `resCode` ≠ "0").
    ApiError,
    /// Anything else: not JSON, truncated, another shape.
    Undocumented,
}

/// What one attempt observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Nothing reached the API: connection refused, DNS, TLS, connect
    /// timeout, or no token could be obtained.
    NotSent,
    /// The request timed out after it may have been sent.
    TimedOut,
    /// The connection broke after the request was sent (reset, closed
    /// mid-response, body unreadable).
    Broken,
    /// A complete response.
    Response {
        /// The HTTP status.
        status: u16,
        /// How the body looked.
        body: BodyShape,
        /// The `Retry-After` header, if any and parseable.
        retry_after: Option<Duration>,
    },
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The call did what it should.
    Success,
    /// The token was refused: invalidate it, get a fresh one, resend.
    RefreshToken,
    /// Try again after the backoff (at least `after`, if given).
    Retry {
        /// The server's `Retry-After`, a floor for the next delay.
        after: Option<Duration>,
    },
    /// Resending cannot help.
    Reject,
    /// The call may or may not have taken effect; only for non-idempotent
    /// calls, which must be reconciled instead of resent.
    Unknown,
}

/// The retry policy: see the module docs for the table.
pub fn classify(call: Call, observed: Observed) -> Verdict {
    let ambiguous = if call.idempotent() {
        Verdict::Retry { after: None }
    } else {
        Verdict::Unknown
    };
    match observed {
        Observed::NotSent => Verdict::Retry { after: None },
        Observed::TimedOut | Observed::Broken => ambiguous,
        Observed::Response {
            status,
            body,
            retry_after,
        } => match status {
            200..=299 => match body {
                BodyShape::Success => Verdict::Success,
                BodyShape::ApiError if call == Call::PoaAddTransaction => {
                    Verdict::Retry { after: retry_after }
                }
                BodyShape::ApiError => Verdict::Reject,
                BodyShape::Undocumented => ambiguous,
            },
            401 | 403 => Verdict::RefreshToken,
            408 | 429 => Verdict::Retry { after: retry_after },
            504 => ambiguous,
            500..=599 => Verdict::Retry { after: retry_after },
            400..=499 => Verdict::Reject,
            _ => Verdict::Retry { after: retry_after },
        },
    }
}

/// What one failed item of a POA batch (`data.errorIds[]`) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemVerdict {
    /// `2003` the task already exists: an earlier send created it.
    Done,
    /// `400`-class: the item itself is invalid; resending cannot help.
    Reject,
    /// `500` (business error, maybe transient), `2004`/`2008`/`2009` (the
    /// `previousTaskId` or its transaction is not visible yet) and codes
    /// nobody documented: resend a bounded number of times.
    Retry,
}

/// The per-item policy for POA `errorIds[].code`.
pub fn classify_poa_item(code: i64) -> ItemVerdict {
    match code {
        crate::contract::poa::ITEM_ALREADY_EXISTS => ItemVerdict::Done,
        400..=499 => ItemVerdict::Reject,
        _ => ItemVerdict::Retry,
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (taken
/// relative to now; a date in the past means no wait).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The retry budget of one operation: attempts, delays and total time.
#[derive(Debug)]
pub struct Budget {
    delays: ExponentialBackoff,
    started: Instant,
    max_elapsed: Duration,
    attempts: u32,
    max_attempts: u32,
}

impl Budget {
    /// A fresh budget; the clock starts now (tokio time, so tests can
    /// pause it).
    pub fn new(cfg: &RetryConfig) -> Self {
        Self {
            delays: backoff(cfg, cfg.initial_backoff_ms),
            started: Instant::now(),
            max_elapsed: ms(cfg.max_elapsed_ms),
            attempts: 1,
            max_attempts: cfg.max_attempts,
        }
    }

    /// Requests made so far (the first counts).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt, or `None` when the budget is
    /// spent. `retry_after` is honoured when it is longer than the backoff.
    /// Counts the attempt that follows.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.attempts >= self.max_attempts {
            return None;
        }
        let computed = self.delays.next()?;
        let delay = retry_after.map_or(computed, |ra| ra.max(computed));
        if self.started.elapsed() + delay > self.max_elapsed {
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }
}

/// Exponential delays from `initial_ms` per `cfg`, with a random jitter
/// seed (backon's own default seed is fixed without its `std` feature,
/// which would make every replica jitter alike).
pub(crate) fn backoff(cfg: &RetryConfig, initial_ms: u64) -> ExponentialBackoff {
    let mut b = ExponentialBuilder::default()
        .with_min_delay(ms(initial_ms))
        .with_max_delay(ms(cfg.max_backoff_ms.max(initial_ms)))
        .with_factor(2.0)
        .without_max_times();
    if cfg.jitter {
        b = b.with_jitter().with_jitter_seed(rand::random());
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    use BodyShape::{ApiError, Success, Undocumented};
    use Call::{AiccCreate, AiccList, PoaAddTransaction as Poa};

    const RETRY: Verdict = Verdict::Retry { after: None };

    fn resp(status: u16, body: BodyShape) -> Observed {
        Observed::Response {
            status,
            body,
            retry_after: None,
        }
    }

    #[rstest]
    // transport
    #[case(Poa, Observed::NotSent, RETRY)]
    #[case(AiccCreate, Observed::NotSent, RETRY)]
    #[case(Poa, Observed::TimedOut, RETRY)]
    #[case(AiccList, Observed::TimedOut, RETRY)]
    #[case(AiccCreate, Observed::TimedOut, Verdict::Unknown)]
    #[case(Poa, Observed::Broken, RETRY)]
    #[case(AiccCreate, Observed::Broken, Verdict::Unknown)]
    // 2xx
    #[case(Poa, resp(200, Success), Verdict::Success)]
    #[case(AiccCreate, resp(200, Success), Verdict::Success)]
    #[case(Poa, resp(200, ApiError), RETRY)]
    #[case(AiccCreate, resp(200, ApiError), Verdict::Reject)]
    #[case(AiccList, resp(200, ApiError), Verdict::Reject)]
    #[case(Poa, resp(200, Undocumented), RETRY)]
    #[case(AiccList, resp(200, Undocumented), RETRY)]
    #[case(AiccCreate, resp(200, Undocumented), Verdict::Unknown)]
    #[case(AiccCreate, resp(201, Undocumented), Verdict::Unknown)]
    // auth
    #[case(Poa, resp(401, ApiError), Verdict::RefreshToken)]
    #[case(Poa, resp(403, Undocumented), Verdict::RefreshToken)]
    #[case(AiccCreate, resp(401, ApiError), Verdict::RefreshToken)]
    // throttling and server errors
    #[case(Poa, resp(408, Undocumented), RETRY)]
    #[case(AiccCreate, resp(429, ApiError), RETRY)]
    #[case(Poa, resp(500, ApiError), RETRY)]
    #[case(AiccCreate, resp(500, ApiError), RETRY)]
    #[case(AiccCreate, resp(502, Undocumented), RETRY)]
    #[case(AiccCreate, resp(503, Undocumented), RETRY)]
    #[case(Poa, resp(504, Undocumented), RETRY)]
    #[case(AiccList, resp(504, Undocumented), RETRY)]
    #[case(AiccCreate, resp(504, Undocumented), Verdict::Unknown)]
    // client errors
    #[case(Poa, resp(400, ApiError), Verdict::Reject)]
    #[case(Poa, resp(404, Undocumented), Verdict::Reject)]
    #[case(AiccCreate, resp(400, ApiError), Verdict::Reject)]
    #[case(AiccCreate, resp(422, Undocumented), Verdict::Reject)]
    // oddities
    #[case(Poa, resp(302, Undocumented), RETRY)]
    fn classification_table(#[case] call: Call, #[case] observed: Observed, #[case] expected: Verdict) {
        assert_eq!(classify(call, observed), expected);
    }

    #[rstest]
    #[case(2003, ItemVerdict::Done)]
    #[case(400, ItemVerdict::Reject)]
    #[case(404, ItemVerdict::Reject)]
    #[case(500, ItemVerdict::Retry)]
    #[case(2004, ItemVerdict::Retry)]
    #[case(2008, ItemVerdict::Retry)]
    #[case(2009, ItemVerdict::Retry)]
    #[case(-1, ItemVerdict::Retry)]
    fn poa_item_codes(#[case] code: i64, #[case] expected: ItemVerdict) {
        assert_eq!(classify_poa_item(code), expected);
    }

    #[rstest]
    #[case(429)]
    #[case(503)]
    #[case(408)]
    fn retry_after_is_passed_on(#[case] status: u16) {
        let observed = Observed::Response {
            status,
            body: Undocumented,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            classify(Call::AiccCreate, observed),
            Verdict::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    fn cfg(max_attempts: u32, max_elapsed_ms: u64) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_backoff_ms: 100,
            max_backoff_ms: 400,
            max_elapsed_ms,
            jitter: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budget_counts_attempts_and_doubles_up_to_the_ceiling() {
        let mut b = Budget::new(&cfg(5, 60_000));
        // backon computes in f32: compare whole milliseconds.
        let delays: Vec<u128> = std::iter::from_fn(|| b.next_delay(None))
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 400]);
        assert_eq!(b.attempts(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn budget_honours_retry_after_and_total_time() {
        let mut b = Budget::new(&cfg(10, 1_000));
        assert_eq!(
            b.next_delay(Some(Duration::from_millis(700))),
            Some(Duration::from_millis(700))
        );
        tokio::time::advance(Duration::from_millis(700)).await;
        // 700 ms spent; 200 ms of backoff still fits, a 400 ms Retry-After does not.
        assert_eq!(b.next_delay(Some(Duration::from_millis(400))), None);
    }
}
