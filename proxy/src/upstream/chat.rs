//! The responder: Chat Completions with `stream: true` (`docs/openai-wire.md` §2).
//!
//! Every SSE payload is checked for an `error` key before it is read as a chunk (a mid-stream
//! error arrives that way), `choices: []` usage chunks are skipped, and a stream that ends without
//! `data: [DONE]` is a failure, never a short answer.

use std::collections::VecDeque;
use std::sync::Arc;

use protocol::Stage;
use serde::Serialize;

use super::sse::{SseEvent, SseParser};
use super::{UpstreamConfig, UpstreamError, authorize, send_with_retry};

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The operator's instructions.
    System,
    /// The person speaking.
    User,
    /// The voice agent.
    Assistant,
}

/// One message of the conversation, as Chat Completions takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The author.
    pub role: Role,
    /// The text.
    pub content: String,
}

/// The body of a streamed Chat Completions request.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    stream_options: StreamOptions,
    max_completion_tokens: u32,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Starts streamed answers.
#[derive(Debug, Clone)]
pub struct Responder {
    http: reqwest::Client,
    config: Arc<UpstreamConfig>,
}

impl Responder {
    /// A responder using the shared HTTP client.
    pub fn new(http: reqwest::Client, config: Arc<UpstreamConfig>) -> Self {
        Self { http, config }
    }

    /// Sends the request (retrying transient failures) and returns the stream once the
    /// upstream has answered 200.
    pub async fn start(&self, messages: &[ChatMessage]) -> Result<ChatStream, UpstreamError> {
        let body = ChatRequest {
            model: &self.config.llm_model,
            messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_completion_tokens: self.config.llm_max_completion_tokens,
        };
        let response = send_with_retry(Stage::Llm, &self.config, || {
            authorize(
                self.http.post(&self.config.endpoints.chat_url),
                self.config.api_key.as_ref(),
            )
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body)
        })
        .await?;
        Ok(ChatStream {
            response,
            parser: SseParser::new(),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            finished: false,
            finish_reason_seen: false,
            stall_timeout: self.config.stall_timeout,
        })
    }
}

/// An answer arriving as text deltas.
#[derive(Debug)]
pub struct ChatStream {
    response: reqwest::Response,
    parser: SseParser,
    pending: VecDeque<String>,
    scratch: Vec<SseEvent>,
    finished: bool,
    /// A chunk carried a `finish_reason`: the answer is whole even if no `[DONE]` follows.
    finish_reason_seen: bool,
    stall_timeout: std::time::Duration,
}

impl ChatStream {
    /// The next piece of text, `Ok(None)` after `[DONE]`. Dropping the stream closes the
    /// HTTP request, which is how an answer is cancelled.
    ///
    /// A body that ends cleanly without `[DONE]` is accepted when a chunk carried a
    /// `finish_reason` (some OpenAI-compatible servers stop there); one that ends before any
    /// `finish_reason` was cut off, and is [`UpstreamError::Truncated`].
    pub async fn next_delta(&mut self) -> Result<Option<String>, UpstreamError> {
        loop {
            if let Some(delta) = self.pending.pop_front() {
                return Ok(Some(delta));
            }
            if self.finished {
                return Ok(None);
            }
            let chunk = tokio::time::timeout(self.stall_timeout, self.response.chunk())
                .await
                .map_err(|_| UpstreamError::Timeout)?
                .map_err(|_| UpstreamError::Truncated)?;
            self.scratch.clear();
            match chunk {
                Some(bytes) => self
                    .parser
                    .push(&bytes, &mut self.scratch)
                    .map_err(|e| UpstreamError::Malformed(e.to_string()))?,
                None => {
                    self.parser
                        .finish(&mut self.scratch)
                        .map_err(|_| UpstreamError::Truncated)?;
                    if !self.scratch.iter().any(|e| matches!(e, SseEvent::Done)) {
                        self.read_events()?;
                        if !self.finished && !self.finish_reason_seen {
                            return Err(UpstreamError::Truncated);
                        }
                        self.finished = true;
                        continue;
                    }
                }
            }
            self.read_events()?;
        }
    }

    /// Moves the parsed events into `pending`, stopping at `[DONE]`.
    fn read_events(&mut self) -> Result<(), UpstreamError> {
        for event in self.scratch.drain(..) {
            match event {
                SseEvent::Done => {
                    self.finished = true;
                    break;
                }
                // Named events (such as keep-alives) are not completion chunks.
                SseEvent::Data {
                    event: Some(name), ..
                } if name != "message" && name != "error" => {}
                SseEvent::Data { data, .. } => {
                    let chunk = parse_chunk(&data)?;
                    self.finish_reason_seen |= chunk.finished;
                    if let Some(delta) = chunk.content {
                        self.pending.push_back(delta);
                    }
                }
            }
        }
        Ok(())
    }
}

/// What one completion chunk says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The text of `choices[0].delta.content`, if any.
    pub content: Option<String>,
    /// `choices[0].finish_reason` is set: the answer is complete.
    pub finished: bool,
}

/// Reads one SSE payload: an error object is an error; otherwise its text and whether it
/// ends the answer.
pub fn parse_chunk(data: &str) -> Result<Chunk, UpstreamError> {
    let value = super::sse::json_payload(data)?;
    let choice = value
        .get("choices")
        .and_then(serde_json::Value::as_array)
        .and_then(|choices| choices.first());
    let content = choice
        .and_then(|choice| choice.get("delta"))
        .and_then(|delta| delta.get("content"))
        .and_then(serde_json::Value::as_str)
        .filter(|content| !content.is_empty());
    let finished = choice
        .and_then(|choice| choice.get("finish_reason"))
        .is_some_and(|reason| !reason.is_null());
    Ok(Chunk {
        content: content.map(str::to_owned),
        finished,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_chunks_yield_text() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x"}"#;
        assert_eq!(
            parse_chunk(chunk).unwrap(),
            Chunk {
                content: Some("Hello".into()),
                finished: false
            }
        );
    }

    #[test]
    fn role_usage_and_finish_chunks_yield_nothing() {
        for chunk in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":25,"completion_tokens":12,"total_tokens":37}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#,
        ] {
            assert_eq!(parse_chunk(chunk).unwrap().content, None, "{chunk}");
        }
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#;
        assert!(parse_chunk(finish).unwrap().finished);
    }

    #[test]
    fn error_payloads_are_errors() {
        let error = parse_chunk(
            r#"{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&error, UpstreamError::MidStream { code: Some(c), .. } if c == "server_error")
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse_chunk("not json"),
            Err(UpstreamError::Malformed(_))
        ));
    }

    #[test]
    fn the_request_body_has_the_reference_shape() {
        let messages = [ChatMessage {
            role: Role::User,
            content: "Hi".into(),
        }];
        let body = serde_json::to_value(ChatRequest {
            model: "gpt-4.1-mini",
            messages: &messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_completion_tokens: 300,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "gpt-4.1-mini",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_completion_tokens": 300
            })
        );
    }
}
