//! What the server shares between requests: the configuration, the upstream roles every
//! session uses, the live-session count and the shutdown signal. The HTTP layer asks it to
//! admit a session ([`AppState::admit_session`]) and never reaches into it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::{Config, ConfigError, Secret};
use crate::limits::{AddressRefusal, AddressTable, Episode, TokenBucket};
use crate::observability::Metrics;
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
    /// The metrics listener could not bind its address.
    #[error("cannot listen on METRICS_ADDR {addr}: {source}")]
    MetricsBind {
        /// `METRICS_ADDR`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The session store (`SESSION_STORE`) could not be reached.
    #[error("cannot open SESSION_STORE: {0}")]
    SessionStore(#[from] crate::session_store::StoreError),
    /// The plain-HTTP redirect listener could not bind its address.
    #[error("cannot listen on HTTP_REDIRECT_ADDR {addr}: {source}")]
    RedirectBind {
        /// `HTTP_REDIRECT_ADDR`.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
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
        Self::counted(config, Metrics::new()).await
    }

    /// As [`Backend::from_config`], counting upstream retries into `metrics`.
    async fn counted(config: &Config, metrics: Metrics) -> Result<Self, StartError> {
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
            tts_format: config.tts_response_format,
            tts_sample_rate_hz: config.tts_sample_rate,
            realtime_model: config.realtime_model.clone(),
            realtime_voice: config.realtime_voice.clone(),
            stall_timeout: config.upstream_stall_timeout,
            response_timeout: config.limits.upstream_response_timeout,
            retry_budget: config.limits.upstream_retry_budget,
            metrics,
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
    /// Sessions admitted and not yet ended (upgrading or running).
    live_sessions: AtomicUsize,
    session_counter: AtomicU64,
    max_sessions: usize,
    max_connections: usize,
    admission: Mutex<Admission>,
    api_rates: Mutex<ApiRates>,
    /// What `/metrics` shows.
    metrics: Metrics,
    /// Where `/metrics` is served on its own listener, once bound (`METRICS_ADDR`).
    metrics_addr: OnceLock<SocketAddr>,
    /// Keeps the built-in simulator running while the server does.
    _simulator: Option<openai_sim::Simulator>,
}

/// Who holds sessions, and the episodes of refusals (one log line each).
#[derive(Debug)]
struct Admission {
    addresses: AddressTable,
    refusals: Episode,
}

/// Per-address rate of `/api/*` requests.
#[derive(Debug)]
struct ApiRates {
    per_minute: u32,
    buckets: std::collections::HashMap<IpAddr, TokenBucket>,
}

/// Repeated refusals closer together than this are one episode: one log line.
const REFUSAL_EPISODE_QUIET: Duration = Duration::from_secs(10);

/// File descriptors kept free of sessions and connections, so `/healthz`, the page and the
/// upstream HTTP pool always have some.
const FD_HEADROOM: u64 = 64;

/// Descriptors one session may hold: its browser socket, its transcription socket, and its
/// share of the pooled LLM/TTS connections while it answers.
const FDS_PER_SESSION: u64 = 3;

/// How long a client refused for the global cap is asked to wait: long enough for a session to
/// end somewhere, short enough for a person who tries again.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How long a client refused for its own address's session cap is asked to wait.
const ADDRESS_FULL_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a voice session (or an API request) was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionRefused {
    /// The server is draining.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server holds its maximum of sessions.
    #[error("the server is at its session cap")]
    Full,
    /// This client address holds its maximum of sessions.
    #[error("this address is at its session cap")]
    AddressFull,
    /// This client address opens sessions (or API requests) too fast.
    #[error("this address is over its rate")]
    TooFast(Duration),
}

impl SessionRefused {
    /// How long the client should wait before trying again (the `Retry-After` header).
    pub(crate) fn retry_after(self) -> Duration {
        match self {
            SessionRefused::ShuttingDown | SessionRefused::Full => FULL_RETRY_AFTER,
            SessionRefused::AddressFull => ADDRESS_FULL_RETRY_AFTER,
            // Whole seconds on the wire: round up so a client that obeys is admitted.
            SessionRefused::TooFast(wait) => {
                Duration::from_secs(wait.as_secs_f64().ceil() as u64).max(Duration::from_secs(1))
            }
        }
    }
}

/// A session the state admitted, not yet running: the upgrade completes, then
/// [`AdmittedSession::run`] serves it. Dropping it (an upgrade that never completes) frees its
/// place.
#[derive(Debug)]
pub(crate) struct AdmittedSession {
    inner: Arc<Inner>,
    id: String,
    address: IpAddr,
    /// The resume token the client presented, if any.
    resume_token: Option<String>,
}

impl AdmittedSession {
    /// Serves the session on its socket until it ends; the server's drain waits for it. Every
    /// log line of the session, its transcriber's and its responses' included, carries its id.
    /// The session will continue the conversation kept under `token`, if there is one.
    pub(crate) fn resuming(mut self, token: Option<String>) -> Self {
        self.resume_token = token;
        self
    }

    pub(crate) async fn run(mut self, socket: WebSocket) {
        let inner = self.inner.clone();
        let span = tracing::info_span!("session", id = %self.id);
        let context = inner.sessions.clone();
        let (id, shutdown) = (self.id.clone(), inner.shutdown.clone());
        let resume_token = self.resume_token.take();
        let metrics = inner.metrics.clone();
        let tracked = inner.tasks.track_future(
            async move {
                let end = match context.agent.clone() {
                    Some(agent) => {
                        crate::session::speech_to_speech::run(
                            socket,
                            context,
                            agent,
                            id,
                            resume_token,
                            shutdown,
                        )
                        .await
                    }
                    None => crate::session::run(socket, context, id, resume_token, shutdown).await,
                };
                // Frees the place (and leaves the live count) before the end is counted, so
                // a scrape that sees it closed no longer sees it live.
                drop(self);
                metrics.session_closed(end);
                tracing::info!(reason = end.as_str(), "session ended");
            }
            .instrument(span),
        );
        tracked.await;
    }
}

impl Drop for AdmittedSession {
    fn drop(&mut self) {
        self.inner.live_sessions.fetch_sub(1, Ordering::SeqCst);
        self.inner.metrics.session_released();
        self.inner
            .admission
            .lock()
            .expect("the admission lock is never poisoned")
            .addresses
            .release(self.address);
    }
}

impl AppState {
    /// Builds the shared state. Without an API key this starts the built-in simulator on a
    /// loopback port and points every upstream at it.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let Backend {
            upstream,
            simulator,
        } = Backend::counted(&config, metrics.clone()).await?;
        let http = crate::upstream::http_client(config.limits.upstream_response_timeout);
        let store = crate::session_store::SessionStore::open(&config.session_store).await?;
        let resume = Arc::new(crate::session_store::Resume::new(
            store,
            config.resume_grace,
            config.limits.session_idle_timeout,
        ));
        let sessions = Arc::new(SessionContext {
            transcriber: match config.stt_mode {
                crate::config::SttMode::Realtime => {
                    Transcriber::new(upstream.clone(), config.turn_detection)
                }
                crate::config::SttMode::File => Transcriber::file(upstream.clone(), http.clone()),
            },
            pipeline: Pipeline {
                responder: Responder::new(http.clone(), upstream.clone()),
                synthesizer: Synthesizer::new(http.clone(), upstream.clone()),
                warmer: Arc::new(crate::upstream::warm::Warmer::new(
                    http.clone(),
                    upstream.clone(),
                )),
                first_clause_min_chars: config.first_clause_min_chars,
            },
            agent: (config.pipeline == crate::config::PipelineKind::SpeechToSpeech).then(|| {
                crate::upstream::conversation::Agent::new(
                    upstream.clone(),
                    config.turn_detection,
                    config.system_prompt.clone(),
                )
            }),
            system_prompt: config.system_prompt.clone(),
            history_max_messages: config.history_max_messages,
            turn_detection: config.turn_detection,
            early_turns: crate::session::turn::EarlyTurns {
                commit_at_pauses: config.commit_at_pauses,
                speculate: config.commit_at_pauses && config.speculative_start,
            },
            warm_connections: config.warm_connections,
            simulated: simulator.is_some(),
            transcript_timeout: config.transcript_timeout,
            browser_send_timeout: config.browser_send_timeout,
            limits: config.limits.clone(),
            metrics: metrics.clone(),
            resume,
        });
        let (max_sessions, max_connections) =
            caps_for_open_files(crate::server::current_open_file_limit(), &config);
        let limits = &config.limits;
        let admission = Admission {
            // A minute's worth may come at once (a page reconnecting a few times in a row);
            // beyond that, new sessions come at the per-minute rate.
            addresses: AddressTable::new(
                limits.max_sessions_per_address,
                limits.sessions_per_address_per_minute.max(1),
                f64::from(limits.sessions_per_address_per_minute) / 60.0,
            ),
            refusals: Episode::new(REFUSAL_EPISODE_QUIET),
        };
        let api_rates = ApiRates {
            per_minute: limits.api_requests_per_address_per_minute,
            buckets: std::collections::HashMap::new(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sessions,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                live_sessions: AtomicUsize::new(0),
                session_counter: AtomicU64::new(0),
                max_sessions,
                max_connections,
                admission: Mutex::new(admission),
                api_rates: Mutex::new(api_rates),
                metrics,
                metrics_addr: OnceLock::new(),
                _simulator: simulator,
            }),
        })
    }

    /// Most sessions at once.
    pub fn max_sessions(&self) -> usize {
        self.inner.max_sessions
    }

    /// Most open connections at once.
    pub fn max_connections(&self) -> usize {
        self.inner.max_connections
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

    /// Where `/metrics` is served on its own listener (`METRICS_ADDR`), once [`crate::serve`]
    /// has bound it; `None` while it is served on the main port.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.metrics_addr.get().copied()
    }

    /// Notes where the metrics listener was bound.
    pub(crate) fn set_metrics_addr(&self, addr: SocketAddr) {
        let _ = self.inner.metrics_addr.set(addr);
    }

    /// The server's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The roles the one-shot endpoints use.
    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.inner.sessions.pipeline
    }

    /// Admits a new voice session from `address` with a fresh id, unless the server is
    /// draining or a cap or rate says no. Refusals are logged once per episode.
    pub(crate) fn admit_session(&self, address: IpAddr) -> Result<AdmittedSession, SessionRefused> {
        if self.inner.shutdown.is_cancelled() {
            return Err(SessionRefused::ShuttingDown);
        }
        let now = Instant::now();
        let mut admission = self
            .inner
            .admission
            .lock()
            .expect("the admission lock is never poisoned");
        let live = self.inner.live_sessions.load(Ordering::SeqCst);
        let verdict = if live >= self.inner.max_sessions {
            Err(SessionRefused::Full)
        } else {
            admission
                .addresses
                .admit(address, now)
                .map_err(|refusal| match refusal {
                    AddressRefusal::TooManySessions => SessionRefused::AddressFull,
                    AddressRefusal::TooFast(wait) => SessionRefused::TooFast(wait),
                })
        };
        if let Err(refused) = verdict {
            if let Some(previous) = admission.refusals.record(now) {
                tracing::warn!(
                    %address,
                    reason = %refused,
                    live,
                    max_sessions = self.inner.max_sessions,
                    previous_episode_refusals = previous,
                    "refusing voice sessions"
                );
            }
            return Err(refused);
        }
        self.inner.live_sessions.fetch_add(1, Ordering::SeqCst);
        self.inner.metrics.session_admitted();
        drop(admission);
        let number = self.inner.session_counter.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(AdmittedSession {
            inner: self.inner.clone(),
            id: format!("s{number}-{:08x}", rand::random::<u32>()),
            address,
            resume_token: None,
        })
    }

    /// Counts one `/api/*` request of `address` against its per-minute rate.
    pub(crate) fn admit_api_request(&self, address: IpAddr) -> Result<(), SessionRefused> {
        let now = Instant::now();
        let mut rates = self
            .inner
            .api_rates
            .lock()
            .expect("the rate lock is never poisoned");
        let per_minute = f64::from(rates.per_minute);
        if rates.buckets.len() > 4096 {
            rates.buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        let bucket = rates
            .buckets
            .entry(address)
            .or_insert_with(|| TokenBucket::new(per_minute.max(1.0), per_minute / 60.0, now));
        if bucket.try_take(1.0, now) {
            Ok(())
        } else {
            Err(SessionRefused::TooFast(bucket.wait_for(1.0, now)))
        }
    }

    /// Conversations this process keeps that a reconnect could still resume (live and
    /// parked); `None` with a shared store, whose count is not this proxy's.
    pub fn resumable_sessions(&self) -> Option<usize> {
        self.inner.sessions.resume.store().resumable_here()
    }

    /// Fires when the server begins to shut down.
    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Asks every session to close (1012 "service restart": its page reconnects and resumes,
    /// on another proxy with a shared store) and waits for them, at most `timeout`.
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

/// The session and connection caps: the configured ones, else derived from the open-file
/// limit. After [`FD_HEADROOM`], a third of the descriptors is for plain HTTP connections and
/// the rest for sessions at [`FDS_PER_SESSION`] each.
fn caps_for_open_files(open_files: u64, config: &Config) -> (usize, usize) {
    let available = open_files
        .saturating_sub(FD_HEADROOM)
        .max(FDS_PER_SESSION * 3);
    let connections = available / 3;
    let sessions = (available - connections) / FDS_PER_SESSION;
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    (
        config.limits.max_sessions.unwrap_or(as_usize(sessions)),
        config
            .limits
            .max_connections
            .unwrap_or(as_usize(connections)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_headroom_under_the_open_file_limit() {
        let config = Config::default();
        let (sessions, connections) = caps_for_open_files(1024, &config);
        assert_eq!((sessions, connections), (213, 320));
        let used = sessions as u64 * FDS_PER_SESSION + connections as u64;
        assert!(used + FD_HEADROOM <= 1024, "{used}");
        // A tiny limit still admits someone.
        assert!(caps_for_open_files(16, &config).0 >= 1);
        let mut configured = Config::default();
        configured.limits.max_sessions = Some(7);
        assert_eq!(caps_for_open_files(1024, &configured).0, 7);
    }
}
