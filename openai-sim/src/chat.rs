//! `POST /v1/chat/completions` (docs/openai-wire.md §2).
//!
//! Validates the body the way the service words its 400s (`model`, a non-empty `messages`
//! array of `{role, content}`, `stream`, `stream_options` only with `stream: true`, numeric
//! ranges); a field the request schema does not have is "Unrecognized request argument
//! supplied: X", and a model nobody serves a 404 `model_not_found` (see `models`). The reply
//! is the next scripted one, else `default_reply`, else an echo of the last user message in two
//! sentences.
//!
//! `stream: true` answers `text/event-stream` (§2.2): after `llm_first_token_ms` the headers
//! and a first chunk with `role: "assistant"` and empty content, then one chunk per word-ish
//! token at `llm_tokens_per_second`, a chunk with `finish_reason` (`stop`, or `length` when
//! `max_completion_tokens` / `max_tokens` cut the reply), with `stream_options.include_usage`
//! a `choices: []` usage chunk, and `data: [DONE]`. `stream: false` answers one
//! `chat.completion` JSON once the whole reply is "generated".
//!
//! Faults: an HTTP error body (§2.3); `MidStreamError` sends
//! `data: {"error":{..."type":"server_error"...}}` after N events and ends without `[DONE]`;
//! `Drop` cuts the connection after N events; `Stall` stops after N events (N = 0: before the
//! headers). Non-streaming requests are cut (`Drop`, `MidStreamError`) or held (`Stall`)
//! right after the headers. With quirks: `system_fingerprint`, `service_tier`, `obfuscation`,
//! odd token boundaries, and some SSE events split across two body chunks (even inside a
//! multi-byte character), so clients must buffer. [`SseStyle`] adds keep-alive comments,
//! `event:` lines and CRLF line endings.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::body::{self, BodySender, StreamEnd};
use super::config::{SseStyle, paced};
use super::error::ApiError;
use super::fault::{Fault, SimStage, Taker};
use super::http::{self, Api};
use super::models::{self, ModelKind};
use super::params;
use super::record::Outcome;
use super::state::Shared;
use super::text;

/// Message roles the API accepts.
const ROLES: &[&str] = &[
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
/// Fields of the request schema (`CreateChatCompletionRequest`); anything else is refused.
const FIELDS: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];
/// Token overhead per message in `prompt_tokens` (role and separators).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Quirk: one SSE event in this many is split across two body chunks.
const SPLIT_EVENT_ONE_IN: u32 = 4;
/// Pause between the two halves of a split event, so they leave in separate TCP segments.
const SPLIT_EVENT_PAUSE: Duration = Duration::from_millis(2);

/// A validated request.
#[derive(Debug)]
struct ChatRequest {
    model: String,
    stream: bool,
    include_usage: bool,
    include_obfuscation: bool,
    max_tokens: Option<usize>,
    last_user_message: Option<String>,
    prompt_tokens: u64,
}

/// Handles one request; see the module docs.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let (body, mut tracker) = match http::accept(&shared, Api::Chat, &headers, &raw) {
        Ok(accepted) => accepted,
        Err(rejection) => return *rejection,
    };
    let config = shared.config();
    let request = match ChatRequest::parse(&body).and_then(|request| {
        models::check(&config, &request.model, ModelKind::Chat, "model").map(|()| request)
    }) {
        Ok(request) => request,
        Err(error) => return http::reject(tracker, error),
    };
    let fault = shared.take_fault(SimStage::Chat, Taker::Request);
    if let Some(fault) = &fault
        && let Some(response) = http::apply_http_fault(&mut tracker, fault)
    {
        return response;
    }
    let reply = shared.next_reply(request.last_user_message.as_deref());
    shared.update_chat(tracker.at(), |record| record.reply = Some(reply.clone()));
    let mut rng = StdRng::seed_from_u64(shared.next_seed());
    let mut tokens = text::tokens(&reply);
    if config.quirks {
        tokens = text::split_oddly(tokens, &mut rng);
    }
    let finish_reason = match request.max_tokens {
        Some(max) if tokens.len() > max => {
            tokens.truncate(max);
            "length"
        }
        _ => "stop",
    };
    let tokens: Vec<String> = tokens.into_iter().map(str::to_owned).collect();
    let first_token = Duration::from_millis(config.llm_first_token_ms);
    let generation = paced(
        tokens.len().saturating_sub(1) as f64,
        config.llm_tokens_per_second,
    );
    let before_headers = if request.stream {
        first_token
    } else {
        first_token + generation
    };
    if let Some(Fault::Stall { after: 0 }) = fault {
        return http::stall_before_headers(tracker).await;
    }
    if let Err(response) = http::wait_before_headers(&mut tracker, before_headers).await {
        return response;
    }
    let meta = Meta {
        id: text::completion_id(),
        created: crate::text::unix_now_s(),
        model: request.model.clone(),
        fingerprint: config.quirks.then(text::fingerprint),
        include_usage: request.include_usage,
        obfuscate: config.quirks && request.include_obfuscation,
        sse: config.sse_style,
        done_marker: config.chat_done_marker,
    };
    let usage = usage(request.prompt_tokens, tokens.len());
    let mut headers = http::openai_headers(before_headers);
    let (sender, body) = body::channel(tracker);
    if request.stream {
        let events = meta.events(&tokens, finish_reason, usage);
        let plan = StreamPlan {
            api: Api::Chat,
            events,
            token_interval: paced(1.0, config.llm_tokens_per_second),
            fault,
            split_events: config.quirks,
            sse: config.sse_style,
            rng,
        };
        tokio::spawn(stream(sender, plan));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    } else {
        let completion = meta.completion(&tokens.concat(), finish_reason, usage);
        tokio::spawn(respond_whole(sender, completion.to_string(), fault));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    (headers, Body::from_stream(body)).into_response()
}

impl ChatRequest {
    fn parse(body: &Value) -> Result<Self, ApiError> {
        let Some(fields) = body.as_object() else {
            return Err(ApiError::invalid_type("body", "an object", body));
        };
        let unknown: Vec<&str> = fields
            .keys()
            .map(String::as_str)
            .filter(|key| !FIELDS.contains(key))
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::unrecognized_arguments(&unknown));
        }
        let model = match fields.get("model") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_request(
                    "you must provide a model parameter",
                    None,
                    None,
                ));
            }
            Some(Value::String(model)) => model.clone(),
            Some(other) => return Err(ApiError::invalid_type("model", "a string", other)),
        };
        let messages = params::required_array(fields.get("messages"), "messages")?;
        let mut prompt_tokens = 0;
        let mut last_user_message = None;
        for (index, message) in messages.iter().enumerate() {
            let (role, content) = validate_message(message, index)?;
            prompt_tokens += TOKENS_PER_MESSAGE + text::estimate_tokens(&content);
            if role == "user" {
                last_user_message = Some(content);
            }
        }
        let stream = params::optional_bool(fields.get("stream"), "stream")?.unwrap_or(false);
        let mut include_usage = false;
        let mut include_obfuscation = true;
        match fields.get("stream_options") {
            None | Some(Value::Null) => {}
            Some(_) if !stream => {
                return Err(ApiError::invalid_request(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    Some("stream_options"),
                    Some("invalid_value"),
                ));
            }
            Some(Value::Object(options)) => {
                include_usage =
                    params::optional_bool(options.get("include_usage"), "include_usage")?
                        .unwrap_or(false);
                include_obfuscation = params::optional_bool(
                    options.get("include_obfuscation"),
                    "include_obfuscation",
                )?
                .unwrap_or(true);
            }
            Some(other) => {
                return Err(ApiError::invalid_type("stream_options", "an object", other));
            }
        }
        let max_tokens = match optional_count(fields, "max_completion_tokens")? {
            Some(max) => Some(max),
            None => optional_count(fields, "max_tokens")?,
        };
        optional_number(fields, "temperature", 0.0, 2.0)?;
        optional_number(fields, "top_p", 0.0, 1.0)?;
        if let Some(n) = optional_count(fields, "n")?
            && n > 1
        {
            return Err(ApiError::unsupported_by_simulator(
                "n",
                "The OpenAI simulator supports only n = 1.",
            ));
        }
        Ok(Self {
            model,
            stream,
            include_usage,
            include_obfuscation,
            max_tokens,
            last_user_message,
            prompt_tokens,
        })
    }
}

/// Checks one message; returns its role and its text content.
fn validate_message(message: &Value, index: usize) -> Result<(String, String), ApiError> {
    let path = format!("messages[{index}]");
    let fields = message
        .as_object()
        .ok_or_else(|| ApiError::invalid_type(&path, "an object", message))?;
    let role = params::required_choice(fields.get("role"), &format!("{path}.role"), ROLES)?;
    let content = match fields.get("content") {
        Some(Value::String(content)) => content.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        None | Some(Value::Null) if role == "assistant" || role == "function" => String::new(),
        None | Some(Value::Null) => return Err(ApiError::missing(&format!("{path}.content"))),
        Some(other) => {
            return Err(ApiError::invalid_type(
                &format!("{path}.content"),
                "one of a string or array of objects",
                other,
            ));
        }
    };
    if role == "tool" && !fields.get("tool_call_id").is_some_and(Value::is_string) {
        return Err(ApiError::missing(&format!("{path}.tool_call_id")));
    }
    Ok((role.to_owned(), content))
}

fn optional_count(fields: &Map<String, Value>, key: &str) -> Result<Option<usize>, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let count = params::integer_in(value, key, "an integer", (1, u64::MAX))?;
            usize::try_from(count)
                .map(Some)
                .map_err(|_| ApiError::invalid_type(key, "an integer", value))
        }
    }
}

fn optional_number(
    fields: &Map<String, Value>,
    key: &str,
    min: f64,
    max: f64,
) -> Result<(), ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(value) => params::number_in(value, key, "a number", (min, max)).map(drop),
    }
}

/// The `usage` object.
fn usage(prompt_tokens: u64, completion_tokens: usize) -> Value {
    let completion_tokens = completion_tokens as u64;
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": { "cached_tokens": 0, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// Fields every chunk of one completion shares.
#[derive(Debug)]
struct Meta {
    id: String,
    created: u64,
    model: String,
    fingerprint: Option<String>,
    include_usage: bool,
    obfuscate: bool,
    sse: SseStyle,
    /// End with `data: [DONE]` ([`SimConfig::chat_done_marker`](super::SimConfig)).
    done_marker: bool,
}

impl Meta {
    /// `id`, `object`, `created`, `model` and (quirk) `service_tier`, `system_fingerprint`,
    /// in the service's key order.
    fn head(&self, object: &str) -> Value {
        let mut head = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
        });
        if let Some(fingerprint) = &self.fingerprint {
            head["service_tier"] = json!("default");
            head["system_fingerprint"] = json!(fingerprint);
        }
        head
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> String {
        let mut chunk = self.head("chat.completion.chunk");
        chunk["choices"] = choices;
        if self.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        if self.obfuscate {
            chunk["obfuscation"] = json!(text::obfuscation());
        }
        self.sse.frame(None, &chunk.to_string())
    }

    fn choice(delta: Value, finish_reason: Option<&str>) -> Value {
        json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }])
    }

    /// Every SSE event of the stream, in order, ready to send.
    fn events(&self, tokens: &[String], finish_reason: &str, usage: Value) -> Vec<Event> {
        let mut events = vec![Event::now(self.chunk(
            Self::choice(
                json!({ "role": "assistant", "content": "", "refusal": null }),
                None,
            ),
            None,
        ))];
        for (index, token) in tokens.iter().enumerate() {
            let chunk = self.chunk(Self::choice(json!({ "content": token }), None), None);
            events.push(Event {
                text: chunk,
                paced: index > 0,
            });
        }
        events.push(Event::now(
            self.chunk(Self::choice(json!({}), Some(finish_reason)), None),
        ));
        if self.include_usage {
            events.push(Event::now(self.chunk(json!([]), Some(usage))));
        }
        if self.done_marker {
            events.push(Event::now(self.sse.frame(None, "[DONE]")));
        }
        events
    }

    /// The non-streaming `chat.completion`.
    fn completion(&self, content: &str, finish_reason: &str, usage: Value) -> Value {
        let mut completion = self.head("chat.completion");
        completion["choices"] = json!([{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null, "annotations": [] },
            "logprobs": null,
            "finish_reason": finish_reason,
        }]);
        completion["usage"] = usage;
        completion
    }
}

/// One SSE event; `paced` events wait one token interval after the previous one.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) text: String,
    pub(crate) paced: bool,
}

impl Event {
    pub(crate) fn now(text: String) -> Self {
        Self { text, paced: false }
    }
}

/// An SSE stream to send (Chat Completions, and streamed file transcription).
#[derive(Debug)]
pub(crate) struct StreamPlan {
    pub(crate) api: Api,
    pub(crate) events: Vec<Event>,
    pub(crate) token_interval: Duration,
    pub(crate) fault: Option<Fault>,
    pub(crate) split_events: bool,
    pub(crate) sse: SseStyle,
    pub(crate) rng: StdRng,
}

/// Sends the SSE events at their times, applying the fault.
pub(crate) async fn stream(sender: BodySender, mut plan: StreamPlan) {
    let mut next_at = Instant::now();
    for (sent, event) in plan.events.iter().enumerate() {
        match plan.fault {
            Some(Fault::MidStreamError { after }) if sent == after => {
                let error = Fault::mid_stream_error().body();
                let frame = plan.sse.frame(Some("error"), &error.to_string());
                if sender.send(Bytes::from(frame), None).await.is_ok() {
                    sender.finish(Outcome::Failed).await;
                }
                return;
            }
            Some(Fault::Drop { after }) if sent == after => return sender.abort().await,
            Some(Fault::Stall { after }) if sent == after => return sender.stall().await,
            _ => {}
        }
        if event.paced {
            next_at += plan.token_interval;
            if let Err(end) = sender.sleep_until(next_at).await {
                return http::log_stream_end(plan.api, end);
            }
        }
        if let Err(end) = send_event(&sender, &event.text, plan.split_events, &mut plan.rng).await {
            return http::log_stream_end(plan.api, end);
        }
    }
    sender.finish(Outcome::Completed).await;
}

/// Sends one SSE event, with the quirk sometimes in two pieces split at any byte.
async fn send_event(
    sender: &BodySender,
    event: &str,
    split: bool,
    rng: &mut StdRng,
) -> Result<(), StreamEnd> {
    let bytes = Bytes::copy_from_slice(event.as_bytes());
    if split && bytes.len() > 2 && rng.random_ratio(1, SPLIT_EVENT_ONE_IN) {
        let cut = rng.random_range(1..bytes.len() - 1);
        sender.send(bytes.slice(..cut), None).await?;
        sender
            .sleep_until(Instant::now() + SPLIT_EVENT_PAUSE)
            .await?;
        sender.send(bytes.slice(cut..), None).await
    } else {
        sender.send(bytes, None).await
    }
}

/// Sends a whole non-streaming response, or cuts/holds it on a fault.
pub(crate) async fn respond_whole(sender: BodySender, json: String, fault: Option<Fault>) {
    match fault {
        Some(Fault::MidStreamError { .. } | Fault::Drop { .. }) => sender.abort().await,
        Some(Fault::Stall { .. }) => sender.stall().await,
        _ => {
            if sender.send(Bytes::from(json), None).await.is_ok() {
                sender.finish(Outcome::Completed).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_requests_parse() {
        let request = ChatRequest::parse(&json!({
            "model": "gpt-4.1-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi there"}]},
                {"role": "assistant", "content": null, "tool_calls": []},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_completion_tokens": 5,
            "user": "u1",
            "seed": 7,
        }))
        .expect("valid");
        assert!(request.stream && request.include_usage);
        assert_eq!(request.last_user_message.as_deref(), Some("Hi there"));
        assert_eq!(request.max_tokens, Some(5));
    }

    #[test]
    fn invalid_requests_name_the_parameter() {
        let cases = [
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                None,
            ),
            (json!({"model": "m", "messages": []}), Some("messages")),
            (json!({"model": "m"}), Some("messages")),
            (
                json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                Some("messages[0].role"),
            ),
            (
                json!({"model": "m", "messages": [{"role": "user"}]}),
                Some("messages[0].content"),
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {}}),
                Some("stream_options"),
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                Some("temperature"),
            ),
        ];
        for (body, param) in cases {
            let error = ChatRequest::parse(&body).expect_err("invalid");
            assert_eq!(error.param.as_deref(), param, "{body}");
            assert_eq!(error.status.as_u16(), 400);
        }
    }

    #[test]
    fn unknown_fields_are_unrecognized_arguments() {
        let error = ChatRequest::parse(&json!({
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": "x"}],
            "some_future_field": 1,
        }))
        .expect_err("unknown field");
        assert_eq!(
            error.message,
            "Unrecognized request argument supplied: some_future_field"
        );
        assert!(error.param.is_none() && error.code.is_none());
    }

    #[test]
    fn events_end_with_usage_and_done() {
        let meta = Meta {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "m".into(),
            fingerprint: None,
            include_usage: true,
            obfuscate: false,
            sse: SseStyle::default(),
            done_marker: true,
        };
        let events = meta.events(&["Hi".into(), ".".into()], "stop", usage(3, 2));
        assert_eq!(events.len(), 6);
        assert!(events[0].text.contains(r#""role":"assistant""#));
        assert!(events[0].text.contains(r#""usage":null"#));
        assert!(events[4].text.contains(r#""choices":[]"#));
        assert_eq!(events[5].text, "data: [DONE]\n\n");
    }
}
