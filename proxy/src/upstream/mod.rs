//! Clients of the three upstream services, and what they share: error classification and the
//! retry policy.
//!
//! * [`realtime`] — the transcriber: one Realtime transcription WebSocket per session, or
//!   (`file`) one upload per turn to `POST /audio/transcriptions`.
//! * [`chat`] — the responder: Chat Completions, streamed.
//! * [`speech`] — the synthesizer: the Speech API, streamed PCM.
//! * [`conversation`] — the speech-to-speech pipeline's one upstream: a Realtime
//!   conversation WebSocket per session, sharing the transcriber's socket code.
//! * [`warm`] — opens the LLM and speech connections when a user starts speaking.
//!
//! The session talks to these three roles, never to raw HTTP, so another provider or pipeline
//! can stand in for any of them.

pub mod chat;
pub mod conversation;
pub(crate) mod file;
pub mod realtime;
pub mod speech;
pub mod speech_format;
pub(crate) mod sse;
pub mod warm;

use std::time::Duration;

use protocol::{ErrorCode, ErrorEvent, Stage};
use rand::Rng;

use crate::config::{Endpoints, Secret};

/// How long a started stream may go without a single byte before it counts as stalled. OpenAI
/// streams tokens and audio continuously once started; a long gap means a hung connection.
pub const UPSTREAM_STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Retries after the first attempt, as OpenAI's own SDKs do by default.
pub const MAX_RETRIES: u32 = 2;

/// First backoff delay; doubled each retry (OpenAI SDK values).
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);

/// Longest backoff delay (OpenAI SDK value).
const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// A server that asks for a longer wait than this is not retried at all: the user would hang up
/// first (OpenAI SDKs use the same 2-minute bound).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Everything the three upstream clients need, shared by all sessions.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Where to send requests.
    pub endpoints: Endpoints,
    /// Credentials; `None` only against a server that needs none.
    pub api_key: Option<Secret>,
    /// Transcription model.
    pub stt_model: String,
    /// Transcription language hint.
    pub stt_language: Option<String>,
    /// Chat model.
    pub llm_model: String,
    /// Answer length bound.
    pub llm_max_completion_tokens: u32,
    /// Speech model.
    pub tts_model: String,
    /// Speech voice.
    pub tts_voice: String,
    /// Speech style instructions.
    pub tts_instructions: Option<String>,
    /// The container the speech server answers in.
    pub tts_format: speech_format::TtsFormat,
    /// The rate of a `pcm` speech reply.
    pub tts_sample_rate_hz: u32,
    /// Speech-to-speech model.
    pub realtime_model: String,
    /// Speech-to-speech voice.
    pub realtime_voice: String,
    /// How long a started stream may stay silent before it counts as stalled
    /// ([`UPSTREAM_STALL_TIMEOUT`] unless a test shortens it).
    pub stall_timeout: Duration,
    /// How long one attempt may take to connect and get its first byte (the response headers,
    /// or the Realtime handshake).
    pub response_timeout: Duration,
    /// How long all attempts of one request and the backoff between them may take together.
    pub retry_budget: Duration,
    /// Where retries are counted.
    pub(crate) metrics: crate::observability::Metrics,
}

#[cfg(test)]
impl UpstreamConfig {
    /// A configuration for unit tests: endpoints nobody answers on, no key, one-second
    /// timeouts.
    pub(crate) fn for_tests() -> Self {
        Self {
            endpoints: Endpoints::from_base("http://127.0.0.1:1/v1").expect("a valid base URL"),
            api_key: None,
            stt_model: "gpt-4o-mini-transcribe".into(),
            stt_language: Some("en".into()),
            llm_model: "m".into(),
            llm_max_completion_tokens: 10,
            tts_model: "t".into(),
            tts_voice: "v".into(),
            tts_instructions: None,
            tts_format: speech_format::TtsFormat::Pcm,
            tts_sample_rate_hz: 24_000,
            realtime_model: "gpt-realtime".into(),
            realtime_voice: "marin".into(),
            stall_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            retry_budget: Duration::from_secs(2),
            metrics: crate::observability::Metrics::new(),
        }
    }
}

/// The kind of an upstream HTTP error, read from the status and OpenAI's error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// 400, 404, 422: the request is wrong.
    BadRequest,
    /// 401, 403: credentials or permissions.
    Auth,
    /// 429 rate limit: try again later.
    RateLimited,
    /// 429 out of quota or credit: trying again does not help.
    QuotaExceeded,
    /// 408, 409: transient conflicts the SDKs retry.
    Transient,
    /// 5xx.
    Server,
    /// Anything else.
    Other,
}

/// A failure talking to an upstream service.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// The service answered with an error status.
    #[error("HTTP {status} ({kind:?}): {message}")]
    Http {
        /// The status code.
        status: u16,
        /// What it means.
        kind: HttpErrorKind,
        /// OpenAI's `error.message`, for the log only.
        message: String,
        /// How long the server asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The service could not be reached.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No answer, or no progress, within the deadline.
    #[error("timed out")]
    Timeout,
    /// The service reported an error inside a stream that had started.
    #[error("error mid-stream: {message}")]
    MidStream {
        /// OpenAI's `error.code`, if any.
        code: Option<String>,
        /// OpenAI's `error.message`, for the log only.
        message: String,
    },
    /// The stream ended without its end marker (connection dropped or body cut).
    #[error("stream ended before it was complete")]
    Truncated,
    /// The service sent something we cannot read.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl UpstreamError {
    /// Whether the same request may succeed if sent again (before anything reached the user).
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Http { kind, .. } => matches!(
                kind,
                HttpErrorKind::RateLimited | HttpErrorKind::Server | HttpErrorKind::Transient
            ),
            UpstreamError::Connect(_) | UpstreamError::Timeout => true,
            UpstreamError::MidStream { .. }
            | UpstreamError::Truncated
            | UpstreamError::Malformed(_) => false,
        }
    }

    /// The stable code the browser sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            UpstreamError::Http { kind, .. } => match kind {
                HttpErrorKind::BadRequest => ErrorCode::UpstreamBadRequest,
                HttpErrorKind::Auth => ErrorCode::UpstreamAuth,
                HttpErrorKind::RateLimited => ErrorCode::RateLimited,
                HttpErrorKind::QuotaExceeded => ErrorCode::InsufficientQuota,
                HttpErrorKind::Transient | HttpErrorKind::Server | HttpErrorKind::Other => {
                    ErrorCode::UpstreamUnavailable
                }
            },
            UpstreamError::Connect(_) => ErrorCode::UpstreamUnavailable,
            UpstreamError::Timeout => ErrorCode::UpstreamTimeout,
            UpstreamError::MidStream { .. } | UpstreamError::Truncated => {
                ErrorCode::StreamInterrupted
            }
            UpstreamError::Malformed(_) => ErrorCode::UpstreamUnavailable,
        }
    }

    /// The event for the browser: our own wording, never the upstream's message (which can
    /// quote request details).
    pub fn to_event(&self, stage: Stage) -> ErrorEvent {
        let service = match stage {
            Stage::Stt => "speech recognition",
            Stage::Llm => "language model",
            Stage::Tts => "speech synthesis",
            Stage::Proxy => "voice proxy",
        };
        let code = self.code();
        let message = match code {
            ErrorCode::UpstreamAuth => {
                format!("The {service} service rejected the server's credentials.")
            }
            ErrorCode::UpstreamBadRequest => {
                format!(
                    "The {service} service rejected the request; check the server configuration."
                )
            }
            ErrorCode::RateLimited => {
                format!("The {service} service is rate limited; try again shortly.")
            }
            ErrorCode::InsufficientQuota => {
                format!("The {service} account has run out of quota or credit.")
            }
            ErrorCode::UpstreamTimeout => format!("The {service} service did not answer in time."),
            ErrorCode::StreamInterrupted => format!("The {service} stream broke off."),
            _ => format!("The {service} service is unavailable right now."),
        };
        let retryable = self.is_retryable() || matches!(code, ErrorCode::StreamInterrupted);
        ErrorEvent::new(stage, code, message, retryable)
    }
}

/// Classifies an error status and its body: OpenAI's JSON envelope
/// (`{"error":{"message","type","param","code"}}`, `docs/openai-wire.md` §2.3 and §4.1), and
/// the shapes OpenAI-compatible servers use instead (`{"error":"…"}`, FastAPI's
/// `{"detail":"…"}` or `{"detail":[{…,"msg":"…"}]}`, §7), else the first bytes of the body.
pub fn classify_http_error(
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> UpstreamError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (error_type, error_code) = (field("type"), field("code"));
    let other_shapes = || {
        let detail = parsed.as_ref().and_then(|v| v.get("detail"));
        error
            .and_then(serde_json::Value::as_str)
            .or_else(|| detail.and_then(serde_json::Value::as_str))
            .or_else(|| {
                detail
                    .and_then(serde_json::Value::as_array)
                    .and_then(|items| items.first())
                    .and_then(|item| item.get("msg"))
                    .and_then(serde_json::Value::as_str)
            })
            .map(str::to_owned)
    };
    let message = match field("message") {
        m if m.is_empty() => other_shapes()
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
        m => m,
    };
    let kind = match status {
        429 if is_quota_error(&error_type) || is_quota_error(&error_code) => {
            HttpErrorKind::QuotaExceeded
        }
        429 => HttpErrorKind::RateLimited,
        401 | 403 => HttpErrorKind::Auth,
        400 | 404 | 422 => HttpErrorKind::BadRequest,
        408 | 409 => HttpErrorKind::Transient,
        500..=599 => HttpErrorKind::Server,
        _ => HttpErrorKind::Other,
    };
    UpstreamError::Http {
        status,
        kind,
        message,
        retry_after,
    }
}

/// OpenAI's billing and quota codes, which a retry cannot fix.
fn is_quota_error(type_or_code: &str) -> bool {
    type_or_code == "insufficient_quota"
        || type_or_code == "credit_balance_exhausted"
        || type_or_code.contains("spend_limit")
        || type_or_code.contains("billing")
}

/// Seconds since the Unix epoch: the unit of the upstream's timestamps (`expires_at`).
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Reads how long the server wants us to wait: `retry-after-ms`, then `retry-after` in seconds
/// (OpenAI SDK order).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
}

/// The delay before retry number `retry` (0-based), or `None` when the error must not be
/// retried or the retries are used up.
pub fn retry_delay(error: &UpstreamError, retry: u32, rng: &mut impl Rng) -> Option<Duration> {
    if retry >= MAX_RETRIES || !error.is_retryable() {
        return None;
    }
    if let UpstreamError::Http {
        retry_after: Some(asked),
        ..
    } = error
    {
        return (*asked <= MAX_RETRY_AFTER).then_some(*asked);
    }
    let exponential = BACKOFF_INITIAL.saturating_mul(1 << retry).min(BACKOFF_MAX);
    // Jitter in [0.75, 1] spreads the retries of many sessions hit by one outage.
    Some(exponential.mul_f64(rng.random_range(0.75..=1.0)))
}

/// How long the shared HTTP client keeps an idle connection (reqwest's default, made
/// explicit): long enough to span a user's thinking pause between turns.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds the shared HTTP client: HTTP/1.1 and HTTP/2 with a connection pool, so the pipelined
/// TTS requests of one answer reuse warm connections. `connect_timeout` bounds the TCP and TLS
/// handshake of each attempt.
pub fn http_client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .expect("the TLS backend initializes")
}

/// Adds the bearer token, marked sensitive so no middleware ever logs it.
pub fn authorize(
    request: reqwest::RequestBuilder,
    key: Option<&Secret>,
) -> reqwest::RequestBuilder {
    match key {
        Some(key) => {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .expect("API keys are printable ASCII");
            value.set_sensitive(true);
            request.header(reqwest::header::AUTHORIZATION, value)
        }
        None => request,
    }
}

/// Runs `attempt` until it succeeds, retrying transient failures with jittered backoff (see
/// [`retry_delay`]), each attempt within `config.response_timeout` and all of them within
/// `config.retry_budget`: a silent upstream is reported within seconds. Callers use it only
/// before anything reached the user, so a retry cannot duplicate anything.
///
/// `what` names the attempt in the log, and its stage in the retry count: the Realtime
/// sockets' connects ("transcription connect", "conversation connect"; the speech-to-speech
/// model counts as the language model, as its errors do).
pub async fn with_retry<T, F, Fut>(
    what: &str,
    config: &UpstreamConfig,
    attempt: F,
) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamError>>,
{
    let stage = if what.starts_with("conversation") {
        Stage::Llm
    } else {
        Stage::Stt
    };
    retrying(stage, what, config, attempt).await
}

/// [`with_retry`] for a request serving `stage`, counted under it.
async fn retrying<T, F, Fut>(
    stage: Stage,
    what: &str,
    config: &UpstreamConfig,
    mut attempt: F,
) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamError>>,
{
    let deadline = tokio::time::Instant::now() + config.retry_budget;
    let mut retry = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match tokio::time::timeout(left.min(config.response_timeout), attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error,
            Err(_) => UpstreamError::Timeout,
        };
        let Some(delay) = retry_delay(&error, retry, &mut rand::rng()) else {
            return Err(error);
        };
        // A retry that could not finish within the budget only delays the error.
        if tokio::time::Instant::now() + delay >= deadline {
            return Err(error);
        }
        tracing::warn!(%error, retry, delay_ms = delay.as_millis() as u64, "{what} failed; retrying");
        config.metrics.upstream_retry(stage);
        tokio::time::sleep(delay).await;
        retry += 1;
    }
}

/// Sends a request for `stage` and returns the response once its status is a success,
/// retrying transient failures within the budget of `config`.
pub async fn send_with_retry(
    stage: Stage,
    config: &UpstreamConfig,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, UpstreamError> {
    let timeout = config.response_timeout;
    let what = match stage {
        Stage::Stt => "transcription request",
        Stage::Llm => "chat request",
        Stage::Tts => "speech request",
        Stage::Proxy => "upstream request",
    };
    retrying(stage, what, config, || async {
        match tokio::time::timeout(timeout, build().send()).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(e)) => Err(UpstreamError::Connect(transport_error_text(e))),
            Ok(Ok(response)) if response.status().is_success() => Ok(response),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                let retry_after = parse_retry_after(response.headers());
                let body = tokio::time::timeout(timeout, response.bytes())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                Err(classify_http_error(status, &body, retry_after))
            }
        }
    })
    .await
}

/// A transport error's text without the URL (which is configuration, not a secret, but noise).
fn transport_error_text(error: reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connect"
    } else if error.is_timeout() {
        "timeout"
    } else {
        "request"
    };
    format!("{kind} error: {}", error.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn body(error_type: &str, code: &str) -> Vec<u8> {
        serde_json::json!({"error": {"message": "m", "type": error_type, "param": null, "code": code}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn statuses_are_classified_as_openai_documents() {
        let cases = [
            (
                400,
                "invalid_request_error",
                "",
                HttpErrorKind::BadRequest,
                false,
            ),
            (
                401,
                "invalid_request_error",
                "invalid_api_key",
                HttpErrorKind::Auth,
                false,
            ),
            (403, "", "unsupported_country", HttpErrorKind::Auth, false),
            (
                429,
                "requests",
                "rate_limit_exceeded",
                HttpErrorKind::RateLimited,
                true,
            ),
            (
                429,
                "insufficient_quota",
                "insufficient_quota",
                HttpErrorKind::QuotaExceeded,
                false,
            ),
            (
                429,
                "",
                "credit_balance_exhausted",
                HttpErrorKind::QuotaExceeded,
                false,
            ),
            (500, "server_error", "", HttpErrorKind::Server, true),
            (503, "", "", HttpErrorKind::Server, true),
        ];
        for (status, error_type, code, kind, retryable) in cases {
            let error = classify_http_error(status, &body(error_type, code), None);
            assert!(
                matches!(error, UpstreamError::Http { kind: k, .. } if k == kind),
                "{status} {code}: {error:?}"
            );
            assert_eq!(error.is_retryable(), retryable, "{status} {code}");
        }
    }

    #[test]
    fn compatible_servers_error_shapes_are_read() {
        for (body, expected) in [
            (
                &br#"{"error":"model 'x' not found"}"#[..],
                "model 'x' not found",
            ),
            (br#"{"detail":"Not authenticated"}"#, "Not authenticated"),
            (
                br#"{"detail":[{"loc":["body","input"],"msg":"field required","type":"missing"}]}"#,
                "field required",
            ),
        ] {
            let error = classify_http_error(404, body, None);
            assert!(
                matches!(&error, UpstreamError::Http { message, kind: HttpErrorKind::BadRequest, .. } if message == expected),
                "{error:?}"
            );
        }
        let auth = classify_http_error(401, br#"{"detail":"Not authenticated"}"#, None);
        assert_eq!(auth.code(), ErrorCode::UpstreamAuth);
    }

    #[test]
    fn non_json_bodies_are_tolerated() {
        let error = classify_http_error(502, b"<html>bad gateway</html>", None);
        assert!(error.is_retryable());
        assert_eq!(error.code(), ErrorCode::UpstreamUnavailable);
    }

    #[test]
    fn backoff_is_jittered_exponential_and_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let error = UpstreamError::Connect("refused".into());
        for retry in 0..MAX_RETRIES {
            let delay = retry_delay(&error, retry, &mut rng).unwrap();
            let full = BACKOFF_INITIAL * (1 << retry);
            assert!(delay <= full && delay >= full.mul_f64(0.75), "{delay:?}");
        }
        assert_eq!(retry_delay(&error, MAX_RETRIES, &mut rng), None);
    }

    #[test]
    fn terminal_errors_are_not_retried() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for error in [
            classify_http_error(401, &body("", "invalid_api_key"), None),
            classify_http_error(400, &body("invalid_request_error", ""), None),
            classify_http_error(429, &body("insufficient_quota", "insufficient_quota"), None),
            UpstreamError::Truncated,
        ] {
            assert_eq!(retry_delay(&error, 0, &mut rng), None, "{error:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let asked = |d| classify_http_error(429, &body("", "rate_limit_exceeded"), Some(d));
        assert_eq!(
            retry_delay(&asked(Duration::from_millis(20)), 0, &mut rng),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            retry_delay(&asked(Duration::from_secs(600)), 0, &mut rng),
            None
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(150))
        );
    }

    #[test]
    fn client_events_never_quote_the_upstream() {
        let error = classify_http_error(401, &body("", "invalid_api_key"), None);
        let event = error.to_event(Stage::Llm);
        assert_eq!(event.code, ErrorCode::UpstreamAuth);
        assert!(!event.retryable);
        assert!(!event.message.contains('m') || !event.message.contains("\"m\""));
        let quota =
            classify_http_error(429, &body("insufficient_quota", "insufficient_quota"), None);
        assert_eq!(
            quota.to_event(Stage::Tts).code,
            ErrorCode::InsufficientQuota
        );
    }
}
