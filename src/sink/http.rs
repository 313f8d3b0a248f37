//! HTTP plumbing shared by the sinks: the client, what a transport error
//! means for retrying, bounded body reads, URL joining.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::RETRY_AFTER;

use super::SinkError;
use super::retry::{Observed, parse_retry_after};

/// Largest response body read; anything longer is treated as undocumented.
pub(crate) const MAX_BODY_BYTES: usize = 4 << 20;

/// A client with the sink's timeouts. Redirects are not followed: a POST
/// turned into a GET by a redirect would be a silent failure.
pub(crate) fn client(
    request_timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, SinkError> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| SinkError::Config(format!("cannot build the HTTP client: {e}")))
}

/// `base` + `path`, with exactly one slash between them.
pub(crate) fn join(base: &str, path: &str) -> Result<reqwest::Url, SinkError> {
    let joined = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
    reqwest::Url::parse(&joined).map_err(|e| SinkError::Config(format!("bad URL `{joined}`: {e}")))
}

/// What a transport error means: was the request possibly sent?
pub(crate) fn observe_error(e: &reqwest::Error) -> Observed {
    if e.is_connect() || e.is_builder() {
        // Connection refused, DNS, TLS, or connect timeout: nothing was sent.
        Observed::NotSent
    } else if e.is_timeout() {
        Observed::TimedOut
    } else {
        Observed::Broken
    }
}

/// A transport error with its cause chain, for messages.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `Retry-After` of a response.
pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Reads a body of at most [`MAX_BODY_BYTES`]; `Ok(None)` when longer.
pub(crate) async fn read_body(mut resp: reqwest::Response) -> Result<Option<Bytes>, reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// The first bytes of a body as text, for error messages.
pub(crate) fn preview(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if body.len() > MAX {
        format!("{text}…")
    } else {
        text.to_owned()
    }
}
