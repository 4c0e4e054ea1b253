//! The wire contract between the browser and the proxy.
//!
//! One WebSocket at `GET /ws` carries a whole conversation. Both sides use this crate: the proxy
//! natively, the client compiled to wasm. Outside tools can speak it too; this page is their spec.
//!
//! # Frames
//!
//! * **Text frames** carry one JSON object each, with a `"type"` field naming the message.
//!   Unknown fields are ignored (so either side may add optional fields); an unknown `type` is
//!   rejected with [`ProtocolError::UnknownType`].
//! * **Binary frames, browser → proxy**: raw PCM16 little-endian mono audio at
//!   [`SAMPLE_RATE_HZ`], whole samples only (an even, non-zero length of at most
//!   [`MAX_CLIENT_AUDIO_FRAME_BYTES`]). The client sends audio only while the user speaks,
//!   starting with its pre-roll. See [`validate_client_audio`].
//! * **Binary frames, proxy → browser**: a [`AUDIO_HEADER_LEN`]-byte header holding the
//!   [`ResponseId`] as a little-endian `u32`, then PCM16 LE mono 24 kHz audio, whole samples.
//!   The header keeps the samples 2-byte aligned. See [`encode_audio_frame`] and
//!   [`decode_audio_frame`].
//!
//! # A session
//!
//! 1. The proxy accepts the upgrade and sends [`ServerMessage::SessionReady`], which announces
//!    [`PROTOCOL_VERSION`], the audio format, the turn-detection mode and whether the proxy runs
//!    on the OpenAI simulator.
//! 2. The client streams speech: [`ClientMessage::SpeechStarted`], binary audio frames, then
//!    [`ClientMessage::SpeechStopped`] at the end of the turn. (With server-side turn detection
//!    the proxy detects the turn itself and reports [`ServerMessage::SpeechStarted`] /
//!    [`ServerMessage::SpeechStopped`]; the client still sends audio only while its own VAD
//!    hears speech, and may send the start/stop messages, which are then advisory.)
//! 3. The proxy streams the transcript ([`ServerMessage::TranscriptDelta`], then
//!    [`ServerMessage::TranscriptFinal`]), then the answer: [`ServerMessage::ResponseStarted`],
//!    text deltas, binary audio frames tagged with the response id, and
//!    [`ServerMessage::ResponseDone`]; then one [`ServerMessage::Metrics`] for the turn.
//! 4. The client reports playback with [`ClientMessage::PlaybackProgress`]. To interrupt
//!    (barge-in) it clears its own playback at once, sends [`ClientMessage::SpeechStarted`] (which
//!    makes the proxy cancel the LLM and TTS requests of the current response) and then
//!    [`ClientMessage::Cancel`] with how much of the answer it played; the proxy keeps only the
//!    heard part in the conversation history and confirms with
//!    [`ServerMessage::ResponseTruncated`]. Audio frames of a cancelled response that were
//!    already in flight must be dropped by the client.
//! 5. Failures arrive as [`ServerMessage::Error`], naming the [`Stage`], a stable [`ErrorCode`]
//!    and whether retrying can help. The session stays open unless the socket closes.
//!
//! # Resuming after a dropped socket
//!
//! `session_ready` carries a [`ResumeTicket`]: a single-use token and the grace period for
//! which the proxy keeps the conversation after the socket goes. A client whose socket drops
//! (no close frame, or close code 1001 "going away", 1011, 1012 "service restart" or 1013)
//! opens `GET /ws?resume=TOKEN` (with the access token as before, if any) within the grace
//! period. The new socket's `session_ready` says `"resumed": true` when the conversation
//! continues: its history holds every finished turn, an answer that was playing is kept only
//! as far as the client last reported playing it ([`ClientMessage::PlaybackProgress`]), and
//! turn and response ids carry on. A turn still waiting for its transcript when the socket
//! dropped is lost. `"resumed": false` after a token was presented means the token was
//! unknown or expired: a fresh conversation began. Closes with 1000 (idle, maximum length)
//! or 1008 (policy) are final: reconnecting is pointless.

use serde::{Deserialize, Serialize};

/// Version of this contract, announced in [`ServerMessage::SessionReady`]. Bumped on any
/// change that an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// Sample rate of every audio frame, both directions: what OpenAI's Realtime and Speech APIs use,
/// so the proxy never resamples.
pub const SAMPLE_RATE_HZ: u32 = 24_000;

/// PCM16: two bytes per mono sample.
pub const BYTES_PER_SAMPLE: usize = 2;

/// Length of the header of a proxy → browser audio frame: the response id as `u32` LE.
pub const AUDIO_HEADER_LEN: usize = 4;

/// Largest browser → proxy audio frame: one second of PCM16 at 24 kHz. The worklet sends 20 ms
/// frames (plus a 300 ms pre-roll at speech start); anything larger is a bug or abuse.
pub const MAX_CLIENT_AUDIO_FRAME_BYTES: usize = SAMPLE_RATE_HZ as usize * BYTES_PER_SAMPLE;

/// Largest text frame either side should send. Control messages are tiny; a transcript or a
/// text delta never comes near this.
pub const MAX_TEXT_FRAME_BYTES: usize = 64 * 1024;

/// Identifies one assistant response within a session. Counts up from 1; on the wire a plain
/// number (and the audio frame header's `u32`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ResponseId(pub u32);

/// Identifies one user turn within a session. Counts up from 1; transcripts are delivered in
/// turn order. On the wire a plain number.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TurnId(pub u32);

macro_rules! counter_id {
    ($name:ident) => {
        impl $name {
            /// The id after this one.
            #[must_use]
            pub const fn next(self) -> Self {
                Self(self.0 + 1)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
counter_id!(ResponseId);
counter_id!(TurnId);

/// Messages the browser sends, as JSON text frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// The client's VAD heard speech start. Audio frames (pre-roll first) follow. If the
    /// assistant is answering, this is a barge-in: the proxy cancels the response at once.
    SpeechStarted,
    /// The client's VAD ended the turn: the proxy commits the audio for transcription.
    SpeechStopped,
    /// The client's VAD heard a short pause in the user's speech (shorter than the pause that
    /// ends a turn). Audio keeps flowing; the turn goes on with [`ClientMessage::SpeechResumed`]
    /// or ends with [`ClientMessage::SpeechStopped`]. The proxy may commit what was said so far
    /// and start answering it speculatively.
    SpeechPaused,
    /// Speech came back after a [`ClientMessage::SpeechPaused`]: the same turn goes on.
    SpeechResumed,
    /// Stop a response: cancels whatever of it is still generating and records how many of
    /// its samples (24 kHz) the user heard, so the history keeps only that part.
    /// Valid after the response finished generating too (it may still have been playing).
    Cancel {
        /// The response being cut.
        response_id: ResponseId,
        /// 24 kHz samples of that response actually played.
        played_samples: u64,
    },
    /// How much of a response has been played so far (sent periodically and when playback of
    /// the response ends).
    PlaybackProgress {
        /// The response being played.
        response_id: ResponseId,
        /// 24 kHz samples of it played so far.
        played_samples: u64,
    },
}

impl ClientMessage {
    /// Parses one text frame, never panicking: oversized input, bad JSON, a missing or unknown
    /// `type` and bad fields each give their own [`ProtocolError`].
    pub fn from_json(text: &str) -> Result<Self, ProtocolError> {
        parse_tagged(text, CLIENT_MESSAGE_TYPES)
    }

    /// Serializes to the JSON text of one frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialize")
    }
}

/// Every `type` a [`ClientMessage`] may carry.
const CLIENT_MESSAGE_TYPES: &[&str] = &[
    "speech_started",
    "speech_stopped",
    "speech_paused",
    "speech_resumed",
    "cancel",
    "playback_progress",
];

/// How the end of a user turn is detected. Chosen by the operator, announced to the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetection {
    /// The browser's VAD ends the turn ([`ClientMessage::SpeechStopped`]); the proxy commits.
    #[default]
    Client,
    /// OpenAI's server VAD (silence based) ends the turn.
    ServerVad,
    /// OpenAI's semantic VAD (end-of-thought model) ends the turn.
    SemanticVad,
}

/// The audio format of every binary frame, announced in [`ServerMessage::SessionReady`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Always `"pcm16"`: signed 16-bit little-endian samples.
    pub encoding: String,
    /// Always [`SAMPLE_RATE_HZ`].
    pub sample_rate_hz: u32,
    /// Always 1.
    pub channels: u16,
}

impl Default for AudioFormat {
    fn default() -> Self {
        Self {
            encoding: "pcm16".to_owned(),
            sample_rate_hz: SAMPLE_RATE_HZ,
            channels: 1,
        }
    }
}

/// The part of the pipeline an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Speech-to-text (the Realtime transcription session).
    Stt,
    /// The language model (Chat Completions, or the speech-to-speech pipeline's Realtime
    /// model).
    Llm,
    /// Text-to-speech (the Speech API).
    Tts,
    /// The proxy itself or the browser's messages to it.
    Proxy,
}

impl Stage {
    /// The wire name, also used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Stt => "stt",
            Stage::Llm => "llm",
            Stage::Tts => "tts",
            Stage::Proxy => "proxy",
        }
    }
}

/// Stable error codes. Clients branch on these, never on messages. Codes added later arrive as
/// [`ErrorCode::Unknown`] at older clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The upstream rejected the operator's credentials or permissions (401/403).
    UpstreamAuth,
    /// The upstream rejected the request as malformed (400/404/422): a configuration problem.
    UpstreamBadRequest,
    /// Upstream rate limit (429); retrying later can help.
    RateLimited,
    /// The operator's account is out of quota or credit; retrying does not help.
    InsufficientQuota,
    /// The upstream failed or is overloaded (5xx) or could not be reached.
    UpstreamUnavailable,
    /// A stream broke off mid-way (an error event, a dropped connection, no end marker).
    StreamInterrupted,
    /// The upstream stopped answering within the deadline.
    UpstreamTimeout,
    /// The transcription of a turn failed (e.g. unintelligible audio).
    TranscriptionFailed,
    /// The turn held too little audio to transcribe.
    AudioTooShort,
    /// The transcription session ended and could not be restored.
    SessionLost,
    /// The browser sent a message the proxy cannot accept.
    InvalidMessage,
    /// The page's origin may not open a session here (HTTP 403 before the upgrade).
    Forbidden,
    /// The server needs an access token that the request did not carry (HTTP 401).
    Unauthorized,
    /// The server holds all the sessions it can, or is shutting down (HTTP 503 before the
    /// upgrade, with `Retry-After`).
    ServerBusy,
    /// The client's address holds too many sessions or opens them too fast (HTTP 429 before
    /// the upgrade, with `Retry-After`).
    TooManyRequests,
    /// Audio arrived faster than real time allows; the excess was dropped. Reported once per
    /// episode; a sustained flood closes the session (1008).
    AudioTooFast,
    /// The user spoke longer than the longest utterance allowed; the turn was ended there.
    UtteranceTooLong,
    /// Any other failure inside the proxy.
    Internal,
    /// A code this version of the contract does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name, also used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UpstreamAuth => "upstream_auth",
            ErrorCode::UpstreamBadRequest => "upstream_bad_request",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::StreamInterrupted => "stream_interrupted",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::TranscriptionFailed => "transcription_failed",
            ErrorCode::AudioTooShort => "audio_too_short",
            ErrorCode::SessionLost => "session_lost",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::AudioTooFast => "audio_too_fast",
            ErrorCode::UtteranceTooLong => "utterance_too_long",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// An error reported to the browser. It never carries upstream internals or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Where it happened.
    pub stage: Stage,
    /// What happened, stably.
    pub code: ErrorCode,
    /// A short human-readable sentence, safe to show.
    pub message: String,
    /// Whether trying again (the next turn, or reconnecting) can help.
    pub retryable: bool,
    /// The turn it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<TurnId>,
    /// The response it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<ResponseId>,
}

impl ErrorEvent {
    /// An error about no particular turn or response; see [`ErrorEvent::for_turn`] and
    /// [`ErrorEvent::for_response`] to name them.
    pub fn new(stage: Stage, code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            stage,
            code,
            message: message.into(),
            retryable,
            turn_id: None,
            response_id: None,
        }
    }

    /// The same error, about this turn.
    pub fn for_turn(mut self, turn_id: TurnId) -> Self {
        self.turn_id = Some(turn_id);
        self
    }

    /// The same error, about this response.
    pub fn for_response(mut self, response_id: ResponseId) -> Self {
        self.response_id = Some(response_id);
        self
    }
}

/// The per-turn latency waterfall: milliseconds from the moment the proxy learned the user
/// stopped speaking to each later step. A step that did not happen is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Waterfall {
    /// `input_audio_buffer.commit` sent upstream (client turn detection only; in
    /// speech-to-speech with its `response.create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_sent_ms: Option<f64>,
    /// The final transcript arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_final_ms: Option<f64>,
    /// The Chat Completions request was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_request_ms: Option<f64>,
    /// The first token of the answer arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_first_token_ms: Option<f64>,
    /// The first clause was complete and handed to TTS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_clause_ms: Option<f64>,
    /// The first Speech request was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_request_ms: Option<f64>,
    /// The first byte of synthesized audio arrived (speech-to-speech: the model's first audio
    /// delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_first_byte_ms: Option<f64>,
    /// The first audio frame was sent to the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_audio_sent_ms: Option<f64>,
    /// Pieces the turn's audio was committed in, when the proxy committed it at the user's
    /// short pauses (`1`: all of it at the pause that ended the turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pieces: Option<u32>,
    /// Answers started speculatively at the turn's short pauses (then steps before 0 ms
    /// show as 0: they happened before the turn ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative_starts: Option<u32>,
    /// Of those, cancelled because the user went on (never heard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculations_cancelled: Option<u32>,
}

/// What a client needs to continue a session after its socket drops (see
/// [the module docs](crate#resuming-after-a-dropped-socket)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTicket {
    /// Unguessable and single use: presented once as `?resume=` on a new `/ws`; the
    /// `session_ready` of that socket carries the next one.
    pub token: String,
    /// How long after the socket drops the proxy keeps the conversation, in seconds.
    pub grace_s: u32,
}

/// The query parameter of `GET /ws` that presents a [`ResumeTicket`]'s token.
pub const RESUME_QUERY_PARAM: &str = "resume";

/// Messages the proxy sends, as JSON text frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message of every session.
    SessionReady {
        /// [`PROTOCOL_VERSION`] of the proxy.
        protocol_version: u32,
        /// Opaque id of this session, for logs and support.
        session_id: String,
        /// The format of all audio frames.
        audio: AudioFormat,
        /// Who ends a turn.
        turn_detection: TurnDetection,
        /// True when the proxy runs on its built-in OpenAI simulator (no API key set): the UI
        /// should say so.
        simulated: bool,
        /// How this session may be continued after its socket drops. Absent when the proxy
        /// keeps no conversation after a drop (resume is off, or the pipeline cannot
        /// continue one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeTicket>,
        /// True when this session continues the conversation whose token the client
        /// presented (`?resume=`): the history is kept and turn and response ids carry on
        /// from where it stopped. False for a fresh session — including when a token was
        /// presented but was unknown or had expired, in which case the conversation
        /// restarted and the page should say so.
        #[serde(default)]
        resumed: bool,
    },
    /// Server-side VAD heard the user start speaking (server turn detection only).
    SpeechStarted {
        /// The turn that begins.
        turn_id: TurnId,
    },
    /// Server-side VAD ended the user's turn (server turn detection only).
    SpeechStopped {
        /// The turn that ends.
        turn_id: TurnId,
    },
    /// More of the user's words, appended to what came before for this turn.
    TranscriptDelta {
        /// The turn transcribed.
        turn_id: TurnId,
        /// Text to append.
        delta: String,
    },
    /// The final text of a user turn; replaces the deltas.
    TranscriptFinal {
        /// The turn transcribed.
        turn_id: TurnId,
        /// The whole transcript.
        text: String,
    },
    /// The assistant starts answering a turn.
    ResponseStarted {
        /// Tags this response's text and audio frames.
        response_id: ResponseId,
        /// The turn answered.
        turn_id: TurnId,
    },
    /// More of the answer's text, as the LLM writes it.
    ResponseTextDelta {
        /// The response.
        response_id: ResponseId,
        /// Text to append.
        delta: String,
    },
    /// The proxy finished the response: no more text or audio will come for it. It is sent
    /// after the response's last audio frame, never before (its `metrics` follow it).
    ResponseDone {
        /// The response.
        response_id: ResponseId,
        /// All text generated for it; for an answer cut by an upstream error, what was sent of
        /// it as audio.
        text: String,
        /// True when it was cancelled (barge-in or cancel) or cut by an upstream error before
        /// it was complete.
        interrupted: bool,
        /// 24 kHz samples of audio sent for it.
        audio_samples: u64,
    },
    /// After a cancel: the part of the answer the user heard, which is all the conversation
    /// history keeps of it.
    ResponseTruncated {
        /// The response.
        response_id: ResponseId,
        /// The text the user heard.
        heard_text: String,
    },
    /// The latency waterfall of one turn.
    Metrics {
        /// The turn measured.
        turn_id: TurnId,
        /// Its response, if one started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_id: Option<ResponseId>,
        /// The steps.
        waterfall: Waterfall,
    },
    /// Something failed.
    Error(ErrorEvent),
}

impl ServerMessage {
    /// Parses one text frame, never panicking.
    pub fn from_json(text: &str) -> Result<Self, ProtocolError> {
        parse_tagged(text, SERVER_MESSAGE_TYPES)
    }

    /// Serializes to the JSON text of one frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// Every `type` a [`ServerMessage`] may carry.
const SERVER_MESSAGE_TYPES: &[&str] = &[
    "session_ready",
    "speech_started",
    "speech_stopped",
    "transcript_delta",
    "transcript_final",
    "response_started",
    "response_text_delta",
    "response_done",
    "response_truncated",
    "metrics",
    "error",
];

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is longer than the contract allows.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    InvalidJson(String),
    /// A JSON object without a string `type`.
    #[error("message has no \"type\"")]
    MissingType,
    /// A `type` this contract does not define.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known `type` with missing or ill-typed fields.
    #[error("invalid {kind:?} message: {detail}")]
    InvalidFields {
        /// The `type`.
        kind: String,
        /// What is wrong.
        detail: String,
    },
    /// An audio frame with no samples.
    #[error("empty audio frame")]
    EmptyAudio,
    /// An audio frame whose length is not a whole number of PCM16 samples.
    #[error("audio frame of {len} bytes is not a whole number of 16-bit samples")]
    OddAudioLength {
        /// Its length.
        len: usize,
    },
    /// A proxy → browser audio frame shorter than its header.
    #[error("audio frame of {len} bytes is shorter than its {AUDIO_HEADER_LEN}-byte header")]
    MissingAudioHeader {
        /// Its length.
        len: usize,
    },
}

/// Parses a `type`-tagged JSON object into `T`, telling an unknown `type` apart from bad fields.
fn parse_tagged<T: serde::de::DeserializeOwned>(
    text: &str,
    known_types: &[&str],
) -> Result<T, ProtocolError> {
    if text.len() > MAX_TEXT_FRAME_BYTES {
        return Err(ProtocolError::TooLarge {
            len: text.len(),
            max: MAX_TEXT_FRAME_BYTES,
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    let serde_json::Value::Object(ref object) = value else {
        return Err(ProtocolError::InvalidJson("expected an object".to_owned()));
    };
    let Some(kind) = object.get("type").and_then(serde_json::Value::as_str) else {
        return Err(ProtocolError::MissingType);
    };
    if !known_types.contains(&kind) {
        return Err(ProtocolError::UnknownType(kind.to_owned()));
    }
    let kind = kind.to_owned();
    serde_json::from_value(value).map_err(|e| ProtocolError::InvalidFields {
        kind,
        detail: e.to_string(),
    })
}

/// Checks a browser → proxy audio frame: non-empty, whole samples, not oversized.
pub fn validate_client_audio(frame: &[u8]) -> Result<(), ProtocolError> {
    if frame.is_empty() {
        return Err(ProtocolError::EmptyAudio);
    }
    if frame.len() > MAX_CLIENT_AUDIO_FRAME_BYTES {
        return Err(ProtocolError::TooLarge {
            len: frame.len(),
            max: MAX_CLIENT_AUDIO_FRAME_BYTES,
        });
    }
    if !frame.len().is_multiple_of(BYTES_PER_SAMPLE) {
        return Err(ProtocolError::OddAudioLength { len: frame.len() });
    }
    Ok(())
}

/// Writes a proxy → browser audio frame into `out` (cleared first, so one buffer can be
/// reused): the header, then `pcm`, which must hold whole samples.
pub fn encode_audio_frame(response_id: ResponseId, pcm: &[u8], out: &mut Vec<u8>) {
    debug_assert!(
        pcm.len().is_multiple_of(BYTES_PER_SAMPLE),
        "whole samples only"
    );
    out.clear();
    out.reserve(AUDIO_HEADER_LEN + pcm.len());
    out.extend_from_slice(&audio_frame_header(response_id));
    out.extend_from_slice(pcm);
}

/// The header that starts every proxy → browser audio frame: the response id, little-endian.
/// For a writer that assembles frames in a buffer of its own; [`encode_audio_frame`] uses it.
pub fn audio_frame_header(response_id: ResponseId) -> [u8; AUDIO_HEADER_LEN] {
    response_id.0.to_le_bytes()
}

/// Splits a proxy → browser audio frame into its response id and PCM16 bytes.
pub fn decode_audio_frame(frame: &[u8]) -> Result<(ResponseId, &[u8]), ProtocolError> {
    let Some((header, pcm)) = frame.split_first_chunk::<AUDIO_HEADER_LEN>() else {
        return Err(ProtocolError::MissingAudioHeader { len: frame.len() });
    };
    if pcm.len() % BYTES_PER_SAMPLE != 0 {
        return Err(ProtocolError::OddAudioLength { len: pcm.len() });
    }
    Ok((ResponseId(u32::from_le_bytes(*header)), pcm))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_client_messages() -> Vec<ClientMessage> {
        vec![
            ClientMessage::SpeechStarted,
            ClientMessage::SpeechStopped,
            ClientMessage::SpeechPaused,
            ClientMessage::SpeechResumed,
            ClientMessage::Cancel {
                response_id: ResponseId(3),
                played_samples: 24_000,
            },
            ClientMessage::PlaybackProgress {
                response_id: ResponseId(3),
                played_samples: 12,
            },
        ]
    }

    fn all_server_messages() -> Vec<ServerMessage> {
        vec![
            ServerMessage::SessionReady {
                protocol_version: PROTOCOL_VERSION,
                session_id: "s1".into(),
                audio: AudioFormat::default(),
                turn_detection: TurnDetection::ServerVad,
                simulated: true,
                resume: Some(ResumeTicket {
                    token: "0123abcd".into(),
                    grace_s: 120,
                }),
                resumed: true,
            },
            ServerMessage::SpeechStarted { turn_id: TurnId(1) },
            ServerMessage::SpeechStopped { turn_id: TurnId(1) },
            ServerMessage::TranscriptDelta {
                turn_id: TurnId(1),
                delta: "Hel".into(),
            },
            ServerMessage::TranscriptFinal {
                turn_id: TurnId(1),
                text: "Hello there.".into(),
            },
            ServerMessage::ResponseStarted {
                response_id: ResponseId(1),
                turn_id: TurnId(1),
            },
            ServerMessage::ResponseTextDelta {
                response_id: ResponseId(1),
                delta: "Hi".into(),
            },
            ServerMessage::ResponseDone {
                response_id: ResponseId(1),
                text: "Hi!".into(),
                interrupted: false,
                audio_samples: 4800,
            },
            ServerMessage::ResponseTruncated {
                response_id: ResponseId(1),
                heard_text: "Hi".into(),
            },
            ServerMessage::Metrics {
                turn_id: TurnId(1),
                response_id: Some(ResponseId(1)),
                waterfall: Waterfall {
                    commit_sent_ms: Some(0.1),
                    first_audio_sent_ms: Some(812.5),
                    ..Waterfall::default()
                },
            },
            ServerMessage::Error(ErrorEvent {
                stage: Stage::Llm,
                code: ErrorCode::RateLimited,
                message: "The language model is rate limited.".into(),
                retryable: true,
                turn_id: Some(TurnId(2)),
                response_id: None,
            }),
        ]
    }

    #[test]
    fn a_session_ready_without_resume_fields_is_a_fresh_session_that_cannot_resume() {
        let json = r#"{"type":"session_ready","protocol_version":1,"session_id":"s1",
            "audio":{"encoding":"pcm16","sample_rate_hz":24000,"channels":1},
            "turn_detection":"client","simulated":false}"#;
        match ServerMessage::from_json(json) {
            Ok(ServerMessage::SessionReady {
                resume, resumed, ..
            }) => {
                assert_eq!(resume, None);
                assert!(!resumed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_code_names_are_the_wire_names() {
        use ErrorCode::*;
        let codes = [
            UpstreamAuth,
            UpstreamBadRequest,
            RateLimited,
            InsufficientQuota,
            UpstreamUnavailable,
            StreamInterrupted,
            UpstreamTimeout,
            TranscriptionFailed,
            AudioTooShort,
            SessionLost,
            InvalidMessage,
            Forbidden,
            Unauthorized,
            ServerBusy,
            TooManyRequests,
            AudioTooFast,
            UtteranceTooLong,
            Internal,
            Unknown,
        ];
        for code in codes {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str()),
                "{code:?}"
            );
        }
        for stage in [Stage::Stt, Stage::Llm, Stage::Tts, Stage::Proxy] {
            assert_eq!(
                serde_json::to_value(stage).unwrap(),
                serde_json::Value::from(stage.as_str())
            );
        }
    }

    #[test]
    fn client_messages_round_trip() {
        for message in all_client_messages() {
            let json = message.to_json();
            assert_eq!(ClientMessage::from_json(&json), Ok(message), "{json}");
        }
    }

    #[test]
    fn server_messages_round_trip() {
        for message in all_server_messages() {
            let json = message.to_json();
            assert_eq!(ServerMessage::from_json(&json), Ok(message), "{json}");
        }
    }

    #[test]
    fn every_type_is_listed() {
        for message in all_client_messages() {
            let value: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
            assert!(CLIENT_MESSAGE_TYPES.contains(&value["type"].as_str().unwrap()));
        }
        let server_types: Vec<String> = all_server_messages()
            .iter()
            .map(|m| {
                let value: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
                value["type"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(server_types, SERVER_MESSAGE_TYPES);
    }

    #[test]
    fn wire_shape_is_stable() {
        assert_eq!(
            ClientMessage::Cancel {
                response_id: ResponseId(7),
                played_samples: 480
            }
            .to_json(),
            r#"{"type":"cancel","response_id":7,"played_samples":480}"#
        );
        assert_eq!(
            ServerMessage::Error(ErrorEvent {
                stage: Stage::Tts,
                code: ErrorCode::InsufficientQuota,
                message: "m".into(),
                retryable: false,
                turn_id: None,
                response_id: Some(ResponseId(2)),
            })
            .to_json(),
            r#"{"type":"error","stage":"tts","code":"insufficient_quota","message":"m","retryable":false,"response_id":2}"#
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            ClientMessage::from_json(r#"{"type":"speech_stopped","extra":1}"#),
            Ok(ClientMessage::SpeechStopped)
        );
    }

    #[test]
    fn malformed_client_input_is_rejected_with_typed_errors() {
        type Check = fn(&ProtocolError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, ProtocolError::InvalidJson(_))),
            ("{", |e| matches!(e, ProtocolError::InvalidJson(_))),
            ("[1,2]", |e| matches!(e, ProtocolError::InvalidJson(_))),
            ("\"speech_started\"", |e| {
                matches!(e, ProtocolError::InvalidJson(_))
            }),
            ("{}", |e| *e == ProtocolError::MissingType),
            (r#"{"type":5}"#, |e| *e == ProtocolError::MissingType),
            (r#"{"type":"session.update"}"#, |e| {
                *e == ProtocolError::UnknownType("session.update".into())
            }),
            (
                r#"{"type":"cancel"}"#,
                |e| matches!(e, ProtocolError::InvalidFields { kind, .. } if kind == "cancel"),
            ),
            (
                r#"{"type":"cancel","response_id":-1,"played_samples":0}"#,
                |e| matches!(e, ProtocolError::InvalidFields { .. }),
            ),
            (
                r#"{"type":"playback_progress","response_id":"x","played_samples":1}"#,
                |e| matches!(e, ProtocolError::InvalidFields { .. }),
            ),
        ];
        for (input, expected) in cases {
            let error = ClientMessage::from_json(input).expect_err(input);
            assert!(expected(&error), "{input:?} gave {error:?}");
        }
    }

    #[test]
    fn oversized_text_is_rejected() {
        let big = format!(
            r#"{{"type":"speech_started","pad":"{}"}}"#,
            "x".repeat(MAX_TEXT_FRAME_BYTES)
        );
        assert!(matches!(
            ClientMessage::from_json(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_error_codes_degrade_gracefully() {
        let json =
            r#"{"type":"error","stage":"stt","code":"brand_new","message":"m","retryable":true}"#;
        let ServerMessage::Error(event) = ServerMessage::from_json(json).unwrap() else {
            panic!("not an error event");
        };
        assert_eq!(event.code, ErrorCode::Unknown);
    }

    #[test]
    fn client_audio_is_validated() {
        assert_eq!(validate_client_audio(&[0; 960]), Ok(()));
        assert_eq!(validate_client_audio(&[]), Err(ProtocolError::EmptyAudio));
        assert_eq!(
            validate_client_audio(&[0; 961]),
            Err(ProtocolError::OddAudioLength { len: 961 })
        );
        assert!(matches!(
            validate_client_audio(&vec![0; MAX_CLIENT_AUDIO_FRAME_BYTES + 2]),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn audio_frames_round_trip() {
        let pcm: Vec<u8> = (0..=255).collect();
        let mut frame = Vec::new();
        encode_audio_frame(ResponseId(0xDEAD_BEEF), &pcm, &mut frame);
        assert_eq!(frame.len(), AUDIO_HEADER_LEN + pcm.len());
        assert_eq!(
            decode_audio_frame(&frame),
            Ok((ResponseId(0xDEAD_BEEF), &pcm[..]))
        );
        // The buffer is reused, not appended to.
        encode_audio_frame(ResponseId(1), &[1, 2], &mut frame);
        assert_eq!(
            decode_audio_frame(&frame),
            Ok((ResponseId(1), &[1u8, 2][..]))
        );
    }

    #[test]
    fn malformed_audio_frames_are_rejected() {
        assert_eq!(
            decode_audio_frame(&[1, 0, 0]),
            Err(ProtocolError::MissingAudioHeader { len: 3 })
        );
        assert_eq!(
            decode_audio_frame(&[1, 0, 0, 0, 9]),
            Err(ProtocolError::OddAudioLength { len: 1 })
        );
        assert_eq!(
            decode_audio_frame(&[1, 0, 0, 0]),
            Ok((ResponseId(1), &[][..]))
        );
    }
}
