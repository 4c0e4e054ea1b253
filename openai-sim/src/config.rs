//! [`SimConfig`]: the simulator's latencies, pacing and behaviour switches, and
//! [`SseStyle`], the framing knobs of its SSE streams.
//!
//! Every field is public so tests write `SimConfig { quirks: false, ..SimConfig::instant() }`.
//! The configuration can be changed while the simulator runs
//! ([`Simulator::set_config`](super::Simulator::set_config), or `PATCH /_sim/config` on the
//! control surface); each request, connection or turn reads it once when it starts.
//!
//! Its JSON form (serde) is the control surface's: field names as in Rust, except
//! `realtime_session_max` which is `realtime_session_max_ms`; `api_key` is accepted but never
//! written out.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Default commit → first transcription delta. gpt-4o-mini-transcribe starts streaming a
/// committed turn a little after the commit (docs/openai-wire.md §1.3, "deltas then arrive
/// quickly").
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
/// Default response start → first audio delta of a Realtime conversation: what the cascade's
/// defaults give (first chat token, then first speech byte), so both paths start from the
/// same latency.
const DEFAULT_REALTIME_FIRST_AUDIO_MS: u64 = DEFAULT_LLM_FIRST_TOKEN_MS + DEFAULT_TTS_FIRST_BYTE_MS;
/// Default seed of the generator that picks chunk boundaries, so runs are reproducible.
const DEFAULT_SEED: u64 = 0x5eed_0a1e;

/// Lifetime of a Realtime session in the GA API (§1.8).
pub(crate) const REALTIME_SESSION_MAX: std::time::Duration =
    std::time::Duration::from_secs(60 * 60);

/// Configuration of a [`Simulator`](super::Simulator).
///
/// [`Default`] is snappy but realistic-ish (a few hundred milliseconds per stage, streaming
/// faster than real time); [`SimConfig::instant`] removes every delay, for tests that only care
/// about content. `Debug` redacts the API key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// If `Some`, every request must carry `Authorization: Bearer <key>` with exactly this key,
    /// else 401 `invalid_api_key`. If `None`, any non-empty bearer token is accepted. A missing
    /// header is always a 401. Never serialized.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Every new TCP connection (HTTP or WebSocket alike): how long its setup takes, in ms,
    /// as TCP and TLS to a distant service do. The simulator reads nothing on a connection
    /// for this long after accepting it, so the first request on a connection waits this
    /// much more and later requests on the same keep-alive connection do not; connections
    /// set up concurrently. Read when a connection is accepted. `0` (the default): no wait.
    pub handshake_ms: u64,
    /// Realtime: how long the WebSocket handshake takes (the upgrade to a distant service is
    /// not free), in ms, on top of the connection's `handshake_ms`; `0` answers at once.
    pub realtime_handshake_ms: u64,
    /// Realtime: commit → first `conversation.item.input_audio_transcription.delta`, in ms
    /// (file transcription: the wait before the first byte or delta). The part of the wait
    /// that does not depend on the audio; see `stt_ms_per_audio_s` for the part that does.
    pub stt_first_delta_ms: u64,
    /// Transcription (Realtime transcription sessions, a conversation's input transcription,
    /// `POST /v1/audio/transcriptions`): ms added to `stt_first_delta_ms` per second of the
    /// committed audio, because a transcriber decodes the whole utterance before it answers,
    /// so a long turn's transcript comes later than a short one's. `0` (the default) makes
    /// the wait independent of the audio. The seed's measured log had the final transcript
    /// 0.8 s after a 1 s utterance was committed and 2.3 s after an 8.7 s one:
    /// `stt_first_delta_ms: 600` with `stt_ms_per_audio_s: 195` gives 795 ms and 2296 ms to
    /// the first delta, the rest of the transcript following in a quick burst
    /// (`stt_delta_interval_ms`).
    pub stt_ms_per_audio_s: u64,
    /// Realtime: time between two transcription deltas of a turn, in ms.
    pub stt_delta_interval_ms: u64,
    /// Realtime conversation: `response.created` → first `response.output_audio.delta` (or
    /// first text delta of a text response), in ms. The audio then streams at
    /// `tts_realtime_factor`, the transcript at `llm_tokens_per_second` for text responses.
    pub realtime_first_audio_ms: u64,
    /// Chat and Realtime conversation: the reply when none is scripted. `None` (the default)
    /// echoes the last user message in two sentences; a load test sets an answer of the length
    /// it wants to measure (say three sentences), the same for every request.
    pub default_reply: Option<String>,
    /// Chat: request → first token (the response headers wait for it too), in ms.
    pub llm_first_token_ms: u64,
    /// Chat: tokens streamed per second after the first; `0` or infinite = as fast as possible.
    pub llm_tokens_per_second: f64,
    /// Speech: request → first audio byte (the response headers wait for it too), in ms.
    pub tts_first_byte_ms: u64,
    /// Speech: seconds of audio streamed per wall-clock second (4.0 = four times faster than
    /// playback); `0` or infinite = as fast as possible.
    pub tts_realtime_factor: f64,
    /// Chat: end a stream with `data: [DONE]`, as OpenAI does. Off, the stream ends after its
    /// last chunk (with `finish_reason`) like some compatible servers'.
    pub chat_done_marker: bool,
    /// Speech: answer `response_format: "pcm"` with a WAV anyway (LocalAI does).
    pub speech_wav_for_pcm: bool,
    /// File transcription: honour `stream=true` (OpenAI, speaches, LocalAI); off, every reply
    /// is plain JSON (Ollama, whisper.cpp).
    pub transcription_streams: bool,
    /// The shape of HTTP error bodies: OpenAI's envelope, FastAPI's `{"detail": "…"}`
    /// (speaches, Kokoro-FastAPI) or `{"error": "…"}` (whisper.cpp).
    pub error_body: ErrorBody,
    /// Speech: the sample rate of the audio sent, in Hz. OpenAI's is 24000; compatible servers
    /// speak at their own (22050 and 16000 are common), in `pcm` and in `wav`.
    pub speech_sample_rate_hz: u32,
    /// Behave like the real service in the ways a client must tolerate: optional and extra
    /// fields (`obfuscation`, `system_fingerprint`, `logprobs: null`), event types a client
    /// does not know, SSE events split across body chunks, speech chunks that end mid-sample.
    pub quirks: bool,
    /// Realtime: hold back the `completed` event of every odd-numbered turn (1st, 3rd, ...)
    /// until the following turn's `completed` was sent, so completions arrive out of turn
    /// order (clients must order by `previous_item_id`, §1.6).
    pub out_of_order: bool,
    /// Seed of the pseudo-random choices (chunk sizes, split points). Same seed and same
    /// traffic → same chunking.
    pub seed: u64,
    /// Realtime: how long a session lasts before the service ends it with a `session_expired`
    /// error and a close (GA: 60 minutes, §1.8); its `expires_at` says when. JSON:
    /// `realtime_session_max_ms`.
    #[serde(rename = "realtime_session_max_ms", with = "duration_ms")]
    pub realtime_session_max: std::time::Duration,
    /// Keep [`Records`](super::Records) of the traffic. Records grow without bound (request
    /// bodies, client events, speech bytes), so long-running uses (the binary, the product's
    /// default backend) turn this off.
    pub recording: bool,
    /// Serve the HTTP control surface under `/_sim/` (scripts, faults, records, config,
    /// reset; see the `control` module). Off: those paths answer like any unknown path.
    pub control: bool,
    /// Framing of the Chat and Speech SSE streams; the default is plain `data:` lines with LF.
    pub sse_style: SseStyle,
    /// Model ids served besides the built-in list (fine-tunes, new models): every API accepts
    /// them and `GET /v1/models` lists them.
    pub extra_models: Vec<String>,
}

/// The shape of an HTTP error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorBody {
    /// `{"error": {"message", "type", "param", "code"}}`.
    #[default]
    OpenAi,
    /// `{"detail": "<message>"}`, as FastAPI servers answer.
    Detail,
    /// `{"error": "<message>"}`.
    PlainString,
}

/// How SSE events are framed (Chat Completions and Speech `stream_format: "sse"`). All off by
/// default, the framing the service is seen to send (§2.2); each knob is one thing a client's
/// SSE parser must tolerate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseStyle {
    /// A `: keep-alive` comment frame right after the headers and before every event, as
    /// proxies and load balancers insert them.
    pub keep_alive_comments: bool,
    /// An `event:` line on every event: `event: message` (the SSE default, so the meaning is
    /// unchanged), `event: error` on a mid-stream error.
    pub event_lines: bool,
    /// Lines end with CRLF instead of LF (both are valid SSE).
    pub crlf: bool,
}

impl SseStyle {
    /// Every knob on.
    pub fn all() -> Self {
        Self {
            keep_alive_comments: true,
            event_lines: true,
            crlf: true,
        }
    }

    /// One event: `data` (a single line) with this style's comment, `event:` line and line
    /// ending. `event` names it when `event_lines` is on (`None` means `message`).
    pub(crate) fn frame(&self, event: Option<&str>, data: &str) -> String {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut frame = String::with_capacity(data.len() + 40);
        if self.keep_alive_comments {
            frame.push_str(": keep-alive");
            frame.push_str(eol);
            frame.push_str(eol);
        }
        if self.event_lines {
            frame.push_str("event: ");
            frame.push_str(event.unwrap_or("message"));
            frame.push_str(eol);
        }
        frame.push_str("data: ");
        frame.push_str(data);
        frame.push_str(eol);
        frame.push_str(eol);
        frame
    }
}

/// `Duration` as whole milliseconds in JSON.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

impl SimConfig {
    /// No delays at all: streams go out as fast as the sockets take them. Quirks stay on.
    pub fn instant() -> Self {
        Self {
            stt_first_delta_ms: 0,
            stt_delta_interval_ms: 0,
            realtime_first_audio_ms: 0,
            llm_first_token_ms: 0,
            llm_tokens_per_second: 0.0,
            tts_first_byte_ms: 0,
            tts_realtime_factor: 0.0,
            ..Self::default()
        }
    }
}

impl SimConfig {
    /// Commit → first transcription delta of a turn of `audio_ms` of audio:
    /// `stt_first_delta_ms` plus `stt_ms_per_audio_s` per second of audio.
    pub(crate) fn stt_first_delta(&self, audio_ms: u64) -> std::time::Duration {
        let per_audio_ms = audio_ms.saturating_mul(self.stt_ms_per_audio_s) / 1000;
        std::time::Duration::from_millis(self.stt_first_delta_ms.saturating_add(per_audio_ms))
    }
}

/// The OpenAI-compatible servers [`SimConfig::profile`] imitates, with what differs on their
/// wire (`docs/openai-wire.md` §7).
pub const PROFILES: &[&str] = &["openai", "speaches", "localai", "vllm", "ollama", "kokoro"];

impl SimConfig {
    /// This configuration behaving like the named server where it differs from OpenAI:
    /// speech rate and container, file-transcription streaming, error bodies, `[DONE]`.
    /// `None` for a name not in [`PROFILES`].
    pub fn profile(self, name: &str) -> Option<Self> {
        Some(match name {
            "openai" => self,
            // Speech at its model's rate (Piper voices: 22.05 kHz); FastAPI error bodies.
            "speaches" => Self {
                speech_sample_rate_hz: 22_050,
                error_body: ErrorBody::Detail,
                ..self
            },
            // WAV whatever was asked.
            "localai" => Self {
                speech_wav_for_pcm: true,
                ..self
            },
            // Speech up to 44.1 kHz; its transcription stream is not OpenAI's, so not asked.
            "vllm" => Self {
                speech_sample_rate_hz: 44_100,
                transcription_streams: false,
                ..self
            },
            // No streamed transcription; chat streams as OpenAI's.
            "ollama" => Self {
                transcription_streams: false,
                ..self
            },
            // 24 kHz PCM as OpenAI's; FastAPI error bodies.
            "kokoro" => Self {
                error_body: ErrorBody::Detail,
                ..self
            },
            _ => return None,
        })
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            handshake_ms: 0,
            realtime_handshake_ms: 0,
            stt_first_delta_ms: DEFAULT_STT_FIRST_DELTA_MS,
            stt_ms_per_audio_s: 0,
            stt_delta_interval_ms: DEFAULT_STT_DELTA_INTERVAL_MS,
            realtime_first_audio_ms: DEFAULT_REALTIME_FIRST_AUDIO_MS,
            default_reply: None,
            llm_first_token_ms: DEFAULT_LLM_FIRST_TOKEN_MS,
            llm_tokens_per_second: DEFAULT_LLM_TOKENS_PER_SECOND,
            tts_first_byte_ms: DEFAULT_TTS_FIRST_BYTE_MS,
            tts_realtime_factor: DEFAULT_TTS_REALTIME_FACTOR,
            chat_done_marker: true,
            speech_wav_for_pcm: false,
            transcription_streams: true,
            error_body: ErrorBody::OpenAi,
            speech_sample_rate_hz: 24_000,
            quirks: true,
            out_of_order: false,
            seed: DEFAULT_SEED,
            realtime_session_max: REALTIME_SESSION_MAX,
            recording: true,
            control: false,
            sse_style: SseStyle::default(),
            extra_models: Vec::new(),
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("handshake_ms", &self.handshake_ms)
            .field("realtime_handshake_ms", &self.realtime_handshake_ms)
            .field("stt_first_delta_ms", &self.stt_first_delta_ms)
            .field("stt_ms_per_audio_s", &self.stt_ms_per_audio_s)
            .field("stt_delta_interval_ms", &self.stt_delta_interval_ms)
            .field("realtime_first_audio_ms", &self.realtime_first_audio_ms)
            .field("default_reply", &self.default_reply)
            .field("llm_first_token_ms", &self.llm_first_token_ms)
            .field("llm_tokens_per_second", &self.llm_tokens_per_second)
            .field("tts_first_byte_ms", &self.tts_first_byte_ms)
            .field("tts_realtime_factor", &self.tts_realtime_factor)
            .field("quirks", &self.quirks)
            .field("out_of_order", &self.out_of_order)
            .field("seed", &self.seed)
            .field("realtime_session_max", &self.realtime_session_max)
            .field("recording", &self.recording)
            .field("control", &self.control)
            .field("sse_style", &self.sse_style)
            .field("extra_models", &self.extra_models)
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
    fn json_form_hides_the_key_and_round_trips() {
        let config = SimConfig {
            api_key: Some("sk-secret".into()),
            realtime_session_max: std::time::Duration::from_millis(1500),
            ..SimConfig::default()
        };
        let json = serde_json::to_value(&config).expect("serializable");
        assert!(json.get("api_key").is_none());
        assert_eq!(json["realtime_session_max_ms"], 1500);
        let back: SimConfig = serde_json::from_value(json).expect("deserializable");
        assert_eq!(
            back,
            SimConfig {
                api_key: None,
                ..config
            }
        );
    }

    #[test]
    fn sse_frames_follow_the_style() {
        assert_eq!(SseStyle::default().frame(None, "{}"), "data: {}\n\n");
        assert_eq!(
            SseStyle::all().frame(Some("error"), "{}"),
            ": keep-alive\r\n\r\nevent: error\r\ndata: {}\r\n\r\n"
        );
    }

    #[test]
    fn transcription_waits_longer_for_longer_audio() {
        let flat = SimConfig::default();
        assert_eq!(flat.stt_first_delta(8_700), flat.stt_first_delta(1_000));
        // The seed's measured log: 0.8 s after 1 s of audio, 2.3 s after 8.7 s.
        let measured = SimConfig {
            stt_first_delta_ms: 600,
            stt_ms_per_audio_s: 195,
            ..SimConfig::default()
        };
        let ms = |audio_ms| measured.stt_first_delta(audio_ms).as_millis();
        assert_eq!(ms(1_000), 795);
        assert_eq!(ms(8_700), 2_296);
        assert_eq!(ms(0), 600);
    }

    #[test]
    fn pacing_treats_zero_and_infinity_as_unpaced() {
        assert_eq!(paced(10.0, 0.0), std::time::Duration::ZERO);
        assert_eq!(paced(10.0, f64::INFINITY), std::time::Duration::ZERO);
        assert_eq!(paced(10.0, 20.0), std::time::Duration::from_millis(500));
    }
}
