//! What the two HTTP APIs (chat, speech) share: the request prelude (record the body, check
//! the bearer token, parse JSON, in that order), the response headers the service sends
//! (docs/openai-wire.md §4.2), rejections, fault answers, and waits that end early on
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::body::{StreamEnd, Tracker};
use super::config::ErrorBody;
use super::error::ApiError;
use super::fault::Fault;
use super::record::{ChatRecord, Outcome, SpeechRecord, TranscriptionRecord};
use super::state::{Shared, header_text};
use super::text;

/// `openai-version` header value the service sends (§4.2).
const OPENAI_VERSION: &str = "2020-10-01";
/// Advertised per-minute request limit in the `x-ratelimit-*` headers (values are cosmetic).
const RATE_LIMIT_REQUESTS: u32 = 5_000;
/// Advertised per-minute token limit in the `x-ratelimit-*` headers.
const RATE_LIMIT_TOKENS: u32 = 4_000_000;

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive, as OpenAI
/// takes it).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Which HTTP API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Chat,
    Speech,
    Transcription,
}

/// Records an incoming request, then authenticates it and parses its JSON body.
///
/// On failure the returned response is the rejection (already recorded).
pub(crate) fn accept(
    shared: &Arc<Shared>,
    api: Api,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<(Value, Tracker), Box<Response>> {
    let parsed: Option<Value> = serde_json::from_slice(raw).ok();
    let recorded = match &parsed {
        _ if !shared.recording() => Value::Null,
        Some(body) => body.clone(),
        None => Value::String(String::from_utf8_lossy(raw).into_owned()),
    };
    let authorization = header_text(headers, "authorization");
    let received_ms = shared.now_ms();
    let at = match api {
        Api::Chat => shared.add_chat(ChatRecord::new(authorization, recorded, received_ms)),
        Api::Speech => shared.add_speech(SpeechRecord::new(authorization, recorded, received_ms)),
        Api::Transcription => shared.add_transcription(TranscriptionRecord::new(
            authorization,
            recorded,
            received_ms,
        )),
    };
    let tracker = Tracker::new(Arc::clone(shared), at);
    if let Err(error) = shared.authorize(bearer(headers)) {
        return Err(Box::new(reject(tracker, error)));
    }
    match parsed {
        Some(body) => Ok((body, tracker)),
        None => Err(Box::new(reject(tracker, ApiError::invalid_json()))),
    }
}

/// Answers with an error and records the request as rejected.
pub(crate) fn reject(mut tracker: Tracker, error: ApiError) -> Response {
    tracker.shared().update_http(tracker.at(), |record| {
        record.set_status(error.status.as_u16())
    });
    tracker.finish(Outcome::Rejected);
    let shape = tracker.shared().config().error_body;
    shaped(error, shape)
}

/// The error's response in the configured body shape (`SimConfig::error_body`).
fn shaped(error: ApiError, shape: ErrorBody) -> Response {
    let body = match shape {
        ErrorBody::OpenAi => return error.into_response(),
        ErrorBody::Detail => serde_json::json!({ "detail": error.message }),
        ErrorBody::PlainString => serde_json::json!({ "error": error.message }),
    };
    (error.status, axum::Json(body)).into_response()
}

/// Records the fault a request took; if it is an HTTP fault, answers with its error.
pub(crate) fn apply_http_fault(tracker: &mut Tracker, fault: &Fault) -> Option<Response> {
    tracker
        .shared()
        .update_http(tracker.at(), |record| record.set_fault(fault.clone()));
    let shape = tracker.shared().config().error_body;
    let response = match fault.http_error() {
        Some(error) if shape != ErrorBody::OpenAi => shaped(error, shape),
        _ => fault_response(fault)?,
    };
    let status = response.status().as_u16();
    tracker
        .shared()
        .update_http(tracker.at(), |record| record.set_status(status));
    tracker.finish(Outcome::Failed);
    Some(response)
}

/// The whole answer of an HTTP-level fault: an OpenAI error (with rate-limit headers on a
/// 429 `rate_limit_exceeded`), or the raw body of a [`Fault::RawHttp`]; `None` for faults
/// that act on a stream.
pub(crate) fn fault_response(fault: &Fault) -> Option<Response> {
    if let Fault::RawHttp {
        status,
        content_type,
        body,
    } = fault
    {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = (status, body.clone()).into_response();
        let headers = response.headers_mut();
        match content_type.as_deref().map(HeaderValue::from_str) {
            Some(Ok(value)) => {
                headers.insert(header::CONTENT_TYPE, value);
            }
            _ => {
                headers.remove(header::CONTENT_TYPE);
            }
        }
        return Some(response);
    }
    let mut response = fault.http_error()?.into_response();
    insert_rate_limit_headers(response.headers_mut(), fault);
    Some(response)
}

/// Waits `delay` before the response starts; a dropped client ends the request (the
/// tracker's drop guard records it), a shutdown answers 503.
pub(crate) async fn wait_before_headers(
    tracker: &mut Tracker,
    delay: Duration,
) -> Result<(), Response> {
    let shutdown = tracker.shared().shutdown.clone();
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = shutdown.cancelled() => Err(shutting_down(tracker)),
    }
}

/// Holds a request without answering until the client leaves or the simulator stops.
pub(crate) async fn stall_before_headers(mut tracker: Tracker) -> Response {
    tracker.shared().shutdown.clone().cancelled().await;
    shutting_down(&mut tracker)
}

fn shutting_down(tracker: &mut Tracker) -> Response {
    let error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "The simulator is shutting down.",
    );
    tracker
        .shared()
        .update_http(tracker.at(), |record| record.set_status(503));
    tracker.finish(Outcome::Failed);
    error.into_response()
}

/// Headers every successful response carries: request id, processing time, version and
/// rate-limit headers.
pub(crate) fn openai_headers(processing: Duration) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", text::header_value(&text::request_id()));
    let processing_ms = u64::try_from(processing.as_millis()).unwrap_or(u64::MAX);
    headers.insert("openai-processing-ms", HeaderValue::from(processing_ms));
    headers.insert("openai-version", HeaderValue::from_static(OPENAI_VERSION));
    headers.insert(
        "x-ratelimit-limit-requests",
        HeaderValue::from(RATE_LIMIT_REQUESTS),
    );
    headers.insert(
        "x-ratelimit-limit-tokens",
        HeaderValue::from(RATE_LIMIT_TOKENS),
    );
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from(RATE_LIMIT_REQUESTS - 1),
    );
    headers.insert(
        "x-ratelimit-remaining-tokens",
        HeaderValue::from(RATE_LIMIT_TOKENS - 1_000),
    );
    headers.insert(
        "x-ratelimit-reset-requests",
        HeaderValue::from_static("12ms"),
    );
    headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("15ms"));
    headers
}

/// Rate-limit headers of a 429 `rate_limit_exceeded`: nothing left until the reset. Without a
/// retry hint there is no reset header either, so a client must choose its own backoff.
fn insert_rate_limit_headers(headers: &mut HeaderMap, fault: &Fault) {
    if let Fault::Http {
        status: 429,
        code: Some(code),
        retry_after_ms,
        ..
    } = fault
        && code == "rate_limit_exceeded"
    {
        headers.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from(RATE_LIMIT_REQUESTS),
        );
        headers.insert("x-ratelimit-remaining-requests", HeaderValue::from(0));
        if let Some(ms) = retry_after_ms {
            let reset = format!("{ms}ms");
            headers.insert("x-ratelimit-reset-requests", text::header_value(&reset));
        }
    }
}

/// Logs a producer that stopped before the end of its stream.
pub(crate) fn log_stream_end(api: Api, end: StreamEnd) {
    tracing::debug!(?api, %end, "simulated stream ended early");
}
