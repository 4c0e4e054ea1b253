//! An OpenAI simulator: a local server speaking the wire protocols of the Realtime
//! WebSocket (transcription and speech-to-speech conversation sessions), file transcription,
//! Chat Completions and Speech as described in `docs/openai-wire.md`,
//! with configurable latencies, scripted content, injected faults and records of what it
//! received. It is the backend of every test, the load-test target, and the product's backend
//! when no API key is set; other projects use it to test their own voice clients (see the
//! crate's README).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use openai_sim::{Fault, SimConfig, SimStage, Simulator};
//!
//! let sim = Simulator::start(SimConfig::instant()).await?;
//! sim.script_transcript("What's the weather on Mars?");
//! sim.script_reply("Cold. Very cold.");
//! sim.inject(SimStage::Speech, Fault::rate_limited());
//! // point a client at sim.base_url() ("http://127.0.0.1:PORT/v1") ...
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The standalone server is the `openai-sim` binary (`cargo run -p openai-sim -- --port 8001
//! --control`); with [`SimConfig::control`] on, the same scripts, faults, records and
//! configuration are reachable over HTTP under `/_sim/` (see `control`).
//!
//! # Endpoints
//!
//! * `GET /v1/realtime?intent=transcription` — Realtime transcription WebSocket, GA shape
//!   (§1), in `realtime` with `session`, `turn` and `vad`.
//! * `GET /v1/realtime?model=…` — Realtime conversation (speech to speech), GA shape (§6):
//!   session configuration, committed or VAD-detected user turns, responses streaming
//!   synthesized audio with its transcript, cancel, barge-in, truncate, items; in
//!   `conversation` (handshake and dispatch in `realtime`).
//! * `POST /v1/chat/completions` — Chat Completions, streaming SSE or not (§2), in `chat`.
//! * `POST /v1/audio/speech` — Speech as chunked raw PCM (or `wav`, or SSE) (§3), in
//!   `speech` with the audio from `synth`.
//! * `POST /v1/audio/transcriptions` — file transcription of a multipart upload, JSON or SSE
//!   (§5), in `transcription`.
//! * `GET /v1/models`, `GET /v1/models/{id}` — the models served, in `models`; every API
//!   refuses other models with the service's 404 `model_not_found`.
//! * `/_sim/…` — the control surface, in `control`, when [`SimConfig::control`] is on.
//! * Anything else: 404 "Invalid URL (METHOD /path)", like the service, after reading the
//!   request body (a client that sends the whole body before reading the answer would
//!   otherwise see a broken pipe instead of the 404).
//!
//! Every error uses the envelope of §4 (`error`). Every `/v1` request needs a bearer token
//! ([`SimConfig::api_key`]).
//!
//! # Layout
//!
//! * `config` — [`SimConfig`], [`SseStyle`]; `fault` — [`Fault`], [`SimStage`] and who takes
//!   a fault; `record` — [`Records`]; `state` — what all handlers share;
//! * `http` and `body` — the HTTP prelude and recorded streaming bodies; `text` — ids,
//!   token splitting, the echo reply; `models` — the model list and checks; `params` — the
//!   readers of request parameters;
//! * `link` and `input` — what both kinds of Realtime session share: the way to the client
//!   and the records, and the input audio buffer with its turn detection;
//! * `listener` — accepts connections: `TCP_NODELAY`, the connection count, and the setup
//!   cost of a new connection ([`SimConfig::handshake_ms`]).

mod body;
mod chat;
mod config;
mod control;
mod conversation;
mod error;
mod fault;
mod http;
mod input;
mod link;
mod listener;
mod models;
mod params;
mod realtime;
mod record;
mod session;
mod speech;
mod state;
mod synth;
mod text;
mod transcription;
mod turn;
mod vad;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{ErrorBody, PROFILES, SimConfig, SseStyle};
pub use fault::{Fault, SimStage};
pub use record::{
    ChatRecord, ConversationItemRecord, Outcome, RealtimeRecord, Records, ResponseRecord,
    SpeechRecord, TranscriptionRecord, TruncationRecord,
};

use error::ApiError;
use state::Shared;

/// How long [`Simulator::shutdown`] waits for connections to wind down before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest request body read: above the service's largest request (26,214,400 bytes, a
/// transcription upload), so long chat histories pass (axum's own default is 2 MiB); an
/// unknown path's body is read up to this much before its 404.
const BODY_MAX_BYTES: usize = 32 * 1024 * 1024;

/// A running simulator. It stops when dropped or on [`Simulator::shutdown`].
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` and a free port.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, config).await
    }

    /// Starts a simulator on a listener the caller bound (the binary binds its `--port`).
    pub async fn start_on(listener: TcpListener, config: SimConfig) -> std::io::Result<Simulator> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = router(Arc::clone(&shared));
        let shutdown = shared.shutdown.clone();
        let listener = listener::SimListener::new(listener, Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let serve =
                axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::warn!(%error, "OpenAI simulator stopped with an error");
            }
        });
        tracing::debug!(%addr, "OpenAI simulator listening");
        Ok(Simulator {
            addr,
            shared,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the `OPENAI_BASE_URL` to give a client.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `ws://127.0.0.1:PORT/v1/realtime` (add `?intent=transcription`, or `?model=gpt-realtime`
    /// for a conversation).
    pub fn realtime_url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues the transcript of a future turn: the next committed Realtime turn (on any
    /// connection; in a conversation session only while its input transcription is on), or
    /// the next file transcription, whichever comes first, is transcribed to it. Unscripted
    /// turns say how long the user spoke.
    pub fn script_transcript(&self, text: impl Into<String>) {
        let _queued = self.shared.push_transcript(text.into());
    }

    /// Queues the reply of a future chat completion or Realtime conversation response
    /// (whichever comes first). Unscripted replies are `SimConfig::default_reply`, else an echo
    /// of the last user message.
    pub fn script_reply(&self, text: impl Into<String>) {
        let _queued = self.shared.push_reply(text.into());
    }

    /// Queues a fault for `stage`; see [`Fault`] and the rules in the `fault` module docs
    /// (Chat/Speech: the next valid request; Realtime: HTTP faults the next connection,
    /// others the next turn, or in a conversation session the next response).
    pub fn inject(&self, stage: SimStage, fault: Fault) {
        let _queued = self.shared.inject(stage, fault);
    }

    /// Forgets scripted transcripts and replies, queued faults and records, and restores the
    /// configuration the simulator started with (except [`SimConfig::control`]). Requests in
    /// flight finish but are no longer recorded.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// `http://127.0.0.1:PORT/_sim`, the control surface (served while
    /// [`SimConfig::control`] is on).
    pub fn control_url(&self) -> String {
        format!("http://{}/_sim", self.addr)
    }

    /// Changes the configuration; requests, connections and turns that start afterwards use
    /// the new values.
    pub fn set_config(&self, change: impl FnOnce(&mut SimConfig)) {
        self.shared.update_config(change);
    }

    /// The current configuration.
    pub fn config(&self) -> SimConfig {
        self.shared.config()
    }

    /// A snapshot of everything recorded so far.
    pub fn records(&self) -> Records {
        self.shared.records()
    }

    /// Milliseconds since the simulator started: the clock of the moments in the records
    /// (`received_ms`, `ended_ms`, `started_ms`), so a client in the same process can place
    /// its own moments (say, when it cancelled) on it.
    pub fn now_ms(&self) -> f64 {
        self.shared.now_ms()
    }

    /// Waits until `condition` holds on the records, or `timeout` passes. Wakes on every
    /// change, never polls. `Ok` with the records that satisfied it, `Err` with the last
    /// snapshot on timeout (for the assertion message).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        condition: impl Fn(&Records) -> bool,
    ) -> Result<Records, Records> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.subscribe();
        loop {
            changes.borrow_and_update();
            let records = self.records();
            if condition(&records) {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                let records = self.records();
                return if condition(&records) {
                    Ok(records)
                } else {
                    Err(records)
                };
            }
        }
    }

    /// Stops accepting, ends every stream and socket, and waits (a few seconds at most) for
    /// the server to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Graceful shutdown continues in the background as long as the runtime lives.
        self.shared.shutdown.cancel();
    }
}

/// The routes; see the module docs.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/realtime", get(realtime::handle))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/audio/speech", post(speech::handle))
        .route("/v1/audio/transcriptions", post(transcription::handle))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::retrieve))
        .merge(control::router(&shared))
        .fallback(invalid_url)
        .method_not_allowed_fallback(invalid_url)
        .layer(DefaultBodyLimit::max(BODY_MAX_BYTES))
        .with_state(shared)
}

/// 404 "Invalid URL", once the request body has been read (up to [`BODY_MAX_BYTES`]).
pub(crate) async fn invalid_url(request: Request) -> Response {
    let error = ApiError::invalid_url(request.method().as_str(), request.uri().path());
    let mut body = request.into_body().into_data_stream();
    let mut read = 0;
    while read <= BODY_MAX_BYTES
        && let Some(Ok(chunk)) = body.next().await
    {
        read += chunk.len();
    }
    error.into_response()
}
