//! The HTTP surface.
//!
//! * `GET /ws` — a voice session (see the `protocol` crate).
//! * `GET /healthz` — liveness, with whether the simulator is in use.
//! * `GET /metrics` — Prometheus metrics (`observability`), unless `METRICS_ADDR` moves them
//!   to a listener of their own. No token: a scraper has none, and they hold counts, not
//!   secrets. On the main port they answer only allowed `Host`s (DNS rebinding), and no CORS
//!   header lets another site's page read them.
//! * `POST /api/reply` — `{"text": "…"}` → `{"text": "…"}`: one answer from the LLM, for tools.
//! * `POST /api/speech` — `{"text": "…"}` → streamed PCM16 LE 24 kHz mono, for tools.
//!   Both only with `ENABLE_API` (which needs `ACCESS_TOKEN`), rate-limited per address.
//! * anything else — the built client, when its directory exists (`static_files`).
//!
//! `/ws` and `/api/*` answer only allowed `Host`s and need the token when one is set. Bad input
//! gets 400, a refused session 503 or 429 with `Retry-After`, an upstream failure 502, each
//! with a JSON body `{"error": {stage, code, message, retryable}}` that names the stage and
//! never leaks upstream details.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::{ErrorCode, ErrorEvent, Stage};
use serde::Deserialize;
use serde_json::json;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::access::{bearer, host_allowed, origin_allowed, own_scheme, token_allowed};
use crate::config::Secret;
use crate::limits::truncate_for_log;
use crate::observability::Refusal;
use crate::state::{AppState, SessionRefused};
use crate::static_files::ClientFiles;
use crate::upstream::UpstreamError;
use crate::upstream::chat::{ChatMessage, Role};

/// Largest WebSocket message accepted from a browser: a little over the largest audio frame the
/// protocol allows, so a misbehaving client is cut off (close 1009) instead of buffered.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// Longest text the one-shot endpoints accept: the Speech API's own input limit.
const MAX_INPUT_CHARS: usize = 4096;

/// Longest one-shot request body, in bytes: the longest text, escaped, with room for the JSON.
const MAX_API_BODY_BYTES: usize = 64 * 1024;

/// Bytes the WebSocket reads from the socket at a time: a 20 ms audio frame is under 1 KB, and
/// an idle session should hold as little memory as possible (the buffer grows for larger
/// messages, up to [`MAX_WS_MESSAGE_BYTES`]).
const WS_READ_BUFFER_BYTES: usize = 2 * 1024;

/// Bytes the WebSocket gathers before it writes: one audio chunk, so each goes out at once.
const WS_WRITE_BUFFER_BYTES: usize = 0;

/// Longest piece of a client's header quoted in a log line.
const MAX_LOGGED_HEADER_CHARS: usize = 100;

/// The voice session's path: its refusals are counted as refused handshakes.
const WS_PATH: &str = "/ws";

/// Where the metrics are served.
const METRICS_PATH: &str = "/metrics";

/// The text exposition format's content type (Prometheus 0.0.4).
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds the router.
pub fn app(state: AppState) -> Router {
    let client_dir = state.config().client_dir.clone();
    let mut guarded = Router::new().route(WS_PATH, get(session));
    if state.config().enable_api {
        let api = Router::new()
            .route("/api/reply", post(reply))
            .route("/api/speech", post(speech))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_API_BODY_BYTES))
            .layer(RequestBodyTimeoutLayer::new(
                state.config().limits.request_body_timeout,
            ))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                api_rate_limit,
            ));
        guarded = guarded.merge(api);
    }
    // Layers run outside in: the Host first, then the token.
    let guarded = guarded
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_access_token,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_allowed_host,
        ));
    let mut router = Router::new().route("/healthz", get(healthz)).merge(guarded);
    if state.config().metrics_addr.is_none() {
        // One port to run; a reverse proxy in front of it keeps `/metrics` internal.
        router = router.merge(Router::new().route(METRICS_PATH, get(metrics)).route_layer(
            middleware::from_fn_with_state(state.clone(), require_allowed_host),
        ));
    }
    let router = router.with_state(state);
    match ClientFiles::open(&client_dir) {
        Some(files) => router
            .fallback_service(axum::routing::any(crate::static_files::serve).with_state(files)),
        None => {
            tracing::info!(dir = %client_dir.display(), "no built client to serve (run trunk build)");
            router
        }
    }
}

/// The router of the metrics listener (`METRICS_ADDR`): `/metrics` alone, for any `Host` (a
/// scraper names the listener by its address), since that listener is meant to be reachable
/// only from where the scraper runs.
pub(crate) fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics().render(),
    )
        .into_response()
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
    if request.uri().path() == WS_PATH {
        state.metrics().handshake_refused(Refusal::Token);
    }
    // The path only: the query may hold a (wrong) token.
    tracing::warn!(
        path = %truncate_for_log(request.uri().path(), MAX_LOGGED_HEADER_CHARS),
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

/// Lets `/ws` and `/api/*` through only for a `Host` this server answers to (`access.rs`).
async fn require_allowed_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let scheme = own_scheme(state.config().tls.is_some());
    if host_allowed(host, &state.config().public_hosts, scheme) {
        return next.run(request).await;
    }
    if request.uri().path() == WS_PATH {
        state.metrics().handshake_refused(Refusal::Host);
    }
    tracing::warn!(
        host = host.map(|h| truncate_for_log(h, MAX_LOGGED_HEADER_CHARS)).as_deref(),
        path = %truncate_for_log(request.uri().path(), MAX_LOGGED_HEADER_CHARS),
        "refused a request for a host this server is not configured as (PUBLIC_HOSTS)"
    );
    error_response(
        StatusCode::FORBIDDEN,
        ErrorEvent::new(
            Stage::Proxy,
            ErrorCode::Forbidden,
            "This server does not answer to that host name; its operator can add it to \
             PUBLIC_HOSTS.",
            false,
        ),
    )
}

/// The TCP peer of a request (set by the accept loop; absent when the router is driven
/// without it, as in-process tests may do).
struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| *peer),
        ))
    }
}

/// The address a request comes from: the configured header's (behind a reverse proxy; for
/// `X-Forwarded-For`, its last entry, the one the trusted proxy added), else the TCP peer's.
fn client_address(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    let from_header = state
        .config()
        .client_address_header
        .as_deref()
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    from_header
        .or(peer.map(|peer| peer.ip()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Counts an `/api/*` request against its address's rate.
async fn api_rate_limit(
    State(state): State<AppState>,
    Peer(peer): Peer,
    request: Request,
    next: Next,
) -> Response {
    let address = client_address(&state, request.headers(), peer);
    match state.admit_api_request(address) {
        Ok(()) => next.run(request).await,
        Err(refused) => refusal_response(refused),
    }
}

/// The 503 or 429 for a refused session or request, with `Retry-After`.
fn refusal_response(refused: SessionRefused) -> Response {
    let (status, code, message) = match refused {
        SessionRefused::ShuttingDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerBusy,
            "The server is shutting down.",
        ),
        SessionRefused::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerBusy,
            "The server is at capacity; try again in a moment.",
        ),
        SessionRefused::AddressFull => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            "Too many sessions are open from your address; close one and try again.",
        ),
        SessionRefused::TooFast(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            "Too many requests from your address; wait a little and try again.",
        ),
    };
    let mut response = error_response(status, ErrorEvent::new(Stage::Proxy, code, message, true));
    let seconds = refused.retry_after().as_secs().max(1);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&seconds.to_string()).expect("digits are a valid header"),
    );
    response
}

/// `?resume=` of a `/ws` request.
#[derive(Debug, Deserialize)]
struct ResumeQuery {
    resume: Option<String>,
}

async fn session(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let scheme = own_scheme(state.config().tls.is_some());
    if !origin_allowed(origin, host, &state.config().allowed_origins, scheme) {
        state.metrics().handshake_refused(Refusal::Origin);
        tracing::warn!(
            origin = origin
                .map(|o| truncate_for_log(o, MAX_LOGGED_HEADER_CHARS))
                .as_deref(),
            host = host
                .map(|h| truncate_for_log(h, MAX_LOGGED_HEADER_CHARS))
                .as_deref(),
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
    let address = client_address(&state, &headers, peer);
    let session = match state.admit_session(address) {
        Ok(session) => session,
        Err(refused) => {
            state.metrics().handshake_refused(Refusal::from(refused));
            return refusal_response(refused);
        }
    };
    let resume_token = Query::<ResumeQuery>::try_from_uri(&uri)
        .ok()
        .and_then(|Query(query)| query.resume);
    let session = session.resuming(resume_token);
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
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
