//! Operator configuration: command-line flags, each also read from an environment variable
//! (and from `.env`, loaded by `main` before parsing).
//!
//! Loaded once at start-up and validated there, so a bad URL fails fast instead of in the first
//! session. The browser never chooses any of this.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
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

/// Everything the operator sets.
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy", version, about = "Realtime voice agent proxy")]
#[non_exhaustive]
pub struct Config {
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
    #[arg(long, env = "STT_MODEL", default_value = "gpt-4o-mini-transcribe")]
    pub stt_model: String,

    /// Language of the user's speech (ISO-639-1, e.g. `en`); improves accuracy and latency.
    #[arg(long, env = "STT_LANGUAGE")]
    pub stt_language: Option<String>,

    /// Chat model.
    #[arg(long, env = "LLM_MODEL", default_value = "gpt-4.1-mini")]
    pub llm_model: String,

    /// Upper bound on the length of one answer, in tokens.
    #[arg(long, env = "LLM_MAX_COMPLETION_TOKENS", default_value_t = 400)]
    pub llm_max_completion_tokens: u32,

    /// Speech model.
    #[arg(long, env = "TTS_MODEL", default_value = "gpt-4o-mini-tts")]
    pub tts_model: String,

    /// Speech voice.
    #[arg(long, env = "TTS_VOICE", default_value = "coral")]
    pub tts_voice: String,

    /// Style instructions for the speech model (not supported by tts-1 models).
    #[arg(long, env = "TTS_INSTRUCTIONS")]
    pub tts_instructions: Option<String>,

    /// The system prompt of every conversation.
    #[arg(long, env = "SYSTEM_PROMPT", default_value = DEFAULT_SYSTEM_PROMPT)]
    pub system_prompt: String,

    /// Most user and assistant messages kept in the history sent to the model (oldest dropped
    /// first; the system prompt is always kept).
    #[arg(long, env = "HISTORY_MAX_MESSAGES", default_value_t = 24)]
    pub history_max_messages: usize,

    /// Who ends a user turn.
    #[arg(long, env = "TURN_DETECTION", value_enum, default_value_t = TurnDetectionArg::Client)]
    pub turn_detection: TurnDetectionArg,

    /// How long a started upstream stream may go without data before it counts as stalled, in
    /// milliseconds. The transcription socket is pinged three times per this period and given
    /// up when it answers nothing for all of it.
    #[arg(long, env = "UPSTREAM_STALL_TIMEOUT_MS", default_value_t = 15_000)]
    pub upstream_stall_timeout_ms: u64,

    /// How long a finished user turn may wait for its transcript, in milliseconds.
    #[arg(long, env = "TRANSCRIPT_TIMEOUT_MS", default_value_t = 20_000)]
    pub transcript_timeout_ms: u64,

    /// How long the browser may take to accept one frame before its session ends, in
    /// milliseconds: a browser that stops reading must not hold its upstream sockets.
    #[arg(long, env = "BROWSER_SEND_TIMEOUT_MS", default_value_t = 10_000)]
    pub browser_send_timeout_ms: u64,

    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    pub listen_addr: SocketAddr,

    /// Web origins besides the proxy's own whose pages may open a voice session,
    /// comma-separated (e.g. `https://voice.example.com`). See `access.rs`.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// If set, voice sessions and the API need this token: `?token=` on the page's URL (the
    /// page passes it on to `/ws`), or `Authorization: Bearer` for other clients.
    #[arg(long, env = "ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<Secret>,

    /// Directory of the built browser client, served at `/` when it exists.
    #[arg(long, env = "CLIENT_DIR", default_value = "dist")]
    pub client_dir: PathBuf,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A base URL that is not http(s).
    #[error("{name} must be an http:// or https:// URL, got {value:?}")]
    BadUrl {
        /// Which setting.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// The upstream endpoints one session talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `ws(s)://…/realtime?intent=transcription`
    pub realtime_url: String,
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
        Ok(Self {
            realtime_url: format!(
                "{}/realtime?intent=transcription",
                websocket_base(check_http("STT_BASE_URL", stt_base)?)
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
    /// Defaults plus the given key, as if started with no flags and no environment.
    pub fn with_defaults(api_key: Option<Secret>) -> Self {
        let mut config = Self::parse_from(["proxy"]);
        config.openai_api_key = api_key;
        config
    }

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
    use super::*;

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
        let mut config = Config::with_defaults(None);
        config.llm_base_url = Some("http://llm.local/v1".into());
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
        let config = Config::with_defaults(Some(Secret::new("sk-secret-123")));
        let shown = format!("{config:?} {}", Secret::new("sk-secret-123"));
        assert!(!shown.contains("sk-secret-123"), "{shown}");
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::with_defaults(None);
        assert_eq!(config.stt_model, "gpt-4o-mini-transcribe");
        assert_eq!(config.llm_model, "gpt-4.1-mini");
        assert_eq!(config.tts_model, "gpt-4o-mini-tts");
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.openai_base_url, DEFAULT_OPENAI_BASE_URL);
    }
}
