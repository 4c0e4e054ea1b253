//! `POST /v1/audio/speech` (docs/openai-wire.md §3).
//!
//! Validates strictly, as the schema has `additionalProperties: false` (§3.1): unknown fields,
//! a missing `model`/`input`/`voice`, an `input` over 4096 characters, a `speed` outside
//! 0.25–4.0, an unknown enumeration value (a built-in `voice` included; custom voices
//! `{"id": …}` pass) are 400s, and a model nobody serves is a 404 `model_not_found`. The simulator only produces `pcm` (and
//! `wav`, the same samples behind a header); `mp3`, `opus`, `aac`, `flac` (and a missing
//! `response_format`, which means `mp3`) are 400s that say so.
//!
//! The answer: after `tts_first_byte_ms` the headers (200, no length, so the body is sent
//! with `Transfer-Encoding: chunked`, §3.2), then [`synth`] audio in chunks of
//! varying size paced at `tts_realtime_factor`. With quirks the first chunk and about one in
//! three others have an odd length, so they end mid-sample. `stream_format: "sse"` (§3.3,
//! not for `tts-1`/`tts-1-hd`) sends the same chunks as `speech.audio.delta` events and ends
//! with `speech.audio.done` carrying `usage`, framed by [`SseStyle`].
//!
//! Faults: an HTTP error body; `MidStreamError` and `Drop` cut the body after N audio bytes
//! (raw audio has no error framing; with SSE, `MidStreamError` sends a `data: {"error":...}`
//! payload first); `Stall` stops after N bytes (N = 0: before the headers).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::body::{self, BodySender};
use super::config::{SseStyle, paced};
use super::error::ApiError;
use super::fault::{Fault, SimStage, Taker};
use super::http::{self, Api};
use super::models::{self, ModelKind};
use super::params;
use super::record::Outcome;
use super::state::Shared;
use super::synth;
use super::text;

/// Fields of the request schema (§3.1).
const FIELDS: &[&str] = &[
    "model",
    "input",
    "voice",
    "instructions",
    "response_format",
    "speed",
    "stream_format",
];
/// Built-in voices (§3.1).
const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];
/// Longest `input` and `instructions`, in characters.
const MAX_TEXT_CHARS: usize = 4096;
/// Output formats the API knows.
const FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];
/// Allowed `speed` range.
const SPEED_RANGE: (f64, f64) = (0.25, 4.0);
/// Models without SSE streaming (§3.1).
const NO_SSE_MODELS: &[&str] = &["tts-1", "tts-1-hd"];
/// Smallest audio chunk: 50 ms of PCM16 at 24 kHz.
const MIN_CHUNK_BYTES: usize = 2_400;
/// Largest audio chunk: 200 ms.
const MAX_CHUNK_BYTES: usize = 9_600;
/// Quirk: about one chunk in this many (after the first, which always is) has an odd length.
const ODD_CHUNK_ONE_IN: u32 = 3;
/// Audio tokens per second in the SSE `usage` (UNCONFIRMED rate; cosmetic).
const OUTPUT_TOKENS_PER_SECOND: u64 = 50;

/// How the audio is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pcm,
    Wav,
}

/// A validated request.
#[derive(Debug)]
struct SpeechRequest {
    model: String,
    input: String,
    voice: String,
    speed: f64,
    format: Format,
    sse: bool,
}

/// Handles one request; see the module docs.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let (body, mut tracker) = match http::accept(&shared, Api::Speech, &headers, &raw) {
        Ok(accepted) => accepted,
        Err(rejection) => return *rejection,
    };
    let config = shared.config();
    let request = match SpeechRequest::parse(&body).and_then(|request| {
        models::check(&config, &request.model, ModelKind::Speech, "model").map(|()| request)
    }) {
        Ok(request) => request,
        Err(error) => return http::reject(tracker, error),
    };
    let fault = shared.take_fault(SimStage::Speech, Taker::Request);
    if let Some(fault) = &fault
        && let Some(response) = http::apply_http_fault(&mut tracker, fault)
    {
        return response;
    }
    let started = Instant::now();
    let SpeechRequest {
        model: _,
        input,
        voice,
        speed,
        format,
        sse,
    } = request;
    let input_tokens = text::estimate_tokens(&input);
    let Some(pcm) = synth::speech(&input, &voice, speed).await else {
        let error = Fault::server_error()
            .http_error()
            .expect("server_error is an HTTP fault");
        return http::reject(tracker, error);
    };
    let audio_ms = synth::duration_ms(pcm.len());
    let rate_hz = config.speech_sample_rate_hz;
    let pcm = synth::at_rate(pcm, rate_hz);
    let format = if config.speech_wav_for_pcm {
        Format::Wav
    } else {
        format
    };
    let audio = match format {
        Format::Pcm => pcm,
        Format::Wav => {
            let header = synth::wav_header(u32::try_from(pcm.len()).unwrap_or(u32::MAX), rate_hz);
            Bytes::from([header.as_slice(), &pcm].concat())
        }
    };
    shared.update_speech(tracker.at(), |record| record.synthesized = audio.clone());
    if let Some(Fault::Stall { after: 0 }) = fault {
        return http::stall_before_headers(tracker).await;
    }
    let first_byte =
        Duration::from_millis(config.tts_first_byte_ms).saturating_sub(started.elapsed());
    if let Err(response) = http::wait_before_headers(&mut tracker, first_byte).await {
        return response;
    }
    let mut headers = http::openai_headers(started.elapsed());
    let content_type = match (sse, format) {
        (true, _) => "text/event-stream; charset=utf-8",
        (false, Format::Pcm) => "application/octet-stream",
        (false, Format::Wav) => "audio/wav",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let plan = Plan {
        chunks: chunk_sizes(
            audio.len(),
            config.quirks,
            &mut StdRng::seed_from_u64(shared.next_seed()),
        ),
        audio,
        realtime_factor: config.tts_realtime_factor,
        fault,
        sse: sse.then_some(config.sse_style),
        usage: json!({
            "input_tokens": input_tokens,
            "output_tokens": audio_ms * OUTPUT_TOKENS_PER_SECOND / 1000,
            "total_tokens": input_tokens + audio_ms * OUTPUT_TOKENS_PER_SECOND / 1000,
        }),
    };
    let (sender, body) = body::channel(tracker);
    tokio::spawn(stream(sender, plan));
    (headers, Body::from_stream(body)).into_response()
}

impl SpeechRequest {
    fn parse(body: &Value) -> Result<Self, ApiError> {
        let fields = body
            .as_object()
            .ok_or_else(|| ApiError::invalid_type("body", "an object", body))?;
        if let Some(unknown) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
            return Err(ApiError::unknown_parameter(unknown));
        }
        let model = params::required_string(fields.get("model"), "model")?;
        let input = params::required_string(fields.get("input"), "input")?;
        check_length("input", &input)?;
        let voice = match fields.get("voice") {
            None | Some(Value::Null) => return Err(ApiError::missing("voice")),
            Some(Value::String(voice)) if voice.is_empty() => {
                return Err(ApiError::string_empty("voice"));
            }
            Some(voice) => parse_voice(voice, "voice", VOICES)?.to_owned(),
        };
        match fields.get("instructions") {
            None | Some(Value::Null) => {}
            Some(Value::String(instructions)) => check_length("instructions", instructions)?,
            Some(other) => return Err(ApiError::invalid_type("instructions", "a string", other)),
        }
        let format = match fields.get("response_format") {
            Some(Value::String(format)) if format == "pcm" => Format::Pcm,
            Some(Value::String(format)) if format == "wav" => Format::Wav,
            Some(Value::String(format)) if FORMATS.contains(&format.as_str()) => {
                return Err(unsupported_format(format));
            }
            None | Some(Value::Null) => return Err(unsupported_format("mp3")),
            Some(Value::String(format)) => {
                return Err(ApiError::invalid_value("response_format", format, FORMATS));
            }
            Some(other) => {
                return Err(ApiError::invalid_type("response_format", "a string", other));
            }
        };
        let speed = match fields.get("speed") {
            None | Some(Value::Null) => 1.0,
            Some(value) => params::number_in(value, "speed", "a number", SPEED_RANGE)?,
        };
        let sse = match fields.get("stream_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(stream)) if stream == "audio" => false,
            Some(Value::String(stream)) if stream == "sse" => true,
            Some(Value::String(stream)) => {
                return Err(ApiError::invalid_value(
                    "stream_format",
                    stream,
                    &["sse", "audio"],
                ));
            }
            Some(other) => return Err(ApiError::invalid_type("stream_format", "a string", other)),
        };
        if sse && NO_SSE_MODELS.contains(&model.as_str()) {
            return Err(ApiError::invalid_request(
                format!("stream_format 'sse' is not supported for model '{model}'."),
                Some("stream_format"),
                Some("unsupported_value"),
            ));
        }
        Ok(Self {
            model,
            input,
            voice,
            speed,
            format,
            sse,
        })
    }
}

/// A voice as the APIs that speak take it: a built-in name among `voices`, or a custom voice
/// `{"id": "voice_…"}`; returns the name or the custom voice's id.
pub(crate) fn parse_voice<'a>(
    voice: &'a Value,
    param: &str,
    voices: &[&str],
) -> Result<&'a str, ApiError> {
    match voice {
        Value::String(name) if voices.contains(&name.as_str()) => Ok(name),
        Value::String(name) => Err(ApiError::invalid_value(param, name, voices)),
        Value::Object(custom) => match (custom.get("id"), custom.len()) {
            (Some(Value::String(id)), 1) => Ok(id),
            (None, _) => Err(ApiError::missing(&format!("{param}.id"))),
            _ => Err(ApiError::invalid_type(
                param,
                "a string or an object with an 'id'",
                voice,
            )),
        },
        other => Err(ApiError::invalid_type(
            param,
            "a string or an object",
            other,
        )),
    }
}

fn check_length(key: &str, text: &str) -> Result<(), ApiError> {
    let chars = text.chars().count();
    if chars == 0 {
        Err(ApiError::string_empty(key))
    } else if chars > MAX_TEXT_CHARS {
        Err(ApiError::string_too_long(key, MAX_TEXT_CHARS, chars))
    } else {
        Ok(())
    }
}

fn unsupported_format(format: &str) -> ApiError {
    ApiError::unsupported_by_simulator(
        "response_format",
        format!(
            "The OpenAI simulator supports only response_format 'pcm' (and 'wav'), not \
             '{format}'. Note that the API's default is 'mp3'."
        ),
    )
}

/// Chunk lengths covering `total` bytes: 50–200 ms each; with quirks the first and about one
/// in three others are odd.
fn chunk_sizes(total: usize, quirks: bool, rng: &mut StdRng) -> Vec<usize> {
    let mut sizes = Vec::with_capacity(total / MIN_CHUNK_BYTES + 1);
    let mut left = total;
    while left > 0 {
        let mut size = rng.random_range(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES) & !1;
        if quirks && (sizes.is_empty() || rng.random_ratio(1, ODD_CHUNK_ONE_IN)) {
            size += 1;
        }
        let size = size.min(left);
        sizes.push(size);
        left -= size;
    }
    sizes
}

#[derive(Debug)]
struct Plan {
    audio: Bytes,
    chunks: Vec<usize>,
    realtime_factor: f64,
    fault: Option<Fault>,
    /// `Some` for `stream_format: "sse"`, with the framing to use.
    sse: Option<SseStyle>,
    usage: Value,
}

/// Sends the audio chunks at their times, applying the fault.
async fn stream(sender: BodySender, plan: Plan) {
    let (fault_at, fault) = match &plan.fault {
        Some(
            fault @ (Fault::MidStreamError { after }
            | Fault::Drop { after }
            | Fault::Stall { after }),
        ) => (*after, Some(fault)),
        _ => (usize::MAX, None),
    };
    let start = Instant::now();
    let mut offset = 0;
    for size in plan.chunks.iter().copied() {
        let due = start
            + paced(
                synth::duration_ms(offset) as f64 / 1000.0,
                plan.realtime_factor,
            );
        if let Err(end) = sender.sleep_until(due).await {
            return http::log_stream_end(Api::Speech, end);
        }
        let chunk_end = (offset + size).min(fault_at.max(offset));
        if chunk_end > offset {
            let chunk = plan.audio.slice(offset..chunk_end);
            let wire = match plan.sse {
                Some(style) => sse_event(
                    style,
                    None,
                    &json!({"type": "speech.audio.delta", "audio": BASE64.encode(&chunk)}),
                ),
                None => chunk.clone(),
            };
            if let Err(end) = sender.send(wire, Some(chunk)).await {
                return http::log_stream_end(Api::Speech, end);
            }
            offset = chunk_end;
        }
        if offset >= fault_at {
            break;
        }
    }
    match (fault, plan.sse) {
        (Some(Fault::MidStreamError { .. }), Some(style)) if offset >= fault_at => {
            let error = Fault::mid_stream_error().body();
            if sender
                .send(sse_event(style, Some("error"), &error), None)
                .await
                .is_ok()
            {
                sender.finish(Outcome::Failed).await;
            }
        }
        (Some(Fault::MidStreamError { .. } | Fault::Drop { .. }), _) if offset >= fault_at => {
            sender.abort().await
        }
        (Some(Fault::Stall { .. }), _) if offset >= fault_at => sender.stall().await,
        (_, sse) => {
            if let Some(style) = sse {
                let done = json!({ "type": "speech.audio.done", "usage": plan.usage });
                if sender
                    .send(sse_event(style, None, &done), None)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            sender.finish(Outcome::Completed).await;
        }
    }
}

fn sse_event(style: SseStyle, name: Option<&str>, event: &Value) -> Bytes {
    Bytes::from(style.frame(name, &event.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Value) -> Value {
        let mut body = json!({"model": "gpt-4o-mini-tts", "input": "Hello.", "voice": "coral", "response_format": "pcm"});
        for (key, value) in extra.as_object().expect("an object") {
            body[key] = value.clone();
        }
        body
    }

    #[test]
    fn valid_requests_parse() {
        let request = SpeechRequest::parse(&body(
            json!({"voice": {"id": "voice_1"}, "speed": 1.5, "stream_format": "sse"}),
        ))
        .expect("valid");
        assert_eq!(request.voice, "voice_1");
        assert!(request.sse);
        assert_eq!(request.format, Format::Pcm);
    }

    #[test]
    fn invalid_requests_name_the_parameter() {
        let cases = [
            (body(json!({"foo": 1})), "foo", "unknown_parameter"),
            (
                body(json!({"input": ""})),
                "input",
                "string_below_min_length",
            ),
            (
                body(json!({"input": "x".repeat(4097)})),
                "input",
                "string_above_max_length",
            ),
            (
                body(json!({"response_format": "mp3"})),
                "response_format",
                "unsupported_value",
            ),
            (
                body(json!({"response_format": "ogg"})),
                "response_format",
                "invalid_value",
            ),
            (
                body(json!({"speed": 5})),
                "speed",
                "decimal_above_max_value",
            ),
            (
                body(json!({"model": "tts-1", "stream_format": "sse"})),
                "stream_format",
                "unsupported_value",
            ),
        ];
        let cases =
            cases
                .into_iter()
                .chain([(body(json!({"voice": "robot"})), "voice", "invalid_value")]);
        for (request, param, code) in cases {
            let error = SpeechRequest::parse(&request).expect_err("invalid");
            assert_eq!(error.param.as_deref(), Some(param), "{request}");
            assert_eq!(error.code.as_deref(), Some(code), "{request}");
        }
        let mut no_format = body(json!({}));
        no_format
            .as_object_mut()
            .expect("an object")
            .remove("response_format");
        assert!(SpeechRequest::parse(&no_format).is_err());
    }

    #[test]
    fn chunks_cover_the_audio_and_odd_ones_appear_with_quirks() {
        let mut rng = StdRng::seed_from_u64(3);
        let sizes = chunk_sizes(100_001, true, &mut rng);
        assert_eq!(sizes.iter().sum::<usize>(), 100_001);
        assert!(sizes[0] % 2 == 1);
        let plain = chunk_sizes(100_000, false, &mut rng);
        assert!(plain.iter().all(|size| size % 2 == 0));
        assert!(plain.iter().all(|size| *size <= MAX_CHUNK_BYTES));
    }
}
