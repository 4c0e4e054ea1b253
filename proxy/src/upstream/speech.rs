//! The synthesizer: the Speech API with `response_format: "pcm"`, streamed as chunked raw
//! PCM16 LE 24 kHz mono (`docs/openai-wire.md` §3.1, §3.2).
//!
//! Chunk boundaries are arbitrary and may split a sample; [`PcmAligner`] carries the odd byte
//! over so every chunk handed on holds whole samples.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Serialize;

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
            response_format: "pcm",
        };
        let response = send_with_retry(&self.config, || {
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
            aligner: PcmAligner::default(),
            stall_timeout: self.config.stall_timeout,
        })
    }
}

/// Synthesized audio arriving in whole-sample chunks.
#[derive(Debug)]
pub struct SpeechStream {
    response: reqwest::Response,
    aligner: PcmAligner,
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
                if self.aligner.has_carry() {
                    tracing::debug!("speech stream ended mid-sample; dropping the odd byte");
                }
                return Ok(None);
            };
            if let Some(whole) = self.aligner.align(chunk) {
                return Ok(Some(whole));
            }
        }
    }
}

/// Re-cuts a byte stream into whole 16-bit samples, carrying an odd trailing byte into the next
/// chunk. Even chunks with nothing carried pass through without a copy.
#[derive(Debug, Default)]
pub struct PcmAligner {
    carry: Option<u8>,
}

impl PcmAligner {
    /// The whole samples available after `chunk`, or `None` if it completed none.
    pub fn align(&mut self, chunk: Bytes) -> Option<Bytes> {
        let aligned = match self.carry.take() {
            None if chunk.len().is_multiple_of(2) => chunk,
            None => {
                self.carry = chunk.last().copied();
                chunk.slice(..chunk.len() - 1)
            }
            Some(first) => {
                let total = 1 + chunk.len();
                let whole = total - total % 2;
                let mut joined = BytesMut::with_capacity(whole);
                joined.extend_from_slice(&[first]);
                joined.extend_from_slice(&chunk[..whole - 1]);
                if total % 2 == 1 {
                    self.carry = chunk.last().copied();
                }
                joined.freeze()
            }
        };
        (!aligned.is_empty()).then_some(aligned)
    }

    /// Whether half a sample is waiting.
    pub fn has_carry(&self) -> bool {
        self.carry.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_chunks_are_realigned_without_losing_bytes() {
        let audio: Vec<u8> = (0..=200u8).collect::<Vec<_>>()[..200].to_vec();
        for cuts in [
            vec![1, 2, 3, 50, 144],
            vec![7, 7, 7, 179],
            vec![200],
            vec![199, 1],
        ] {
            let mut aligner = PcmAligner::default();
            let mut out = Vec::new();
            let mut start = 0;
            for len in cuts {
                let chunk = Bytes::copy_from_slice(&audio[start..start + len]);
                start += len;
                if let Some(whole) = aligner.align(chunk) {
                    assert_eq!(whole.len() % 2, 0);
                    out.extend_from_slice(&whole);
                }
            }
            assert_eq!(out, audio);
            assert!(!aligner.has_carry());
        }
    }

    #[test]
    fn a_single_byte_completes_nothing() {
        let mut aligner = PcmAligner::default();
        assert_eq!(aligner.align(Bytes::from_static(&[1])), None);
        assert!(aligner.has_carry());
        assert_eq!(
            aligner.align(Bytes::from_static(&[2])).as_deref(),
            Some(&[1u8, 2][..])
        );
    }

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
