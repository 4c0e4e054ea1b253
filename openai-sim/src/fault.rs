//! Injected faults: what can go wrong ([`Fault`]), where ([`SimStage`]), and the per-stage FIFO
//! queues the request handlers take them from.
//!
//! # Who takes a fault
//!
//! * **Chat, Speech**: the next request that passes authentication and validation takes the
//!   fault at the front of its stage's queue (a malformed request answered 400 takes none).
//! * **Realtime**: a connection fault ([`Fault::Http`], [`Fault::RawHttp`],
//!   [`Fault::ErrorAfterUpgrade`]) is taken by the next connection attempt (after the auth
//!   check): the first two refuse its upgrade, the last accepts it and then refuses the
//!   session. In a transcription session every other fault is taken by the next *turn*: a turn
//!   opens with the first audio appended after the previous commit (or at connect), and if it
//!   holds no fault when it is committed it tries again then. `after: N` counts the server
//!   events of that turn (`speech_started`, `speech_stopped`, `committed`, item events, deltas,
//!   `completed`) sent after the fault was taken, so `Drop { after: 0 }` taken at the first
//!   append drops the socket while the user is still speaking.
//! * **Realtime conversation sessions** (`?model=…`, see `conversation`) route the other
//!   faults by kind, each to the part of the session it concerns:
//!   [`Fault::DropAfterAudio`] is taken by the user turn at its first append,
//!   [`Fault::TranscriptionFailed`] by the input transcription of a committed turn (only
//!   while `audio.input.transcription` is on), and every other one ([`Fault::MidStreamError`],
//!   [`Fault::Drop`], [`Fault::Stall`], [`Fault::Freeze`]) by the next *response* when it
//!   starts. There `after: N` counts that response's server events, from `response.created`
//!   on.
//!
//! A fault that does not apply to a stage ([`Fault::TranscriptionFailed`],
//! [`Fault::Freeze`] or [`Fault::ErrorAfterUpgrade`] on Chat or Speech) acts like
//! [`Fault::server_error`].
//!
//! The JSON form (serde, used by the control surface) is tagged by `kind` in snake case:
//! `{"kind":"drop","after":3}`, `{"kind":"http","status":429,"error_type":"requests",
//! "message":"..."}`, `{"kind":"transcription_failed"}`; stages are `"realtime"`, `"chat"`,
//! `"speech"`.

use std::collections::VecDeque;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// Close code of a Realtime session the service refuses after the upgrade: the only one seen
/// from it, for the beta shape (docs/openai-wire.md §1.8).
pub(crate) const CLOSE_SESSION_REJECTED: u16 = 4000;

/// One of the four simulated APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimStage {
    /// `GET /v1/realtime` (transcription WebSocket, §1, and conversations, §6).
    Realtime,
    /// `POST /v1/chat/completions` (§2).
    Chat,
    /// `POST /v1/audio/speech` (§3).
    Speech,
    /// `POST /v1/audio/transcriptions` (§5).
    Transcription,
}

/// A failure to inject with [`Simulator::inject`](super::Simulator::inject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this HTTP status and OpenAI error body instead of working (Realtime: reject
    /// the WebSocket upgrade).
    Http {
        /// HTTP status, e.g. 429.
        status: u16,
        /// The error envelope's `type`, e.g. `"requests"` or `"insufficient_quota"`.
        error_type: String,
        /// The error envelope's `code`, e.g. `Some("rate_limit_exceeded")`.
        code: Option<String>,
        /// The error envelope's `message`.
        message: String,
        /// Sent as `retry-after-ms` and `retry-after` headers.
        retry_after_ms: Option<u64>,
    },
    /// Chat: `data: {"error":{...}}` (type `server_error`) after `after` SSE events, then the
    /// body ends without `[DONE]`. Realtime: an `error` event (`server_error`) after `after`
    /// events of the turn, which then sends nothing more; the session stays open (in a
    /// conversation the response then ends with a `response.done` of status `failed`). Speech
    /// (raw audio has no error framing): the body is aborted after `after` bytes.
    MidStreamError {
        /// SSE events, Realtime turn events, or speech bytes sent first.
        after: usize,
    },
    /// Close the connection abruptly (no `[DONE]`, no WebSocket close frame, an unterminated
    /// chunked body) after `after` SSE events, turn events or speech bytes.
    Drop {
        /// SSE events, Realtime turn events, or speech bytes sent first.
        after: usize,
    },
    /// Stop sending after `after` SSE events, turn events or speech bytes, but keep the
    /// connection open until the client gives up. With `after: 0` on Chat or Speech not even
    /// the response headers arrive.
    Stall {
        /// SSE events, Realtime turn events, or speech bytes sent first.
        after: usize,
    },
    /// Realtime: the turn gets `conversation.item.input_audio_transcription.failed` instead of
    /// deltas and `completed`.
    TranscriptionFailed,
    /// Realtime: from this turn on the connection is dead without being closed, as a
    /// half-open TCP connection: nothing more is read (so pings go unanswered) or sent.
    Freeze,
    /// Realtime: the connection drops abruptly (no close frame) once the turn has appended
    /// `bytes` of audio, before it is committed: a network failure mid-utterance. Chat and
    /// Speech: [`Fault::server_error`].
    DropAfterAudio {
        /// PCM bytes of the turn received first.
        bytes: usize,
    },
    /// Answer with this status and a body that is not OpenAI's JSON, as a load balancer or
    /// proxy in front of the service does: an HTML error page, an empty body, plain text. No
    /// OpenAI headers. Realtime: refuse the upgrade with it.
    RawHttp {
        /// HTTP status, e.g. 502.
        status: u16,
        /// The `Content-Type` header; `None` sends none.
        #[serde(default)]
        content_type: Option<String>,
        /// The body, sent as is (may be empty).
        #[serde(default)]
        body: String,
    },
    /// Realtime: accept the upgrade, then send one `error` event instead of `session.created`
    /// and close with `close_code` (a session the service refuses, §1.1, §4.3). Chat and
    /// Speech: [`Fault::server_error`].
    ErrorAfterUpgrade {
        /// The error's `type`, e.g. `"invalid_request_error"`.
        error_type: String,
        /// The error's `code`, e.g. `Some("model_not_found")`.
        #[serde(default)]
        code: Option<String>,
        /// The error's `message`.
        message: String,
        /// The WebSocket close code (4000 if left out of the JSON form).
        #[serde(default = "default_close_code")]
        close_code: u16,
    },
}

fn default_close_code() -> u16 {
    CLOSE_SESSION_REJECTED
}

/// A 502 page as a CDN in front of an API sends it.
const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n\
    </html>\r\n";
/// The plain-text 503 an Envoy proxy sends when its upstream went away.
const UPSTREAM_RESET_TEXT: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

impl Fault {
    /// Any HTTP error.
    pub fn http(
        status: u16,
        error_type: impl Into<String>,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self::Http {
            status,
            error_type: error_type.into(),
            code: code.map(str::to_owned),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request() -> Self {
        Self::http(
            400,
            "invalid_request_error",
            None,
            "Invalid request (injected by the simulator).",
        )
    }

    /// 401 `invalid_api_key`, as for a revoked key.
    pub fn unauthorized() -> Self {
        Self::http(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided: sk-****************************sim1. You can find your \
             API key at https://platform.openai.com/account/api-keys.",
        )
    }

    /// 429 `rate_limit_exceeded` (type `requests`, as the service sends), with
    /// `retry-after-ms: 250` and `retry-after: 1`: retry with backoff.
    pub fn rate_limited() -> Self {
        Self::Http {
            status: 429,
            error_type: "requests".into(),
            code: Some("rate_limit_exceeded".into()),
            message: "Rate limit reached for requests per min (RPM): Limit 500, Used 500, \
                      Requested 1. Please try again in 250ms. Visit \
                      https://platform.openai.com/account/rate-limits to learn more."
                .into(),
            retry_after_ms: Some(250),
        }
    }

    /// 429 with type and code `insufficient_quota`: billing, do not retry.
    pub fn insufficient_quota() -> Self {
        Self::http(
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
            "You exceeded your current quota, please check your plan and billing details. For \
             more information on this error, read the docs: \
             https://platform.openai.com/docs/guides/error-codes/api-errors.",
        )
    }

    /// 500 `server_error`.
    pub fn server_error() -> Self {
        Self::http(
            500,
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that!",
        )
    }

    /// 429 `rate_limit_exceeded` like [`Fault::rate_limited`] but without `retry-after-ms`,
    /// `retry-after` or `x-ratelimit-reset-*` headers: the client must pick its own backoff.
    pub fn rate_limited_without_retry_headers() -> Self {
        match Self::rate_limited() {
            Self::Http {
                status,
                error_type,
                code,
                message,
                ..
            } => Self::Http {
                status,
                error_type,
                code,
                message,
                retry_after_ms: None,
            },
            other => other,
        }
    }

    /// Any status with a body that is not OpenAI's JSON.
    pub fn raw_http(status: u16, content_type: Option<&str>, body: impl Into<String>) -> Self {
        Self::RawHttp {
            status,
            content_type: content_type.map(str::to_owned),
            body: body.into(),
        }
    }

    /// 502 with a CDN's HTML error page (`text/html`).
    pub fn bad_gateway_html() -> Self {
        Self::raw_http(502, Some("text/html"), BAD_GATEWAY_HTML)
    }

    /// `status` with an empty body and no `Content-Type`.
    pub fn empty_body(status: u16) -> Self {
        Self::raw_http(status, None, "")
    }

    /// `status` with a `text/plain` body.
    pub fn plain_text(status: u16, body: impl Into<String>) -> Self {
        Self::raw_http(status, Some("text/plain; charset=utf-8"), body)
    }

    /// 503 with an Envoy proxy's plain-text "upstream connect error" body.
    pub fn upstream_reset_text() -> Self {
        Self::plain_text(503, UPSTREAM_RESET_TEXT)
    }

    /// Realtime: upgrade, then one `error` event with this type, code and message, then a
    /// close with code 4000.
    pub fn error_after_upgrade(
        error_type: impl Into<String>,
        code: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self::ErrorAfterUpgrade {
            error_type: error_type.into(),
            code: code.map(str::to_owned),
            message: message.into(),
            close_code: CLOSE_SESSION_REJECTED,
        }
    }

    /// A zero-argument constructor by name (`"rate_limited"`, `"bad_gateway_html"`, ...), for
    /// the control surface's `preset`.
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "bad_request" => Self::bad_request(),
            "unauthorized" => Self::unauthorized(),
            "rate_limited" => Self::rate_limited(),
            "rate_limited_without_retry_headers" => Self::rate_limited_without_retry_headers(),
            "insufficient_quota" => Self::insufficient_quota(),
            "server_error" => Self::server_error(),
            "overloaded" => Self::overloaded(),
            "bad_gateway_html" => Self::bad_gateway_html(),
            "upstream_reset_text" => Self::upstream_reset_text(),
            "transcription_failed" => Self::TranscriptionFailed,
            "freeze" => Self::Freeze,
            _ => return None,
        })
    }

    /// The names [`Fault::preset`] knows.
    pub const PRESETS: &'static [&'static str] = &[
        "bad_request",
        "unauthorized",
        "rate_limited",
        "rate_limited_without_retry_headers",
        "insufficient_quota",
        "server_error",
        "overloaded",
        "bad_gateway_html",
        "upstream_reset_text",
        "transcription_failed",
        "freeze",
    ];

    /// Taken by a Realtime connection attempt rather than by a turn.
    pub(crate) fn is_connection_fault(&self) -> bool {
        matches!(
            self,
            Self::Http { .. } | Self::RawHttp { .. } | Self::ErrorAfterUpgrade { .. }
        )
    }

    /// 503 "The engine is currently overloaded".
    pub fn overloaded() -> Self {
        Self::http(
            503,
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.",
        )
    }

    /// The OpenAI error this fault answers an HTTP request with, if it is an HTTP-level fault
    /// with a JSON body. [`Fault::TranscriptionFailed`], [`Fault::Freeze`] and
    /// [`Fault::ErrorAfterUpgrade`] on an HTTP stage are a 500; [`Fault::RawHttp`] has no
    /// OpenAI error (see `http::fault_response`).
    pub(crate) fn http_error(&self) -> Option<ApiError> {
        match self {
            Self::Http {
                status,
                error_type,
                code,
                message,
                retry_after_ms,
            } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut error =
                    ApiError::new(status, error_type, message.clone()).with_code(code.as_deref());
                error.retry_after_ms = *retry_after_ms;
                Some(error)
            }
            Self::TranscriptionFailed
            | Self::Freeze
            | Self::DropAfterAudio { .. }
            | Self::ErrorAfterUpgrade { .. } => Self::server_error().http_error(),
            Self::MidStreamError { .. }
            | Self::Drop { .. }
            | Self::Stall { .. }
            | Self::RawHttp { .. } => None,
        }
    }

    /// The `server_error` sent mid-stream (chat SSE payload, Realtime `error` event).
    pub(crate) fn mid_stream_error() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        )
    }
}

/// Which Realtime consumer is asking: a connection takes connection faults, a turn the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taker {
    /// A Chat or Speech request: takes whatever is at the front.
    Request,
    /// A Realtime connection attempt: takes the first connection fault
    /// ([`Fault::is_connection_fault`]).
    Connection,
    /// A Realtime turn: takes the first fault that is not a connection fault.
    Turn,
    /// A conversation's user turn, at its first append: takes only
    /// [`Fault::DropAfterAudio`].
    InputAudio,
    /// A conversation's input transcription of a committed turn: takes only
    /// [`Fault::TranscriptionFailed`].
    InputTranscription,
    /// A conversation response, when it starts: takes the first fault that none of the
    /// others takes ([`Fault::MidStreamError`], [`Fault::Drop`], [`Fault::Stall`],
    /// [`Fault::Freeze`]).
    Response,
}

/// The three FIFO queues.
#[derive(Debug, Default)]
pub(crate) struct FaultQueues {
    realtime: VecDeque<Fault>,
    chat: VecDeque<Fault>,
    speech: VecDeque<Fault>,
    transcription: VecDeque<Fault>,
}

impl FaultQueues {
    pub(crate) fn push(&mut self, stage: SimStage, fault: Fault) {
        self.queue(stage).push_back(fault);
    }

    pub(crate) fn take(&mut self, stage: SimStage, taker: Taker) -> Option<Fault> {
        let queue = self.queue(stage);
        let index = queue.iter().position(|fault| match taker {
            Taker::Request => true,
            Taker::Connection => fault.is_connection_fault(),
            Taker::Turn => !fault.is_connection_fault(),
            Taker::InputAudio => matches!(fault, Fault::DropAfterAudio { .. }),
            Taker::InputTranscription => *fault == Fault::TranscriptionFailed,
            Taker::Response => {
                !fault.is_connection_fault()
                    && !matches!(
                        fault,
                        Fault::DropAfterAudio { .. } | Fault::TranscriptionFailed
                    )
            }
        })?;
        queue.remove(index)
    }

    /// The faults queued for `stage`, in order.
    pub(crate) fn pending(&self, stage: SimStage) -> &VecDeque<Fault> {
        match stage {
            SimStage::Realtime => &self.realtime,
            SimStage::Chat => &self.chat,
            SimStage::Speech => &self.speech,
            SimStage::Transcription => &self.transcription,
        }
    }

    fn queue(&mut self, stage: SimStage) -> &mut VecDeque<Fault> {
        match stage {
            SimStage::Realtime => &mut self.realtime,
            SimStage::Chat => &mut self.chat,
            SimStage::Speech => &mut self.speech,
            SimStage::Transcription => &mut self.transcription,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_connections_and_turns_take_their_own_kind() {
        let mut queues = FaultQueues::default();
        queues.push(SimStage::Realtime, Fault::TranscriptionFailed);
        queues.push(SimStage::Realtime, Fault::server_error());
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::Connection),
            Some(Fault::server_error())
        );
        assert_eq!(queues.take(SimStage::Realtime, Taker::Connection), None);
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::Turn),
            Some(Fault::TranscriptionFailed)
        );
        assert_eq!(queues.take(SimStage::Chat, Taker::Request), None);
    }

    #[test]
    fn conversation_parts_take_the_faults_that_concern_them() {
        let mut queues = FaultQueues::default();
        queues.push(SimStage::Realtime, Fault::TranscriptionFailed);
        queues.push(SimStage::Realtime, Fault::DropAfterAudio { bytes: 10 });
        queues.push(SimStage::Realtime, Fault::Stall { after: 1 });
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::Response),
            Some(Fault::Stall { after: 1 })
        );
        assert_eq!(queues.take(SimStage::Realtime, Taker::Response), None);
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::InputAudio),
            Some(Fault::DropAfterAudio { bytes: 10 })
        );
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::InputTranscription),
            Some(Fault::TranscriptionFailed)
        );
    }

    #[test]
    fn http_faults_carry_status_type_code_and_retry_hint() {
        let error = Fault::rate_limited().http_error().expect("an HTTP fault");
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.code.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(error.retry_after_ms, Some(250));
        let quota = Fault::insufficient_quota()
            .http_error()
            .expect("an HTTP fault");
        assert_eq!(quota.kind, "insufficient_quota");
        assert!(Fault::Drop { after: 1 }.http_error().is_none());
        let bare = Fault::rate_limited_without_retry_headers()
            .http_error()
            .expect("an HTTP fault");
        assert_eq!(bare.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(bare.retry_after_ms, None);
    }

    #[test]
    fn json_form_is_tagged_by_kind() {
        let fault: Fault = serde_json::from_str(r#"{"kind":"drop","after":3}"#).expect("valid");
        assert_eq!(fault, Fault::Drop { after: 3 });
        let fault: Fault = serde_json::from_str(
            r#"{"kind":"http","status":429,"error_type":"requests","message":"slow down"}"#,
        )
        .expect("valid");
        assert_eq!(
            fault,
            Fault::http(429, "requests", None, "slow down"),
            "optional fields default to None"
        );
        let fault: Fault = serde_json::from_str(
            r#"{"kind":"error_after_upgrade","error_type":"server_error","message":"no"}"#,
        )
        .expect("valid");
        assert!(matches!(
            fault,
            Fault::ErrorAfterUpgrade {
                close_code: 4000,
                ..
            }
        ));
        assert_eq!(
            serde_json::to_value(Fault::TranscriptionFailed).expect("serializable"),
            serde_json::json!({"kind": "transcription_failed"})
        );
        for name in Fault::PRESETS {
            let preset = Fault::preset(name).expect("every listed preset exists");
            let json = serde_json::to_string(&preset).expect("serializable");
            assert_eq!(
                serde_json::from_str::<Fault>(&json).expect("round trip"),
                preset
            );
        }
    }

    #[test]
    fn connection_faults_are_taken_by_connections() {
        let mut queues = FaultQueues::default();
        queues.push(SimStage::Realtime, Fault::Drop { after: 0 });
        queues.push(SimStage::Realtime, Fault::bad_gateway_html());
        queues.push(
            SimStage::Realtime,
            Fault::error_after_upgrade("server_error", None, "no"),
        );
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::Connection),
            Some(Fault::bad_gateway_html())
        );
        assert!(matches!(
            queues.take(SimStage::Realtime, Taker::Connection),
            Some(Fault::ErrorAfterUpgrade { .. })
        ));
        assert_eq!(
            queues.take(SimStage::Realtime, Taker::Turn),
            Some(Fault::Drop { after: 0 })
        );
    }
}
