//! The models the simulator serves, the checks each API makes against them, and
//! `GET /v1/models` / `GET /v1/models/{id}` in OpenAI's list shape.
//!
//! A request for a model id nobody serves gets the service's 404 `model_not_found` ("The
//! model `X` does not exist or you do not have access to it.", docs/openai-wire.md §4.1); a
//! model of another kind gets the wording the service uses for that mix-up (Chat: "This is
//! not a chat model ..."; elsewhere an `invalid_value` listing the supported models).
//! [`SimConfig::extra_models`](super::SimConfig::extra_models) are accepted everywhere.
//!
//! The list holds the default models of the proxy and of common clients: the transcription
//! models of §1.3 (every one but `-diarize` works in Realtime), the usual chat models, the
//! speech models of §3.1 and the Realtime conversation models. `created` dates are the
//! models' release dates (cosmetic).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::config::SimConfig;
use super::error::ApiError;
use super::http::{bearer, openai_headers};
use super::state::Shared;
use ModelKind::{Chat, Realtime, Speech, Transcription};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModelKind {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `audio.input.transcription.model` of a Realtime transcription session.
    Transcription,
    /// `POST /v1/audio/speech`.
    Speech,
    /// `?model=` of a Realtime conversation session.
    Realtime,
}

/// One served model.
#[derive(Debug)]
struct Model {
    id: &'static str,
    kind: ModelKind,
    /// Unix seconds.
    created: u64,
    owned_by: &'static str,
}

const fn model(id: &'static str, kind: ModelKind, created: u64, owned_by: &'static str) -> Model {
    Model {
        id,
        kind,
        created,
        owned_by,
    }
}

/// Transcription model the Realtime API refuses (§1.3: "not supported in Realtime").
const NOT_REALTIME: &[&str] = &["gpt-4o-transcribe-diarize"];
/// `owned_by` of [`SimConfig::extra_models`], as for a fine-tune.
const EXTRA_OWNER: &str = "user";

/// Every built-in model, grouped by kind.
const MODELS: &[Model] = &[
    // Chat
    model("gpt-4.1", Chat, 1_744_316_542, "system"),
    model("gpt-4.1-2025-04-14", Chat, 1_744_315_746, "system"),
    model("gpt-4.1-mini", Chat, 1_744_318_173, "system"),
    model("gpt-4.1-mini-2025-04-14", Chat, 1_744_317_547, "system"),
    model("gpt-4.1-nano", Chat, 1_744_321_707, "system"),
    model("gpt-4.1-nano-2025-04-14", Chat, 1_744_321_025, "system"),
    model("gpt-4o", Chat, 1_715_367_049, "system"),
    model("gpt-4o-2024-08-06", Chat, 1_722_814_719, "system"),
    model("gpt-4o-2024-11-20", Chat, 1_739_331_543, "system"),
    model("gpt-4o-mini", Chat, 1_721_172_741, "system"),
    model("gpt-4o-mini-2024-07-18", Chat, 1_721_172_717, "system"),
    model("gpt-4-turbo", Chat, 1_712_361_441, "system"),
    model("gpt-4", Chat, 1_687_882_411, "openai"),
    model("gpt-3.5-turbo", Chat, 1_677_610_602, "openai"),
    model("gpt-5", Chat, 1_754_425_777, "system"),
    model("gpt-5-mini", Chat, 1_754_425_928, "system"),
    model("gpt-5-nano", Chat, 1_754_426_384, "system"),
    model("o3", Chat, 1_744_225_308, "system"),
    model("o3-mini", Chat, 1_737_146_383, "system"),
    model("o4-mini", Chat, 1_744_225_351, "system"),
    // Transcription
    model("whisper-1", Transcription, 1_677_532_384, "openai-internal"),
    model("gpt-4o-transcribe", Transcription, 1_742_068_463, "system"),
    model(
        "gpt-4o-mini-transcribe",
        Transcription,
        1_742_068_596,
        "system",
    ),
    model(
        "gpt-4o-mini-transcribe-2025-12-15",
        Transcription,
        1_765_756_800,
        "system",
    ),
    model(
        "gpt-4o-transcribe-diarize",
        Transcription,
        1_760_400_000,
        "system",
    ),
    model(
        "gpt-realtime-whisper",
        Transcription,
        1_778_112_000,
        "system",
    ),
    model("gpt-transcribe", Transcription, 1_785_196_800, "system"),
    model(
        "gpt-live-transcribe",
        Transcription,
        1_785_196_800,
        "system",
    ),
    // Speech
    model("gpt-4o-mini-tts", Speech, 1_742_403_959, "system"),
    model(
        "gpt-4o-mini-tts-2025-12-15",
        Speech,
        1_765_756_800,
        "system",
    ),
    model("tts-1", Speech, 1_681_940_951, "openai-internal"),
    model("tts-1-hd", Speech, 1_699_046_015, "system"),
    // Realtime conversation
    model("gpt-realtime", Realtime, 1_756_339_249, "system"),
    model("gpt-realtime-2025-08-28", Realtime, 1_756_339_249, "system"),
    model("gpt-realtime-mini", Realtime, 1_759_708_800, "system"),
    model("gpt-realtime-1.5", Realtime, 1_770_000_000, "system"),
    model("gpt-realtime-2", Realtime, 1_778_112_000, "system"),
    model("gpt-realtime-2.1", Realtime, 1_785_196_800, "system"),
    model("gpt-realtime-2.1-mini", Realtime, 1_785_196_800, "system"),
];

/// The ids of the built-in models of one kind (for tests and docs).
pub(crate) fn ids(kind: ModelKind) -> impl Iterator<Item = &'static str> {
    MODELS
        .iter()
        .filter(move |model| model.kind == kind)
        .map(|model| model.id)
}

/// Whether `id` is served, as what.
enum Served {
    Builtin(ModelKind),
    Extra,
}

fn served(config: &SimConfig, id: &str) -> Option<Served> {
    if let Some(model) = MODELS.iter().find(|model| model.id == id) {
        Some(Served::Builtin(model.kind))
    } else if config.extra_models.iter().any(|extra| extra == id) {
        Some(Served::Extra)
    } else {
        None
    }
}

/// Checks that `id` can be used as a model of `kind`. `param` names the field for errors
/// about a model of another kind.
pub(crate) fn check(
    config: &SimConfig,
    id: &str,
    kind: ModelKind,
    param: &str,
) -> Result<(), ApiError> {
    match served(config, id) {
        None => Err(ApiError::model_not_found(id)),
        Some(Served::Extra) => Ok(()),
        Some(Served::Builtin(found)) if found == kind => {
            if kind == Transcription && NOT_REALTIME.contains(&id) {
                Err(not_in_realtime(id, param))
            } else {
                Ok(())
            }
        }
        Some(Served::Builtin(_)) if kind == Chat => Err(ApiError::not_a_chat_model()),
        Some(Served::Builtin(Transcription)) if kind == Realtime => Err(not_in_realtime(id, param)),
        Some(Served::Builtin(_)) => {
            let supported: Vec<&str> = ids(kind)
                .filter(|id| kind != Transcription || !NOT_REALTIME.contains(id))
                .collect();
            Err(ApiError::invalid_value(param, id, &supported))
        }
    }
}

/// The community-reported wording for a transcription model used as a Realtime model (§1.1).
fn not_in_realtime(id: &str, param: &str) -> ApiError {
    ApiError::invalid_request(
        format!("Model \"{id}\" is not supported in realtime mode."),
        Some(param),
        Some("invalid_value"),
    )
}

fn model_json(id: &str, created: u64, owned_by: &str) -> Value {
    json!({ "id": id, "object": "model", "created": created, "owned_by": owned_by })
}

/// `GET /v1/models`: every served model, `{"object":"list","data":[...]}`.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(error) = shared.authorize(bearer(&headers)) {
        return error.into_response();
    }
    let config = shared.config();
    let extra_created = crate::text::unix_now_s();
    let data: Vec<Value> = MODELS
        .iter()
        .map(|model| model_json(model.id, model.created, model.owned_by))
        .chain(
            config
                .extra_models
                .iter()
                .filter(|id| !MODELS.iter().any(|model| model.id == id.as_str()))
                .map(|id| model_json(id, extra_created, EXTRA_OWNER)),
        )
        .collect();
    let body = json!({ "object": "list", "data": data });
    (openai_headers(std::time::Duration::ZERO), axum::Json(body)).into_response()
}

/// `GET /v1/models/{id}`: one model, or 404 `model_not_found`.
pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(error) = shared.authorize(bearer(&headers)) {
        return error.into_response();
    }
    let body = match MODELS.iter().find(|model| model.id == id) {
        Some(model) => model_json(model.id, model.created, model.owned_by),
        None if shared.config().extra_models.contains(&id) => {
            model_json(&id, crate::text::unix_now_s(), EXTRA_OWNER)
        }
        None => return ApiError::model_not_found(&id).into_response(),
    };
    (openai_headers(std::time::Duration::ZERO), axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let mut all: Vec<&str> = MODELS.iter().map(|model| model.id).collect();
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(all.len(), before);
    }

    #[test]
    fn each_api_takes_its_own_models() {
        let config = SimConfig::default();
        assert!(check(&config, "gpt-4.1-mini", Chat, "model").is_ok());
        assert!(check(&config, "gpt-4o-mini-tts", Speech, "model").is_ok());
        assert!(check(&config, "whisper-1", Transcription, "m").is_ok());
        assert!(check(&config, "gpt-realtime", Realtime, "model").is_ok());
        let error = check(&config, "gpt-nope", Chat, "model").expect_err("unknown");
        assert_eq!(error.code.as_deref(), Some("model_not_found"));
        assert_eq!(error.status.as_u16(), 404);
        let error = check(&config, "tts-1", Chat, "model").expect_err("not chat");
        assert_eq!(error.status.as_u16(), 404);
        assert!(error.message.starts_with("This is not a chat model"));
        let error = check(&config, "gpt-4.1", Speech, "model").expect_err("not speech");
        assert_eq!(error.code.as_deref(), Some("invalid_value"));
        assert!(error.message.contains("'tts-1'"));
        let error =
            check(&config, "gpt-4o-transcribe-diarize", Transcription, "m").expect_err("diarize");
        assert!(error.message.contains("not supported in realtime mode"));
        let error = check(&config, "whisper-1", Realtime, "model").expect_err("not realtime");
        assert_eq!(
            error.message,
            "Model \"whisper-1\" is not supported in realtime mode."
        );
    }

    #[test]
    fn extra_models_are_accepted_everywhere() {
        let config = SimConfig {
            extra_models: vec!["ft:gpt-4.1-mini:acme::abc123".into()],
            ..SimConfig::default()
        };
        for kind in [Chat, Speech, Transcription, Realtime] {
            assert!(check(&config, "ft:gpt-4.1-mini:acme::abc123", kind, "model").is_ok());
        }
    }
}
