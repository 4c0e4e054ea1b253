//! `openai-sim`: the OpenAI simulator as a standalone server, for running the product without
//! an API key, as a load-test target, and as the backend of other projects' client tests.
//!
//! `cargo run -p openai-sim -- --port 8001 --control --llm-first-token-ms 400`; every flag
//! also reads an environment variable (`SIM_PORT`, `SIM_CONTROL`, `SIM_LLM_FIRST_TOKEN_MS`,
//! ...). Flags left out keep the defaults of [`SimConfig`]. `--port 0` picks a free port.
//!
//! Once listening it prints one line to stdout, `OPENAI_BASE_URL=http://HOST:PORT/v1`, for
//! scripts that start it; logs go to stderr (`RUST_LOG` filters them).
//!
//! Recording is on only with `--control` (the control surface is the only way to read the
//! records, which grow until `POST /_sim/reset`). Ctrl-C stops it.

use std::io::Write;
use std::net::IpAddr;

use clap::Parser;
use openai_sim::{SimConfig, Simulator, SseStyle};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Command line; see the module docs.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "OpenAI simulator: Realtime transcription and conversations, Chat Completions and Speech"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "SIM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "SIM_PORT", default_value_t = 8001)]
    port: u16,
    /// Require this bearer token (otherwise any token is accepted).
    #[arg(long, env = "SIM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Every new TCP connection: its setup time (TCP and TLS to a distant service), ms; the
    /// first request on a connection waits this long, later ones on it do not (default 0).
    #[arg(long, env = "SIM_HANDSHAKE_MS")]
    handshake_ms: Option<u64>,
    /// Realtime: how long the WebSocket handshake takes, ms (after the connection setup).
    #[arg(long, env = "SIM_REALTIME_HANDSHAKE_MS")]
    realtime_handshake_ms: Option<u64>,
    /// Realtime: commit → first transcription delta, ms.
    #[arg(long, env = "SIM_STT_FIRST_DELTA_MS")]
    stt_first_delta_ms: Option<u64>,
    /// Transcription: ms added to the first-delta wait per second of committed audio
    /// (0 = the wait does not depend on the audio).
    #[arg(long, env = "SIM_STT_MS_PER_AUDIO_S")]
    stt_ms_per_audio_s: Option<u64>,
    /// Realtime: time between transcription deltas, ms.
    #[arg(long, env = "SIM_STT_DELTA_INTERVAL_MS")]
    stt_delta_interval_ms: Option<u64>,
    /// Realtime conversation: response start → first audio delta, ms.
    #[arg(long, env = "SIM_REALTIME_FIRST_AUDIO_MS")]
    realtime_first_audio_ms: Option<u64>,
    /// Chat and Realtime conversation: the reply when none is scripted (default: an echo of
    /// the last user message).
    #[arg(long, env = "SIM_DEFAULT_REPLY")]
    default_reply: Option<String>,
    /// Chat: time to first token, ms.
    #[arg(long, env = "SIM_LLM_FIRST_TOKEN_MS")]
    llm_first_token_ms: Option<u64>,
    /// Chat: tokens per second (0 = as fast as possible).
    #[arg(long, env = "SIM_LLM_TOKENS_PER_SECOND")]
    llm_tokens_per_second: Option<f64>,
    /// Speech: time to first audio byte, ms.
    #[arg(long, env = "SIM_TTS_FIRST_BYTE_MS")]
    tts_first_byte_ms: Option<u64>,
    /// Speech: seconds of audio per wall-clock second (0 = as fast as possible).
    #[arg(long, env = "SIM_TTS_REALTIME_FACTOR")]
    tts_realtime_factor: Option<f64>,
    /// Chat: end streams after the last chunk, without `data: [DONE]`.
    #[arg(long, env = "SIM_NO_CHAT_DONE")]
    no_chat_done: bool,
    /// Speech: the sample rate of the audio sent, Hz (default 24000).
    #[arg(long, env = "SIM_SPEECH_SAMPLE_RATE")]
    speech_sample_rate: Option<u32>,
    /// Behave exactly by the book: no extra fields, unknown events or odd chunk boundaries.
    #[arg(long, env = "SIM_NO_QUIRKS")]
    no_quirks: bool,
    /// Realtime: complete odd-numbered turns after the following turn.
    #[arg(long, env = "SIM_OUT_OF_ORDER")]
    out_of_order: bool,
    /// Seed of the chunk-boundary choices.
    #[arg(long, env = "SIM_SEED")]
    seed: Option<u64>,
    /// Realtime: seconds a session lasts before the service ends it (default 3600).
    #[arg(long, env = "SIM_REALTIME_SESSION_MAX_S")]
    realtime_session_max_s: Option<u64>,
    /// Serve the control surface under /_sim/ (scripts, faults, records, config, reset) and
    /// keep records.
    #[arg(long, env = "SIM_CONTROL")]
    control: bool,
    /// Chat and Speech SSE: keep-alive comments, `event:` lines and CRLF line endings.
    #[arg(long, env = "SIM_SSE_QUIRKS")]
    sse_quirks: bool,
    /// Model ids to serve besides the built-in ones (repeat, or comma-separated).
    #[arg(long = "extra-model", env = "SIM_EXTRA_MODELS", value_delimiter = ',')]
    extra_models: Vec<String>,
    /// Behave like an OpenAI-compatible server where it differs from OpenAI: openai,
    /// speaches, localai, vllm, ollama or kokoro (applied over the other flags).
    #[arg(long, env = "SIM_PROFILE")]
    profile: Option<String>,
}

impl Cli {
    fn config(&self) -> Result<SimConfig, String> {
        let defaults = SimConfig::default();
        let config = SimConfig {
            api_key: self.api_key.clone(),
            handshake_ms: self.handshake_ms.unwrap_or(defaults.handshake_ms),
            realtime_handshake_ms: self
                .realtime_handshake_ms
                .unwrap_or(defaults.realtime_handshake_ms),
            stt_first_delta_ms: self
                .stt_first_delta_ms
                .unwrap_or(defaults.stt_first_delta_ms),
            stt_ms_per_audio_s: self
                .stt_ms_per_audio_s
                .unwrap_or(defaults.stt_ms_per_audio_s),
            stt_delta_interval_ms: self
                .stt_delta_interval_ms
                .unwrap_or(defaults.stt_delta_interval_ms),
            realtime_first_audio_ms: self
                .realtime_first_audio_ms
                .unwrap_or(defaults.realtime_first_audio_ms),
            default_reply: self.default_reply.clone(),
            llm_first_token_ms: self
                .llm_first_token_ms
                .unwrap_or(defaults.llm_first_token_ms),
            llm_tokens_per_second: self
                .llm_tokens_per_second
                .unwrap_or(defaults.llm_tokens_per_second),
            tts_first_byte_ms: self.tts_first_byte_ms.unwrap_or(defaults.tts_first_byte_ms),
            tts_realtime_factor: self
                .tts_realtime_factor
                .unwrap_or(defaults.tts_realtime_factor),
            chat_done_marker: !self.no_chat_done,
            speech_sample_rate_hz: self
                .speech_sample_rate
                .unwrap_or(defaults.speech_sample_rate_hz),
            quirks: !self.no_quirks,
            out_of_order: self.out_of_order,
            seed: self.seed.unwrap_or(defaults.seed),
            realtime_session_max: self.realtime_session_max_s.map_or(
                defaults.realtime_session_max,
                std::time::Duration::from_secs,
            ),
            recording: self.control,
            control: self.control,
            sse_style: if self.sse_quirks {
                SseStyle::all()
            } else {
                defaults.sse_style
            },
            extra_models: self.extra_models.clone(),
            ..defaults
        };
        match &self.profile {
            None => Ok(config),
            Some(name) => config.profile(name).ok_or_else(|| {
                format!(
                    "unknown profile {name:?}; known: {}",
                    openai_sim::PROFILES.join(", ")
                )
            }),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("openai_sim=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cli.config().map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind((cli.host, cli.port)).await?;
    let sim = Simulator::start_on(listener, config.clone()).await?;
    tracing::info!(base_url = %sim.base_url(), realtime_url = %sim.realtime_url(), ?config, "OpenAI simulator ready");
    // The one line on stdout: how a script that started us finds the (maybe picked) port.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "OPENAI_BASE_URL={}", sim.base_url())?;
    stdout.flush()?;
    drop(stdout);
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    sim.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcription_and_reply_flags_reach_the_config() {
        let cli = Cli::try_parse_from([
            "openai-sim",
            "--stt-ms-per-audio-s",
            "195",
            "--default-reply",
            "Sure. Here it is. That is all.",
        ])
        .expect("valid flags");
        let config = cli.config().expect("a configuration");
        assert_eq!(config.stt_ms_per_audio_s, 195);
        assert_eq!(
            config.default_reply.as_deref(),
            Some("Sure. Here it is. That is all.")
        );
        let defaults = Cli::try_parse_from(["openai-sim"]).expect("no flags");
        let config = defaults.config().expect("a configuration");
        assert_eq!((config.stt_ms_per_audio_s, config.default_reply), (0, None));
        assert_eq!(config.handshake_ms, 0);
    }

    #[test]
    fn the_handshake_flag_reaches_the_config() {
        let cli = Cli::try_parse_from(["openai-sim", "--handshake-ms", "120"]).expect("valid");
        let config = cli.config().expect("a configuration");
        assert_eq!(config.handshake_ms, 120);
        assert_eq!(config.realtime_handshake_ms, 0, "the upgrade adds nothing");
    }
}
