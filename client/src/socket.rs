//! The WebSocket to the proxy's `/ws`.
//!
//! gloo-net owns the connection: it opens it, delivers incoming frames in order as a `Stream`
//! and reports the close. Outgoing frames go through the same socket's `send` directly:
//! gloo-net's `Sink` would copy every 20 ms audio frame into a `Vec` and then into a `Blob`,
//! whereas the capture worklet's `ArrayBuffer` can be sent as it is. Text and audio share that
//! one path, so they reach the proxy in the order they were sent.

use gloo_net::websocket::futures::WebSocket;
use js_sys::ArrayBuffer;

use crate::audio::describe;
use crate::errors::ClientError;

/// Path of the session endpoint on the page's own host.
const SESSION_PATH: &str = "/ws";

/// Most audio the socket may hold unsent before frames are dropped: 10 s of PCM16 at 24 kHz.
/// Only a stalled network gets there; buffering more would only delay the answer further.
const MAX_UNSENT_AUDIO_BYTES: u32 = 10 * 24_000 * 2;

/// WebSocket close code for a normal close.
const CLOSE_NORMAL: u16 = 1000;

/// The sending side of the session's socket.
#[derive(Debug)]
pub(crate) struct Socket {
    raw: web_sys::WebSocket,
}

/// Whether an audio frame went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued for sending.
    Yes,
    /// Dropped: the socket is not open or its send buffer is full.
    Dropped,
}

impl Socket {
    /// Opens the session socket on the page's host; returns the sender and gloo-net's stream
    /// of incoming frames.
    pub(crate) fn open() -> Result<(Socket, WebSocket), ClientError> {
        let url = session_url()?;
        let raw = web_sys::WebSocket::new(&url)
            .map_err(|error| ClientError::Connect(describe(&error)))?;
        let incoming = WebSocket::try_from(raw.clone())
            .map_err(|error| ClientError::Connect(error.to_string()))?;
        Ok((Socket { raw }, incoming))
    }

    /// Sends one JSON message. Errors only if the socket is not open yet, which the session
    /// rules out (it sends nothing before `session_ready`).
    pub(crate) fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.raw
            .send_with_str(text)
            .map_err(|error| ClientError::Connect(describe(&error)))
    }

    /// Sends one capture frame as it is (no copy).
    pub(crate) fn send_audio(&self, pcm: &ArrayBuffer) -> Sent {
        if self.raw.ready_state() != web_sys::WebSocket::OPEN
            || self.raw.buffered_amount() > MAX_UNSENT_AUDIO_BYTES
        {
            return Sent::Dropped;
        }
        match self.raw.send_with_array_buffer(pcm) {
            Ok(()) => Sent::Yes,
            Err(_) => Sent::Dropped,
        }
    }

    /// Closes the socket normally.
    pub(crate) fn close(&self) {
        let _ = self.raw.close_with_code(CLOSE_NORMAL);
    }
}

/// `ws://HOST/ws` or, on an https page, `wss://HOST/ws`, with the page's own `?token=` passed
/// on (a proxy with an access token was opened by a link that carries it).
fn session_url() -> Result<String, ClientError> {
    let location = web_sys::window()
        .ok_or_else(|| ClientError::Connect("no window".into()))?
        .location();
    let read = |value: Result<String, wasm_bindgen::JsValue>| {
        value.map_err(|error| ClientError::Connect(describe(&error)))
    };
    let scheme = if read(location.protocol())? == "https:" {
        "wss"
    } else {
        "ws"
    };
    let token = web_sys::UrlSearchParams::new_with_str(&read(location.search())?)
        .ok()
        .and_then(|params| params.get("token"))
        .map(|token| format!("?token={}", js_sys::encode_uri_component(&token)))
        .unwrap_or_default();
    Ok(format!(
        "{scheme}://{}{SESSION_PATH}{token}",
        read(location.host())?
    ))
}
