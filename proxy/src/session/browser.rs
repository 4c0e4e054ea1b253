//! The browser's end of a session: what its frames mean ([`decode`]), and the writer task
//! that owns the socket's sending half ([`BrowserLink`]).
//!
//! The writer serves control messages before audio, and drops any audio frame whose response
//! is no longer live: the actor marks a response dead ([`BrowserLink::stop_audio_of`]) *before*
//! it queues the message that ends it, so no audio of a cancelled response follows its
//! `response_done`. A response that ends normally is closed the other way round: the actor
//! asks ([`BrowserLink::end_of_audio`]) and the writer reports ([`AudioWritten`]) once the
//! response's last frame is on the socket, and only then does the actor send `response_done`,
//! so it can never overtake its own audio. A browser that stops reading fills the bounded queues; the writer then
//! gives up after the send timeout and the actor, seeing [`BrowserLink::gone`], ends the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseCode, CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use futures_util::SinkExt as _;
use futures_util::stream::SplitSink;
use protocol::{ClientMessage, ErrorCode, ErrorEvent, ResponseId, ServerMessage, Stage};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;

use super::response::AudioOut;
use crate::limits::truncate_for_log;
use crate::observability::Metrics;

/// Control messages queued for the browser. They are small and rare; a full queue means the
/// browser stopped reading.
const CONTROL_QUEUE_MESSAGES: usize = 64;

/// Audio chunks queued for the browser. Speech chunks hold tens of milliseconds each, so this is
/// a second or two: enough to ride out jitter, small enough that a stalled browser slows the
/// TTS upstream instead of growing memory.
const AUDIO_QUEUE_CHUNKS: usize = 32;

/// Reports of written responses queued for the actor: at most one response ends at a time.
const AUDIO_WRITTEN_QUEUE: usize = 4;

/// How long the session's end waits for the writer to flush its close frame.
const WRITER_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest piece of a rejected message quoted back (and logged): the reason is in its first
/// words; a client must not be able to make the proxy echo 60 KB.
const MAX_QUOTED_ERROR_CHARS: usize = 160;

/// What a frame from the browser means to the session.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A control message.
    Message(ClientMessage),
    /// Microphone audio, whole PCM16 samples.
    Audio(Bytes),
    /// A message or frame the contract does not allow; the session goes on.
    Invalid(ErrorEvent),
    /// Pings and pongs, answered by the socket itself.
    Ignored,
    /// The browser closed the socket (a close frame): it left on purpose.
    Gone,
    /// The socket failed; with the close that tells a browser at fault why.
    Broken(Option<(CloseCode, &'static str)>),
}

/// Reads one frame (`None`: the stream ended).
pub(crate) fn decode(frame: Option<Result<Message, axum::Error>>) -> Incoming {
    match frame {
        Some(Ok(Message::Text(text))) => match ClientMessage::from_json(&text) {
            Ok(message) => Incoming::Message(message),
            Err(error) => Incoming::Invalid(ErrorEvent::new(
                Stage::Proxy,
                ErrorCode::InvalidMessage,
                format!(
                    "Message rejected: {}",
                    truncate_for_log(&error.to_string(), MAX_QUOTED_ERROR_CHARS)
                ),
                false,
            )),
        },
        Some(Ok(Message::Binary(audio))) => match protocol::validate_client_audio(&audio) {
            Ok(()) => Incoming::Audio(audio),
            Err(error) => Incoming::Invalid(ErrorEvent::new(
                Stage::Proxy,
                ErrorCode::InvalidMessage,
                format!("Audio frame rejected: {error}"),
                false,
            )),
        },
        Some(Ok(Message::Close(_))) => Incoming::Gone,
        // Ended without a close frame: the connection dropped.
        None => Incoming::Broken(None),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Ignored,
        Some(Err(error)) => {
            tracing::info!(%error, "browser socket failed");
            Incoming::Broken(close_for_read_error(&error))
        }
    }
}

/// The close code that tells the browser why its socket was refused, for the read errors that
/// are the browser's fault (RFC 6455 §7.4.1); `None` when the socket just broke.
fn close_for_read_error(error: &axum::Error) -> Option<(CloseCode, &'static str)> {
    use tokio_tungstenite::tungstenite::Error;
    match std::error::Error::source(error)?.downcast_ref::<Error>()? {
        Error::Capacity(_) => Some((close_code::SIZE, "message too big")),
        Error::Utf8(_) => Some((close_code::INVALID, "invalid UTF-8")),
        // The connection ended without a close frame: it dropped, no fault of the browser's.
        Error::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => None,
        Error::Protocol(_) => Some((close_code::PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// A message for the writer task. Messages travel as their JSON text: a queue slot is then a
/// few words, not the largest message's size, which keeps an idle session's queue small.
#[derive(Debug)]
enum Control {
    Text(String),
    Ping,
    /// The response's task has queued all its audio: report once it is written.
    EndOfAudio(ResponseId),
    Close(CloseCode, String),
}

/// The writer's report that every audio frame of a response is on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AudioWritten {
    /// The response.
    pub(crate) response_id: ResponseId,
    /// When its first frame was written (`None`: it had no audio).
    pub(crate) first_frame_at: Option<Instant>,
}

/// The session's sending end of the browser socket.
#[derive(Debug)]
pub(crate) struct BrowserLink {
    control: mpsc::Sender<Control>,
    audio: mpsc::Sender<AudioOut>,
    /// The response whose audio may go out (0: none). Shared with the writer.
    live: Arc<AtomicU32>,
    writer: AbortOnDropHandle<()>,
}

impl BrowserLink {
    /// Starts the writer on the socket's sending half; it gives up on a browser that takes
    /// longer than `send_timeout` to accept a frame. The receiver gets the writer's
    /// [`AudioWritten`] reports. It counts the audio it writes in `metrics`.
    pub(crate) fn open(
        sink: SplitSink<WebSocket, Message>,
        send_timeout: Duration,
        metrics: Metrics,
    ) -> (Self, mpsc::Receiver<AudioWritten>) {
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_MESSAGES);
        let (audio, audio_rx) = mpsc::channel(AUDIO_QUEUE_CHUNKS);
        let (written, written_rx) = mpsc::channel(AUDIO_WRITTEN_QUEUE);
        let live = Arc::new(AtomicU32::new(0));
        let lanes = Lanes {
            control: control_rx,
            audio: audio_rx,
            written,
            live: live.clone(),
        };
        let writer = tokio::spawn(write(sink, lanes, send_timeout, metrics).in_current_span());
        let link = Self {
            control,
            audio,
            live,
            writer: AbortOnDropHandle::new(writer),
        };
        (link, written_rx)
    }

    /// Asks the writer to report ([`AudioWritten`]) once every audio frame of `response_id`
    /// queued so far is written. Call it after the response's task has queued its last chunk.
    pub(crate) async fn end_of_audio(&self, response_id: ResponseId) {
        let _ = self.control.send(Control::EndOfAudio(response_id)).await;
    }

    /// Where a response task sends its audio: straight to the writer, past the actor.
    pub(crate) fn audio_sender(&self) -> mpsc::Sender<AudioOut> {
        self.audio.clone()
    }

    /// Queues a message; waits while the queue is full. A browser that is gone is noticed by
    /// the read side.
    pub(crate) async fn send(&self, message: ServerMessage) {
        let _ = self.control.send(Control::Text(message.to_json())).await;
    }

    /// Queues a close frame; the writer sends it after what is queued before it and stops.
    /// `reason` (at most 123 bytes) is what the page shows.
    pub(crate) async fn close(&self, code: CloseCode, reason: impl Into<String>) {
        let _ = self.control.send(Control::Close(code, reason.into())).await;
    }

    /// Queues a ping; the browser answers it on its own.
    pub(crate) fn ping(&self) {
        // A full control queue already means the browser is not reading; the writer's send
        // timeout deals with that.
        let _ = self.control.try_send(Control::Ping);
    }

    /// Completes when the writer has given up (the browser stopped reading or the socket broke).
    pub(crate) async fn gone(&self) {
        self.control.closed().await;
    }

    /// Lets this response's audio out, and no other's.
    pub(crate) fn set_live(&self, response_id: ResponseId) {
        self.live.store(response_id.0, Ordering::SeqCst);
    }

    /// Drops this response's audio from now on, if it is the live one.
    pub(crate) fn stop_audio_of(&self, response_id: ResponseId) {
        let _ = self
            .live
            .compare_exchange(response_id.0, 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Closes the queues and lets the writer flush what is in them (its close frame above all),
    /// for a little while at most.
    pub(crate) async fn finish(self) {
        let Self {
            control,
            audio,
            writer,
            ..
        } = self;
        drop((control, audio));
        let _ = tokio::time::timeout(WRITER_FLUSH_TIMEOUT, writer).await;
    }
}

/// What the writer reads and reports on.
struct Lanes {
    control: mpsc::Receiver<Control>,
    audio: mpsc::Receiver<AudioOut>,
    written: mpsc::Sender<AudioWritten>,
    /// The response whose audio may go out.
    live: Arc<AtomicU32>,
}

/// The writer task: sends control messages first, then audio of the live response only, and
/// reports when a response asked about is all written.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    lanes: Lanes,
    send_timeout: Duration,
    metrics: Metrics,
) {
    let Lanes {
        mut control,
        mut audio,
        written,
        live,
    } = lanes;
    let mut stale_chunks = 0u64;
    // The response whose end was asked for, and the first frame written of the live one.
    let mut ending: Option<ResponseId> = None;
    let mut first_frame: Option<(ResponseId, Instant)> = None;
    loop {
        if let Some(response_id) = ending {
            let is_live = response_id == ResponseId(live.load(Ordering::SeqCst));
            // Its task queued all its audio before the end was asked: an empty lane means
            // every frame of it is on the socket.
            if !is_live || audio.is_empty() {
                ending = None;
                if is_live {
                    let first_frame_at = first_frame
                        .filter(|(id, _)| *id == response_id)
                        .map(|(_, at)| at);
                    let report = AudioWritten {
                        response_id,
                        first_frame_at,
                    };
                    if written.try_send(report).is_err() {
                        tracing::debug!(response = %response_id, "no one took the written report");
                    }
                }
            }
        }
        let (message, audio_of) = tokio::select! {
            biased;
            control = control.recv() => match control {
                Some(Control::Text(text)) => (Message::Text(text.into()), None),
                Some(Control::Ping) => (Message::Ping(Bytes::new()), None),
                Some(Control::EndOfAudio(response_id)) => {
                    ending = Some(response_id);
                    continue;
                }
                Some(Control::Close(code, reason)) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    break;
                }
                None => break,
            },
            chunk = audio.recv() => match chunk {
                Some(chunk) if chunk.response_id == ResponseId(live.load(Ordering::SeqCst)) => {
                    // One allocation of the frame's exact size, freed once it is written: a
                    // buffer kept for reuse would hold the largest chunk ever sent (and grow
                    // past it) for the whole session.
                    let mut frame =
                        Vec::with_capacity(protocol::AUDIO_HEADER_LEN + chunk.pcm.len());
                    frame.extend_from_slice(&protocol::audio_frame_header(chunk.response_id));
                    frame.extend_from_slice(&chunk.pcm);
                    (Message::Binary(frame.into()), Some((chunk.response_id, chunk.pcm.len())))
                }
                Some(_) => {
                    stale_chunks += 1;
                    continue;
                }
                None => break,
            },
        };
        match tokio::time::timeout(send_timeout, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!(?send_timeout, "browser stopped reading; ending its session");
                // No close handshake with a peer that does not read.
                return;
            }
        }
        if let Some((response_id, pcm_bytes)) = audio_of {
            metrics.audio_out(pcm_bytes);
            if first_frame.is_none_or(|(id, _)| id != response_id) {
                first_frame = Some((response_id, Instant::now()));
            }
        }
    }
    if stale_chunks > 0 {
        tracing::debug!(stale_chunks, "dropped audio of cancelled responses");
    }
    let _ = sink.close().await;
}
