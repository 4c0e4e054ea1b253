//! File transcription (`STT_MODE=file`): each committed turn is uploaded whole as a WAV to
//! `POST /audio/transcriptions` (`docs/openai-wire.md` §5), the path every OpenAI-compatible
//! speech-to-text server has. It stands behind the same handle as the Realtime transcriber:
//! the session appends and commits, and reads `Committed`, `Delta` and `Completed` events, so
//! the turn pipeline is the same.
//!
//! The request asks for `stream=true` unless the model is known not to stream (whisper-1), and
//! the reply's `Content-Type` decides how it is read: SSE `transcript.text.delta` / `.done`,
//! or JSON `{"text"}`. Turns upload concurrently; the turn machine releases them in order.

use bytes::Bytes;
use protocol::Stage;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::realtime::{TranscriberCommand, TranscriberEvent};
use super::sse::{SseEvent, SseParser};
use super::{UpstreamConfig, UpstreamError, authorize, send_with_retry};
use crate::wav::Wav;

/// The model that answers plain JSON whatever `stream` says, so it is not asked to stream.
const NON_STREAMING_MODEL: &str = "whisper-1";

/// Less audio than this in a turn is not worth an upload: 100 ms of 24 kHz PCM16, the
/// Realtime API's own minimum for a commit.
const MIN_TURN_BYTES: usize = 4_800;

/// Runs one file transcriber until `commands` closes or `cancel` fires.
pub(crate) async fn run(
    config: std::sync::Arc<UpstreamConfig>,
    http: reqwest::Client,
    mut commands: mpsc::Receiver<TranscriberCommand>,
    events: mpsc::Sender<TranscriberEvent>,
    cancel: CancellationToken,
) {
    let _ = events
        .send(TranscriberEvent::Ready {
            expires_at_unix_s: None,
        })
        .await;
    let mut audio: Vec<u8> = Vec::new();
    let mut turns = 0u64;
    let mut previous_item_id: Option<String> = None;
    // Dropping the set (the session ended) aborts every upload still running.
    let mut uploads = JoinSet::new();
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            () = cancel.cancelled() => return,
            Some(_) = uploads.join_next(), if !uploads.is_empty() => continue,
        };
        match command {
            None => break,
            Some(TranscriberCommand::Append(pcm)) => audio.extend_from_slice(&pcm),
            Some(TranscriberCommand::Clear) => audio.clear(),
            Some(TranscriberCommand::Commit) => {
                if audio.len() < MIN_TURN_BYTES {
                    audio.clear();
                    let _ = events.send(TranscriberEvent::CommitEmpty).await;
                    continue;
                }
                turns += 1;
                let item_id = format!("file_turn_{turns}");
                let _ = events
                    .send(TranscriberEvent::Committed {
                        item_id: item_id.clone(),
                        previous_item_id: previous_item_id.replace(item_id.clone()),
                    })
                    .await;
                let wav = Bytes::from(Wav::encode_mono(
                    protocol::SAMPLE_RATE_HZ,
                    &std::mem::take(&mut audio),
                ));
                let upload = transcribe(config.clone(), http.clone(), wav, item_id, events.clone());
                uploads.spawn(upload.in_current_span());
            }
        }
    }
    // The session stopped sending: let the uploads in flight finish.
    while uploads.join_next().await.is_some() {}
}

/// Uploads one turn and reports its transcript (or why there is none).
async fn transcribe(
    config: std::sync::Arc<UpstreamConfig>,
    http: reqwest::Client,
    wav: Bytes,
    item_id: String,
    events: mpsc::Sender<TranscriberEvent>,
) {
    let event = match upload(&config, &http, wav, &item_id, &events).await {
        Ok(transcript) => TranscriberEvent::Completed {
            item_id,
            transcript,
        },
        Err(error) => TranscriberEvent::TurnFailed { item_id, error },
    };
    let _ = events.send(event).await;
}

async fn upload(
    config: &UpstreamConfig,
    http: &reqwest::Client,
    wav: Bytes,
    item_id: &str,
    events: &mpsc::Sender<TranscriberEvent>,
) -> Result<String, UpstreamError> {
    let stream = config.stt_model != NON_STREAMING_MODEL;
    let response = send_with_retry(Stage::Stt, config, || {
        let file = reqwest::multipart::Part::stream(wav.clone())
            .file_name("turn.wav")
            .mime_str("audio/wav")
            .expect("audio/wav is a valid MIME type");
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", config.stt_model.clone())
            .text("response_format", "json");
        if let Some(language) = &config.stt_language {
            form = form.text("language", language.clone());
        }
        if stream {
            form = form.text("stream", "true");
        }
        authorize(
            http.post(&config.endpoints.transcription_url),
            config.api_key.as_ref(),
        )
        .multipart(form)
    })
    .await?;
    let streamed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streamed {
        read_stream(config, response, item_id, events).await
    } else {
        let body = tokio::time::timeout(config.stall_timeout, response.bytes())
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|_| UpstreamError::Truncated)?;
        transcript_of_json(&body)
    }
}

/// The `text` of a plain reply (some servers answer `text/plain`: the body is the text).
fn transcript_of_json(body: &[u8]) -> Result<String, UpstreamError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => value
            .get("text")
            .and_then(serde_json::Value::as_str)
            .map(|text| text.trim().to_owned())
            .ok_or_else(|| UpstreamError::Malformed("no \"text\" in the transcription".into())),
        Err(_) => Ok(String::from_utf8_lossy(body).trim().to_owned()),
    }
}

/// Reads `transcript.text.delta` events (reported as they come) up to `transcript.text.done`.
async fn read_stream(
    config: &UpstreamConfig,
    mut response: reqwest::Response,
    item_id: &str,
    events: &mpsc::Sender<TranscriberEvent>,
) -> Result<String, UpstreamError> {
    let mut parser = SseParser::new();
    let mut parsed = Vec::new();
    let mut deltas = String::new();
    loop {
        let chunk = tokio::time::timeout(config.stall_timeout, response.chunk())
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|_| UpstreamError::Truncated)?;
        parsed.clear();
        let ended = chunk.is_none();
        match chunk {
            Some(bytes) => parser
                .push(&bytes, &mut parsed)
                .map_err(|e| UpstreamError::Malformed(e.to_string()))?,
            None => parser
                .finish(&mut parsed)
                .map_err(|_| UpstreamError::Truncated)?,
        }
        for event in parsed.drain(..) {
            let piece = match event {
                SseEvent::Done => Piece::Done(None),
                SseEvent::Data { data, .. } => read_event(&data)?,
            };
            match piece {
                Piece::Delta(delta) => {
                    deltas.push_str(&delta);
                    let _ = events
                        .send(TranscriberEvent::Delta {
                            item_id: item_id.to_owned(),
                            delta,
                        })
                        .await;
                }
                Piece::Done(text) => {
                    return Ok(text.unwrap_or_else(|| deltas.clone()).trim().to_owned());
                }
                Piece::Nothing => {}
            }
        }
        if ended {
            // The body ended without `transcript.text.done`.
            return Err(UpstreamError::Truncated);
        }
    }
}

/// What one event of a transcription stream says.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Delta(String),
    /// The end, with the whole text if the event carries it.
    Done(Option<String>),
    Nothing,
}

/// Reads one event: OpenAI's `transcript.text.delta` / `.done`, or the chat-chunk-shaped
/// `transcription.chunk` (`choices[0].delta.content`, ended by `[DONE]`) that vLLM streams.
fn read_event(data: &str) -> Result<Piece, UpstreamError> {
    let value = super::sse::json_payload(data)?;
    let text_of = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
    Ok(match text_of("type") {
        Some("transcript.text.delta") => {
            text_of("delta").map_or(Piece::Nothing, |delta| Piece::Delta(delta.to_owned()))
        }
        Some("transcript.text.done") => Piece::Done(text_of("text").map(str::to_owned)),
        _ => value
            .get("choices")
            .and_then(|choices| choices.get(0))
            .and_then(|choice| choice.get("delta"))
            .and_then(|delta| delta.get("content"))
            .and_then(serde_json::Value::as_str)
            .filter(|content| !content.is_empty())
            .map_or(Piece::Nothing, |content| Piece::Delta(content.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_vllm_stream_events_are_read() {
        assert_eq!(
            read_event(r#"{"type":"transcript.text.delta","delta":"Hi"}"#).unwrap(),
            Piece::Delta("Hi".into())
        );
        assert_eq!(
            read_event(r#"{"type":"transcript.text.done","text":"Hi there"}"#).unwrap(),
            Piece::Done(Some("Hi there".into()))
        );
        assert_eq!(
            read_event(
                r#"{"object":"transcription.chunk","choices":[{"delta":{"content":" there"}}]}"#
            )
            .unwrap(),
            Piece::Delta(" there".into())
        );
        assert_eq!(
            read_event(r#"{"type":"transcript.text.segment","text":"x"}"#).unwrap(),
            Piece::Nothing
        );
        assert!(read_event(r#"{"error":{"message":"boom","type":"server_error"}}"#).is_err());
    }

    #[test]
    fn plain_replies_are_json_or_text() {
        assert_eq!(
            transcript_of_json(br#"{"text":" Hello there. ","usage":{}}"#).unwrap(),
            "Hello there."
        );
        assert_eq!(
            transcript_of_json(b"Hello there.\n").unwrap(),
            "Hello there."
        );
        assert!(transcript_of_json(br#"{"words":[]}"#).is_err());
    }
}
