//! The browser's end of a session: what its frames mean ([`decode`]), and the writer task
//! that owns the socket's sending half ([`BrowserLink`]).
//!
//! The writer serves control messages before audio, and drops any audio frame whose response
//! is no longer live: the actor marks a response dead ([`BrowserLink::stop_audio_of`]) *before*
//! it queues the message that ends it, so no audio of a cancelled response follows its
//! `response_done`. A browser that stops reading fills the bounded queues; the writer then
//! gives up after the send timeout and the actor, seeing [`BrowserLink::gone`], ends the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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

/// Control messages queued for the browser. They are small and rare; a full queue means the
/// browser stopped reading.
const CONTROL_QUEUE_MESSAGES: usize = 64;

/// Audio chunks queued for the browser. Speech chunks hold tens of milliseconds each, so this is
/// a second or two: enough to ride out jitter, small enough that a stalled browser slows the
/// TTS upstream instead of growing memory.
const AUDIO_QUEUE_CHUNKS: usize = 32;

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
    /// The browser closed the socket or it ended.
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
        Some(Ok(Message::Close(_))) | None => Incoming::Gone,
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
    Close(CloseCode, String),
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
    /// longer than `send_timeout` to accept a frame.
    pub(crate) fn open(sink: SplitSink<WebSocket, Message>, send_timeout: Duration) -> Self {
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE_MESSAGES);
        let (audio, audio_rx) = mpsc::channel(AUDIO_QUEUE_CHUNKS);
        let live = Arc::new(AtomicU32::new(0));
        let writer = tokio::spawn(
            write(sink, control_rx, audio_rx, live.clone(), send_timeout).in_current_span(),
        );
        Self {
            control,
            audio,
            live,
            writer: AbortOnDropHandle::new(writer),
        }
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

/// The writer task: sends control messages first, then audio of the live response only.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut control: mpsc::Receiver<Control>,
    mut audio: mpsc::Receiver<AudioOut>,
    live: Arc<AtomicU32>,
    send_timeout: Duration,
) {
    let mut stale_chunks = 0u64;
    loop {
        let message = tokio::select! {
            biased;
            control = control.recv() => match control {
                Some(Control::Text(text)) => Message::Text(text.into()),
                Some(Control::Ping) => Message::Ping(Bytes::new()),
                Some(Control::Close(code, reason)) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    break;
                }
                None => break,
            },
            chunk = audio.recv() => match chunk {
                Some(chunk) if chunk.response_id == protocol::ResponseId(live.load(Ordering::SeqCst)) => {
                    let mut frame = Vec::new();
                    protocol::encode_audio_frame(chunk.response_id, &chunk.pcm, &mut frame);
                    Message::Binary(frame.into())
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
    }
    if stale_chunks > 0 {
        tracing::debug!(stale_chunks, "dropped audio of cancelled responses");
    }
    let _ = sink.close().await;
}
