//! Realtime session configuration: the GA transcription session object that `session.created`
//! and `session.updated` carry (docs/openai-wire.md §1.6) and the validation of a GA
//! `session.update` with `session.type: "transcription"` (§1.3). What both session types share
//! (`session.audio.input` as [`AudioInput`], the audio format, `session.type`, the
//! validators) serves the conversation session too (`conversation::config`).
//!
//! Updates are partial ("only fields present are changed", `null` clears `turn_detection`)
//! and atomic: an invalid update changes nothing. Validation is strict where the GA schema
//! is: unknown parameters (such as beta-era `input_audio_format`) are rejected with
//! `unknown_parameter`, the PCM format must be 24 kHz, and the enumerations are checked. The
//! transcription model must be one the simulator serves (see `models`): otherwise the error
//! `model_not_found`.

use serde_json::{Map, Value, json};

use super::config::{REALTIME_SESSION_MAX, SimConfig};
use super::error::ApiError;
use super::input::Configurable;
use super::models::{self, ModelKind};
use super::params;
use super::text;
use super::vad::{self, VadParams};

/// Lifetime of a session before the service ends it, unless configured otherwise.
const SESSION_LIFETIME_SECS: u64 = REALTIME_SESSION_MAX.as_secs();
/// Transcription model of a new session (the reference's `session.created` example).
const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
/// The only `include` value (§1.3).
const INCLUDE_LOGPROBS: &str = "item.input_audio_transcription.logprobs";
/// `session.type` of a conversation session.
pub(crate) const REALTIME: &str = "realtime";
/// `session.type` of a transcription session.
pub(crate) const TRANSCRIPTION: &str = "transcription";
/// Keys of a GA transcription `session`.
const SESSION_KEYS: &[&str] = &["type", "audio", "include"];
/// Keys of `session.audio.input`.
const INPUT_KEYS: &[&str] = &[
    "format",
    "transcription",
    "noise_reduction",
    "turn_detection",
];
/// Keys of `session.audio.input.transcription`.
const TRANSCRIPTION_KEYS: &[&str] = &[
    "model",
    "language",
    "languages",
    "prompt",
    "keywords",
    "delay",
];
/// Keys of a `server_vad` turn detection; the last three only matter to conversations.
const SERVER_VAD_KEYS: &[&str] = &[
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "create_response",
    "interrupt_response",
    "idle_timeout_ms",
];
/// Keys of a `semantic_vad` turn detection.
const SEMANTIC_VAD_KEYS: &[&str] = &["type", "eagerness", "create_response", "interrupt_response"];

/// `turn_detection` of a session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TurnDetection {
    /// `null`: the client commits each turn.
    Manual,
    ServerVad {
        threshold: f64,
        prefix_padding_ms: u64,
        silence_duration_ms: u64,
    },
    SemanticVad {
        eagerness: String,
    },
}

impl TurnDetection {
    /// Server VAD with its default threshold and padding, ending a turn after
    /// `silence_duration_ms`.
    pub(crate) fn server_vad(silence_duration_ms: u64) -> Self {
        Self::ServerVad {
            threshold: vad::DEFAULT_THRESHOLD,
            prefix_padding_ms: vad::DEFAULT_PREFIX_PADDING_MS,
            silence_duration_ms,
        }
    }

    /// The detector settings, if the server detects turns.
    pub(crate) fn vad_params(&self) -> Option<VadParams> {
        match self {
            Self::Manual => None,
            Self::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
            } => Some(VadParams {
                threshold: *threshold,
                prefix_padding_ms: *prefix_padding_ms,
                silence_duration_ms: *silence_duration_ms,
            }),
            Self::SemanticVad { eagerness } => Some(VadParams {
                threshold: vad::DEFAULT_THRESHOLD,
                prefix_padding_ms: vad::DEFAULT_PREFIX_PADDING_MS,
                silence_duration_ms: vad::semantic_silence_ms(eagerness),
            }),
        }
    }

    /// The `turn_detection` object of the session JSON (without the conversation-only flags).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Self::Manual => Value::Null,
            Self::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
            } => json!({
                "type": "server_vad",
                "threshold": threshold,
                "prefix_padding_ms": prefix_padding_ms,
                "silence_duration_ms": silence_duration_ms,
            }),
            Self::SemanticVad { eagerness } => {
                json!({ "type": "semantic_vad", "eagerness": eagerness })
            }
        }
    }
}

/// `session.audio.input` as both kinds of session keep it (its format is always PCM16 at
/// 24 kHz).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AudioInput {
    /// `transcription`, with `model`, `language` and `prompt` always present; `None` while
    /// input transcription is off (a conversation's default).
    pub(crate) transcription: Option<Map<String, Value>>,
    noise_reduction: Value,
    pub(crate) turn_detection: TurnDetection,
    /// `transcription: null` turns transcription off (a conversation session); a
    /// transcription session always transcribes, so there `null` is of the wrong type.
    transcription_optional: bool,
}

impl AudioInput {
    /// A new transcription session's: transcription on, server VAD with its defaults.
    fn transcribing() -> Self {
        Self {
            transcription: Some(default_transcription()),
            noise_reduction: Value::Null,
            turn_detection: TurnDetection::server_vad(vad::DEFAULT_SILENCE_DURATION_MS),
            transcription_optional: false,
        }
    }

    /// A new conversation session's: no transcription, server VAD ending a turn after
    /// `silence_duration_ms`.
    pub(crate) fn conversing(silence_duration_ms: u64) -> Self {
        Self {
            transcription: None,
            noise_reduction: Value::Null,
            turn_detection: TurnDetection::server_vad(silence_duration_ms),
            transcription_optional: true,
        }
    }

    /// The `session.audio.input` object.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "format": pcm_format(),
            "transcription": self.transcription,
            "noise_reduction": self.noise_reduction,
            "turn_detection": self.turn_detection.to_json(),
        })
    }

    /// The transcription prompt (counted as text tokens in `usage`).
    pub(crate) fn transcription_prompt(&self) -> &str {
        self.transcription
            .as_ref()
            .and_then(|fields| fields.get("prompt"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Applies the `session.audio.input` of an update (the caller keeps the copy it changes
    /// only if the whole update is valid). `config` says which models are served.
    pub(crate) fn apply(
        &mut self,
        input: &Map<String, Value>,
        config: &SimConfig,
    ) -> Result<(), ApiError> {
        check_keys(input, "session.audio.input", INPUT_KEYS)?;
        if let Some(format) = input.get("format") {
            validate_format(format, "session.audio.input.format")?;
        }
        match input.get("transcription") {
            None => {}
            Some(Value::Null) if self.transcription_optional => self.transcription = None,
            Some(transcription) => {
                let fields = validate_transcription(transcription, config)?;
                let merged = self.transcription.get_or_insert_with(default_transcription);
                for (key, value) in fields {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(noise) = input.get("noise_reduction") {
            self.noise_reduction = validate_noise_reduction(noise)?;
        }
        if let Some(detection) = input.get("turn_detection") {
            self.turn_detection = parse_turn_detection(detection)?;
        }
        Ok(())
    }
}

/// The effective configuration of a transcription session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TranscriptionSession {
    pub(crate) id: String,
    expires_at: u64,
    input: AudioInput,
    include: Value,
}

impl TranscriptionSession {
    /// A new session with the service's defaults that the service ends after `lifetime`.
    pub(crate) fn expiring_in(lifetime: std::time::Duration) -> Self {
        Self {
            expires_at: expires_at(lifetime),
            ..Self::new()
        }
    }

    /// A new session with the service's defaults (server VAD on).
    pub(crate) fn new() -> Self {
        Self {
            id: text::session_id(),
            expires_at: crate::text::unix_now_s() + SESSION_LIFETIME_SECS,
            input: AudioInput::transcribing(),
            include: Value::Null,
        }
    }

    /// The transcription prompt (counted as text tokens in `usage`).
    pub(crate) fn prompt(&self) -> &str {
        self.input.transcription_prompt()
    }

    /// Whether `include` asks for logprobs.
    pub(crate) fn wants_logprobs(&self) -> bool {
        includes_logprobs(&self.include)
    }

    /// Applies the `session` of a `session.update`; on error nothing changes. `config` says
    /// which models are served.
    pub(crate) fn apply_update(
        &mut self,
        session: &Value,
        config: &SimConfig,
    ) -> Result<(), ApiError> {
        let mut next = self.clone();
        let session = object(session, "session")?;
        check_keys(session, "session", SESSION_KEYS)?;
        if session_type(session)? == REALTIME {
            return Err(ApiError::invalid_request(
                "Passing a realtime session update event to a transcription session is not \
                 allowed.",
                Some("session.type"),
                Some("invalid_value"),
            ));
        }
        if let Some(audio) = sub_object(session, "session", "audio")? {
            check_keys(audio, "session.audio", &["input"])?;
            if let Some(input) = sub_object(audio, "session.audio", "input")? {
                next.input.apply(input, config)?;
            }
        }
        if let Some(include) = session.get("include") {
            next.include = validate_include(include)?;
        }
        *self = next;
        Ok(())
    }
}

impl Configurable for TranscriptionSession {
    fn audio_input(&self) -> &AudioInput {
        &self.input
    }

    fn session_json(&self) -> Value {
        json!({
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": self.id,
            "expires_at": self.expires_at,
            "audio": { "input": self.input.to_json() },
            "include": self.include,
        })
    }
}

/// `expires_at` of a session that the service ends after `lifetime`: Unix seconds, rounded
/// up to a whole second.
pub(crate) fn expires_at(lifetime: std::time::Duration) -> u64 {
    let seconds = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    crate::text::unix_now_s() + seconds
}

/// The only audio format served: PCM16 at 24 kHz.
pub(crate) fn pcm_format() -> Value {
    json!({ "type": "audio/pcm", "rate": 24_000 })
}

/// The `transcription` a session gets when it turns input transcription on without naming
/// everything (and a new transcription session's).
fn default_transcription() -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("model".into(), json!(DEFAULT_TRANSCRIPTION_MODEL));
    fields.insert("language".into(), Value::Null);
    fields.insert("prompt".into(), json!(""));
    fields
}

/// Whether an `include` list asks for the logprobs of input transcription.
pub(crate) fn includes_logprobs(include: &Value) -> bool {
    include
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item == INCLUDE_LOGPROBS))
}

/// `session.type` of an update: [`REALTIME`] or [`TRANSCRIPTION`] (each session refuses
/// the other kind with its own error).
pub(crate) fn session_type(session: &Map<String, Value>) -> Result<&'static str, ApiError> {
    const TYPES: &[&str] = &[REALTIME, TRANSCRIPTION];
    match session.get("type") {
        None => Err(ApiError::missing("session.type")),
        Some(Value::String(kind)) => TYPES
            .iter()
            .copied()
            .find(|known| known == kind)
            .ok_or_else(|| ApiError::invalid_value("session.type", kind, TYPES)),
        Some(other) => Err(ApiError::invalid_type("session.type", "a string", other)),
    }
}

/// The object `key` of `fields` (at `path`), if present.
pub(crate) fn sub_object<'a>(
    fields: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    fields
        .get(key)
        .map(|value| object(value, &format!("{path}.{key}")))
        .transpose()
}

/// Checks an `audio.input.transcription` object (its model must be one the simulator serves
/// as a transcription model); returns its fields.
pub(crate) fn validate_transcription<'a>(
    transcription: &'a Value,
    config: &SimConfig,
) -> Result<&'a Map<String, Value>, ApiError> {
    const PATH: &str = "session.audio.input.transcription";
    const MODEL: &str = "session.audio.input.transcription.model";
    let fields = object(transcription, PATH)?;
    check_keys(fields, PATH, TRANSCRIPTION_KEYS)?;
    for key in ["model", "language", "prompt", "delay"] {
        match fields.get(key) {
            None | Some(Value::String(_)) => {}
            Some(Value::Null) if key != "model" => {}
            Some(other) => {
                return Err(ApiError::invalid_type(
                    &format!("{PATH}.{key}"),
                    "a string",
                    other,
                ));
            }
        }
    }
    if let Some(Value::String(model)) = fields.get("model") {
        // Unlike the HTTP 404, the event names the field: a session update has many.
        models::check(config, model, ModelKind::Transcription, MODEL).map_err(
            |error| match error.param {
                None => error.with_param(Some(MODEL)),
                Some(_) => error,
            },
        )?;
    }
    if let Some(Value::String(delay)) = fields.get("delay") {
        const DELAYS: &[&str] = &["minimal", "low", "medium", "high", "xhigh"];
        if !DELAYS.contains(&delay.as_str()) {
            return Err(ApiError::invalid_value(
                &format!("{PATH}.delay"),
                delay,
                DELAYS,
            ));
        }
    }
    for key in ["languages", "keywords"] {
        if let Some(value) = fields.get(key) {
            validate_string_list(value, &format!("{PATH}.{key}"))?;
        }
    }
    if fields.get("language").is_some_and(|v| !v.is_null()) && fields.contains_key("languages") {
        return Err(ApiError::invalid_request(
            "Only one of 'language' and 'languages' may be set.",
            Some(&format!("{PATH}.languages")),
            Some("invalid_value"),
        ));
    }
    if let Some(Value::Array(keywords)) = fields.get("keywords") {
        let bad = keywords
            .iter()
            .filter_map(Value::as_str)
            .any(|keyword| keyword.contains(['<', '>', '\r', '\n']));
        if bad {
            return Err(ApiError::invalid_request(
                "Invalid 'keywords': each keyword must be a single line without '<' or '>'.",
                Some(&format!("{PATH}.keywords")),
                Some("invalid_value"),
            ));
        }
    }
    Ok(fields)
}

/// The error a conversation session gives a transcription `session.update` (the wording of
/// the community report quoted in §1.1).
pub(crate) fn transcription_update_in_conversation() -> ApiError {
    ApiError::invalid_request(
        "Passing a transcription session update event to a realtime session is not allowed.",
        Some("session.type"),
        Some("invalid_value"),
    )
}

pub(crate) fn object<'a>(
    value: &'a Value,
    param: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| ApiError::invalid_type(param, "an object", value))
}

/// `unknown_parameter` for the first key of `fields` not in `known`, named `path.key`.
pub(crate) fn check_keys(
    fields: &Map<String, Value>,
    path: &str,
    known: &[&str],
) -> Result<(), ApiError> {
    match fields.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(ApiError::unknown_parameter(&format!("{path}.{unknown}"))),
        None => Ok(()),
    }
}

/// Checks an audio `format` at `path` (`session.audio.input.format`, ...): PCM at 24 kHz.
pub(crate) fn validate_format(format: &Value, path: &str) -> Result<(), ApiError> {
    let fields = object(format, path)?;
    check_keys(fields, path, &["type", "rate"])?;
    match fields.get("type") {
        None => return Err(ApiError::missing(&format!("{path}.type"))),
        Some(Value::String(kind)) if kind == "audio/pcm" => {}
        Some(Value::String(kind)) if kind == "audio/pcmu" || kind == "audio/pcma" => {
            return Err(ApiError::unsupported_by_simulator(
                &format!("{path}.type"),
                format!("The OpenAI simulator supports only 'audio/pcm' audio, not '{kind}'."),
            ));
        }
        Some(Value::String(kind)) => {
            return Err(ApiError::invalid_value(
                &format!("{path}.type"),
                kind,
                &["audio/pcm", "audio/pcmu", "audio/pcma"],
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid_type(
                &format!("{path}.type"),
                "a string",
                other,
            ));
        }
    }
    match fields.get("rate") {
        None => Ok(()),
        Some(rate) if rate.as_u64() == Some(24_000) => Ok(()),
        Some(rate) => Err(ApiError::invalid_value(
            &format!("{path}.rate"),
            &rate.to_string(),
            &["24000"],
        )),
    }
}

pub(crate) fn validate_noise_reduction(noise: &Value) -> Result<Value, ApiError> {
    const PATH: &str = "session.audio.input.noise_reduction";
    if noise.is_null() {
        return Ok(Value::Null);
    }
    let fields = object(noise, PATH)?;
    check_keys(fields, PATH, &["type"])?;
    match fields.get("type") {
        Some(Value::String(kind)) if kind == "near_field" || kind == "far_field" => {
            Ok(noise.clone())
        }
        Some(Value::String(kind)) => Err(ApiError::invalid_value(
            &format!("{PATH}.type"),
            kind,
            &["near_field", "far_field"],
        )),
        Some(other) => Err(ApiError::invalid_type(
            &format!("{PATH}.type"),
            "a string",
            other,
        )),
        None => Err(ApiError::missing(&format!("{PATH}.type"))),
    }
}

pub(crate) fn parse_turn_detection(detection: &Value) -> Result<TurnDetection, ApiError> {
    const PATH: &str = "session.audio.input.turn_detection";
    if detection.is_null() {
        return Ok(TurnDetection::Manual);
    }
    let fields = object(detection, PATH)?;
    match fields.get("type") {
        Some(Value::String(kind)) if kind == "server_vad" => {
            check_keys(fields, PATH, SERVER_VAD_KEYS)?;
            let threshold = match fields.get("threshold") {
                None | Some(Value::Null) => vad::DEFAULT_THRESHOLD,
                Some(value) => {
                    params::number_in(value, &format!("{PATH}.threshold"), "a decimal", (0.0, 1.0))?
                }
            };
            Ok(TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms: milliseconds(
                    fields,
                    PATH,
                    "prefix_padding_ms",
                    vad::DEFAULT_PREFIX_PADDING_MS,
                )?,
                silence_duration_ms: milliseconds(
                    fields,
                    PATH,
                    "silence_duration_ms",
                    vad::DEFAULT_SILENCE_DURATION_MS,
                )?,
            })
        }
        Some(Value::String(kind)) if kind == "semantic_vad" => {
            check_keys(fields, PATH, SEMANTIC_VAD_KEYS)?;
            const EAGERNESS: &[&str] = &["low", "medium", "high", "auto"];
            let eagerness = params::optional_choice(
                fields.get("eagerness"),
                &format!("{PATH}.eagerness"),
                EAGERNESS,
            )?
            .unwrap_or("auto");
            Ok(TurnDetection::SemanticVad {
                eagerness: eagerness.to_owned(),
            })
        }
        Some(Value::String(kind)) => Err(ApiError::invalid_value(
            &format!("{PATH}.type"),
            kind,
            &["server_vad", "semantic_vad"],
        )),
        Some(other) => Err(ApiError::invalid_type(
            &format!("{PATH}.type"),
            "a string",
            other,
        )),
        None => Err(ApiError::missing(&format!("{PATH}.type"))),
    }
}

/// A non-negative integer number of milliseconds, or the default if absent.
fn milliseconds(
    fields: &Map<String, Value>,
    path: &str,
    key: &str,
    default: u64,
) -> Result<u64, ApiError> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value.as_u64().ok_or_else(|| {
            ApiError::invalid_type(&format!("{path}.{key}"), "a non-negative integer", value)
        }),
    }
}

pub(crate) fn validate_include(include: &Value) -> Result<Value, ApiError> {
    if include.is_null() {
        return Ok(Value::Null);
    }
    let items = include
        .as_array()
        .ok_or_else(|| ApiError::invalid_type("session.include", "an array", include))?;
    for (index, item) in items.iter().enumerate() {
        let param = format!("session.include[{index}]");
        match item.as_str() {
            Some(INCLUDE_LOGPROBS) => {}
            Some(other) => return Err(ApiError::invalid_value(&param, other, &[INCLUDE_LOGPROBS])),
            None => return Err(ApiError::invalid_type(&param, "a string", item)),
        }
    }
    Ok(include.clone())
}

fn validate_string_list(value: &Value, param: &str) -> Result<(), ApiError> {
    let items = params::array_of(value, param, "a string", Value::is_string)?;
    if items.is_empty() {
        return Err(ApiError::empty_array(param));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(session: Value) -> Result<TranscriptionSession, ApiError> {
        let mut current = TranscriptionSession::new();
        current
            .apply_update(&session, &SimConfig::default())
            .map(|()| current)
    }

    #[test]
    fn a_full_ga_update_is_applied() {
        let session = update(json!({
            "type": "transcription",
            "audio": { "input": {
                "format": { "type": "audio/pcm", "rate": 24000 },
                "transcription": { "model": "gpt-4o-transcribe", "language": "en", "prompt": "cooking" },
                "noise_reduction": { "type": "near_field" },
                "turn_detection": null,
            }},
            "include": ["item.input_audio_transcription.logprobs"],
        }))
        .expect("valid update");
        let shown = session.session_json();
        assert_eq!(
            shown["audio"]["input"]["transcription"]["model"],
            "gpt-4o-transcribe"
        );
        assert!(shown["audio"]["input"]["turn_detection"].is_null());
        assert_eq!(session.input.turn_detection, TurnDetection::Manual);
        assert!(session.wants_logprobs());
        assert_eq!(session.prompt(), "cooking");
    }

    #[test]
    fn partial_updates_keep_the_rest() {
        let mut session = TranscriptionSession::new();
        session
            .apply_update(
                &json!({"type": "transcription", "audio": {"input": {"transcription": {"language": "fr"}}}}),
                &SimConfig::default(),
            )
            .expect("valid update");
        let shown = session.session_json();
        assert_eq!(
            shown["audio"]["input"]["transcription"]["model"],
            DEFAULT_TRANSCRIPTION_MODEL
        );
        assert_eq!(shown["audio"]["input"]["transcription"]["language"], "fr");
        assert_eq!(
            shown["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );
    }

    #[test]
    fn invalid_updates_name_the_parameter_and_change_nothing() {
        let cases = [
            (
                json!({"audio": {}}),
                "session.type",
                "missing_required_parameter",
            ),
            (
                json!({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}),
                "session.audio.input.format.rate",
                "invalid_value",
            ),
            (
                json!({"type": "transcription", "input_audio_format": "pcm16"}),
                "session.input_audio_format",
                "unknown_parameter",
            ),
            (
                json!({"type": "transcription", "audio": {"input": {"transcription": {"model": 5}}}}),
                "session.audio.input.transcription.model",
                "invalid_type",
            ),
            (
                json!({"type": "transcription", "audio": {"input": {"transcription": {"model": "gpt-nope"}}}}),
                "session.audio.input.transcription.model",
                "model_not_found",
            ),
            (
                json!({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "magic"}}}}),
                "session.audio.input.turn_detection.type",
                "invalid_value",
            ),
        ];
        for (session, param, code) in cases {
            update(session.clone())
                .expect_err("invalid update")
                .assert_names(param, code, &session);
        }
    }

    #[test]
    fn semantic_vad_uses_a_shorter_silence() {
        let session = update(json!({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}))
            .expect("valid update");
        let params = session.input.turn_detection.vad_params().expect("vad on");
        assert!(params.silence_duration_ms < vad::DEFAULT_SILENCE_DURATION_MS);
    }
}
