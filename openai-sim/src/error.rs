//! OpenAI's error envelope `{"error":{"message","type","param","code"}}`
//! (docs/openai-wire.md §2.3, §4.1) as an HTTP response and as a Realtime `error` event
//! (§1.6), plus constructors that word validation failures the way the API does ("Missing
//! required parameter: 'messages'.").
//!
//! Messages copy the real service where the reference or common client logs quote them; the
//! rest follow the same pattern. Everything the simulator itself cannot do says "simulator".

use std::fmt;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::text;

/// An error as OpenAI reports it. `kind` is the envelope's `type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: String,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<String>,
    /// Sent as `retry-after-ms` and `retry-after` (rounded up to seconds) headers.
    pub(crate) retry_after_ms: Option<u64>,
}

impl ApiError {
    /// Any status, type and message; no param, code or retry hint.
    pub(crate) fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: kind.to_owned(),
            message: message.into(),
            param: None,
            code: None,
            retry_after_ms: None,
        }
    }

    /// A 400 `invalid_request_error` naming the offending parameter.
    pub(crate) fn invalid_request(
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            .with_param(param)
            .with_code(code)
    }

    pub(crate) fn with_param(mut self, param: Option<&str>) -> Self {
        self.param = param.map(str::to_owned);
        self
    }

    pub(crate) fn with_code(mut self, code: Option<&str>) -> Self {
        self.code = code.map(str::to_owned);
        self
    }

    /// The body `{"error":{...}}`.
    pub(crate) fn body(&self) -> Value {
        json!({ "error": self.object() })
    }

    /// The inner object, with `message`, `type`, `param` and `code` always present.
    fn object(&self) -> Value {
        json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        })
    }

    /// The Realtime `error` server event; `client_event_id` names the client event that failed.
    pub(crate) fn realtime_event(&self, client_event_id: Option<&str>) -> Value {
        let mut error = self.object();
        error["event_id"] = json!(client_event_id);
        json!({ "type": "error", "event_id": text::event_id(), "error": error })
    }

    // --- Authentication (§4.1 401) ---

    /// No usable `Authorization: Bearer` header (the real service's wording).
    pub(crate) fn missing_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "You didn't provide an API key. You need to provide your API key in an Authorization \
             header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password \
             field (with blank username) if you're accessing the API from your browser and are \
             prompted for a username and password. You can obtain an API key from \
             https://platform.openai.com/account/api-keys.",
        )
    }

    /// A key that is not the configured one; the key is masked as the service does.
    pub(crate) fn invalid_api_key(presented: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                mask_key(presented)
            ),
        )
        .with_code(Some("invalid_api_key"))
    }

    // --- Request validation (§4.1 400) ---

    /// The body is not JSON (the real service's wording).
    pub(crate) fn invalid_json() -> Self {
        Self::invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but \
             what was sent was not valid JSON. If you have trouble figuring out how to fix this, \
             please contact us through our help center at help.openai.com.)",
            None,
            None,
        )
    }

    pub(crate) fn missing(param: &str) -> Self {
        Self::invalid_request(
            format!("Missing required parameter: '{param}'."),
            Some(param),
            Some("missing_required_parameter"),
        )
    }

    pub(crate) fn unknown_parameter(param: &str) -> Self {
        Self::invalid_request(
            format!("Unknown parameter: '{param}'."),
            Some(param),
            Some("unknown_parameter"),
        )
    }

    /// Chat Completions' wording for body fields it does not know (param and code null).
    pub(crate) fn unrecognized_arguments(names: &[&str]) -> Self {
        let message = match names {
            [one] => format!("Unrecognized request argument supplied: {one}"),
            many => format!(
                "Unrecognized request arguments supplied: {}",
                many.join(", ")
            ),
        };
        Self::invalid_request(message, None, None)
    }

    // --- Models (§4.1 404) ---

    /// 404 `model_not_found`: a model id the service does not serve (to this key).
    pub(crate) fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_code(Some("model_not_found"))
    }

    /// 404 for a model that exists but is not a chat model (the service's wording).
    pub(crate) fn not_a_chat_model() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "This is not a chat model and thus not supported in the v1/chat/completions \
             endpoint. Did you mean to use v1/completions?",
        )
        .with_param(Some("model"))
    }

    /// `expected` reads like "a string" or "an object".
    pub(crate) fn invalid_type(param: &str, expected: &str, got: &Value) -> Self {
        Self::invalid_request(
            format!(
                "Invalid type for '{param}': expected {expected}, but got {} instead.",
                describe(got)
            ),
            Some(param),
            Some("invalid_type"),
        )
    }

    /// A value outside an enumeration; lists the supported values as the service does.
    pub(crate) fn invalid_value(param: &str, got: &str, supported: &[&str]) -> Self {
        Self::invalid_request(
            format!(
                "Invalid value: '{got}'. Supported values are: {}.",
                quote_list(supported)
            ),
            Some(param),
            Some("invalid_value"),
        )
    }

    /// A value the service accepts but the simulator does not implement.
    pub(crate) fn unsupported_by_simulator(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message, Some(param), Some("unsupported_value"))
    }

    /// A decimal outside `min..=max`.
    pub(crate) fn number_out_of_range(param: &str, got: f64, min: f64, max: f64) -> Self {
        Self::out_of_range(param, "decimal", got < min, &got, &min, &max)
    }

    /// An integer outside `min..=max`.
    pub(crate) fn integer_out_of_range(param: &str, got: u64, min: u64, max: u64) -> Self {
        Self::out_of_range(param, "integer", got < min, &got, &min, &max)
    }

    /// A `kind` (`decimal`, `integer`) `got` below `min` (`below`) or above `max`, worded
    /// and coded as the service does.
    fn out_of_range(
        param: &str,
        kind: &str,
        below: bool,
        got: &dyn fmt::Display,
        min: &dyn fmt::Display,
        max: &dyn fmt::Display,
    ) -> Self {
        let (what, bound, code) = if below {
            ("below minimum", format!(">= {min}"), "below_min_value")
        } else {
            ("above maximum", format!("<= {max}"), "above_max_value")
        };
        Self::invalid_request(
            format!(
                "Invalid '{param}': {kind} {what} value. Expected a value {bound}, but got {got} \
                 instead."
            ),
            Some(param),
            Some(&format!("{kind}_{code}")),
        )
    }

    pub(crate) fn string_too_long(param: &str, max: usize, got: usize) -> Self {
        Self::invalid_request(
            format!(
                "Invalid '{param}': string too long. Expected a string with maximum length \
                 {max}, but got a string with length {got} instead."
            ),
            Some(param),
            Some("string_above_max_length"),
        )
    }

    pub(crate) fn string_empty(param: &str) -> Self {
        Self::invalid_request(
            format!(
                "Invalid '{param}': string too short. Expected a string with minimum length 1, \
                 but got an empty string instead."
            ),
            Some(param),
            Some("string_below_min_length"),
        )
    }

    pub(crate) fn empty_array(param: &str) -> Self {
        Self::invalid_request(
            format!(
                "Invalid '{param}': empty array. Expected an array with minimum length 1, but \
                 got an empty array instead."
            ),
            Some(param),
            Some("empty_array"),
        )
    }

    /// Unknown route or method: the real service answers 404 "Invalid URL (POST /v1/x)".
    pub(crate) fn invalid_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({method} {path})"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        headers.insert("x-request-id", text::header_value(&text::request_id()));
        if let Some(ms) = self.retry_after_ms {
            headers.insert("retry-after-ms", HeaderValue::from(ms));
            headers.insert("retry-after", HeaderValue::from(ms.div_ceil(1000)));
        }
        response
    }
}

/// "a string", "an integer", ... as in the service's `invalid_type` messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `'a', 'b', and 'c'`.
fn quote_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

#[cfg(test)]
impl ApiError {
    /// Asserts that this error names `param` with `code`; `case` says which case failed.
    pub(crate) fn assert_names(&self, param: &str, code: &str, case: &dyn fmt::Display) {
        assert_eq!(self.param.as_deref(), Some(param), "{case}");
        assert_eq!(self.code.as_deref(), Some(code), "{case}");
    }
}

/// `sk-ab****wxyz`: the service shows a few leading and the last four characters.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_all_four_fields() {
        let body = ApiError::missing("messages").body();
        assert_eq!(
            body["error"]["message"],
            "Missing required parameter: 'messages'."
        );
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["code"], "missing_required_parameter");
        let body = ApiError::invalid_json().body();
        assert!(body["error"]["param"].is_null() && body["error"]["code"].is_null());
    }

    #[test]
    fn lists_and_keys_are_worded_like_the_service() {
        assert_eq!(quote_list(&["a", "b", "c"]), "'a', 'b', and 'c'");
        assert_eq!(quote_list(&["a", "b"]), "'a' and 'b'");
        let masked = mask_key("sk-proj-1234567890abcd");
        assert!(masked.starts_with("sk-") && masked.ends_with("abcd") && masked.contains('*'));
        assert!(!masked.contains("1234567890"));
    }

    #[test]
    fn model_errors_are_worded_like_the_service() {
        let body = ApiError::model_not_found("gpt-nope").body();
        assert_eq!(
            body["error"]["message"],
            "The model `gpt-nope` does not exist or you do not have access to it."
        );
        assert_eq!(body["error"]["code"], "model_not_found");
        assert!(body["error"]["param"].is_null());
        assert_eq!(
            ApiError::unrecognized_arguments(&["foo"]).message,
            "Unrecognized request argument supplied: foo"
        );
        assert_eq!(
            ApiError::unrecognized_arguments(&["a", "b"]).message,
            "Unrecognized request arguments supplied: a, b"
        );
    }

    #[test]
    fn realtime_event_echoes_the_client_event_id() {
        let event = ApiError::missing("session.type").realtime_event(Some("evt_1"));
        assert_eq!(event["type"], "error");
        assert_eq!(event["error"]["event_id"], "evt_1");
        assert!(
            event["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("event_"))
        );
    }
}
