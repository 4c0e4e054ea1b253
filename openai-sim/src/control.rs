//! The HTTP control surface under `/_sim/`: what [`Simulator`](super::Simulator)'s methods do,
//! for tests written in any language against the standalone binary (`--control`).
//!
//! Served only while [`SimConfig::control`] is on; otherwise every `/_sim/` path answers like
//! any unknown path (404 "Invalid URL"). No authentication: it is a loopback test tool.
//!
//! | Method and path | Body / query | Answer |
//! |---|---|---|
//! | `GET /_sim/config` | | the configuration (JSON form of [`SimConfig`], plus `api_key_set`) |
//! | `PATCH` or `POST /_sim/config` | a partial configuration, merged in | the new configuration |
//! | `POST /_sim/transcripts` | `{"text": "..."}` or `{"texts": [...]}` | `{"queued": n}` |
//! | `POST /_sim/replies` | `{"text": "..."}` or `{"texts": [...]}` | `{"queued": n}` |
//! | `POST /_sim/faults` | `{"stage": "chat", "fault": {...}}` or `{"stage": ..., "preset": "rate_limited"}` | `{"queued": n, "fault": {...}}` |
//! | `GET /_sim/faults` | | the faults still queued, per stage |
//! | `GET /_sim/records` | `?audio=false` leaves out the audio bytes | the [`Records`](super::Records), plus `now_ms`, the records' clock when answered |
//! | `POST /_sim/reset` | | scripts, faults and records emptied, starting configuration back |
//!
//! Errors use OpenAI's envelope: 400 `invalid_request_error` naming what is wrong.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::config::SimConfig;
use super::error::ApiError;
use super::fault::{Fault, SimStage};
use super::state::Shared;

/// Record fields that hold audio bytes, left out with `?audio=false`.
const AUDIO_FIELDS: &[&str] = &["audio", "synthesized", "sent", "file"];

/// The surface's routes, each behind the `control` switch.
pub(crate) fn router(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_sim/config",
            get(get_config).patch(patch_config).post(patch_config),
        )
        .route("/_sim/transcripts", post(post_transcripts))
        .route("/_sim/replies", post(post_replies))
        .route("/_sim/faults", get(get_faults).post(post_faults))
        .route("/_sim/records", get(get_records))
        .route("/_sim/reset", post(post_reset))
        .route_layer(middleware::from_fn_with_state(Arc::clone(shared), gate))
}

/// Lets a request through only while the surface is on.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if shared.config().control {
        next.run(request).await
    } else {
        super::invalid_url(request).await
    }
}

fn json_body(raw: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(raw).map_err(|_| ApiError::invalid_json())
}

fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
    ApiError::invalid_request(message, param, None)
}

/// The configuration as the surface shows it: the key itself never leaves.
fn config_json(config: &SimConfig) -> Value {
    let mut json = serde_json::to_value(config).unwrap_or_default();
    json["api_key_set"] = json!(config.api_key.is_some());
    json
}

async fn get_config(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(config_json(&shared.config())).into_response()
}

/// Merges a partial configuration into the current one (objects such as `sse_style` merge
/// key by key); unknown fields or wrong types change nothing and answer 400.
async fn patch_config(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let patch = match json_body(&raw) {
        Ok(Value::Object(patch)) => patch,
        Ok(_) => return invalid("The configuration must be a JSON object.", None).into_response(),
        Err(error) => return error.into_response(),
    };
    let current = shared.config();
    let mut merged = serde_json::to_value(&current).unwrap_or_default();
    merge(&mut merged, &Value::Object(patch.clone()));
    let mut next: SimConfig = match serde_json::from_value(merged) {
        Ok(next) => next,
        Err(error) => {
            return invalid(format!("Invalid configuration: {error}."), None).into_response();
        }
    };
    if !patch.contains_key("api_key") {
        next.api_key = current.api_key;
    }
    let shown = config_json(&next);
    shared.update_config(|config| *config = next);
    axum::Json(shown).into_response()
}

/// JSON merge: objects merge recursively, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value);
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// `{"text": "..."}` or `{"texts": ["...", ...]}`.
fn texts(raw: &Bytes) -> Result<Vec<String>, ApiError> {
    let body = json_body(raw)?;
    match (body.get("text"), body.get("texts")) {
        (Some(Value::String(text)), None) => Ok(vec![text.clone()]),
        (None, Some(Value::Array(texts))) if !texts.is_empty() => texts
            .iter()
            .map(|text| text.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("'texts' must be an array of strings.", Some("texts"))),
        _ => Err(invalid(
            "Send {\"text\": \"...\"} or {\"texts\": [\"...\", ...]}.",
            Some("text"),
        )),
    }
}

async fn post_transcripts(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match texts(&raw) {
        Ok(texts) => {
            let queued = texts
                .into_iter()
                .fold(0, |_, text| shared.push_transcript(text));
            axum::Json(json!({ "queued": queued })).into_response()
        }
        Err(error) => error.into_response(),
    }
}

async fn post_replies(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match texts(&raw) {
        Ok(texts) => {
            let queued = texts.into_iter().fold(0, |_, text| shared.push_reply(text));
            axum::Json(json!({ "queued": queued })).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The body of `POST /_sim/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    stage: SimStage,
    #[serde(default)]
    fault: Option<Fault>,
    #[serde(default)]
    preset: Option<String>,
}

async fn post_faults(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let body = match json_body(&raw) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let request: FaultRequest = match serde_json::from_value(body) {
        Ok(request) => request,
        Err(error) => {
            return invalid(format!("Invalid fault request: {error}."), None).into_response();
        }
    };
    let fault = match (request.fault, request.preset.as_deref()) {
        (Some(fault), None) => fault,
        (None, Some(name)) => match Fault::preset(name) {
            Some(fault) => fault,
            None => {
                return ApiError::invalid_value("preset", name, Fault::PRESETS).into_response();
            }
        },
        _ => {
            return invalid("Send exactly one of 'fault' and 'preset'.", Some("fault"))
                .into_response();
        }
    };
    let shown = serde_json::to_value(&fault).unwrap_or_default();
    let queued = shared.inject(request.stage, fault);
    axum::Json(json!({ "queued": queued, "fault": shown })).into_response()
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    let pending = |stage| shared.pending_faults(stage);
    axum::Json(json!({
        "realtime": pending(SimStage::Realtime),
        "chat": pending(SimStage::Chat),
        "speech": pending(SimStage::Speech),
        "transcription": pending(SimStage::Transcription),
    }))
    .into_response()
}

async fn get_records(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let without_audio = query
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "audio=false" || pair == "audio=0");
    let mut records = serde_json::to_value(shared.records()).unwrap_or_default();
    // The clock of `received_ms`/`ended_ms`, for a client in another process.
    records["now_ms"] = json!(shared.now_ms());
    if without_audio {
        for list in ["realtime", "speech", "transcription"] {
            for record in records[list].as_array_mut().into_iter().flatten() {
                if let Some(record) = record.as_object_mut() {
                    strip_audio(record);
                }
            }
        }
    }
    axum::Json(records).into_response()
}

fn strip_audio(record: &mut Map<String, Value>) {
    for field in AUDIO_FIELDS {
        record.remove(*field);
    }
}

async fn post_reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset();
    axum::Json(json!({ "reset": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_recursive_for_objects_only() {
        let mut target = json!({"a": 1, "style": {"x": true, "y": false}, "list": [1]});
        merge(
            &mut target,
            &json!({"style": {"y": true}, "list": [2], "b": null}),
        );
        assert_eq!(
            target,
            json!({"a": 1, "style": {"x": true, "y": true}, "list": [2], "b": null})
        );
    }
}
