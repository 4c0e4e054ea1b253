//! The synthesizer: the Speech API with `response_format: "pcm"`, streamed as chunked raw
//! PCM16 LE 24 kHz mono (`docs/openai-wire.md` §3.1, §3.2), or what a compatible server sends
//! instead (PCM at its own rate, or WAV), made into that by
//! [`speech_format`](super::speech_format).
//!
//! Chunk boundaries are arbitrary and may split a sample; the decoder carries the odd byte
//! over so every chunk handed on holds whole samples.

use std::sync::Arc;

use bytes::Bytes;
use protocol::Stage;
use serde::Serialize;

use super::speech_format::SpeechDecoder;
use super::{UpstreamConfig, UpstreamError, authorize, send_with_retry};

/// The body of a Speech request.
#[derive(Debug, Serialize)]
struct SpeechRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
    response_format: &'static str,
}

/// Starts streamed syntheses.
#[derive(Debug, Clone)]
pub struct Synthesizer {
    http: reqwest::Client,
    config: Arc<UpstreamConfig>,
}

impl Synthesizer {
    /// A synthesizer using the shared HTTP client.
    pub fn new(http: reqwest::Client, config: Arc<UpstreamConfig>) -> Self {
        Self { http, config }
    }

    /// Sends the request (retrying transient failures) and returns the audio stream once the
    /// upstream has answered 200.
    pub async fn start(&self, text: &str) -> Result<SpeechStream, UpstreamError> {
        let body = SpeechRequest {
            model: &self.config.tts_model,
            input: text,
            voice: &self.config.tts_voice,
            instructions: self.config.tts_instructions.as_deref(),
            response_format: self.config.tts_format.as_str(),
        };
        let decoder = SpeechDecoder::new(self.config.tts_format, self.config.tts_sample_rate_hz)?;
        let response = send_with_retry(Stage::Tts, &self.config, || {
            authorize(
                self.http.post(&self.config.endpoints.speech_url),
                self.config.api_key.as_ref(),
            )
            .header(reqwest::header::ACCEPT, "application/octet-stream")
            .json(&body)
        })
        .await?;
        Ok(SpeechStream {
            response,
            decoder,
            stall_timeout: self.config.stall_timeout,
        })
    }
}

/// Synthesized audio arriving in whole-sample chunks.
#[derive(Debug)]
pub struct SpeechStream {
    response: reqwest::Response,
    decoder: SpeechDecoder,
    stall_timeout: std::time::Duration,
}

impl SpeechStream {
    /// The next chunk of PCM16 (never empty, always whole samples), `Ok(None)` at the end.
    /// Dropping the stream closes the HTTP request, which is how synthesis is cancelled.
    pub async fn next_pcm(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            let chunk = tokio::time::timeout(self.stall_timeout, self.response.chunk())
                .await
                .map_err(|_| UpstreamError::Timeout)?
                .map_err(|_| UpstreamError::Truncated)?;
            let Some(chunk) = chunk else {
                return Ok(self.decoder.finish());
            };
            if let Some(whole) = self.decoder.push(chunk)? {
                return Ok(Some(whole));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_body_has_the_reference_shape() {
        let body = serde_json::to_value(SpeechRequest {
            model: "gpt-4o-mini-tts",
            input: "Hello.",
            voice: "coral",
            instructions: None,
            response_format: "pcm",
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "gpt-4o-mini-tts", "input": "Hello.", "voice": "coral", "response_format": "pcm"})
        );
    }
}
