//! [`SimConfig`]: the simulator's latencies, pacing and behaviour switches.
//!
//! Every field is public so tests write `SimConfig { quirks: false, ..SimConfig::instant() }`.
//! The configuration can be changed while the simulator runs
//! ([`Simulator::set_config`](super::Simulator::set_config)); each request, connection or turn
//! reads it once when it starts.

use std::fmt;

/// Default commit → first transcription delta. gpt-4o-mini-transcribe starts streaming a
/// committed turn a little after the commit (openai-api.md §1.3, "deltas then arrive quickly").
const DEFAULT_STT_FIRST_DELTA_MS: u64 = 150;
/// Default gap between transcription deltas: they arrive in a quick burst once decoding starts.
const DEFAULT_STT_DELTA_INTERVAL_MS: u64 = 25;
/// Default time to first token of a small chat model answering a short prompt.
const DEFAULT_LLM_FIRST_TOKEN_MS: u64 = 300;
/// Default generation speed of a "mini" chat model, tokens per wall-clock second.
const DEFAULT_LLM_TOKENS_PER_SECOND: f64 = 90.0;
/// Default time to the first byte of speech for `pcm` output (the fastest format, §3.1).
const DEFAULT_TTS_FIRST_BYTE_MS: u64 = 200;
/// Default speech synthesis speed: seconds of audio produced per wall-clock second.
const DEFAULT_TTS_REALTIME_FACTOR: f64 = 4.0;
/// Default seed of the generator that picks chunk boundaries, so runs are reproducible.
const DEFAULT_SEED: u64 = 0x5eed_0a1e;

/// Configuration of a [`Simulator`](super::Simulator).
///
/// Lifetime of a Realtime session in the GA API (openai-api.md §1.8).
pub(crate) const REALTIME_SESSION_MAX: std::time::Duration =
    std::time::Duration::from_secs(60 * 60);

/// [`Default`] is snappy but realistic-ish (a few hundred milliseconds per stage, streaming
/// faster than real time); [`SimConfig::instant`] removes every delay, for tests that only care
/// about content. `Debug` redacts the API key.
#[derive(Clone, PartialEq)]
pub struct SimConfig {
    /// If `Some`, every request must carry `Authorization: Bearer <key>` with exactly this key,
    /// else 401 `invalid_api_key`. If `None`, any non-empty bearer token is accepted. A missing
    /// header is always a 401.
    pub api_key: Option<String>,
    /// Realtime: commit → first `conversation.item.input_audio_transcription.delta`, in ms.
    pub stt_first_delta_ms: u64,
    /// Realtime: time between two transcription deltas of a turn, in ms.
    pub stt_delta_interval_ms: u64,
    /// Chat: request → first token (the response headers wait for it too), in ms.
    pub llm_first_token_ms: u64,
    /// Chat: tokens streamed per second after the first; `0` or infinite = as fast as possible.
    pub llm_tokens_per_second: f64,
    /// Speech: request → first audio byte (the response headers wait for it too), in ms.
    pub tts_first_byte_ms: u64,
    /// Speech: seconds of audio streamed per wall-clock second (4.0 = four times faster than
    /// playback); `0` or infinite = as fast as possible.
    pub tts_realtime_factor: f64,
    /// Behave like the real service in the ways a client must tolerate: optional and extra
    /// fields (`obfuscation`, `system_fingerprint`, `logprobs: null`), event types a client
    /// does not know, SSE events split across body chunks, speech chunks that end mid-sample.
    pub quirks: bool,
    /// Realtime: hold back the `completed` event of every odd-numbered turn (1st, 3rd, ...)
    /// until the following turn's `completed` was sent, so completions arrive out of turn
    /// order (clients must order by `previous_item_id`, openai-api.md §1.6).
    pub out_of_order: bool,
    /// Seed of the pseudo-random choices (chunk sizes, split points). Same seed and same
    /// traffic → same chunking.
    pub seed: u64,
    /// Realtime: how long a session lasts before the service ends it with a `session_expired`
    /// error and a close (GA: 60 minutes, openai-api.md §1.8); its `expires_at` says when.
    pub realtime_session_max: std::time::Duration,
    /// Keep [`Records`](super::Records) of the traffic. Records grow without bound (request
    /// bodies, client events, speech bytes), so long-running uses (the binary, the product's
    /// default backend) turn this off.
    pub recording: bool,
}

impl SimConfig {
    /// No delays at all: streams go out as fast as the sockets take them. Quirks stay on.
    pub fn instant() -> Self {
        Self {
            stt_first_delta_ms: 0,
            stt_delta_interval_ms: 0,
            llm_first_token_ms: 0,
            llm_tokens_per_second: 0.0,
            tts_first_byte_ms: 0,
            tts_realtime_factor: 0.0,
            ..Self::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            stt_first_delta_ms: DEFAULT_STT_FIRST_DELTA_MS,
            stt_delta_interval_ms: DEFAULT_STT_DELTA_INTERVAL_MS,
            llm_first_token_ms: DEFAULT_LLM_FIRST_TOKEN_MS,
            llm_tokens_per_second: DEFAULT_LLM_TOKENS_PER_SECOND,
            tts_first_byte_ms: DEFAULT_TTS_FIRST_BYTE_MS,
            tts_realtime_factor: DEFAULT_TTS_REALTIME_FACTOR,
            quirks: true,
            out_of_order: false,
            seed: DEFAULT_SEED,
            realtime_session_max: REALTIME_SESSION_MAX,
            recording: true,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("stt_first_delta_ms", &self.stt_first_delta_ms)
            .field("stt_delta_interval_ms", &self.stt_delta_interval_ms)
            .field("llm_first_token_ms", &self.llm_first_token_ms)
            .field("llm_tokens_per_second", &self.llm_tokens_per_second)
            .field("tts_first_byte_ms", &self.tts_first_byte_ms)
            .field("tts_realtime_factor", &self.tts_realtime_factor)
            .field("quirks", &self.quirks)
            .field("out_of_order", &self.out_of_order)
            .field("seed", &self.seed)
            .field("realtime_session_max", &self.realtime_session_max)
            .field("recording", &self.recording)
            .finish()
    }
}

/// Wall-clock time to spend on `units` items produced at `per_second`; zero when the rate
/// means "as fast as possible" (zero, negative, infinite or NaN).
pub(crate) fn paced(units: f64, per_second: f64) -> std::time::Duration {
    if per_second.is_finite() && per_second > 0.0 && units > 0.0 {
        std::time::Duration::from_secs_f64(units / per_second)
    } else {
        std::time::Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key() {
        let config = SimConfig {
            api_key: Some("sk-secret".into()),
            ..SimConfig::default()
        };
        assert!(!format!("{config:?}").contains("sk-secret"));
    }

    #[test]
    fn pacing_treats_zero_and_infinity_as_unpaced() {
        assert_eq!(paced(10.0, 0.0), std::time::Duration::ZERO);
        assert_eq!(paced(10.0, f64::INFINITY), std::time::Duration::ZERO);
        assert_eq!(paced(10.0, 20.0), std::time::Duration::from_millis(500));
    }
}
