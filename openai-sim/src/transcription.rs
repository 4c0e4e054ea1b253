//! `POST /v1/audio/transcriptions` (docs/openai-wire.md §5): a whole audio file in a multipart
//! form, answered with JSON `{"text", "usage"}` (or plain text), or with `stream=true` on a
//! gpt-4o model an SSE stream of `transcript.text.delta` events and a `transcript.text.done`.
//! whisper-1 ignores `stream`. The transcript is the next scripted one, else the file's
//! duration ("You spoke for 1.2 seconds."). The first byte (or delta) waits
//! `stt_first_delta_ms` plus `stt_ms_per_audio_s` per second of the file's audio, as a
//! committed Realtime turn does; without streaming the reply also waits for the deltas it
//! stands for.
//!
//! Faithful where clients stumble: the file goes by its name's extension; a `.wav` must be a
//! RIFF file; the whole request may be at most 26,214,400 bytes (413 `server_error` beyond);
//! OpenAI's error envelope throughout; faults of the `transcription` stage.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::body;
use super::chat::{Event, StreamPlan, respond_whole, stream};
use super::config::paced;
use super::error::ApiError;
use super::fault::{Fault, SimStage, Taker};
use super::http::{self, Api};
use super::models::{self, ModelKind};
use super::record::{RecordRef, TranscriptionRecord};
use super::state::{Shared, header_text};
use super::text;

/// The largest request the service reads, multipart included (§5).
const MAX_REQUEST_BYTES: usize = 26_214_400;

/// The extensions the service accepts (§5).
const FORMATS: &[&str] = &[
    "flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm",
];

/// The model that ignores `stream` and answers plain JSON.
const NON_STREAMING_MODEL: &str = "whisper-1";

/// A parsed upload.
#[derive(Debug)]
struct Upload {
    fields: Map<String, Value>,
    file_name: Option<String>,
    file_content_type: Option<String>,
    file: Bytes,
}

/// Handles one upload; see the module docs.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let at = shared.add_transcription(TranscriptionRecord::new(
        header_text(&headers, "authorization"),
        Value::Object(Map::new()),
        shared.now_ms(),
    ));
    let mut tracker = body::Tracker::new(Arc::clone(&shared), at);
    if let Err(error) = shared.authorize(http::bearer(&headers)) {
        return http::reject(tracker, error);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = declared.filter(|&length| length > MAX_REQUEST_BYTES) {
        return http::reject(tracker, too_large(length));
    }
    let upload = match form {
        Ok(form) => match read_upload(form).await {
            Ok(upload) => upload,
            Err(error) => return http::reject(tracker, error),
        },
        Err(_) => {
            return http::reject(
                tracker,
                ApiError::invalid_request(
                    "Expected a multipart/form-data request body.",
                    None,
                    None,
                ),
            );
        }
    };
    record_upload(&shared, at, &upload);
    let total = upload.file.len()
        + upload
            .fields
            .values()
            .map(|v| v.to_string().len())
            .sum::<usize>();
    if total > MAX_REQUEST_BYTES {
        return http::reject(tracker, too_large(total));
    }
    let config = shared.config();
    let request = match Request::check(&upload, &config) {
        Ok(request) => request,
        Err(error) => return http::reject(tracker, error),
    };
    let fault = shared.take_fault(SimStage::Transcription, Taker::Request);
    if let Some(fault) = &fault
        && let Some(response) = http::apply_http_fault(&mut tracker, fault)
    {
        return response;
    }
    let transcript = shared.next_transcript(request.duration_ms);
    let streamed =
        request.stream && request.model != NON_STREAMING_MODEL && config.transcription_streams;
    shared.update_transcription(at, |record| {
        record.transcript = Some(transcript.clone());
        record.streamed = streamed;
    });
    if let Some(Fault::Stall { after: 0 }) = fault {
        return http::stall_before_headers(tracker).await;
    }
    let words: Vec<String> = text::tokens(&transcript)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let first_delta = config.stt_first_delta(request.duration_ms);
    let interval = Duration::from_millis(config.stt_delta_interval_ms);
    let before_headers = if streamed {
        first_delta
    } else {
        first_delta + interval * u32::try_from(words.len()).unwrap_or(u32::MAX)
    };
    if let Err(response) = http::wait_before_headers(&mut tracker, before_headers).await {
        return response;
    }
    let mut headers = http::openai_headers(before_headers);
    let usage = json!({"type": "duration", "seconds": request.duration_ms.div_ceil(1000)});
    let (sender, body) = body::channel(tracker);
    if streamed {
        let mut events: Vec<Event> = words
            .iter()
            .enumerate()
            .map(|(n, word)| Event {
                text: config.sse_style.frame(
                    None,
                    &json!({"type": "transcript.text.delta", "delta": word}).to_string(),
                ),
                paced: n > 0,
            })
            .collect();
        events.push(Event::now(
            config.sse_style.frame(
                None,
                &json!({"type": "transcript.text.done", "text": transcript, "usage": usage})
                    .to_string(),
            ),
        ));
        let plan = StreamPlan {
            api: Api::Transcription,
            events,
            token_interval: paced(1.0, 1000.0 / interval.as_millis().max(1) as f64),
            fault,
            split_events: config.quirks,
            sse: config.sse_style,
            rng: StdRng::seed_from_u64(shared.next_seed()),
        };
        tokio::spawn(stream(sender, plan));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
    } else {
        let (reply, content_type) = match request.format {
            ResponseFormat::Json => (
                json!({"text": transcript, "usage": usage}).to_string(),
                "application/json",
            ),
            ResponseFormat::Text => (format!("{transcript}\n"), "text/plain; charset=utf-8"),
            ResponseFormat::VerboseJson => (
                json!({
                    "task": "transcribe",
                    "language": "english",
                    "duration": request.duration_ms as f64 / 1000.0,
                    "text": transcript,
                    "segments": [],
                    "usage": usage,
                })
                .to_string(),
                "application/json",
            ),
        };
        tokio::spawn(respond_whole(sender, reply, fault));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    (headers, Body::from_stream(body)).into_response()
}

fn too_large(bytes: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "server_error",
        format!("Maximum content size limit ({MAX_REQUEST_BYTES}) exceeded ({bytes} bytes read)"),
    )
}

/// Reads the form: text fields, and the `file` part whole.
async fn read_upload(mut form: Multipart) -> Result<Upload, ApiError> {
    let mut upload = Upload {
        fields: Map::new(),
        file_name: None,
        file_content_type: None,
        file: Bytes::new(),
    };
    let unreadable = |_| ApiError::invalid_request("Could not parse multipart form.", None, None);
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            upload.file_name = field.file_name().map(str::to_owned);
            upload.file_content_type = field.content_type().map(str::to_owned);
            upload.file = field.bytes().await.map_err(unreadable)?;
        } else {
            let value = field.text().await.map_err(unreadable)?;
            upload.fields.insert(name, Value::String(value));
        }
    }
    Ok(upload)
}

fn record_upload(shared: &Shared, at: RecordRef, upload: &Upload) {
    shared.update_transcription(at, |record| {
        record.body = Value::Object(upload.fields.clone());
        record.file_name = upload.file_name.clone();
        record.file_content_type = upload.file_content_type.clone();
        record.file = upload.file.clone();
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseFormat {
    Json,
    Text,
    VerboseJson,
}

/// A checked request.
#[derive(Debug)]
struct Request {
    model: String,
    stream: bool,
    format: ResponseFormat,
    duration_ms: u64,
}

impl Request {
    fn check(upload: &Upload, config: &super::SimConfig) -> Result<Self, ApiError> {
        let field = |name: &str| upload.fields.get(name).and_then(Value::as_str);
        let Some(model) = field("model") else {
            return Err(ApiError::invalid_request(
                "you must provide a model parameter",
                Some("model"),
                None,
            ));
        };
        models::check(config, model, ModelKind::Transcription, "model")?;
        if upload.file_name.is_none() && upload.file.is_empty() {
            return Err(ApiError::invalid_request(
                "'file' is a required property",
                Some("file"),
                None,
            ));
        }
        let extension = upload
            .file_name
            .as_deref()
            .and_then(|name| name.rsplit_once('.'))
            .map(|(_, extension)| extension.to_ascii_lowercase());
        let duration_ms = match extension.as_deref() {
            None => {
                return Err(ApiError::invalid_request(
                    format!("Invalid file format. Supported formats: {FORMATS:?}"),
                    Some("file"),
                    None,
                ));
            }
            Some(extension) if !FORMATS.contains(&extension) => {
                return Err(ApiError::invalid_request(
                    format!("Unsupported file format {extension}"),
                    Some("file"),
                    Some("unsupported_value"),
                ));
            }
            Some("wav") => wav_duration_ms(&upload.file).ok_or_else(|| {
                ApiError::invalid_request(
                    "Audio file might be corrupted or unsupported",
                    Some("file"),
                    Some("invalid_value"),
                )
            })?,
            // Other formats are taken as they come; their length is not decoded.
            Some(_) => 0,
        };
        let stream = match field("stream") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::invalid_request(
                    format!("'{other}' is not a valid boolean"),
                    Some("stream"),
                    Some("invalid_type"),
                ));
            }
        };
        let format = match field("response_format").unwrap_or("json") {
            "json" => ResponseFormat::Json,
            "text" => ResponseFormat::Text,
            "verbose_json" if model == NON_STREAMING_MODEL => ResponseFormat::VerboseJson,
            other => {
                return Err(ApiError::invalid_request(
                    format!("response_format '{other}' is not compatible with model '{model}'"),
                    Some("response_format"),
                    Some("unsupported_value"),
                ));
            }
        };
        Ok(Self {
            model: model.to_owned(),
            stream,
            format,
            duration_ms,
        })
    }
}

/// The duration of a RIFF/WAVE file's PCM, or `None` if it is not one.
fn wav_duration_ms(file: &[u8]) -> Option<u64> {
    if file.len() < 12 || &file[..4] != b"RIFF" || &file[8..12] != b"WAVE" {
        return None;
    }
    let (mut at, mut byte_rate, mut data) = (12, None, None);
    while at + 8 <= file.len() {
        let id = &file[at..at + 4];
        let size = u32::from_le_bytes(file[at + 4..at + 8].try_into().ok()?) as usize;
        let body = at + 8;
        if id == b"fmt " && body + 12 <= file.len() {
            byte_rate = Some(u32::from_le_bytes(
                file[body + 8..body + 12].try_into().ok()?,
            ));
        } else if id == b"data" {
            // Streamed WAVs may leave the size at its maximum: count what is there.
            data = Some(size.min(file.len() - body));
            break;
        }
        at = body + size + size % 2;
    }
    let (byte_rate, data) = (byte_rate.filter(|&r| r > 0)?, data?);
    Some(data as u64 * 1000 / u64::from(byte_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_file_has_its_duration_and_junk_has_none() {
        let pcm = vec![0u8; 48_000];
        let mut file = super::super::synth::wav_header(48_000, 24_000).to_vec();
        file.extend_from_slice(&pcm);
        assert_eq!(wav_duration_ms(&file), Some(1000));
        assert_eq!(wav_duration_ms(b"not a wav file at all"), None);
    }
}
