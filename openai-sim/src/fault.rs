//! Injected faults: what can go wrong ([`Fault`]), where ([`SimStage`]), and the per-stage FIFO
//! queues the request handlers take them from.
//!
//! # Who takes a fault
//!
//! * **Chat, Speech**: the next request that passes authentication and validation takes the
//!   fault at the front of its stage's queue (a malformed request answered 400 takes none).
//! * **Realtime**: an [`Fault::Http`] is taken by the next connection attempt (after the auth
//!   check) and rejects its upgrade. Every other fault is taken by the next *turn*: a turn
//!   opens with the first audio appended after the previous commit (or at connect), and if it
//!   holds no fault when it is committed it tries again then. `after: N` counts the server
//!   events of that turn (`speech_started`, `speech_stopped`, `committed`, item events, deltas,
//!   `completed`) sent after the fault was taken, so `Drop { after: 0 }` taken at the first
//!   append drops the socket while the user is still speaking.
//!
//! A fault that does not apply to a stage ([`Fault::TranscriptionFailed`] or [`Fault::Freeze`]
//! on Chat or Speech) acts like [`Fault::server_error`].

use std::collections::VecDeque;

use axum::http::StatusCode;

use super::error::ApiError;

/// One of the three simulated APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimStage {
    /// `GET /v1/realtime` (transcription WebSocket, openai-api.md §1).
    Realtime,
    /// `POST /v1/chat/completions` (§2).
    Chat,
    /// `POST /v1/audio/speech` (§3).
    Speech,
}

/// A failure to inject with [`Simulator::inject`](super::Simulator::inject).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// events of the turn, which then sends nothing more; the session stays open. Speech (raw
    /// audio has no error framing): the body is aborted after `after` bytes.
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
}

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

    /// 503 "The engine is currently overloaded".
    pub fn overloaded() -> Self {
        Self::http(
            503,
            "server_error",
            None,
            "The engine is currently overloaded, please try again later.",
        )
    }

    /// The error this fault answers an HTTP request with, if it is an HTTP-level fault.
    /// [`Fault::TranscriptionFailed`] and [`Fault::Freeze`] on an HTTP stage are a 500.
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
            Self::TranscriptionFailed | Self::Freeze => Self::server_error().http_error(),
            Self::MidStreamError { .. } | Self::Drop { .. } | Self::Stall { .. } => None,
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

/// Which Realtime consumer is asking: a connection takes HTTP faults, a turn the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taker {
    /// A Chat or Speech request: takes whatever is at the front.
    Request,
    /// A Realtime connection attempt: takes the first [`Fault::Http`].
    Connection,
    /// A Realtime turn: takes the first fault that is not [`Fault::Http`].
    Turn,
}

/// The three FIFO queues.
#[derive(Debug, Default)]
pub(crate) struct FaultQueues {
    realtime: VecDeque<Fault>,
    chat: VecDeque<Fault>,
    speech: VecDeque<Fault>,
}

impl FaultQueues {
    pub(crate) fn push(&mut self, stage: SimStage, fault: Fault) {
        self.queue(stage).push_back(fault);
    }

    pub(crate) fn take(&mut self, stage: SimStage, taker: Taker) -> Option<Fault> {
        let queue = self.queue(stage);
        let index = queue.iter().position(|fault| match taker {
            Taker::Request => true,
            Taker::Connection => matches!(fault, Fault::Http { .. }),
            Taker::Turn => !matches!(fault, Fault::Http { .. }),
        })?;
        queue.remove(index)
    }

    fn queue(&mut self, stage: SimStage) -> &mut VecDeque<Fault> {
        match stage {
            SimStage::Realtime => &mut self.realtime,
            SimStage::Chat => &mut self.chat,
            SimStage::Speech => &mut self.speech,
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
    }
}
