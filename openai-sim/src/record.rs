//! [`Records`]: what the simulator received and sent, for tests to assert on.
//!
//! A snapshot is a plain clone ([`Simulator::records`](super::Simulator::records)); to wait
//! for something to happen use [`Simulator::wait_until`](super::Simulator::wait_until), which
//! wakes on every change. Nothing is recorded when
//! [`SimConfig::recording`](super::SimConfig::recording) is off.
//!
//! The JSON form (serde, `GET /_sim/records`) has the same field names; byte fields (`audio`,
//! `synthesized`, `sent`) are base64 strings, outcomes snake case (`"client_closed"`).
//!
//! Moments (`received_ms`, `ended_ms`, `started_ms`) are milliseconds since the simulator
//! started, on the clock of [`Simulator::now_ms`](super::Simulator::now_ms) (the control
//! surface's records carry the same clock's `now_ms`), fractional.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::fault::Fault;

/// Everything recorded so far, in arrival order per API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Records {
    /// Realtime connection attempts, including rejected ones.
    pub realtime: Vec<RealtimeRecord>,
    /// Chat Completions requests.
    pub chat: Vec<ChatRecord>,
    /// Speech requests.
    pub speech: Vec<SpeechRecord>,
    /// File transcription requests.
    pub transcription: Vec<TranscriptionRecord>,
    /// TCP connections accepted (HTTP and WebSocket alike), so a test can tell a client that
    /// reused a warm keep-alive connection from one that opened a new one.
    pub connections_accepted: u64,
}

impl Records {
    /// Realtime connections that were upgraded to a WebSocket.
    pub fn realtime_connections(&self) -> usize {
        self.realtime.iter().filter(|conn| conn.accepted()).count()
    }

    /// PCM bytes appended over all Realtime connections.
    pub fn realtime_audio_bytes(&self) -> usize {
        self.realtime.iter().map(|conn| conn.audio_bytes).sum()
    }
}

/// One Realtime connection attempt.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RealtimeRecord {
    /// The URL query string, e.g. `Some("intent=transcription")`.
    pub query: Option<String>,
    /// The `Authorization` header as received (it holds the key: tests only).
    pub authorization: Option<String>,
    /// The `OpenAI-Beta` header, which the GA API rejects.
    pub openai_beta: Option<String>,
    /// The `Sec-WebSocket-Protocol` header (browser-style auth).
    pub subprotocols: Option<String>,
    /// `Some(status)` if the upgrade was refused with an HTTP error.
    pub rejected_status: Option<u16>,
    /// The `sess_…` id announced in `session.created`.
    pub session_id: Option<String>,
    /// Every client event in order. `input_audio_buffer.append` is recorded with its `audio`
    /// replaced by `"audio_bytes": <decoded length>`; a text frame that is not JSON is recorded
    /// as a JSON string, a binary frame as `{"binary_frame_bytes": n}`.
    pub events: Vec<Value>,
    /// PCM bytes appended on this connection (successfully decoded).
    pub audio_bytes: usize,
    /// The appended PCM itself, in order, so tests can check what the audio sounds like.
    #[serde(serialize_with = "base64_bytes")]
    pub audio: Vec<u8>,
    /// The `type` of every server event actually written to the socket, in order.
    pub sent_types: Vec<String>,
    /// Faults this connection or its turns took, in the order taken.
    pub faults: Vec<Fault>,
    /// WebSocket pings received (each answered with a pong by the WebSocket layer).
    pub pings: usize,
    /// The connection has ended (either side, or a fault).
    pub closed: bool,
    /// Conversation sessions: every response, in the order they started (by `response.create`
    /// or by server VAD).
    pub responses: Vec<ResponseRecord>,
    /// Conversation sessions: every successful `conversation.item.truncate`, in order (the
    /// refused ones are only among `events`).
    pub truncations: Vec<TruncationRecord>,
    /// Conversation sessions: the conversation as the simulated model knows it now, in order
    /// (items deleted by the client are gone; a truncated item has lost its text).
    pub conversation: Vec<ConversationItemRecord>,
}

/// One response of a Realtime conversation session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseRecord {
    /// The `resp_…` id.
    pub id: String,
    /// The `item_…` id of its assistant message.
    pub item_id: String,
    /// The whole reply the simulator planned to say (scripted, or the echo).
    pub reply: String,
    /// The part of the reply's transcript sent in deltas so far.
    pub transcript_sent: String,
    /// Milliseconds of audio handed to the socket in `response.output_audio.delta`s (at
    /// 24 kHz PCM16: bytes / 48). A few of them may still have been queued when a cancel came.
    pub audio_ms_sent: u64,
    /// The `status` of the `response.done` sent: `"completed"`, `"cancelled"` or `"failed"`;
    /// `"in_progress"` while it runs, and for good when a fault (`Drop`, `Stall`) cut it off
    /// before its `response.done`.
    pub status: String,
    /// `status_details.reason` of a cancelled response: `"client_cancelled"` or
    /// `"turn_detected"`.
    pub status_reason: Option<String>,
    /// The fault it took, if any.
    pub fault: Option<Fault>,
    /// When it started (`response.create`, or the VAD commit that started it), ms since the
    /// simulator started.
    pub started_ms: f64,
    /// When it stopped sending, ms since the simulator started: its `response.done` was
    /// decided (completed, cancelled — the cancel seen at its next event —, failed), a fault
    /// cut it off, or the connection ended. `None` while it runs.
    pub ended_ms: Option<f64>,
}

/// A successful `conversation.item.truncate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TruncationRecord {
    /// The assistant item truncated.
    pub item_id: String,
    /// Always 0 (the only content part that can be truncated).
    pub content_index: u64,
    /// Where its audio now ends, in ms from the start of the item's audio.
    pub audio_end_ms: u64,
}

/// One item of a Realtime conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConversationItemRecord {
    /// The `item_…` id (or the client's own id for `conversation.item.create`).
    pub id: String,
    /// `"user"`, `"assistant"` or `"system"`.
    pub role: String,
    /// Its text as the model knows it: typed text, the transcript of user audio (while input
    /// transcription is on), the transcript the assistant has spoken. `None` when there is
    /// none, or after a truncate dropped it.
    pub text: Option<String>,
    /// Milliseconds of audio: the user's committed audio, or the assistant audio sent (after
    /// a truncate, its `audio_end_ms`). `None` for text-only items.
    pub audio_ms: Option<u64>,
}

impl RealtimeRecord {
    /// The upgrade succeeded.
    pub fn accepted(&self) -> bool {
        self.rejected_status.is_none()
    }

    /// Client events of one `type`.
    pub fn events_of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .filter(move |event| event["type"] == kind)
    }

    /// How many server events of one `type` were sent.
    pub fn sent_count(&self, kind: &str) -> usize {
        self.sent_types.iter().filter(|sent| *sent == kind).count()
    }
}

/// How an HTTP request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still being answered.
    InProgress,
    /// The whole response was sent (for streams: up to `[DONE]` / the last byte).
    Completed,
    /// The client went away before the response ended (also after a stall).
    ClientClosed,
    /// An injected fault ended it (HTTP error, mid-stream error, drop).
    Failed,
    /// Refused before any work: authentication or validation error; see `status`.
    Rejected,
}

impl Outcome {
    /// Whether the request has ended.
    pub fn is_final(self) -> bool {
        self != Self::InProgress
    }
}

/// One Chat Completions request.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRecord {
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The request body; a JSON string holding the raw text if it was not JSON.
    pub body: Value,
    /// The HTTP status answered (200 for streams, even if they failed later).
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The fault it took, if any.
    pub fault: Option<Fault>,
    /// The full reply text the simulator planned to send (before any fault or truncation).
    pub reply: Option<String>,
    /// When the request reached its handler, ms since the simulator started (Chat and Speech
    /// have their whole body by then; a file transcription reads its upload afterwards).
    pub received_ms: f64,
    /// When it ended, ms since the simulator started: answered in full, failed, rejected, or
    /// the moment the simulator saw the client go away (hyper dropped the response or the
    /// request on the closed connection, even in the middle of a long wait). `None` while
    /// in progress.
    pub ended_ms: Option<f64>,
}

/// One Speech request.
#[derive(Debug, Clone, Serialize)]
pub struct SpeechRecord {
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The request body; a JSON string holding the raw text if it was not JSON.
    pub body: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The fault it took, if any.
    pub fault: Option<Fault>,
    /// The whole synthesized response: PCM16 LE mono 24 kHz (with the header for `wav`).
    #[serde(serialize_with = "base64_bytes")]
    pub synthesized: Bytes,
    /// The audio bytes handed to the socket, in order: exactly what a client that read the
    /// whole body received (for `stream_format: "sse"`, the decoded deltas).
    #[serde(serialize_with = "base64_bytes")]
    pub sent: Vec<u8>,
    /// The size of every body chunk handed to the socket (SSE: audio bytes per delta).
    pub sent_chunks: Vec<usize>,
    /// When the request reached its handler, ms since the simulator started (Chat and Speech
    /// have their whole body by then; a file transcription reads its upload afterwards).
    pub received_ms: f64,
    /// When it ended, ms since the simulator started: answered in full, failed, rejected, or
    /// the moment the simulator saw the client go away (hyper dropped the response or the
    /// request on the closed connection, even in the middle of a long wait). `None` while
    /// in progress.
    pub ended_ms: Option<f64>,
}

/// One file transcription request (`POST /v1/audio/transcriptions`).
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptionRecord {
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The form's text fields (`model`, `language`, `prompt`, `stream`, …) as a JSON object.
    pub body: Value,
    /// The file part's name, as the client gave it.
    pub file_name: Option<String>,
    /// The file part's `Content-Type`.
    pub file_content_type: Option<String>,
    /// The uploaded file, whole.
    #[serde(serialize_with = "base64_bytes")]
    pub file: Bytes,
    /// The HTTP status answered.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The fault it took, if any.
    pub fault: Option<Fault>,
    /// The transcript the simulator planned to send (before any fault).
    pub transcript: Option<String>,
    /// Whether it answered with an SSE stream.
    pub streamed: bool,
    /// When the request reached its handler, ms since the simulator started (Chat and Speech
    /// have their whole body by then; a file transcription reads its upload afterwards).
    pub received_ms: f64,
    /// When it ended, ms since the simulator started: answered in full, failed, rejected, or
    /// the moment the simulator saw the client go away (hyper dropped the response or the
    /// request on the closed connection, even in the middle of a long wait). `None` while
    /// in progress.
    pub ended_ms: Option<f64>,
}

impl TranscriptionRecord {
    pub(crate) fn new(authorization: Option<String>, body: Value, received_ms: f64) -> Self {
        Self {
            authorization,
            body,
            file_name: None,
            file_content_type: None,
            file: Bytes::new(),
            status: 200,
            outcome: Outcome::InProgress,
            fault: None,
            transcript: None,
            streamed: false,
            received_ms,
            ended_ms: None,
        }
    }
}

impl ChatRecord {
    pub(crate) fn new(authorization: Option<String>, body: Value, received_ms: f64) -> Self {
        Self {
            authorization,
            body,
            status: 200,
            outcome: Outcome::InProgress,
            fault: None,
            reply: None,
            received_ms,
            ended_ms: None,
        }
    }

    /// The request's `messages` as (role, content) pairs, in order; empty if the body has
    /// none (a missing role or content reads as empty).
    pub fn messages(&self) -> Vec<(String, String)> {
        self.body["messages"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .map(|m| {
                        let text = |key: &str| m[key].as_str().unwrap_or_default().to_owned();
                        (text("role"), text("content"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl SpeechRecord {
    pub(crate) fn new(authorization: Option<String>, body: Value, received_ms: f64) -> Self {
        Self {
            authorization,
            body,
            status: 200,
            outcome: Outcome::InProgress,
            fault: None,
            synthesized: Bytes::new(),
            sent: Vec::new(),
            sent_chunks: Vec::new(),
            received_ms,
            ended_ms: None,
        }
    }
}

/// Bytes as a base64 string in JSON.
fn base64_bytes<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Where a request's record lives, so handlers can update it; `None` when not recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordRef {
    Realtime(Option<Slot>),
    Chat(Option<Slot>),
    Speech(Option<Slot>),
    Transcription(Option<Slot>),
}

/// A record's index, and the generation of the records it was added to: after a reset the
/// index may name a newer record, which the old request must not update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) generation: u64,
    pub(crate) index: usize,
}

impl RecordRef {
    /// Whether there is a record to update (recording was on when the request arrived).
    pub(crate) fn is_recorded(self) -> bool {
        matches!(
            self,
            Self::Realtime(Some(_)) | Self::Chat(Some(_)) | Self::Speech(Some(_))
        )
    }
}

/// The parts of a chat or speech record an HTTP handler updates.
pub(crate) trait HttpRecord {
    fn set_status(&mut self, status: u16);
    /// Sets the outcome, and `ended_ms` to `at_ms`, unless one is already final: the first
    /// ending wins.
    fn finish(&mut self, outcome: Outcome, at_ms: f64);
    fn set_fault(&mut self, fault: Fault);
}

macro_rules! impl_http_record {
    ($record:ty) => {
        impl HttpRecord for $record {
            fn set_status(&mut self, status: u16) {
                self.status = status;
            }
            fn finish(&mut self, outcome: Outcome, at_ms: f64) {
                if !self.outcome.is_final() && outcome.is_final() {
                    self.outcome = outcome;
                    self.ended_ms = Some(at_ms);
                }
            }
            fn set_fault(&mut self, fault: Fault) {
                self.fault = Some(fault);
            }
        }
    };
}

impl_http_record!(ChatRecord);
impl_http_record!(SpeechRecord);
impl_http_record!(TranscriptionRecord);

impl Records {
    /// The chat or speech record at `index`, for the updates both kinds share.
    pub(crate) fn http_mut(&mut self, at: RecordRef) -> Option<&mut dyn HttpRecord> {
        match at {
            RecordRef::Chat(Some(slot)) => self
                .chat
                .get_mut(slot.index)
                .map(|record| record as &mut dyn HttpRecord),
            RecordRef::Speech(Some(slot)) => self
                .speech
                .get_mut(slot.index)
                .map(|record| record as &mut dyn HttpRecord),
            RecordRef::Transcription(Some(slot)) => self
                .transcription
                .get_mut(slot.index)
                .map(|record| record as &mut dyn HttpRecord),
            _ => None,
        }
    }
}
