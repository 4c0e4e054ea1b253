//! The transcriber: one OpenAI Realtime *transcription* WebSocket per session, GA shape
//! (`docs/openai-wire.md` §1): `…/realtime?intent=transcription`, only the `Authorization` header,
//! `session.update` with `session.type = "transcription"` and `audio/pcm` at 24000,
//! `input_audio_buffer.append` with base64 audio, `commit` at the end of a client-detected turn.
//!
//! A task owns the socket. The session sends it [`TranscriberCommand`]s and reads [`TranscriberEvent`]s, both
//! over bounded channels; the task ends when the session drops its handle, when the cancel
//! token fires, or when the upstream closes. Server events are parsed leniently: unknown types
//! and extra fields are ignored, as OpenAI adds both over time.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::TurnDetection;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument as _;

use super::{UpstreamConfig, UpstreamError, classify_http_error, parse_retry_after};

/// Commands buffered towards the upstream: 256 frames of 20 ms are five seconds of speech, enough
/// to ride out a slow connect without dropping the user's first words.
pub const TRANSCRIBER_COMMAND_QUEUE_FRAMES: usize = 256;

/// The upstream WebSocket.
pub(super) type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Events buffered towards the session; they are small and the session reads them promptly.
const TRANSCRIBER_EVENT_QUEUE: usize = 64;

/// What the session asks of the transcriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranscriberCommand {
    /// Audio: PCM16 LE mono 24 kHz, whole samples.
    Append(Bytes),
    /// End of a turn (client turn detection): transcribe what was appended.
    Commit,
    /// Forget audio appended since the last commit.
    Clear,
}

/// Bytes the upstream socket reads at a time. Transcription events are small and an answer's
/// audio delta (100 ms, base64 in JSON) is about 7 KB; the buffer grows for larger messages.
/// The library's default, 128 KiB, is zero-filled before every read and held by every session:
/// most of an idle session's memory and a fifth of the proxy's CPU under load.
const UPSTREAM_READ_BUFFER_BYTES: usize = 8 * 1024;

/// Pings sent per stall timeout while the transcription socket is open: three, so one lost
/// pong does not count as a dead socket.
const KEEPALIVE_PINGS_PER_STALL_TIMEOUT: u32 = 3;

/// What the transcriber reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriberEvent {
    /// The upstream accepted the session configuration.
    Ready {
        /// When the upstream will end the session (`session.expires_at`, Unix seconds).
        expires_at_unix_s: Option<u64>,
    },
    /// Server VAD heard speech start; `item_id` names the turn's future item.
    SpeechStarted {
        /// The item the turn will become.
        item_id: String,
    },
    /// Server VAD heard speech end.
    SpeechStopped {
        /// The item.
        item_id: String,
    },
    /// A turn's audio was committed (by us or by server VAD) as an item.
    Committed {
        /// The new item.
        item_id: String,
        /// The item before it, which orders turns.
        previous_item_id: Option<String>,
    },
    /// More transcript for an item.
    Delta {
        /// The item.
        item_id: String,
        /// Text to append.
        delta: String,
    },
    /// The final transcript of an item.
    Completed {
        /// The item.
        item_id: String,
        /// The whole text.
        transcript: String,
    },
    /// Transcribing an item failed (e.g. unintelligible audio).
    Failed {
        /// The item.
        item_id: String,
        /// The upstream's code, for the log.
        code: Option<String>,
    },
    /// A commit found (almost) no audio; the turn is dropped.
    CommitEmpty,
    /// An item's transcription request failed upstream (file transcription): the turn is
    /// dropped and the error reported.
    TurnFailed {
        /// The item.
        item_id: String,
        /// What failed.
        error: UpstreamError,
    },
    /// A recoverable `error` event; the session stays open.
    Error {
        /// The upstream's code.
        code: Option<String>,
        /// The upstream's message, for the log.
        message: String,
    },
    /// The connection failed or ended; the transcriber is gone.
    Closed(UpstreamError),
}

/// The session's end of a task that owns an upstream socket. Dropping it ends the task and
/// closes the socket, whatever the socket is doing.
#[derive(Debug)]
pub struct UpstreamHandle<C, E> {
    /// Commands to the upstream.
    pub commands: mpsc::Sender<C>,
    /// Events from the upstream.
    pub events: mpsc::Receiver<E>,
    _stop_on_drop: DropGuard,
}

/// The session's end of a running transcriber.
pub type TranscriberHandle = UpstreamHandle<TranscriberCommand, TranscriberEvent>;

/// Starts `task` on bounded queues of these sizes, in the caller's span (its log lines carry
/// the session's id); a task that fails reports it as its last event, `closed(error)`.
pub(super) fn spawn_socket_task<C, E, F>(
    cancel: CancellationToken,
    command_queue: usize,
    event_queue: usize,
    closed: fn(UpstreamError) -> E,
    task: impl FnOnce(mpsc::Receiver<C>, mpsc::Sender<E>, CancellationToken) -> F,
) -> UpstreamHandle<C, E>
where
    C: Send + 'static,
    E: Send + 'static,
    F: Future<Output = Result<(), UpstreamError>> + Send + 'static,
{
    let (command_tx, command_rx) = mpsc::channel(command_queue);
    let (event_tx, event_rx) = mpsc::channel(event_queue);
    let stop = cancel.clone();
    let run = task(command_rx, event_tx.clone(), cancel);
    tokio::spawn(
        async move {
            if let Err(error) = run.await {
                let _ = event_tx.send(closed(error)).await;
            }
        }
        .in_current_span(),
    );
    UpstreamHandle {
        commands: command_tx,
        events: event_rx,
        _stop_on_drop: stop.drop_guard(),
    }
}

/// Opens transcription sessions: Realtime WebSockets, or (with
/// [`SttMode::File`](crate::config::SttMode::File)) per-turn uploads behind the same handle.
#[derive(Debug, Clone)]
pub struct Transcriber {
    config: Arc<UpstreamConfig>,
    turn_detection: TurnDetection,
    /// Set for file transcription: the client its uploads use.
    file_http: Option<reqwest::Client>,
}

impl Transcriber {
    /// A Realtime transcriber for sessions with this turn detection.
    pub fn new(config: Arc<UpstreamConfig>, turn_detection: TurnDetection) -> Self {
        Self {
            config,
            turn_detection,
            file_http: None,
        }
    }

    /// A file transcriber (`POST /audio/transcriptions` per turn); turns are the client's.
    pub fn file(config: Arc<UpstreamConfig>, http: reqwest::Client) -> Self {
        Self {
            config,
            turn_detection: TurnDetection::Client,
            file_http: Some(http),
        }
    }

    /// Starts connecting in the background and returns at once; commands sent before the
    /// socket is up wait in the queue.
    pub fn spawn(&self, cancel: CancellationToken) -> TranscriberHandle {
        if let Some(http) = &self.file_http {
            let (config, http) = (self.config.clone(), http.clone());
            return spawn_socket_task(
                cancel,
                TRANSCRIBER_COMMAND_QUEUE_FRAMES,
                TRANSCRIBER_EVENT_QUEUE,
                TranscriberEvent::Closed,
                move |commands, events, cancel| async move {
                    super::file::run(config, http, commands, events, cancel).await;
                    Ok(())
                },
            );
        }
        let this = self.clone();
        spawn_socket_task(
            cancel,
            TRANSCRIBER_COMMAND_QUEUE_FRAMES,
            TRANSCRIBER_EVENT_QUEUE,
            TranscriberEvent::Closed,
            move |commands, events, cancel| async move {
                let socket = Socket {
                    what: "transcription connect",
                    url: &this.config.endpoints.realtime_url,
                    first: session_update(&this.config, this.turn_detection),
                };
                connect_and_relay(
                    &this.config,
                    socket,
                    commands,
                    &events,
                    &cancel,
                    parse_server_event,
                )
                .await
            },
        )
    }
}

/// A command for a Realtime socket: audio to append (the relay batches it), or an event.
pub(super) trait SocketCommand {
    /// The PCM16 audio to append, if this is an append.
    fn audio(&self) -> Option<&[u8]>;
    /// The client event's JSON text, for anything but an append.
    fn event(&self) -> Option<String>;
}

impl SocketCommand for TranscriberCommand {
    fn audio(&self) -> Option<&[u8]> {
        match self {
            Self::Append(pcm) => Some(pcm),
            Self::Commit | Self::Clear => None,
        }
    }

    fn event(&self) -> Option<String> {
        match self {
            Self::Append(_) => None,
            Self::Commit => Some(json!({"type": "input_audio_buffer.commit"}).to_string()),
            Self::Clear => Some(json!({"type": "input_audio_buffer.clear"}).to_string()),
        }
    }
}

/// Audio appended upstream per event, at most, in bytes: 100 ms of 24 kHz PCM16. The browser
/// sends 20 ms frames; one base64 JSON event each was a fifth of the proxy's CPU under load
/// (the loopback send path), and five to an event cost the turn nothing, since a commit sends
/// what is batched first.
pub(crate) const APPEND_BATCH_BYTES: usize = 4_800;

/// Longest that batched audio waits for more, so the upstream's VAD (server turn detection)
/// hears the audio at most this late.
const APPEND_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Audio waiting to be appended upstream. Its buffer is made at the first part batch and
/// reused; audio that comes as a full batch (the pipelines' transcriber batches in the
/// session) is encoded straight from the command and never copied here.
#[derive(Debug, Default)]
struct AppendBatch {
    pcm: Vec<u8>,
}

impl AppendBatch {
    /// Takes `pcm` in: the `input_audio_buffer.append` to send now when that makes a full
    /// batch (with what waited), else `None` (it waits for more or for the timer).
    fn push(&mut self, pcm: &[u8]) -> Option<String> {
        if self.pcm.is_empty() && pcm.len() >= APPEND_BATCH_BYTES {
            return Some(append_event(pcm));
        }
        if self.pcm.capacity() == 0 {
            self.pcm.reserve_exact(APPEND_BATCH_BYTES * 2);
        }
        self.pcm.extend_from_slice(pcm);
        if self.pcm.len() < APPEND_BATCH_BYTES {
            return None;
        }
        self.take_event()
    }

    /// The `input_audio_buffer.append` of everything batched, if anything is.
    fn take_event(&mut self) -> Option<String> {
        if self.pcm.is_empty() {
            return None;
        }
        let event = append_event(&self.pcm);
        self.pcm.clear();
        Some(event)
    }
}

/// Completes at `at`; never, without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Which Realtime socket to open, and the first event to send on it.
#[derive(Debug)]
pub(super) struct Socket<'a> {
    /// For the log: what is being connected.
    pub(super) what: &'static str,
    /// The `ws(s)://` URL.
    pub(super) url: &'a str,
    /// The `session.update`.
    pub(super) first: Value,
}

/// Connects (retrying within the budget; a cancel stops it quietly), then [`relay`]s.
pub(super) async fn connect_and_relay<C: SocketCommand, E>(
    config: &UpstreamConfig,
    socket: Socket<'_>,
    commands: mpsc::Receiver<C>,
    events: &mpsc::Sender<E>,
    cancel: &CancellationToken,
    parse: impl Fn(&str) -> Parsed<E>,
) -> Result<(), UpstreamError> {
    // Boxed: the handshake's state is large and needed only until the socket is up, so it
    // is freed then instead of sizing every session's socket task for good.
    let connected = tokio::select! {
        connected = Box::pin(connect_with_retry(socket.what, config, socket.url)) => connected?,
        () = cancel.cancelled() => return Ok(()),
    };
    relay(
        config,
        connected,
        socket.first,
        commands,
        events,
        cancel,
        parse,
    )
    .await
}

/// What one server event means to a socket's reader.
#[derive(Debug, PartialEq)]
pub(super) enum Parsed<E> {
    /// Something the session needs to know.
    Event(E),
    /// The session cannot go on.
    Fatal(UpstreamError),
    /// Nothing that matters (unknown types included: OpenAI adds them over time).
    Ignored,
}

/// Opens a Realtime socket at `url`, retrying transient handshake failures within the budget.
async fn connect_with_retry(
    what: &'static str,
    config: &UpstreamConfig,
    url: &str,
) -> Result<UpstreamSocket, UpstreamError> {
    super::with_retry(what, config, || connect_once(config, url)).await
}

async fn connect_once(config: &UpstreamConfig, url: &str) -> Result<UpstreamSocket, UpstreamError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    if let Some(key) = &config.api_key {
        let mut value = format!("Bearer {}", key.expose())
            .parse::<tungstenite::http::HeaderValue>()
            .map_err(|_| UpstreamError::Connect("unusable API key".into()))?;
        value.set_sensitive(true);
        request.headers_mut().insert("authorization", value);
    }
    let socket_config = tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(UPSTREAM_READ_BUFFER_BYTES)
        .write_buffer_size(0);
    // No Nagle delay on appends and commits.
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(socket_config), true);
    match tokio::time::timeout(config.response_timeout, connect).await {
        Err(_) => Err(UpstreamError::Timeout),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let retry_after = parse_retry_after(response.headers());
            let body = response.body().as_deref().unwrap_or_default();
            Err(classify_http_error(status, body, retry_after))
        }
        Ok(Err(error)) => Err(UpstreamError::Connect(error.to_string())),
    }
}

/// Sends `first` (the `session.update`), then relays: each command `encode`d as one text
/// frame, each server frame `parse`d into an event for the session. Pings the upstream a few
/// times per stall timeout and gives up on a socket that answers nothing, not even pongs, for
/// the whole stall timeout. Ends when the session drops its command sender, when `cancel`
/// fires (closing politely either way), or when the socket fails.
async fn relay<C: SocketCommand, E>(
    config: &UpstreamConfig,
    socket: UpstreamSocket,
    first: Value,
    mut commands: mpsc::Receiver<C>,
    events: &mpsc::Sender<E>,
    cancel: &CancellationToken,
    parse: impl Fn(&str) -> Parsed<E>,
) -> Result<(), UpstreamError> {
    let (mut sink, mut stream) = socket.split();
    sink.send(Message::text(first.to_string()))
        .await
        .map_err(|e| UpstreamError::Connect(e.to_string()))?;
    // Keepalive: a ping every third of the stall timeout keeps idle middleboxes from
    // dropping the socket.
    let ping_every = (config.stall_timeout / KEEPALIVE_PINGS_PER_STALL_TIMEOUT)
        .max(std::time::Duration::from_millis(1));
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    let mut batch = AppendBatch::default();
    // When the audio batched so far goes out even if the batch is not full.
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ok(());
            }
            () = sleep_until_some(flush_at) => {
                flush_at = None;
                if let Some(append) = batch.take_event() {
                    sink.send(Message::text(append)).await.map_err(|_| UpstreamError::Truncated)?;
                }
            }
            _ = pings.tick() => {
                if last_heard.elapsed() >= config.stall_timeout {
                    tracing::warn!("Realtime socket silent, even to pings: giving it up");
                    return Err(UpstreamError::Timeout);
                }
                sink.send(Message::Ping(Bytes::new())).await.map_err(|_| UpstreamError::Truncated)?;
            }
            command = commands.recv() => {
                let Some(command) = command else {
                    // The session is gone: close politely.
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(());
                };
                let append = match command.audio() {
                    Some(pcm) => batch.push(pcm),
                    // Another command: the audio before it goes first, so a commit never
                    // waits for the batch's timer.
                    None => batch.take_event(),
                };
                if command.audio().is_some() && append.is_none() {
                    flush_at.get_or_insert_with(|| tokio::time::Instant::now() + APPEND_BATCH_WAIT);
                    continue;
                }
                flush_at = None;
                if let Some(append) = append {
                    sink.send(Message::text(append)).await.map_err(|_| UpstreamError::Truncated)?;
                }
                if let Some(event) = command.event() {
                    sink.send(Message::text(event)).await.map_err(|_| UpstreamError::Truncated)?;
                }
            }
            message = stream.next() => {
                last_heard = tokio::time::Instant::now();
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        tracing::warn!(?frame, "Realtime socket closed by upstream");
                        return Err(UpstreamError::Truncated);
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Err(UpstreamError::Truncated),
                };
                match parse(&text) {
                    Parsed::Event(event) => {
                        if events.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                    Parsed::Fatal(error) => return Err(error),
                    Parsed::Ignored => {}
                }
            }
        }
    }
}

/// The `error` events after which a Realtime session cannot work at all (wrong shape, model
/// or credentials), as the error to end it with.
fn fatal_session_error(code: Option<&str>, message: &str) -> Option<UpstreamError> {
    let kind = match code? {
        "invalid_api_key" => super::HttpErrorKind::Auth,
        "beta_api_shape_disabled" | "model_not_found" => super::HttpErrorKind::BadRequest,
        _ => return None,
    };
    Some(UpstreamError::Http {
        status: 400,
        kind,
        message: message.to_owned(),
        retry_after: None,
    })
}

/// The `session.update` that configures a transcription session (`docs/openai-wire.md` §1.3).
pub fn session_update(config: &UpstreamConfig, turn_detection: TurnDetection) -> Value {
    let mut transcription = json!({ "model": config.stt_model });
    if let Some(language) = &config.stt_language {
        transcription["language"] = json!(language);
    }
    let turn_detection = match turn_detection {
        TurnDetection::Client => Value::Null,
        TurnDetection::ServerVad => json!({
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500
        }),
        TurnDetection::SemanticVad => json!({ "type": "semantic_vad", "eagerness": "auto" }),
    };
    json!({
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": { "type": "audio/pcm", "rate": protocol::SAMPLE_RATE_HZ },
                    "transcription": transcription,
                    "turn_detection": turn_detection
                }
            }
        }
    })
}

/// `{"type":"input_audio_buffer.append","audio":"<base64>"}`, in a single allocation sized
/// up front (the message the socket takes).
pub fn append_event(pcm: &[u8]) -> String {
    const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
    const TAIL: &str = r#""}"#;
    let mut out = String::with_capacity(HEAD.len() + pcm.len().div_ceil(3) * 4 + TAIL.len());
    out.push_str(HEAD);
    base64::engine::general_purpose::STANDARD.encode_string(pcm, &mut out);
    out.push_str(TAIL);
    out
}

/// What a transcription server event means to the session.
type ServerEvent = Parsed<TranscriberEvent>;

/// Reads one server event, tolerating unknown types and missing optional fields.
fn parse_server_event(text: &str) -> ServerEvent {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("unreadable transcription event ignored");
        return ServerEvent::Ignored;
    };
    parse_input_event(&value)
}

/// Reads the events of a Realtime session's input side, the same in transcription and
/// conversation sessions: speech detection, commits, the input transcription and errors.
pub(super) fn parse_input_event(value: &Value) -> ServerEvent {
    let string = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let item_id = || string(value, "item_id").unwrap_or_default();
    let event = match value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "session.updated" => TranscriberEvent::Ready {
            expires_at_unix_s: value.pointer("/session/expires_at").and_then(Value::as_u64),
        },
        "input_audio_buffer.speech_started" => {
            TranscriberEvent::SpeechStarted { item_id: item_id() }
        }
        "input_audio_buffer.speech_stopped" => {
            TranscriberEvent::SpeechStopped { item_id: item_id() }
        }
        "input_audio_buffer.committed" => TranscriberEvent::Committed {
            item_id: item_id(),
            previous_item_id: string(value, "previous_item_id"),
        },
        "conversation.item.input_audio_transcription.delta" => TranscriberEvent::Delta {
            item_id: item_id(),
            delta: string(value, "delta").unwrap_or_default(),
        },
        "conversation.item.input_audio_transcription.completed" => TranscriberEvent::Completed {
            item_id: item_id(),
            transcript: string(value, "transcript").unwrap_or_default(),
        },
        "conversation.item.input_audio_transcription.failed" => TranscriberEvent::Failed {
            item_id: item_id(),
            code: value.get("error").and_then(|e| string(e, "code")),
        },
        "error" => {
            let error = value.get("error").cloned().unwrap_or_default();
            let code = string(&error, "code");
            let message = string(&error, "message").unwrap_or_default();
            if code.as_deref() == Some("input_audio_buffer_commit_empty") {
                TranscriberEvent::CommitEmpty
            } else if let Some(fatal) = fatal_session_error(code.as_deref(), &message) {
                return ServerEvent::Fatal(fatal);
            } else {
                TranscriberEvent::Error { code, message }
            }
        }
        // session.created, conversation.item.*, rate_limits.updated and anything new.
        _ => return ServerEvent::Ignored,
    };
    ServerEvent::Event(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_update_is_the_ga_transcription_shape() {
        let update = session_update(&UpstreamConfig::for_tests(), TurnDetection::Client);
        assert_eq!(update["type"], "session.update");
        assert_eq!(update["session"]["type"], "transcription");
        let input = &update["session"]["audio"]["input"];
        assert_eq!(input["format"], json!({"type": "audio/pcm", "rate": 24000}));
        assert_eq!(input["transcription"]["model"], "gpt-4o-mini-transcribe");
        assert_eq!(input["transcription"]["language"], "en");
        assert!(input["turn_detection"].is_null());
        let server = session_update(&UpstreamConfig::for_tests(), TurnDetection::ServerVad);
        assert_eq!(
            server["session"]["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );
        let semantic = session_update(&UpstreamConfig::for_tests(), TurnDetection::SemanticVad);
        assert_eq!(
            semantic["session"]["audio"]["input"]["turn_detection"]["type"],
            "semantic_vad"
        );
    }

    #[test]
    fn audio_is_batched_into_appends_of_at_most_a_hundred_milliseconds() {
        let decoded_len = |event: String| {
            let event: Value = serde_json::from_str(&event).unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(event["audio"].as_str().unwrap())
                .unwrap()
                .len()
        };
        let mut batch = AppendBatch::default();
        assert_eq!(batch.take_event(), None, "nothing batched, nothing sent");
        let frame = [1u8; 960]; // 20 ms
        for _ in 0..4 {
            assert_eq!(batch.push(&frame), None);
        }
        let full = batch.push(&frame).expect("five frames fill a batch");
        assert_eq!(decoded_len(full), 5 * 960);
        assert_eq!(batch.take_event(), None, "a batch goes out once");
        assert_eq!(batch.push(&frame[..2]), None);
        let part = batch
            .take_event()
            .expect("a part batch goes out when asked");
        assert_eq!(decoded_len(part), 2);
        let whole = [2u8; APPEND_BATCH_BYTES];
        let mut direct = AppendBatch::default();
        let event = direct.push(&whole).expect("a full batch goes out at once");
        assert_eq!(decoded_len(event), APPEND_BATCH_BYTES);
        assert_eq!(direct.pcm.capacity(), 0, "a full batch is not copied");
        assert_eq!(batch.push(&frame), None);
        let behind = batch.push(&whole).expect("what waited goes out with it");
        assert_eq!(decoded_len(behind), 960 + APPEND_BATCH_BYTES);
    }

    #[test]
    fn append_events_carry_base64_pcm() {
        let value: Value = serde_json::from_str(&append_event(&[0, 1, 2, 3])).unwrap();
        assert_eq!(value["type"], "input_audio_buffer.append");
        assert_eq!(value["audio"], "AAECAw==");
    }

    #[test]
    fn known_events_are_parsed_leniently() {
        assert_eq!(
            parse_server_event(
                r#"{"type":"conversation.item.input_audio_transcription.delta","event_id":"e","item_id":"i1","content_index":0,"delta":"Hey","obfuscation":"x"}"#
            ),
            ServerEvent::Event(TranscriberEvent::Delta {
                item_id: "i1".into(),
                delta: "Hey".into()
            })
        );
        assert_eq!(
            parse_server_event(
                r#"{"type":"input_audio_buffer.committed","item_id":"i2","previous_item_id":null}"#
            ),
            ServerEvent::Event(TranscriberEvent::Committed {
                item_id: "i2".into(),
                previous_item_id: None
            })
        );
        assert_eq!(
            parse_server_event(
                r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i1","transcript":"Hey.","usage":{"type":"duration","seconds":1.5},"languages":[]}"#
            ),
            ServerEvent::Event(TranscriberEvent::Completed {
                item_id: "i1".into(),
                transcript: "Hey.".into()
            })
        );
    }

    #[test]
    fn unknown_and_unreadable_events_are_ignored() {
        for text in [
            r#"{"type":"conversation.item.added","item":{"id":"x"}}"#,
            r#"{"type":"rate_limits.updated","rate_limits":[]}"#,
            r#"{"type":"something.new","payload":1}"#,
            r#"{"no_type":true}"#,
            "not json",
        ] {
            assert_eq!(parse_server_event(text), ServerEvent::Ignored, "{text}");
        }
    }

    #[test]
    fn errors_are_sorted_by_severity() {
        assert_eq!(
            parse_server_event(
                r#"{"type":"error","error":{"type":"invalid_request_error","code":"input_audio_buffer_commit_empty","message":"buffer too small"}}"#
            ),
            ServerEvent::Event(TranscriberEvent::CommitEmpty)
        );
        assert!(matches!(
            parse_server_event(
                r#"{"type":"error","error":{"type":"invalid_request_error","code":"beta_api_shape_disabled","message":"no"}}"#
            ),
            ServerEvent::Fatal(_)
        ));
        assert!(matches!(
            parse_server_event(
                r#"{"type":"error","error":{"type":"server_error","code":null,"message":"hiccup"}}"#
            ),
            ServerEvent::Event(TranscriberEvent::Error { .. })
        ));
    }
}
