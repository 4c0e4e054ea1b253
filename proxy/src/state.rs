//! What the server shares between requests: the configuration, the upstream roles every
//! session uses, the live-session count and the shutdown signal. The HTTP layer asks it to
//! admit a session ([`AppState::admit_session`]) and never reaches into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::WebSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::{Config, ConfigError, Secret};
use crate::session::SessionContext;
use crate::session::response::Pipeline;
use crate::upstream::UpstreamConfig;
use crate::upstream::chat::Responder;
use crate::upstream::realtime::Transcriber;
use crate::upstream::speech::Synthesizer;

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
                (Some(simulator), base, Secret::new("sk-simulated"))
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
            stall_timeout: config.upstream_stall_timeout,
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

/// Why a voice session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionRefused {
    /// The server is draining.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A session the state admitted, not yet running: the upgrade completes, then
/// [`AdmittedSession::run`] serves it.
#[derive(Debug)]
pub(crate) struct AdmittedSession {
    inner: Arc<Inner>,
    id: String,
}

impl AdmittedSession {
    /// Serves the session on its socket until it ends; the server's drain waits for it. Every
    /// log line of the session, its transcriber's and its responses' included, carries its id.
    pub(crate) async fn run(self, socket: WebSocket) {
        let Self { inner, id } = self;
        inner.live_sessions.fetch_add(1, Ordering::SeqCst);
        let span = tracing::info_span!("session", id = %id);
        let session =
            crate::session::run(socket, inner.sessions.clone(), id, inner.shutdown.clone());
        let ended = inner.clone();
        let tracked = inner.tasks.track_future(
            async move {
                session.await;
                ended.live_sessions.fetch_sub(1, Ordering::SeqCst);
                tracing::info!("session ended");
            }
            .instrument(span),
        );
        tracked.await;
    }
}

impl AppState {
    /// Builds the shared state. Without an API key this starts the built-in simulator on a
    /// loopback port and points every upstream at it.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        let Backend {
            upstream,
            simulator,
        } = Backend::from_config(&config).await?;
        let http = crate::upstream::http_client();
        let sessions = Arc::new(SessionContext {
            transcriber: Transcriber::new(upstream.clone(), config.turn_detection),
            pipeline: Pipeline {
                responder: Responder::new(http.clone(), upstream.clone()),
                synthesizer: Synthesizer::new(http.clone(), upstream.clone()),
            },
            system_prompt: config.system_prompt.clone(),
            history_max_messages: config.history_max_messages,
            turn_detection: config.turn_detection,
            simulated: simulator.is_some(),
            transcript_timeout: config.transcript_timeout,
            browser_send_timeout: config.browser_send_timeout,
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

    /// The roles the one-shot endpoints use.
    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.inner.sessions.pipeline
    }

    /// Admits a new voice session with a fresh id, unless the server is draining.
    pub(crate) fn admit_session(&self) -> Result<AdmittedSession, SessionRefused> {
        if self.inner.shutdown.is_cancelled() {
            return Err(SessionRefused::ShuttingDown);
        }
        let number = self.inner.session_counter.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(AdmittedSession {
            inner: self.inner.clone(),
            id: format!("s{number}-{:08x}", rand::random::<u32>()),
        })
    }

    /// Fires when the server begins to shut down.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
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
