//! The WebSocket to the proxy's `/ws`.
//!
//! gloo-net owns the connection: it opens it, delivers incoming frames in order as a `Stream`
//! and reports the close. Outgoing frames go through the same socket's `send` directly:
//! gloo-net's `Sink` would copy every 20 ms audio frame into a `Vec` and then into a `Blob`,
//! whereas the capture worklet's `ArrayBuffer` can be sent as it is. Text and audio share that
//! one path, so they reach the proxy in the order they were sent.

use gloo_net::websocket::futures::WebSocket;
use js_sys::ArrayBuffer;

use crate::audio::{describe, fetch_fresh};
use crate::bundle_config::{self, BundleConfig, CONFIG_FILE, PageLocation, SessionTarget};
use crate::errors::ClientError;

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
    /// Opens the session socket at `url` (see [`session_target`]); returns the sender and
    /// gloo-net's stream of incoming frames.
    pub(crate) fn open(url: &str) -> Result<(Socket, WebSocket), ClientError> {
        let raw =
            web_sys::WebSocket::new(url).map_err(|error| ClientError::Connect(describe(&error)))?;
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

/// Where the session socket goes: `config.json`'s `proxy_url` if the bundle has one (fetched
/// fresh, so an operator's edit applies at the next Start), else the page's own host.
pub(crate) async fn session_target() -> Result<SessionTarget, ClientError> {
    let config = match fetch_text(CONFIG_FILE).await? {
        Some(text) => BundleConfig::parse(&text).map_err(ClientError::Config)?,
        None => BundleConfig::default(),
    };
    bundle_config::session_target(&page_location()?, &config).map_err(ClientError::Config)
}

/// The page's own location and `?token=`.
fn page_location() -> Result<PageLocation, ClientError> {
    let location = web_sys::window()
        .ok_or_else(|| ClientError::Connect("no window".into()))?
        .location();
    let read = |value: Result<String, wasm_bindgen::JsValue>| {
        value.map_err(|error| ClientError::Connect(describe(&error)))
    };
    let token = web_sys::UrlSearchParams::new_with_str(&read(location.search())?)
        .ok()
        .and_then(|params| params.get("token"));
    Ok(PageLocation {
        protocol: read(location.protocol())?,
        host: read(location.host())?,
        origin: read(location.origin())?,
        token,
    })
}

/// GETs `url` as text, revalidating with the server; `None` for a 404 (no such file).
async fn fetch_text(url: &str) -> Result<Option<String>, ClientError> {
    let failed = |error: wasm_bindgen::JsValue| {
        ClientError::Config(bundle_config::ConfigError::Invalid(format!(
            "it could not be read: {}",
            describe(&error)
        )))
    };
    let response = fetch_fresh(url).await.map_err(failed)?;
    if response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(failed(wasm_bindgen::JsValue::from_str(&format!(
            "HTTP {}",
            response.status()
        ))));
    }
    let text = wasm_bindgen_futures::JsFuture::from(response.text().map_err(failed)?)
        .await
        .map_err(failed)?;
    Ok(text.as_string())
}
