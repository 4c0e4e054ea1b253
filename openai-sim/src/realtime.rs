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
use super::input::{Configurable, Heard, InputBuffer};
use super::link::SessionLink;
use super::models::{self, ModelKind};
use super::record::{RealtimeRecord, RecordRef};
use super::session::{self, TranscriptionSession};
use super::state::{Shared, header_text};
use super::text;
use super::turn::{self, Outbound, TurnEmitter, TurnPlan};
use crate::http::{bearer, fault_response};

/// Server events queued for the writer; bounded so a client that stops reading slows the
/// session down instead of growing memory.
const OUTBOUND_QUEUE_EVENTS: usize = 256;
/// Largest decoded `input_audio_buffer.append` (§1.5: 15 MiB).
const MAX_APPEND_BYTES: usize = 15 * 1024 * 1024;
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
    link: SessionLink,
    kind: Kind,
    session: TranscriptionSession,
    /// The transcription session's input buffer (a conversation session keeps its own).
    input: InputBuffer,
    last_item_id: Option<String>,
    /// The open turn: audio has been appended since the last commit.
    turn: Option<TurnEmitter>,
    turns_committed: u64,
    /// `out_of_order`: releases the held turn once the next one completes.
    held_turn: Option<oneshot::Sender<()>>,
    /// [`Fault::Freeze`]: nothing more is read or sent.
    frozen: bool,
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
        let link = SessionLink {
            shared,
            at,
            out,
            done,
        };
        let conversation = match &kind {
            Kind::Conversation { model } => Some(Conversation::new(
                link.clone(),
                &session.id,
                model.as_deref(),
                session::expires_at(lifetime),
            )),
            _ => None,
        };
        let mut connection = Self {
            input: InputBuffer::new(session.turn_detection()),
            link,
            kind,
            session,
            last_item_id: None,
            turn: None,
            turns_committed: 0,
            held_turn: None,
            frozen: false,
            expires: tokio::time::Instant::now() + lifetime,
            lifetime,
            conversation,
        };
        connection.start().await;
        connection.read_loop(stream).await;
        connection.link.done.cancel();
        let _ = writer.await;
        connection.link.update(|record| record.closed = true);
    }

    /// The first events: `session.created`, or the beta rejection.
    async fn start(&mut self) {
        let id = self.session.id.clone();
        self.link
            .update(|record| record.session_id = Some(id.clone()));
        let session = match (&self.kind, &self.conversation) {
            (Kind::Conversation { .. }, Some(conversation)) => conversation.session_json(),
            (Kind::Transcription | Kind::Conversation { .. }, _) => self.session.session_json(),
            (Kind::Rejected { error, close_code }, _) => {
                let reason = error.code.clone().unwrap_or_else(|| error.kind.clone());
                let code = *close_code;
                self.link.send(error.realtime_event(None)).await;
                self.link.order(Outbound::Close { code, reason }).await;
                return;
            }
        };
        let created = json!({
            "type": "session.created",
            "event_id": text::event_id(),
            "session": session,
        });
        self.link.send(created).await;
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
        self.link.send_error(error, None).await;
        self.link
            .order(Outbound::Close {
                code: CLOSE_SESSION_EXPIRED,
                reason: "session expired".to_owned(),
            })
            .await;
    }

    async fn read_loop(&mut self, mut stream: SplitStream<WebSocket>) {
        let shutdown = self.link.shared.shutdown.clone();
        let done = self.link.done.clone();
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
                    self.link
                        .record_event(|| json!({ "binary_frame_bytes": bytes.len() }));
                    let error = ApiError::invalid_request(
                        "Binary frames are not supported. Send JSON events as text frames.",
                        None,
                        Some("invalid_event"),
                    );
                    self.link.send_error(error, None).await;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(Message::Ping(_))) => self.link.update(|record| record.pings += 1),
                Some(Ok(Message::Pong(_))) => {}
            }
        }
    }

    async fn on_text(&mut self, raw: &str) {
        let Ok(event) = serde_json::from_str::<Value>(raw) else {
            self.link.record_event(|| Value::String(raw.to_owned()));
            let error = ApiError::invalid_request(
                "We could not parse the JSON body of your request. Expected a JSON object.",
                None,
                Some("invalid_json"),
            );
            self.link.send_error(error, None).await;
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
        self.link.record_event(|| event.clone());
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
                self.link.send_error(error, event_id).await;
            }
            (_, "transcription_session.update") => {
                let error = ApiError::invalid_request(
                    BETA_DISABLED_MESSAGE,
                    Some("type"),
                    Some("beta_api_shape_disabled"),
                );
                self.link.send_error(error, event_id).await;
            }
            (Kind::Transcription, "session.update") => self.session_update(&event, event_id).await,
            (Kind::Transcription, "input_audio_buffer.commit") => self.commit(event_id).await,
            (Kind::Transcription, "input_audio_buffer.clear") => {
                self.link.send(self.input.clear()).await;
            }
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
                self.link.send_error(error, event_id).await;
            }
            (_, unknown) => {
                self.link
                    .send_error(
                        ApiError::invalid_value("type", unknown, CLIENT_EVENT_TYPES),
                        event_id,
                    )
                    .await;
            }
        }
    }

    async fn session_update(&mut self, event: &Value, event_id: Option<&str>) {
        let config = self.link.shared.config();
        let updated = self
            .input
            .update_session(&mut self.session, event, |session, update| {
                session.apply_update(update, &config)
            });
        self.link.answer(updated, event_id).await;
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
        self.link.record_event(|| {
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
                self.link.send_error(error, event_id).await;
                return;
            }
            Ok(audio) => audio,
            Err(error) => {
                self.link.send_error(error, event_id).await;
                return;
            }
        };
        self.link.update(|record| {
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
        let Some(heard) = self.input.push(&audio) else {
            self.link.order(Outbound::Abort).await;
            return;
        };
        for heard in heard {
            match heard {
                Heard::Started(started) => self.emit_turn(started).await,
                Heard::Stopped {
                    event,
                    item_id,
                    audio_ms,
                } => {
                    self.emit_turn(event).await;
                    self.commit_turn(item_id, audio_ms).await;
                }
            }
        }
    }

    /// A client `input_audio_buffer.commit`.
    async fn commit(&mut self, event_id: Option<&str>) {
        match self.input.commit() {
            Ok((item_id, audio_ms)) => self.commit_turn(item_id, audio_ms).await,
            Err(error) => self.link.send_error(error, event_id).await,
        }
    }

    /// Opens a turn at its first audio and gives it the next turn fault, if any.
    async fn open_turn(&mut self) {
        let mut turn = TurnEmitter::new(self.link.out.clone());
        match self.link.take_fault(Taker::Turn) {
            Some(Fault::Freeze) => {
                self.frozen = true;
                self.link.order(Outbound::Stall).await;
            }
            Some(Fault::DropAfterAudio { bytes }) => self.input.drop_after(bytes),
            Some(fault) => turn.arm(fault).await,
            None => {}
        }
        self.turn = Some(turn);
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
            None => TurnEmitter::new(self.link.out.clone()),
        };
        if !turn.has_fault()
            && let Some(fault) = self.link.take_fault(Taker::Turn)
        {
            turn.arm(fault).await;
        }
        let config = self.link.shared.config();
        let previous_item_id = self.last_item_id.replace(item_id.clone());
        let previous = previous_item_id.as_deref();
        turn.emit(turn::committed_event(previous, &item_id)).await;
        let item = turn::user_item(&item_id, None);
        if config.quirks {
            let mut created = item.clone();
            created["content"] = json!([]);
            turn.emit(turn::item_event(
                "conversation.item.created",
                previous,
                &created,
            ))
            .await;
        }
        turn.emit(turn::item_event("conversation.item.added", previous, &item))
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
        let transcript = if turn.transcription_fails() {
            text::duration_transcript(audio_ms)
        } else {
            self.link.shared.next_transcript(audio_ms)
        };
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
        let seed = self.link.shared.next_seed();
        let plan = TurnPlan {
            prompt: self.session.prompt().to_owned(),
            item_done: config.quirks,
            logprobs: self.session.wants_logprobs(),
            hold,
            release,
            ..TurnPlan::new(
                item_id,
                previous_item_id,
                transcript,
                audio_ms,
                &config,
                seed,
            )
        };
        tokio::spawn(turn::run(turn, plan, self.link.done.clone()));
    }
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
}
