//! The voice agent's server: relays a browser's speech to OpenAI's Realtime transcription API,
//! streams each answer from Chat Completions into the Speech API sentence by sentence, and
//! streams the audio back while the model is still writing. It also serves the built client.
//!
//! # Layout
//!
//! * [`config`] — operator settings (flags and environment), the redacted API key.
//! * [`upstream`] — the three upstream roles: [`upstream::realtime`] (transcriber),
//!   [`upstream::chat`] (responder), [`upstream::speech`] (synthesizer), with shared error
//!   classification and retry policy.
//! * [`session`] — one actor per browser connection: the pure turn state machine
//!   ([`session::turn`]), history ([`session::history`]), the response pipeline
//!   ([`session::response`]) and latency waterfall ([`session::metrics`]).
//! * [`speakable`] — preparing LLM text for text-to-speech: sentence boundaries, markdown, cleaning, emoji.
//! * [`http`] — the HTTP surface: `/ws`, `/healthz`, one-shot `/api/*` endpoints, static files.
//! The OpenAI simulator the proxy runs on without a key is the `openai-sim` crate.
//!
//! [`run`] serves until a shutdown signal; [`AppState::new`] and [`app`] let tests build the
//! same server on any listener.

pub mod access;
pub mod config;
pub mod http;
pub mod session;
pub mod speakable;
pub mod upstream;
pub mod wav;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::{Config, ConfigError};
use session::SessionContext;
use session::response::Pipeline;
use upstream::UpstreamConfig;
use upstream::chat::Responder;
use upstream::realtime::Transcriber;
use upstream::speech::Synthesizer;

pub use http::app;

/// How long shutdown waits for sessions to say goodbye before giving up on them.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The built-in simulator could not start.
    #[error("could not start the built-in OpenAI simulator: {0}")]
    Simulator(std::io::Error),
    /// The listener failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Where the upstream services are: OpenAI (or a compatible server) when a key is set, else a
/// built-in simulator started on a loopback port.
#[derive(Debug)]
pub struct Backend {
    /// Endpoints, credentials and models.
    pub upstream: Arc<UpstreamConfig>,
    /// The built-in simulator, when in use; dropping it stops it.
    pub simulator: Option<openai_sim::Simulator>,
}

impl Backend {
    /// Resolves the backend of `config`, starting the simulator if there is no API key.
    pub async fn from_config(config: &Config) -> Result<Self, StartError> {
        let (simulator, base_url, api_key) = match &config.openai_api_key {
            Some(key) => (None, config.openai_base_url.clone(), key.clone()),
            None => {
                // A long-running backend keeps no records of its traffic.
                let simulator = openai_sim::Simulator::start(openai_sim::SimConfig {
                    recording: false,
                    ..openai_sim::SimConfig::default()
                })
                .await
                .map_err(StartError::Simulator)?;
                let base = simulator.base_url();
                tracing::warn!(
                    base_url = %base,
                    "OPENAI_API_KEY is not set: running on the built-in OpenAI simulator \
                     (scripted, synthetic speech); set the key to talk to OpenAI"
                );
                // The simulator wants a bearer token like OpenAI does, and takes any.
                (Some(simulator), base, config::Secret::new("sk-simulated"))
            }
        };
        let upstream = Arc::new(UpstreamConfig {
            endpoints: config.endpoints(&base_url)?,
            api_key: Some(api_key),
            stt_model: config.stt_model.clone(),
            stt_language: config.stt_language.clone(),
            llm_model: config.llm_model.clone(),
            llm_max_completion_tokens: config.llm_max_completion_tokens,
            tts_model: config.tts_model.clone(),
            tts_voice: config.tts_voice.clone(),
            tts_instructions: config.tts_instructions.clone(),
            stall_timeout: Duration::from_millis(config.upstream_stall_timeout_ms),
        });
        Ok(Self {
            upstream,
            simulator,
        })
    }
}

/// Everything the server shares between requests; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    sessions: Arc<SessionContext>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    live_sessions: AtomicUsize,
    session_counter: AtomicU64,
    /// Keeps the built-in simulator running while the server does.
    _simulator: Option<openai_sim::Simulator>,
}

impl AppState {
    /// Builds the shared state. Without an API key this starts the built-in simulator on a
    /// loopback port and points every upstream at it.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        let Backend {
            upstream,
            simulator,
        } = Backend::from_config(&config).await?;
        let http = upstream::http_client();
        let sessions = Arc::new(SessionContext {
            transcriber: Transcriber::new(upstream.clone(), config.turn_detection.into()),
            pipeline: Pipeline {
                responder: Responder::new(http.clone(), upstream.clone()),
                synthesizer: Synthesizer::new(http.clone(), upstream.clone()),
            },
            system_prompt: config.system_prompt.clone(),
            history_max_messages: config.history_max_messages,
            turn_detection: config.turn_detection.into(),
            simulated: simulator.is_some(),
            transcript_timeout: Duration::from_millis(config.transcript_timeout_ms),
            browser_send_timeout: Duration::from_millis(config.browser_send_timeout_ms),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sessions,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                live_sessions: AtomicUsize::new(0),
                session_counter: AtomicU64::new(0),
                _simulator: simulator,
            }),
        })
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether the upstream is the built-in simulator.
    pub fn simulated(&self) -> bool {
        self.inner.sessions.simulated
    }

    /// Sessions running right now.
    pub fn live_sessions(&self) -> usize {
        self.inner.live_sessions.load(Ordering::SeqCst)
    }

    /// Asks every session to close (1001) and waits for them, at most `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = self.live_sessions(),
                "sessions still running after the drain timeout"
            );
        }
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then closes every session
/// gracefully.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let token = state.inner.shutdown.clone();
    let router = app(state.clone());
    // Audio frames are small and latency-critical: never let Nagle's algorithm hold them back.
    let listener = listener.tap_io(|socket| {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        tokio::select! {
            () = shutdown => {}
            () = token.cancelled() => {}
        }
        // Sessions live on upgraded connections: tell them now, so they close while the
        // listener drains.
        token.cancel();
    });
    let result = server.await;
    state.shutdown(SHUTDOWN_DRAIN_TIMEOUT).await;
    result.map_err(StartError::Serve)
}

/// Builds the state from `config` and serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = AppState::new(config).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, simulated = state.simulated(), "voice agent proxy listening");
    }
    serve(listener, state, shutdown).await
}
