//! `GET /v1/realtime`: the Realtime WebSocket, GA shape. Transcription sessions
//! (docs/openai-wire.md §1) live here; conversation sessions (§6) are opened here and run by
//! [`conversation`].
//!
//! * **Handshake** (§1.1, §1.2): `Authorization: Bearer` (or the browser subprotocol
//!   `openai-insecure-api-key.<key>`) is checked before the upgrade (401 JSON error), then an
//!   injected connection fault may refuse the upgrade ([`Fault::Http`], [`Fault::RawHttp`])
//!   or the session ([`Fault::ErrorAfterUpgrade`]). `?intent=transcription` without `model`
//!   opens a transcription session; `?model=…` or no `intent` opens a conversation session. A
//!   refused session gets the upgrade, one `error` event instead of `session.created`, and a
//!   close with code 4000: the `OpenAI-Beta: realtime=v1` header (`beta_api_shape_disabled`,
//!   §0 and the reports cited there), a `?model=` nobody serves (`model_not_found`) or a
//!   transcription model there ("not supported in realtime mode").
//! * **Transcription session** (§1.3–§1.7): `session.created` first; `session.update` →
//!   `session.updated` or an `error` (the session stays open); `input_audio_buffer.append`
//!   (no ack), `.commit` (error `input_audio_buffer_commit_empty` under 100 ms), `.clear` →
//!   `cleared`. A transcription model nobody serves is an `error` with code
//!   `model_not_found` (the session stays open, unchanged). With `turn_detection` set,
//!   [`vad`](super::vad) finds speech in the audio and commits turns itself. Each committed
//!   turn is transcribed by [`turn`]. Conversation events (`response.create`,
//!   `conversation.item.*`, ...) are refused with `unsupported_value`.
//! * **Conversation session**: this loop decodes and records `input_audio_buffer.append`
//!   and records every event, then hands the session's events to [`Conversation`]; the few
//!   it does not implement (`conversation.item.retrieve`, the WebRTC-only
//!   `output_audio_buffer.clear`) get `unsupported_value`.
//! * **Both**: `transcription_session.update` → error `beta_api_shape_disabled`; pings are
//!   counted; binary frames and non-JSON text get an `error`; the session expires after
//!   `realtime_session_max` (an `error`, then a close, §1.8); a shutdown closes with 1001.
//! * **Quirks** (when on, transcription sessions): `conversation.item.created` (beta-era
//!   name) besides `.added`, `conversation.item.done`, a made-up future event type once per
//!   turn, `obfuscation` on deltas, odd delta boundaries.
//!
//! A connection is a reader loop (this session's state, driven by client frames) and a writer
//! task that owns the socket's sending half and obeys [`Outbound`] (faults included).

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conversation::{self, Conversation};
use super::error::ApiError;
use super::fault::{CLOSE_SESSION_REJECTED, Fault, SimStage, Taker};
use super::models::{self, ModelKind};
use super::record::{RealtimeRecord, RecordRef};
use super::session::TranscriptionSession;
use super::state::{Shared, header_text};
use super::synth::BYTES_PER_SAMPLE;
use super::text;
use super::turn::{self, Outbound, TurnEmitter, TurnPlan};
use super::vad::{Vad, VadEvent};
use crate::http::{bearer, fault_response};

/// Server events queued for the writer; bounded so a client that stops reading slows the
/// session down instead of growing memory.
const OUTBOUND_QUEUE_EVENTS: usize = 256;
/// Largest decoded `input_audio_buffer.append` (§1.5: 15 MiB).
const MAX_APPEND_BYTES: usize = 15 * 1024 * 1024;
/// Shortest committable buffer (§1.5: "Expected at least 100ms").
const MIN_COMMIT_MS: u64 = 100;
/// PCM16 bytes per millisecond at 24 kHz mono.
pub(crate) const BYTES_PER_MS: u64 = 48;
/// Close code when the simulator shuts down ("going away").
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code after a `session_expired` error (the real one is unconfirmed, §1.8).
const CLOSE_SESSION_EXPIRED: u16 = 1000;
/// Subprotocol carrying a key from browsers (§1.1).
const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";
/// Subprotocol of the beta API (§1.1).
const BETA_SUBPROTOCOL: &str = "openai-beta.realtime-v1";
/// The service's message for the beta shape (docs/openai-wire.md §0, TanStack/ai#586).
const BETA_DISABLED_MESSAGE: &str =
    "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.";
/// Made-up event type sent once per turn with quirks on: clients must ignore unknown types.
const FUTURE_EVENT_TYPE: &str = "conversation.item.input_audio_transcription.sim_future_event";
/// Client event types of the GA API, for the "Supported values" of an unknown type.
const CLIENT_EVENT_TYPES: &[&str] = &[
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
];

/// Base64 as clients send it; padding optional.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What kind of session a connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Transcription,
    Conversation {
        model: Option<String>,
    },
    /// Refused after the upgrade: this `error` event, then a close with `close_code`.
    Rejected {
        error: ApiError,
        close_code: u16,
    },
}

/// Handles the handshake; see the module docs.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let at = shared.add_realtime(RealtimeRecord {
        query: query.clone(),
        authorization: header_text(&headers, "authorization"),
        openai_beta: header_text(&headers, "openai-beta"),
        subprotocols: header_text(&headers, "sec-websocket-protocol"),
        ..RealtimeRecord::default()
    });
    let refuse = |response: Response| {
        shared.update_realtime(at, |record| {
            record.rejected_status = Some(response.status().as_u16());
            record.closed = true;
        });
        response
    };
    let token = bearer(&headers).or_else(|| {
        subprotocols(&headers).find_map(|protocol| protocol.strip_prefix(KEY_SUBPROTOCOL_PREFIX))
    });
    if let Err(error) = shared.authorize(token) {
        return refuse(error.into_response());
    }
    let mut rejected = None;
    if let Some(fault) = shared.take_fault(SimStage::Realtime, Taker::Connection) {
        shared.update_realtime(at, |record| record.faults.push(fault.clone()));
        if let Fault::ErrorAfterUpgrade {
            error_type,
            code,
            message,
            close_code,
        } = &fault
        {
            let error = ApiError::new(axum::http::StatusCode::BAD_REQUEST, error_type, message)
                .with_code(code.as_deref());
            rejected = Some(Kind::Rejected {
                error,
                close_code: *close_code,
            });
        } else if let Some(response) = fault_response(&fault) {
            return refuse(response);
        }
    }
    let Ok(upgrade) = upgrade else {
        return refuse(
            ApiError::invalid_request(
                "This endpoint expects a WebSocket upgrade request.",
                None,
                None,
            )
            .into_response(),
        );
    };
    let handshake_ms = shared.config().realtime_handshake_ms;
    if handshake_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(handshake_ms)).await;
    }
    let params = Query::parse(query.as_deref());
    let beta = header_text(&headers, "openai-beta").is_some_and(|value| value.contains("realtime"))
        || subprotocols(&headers).any(|protocol| protocol == BETA_SUBPROTOCOL);
    let config = shared.config();
    let kind = if let Some(rejected) = rejected {
        rejected
    } else if beta {
        Kind::Rejected {
            error: ApiError::invalid_request(
                BETA_DISABLED_MESSAGE,
                None,
                Some("beta_api_shape_disabled"),
            ),
            close_code: CLOSE_SESSION_REJECTED,
        }
    } else if let Some(Err(error)) = params
        .model
        .as_deref()
        .map(|model| models::check(&config, model, ModelKind::Realtime, "model"))
    {
        Kind::Rejected {
            error,
            close_code: CLOSE_SESSION_REJECTED,
        }
    } else if params.model.is_some() || params.intent.as_deref() != Some("transcription") {
        Kind::Conversation {
            model: params.model,
        }
    } else {
        Kind::Transcription
    };
    upgrade
        .protocols(["realtime"])
        .on_upgrade(move |socket| Connection::run(socket, shared, at, kind))
}

fn subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
}

/// The query parameters that matter.
#[derive(Debug, Default)]
struct Query {
    intent: Option<String>,
    model: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut parsed = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "intent" => parsed.intent = Some(value.to_owned()),
                "model" => parsed.model = Some(value.to_owned()),
                _ => {}
            }
        }
        parsed
    }
}

/// The state of one session, owned by its reader loop.
#[derive(Debug)]
struct Connection {
    shared: Arc<Shared>,
    at: RecordRef,
    out: mpsc::Sender<Outbound>,
    /// Cancelled when the connection ends for any reason; stops turns and the writer.
    done: CancellationToken,
    kind: Kind,
    session: TranscriptionSession,
    /// Bytes appended over the whole session: the clock of `audio_start_ms` / `audio_end_ms`.
    total_bytes: u64,
    /// Session byte offset where the uncommitted input buffer starts.
    buffer_start: u64,
    vad: Option<Vad>,
    /// The item id announced by `speech_started`, and where that speech started (ms).
    speech: Option<(String, u64)>,
    last_item_id: Option<String>,
    /// The open turn: audio has been appended since the last commit.
    turn: Option<TurnEmitter>,
    turns_committed: u64,
    /// `out_of_order`: releases the held turn once the next one completes.
    held_turn: Option<oneshot::Sender<()>>,
    /// [`Fault::Freeze`]: nothing more is read or sent.
    frozen: bool,
    /// [`Fault::DropAfterAudio`]: the session's audio byte count at which the connection drops.
    drop_at_audio_bytes: Option<u64>,
    /// When the service ends the session, and how long it lasted by then.
    expires: tokio::time::Instant,
    lifetime: std::time::Duration,
    /// The conversation session's own state; `None` unless [`Kind::Conversation`].
    conversation: Option<Conversation>,
}

impl Connection {
    async fn run(socket: WebSocket, shared: Arc<Shared>, at: RecordRef, kind: Kind) {
        let (sink, stream) = socket.split();
        let (out, rx) = mpsc::channel(OUTBOUND_QUEUE_EVENTS);
        let done = CancellationToken::new();
        let writer = tokio::spawn(write_loop(sink, rx, Arc::clone(&shared), at, done.clone()));
        let lifetime = shared.config().realtime_session_max;
        let session = TranscriptionSession::expiring_in(lifetime);
        let vad = session
            .turn_detection
            .vad_params()
            .map(|params| Vad::new(params, 0));
        let conversation = match &kind {
            Kind::Conversation { model } => Some(Conversation::new(
                Arc::clone(&shared),
                at,
                out.clone(),
                done.clone(),
                &session.id,
                model.as_deref(),
                lifetime,
            )),
            _ => None,
        };
        let mut connection = Self {
            shared,
            at,
            out,
            done,
            kind,
            session,
            total_bytes: 0,
            buffer_start: 0,
            vad,
            speech: None,
            last_item_id: None,
            turn: None,
            turns_committed: 0,
            held_turn: None,
            frozen: false,
            drop_at_audio_bytes: None,
            expires: tokio::time::Instant::now() + lifetime,
            lifetime,
            conversation,
        };
        connection.start().await;
        connection.read_loop(stream).await;
        connection.done.cancel();
        let _ = writer.await;
        connection
            .shared
            .update_realtime(connection.at, |record| record.closed = true);
    }

    /// The first events: `session.created`, or the beta rejection.
    async fn start(&mut self) {
        let id = self.session.id.clone();
        self.shared
            .update_realtime(self.at, |record| record.session_id = Some(id.clone()));
        let session = match (&self.kind, &self.conversation) {
            (Kind::Conversation { .. }, Some(conversation)) => conversation.session_json(),
            (Kind::Transcription | Kind::Conversation { .. }, _) => self.session.to_json(),
            (Kind::Rejected { error, close_code }, _) => {
                let reason = error.code.clone().unwrap_or_else(|| error.kind.clone());
                let code = *close_code;
                self.send(error.realtime_event(None)).await;
                let _ = self.out.send(Outbound::Close { code, reason }).await;
                return;
            }
        };
        self.send(
            json!({ "type": "session.created", "event_id": text::event_id(), "session": session }),
        )
        .await;
    }

    /// The session reached its maximum duration: an `error`, then the close (§1.8).
    async fn expire(&mut self) {
        let seconds = self.lifetime.as_secs();
        let length = if seconds >= 60 && seconds.is_multiple_of(60) {
            format!("{} minutes", seconds / 60)
        } else {
            format!("{:.1} seconds", self.lifetime.as_secs_f64())
        };
        let error = ApiError::invalid_request(
            format!("Your session hit the maximum duration of {length}."),
            None,
            Some("session_expired"),
        );
        self.send_error(error, None).await;
        let _ = self
            .out
            .send(Outbound::Close {
                code: CLOSE_SESSION_EXPIRED,
                reason: "session expired".to_owned(),
            })
            .await;
    }

    async fn read_loop(&mut self, mut stream: SplitStream<WebSocket>) {
        let shutdown = self.shared.shutdown.clone();
        let done = self.done.clone();
        let mut expired = false;
        loop {
            let frozen =
                self.frozen || self.conversation.as_ref().is_some_and(Conversation::frozen);
            let message = tokio::select! {
                message = stream.next(), if !frozen => message,
                () = done.cancelled() => break,
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(self.expires), if !expired && !frozen => {
                    expired = true;
                    self.expire().await;
                    continue;
                }
            };
            match message {
                Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                Some(Ok(Message::Binary(bytes))) => {
                    self.record_event(|| json!({ "binary_frame_bytes": bytes.len() }));
                    let error = ApiError::invalid_request(
                        "Binary frames are not supported. Send JSON events as text frames.",
                        None,
                        Some("invalid_event"),
                    );
                    self.send_error(error, None).await;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(Message::Ping(_))) => {
                    self.shared
                        .update_realtime(self.at, |record| record.pings += 1);
                }
                Some(Ok(Message::Pong(_))) => {}
            }
        }
    }

    async fn on_text(&mut self, raw: &str) {
        let Ok(event) = serde_json::from_str::<Value>(raw) else {
            self.record_event(|| Value::String(raw.to_owned()));
            let error = ApiError::invalid_request(
                "We could not parse the JSON body of your request. Expected a JSON object.",
                None,
                Some("invalid_json"),
            );
            self.send_error(error, None).await;
            return;
        };
        let event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let event_id = event_id.as_deref();
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "input_audio_buffer.append" {
            self.append(&event, event_id).await;
            return;
        }
        self.record_event(|| event.clone());
        if let Some(conversation) = &mut self.conversation
            && conversation::handles(kind)
        {
            conversation.on_event(kind, &event, event_id).await;
            return;
        }
        match (&self.kind, kind) {
            (_, "") => {
                let error = ApiError::invalid_request(
                    "The 'type' field is missing.",
                    None,
                    Some("invalid_event"),
                );
                self.send_error(error, event_id).await;
            }
            (_, "transcription_session.update") => {
                let error = ApiError::invalid_request(
                    BETA_DISABLED_MESSAGE,
                    Some("type"),
                    Some("beta_api_shape_disabled"),
                );
                self.send_error(error, event_id).await;
            }
            (Kind::Transcription, "session.update") => self.session_update(&event, event_id).await,
            (Kind::Transcription, "input_audio_buffer.commit") => self.commit(event_id).await,
            (Kind::Transcription, "input_audio_buffer.clear") => self.clear().await,
            (_, known) if CLIENT_EVENT_TYPES.contains(&known) => {
                let error = ApiError::unsupported_by_simulator(
                    "type",
                    match self.kind {
                        Kind::Transcription => format!(
                            "'{known}' is not supported in a transcription session: it creates \
                             no responses and keeps no conversation."
                        ),
                        _ => format!("The OpenAI simulator does not implement '{known}'."),
                    },
                );
                self.send_error(error, event_id).await;
            }
            (_, unknown) => {
                self.send_error(
                    ApiError::invalid_value("type", unknown, CLIENT_EVENT_TYPES),
                    event_id,
                )
                .await;
            }
        }
    }

    async fn session_update(&mut self, event: &Value, event_id: Option<&str>) {
        let Some(update) = event.get("session") else {
            self.send_error(ApiError::missing("session"), event_id)
                .await;
            return;
        };
        let before = self.session.turn_detection.clone();
        let config = self.shared.config();
        if let Err(error) = self.session.apply_update(update, &config) {
            self.send_error(error, event_id).await;
            return;
        }
        if self.session.turn_detection != before {
            let position = self.total_bytes / BYTES_PER_SAMPLE as u64;
            self.vad = self
                .session
                .turn_detection
                .vad_params()
                .map(|params| Vad::new(params, position));
            self.speech = None;
        }
        let updated = json!({ "type": "session.updated", "event_id": text::event_id(), "session": self.session.to_json() });
        self.send(updated).await;
    }

    async fn append(&mut self, event: &Value, event_id: Option<&str>) {
        let decoded = match event.get("audio") {
            None => Err(ApiError::missing("audio")),
            Some(Value::String(audio)) => BASE64.decode(audio).map_err(|_| {
                ApiError::invalid_request(
                    "Invalid 'audio'. Expected base64-encoded audio bytes.",
                    Some("audio"),
                    Some("invalid_value"),
                )
            }),
            Some(other) => Err(ApiError::invalid_type("audio", "a string", other)),
        };
        // Recorded without the (large) base64 audio, with its decoded length instead.
        self.record_event(|| {
            let mut recorded: Map<String, Value> = event
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(key, _)| *key != "audio")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            recorded.insert(
                "audio_bytes".into(),
                json!(decoded.as_ref().map_or(0, Vec::len)),
            );
            Value::Object(recorded)
        });
        let audio = match decoded {
            Ok(audio) if audio.len() > MAX_APPEND_BYTES => {
                let error = ApiError::invalid_request(
                    format!(
                        "Invalid 'audio': audio chunk too large. Expected at most {MAX_APPEND_BYTES} bytes per append."
                    ),
                    Some("audio"),
                    Some("invalid_value"),
                );
                self.send_error(error, event_id).await;
                return;
            }
            Ok(audio) => audio,
            Err(error) => {
                self.send_error(error, event_id).await;
                return;
            }
        };
        self.shared.update_realtime(self.at, |record| {
            record.audio_bytes += audio.len();
            record.audio.extend_from_slice(&audio);
        });
        if let Some(conversation) = &mut self.conversation {
            conversation.append(&audio).await;
            return;
        }
        if self.kind != Kind::Transcription || audio.is_empty() {
            return;
        }
        if self.turn.is_none() {
            self.open_turn().await;
        }
        self.total_bytes += audio.len() as u64;
        if self
            .drop_at_audio_bytes
            .is_some_and(|at| self.total_bytes >= at)
        {
            self.drop_at_audio_bytes = None;
            let _ = self.out.send(Outbound::Abort).await;
            return;
        }
        let mut found = Vec::new();
        if let Some(vad) = &mut self.vad {
            vad.push(&audio, &mut found);
        }
        for event in found {
            self.on_vad(event).await;
        }
    }

    async fn on_vad(&mut self, event: VadEvent) {
        match event {
            VadEvent::SpeechStarted { audio_start_ms } => {
                let audio_start_ms = audio_start_ms.max(self.buffer_start / BYTES_PER_MS);
                let item_id = text::item_id();
                self.speech = Some((item_id.clone(), audio_start_ms));
                let started = json!({
                    "type": "input_audio_buffer.speech_started",
                    "event_id": text::event_id(),
                    "audio_start_ms": audio_start_ms,
                    "item_id": item_id,
                });
                self.emit_turn(started).await;
            }
            VadEvent::SpeechStopped {
                audio_end_ms,
                detected_at_ms,
            } => {
                let Some((item_id, start_ms)) = self.speech.take() else {
                    return;
                };
                let stopped = json!({
                    "type": "input_audio_buffer.speech_stopped",
                    "event_id": text::event_id(),
                    "audio_end_ms": audio_end_ms,
                    "item_id": item_id,
                });
                self.emit_turn(stopped).await;
                self.buffer_start = detected_at_ms * BYTES_PER_MS;
                self.commit_turn(item_id, audio_end_ms.saturating_sub(start_ms))
                    .await;
            }
        }
    }

    /// A client `input_audio_buffer.commit`.
    async fn commit(&mut self, event_id: Option<&str>) {
        let buffered = self.total_bytes - self.buffer_start;
        if let Err(error) = check_commit(buffered) {
            self.send_error(error, event_id).await;
            return;
        }
        self.buffer_start = self.total_bytes;
        if let Some(vad) = &mut self.vad {
            vad.reset();
        }
        let item_id = self
            .speech
            .take()
            .map_or_else(text::item_id, |(item_id, _)| item_id);
        self.commit_turn(item_id, buffered / BYTES_PER_MS).await;
    }

    async fn clear(&mut self) {
        self.buffer_start = self.total_bytes;
        self.speech = None;
        if let Some(vad) = &mut self.vad {
            vad.reset();
        }
        self.send(json!({ "type": "input_audio_buffer.cleared", "event_id": text::event_id() }))
            .await;
    }

    /// Opens a turn at its first audio and gives it the next turn fault, if any.
    async fn open_turn(&mut self) {
        let mut turn = TurnEmitter::new(self.out.clone());
        match self.take_turn_fault() {
            Some(Fault::Freeze) => {
                self.frozen = true;
                let _ = self.out.send(Outbound::Stall).await;
            }
            Some(Fault::DropAfterAudio { bytes }) => {
                self.drop_at_audio_bytes = Some(self.total_bytes + bytes as u64);
            }
            Some(fault) => turn.arm(fault).await,
            None => {}
        }
        self.turn = Some(turn);
    }

    fn take_turn_fault(&self) -> Option<Fault> {
        let fault = self.shared.take_fault(SimStage::Realtime, Taker::Turn)?;
        self.shared
            .update_realtime(self.at, |record| record.faults.push(fault.clone()));
        Some(fault)
    }

    /// Sends an event of the open turn.
    async fn emit_turn(&mut self, event: Value) {
        if self.turn.is_none() {
            self.open_turn().await;
        }
        if let Some(turn) = &mut self.turn {
            turn.emit(event).await;
        }
    }

    /// Commits the open turn as item `item_id` with `audio_ms` of audio and starts
    /// transcribing it.
    async fn commit_turn(&mut self, item_id: String, audio_ms: u64) {
        let mut turn = match self.turn.take() {
            Some(turn) => turn,
            None => TurnEmitter::new(self.out.clone()),
        };
        if !turn.has_fault()
            && let Some(fault) = self.take_turn_fault()
        {
            turn.arm(fault).await;
        }
        let config = self.shared.config();
        let previous_item_id = self.last_item_id.replace(item_id.clone());
        turn.emit(json!({
            "type": "input_audio_buffer.committed",
            "event_id": text::event_id(),
            "previous_item_id": previous_item_id,
            "item_id": item_id,
        }))
        .await;
        let item = turn::user_item(&item_id, None);
        if config.quirks {
            let mut created = item.clone();
            created["content"] = json!([]);
            turn.emit(json!({
                "type": "conversation.item.created",
                "event_id": text::event_id(),
                "previous_item_id": previous_item_id,
                "item": created,
            }))
            .await;
        }
        turn.emit(json!({
            "type": "conversation.item.added",
            "event_id": text::event_id(),
            "previous_item_id": previous_item_id,
            "item": item,
        }))
        .await;
        if config.quirks {
            turn.emit(json!({
                "type": FUTURE_EVENT_TYPE,
                "event_id": text::event_id(),
                "item_id": item_id,
                "note": "An event type this client does not know; it must be ignored.",
            }))
            .await;
        }
        // A turn whose transcription fails does not use up a scripted transcript.
        let scripted = if turn.transcription_fails() {
            None
        } else {
            self.shared.pop_transcript()
        };
        let transcript = scripted.unwrap_or_else(|| text::duration_transcript(audio_ms));
        let index = self.turns_committed;
        self.turns_committed += 1;
        let (hold, release) = if !config.out_of_order {
            (None, None)
        } else if index.is_multiple_of(2) {
            let (release, hold) = oneshot::channel();
            self.held_turn = Some(release);
            (Some(hold), None)
        } else {
            (None, self.held_turn.take())
        };
        let plan = TurnPlan {
            item_id,
            previous_item_id,
            transcript,
            audio_ms,
            prompt: self.session.prompt().to_owned(),
            first_delta: std::time::Duration::from_millis(config.stt_first_delta_ms),
            delta_interval: std::time::Duration::from_millis(config.stt_delta_interval_ms),
            quirks: config.quirks,
            item_done: config.quirks,
            logprobs: self.session.wants_logprobs(),
            seed: self.shared.next_seed(),
            hold,
            release,
        };
        tokio::spawn(turn::run(turn, plan, self.done.clone()));
    }

    /// Records a client event; `event` is only built when recording.
    fn record_event(&self, event: impl FnOnce() -> Value) {
        if self.at.is_recorded() {
            let event = event();
            self.shared
                .update_realtime(self.at, |record| record.events.push(event));
        }
    }

    /// Sends an event that belongs to no turn.
    async fn send(&self, event: Value) {
        let _ = self.out.send(Outbound::Event(event)).await;
    }

    async fn send_error(&self, error: ApiError, client_event_id: Option<&str>) {
        self.send(error.realtime_event(client_event_id)).await;
    }
}

/// Whether a buffer of `buffered` bytes can be committed: the service's
/// `input_audio_buffer_commit_empty` under [`MIN_COMMIT_MS`] (§1.5).
pub(crate) fn check_commit(buffered: u64) -> Result<(), ApiError> {
    if buffered / BYTES_PER_MS >= MIN_COMMIT_MS {
        return Ok(());
    }
    // Byte counts of a buffer under 100 ms are tiny: exact in f64.
    let ms = buffered as f64 / BYTES_PER_MS as f64;
    Err(ApiError::invalid_request(
        format!(
            "Error committing input audio buffer: buffer too small. Expected at least \
             {MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2}ms of audio."
        ),
        None,
        Some("input_audio_buffer_commit_empty"),
    ))
}

/// Owns the socket's sending half: writes events, applies Abort/Stall, closes.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    shared: Arc<Shared>,
    at: RecordRef,
    done: CancellationToken,
) {
    let shutdown = shared.shutdown.clone();
    let mut stalled = false;
    loop {
        let next = tokio::select! {
            next = rx.recv() => next,
            () = done.cancelled() => {
                // The reader also stops on shutdown and cancels `done`: say why if so.
                if shutdown.is_cancelled() {
                    going_away(&mut sink).await;
                } else {
                    let _ = sink.close().await;
                }
                return;
            }
            () = shutdown.cancelled() => {
                going_away(&mut sink).await;
                done.cancel();
                return;
            }
        };
        match next {
            None => return,
            Some(Outbound::Event(_)) if stalled => {}
            Some(Outbound::Event(event)) => {
                let kind = event["type"].as_str().unwrap_or_default().to_owned();
                if sink
                    .send(Message::Text(event.to_string().into()))
                    .await
                    .is_err()
                {
                    done.cancel();
                    return;
                }
                shared.update_realtime(at, |record| record.sent_types.push(kind));
            }
            Some(Outbound::Stall) => stalled = true,
            Some(Outbound::Close { code, reason }) => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                done.cancel();
                return;
            }
            Some(Outbound::Abort) => {
                // Dropping both halves without a close frame: the client sees the TCP
                // connection end mid-session.
                done.cancel();
                return;
            }
        }
    }
}

/// Closes with 1001: the simulator is shutting down.
async fn going_away(sink: &mut SplitSink<WebSocket, Message>) {
    let frame = CloseFrame {
        code: CLOSE_GOING_AWAY,
        reason: "simulator shutting down".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::super::vad;
    use super::*;

    #[test]
    fn query_parsing_finds_intent_and_model() {
        let query = Query::parse(Some("intent=transcription&x=1"));
        assert_eq!(query.intent.as_deref(), Some("transcription"));
        assert!(query.model.is_none());
        assert_eq!(
            Query::parse(Some("model=gpt-realtime")).model.as_deref(),
            Some("gpt-realtime")
        );
        assert!(Query::parse(None).intent.is_none());
    }

    #[test]
    fn base64_padding_is_optional() {
        assert_eq!(BASE64.decode("AAE=").expect("padded"), [0, 1]);
        assert_eq!(BASE64.decode("AAE").expect("unpadded"), [0, 1]);
        assert!(BASE64.decode("not base64!").is_err());
    }

    #[test]
    fn vad_times_use_the_session_clock() {
        assert_eq!(
            vad::ms_to_samples(1000) * BYTES_PER_SAMPLE as u64,
            1000 * BYTES_PER_MS
        );
    }
}
