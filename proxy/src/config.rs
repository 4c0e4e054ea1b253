//! Operator configuration: command-line flags, each also read from an environment variable
//! (and from `.env`, loaded by `main` before parsing).
//!
//! Loaded once at start-up and validated there, so a bad URL fails fast instead of in the first
//! session. The browser never chooses any of this.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub use crate::upstream::speech_format::TtsFormat;
use protocol::TurnDetection;

/// OpenAI's public API, the default upstream.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The default system prompt: a voice agent's answers are heard, not read, so they must be short
/// and free of markup.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a friendly voice assistant. Answer briefly and \
conversationally, in plain spoken sentences. Never use markdown, lists, code, or emoji.";

/// A secret (the OpenAI key, the access token), which never appears in `Debug` or `Display`
/// output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The secret itself, only to send it upstream or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.trim().to_owned()))
    }
}

/// The default of every setting, in one place: [`Config::default`] and the command line's
/// defaults both read these.
pub mod defaults {
    use std::time::Duration;

    /// Transcription model: the seed design's, fast and cheap.
    pub const STT_MODEL: &str = "gpt-4o-mini-transcribe";
    /// Chat model: the seed design's, quick to its first token.
    pub const LLM_MODEL: &str = "gpt-4.1-mini";
    /// Upper bound of one answer, in tokens: spoken answers are short; this caps a runaway.
    pub const LLM_MAX_COMPLETION_TOKENS: u32 = 400;
    /// Speech model: the seed design's, the one that takes style instructions.
    pub const TTS_MODEL: &str = "gpt-4o-mini-tts";
    /// Speech voice.
    pub const TTS_VOICE: &str = "coral";
    /// Speech-to-speech model: OpenAI's GA Realtime model.
    pub const REALTIME_MODEL: &str = "gpt-realtime";
    /// Speech-to-speech voice: one of the two OpenAI recommends for its Realtime models.
    pub const REALTIME_VOICE: &str = "marin";
    /// User and assistant messages kept in the history: a dozen exchanges, enough context for
    /// a conversation, small enough to keep the first token quick.
    pub const HISTORY_MAX_MESSAGES: usize = 24;
    /// How long a conversation is kept after its socket drops, for the page to reconnect and
    /// resume it: long enough for a phone to change networks or a laptop to wake, short enough
    /// that an abandoned conversation does not linger.
    pub const RESUME_GRACE: Duration = Duration::from_secs(120);
    /// A started upstream stream silent this long counts as stalled: OpenAI streams tokens
    /// and audio continuously once started, so a long gap means a hung connection.
    pub const UPSTREAM_STALL_TIMEOUT: Duration = Duration::from_secs(15);
    /// How long a finished turn may wait for its transcript: several times a slow
    /// transcription of the longest utterance.
    pub const TRANSCRIPT_TIMEOUT: Duration = Duration::from_secs(20);
    /// How long a browser may take to accept one frame: a second or two of audio is queued
    /// before this matters, so only a browser that stopped reading reaches it.
    pub const BROWSER_SEND_TIMEOUT: Duration = Duration::from_secs(10);
    /// Loopback: nothing is exposed until the operator says where.
    pub const LISTEN_ADDR: &str = "127.0.0.1:8000";
    /// Where `trunk build` puts the client.
    pub const CLIENT_DIR: &str = "dist";

    /// Sessions one client address may hold: a household or office behind one NAT address
    /// runs a few tabs, not dozens.
    pub const MAX_SESSIONS_PER_ADDRESS: usize = 8;
    /// New sessions one address may open per minute (a minute's worth may come at once): a page that reconnects now and then stays far below it, a
    /// script opening sessions in a loop does not.
    pub const SESSIONS_PER_ADDRESS_PER_MINUTE: u32 = 30;
    /// Open TCP connections one address may hold before the upgrade or between requests: a
    /// browser opens six per host; a slowloris attacker opens thousands.
    pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may sit idle between requests: a browser sends headers at once.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long an `/api/*` request may take to send its (small, JSON) body.
    pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);
    /// A session in which nobody speaks this long is closed: a forgotten tab must not hold a
    /// session slot forever.
    pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    /// Longest a session may last: a conversation is minutes, not a day.
    pub const MAX_SESSION_LENGTH: Duration = Duration::from_secs(60 * 60);
    /// How often the proxy pings the browser; it closes a session whose browser has not
    /// answered by the next ping. Browsers answer pings on their own; 20 s is below the idle
    /// timeouts of common middleboxes.
    pub const BROWSER_PING_INTERVAL: Duration = Duration::from_secs(20);
    /// How long the upstream transcription socket stays open with nobody speaking: reopening
    /// costs one connect at the next turn (overlapped with the speech), holding it costs the
    /// operator's Realtime quota.
    pub const TRANSCRIBER_QUIET_CLOSE: Duration = Duration::from_secs(30);
    /// How long an upstream may take to accept a connection and send its first byte (headers,
    /// or the Realtime handshake): OpenAI answers in well under a second; a silent upstream must
    /// be reported within seconds, not half a minute.
    pub const UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(4);
    /// Total time one upstream request may spend on attempts and backoff before it fails.
    pub const UPSTREAM_RETRY_BUDGET: Duration = Duration::from_secs(8);
    /// Audio accepted from a browser, as a multiple of real time: a little over 1 for jitter
    /// and the pre-roll's catch-up, far below what a script could push.
    pub const AUDIO_RATE_LIMIT: f64 = 1.5;
    /// Longest single utterance: the turn is ended (and the user told) at this length, so one
    /// turn cannot stream upstream forever.
    pub const MAX_UTTERANCE: Duration = Duration::from_secs(30);
    /// Protocol errors (invalid messages or frames) tolerated within ten seconds before the
    /// session is closed with 1008: a buggy client gets told, a fuzzer is cut off.
    pub const MAX_PROTOCOL_ERRORS: u32 = 20;
    /// `/api/*` requests one address may make per minute, when the API is enabled.
    pub const API_REQUESTS_PER_ADDRESS_PER_MINUTE: u32 = 30;
    /// How often the TLS certificate and key files are checked for a change: a renewal
    /// (every few weeks, a month before expiry) is served within a minute, and a check is two
    /// `stat` calls.
    pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
}

/// Who ends a user turn (mirrors [`TurnDetection`] for the command line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TurnDetectionArg {
    /// The browser's VAD; the proxy commits the audio.
    #[default]
    Client,
    /// OpenAI's silence-based server VAD.
    ServerVad,
    /// OpenAI's semantic (end-of-thought) VAD.
    SemanticVad,
}

impl From<TurnDetectionArg> for TurnDetection {
    fn from(arg: TurnDetectionArg) -> Self {
        match arg {
            TurnDetectionArg::Client => TurnDetection::Client,
            TurnDetectionArg::ServerVad => TurnDetection::ServerVad,
            TurnDetectionArg::SemanticVad => TurnDetection::SemanticVad,
        }
    }
}

/// How speech becomes text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SttMode {
    /// OpenAI's Realtime transcription WebSocket: audio streams as the user speaks, and the
    /// transcript follows the end of the turn quickest.
    #[default]
    Realtime,
    /// `POST /audio/transcriptions` with each turn as a WAV: what every OpenAI-compatible
    /// speech-to-text server offers. Needs the client's turn detection.
    File,
}

/// Which pipeline turns the user's speech into a spoken answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PipelineKind {
    /// Speech-to-text, then Chat Completions, then Speech, sentence by sentence: any
    /// OpenAI-compatible server can serve each stage.
    #[default]
    Chained,
    /// One OpenAI Realtime conversation session per browser session: the model hears the
    /// audio and speaks its answer itself.
    SpeechToSpeech,
}

/// A duration in whole milliseconds, for the command line's defaults.
const fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// The command line: every flag also reads an environment variable (and `.env`, which `main`
/// loads first). It converts into a validated [`Config`].
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy", version, about = "Realtime voice agent proxy")]
pub struct Cli {
    /// OpenAI API key. Without it the proxy runs on its built-in OpenAI simulator.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,

    /// Base URL of the OpenAI API (or any compatible server). The Realtime WebSocket URL is
    /// derived from it (http→ws, https→wss).
    #[arg(long, env = "OPENAI_BASE_URL", default_value = DEFAULT_OPENAI_BASE_URL)]
    pub openai_base_url: String,

    /// Base URL for speech-to-text only (Realtime transcription), overriding OPENAI_BASE_URL.
    #[arg(long, env = "STT_BASE_URL")]
    pub stt_base_url: Option<String>,

    /// Base URL for the language model only (Chat Completions), overriding OPENAI_BASE_URL.
    #[arg(long, env = "LLM_BASE_URL")]
    pub llm_base_url: Option<String>,

    /// Base URL for text-to-speech only (Speech), overriding OPENAI_BASE_URL.
    #[arg(long, env = "TTS_BASE_URL")]
    pub tts_base_url: Option<String>,

    /// Transcription model.
    #[arg(long, env = "STT_MODEL", default_value = defaults::STT_MODEL)]
    pub stt_model: String,

    /// How speech becomes text: the Realtime WebSocket, or one file upload per turn.
    #[arg(long, env = "STT_MODE", value_enum, default_value_t = SttMode::Realtime)]
    pub stt_mode: SttMode,

    /// Language of the user's speech (ISO-639-1, e.g. `en`); improves accuracy and latency.
    #[arg(long, env = "STT_LANGUAGE")]
    pub stt_language: Option<String>,

    /// Chat model.
    #[arg(long, env = "LLM_MODEL", default_value = defaults::LLM_MODEL)]
    pub llm_model: String,

    /// Upper bound on the length of one answer, in tokens.
    #[arg(long, env = "LLM_MAX_COMPLETION_TOKENS", default_value_t = defaults::LLM_MAX_COMPLETION_TOKENS)]
    pub llm_max_completion_tokens: u32,

    /// Speech model.
    #[arg(long, env = "TTS_MODEL", default_value = defaults::TTS_MODEL)]
    pub tts_model: String,

    /// Speech voice.
    #[arg(long, env = "TTS_VOICE", default_value = defaults::TTS_VOICE)]
    pub tts_voice: String,

    /// Style instructions for the speech model (not supported by tts-1 models).
    #[arg(long, env = "TTS_INSTRUCTIONS")]
    pub tts_instructions: Option<String>,

    /// The container to ask the speech server for: `pcm` (OpenAI's) or `wav` (for servers
    /// whose PCM rate is unknown or that send WAV anyway).
    #[arg(long, env = "TTS_RESPONSE_FORMAT", value_enum, default_value_t = TtsFormat::Pcm)]
    pub tts_response_format: TtsFormat,

    /// The sample rate of the speech server's `pcm` replies, in Hz (OpenAI: 24000); other
    /// rates are resampled to 24 kHz. A WAV reply says its own.
    #[arg(long, env = "TTS_SAMPLE_RATE", default_value_t = protocol::SAMPLE_RATE_HZ)]
    pub tts_sample_rate: u32,

    /// Which pipeline answers: `chained` (speech-to-text → chat → speech) or
    /// `speech-to-speech` (one Realtime conversation session per browser session, at
    /// OPENAI_BASE_URL or LLM_BASE_URL).
    #[arg(long, env = "PIPELINE", value_enum, default_value_t = PipelineKind::Chained)]
    pub pipeline: PipelineKind,

    /// The Realtime model of the speech-to-speech pipeline.
    #[arg(long, env = "REALTIME_MODEL", default_value = defaults::REALTIME_MODEL)]
    pub realtime_model: String,

    /// The voice of the speech-to-speech pipeline.
    #[arg(long, env = "REALTIME_VOICE", default_value = defaults::REALTIME_VOICE)]
    pub realtime_voice: String,

    /// The system prompt of every conversation.
    #[arg(long, env = "SYSTEM_PROMPT", default_value = DEFAULT_SYSTEM_PROMPT)]
    pub system_prompt: String,

    /// Most user and assistant messages kept in the history sent to the model (oldest dropped
    /// first; the system prompt is always kept).
    #[arg(long, env = "HISTORY_MAX_MESSAGES", default_value_t = defaults::HISTORY_MAX_MESSAGES)]
    pub history_max_messages: usize,

    /// How long a conversation is kept after its socket drops, in seconds, so the page can
    /// reconnect and continue it (`?resume=` with the token of its `session_ready`); 0 turns
    /// resume off.
    #[arg(long, env = "RESUME_GRACE_S", default_value_t = defaults::RESUME_GRACE.as_secs())]
    pub resume_grace_s: u64,

    /// Where resumable conversations are kept: `memory` (this process; a reconnect must land
    /// on the same proxy) or `redis://host:port[/db]` (shared by every proxy behind a load
    /// balancer, so a reconnect or a drained proxy's sessions resume on any of them).
    #[arg(long, env = "SESSION_STORE", default_value = "memory")]
    pub session_store: String,

    /// Who ends a user turn.
    #[arg(long, env = "TURN_DETECTION", value_enum, default_value_t = TurnDetectionArg::Client)]
    pub turn_detection: TurnDetectionArg,

    /// With `TURN_DETECTION=client`: commit the user's audio in pieces at the browser VAD's
    /// short pauses, so at the end of a long question only its last piece is left to
    /// transcribe (the pieces' transcripts are joined into the one turn).
    #[arg(long, env = "COMMIT_AT_PAUSES", default_value_t = true, action = clap::ArgAction::Set)]
    pub commit_at_pauses: bool,

    /// With `COMMIT_AT_PAUSES`: when everything said up to a short pause is transcribed, start
    /// the answer before the turn is confirmed; it is heard only if the user does not go on
    /// (at most two per turn, none in a long turn).
    #[arg(long, env = "SPECULATIVE_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub speculative_start: bool,

    /// Open the LLM and speech connections when the user starts speaking if none is warm, so
    /// no answer waits for a TCP and TLS handshake.
    #[arg(long, env = "WARM_CONNECTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub warm_connections: bool,

    /// The shortest first clause of an answer sent to speech on its own, in speakable
    /// characters: the answer's first audio waits for it. Later segments are whole sentences.
    #[arg(long, env = "FIRST_CLAUSE_MIN_CHARS", default_value_t = crate::speakable::DEFAULT_FIRST_CLAUSE_MIN_CHARS)]
    pub first_clause_min_chars: usize,

    /// How long a started upstream stream may go without data before it counts as stalled, in
    /// milliseconds. The transcription socket is pinged three times per this period and given
    /// up when it answers nothing for all of it.
    #[arg(long, env = "UPSTREAM_STALL_TIMEOUT_MS", default_value_t = millis(defaults::UPSTREAM_STALL_TIMEOUT))]
    pub upstream_stall_timeout_ms: u64,

    /// How long a finished user turn may wait for its transcript, in milliseconds.
    #[arg(long, env = "TRANSCRIPT_TIMEOUT_MS", default_value_t = millis(defaults::TRANSCRIPT_TIMEOUT))]
    pub transcript_timeout_ms: u64,

    /// How long the browser may take to accept one frame before its session ends, in
    /// milliseconds: a browser that stops reading must not hold its upstream sockets.
    #[arg(long, env = "BROWSER_SEND_TIMEOUT_MS", default_value_t = millis(defaults::BROWSER_SEND_TIMEOUT))]
    pub browser_send_timeout_ms: u64,

    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = defaults::LISTEN_ADDR)]
    pub listen_addr: SocketAddr,

    /// Serve HTTPS and WSS on LISTEN_ADDR with this certificate chain (a PEM file, leaf
    /// first, e.g. Let's Encrypt's `fullchain.pem`). Needs TLS_KEY.
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of TLS_CERT (a PEM file: PKCS#8, PKCS#1 or SEC1). Needs TLS_CERT.
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// How often TLS_CERT and TLS_KEY are checked for a change, in seconds; a changed pair is
    /// loaded for new connections without a restart.
    #[arg(long, env = "TLS_RELOAD_INTERVAL_S", default_value_t = defaults::TLS_RELOAD_INTERVAL.as_secs())]
    pub tls_reload_interval_s: u64,

    /// With TLS: also listen for plain HTTP here and answer every request with a redirect to
    /// the same path over HTTPS (e.g. `0.0.0.0:80`).
    #[arg(long, env = "HTTP_REDIRECT_ADDR")]
    pub http_redirect_addr: Option<SocketAddr>,

    /// Serve `/metrics` (Prometheus) on a listener of its own at this address (e.g.
    /// `127.0.0.1:9464`), and no longer on LISTEN_ADDR. Unset: `/metrics` is on the main port,
    /// so there is one port to run; a reverse proxy in front keeps it internal.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Web origins besides the proxy's own whose pages may open a voice session,
    /// comma-separated (e.g. `https://voice.example.com`). See `access.rs`.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// If set, voice sessions and the API need this token: `?token=` on the page's URL (the
    /// page passes it on to `/ws`), or `Authorization: Bearer` for other clients.
    #[arg(long, env = "ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<Secret>,

    /// Directory of the built browser client, served at `/` when it exists.
    #[arg(long, env = "CLIENT_DIR", default_value = defaults::CLIENT_DIR)]
    pub client_dir: PathBuf,

    /// Serve on a non-loopback address without an access token: anyone who reaches the port
    /// can talk to the agent on your API key.
    #[arg(long, env = "OPEN_TO_ANYONE")]
    pub open_to_anyone: bool,

    /// Host names (with `:port` if not the default) this proxy is reached by, comma-separated,
    /// besides the loopback names. `/ws` and `/api/*` refuse any other `Host` (DNS rebinding).
    #[arg(long, env = "PUBLIC_HOSTS", value_delimiter = ',')]
    pub public_hosts: Vec<String>,

    /// Behind a reverse proxy: the header that carries the client's address (`X-Forwarded-For`,
    /// whose last entry is used, or `X-Real-IP`). Only set it when every request comes through a
    /// proxy that sets it; otherwise clients could claim any address.
    #[arg(long, env = "CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,

    /// Most sessions at once (default: derived from the open-file limit, keeping headroom so
    /// `/healthz` and the page always answer).
    #[arg(long, env = "MAX_SESSIONS")]
    pub max_sessions: Option<usize>,

    /// Most sessions one client address may hold.
    #[arg(long, env = "MAX_SESSIONS_PER_ADDRESS", default_value_t = defaults::MAX_SESSIONS_PER_ADDRESS)]
    pub max_sessions_per_address: usize,

    /// New sessions one client address may open per minute (a minute's worth may come at once).
    #[arg(long, env = "SESSIONS_PER_ADDRESS_PER_MINUTE", default_value_t = defaults::SESSIONS_PER_ADDRESS_PER_MINUTE)]
    pub sessions_per_address_per_minute: u32,

    /// Most open TCP connections at once (default: derived from the open-file limit).
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most open TCP connections from one peer address (not applied behind a reverse proxy,
    /// whose own address every connection has).
    #[arg(long, env = "MAX_CONNECTIONS_PER_ADDRESS", default_value_t = defaults::MAX_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: usize,

    /// How long a client may take to send request headers, and a kept-alive connection may
    /// sit idle, in milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = millis(defaults::HEADER_READ_TIMEOUT))]
    pub header_read_timeout_ms: u64,

    /// How long an `/api/*` request may take to send its body, in milliseconds.
    #[arg(long, env = "REQUEST_BODY_TIMEOUT_MS", default_value_t = millis(defaults::REQUEST_BODY_TIMEOUT))]
    pub request_body_timeout_ms: u64,

    /// A session in which nobody speaks for this long is closed, in seconds.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_S", default_value_t = defaults::SESSION_IDLE_TIMEOUT.as_secs())]
    pub session_idle_timeout_s: u64,

    /// Longest a session may last, in seconds.
    #[arg(long, env = "MAX_SESSION_LENGTH_S", default_value_t = defaults::MAX_SESSION_LENGTH.as_secs())]
    pub max_session_length_s: u64,

    /// How often the proxy pings the browser, in milliseconds; a browser that has not answered
    /// by the next ping is gone.
    #[arg(long, env = "BROWSER_PING_INTERVAL_MS", default_value_t = millis(defaults::BROWSER_PING_INTERVAL))]
    pub browser_ping_interval_ms: u64,

    /// How long the upstream transcription socket stays open while nobody speaks, in
    /// milliseconds. It opens again at the next speech.
    #[arg(long, env = "TRANSCRIBER_QUIET_CLOSE_MS", default_value_t = millis(defaults::TRANSCRIBER_QUIET_CLOSE))]
    pub transcriber_quiet_close_ms: u64,

    /// How long an upstream may take to accept a connection and send its first byte, in
    /// milliseconds.
    #[arg(long, env = "UPSTREAM_RESPONSE_TIMEOUT_MS", default_value_t = millis(defaults::UPSTREAM_RESPONSE_TIMEOUT))]
    pub upstream_response_timeout_ms: u64,

    /// Total time one upstream request may spend on attempts and backoff, in milliseconds.
    #[arg(long, env = "UPSTREAM_RETRY_BUDGET_MS", default_value_t = millis(defaults::UPSTREAM_RETRY_BUDGET))]
    pub upstream_retry_budget_ms: u64,

    /// Audio accepted from a browser, as a multiple of real time; the excess is dropped.
    #[arg(long, env = "AUDIO_RATE_LIMIT", default_value_t = defaults::AUDIO_RATE_LIMIT)]
    pub audio_rate_limit: f64,

    /// Longest single utterance, in seconds; the turn ends there.
    #[arg(long, env = "MAX_UTTERANCE_S", default_value_t = defaults::MAX_UTTERANCE.as_secs())]
    pub max_utterance_s: u64,

    /// Protocol errors tolerated within ten seconds before a session is closed (1008).
    #[arg(long, env = "MAX_PROTOCOL_ERRORS", default_value_t = defaults::MAX_PROTOCOL_ERRORS)]
    pub max_protocol_errors: u32,

    /// Serve `/api/reply` and `/api/speech` (they need ACCESS_TOKEN).
    #[arg(long, env = "ENABLE_API")]
    pub enable_api: bool,

    /// `/api/*` requests one client address may make per minute.
    #[arg(long, env = "API_REQUESTS_PER_ADDRESS_PER_MINUTE", default_value_t = defaults::API_REQUESTS_PER_ADDRESS_PER_MINUTE)]
    pub api_requests_per_address_per_minute: u32,
}

/// Everything the operator sets, validated. [`Config::default`] reads no environment: tests
/// start from it and change what they need, whatever the developer has exported.
#[derive(Debug, Clone)]
pub struct Config {
    /// OpenAI API key; `None` runs the built-in simulator.
    pub openai_api_key: Option<Secret>,
    /// Base URL of OpenAI or a compatible server.
    pub openai_base_url: String,
    /// Per-stage base URL overrides.
    pub stt_base_url: Option<String>,
    /// See [`Config::stt_base_url`].
    pub llm_base_url: Option<String>,
    /// See [`Config::stt_base_url`].
    pub tts_base_url: Option<String>,
    /// Transcription model.
    pub stt_model: String,
    /// How speech becomes text.
    pub stt_mode: SttMode,
    /// Language hint of the user's speech.
    pub stt_language: Option<String>,
    /// Chat model.
    pub llm_model: String,
    /// Upper bound of one answer, in tokens.
    pub llm_max_completion_tokens: u32,
    /// Speech model.
    pub tts_model: String,
    /// Speech voice.
    pub tts_voice: String,
    /// Speech style instructions.
    pub tts_instructions: Option<String>,
    /// The speech server's reply container.
    pub tts_response_format: TtsFormat,
    /// The rate of its `pcm` replies.
    pub tts_sample_rate: u32,
    /// Which pipeline answers.
    pub pipeline: PipelineKind,
    /// The speech-to-speech model.
    pub realtime_model: String,
    /// The speech-to-speech voice.
    pub realtime_voice: String,
    /// System prompt of every conversation.
    pub system_prompt: String,
    /// User and assistant messages kept in the history.
    pub history_max_messages: usize,
    /// How long a conversation is kept after its socket drops; zero: no resume.
    pub resume_grace: Duration,
    /// Where resumable conversations are kept.
    pub session_store: SessionStoreKind,
    /// Who ends a user turn.
    pub turn_detection: TurnDetection,
    /// Commit the user's audio in pieces at short pauses.
    pub commit_at_pauses: bool,
    /// Start answering speculatively at a short pause.
    pub speculative_start: bool,
    /// Warm the LLM and speech connections when the user starts speaking.
    pub warm_connections: bool,
    /// The shortest first clause sent to speech on its own.
    pub first_clause_min_chars: usize,
    /// A started upstream stream silent this long counts as stalled.
    pub upstream_stall_timeout: Duration,
    /// How long a finished turn may wait for its transcript.
    pub transcript_timeout: Duration,
    /// How long a browser may take to accept one frame.
    pub browser_send_timeout: Duration,
    /// Address to listen on.
    pub listen_addr: SocketAddr,
    /// The certificate and key to serve HTTPS with; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for a change.
    pub tls_reload_interval: Duration,
    /// A plain-HTTP listener that redirects to HTTPS (only with [`Config::tls`]).
    pub http_redirect_addr: Option<SocketAddr>,
    /// Where `/metrics` is served instead of the main port, if set.
    pub metrics_addr: Option<SocketAddr>,
    /// Web origins besides the proxy's own whose pages may open a voice session.
    pub allowed_origins: Vec<String>,
    /// Token that `/ws` and `/api/*` need, if set.
    pub access_token: Option<Secret>,
    /// Directory of the built client.
    pub client_dir: PathBuf,
    /// Host names the proxy is reached by, besides loopback names.
    pub public_hosts: Vec<String>,
    /// The header holding the client's address behind a reverse proxy.
    pub client_address_header: Option<String>,
    /// Capacity, rate, timeout and spend limits.
    pub limits: Limits,
    /// Whether `/api/reply` and `/api/speech` are served.
    pub enable_api: bool,
}

/// Capacity, rate, timeout and spend limits (see `README.md`, "Running it on the internet").
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most sessions at once; `None`: derived from the open-file limit at start.
    pub max_sessions: Option<usize>,
    /// Most sessions per client address.
    pub max_sessions_per_address: usize,
    /// New sessions per client address per minute.
    pub sessions_per_address_per_minute: u32,
    /// Most open connections; `None`: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
    /// Most open connections per peer address (without a client address header).
    pub max_connections_per_address: usize,
    /// Header read and keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// `/api/*` body timeout.
    pub request_body_timeout: Duration,
    /// Session closed after this long without speech.
    pub session_idle_timeout: Duration,
    /// Longest session.
    pub max_session_length: Duration,
    /// Browser ping interval (and pong deadline).
    pub browser_ping_interval: Duration,
    /// Transcription socket closed after this long without speech.
    pub transcriber_quiet_close: Duration,
    /// Upstream connect + first byte deadline.
    pub upstream_response_timeout: Duration,
    /// Upstream attempts + backoff, in all.
    pub upstream_retry_budget: Duration,
    /// Audio accepted, as a multiple of real time.
    pub audio_rate_limit: f64,
    /// Longest utterance.
    pub max_utterance: Duration,
    /// Protocol errors tolerated per window.
    pub max_protocol_errors: u32,
    /// `/api/*` requests per address per minute.
    pub api_requests_per_address_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: None,
            max_sessions_per_address: defaults::MAX_SESSIONS_PER_ADDRESS,
            sessions_per_address_per_minute: defaults::SESSIONS_PER_ADDRESS_PER_MINUTE,
            max_connections: None,
            max_connections_per_address: defaults::MAX_CONNECTIONS_PER_ADDRESS,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            request_body_timeout: defaults::REQUEST_BODY_TIMEOUT,
            session_idle_timeout: defaults::SESSION_IDLE_TIMEOUT,
            max_session_length: defaults::MAX_SESSION_LENGTH,
            browser_ping_interval: defaults::BROWSER_PING_INTERVAL,
            transcriber_quiet_close: defaults::TRANSCRIBER_QUIET_CLOSE,
            upstream_response_timeout: defaults::UPSTREAM_RESPONSE_TIMEOUT,
            upstream_retry_budget: defaults::UPSTREAM_RETRY_BUDGET,
            audio_rate_limit: defaults::AUDIO_RATE_LIMIT,
            max_utterance: defaults::MAX_UTTERANCE,
            max_protocol_errors: defaults::MAX_PROTOCOL_ERRORS,
            api_requests_per_address_per_minute: defaults::API_REQUESTS_PER_ADDRESS_PER_MINUTE,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            openai_api_key: None,
            openai_base_url: DEFAULT_OPENAI_BASE_URL.to_owned(),
            stt_base_url: None,
            llm_base_url: None,
            tts_base_url: None,
            stt_model: defaults::STT_MODEL.to_owned(),
            stt_mode: SttMode::Realtime,
            stt_language: None,
            llm_model: defaults::LLM_MODEL.to_owned(),
            llm_max_completion_tokens: defaults::LLM_MAX_COMPLETION_TOKENS,
            tts_model: defaults::TTS_MODEL.to_owned(),
            tts_voice: defaults::TTS_VOICE.to_owned(),
            tts_instructions: None,
            tts_response_format: TtsFormat::Pcm,
            tts_sample_rate: protocol::SAMPLE_RATE_HZ,
            pipeline: PipelineKind::Chained,
            realtime_model: defaults::REALTIME_MODEL.to_owned(),
            realtime_voice: defaults::REALTIME_VOICE.to_owned(),
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
            history_max_messages: defaults::HISTORY_MAX_MESSAGES,
            resume_grace: defaults::RESUME_GRACE,
            session_store: SessionStoreKind::Memory,
            turn_detection: TurnDetection::Client,
            commit_at_pauses: true,
            speculative_start: true,
            warm_connections: true,
            first_clause_min_chars: crate::speakable::DEFAULT_FIRST_CLAUSE_MIN_CHARS,
            upstream_stall_timeout: defaults::UPSTREAM_STALL_TIMEOUT,
            transcript_timeout: defaults::TRANSCRIPT_TIMEOUT,
            browser_send_timeout: defaults::BROWSER_SEND_TIMEOUT,
            listen_addr: defaults::LISTEN_ADDR
                .parse()
                .expect("the default listen address parses"),
            metrics_addr: None,
            allowed_origins: Vec::new(),
            access_token: None,
            client_dir: PathBuf::from(defaults::CLIENT_DIR),
            public_hosts: Vec::new(),
            client_address_header: None,
            tls: None,
            tls_reload_interval: defaults::TLS_RELOAD_INTERVAL,
            http_redirect_addr: None,
            limits: Limits::default(),
            enable_api: false,
        }
    }
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, ConfigError> {
        let tls = match (cli.tls_cert, cli.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::TlsHalfSet {
                    set: "TLS_CERT",
                    unset: "TLS_KEY",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::TlsHalfSet {
                    set: "TLS_KEY",
                    unset: "TLS_CERT",
                });
            }
        };
        let config = Self {
            openai_api_key: cli.openai_api_key,
            openai_base_url: cli.openai_base_url,
            stt_base_url: cli.stt_base_url,
            llm_base_url: cli.llm_base_url,
            tts_base_url: cli.tts_base_url,
            stt_model: cli.stt_model,
            stt_mode: cli.stt_mode,
            stt_language: cli.stt_language,
            llm_model: cli.llm_model,
            llm_max_completion_tokens: cli.llm_max_completion_tokens,
            tts_model: cli.tts_model,
            tts_voice: cli.tts_voice,
            tts_instructions: cli.tts_instructions,
            tts_response_format: cli.tts_response_format,
            tts_sample_rate: cli.tts_sample_rate,
            pipeline: cli.pipeline,
            realtime_model: cli.realtime_model,
            realtime_voice: cli.realtime_voice,
            system_prompt: cli.system_prompt,
            history_max_messages: cli.history_max_messages,
            resume_grace: Duration::from_secs(cli.resume_grace_s),
            session_store: SessionStoreKind::parse(&cli.session_store)?,
            turn_detection: cli.turn_detection.into(),
            commit_at_pauses: cli.commit_at_pauses,
            speculative_start: cli.speculative_start,
            warm_connections: cli.warm_connections,
            first_clause_min_chars: cli.first_clause_min_chars,
            upstream_stall_timeout: Duration::from_millis(cli.upstream_stall_timeout_ms),
            transcript_timeout: Duration::from_millis(cli.transcript_timeout_ms),
            browser_send_timeout: Duration::from_millis(cli.browser_send_timeout_ms),
            listen_addr: cli.listen_addr,
            metrics_addr: cli.metrics_addr,
            allowed_origins: cli.allowed_origins,
            access_token: cli.access_token,
            client_dir: cli.client_dir,
            public_hosts: cli.public_hosts,
            client_address_header: cli.client_address_header,
            tls,
            tls_reload_interval: Duration::from_secs(cli.tls_reload_interval_s),
            http_redirect_addr: cli.http_redirect_addr,
            limits: Limits {
                max_sessions: cli.max_sessions,
                max_sessions_per_address: cli.max_sessions_per_address,
                sessions_per_address_per_minute: cli.sessions_per_address_per_minute,
                max_connections: cli.max_connections,
                max_connections_per_address: cli.max_connections_per_address,
                header_read_timeout: Duration::from_millis(cli.header_read_timeout_ms),
                request_body_timeout: Duration::from_millis(cli.request_body_timeout_ms),
                session_idle_timeout: Duration::from_secs(cli.session_idle_timeout_s),
                max_session_length: Duration::from_secs(cli.max_session_length_s),
                browser_ping_interval: Duration::from_millis(cli.browser_ping_interval_ms),
                transcriber_quiet_close: Duration::from_millis(cli.transcriber_quiet_close_ms),
                upstream_response_timeout: Duration::from_millis(cli.upstream_response_timeout_ms),
                upstream_retry_budget: Duration::from_millis(cli.upstream_retry_budget_ms),
                audio_rate_limit: cli.audio_rate_limit,
                max_utterance: Duration::from_secs(cli.max_utterance_s),
                max_protocol_errors: cli.max_protocol_errors,
                api_requests_per_address_per_minute: cli.api_requests_per_address_per_minute,
            },
            enable_api: cli.enable_api,
        };
        if config.stt_mode == SttMode::File && config.pipeline == PipelineKind::SpeechToSpeech {
            return Err(ConfigError::FileSttWithSpeechToSpeech);
        }
        if config.stt_mode == SttMode::File && config.turn_detection != TurnDetection::Client {
            return Err(ConfigError::FileSttNeedsClientTurns);
        }
        if config.http_redirect_addr.is_some() && config.tls.is_none() {
            return Err(ConfigError::RedirectWithoutTls);
        }
        if config.tls_reload_interval.is_zero() {
            return Err(ConfigError::ZeroTlsReloadInterval);
        }
        if config.enable_api && config.access_token.is_none() {
            return Err(ConfigError::ApiWithoutToken);
        }
        if let Some(addr) = config.metrics_addr
            && addr == config.listen_addr
            && addr.port() != 0
        {
            return Err(ConfigError::MetricsOnListenAddr { addr });
        }
        // NaN fails this too.
        if config.limits.audio_rate_limit.is_nan() || config.limits.audio_rate_limit < 1.0 {
            return Err(ConfigError::AudioRateBelowRealTime {
                value: config.limits.audio_rate_limit,
            });
        }
        // Fail at start, not in the first session.
        config.endpoints(&config.openai_base_url)?;
        if let Some(token) = &config.access_token {
            let len = token.expose().chars().count();
            if len < MIN_ACCESS_TOKEN_CHARS {
                return Err(ConfigError::WeakAccessToken { len });
            }
        } else if !config.listen_addr.ip().is_loopback() && !cli.open_to_anyone {
            return Err(ConfigError::OpenWithoutToken {
                addr: config.listen_addr,
            });
        }
        Ok(config)
    }
}

/// Where resumable conversations are kept (`SESSION_STORE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionStoreKind {
    /// In this process: nothing to run, but a conversation resumes only on the proxy that
    /// held it.
    #[default]
    Memory,
    /// A Redis server at this `redis://` URL, shared by several proxies (plain TCP: run it on
    /// the private network of the proxies, or on loopback).
    Redis(Secret),
}

impl SessionStoreKind {
    /// Reads `memory` or a `redis://` URL.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("memory") || value.is_empty() {
            Ok(Self::Memory)
        } else if value.starts_with("redis://") {
            Ok(Self::Redis(Secret::new(value)))
        } else {
            Err(ConfigError::BadSessionStore {
                // A URL may hold a password: say only what kind of value it was.
                scheme: value
                    .split("://")
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(16)
                    .collect(),
            })
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `SESSION_STORE` is neither `memory` nor a Redis URL.
    #[error("SESSION_STORE must be `memory` or a redis:// URL, got a value starting {scheme:?}")]
    BadSessionStore {
        /// What came before `://` (never the rest: it may hold a password).
        scheme: String,
    },
    /// A base URL that is not http(s).
    #[error("{name} must be an http:// or https:// URL, got {value:?}")]
    BadUrl {
        /// Which setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// An access token too short to resist guessing (an empty line in `.env` included).
    #[error(
        "ACCESS_TOKEN must be at least {MIN_ACCESS_TOKEN_CHARS} characters (it is {len}); \
         generate one, e.g. `openssl rand -hex 16`, or unset it"
    )]
    WeakAccessToken {
        /// Its length in characters, after trimming.
        len: usize,
    },
    /// A non-loopback listen address without an access token: anyone reaching the port would
    /// spend the operator's key.
    #[error(
        "LISTEN_ADDR {addr} is reachable from other machines but no ACCESS_TOKEN is set; set \
         one, or pass --open-to-anyone (OPEN_TO_ANYONE=true) if the service is meant to be open"
    )]
    OpenWithoutToken {
        /// The listen address.
        addr: SocketAddr,
    },
    /// File transcription with server-side turn detection: a file upload has no VAD.
    #[error("STT_MODE=file needs TURN_DETECTION=client: the browser's VAD ends each turn")]
    FileSttNeedsClientTurns,
    /// File transcription asked of the speech-to-speech pipeline, which hears the audio itself.
    #[error(
        "STT_MODE=file works with PIPELINE=chained only: the Realtime model hears the audio itself"
    )]
    FileSttWithSpeechToSpeech,
    /// The one-shot API enabled without an access token: anyone could spend the key on it.
    #[error("ENABLE_API needs an ACCESS_TOKEN: /api/reply and /api/speech spend the API key")]
    ApiWithoutToken,
    /// The metrics listener asked for on the main listener's address.
    #[error(
        "METRICS_ADDR {addr} is LISTEN_ADDR: leave METRICS_ADDR unset to serve /metrics on the \
         main port, or give it an address of its own"
    )]
    MetricsOnListenAddr {
        /// The address given to both.
        addr: SocketAddr,
    },
    /// One of the certificate and its key without the other.
    #[error(
        "{set} is set but {unset} is not: HTTPS needs both the certificate chain (TLS_CERT) \
         and its private key (TLS_KEY), as PEM files; set both, or neither for plain HTTP"
    )]
    TlsHalfSet {
        /// The one given.
        set: &'static str,
        /// The one missing.
        unset: &'static str,
    },
    /// A redirect to HTTPS from a proxy that does not serve HTTPS.
    #[error("HTTP_REDIRECT_ADDR redirects to HTTPS, so it needs TLS_CERT and TLS_KEY")]
    RedirectWithoutTls,
    /// A reload interval of zero would check the files in a busy loop.
    #[error("TLS_RELOAD_INTERVAL_S must be at least 1")]
    ZeroTlsReloadInterval,
    /// An audio rate limit below real time would cut every user's speech.
    #[error("AUDIO_RATE_LIMIT must be at least 1 (real time), got {value}")]
    AudioRateBelowRealTime {
        /// The value given.
        value: f64,
    },
}

/// The certificate chain and private key the proxy serves HTTPS with, as PEM files. Both are
/// read at start (a file that cannot be read or parsed refuses to start) and again whenever
/// either changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`TLS_CERT`).
    pub cert: PathBuf,
    /// Its private key (`TLS_KEY`).
    pub key: PathBuf,
}

/// Shortest access token accepted, in characters: 16 random hex characters are 64 bits, out of
/// reach of guessing over the network.
pub const MIN_ACCESS_TOKEN_CHARS: usize = 16;

/// The upstream endpoints one session talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `ws(s)://…/realtime?intent=transcription`
    pub realtime_url: String,
    /// `http(s)://…/audio/transcriptions`
    pub transcription_url: String,
    /// `ws(s)://…/realtime`, the speech-to-speech session (`?model=` is added per session),
    /// at the language model's base URL.
    pub conversation_url: String,
    /// `http(s)://…/chat/completions`
    pub chat_url: String,
    /// `http(s)://…/audio/speech`
    pub speech_url: String,
}

impl Endpoints {
    /// Derives the three endpoints from one base URL (such as `https://api.openai.com/v1`).
    pub fn from_base(base: &str) -> Result<Self, ConfigError> {
        Self::per_stage(base, base, base)
    }

    /// Derives each endpoint from its own base URL.
    pub fn per_stage(stt_base: &str, llm_base: &str, tts_base: &str) -> Result<Self, ConfigError> {
        let stt_base = check_http("STT_BASE_URL", stt_base)?;
        Ok(Self {
            realtime_url: format!("{}/realtime?intent=transcription", websocket_base(stt_base)),
            transcription_url: format!("{stt_base}/audio/transcriptions"),
            conversation_url: format!(
                "{}/realtime",
                websocket_base(check_http("LLM_BASE_URL", llm_base)?)
            ),
            chat_url: format!("{}/chat/completions", check_http("LLM_BASE_URL", llm_base)?),
            speech_url: format!("{}/audio/speech", check_http("TTS_BASE_URL", tts_base)?),
        })
    }
}

/// Trims a trailing slash and checks the scheme.
fn check_http<'a>(name: &'static str, url: &'a str) -> Result<&'a str, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(ConfigError::BadUrl {
            name,
            value: url.to_owned(),
        })
    }
}

/// http → ws, https → wss.
fn websocket_base(http_base: &str) -> String {
    if let Some(rest) = http_base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_base.to_owned()
    }
}

impl Config {
    /// The endpoints for `base` (the configured OpenAI base URL, or the simulator's), with
    /// per-stage overrides applied.
    pub fn endpoints(&self, base: &str) -> Result<Endpoints, ConfigError> {
        Endpoints::per_stage(
            self.stt_base_url.as_deref().unwrap_or(base),
            self.llm_base_url.as_deref().unwrap_or(base),
            self.tts_base_url.as_deref().unwrap_or(base),
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::*;

    /// Parses `args` as the command line would, reading no environment variable (a developer's
    /// exported `ACCESS_TOKEN` must not decide a test).
    fn cli_without_environment(args: &[&str]) -> Cli {
        let command = Cli::command().mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command.try_get_matches_from(args).expect("flags parse");
        Cli::from_arg_matches(&matches).expect("matches convert")
    }

    #[test]
    fn the_session_store_is_memory_or_a_redis_url_and_a_bad_one_never_shows_its_password() {
        assert_eq!(
            SessionStoreKind::parse("memory").unwrap(),
            SessionStoreKind::Memory
        );
        assert_eq!(
            SessionStoreKind::parse("").unwrap(),
            SessionStoreKind::Memory
        );
        assert_eq!(
            SessionStoreKind::parse("redis://:pw@10.0.0.5:6379/2").unwrap(),
            SessionStoreKind::Redis(Secret::new("redis://:pw@10.0.0.5:6379/2"))
        );
        let error = SessionStoreKind::parse("http://user:hunter2@host").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert_eq!(Config::default().resume_grace, defaults::RESUME_GRACE);
    }

    #[test]
    fn realtime_url_is_derived_from_the_base() {
        let endpoints = Endpoints::from_base("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            endpoints.realtime_url,
            "wss://api.openai.com/v1/realtime?intent=transcription"
        );
        assert_eq!(
            endpoints.chat_url,
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            endpoints.speech_url,
            "https://api.openai.com/v1/audio/speech"
        );
        let local = Endpoints::from_base("http://127.0.0.1:9/v1").unwrap();
        assert_eq!(
            local.realtime_url,
            "ws://127.0.0.1:9/v1/realtime?intent=transcription"
        );
    }

    #[test]
    fn per_stage_overrides_win() {
        let config = Config {
            llm_base_url: Some("http://llm.local/v1".into()),
            ..Config::default()
        };
        let endpoints = config.endpoints("https://api.openai.com/v1").unwrap();
        assert_eq!(endpoints.chat_url, "http://llm.local/v1/chat/completions");
        assert!(endpoints.realtime_url.starts_with("wss://api.openai.com"));
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(matches!(
            Endpoints::from_base("ftp://x"),
            Err(ConfigError::BadUrl { .. })
        ));
    }

    #[test]
    fn the_key_is_redacted() {
        let config = Config {
            openai_api_key: Some(Secret::new("sk-secret-123")),
            ..Config::default()
        };
        let shown = format!("{config:?} {}", Secret::new("sk-secret-123"));
        assert!(!shown.contains("sk-secret-123"), "{shown}");
    }

    #[test]
    fn the_command_line_defaults_are_the_config_defaults() {
        let cli = cli_without_environment(&["proxy"]);
        let from_cli = Config::try_from(cli).expect("the defaults are valid");
        let defaults = Config::default();
        assert_eq!(format!("{from_cli:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn a_bad_base_url_fails_at_start() {
        let cli = cli_without_environment(&["proxy", "--llm-base-url", "llm.local"]);
        assert!(matches!(
            Config::try_from(cli),
            Err(ConfigError::BadUrl {
                name: "LLM_BASE_URL",
                ..
            })
        ));
    }

    #[test]
    fn a_blank_or_short_access_token_refuses_to_start() {
        for token in ["", "   ", "short-token"] {
            let cli = cli_without_environment(&["proxy", "--access-token", token]);
            assert!(
                matches!(
                    Config::try_from(cli),
                    Err(ConfigError::WeakAccessToken { .. })
                ),
                "{token:?}"
            );
        }
        let cli = cli_without_environment(&["proxy", "--access-token", "0123456789abcdef"]);
        assert!(Config::try_from(cli).is_ok());
    }

    #[test]
    fn an_open_address_needs_a_token_or_the_explicit_flag() {
        let open = ["proxy", "--listen-addr", "0.0.0.0:8000"];
        assert!(matches!(
            Config::try_from(cli_without_environment(&open)),
            Err(ConfigError::OpenWithoutToken { .. })
        ));
        let with_token = [&open[..], &["--access-token", "0123456789abcdef"]].concat();
        assert!(Config::try_from(cli_without_environment(&with_token)).is_ok());
        let explicit = [&open[..], &["--open-to-anyone"]].concat();
        assert!(Config::try_from(cli_without_environment(&explicit)).is_ok());
        let loopback = ["proxy", "--listen-addr", "[::1]:8000"];
        assert!(Config::try_from(cli_without_environment(&loopback)).is_ok());
    }

    #[test]
    fn file_transcription_needs_the_clients_turns() {
        let file = ["proxy", "--stt-mode", "file"];
        assert!(Config::try_from(cli_without_environment(&file)).is_ok());
        let server_vad = [&file[..], &["--turn-detection", "server-vad"]].concat();
        assert!(matches!(
            Config::try_from(cli_without_environment(&server_vad)),
            Err(ConfigError::FileSttNeedsClientTurns)
        ));
    }

    #[test]
    fn tls_needs_both_files_and_the_redirect_needs_tls() {
        let cert = ["proxy", "--tls-cert", "/etc/cert.pem"];
        assert!(matches!(
            Config::try_from(cli_without_environment(&cert)),
            Err(ConfigError::TlsHalfSet {
                set: "TLS_CERT",
                unset: "TLS_KEY"
            })
        ));
        let key = ["proxy", "--tls-key", "/etc/key.pem"];
        let error = Config::try_from(cli_without_environment(&key)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("TLS_KEY is set but TLS_CERT is not"),
            "{error}"
        );
        let both = [&cert[..], &["--tls-key", "/etc/key.pem"]].concat();
        let config = Config::try_from(cli_without_environment(&both)).expect("both is valid");
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: "/etc/cert.pem".into(),
                key: "/etc/key.pem".into()
            })
        );
        let redirect = ["proxy", "--http-redirect-addr", "127.0.0.1:8080"];
        assert!(matches!(
            Config::try_from(cli_without_environment(&redirect)),
            Err(ConfigError::RedirectWithoutTls)
        ));
        let redirect_with_tls = [&both[..], &redirect[1..]].concat();
        assert!(Config::try_from(cli_without_environment(&redirect_with_tls)).is_ok());
        let never = [&both[..], &["--tls-reload-interval-s", "0"]].concat();
        assert!(matches!(
            Config::try_from(cli_without_environment(&never)),
            Err(ConfigError::ZeroTlsReloadInterval)
        ));
    }

    #[test]
    fn metrics_go_on_the_main_port_or_an_address_of_their_own() {
        assert_eq!(Config::default().metrics_addr, None);
        let own = ["proxy", "--metrics-addr", "127.0.0.1:9464"];
        let config = Config::try_from(cli_without_environment(&own)).expect("a separate port");
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let same = ["proxy", "--metrics-addr", defaults::LISTEN_ADDR];
        assert!(matches!(
            Config::try_from(cli_without_environment(&same)),
            Err(ConfigError::MetricsOnListenAddr { .. })
        ));
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::default();
        assert_eq!(config.stt_model, "gpt-4o-mini-transcribe");
        assert_eq!(config.llm_model, "gpt-4.1-mini");
        assert_eq!(config.tts_model, "gpt-4o-mini-tts");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.openai_base_url, DEFAULT_OPENAI_BASE_URL);
    }
}
