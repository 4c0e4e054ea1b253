//! The HTTP surface.
//!
//! * `GET /ws` — a voice session (see the `protocol` crate).
//! * `GET /healthz` — liveness, with whether the simulator is in use.
//! * `POST /api/reply` — `{"text": "…"}` → `{"text": "…"}`: one answer from the LLM, for tools.
//! * `POST /api/speech` — `{"text": "…"}` → streamed PCM16 LE 24 kHz mono, for tools.
//! * anything else — the built client, when its directory exists.
//!
//! Bad input gets 400, an upstream failure 502, each with a JSON body
//! `{"error": {stage, code, message, retryable}}` that names the stage and never leaks
//! upstream details.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::{ErrorCode, ErrorEvent, Stage};
use serde::Deserialize;
use serde_json::json;
use tower_http::services::ServeDir;

use crate::access::{bearer, origin_allowed, token_allowed};
use crate::config::Secret;
use crate::state::{AppState, SessionRefused};
use crate::upstream::UpstreamError;
use crate::upstream::chat::{ChatMessage, Role};

/// Largest WebSocket message accepted from a browser: a little over the largest audio frame the
/// protocol allows, so a misbehaving client is cut off (close 1009) instead of buffered.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest text the one-shot endpoints accept: the Speech API's own input limit.
const MAX_INPUT_CHARS: usize = 4096;

/// Builds the router.
pub fn app(state: AppState) -> Router {
    let client_dir = state.config().client_dir.clone();
    let guarded = Router::new()
        .route("/ws", get(session))
        .route("/api/reply", post(reply))
        .route("/api/speech", post(speech))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_access_token,
        ));
    let router = Router::new().route("/healthz", get(healthz)).merge(guarded);
    let router = if client_dir.is_dir() {
        router.fallback_service(ServeDir::new(client_dir).append_index_html_on_directories(true))
    } else {
        tracing::info!(dir = %client_dir.display(), "no built client to serve (run trunk build)");
        router
    };
    router.with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "simulated": state.simulated(),
        "sessions": state.live_sessions(),
    }))
}

/// `?token=` of a request.
#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Lets `/ws` and `/api/*` through only with the access token, when one is set (`access.rs`).
async fn require_access_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let expected = state.config().access_token.as_ref().map(Secret::expose);
    let bearer = bearer(request.headers());
    let query_token = Query::<TokenQuery>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(query)| query.token);
    if token_allowed(expected, bearer, query_token.as_deref()) {
        return next.run(request).await;
    }
    // The path only: the query may hold a (wrong) token.
    tracing::warn!(
        path = request.uri().path(),
        "refused a request without the access token"
    );
    error_response(
        StatusCode::UNAUTHORIZED,
        ErrorEvent::new(
            Stage::Proxy,
            ErrorCode::Unauthorized,
            "This server needs its access token: open the link you were given, with its ?token=.",
            false,
        ),
    )
}

async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, host, &state.config().allowed_origins) {
        tracing::warn!(
            origin,
            host,
            "refused a voice session for a page of another site"
        );
        return error_response(
            StatusCode::FORBIDDEN,
            ErrorEvent::new(
                Stage::Proxy,
                ErrorCode::Forbidden,
                "Pages of this site may not open a voice session here.",
                false,
            ),
        );
    }
    let session = match state.admit_session() {
        Ok(session) => session,
        Err(SessionRefused::ShuttingDown) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorEvent::new(
                    Stage::Proxy,
                    ErrorCode::UpstreamUnavailable,
                    "The server is shutting down.",
                    true,
                ),
            );
        }
    };
    upgrade
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| session.run(socket))
}

/// The body of the one-shot endpoints.
#[derive(Debug, Deserialize)]
struct TextRequest {
    text: String,
}

/// The checked text of a one-shot request: non-empty, within the Speech API's limit. Bad
/// input is answered with a 400 before the handler runs.
struct InputText(String);

impl<S: Send + Sync> FromRequest<S> for InputText {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(TextRequest { text }) = Json::<TextRequest>::from_request(request, state)
            .await
            .map_err(|rejection| {
                bad_request(format!(
                    "Expected {{\"text\": \"…\"}}: {}",
                    rejection.body_text()
                ))
            })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(bad_request("\"text\" is empty.".into()));
        }
        if text.chars().count() > MAX_INPUT_CHARS {
            return Err(bad_request(format!(
                "\"text\" is longer than {MAX_INPUT_CHARS} characters."
            )));
        }
        Ok(Self(text.to_owned()))
    }
}

/// A 400 for input the proxy cannot use.
fn bad_request(message: String) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        ErrorEvent::new(Stage::Proxy, ErrorCode::InvalidMessage, message, false),
    )
}

async fn reply(State(state): State<AppState>, InputText(text): InputText) -> Response {
    let responder = &state.pipeline().responder;
    let messages = [
        ChatMessage {
            role: Role::System,
            content: state.config().system_prompt.clone(),
        },
        ChatMessage {
            role: Role::User,
            content: text,
        },
    ];
    let result = async {
        let mut stream = responder.start(&messages).await?;
        let mut answer = String::new();
        while let Some(delta) = stream.next_delta().await? {
            answer.push_str(&delta);
        }
        Ok::<_, UpstreamError>(answer)
    }
    .await;
    match result {
        Ok(answer) => Json(json!({ "text": answer })).into_response(),
        Err(error) => upstream_failure(Stage::Llm, &error),
    }
}

async fn speech(State(state): State<AppState>, InputText(text): InputText) -> Response {
    let synthesizer = &state.pipeline().synthesizer;
    let stream = match synthesizer.start(&text).await {
        Ok(stream) => stream,
        Err(error) => return upstream_failure(Stage::Tts, &error),
    };
    // Once audio flows the status is sent; a later failure can only cut the body short.
    let body = futures_util::stream::unfold(Some(stream), |stream| async move {
        let mut stream = stream?;
        match stream.next_pcm().await {
            Ok(Some(pcm)) => Some((Ok::<_, UpstreamError>(pcm), Some(stream))),
            Ok(None) => None,
            Err(error) => Some((Err(error), None)),
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            "audio/pcm;rate=24000;channels=1;encoding=s16le",
        )],
        Body::from_stream(body),
    )
        .into_response()
}

/// A 502 naming the stage, with our wording of the failure.
fn upstream_failure(stage: Stage, error: &UpstreamError) -> Response {
    tracing::warn!(stage = stage.as_str(), %error, "one-shot request failed upstream");
    error_response(StatusCode::BAD_GATEWAY, error.to_event(stage))
}

fn error_response(status: StatusCode, event: ErrorEvent) -> Response {
    (status, Json(json!({ "error": event }))).into_response()
}
