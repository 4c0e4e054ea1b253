//! The configuration of a Realtime conversation session (docs/openai-wire.md §6): the
//! `session` object of `session.created` / `session.updated`, the validation of a GA
//! `session.update` with `session.type: "realtime"`, and the overrides a `response.create`
//! may carry.
//!
//! As in a transcription session (`session`), updates are partial ("only the fields present
//! change"; `null` clears `turn_detection` and `transcription`) and atomic (an invalid update
//! changes nothing), and a key the GA schema does not have is `unknown_parameter`. That is
//! also what the beta's flat fields (`modalities`, `voice`, `input_audio_format`,
//! `turn_detection`, `temperature`, ...) get, as the service answers them. The `model` cannot
//! change, nor the voice once the assistant has spoken. Fields the simulator accepts without
//! acting on them (`tools`, `tool_choice`, `max_output_tokens`, `truncation`, `tracing`,
//! `prompt`, `reasoning`, `parallel_tool_calls`, `noise_reduction`, `idle_timeout_ms`) are
//! checked for their type and shown back.

use serde_json::{Map, Value, json};

use crate::config::SimConfig;
use crate::error::ApiError;
use crate::input::Configurable;
use crate::params;
use crate::session::{self, AudioInput, REALTIME, TRANSCRIPTION, TurnDetection, pcm_format};
use crate::speech;

/// Conversation model of a `?model=`-less conversation session.
const DEFAULT_MODEL: &str = "gpt-realtime";
/// Voice of a new session (§6 server defaults).
const DEFAULT_VOICE: &str = "marin";
/// Instructions of a new session. The service has long default instructions of its own; a
/// short stand-in shows that there are some.
const DEFAULT_INSTRUCTIONS: &str = "You are a helpful, witty, and friendly AI. Your voice and \
    personality should be warm and engaging. Keep your answers short.";
/// `silence_duration_ms` of a new session, as the service's `session.created` shows it (an
/// update that leaves it out gets the documented 500 ms).
const CREATED_SILENCE_DURATION_MS: u64 = 200;
/// Built-in voices of Realtime conversations (§6); custom voices are `{"id": "voice_…"}`.
const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];
/// Allowed `audio.output.speed`.
const SPEED_RANGE: (f64, f64) = (0.25, 1.5);
/// Allowed `server_vad.idle_timeout_ms`.
const IDLE_TIMEOUT_RANGE_MS: (u64, u64) = (5_000, 30_000);
/// Allowed integer `max_output_tokens` (or `"inf"`).
const MAX_OUTPUT_TOKENS_RANGE: (u64, u64) = (1, 4_096);
/// Keys of a GA realtime `session`.
const SESSION_KEYS: &[&str] = &[
    "type",
    "model",
    "instructions",
    "output_modalities",
    "audio",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "truncation",
    "tracing",
    "prompt",
    "include",
    "reasoning",
];
/// Keys of `session.audio.output`.
const OUTPUT_KEYS: &[&str] = &["format", "voice", "speed"];
/// Keys of the `response` of a `response.create`.
const RESPONSE_KEYS: &[&str] = &[
    "instructions",
    "output_modalities",
    "audio",
    "max_output_tokens",
    "metadata",
    "conversation",
    "input",
    "tools",
    "tool_choice",
    "prompt",
];

/// What a response produces: `["audio"]` (audio and its transcript) or `["text"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modality {
    Audio,
    Text,
}

impl Modality {
    /// The `output_modalities` array.
    pub(crate) fn to_json(self) -> Value {
        match self {
            Self::Audio => json!(["audio"]),
            Self::Text => json!(["text"]),
        }
    }
}

/// The effective configuration of a conversation session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConversationConfig {
    pub(crate) id: String,
    model: String,
    expires_at: u64,
    pub(crate) instructions: String,
    pub(crate) modality: Modality,
    /// `audio.input`; input transcription is off by default.
    input: AudioInput,
    /// `turn_detection.create_response`: server VAD starts a response after each turn.
    pub(crate) create_response: bool,
    /// `turn_detection.interrupt_response`: speech cancels the response in progress.
    pub(crate) interrupt_response: bool,
    /// `server_vad.idle_timeout_ms` (shown, not acted on).
    idle_timeout_ms: Value,
    /// `audio.output.voice`: a name or `{"id": "voice_…"}`.
    pub(crate) voice: Value,
    pub(crate) speed: f64,
    /// Accepted fields the simulator only shows back, in the order the service lists them.
    passive: Map<String, Value>,
}

impl ConversationConfig {
    /// A new session with the service's defaults (§6) that ends at `expires_at` (Unix
    /// seconds).
    pub(crate) fn new(id: &str, model: Option<&str>, expires_at: u64) -> Self {
        let passive = json!({
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": null,
            "truncation": "auto",
            "prompt": null,
            "include": null,
        });
        Self {
            id: id.to_owned(),
            model: model.unwrap_or(DEFAULT_MODEL).to_owned(),
            expires_at,
            instructions: DEFAULT_INSTRUCTIONS.to_owned(),
            modality: Modality::Audio,
            input: AudioInput::conversing(CREATED_SILENCE_DURATION_MS),
            create_response: true,
            interrupt_response: true,
            idle_timeout_ms: Value::Null,
            voice: json!(DEFAULT_VOICE),
            speed: 1.0,
            passive: passive.as_object().cloned().unwrap_or_default(),
        }
    }

    /// Whether committed user audio is transcribed (`audio.input.transcription` set).
    pub(crate) fn transcribes(&self) -> bool {
        self.input.transcription.is_some()
    }

    /// The transcription prompt (billed as text tokens of the transcription).
    pub(crate) fn transcription_prompt(&self) -> &str {
        self.input.transcription_prompt()
    }

    /// Whether `include` asks for the logprobs of input transcription.
    pub(crate) fn wants_logprobs(&self) -> bool {
        self.passive
            .get("include")
            .is_some_and(session::includes_logprobs)
    }

    /// Applies the `session` of a `session.update`; on error nothing changes. `config` says
    /// which models are served; `voice_locked` once the assistant has spoken.
    pub(crate) fn apply_update(
        &mut self,
        session: &Value,
        config: &SimConfig,
        voice_locked: bool,
    ) -> Result<(), ApiError> {
        let mut next = self.clone();
        let fields = session::object(session, "session")?;
        if session::session_type(fields)? == TRANSCRIPTION {
            return Err(session::transcription_update_in_conversation());
        }
        session::check_keys(fields, "session", SESSION_KEYS)?;
        if fields.contains_key("model") {
            return Err(ApiError::invalid_request(
                "The model of a session cannot be changed: open a new session with \
                 '?model=' to use another model.",
                Some("session.model"),
                Some("invalid_value"),
            ));
        }
        if let Some(instructions) = fields.get("instructions") {
            next.instructions = string(instructions, "session.instructions")?;
        }
        if let Some(modalities) = fields.get("output_modalities") {
            next.modality = parse_modalities(modalities, "session.output_modalities")?;
        }
        if let Some(audio) = session::sub_object(fields, "session", "audio")? {
            session::check_keys(audio, "session.audio", &["input", "output"])?;
            if let Some(input) = session::sub_object(audio, "session.audio", "input")? {
                next.apply_input(input, config)?;
            }
            if let Some(output) = session::sub_object(audio, "session.audio", "output")? {
                next.apply_output(output)?;
            }
        }
        for (key, value) in fields {
            let checked = match key.as_str() {
                "tools" => validate_tools(value, "session.tools"),
                "tool_choice" => validate_tool_choice(value, "session.tool_choice"),
                "max_output_tokens" => {
                    validate_max_output_tokens(value, "session.max_output_tokens")
                }
                "parallel_tool_calls" => validate_bool(value, "session.parallel_tool_calls"),
                "include" => session::validate_include(value).map(drop),
                "truncation" | "tracing" | "prompt" | "reasoning" => Ok(()),
                _ => continue,
            };
            checked?;
            next.passive.insert(key.clone(), value.clone());
        }
        if voice_locked && next.voice != self.voice {
            return Err(ApiError::invalid_request(
                "Cannot update a conversation's voice if assistant audio is present.",
                Some("session.audio.output.voice"),
                Some("cannot_update_voice"),
            ));
        }
        *self = next;
        Ok(())
    }

    fn apply_input(
        &mut self,
        input: &Map<String, Value>,
        config: &SimConfig,
    ) -> Result<(), ApiError> {
        self.input.apply(input, config)?;
        if let Some(detection) = input.get("turn_detection") {
            let flags = parse_response_flags(detection)?;
            self.create_response = flags.create_response;
            self.interrupt_response = flags.interrupt_response;
            self.idle_timeout_ms = flags.idle_timeout_ms;
        }
        Ok(())
    }

    fn apply_output(&mut self, output: &Map<String, Value>) -> Result<(), ApiError> {
        session::check_keys(output, "session.audio.output", OUTPUT_KEYS)?;
        if let Some(format) = output.get("format") {
            session::validate_format(format, "session.audio.output.format")?;
        }
        if let Some(voice) = output.get("voice") {
            self.voice = parse_voice(voice, "session.audio.output.voice")?;
        }
        if let Some(speed) = output.get("speed") {
            self.speed =
                params::number_in(speed, "session.audio.output.speed", "a number", SPEED_RANGE)?;
        }
        Ok(())
    }
}

impl Configurable for ConversationConfig {
    fn audio_input(&self) -> &AudioInput {
        &self.input
    }

    fn session_json(&self) -> Value {
        let mut input = self.input.to_json();
        if let Some(Value::Object(fields)) = input.get_mut("turn_detection") {
            fields.insert("create_response".into(), json!(self.create_response));
            fields.insert("interrupt_response".into(), json!(self.interrupt_response));
            if matches!(self.input.turn_detection, TurnDetection::ServerVad { .. }) {
                fields.insert("idle_timeout_ms".into(), self.idle_timeout_ms.clone());
            }
        }
        let mut session = json!({
            "type": REALTIME,
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "expires_at": self.expires_at,
            "output_modalities": self.modality.to_json(),
            "instructions": self.instructions,
            "audio": {
                "input": input,
                "output": { "format": pcm_format(), "voice": self.voice, "speed": self.speed },
            },
        });
        if let Value::Object(fields) = &mut session {
            for (key, value) in &self.passive {
                fields.insert(key.clone(), value.clone());
            }
        }
        session
    }
}

/// The voice's name for the synthesizer: a built-in name, or a custom voice's id.
pub(crate) fn voice_name(voice: &Value) -> &str {
    match voice {
        Value::String(name) => name,
        other => other
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_VOICE),
    }
}

/// What one `response.create` asks for: the session's settings with its overrides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResponseOptions {
    pub(crate) instructions: String,
    pub(crate) modality: Modality,
    pub(crate) voice: Value,
    pub(crate) speed: f64,
    pub(crate) max_output_tokens: Value,
    pub(crate) metadata: Value,
    /// `conversation: "auto"` (the default): the response writes to the conversation.
    /// `"none"`: an out-of-band response, whose item joins no conversation.
    pub(crate) in_conversation: bool,
    /// The text of the last user message among the response's own `input`, if it has one.
    pub(crate) input_text: Option<String>,
}

impl ResponseOptions {
    /// The session's settings: a response server VAD starts.
    pub(crate) fn from_session(session: &ConversationConfig) -> Self {
        Self {
            instructions: session.instructions.clone(),
            modality: session.modality,
            voice: session.voice.clone(),
            speed: session.speed,
            max_output_tokens: session
                .passive
                .get("max_output_tokens")
                .cloned()
                .unwrap_or_else(|| json!("inf")),
            metadata: Value::Null,
            in_conversation: true,
            input_text: None,
        }
    }

    /// The settings of a `response.create` whose `response` is `response` (absent or an
    /// object of overrides).
    pub(crate) fn parse(
        response: Option<&Value>,
        session: &ConversationConfig,
    ) -> Result<Self, ApiError> {
        let mut options = Self::from_session(session);
        let Some(response) = response.filter(|response| !response.is_null()) else {
            return Ok(options);
        };
        let fields = session::object(response, "response")?;
        session::check_keys(fields, "response", RESPONSE_KEYS)?;
        if let Some(instructions) = fields.get("instructions") {
            options.instructions = string(instructions, "response.instructions")?;
        }
        if let Some(modalities) = fields.get("output_modalities") {
            options.modality = parse_modalities(modalities, "response.output_modalities")?;
        }
        if let Some(audio) = session::sub_object(fields, "response", "audio")? {
            session::check_keys(audio, "response.audio", &["output"])?;
            if let Some(output) = session::sub_object(audio, "response.audio", "output")? {
                session::check_keys(output, "response.audio.output", &["format", "voice"])?;
                if let Some(format) = output.get("format") {
                    session::validate_format(format, "response.audio.output.format")?;
                }
                if let Some(voice) = output.get("voice") {
                    options.voice = parse_voice(voice, "response.audio.output.voice")?;
                }
            }
        }
        if let Some(tokens) = fields.get("max_output_tokens") {
            validate_max_output_tokens(tokens, "response.max_output_tokens")?;
            options.max_output_tokens = tokens.clone();
        }
        match fields.get("metadata") {
            None | Some(Value::Null) => {}
            Some(metadata @ Value::Object(_)) => options.metadata = metadata.clone(),
            Some(other) => {
                return Err(ApiError::invalid_type(
                    "response.metadata",
                    "an object",
                    other,
                ));
            }
        }
        let conversation = params::optional_choice(
            fields.get("conversation"),
            "response.conversation",
            &["auto", "none"],
        )?;
        if conversation == Some("none") {
            options.in_conversation = false;
        }
        if let Some(input) = fields.get("input") {
            let items = input
                .as_array()
                .ok_or_else(|| ApiError::invalid_type("response.input", "an array", input))?;
            options.input_text = items
                .iter()
                .rev()
                .filter(|item| item["role"] == "user")
                .find_map(message_text);
        }
        if let Some(tools) = fields.get("tools") {
            validate_tools(tools, "response.tools")?;
        }
        if let Some(choice) = fields.get("tool_choice") {
            validate_tool_choice(choice, "response.tool_choice")?;
        }
        Ok(options)
    }
}

/// The text of a message item's `input_text` / `output_text` / `text` parts (and the
/// `transcript` of audio parts), joined; `None` if it has none.
pub(crate) fn message_text(item: &Value) -> Option<String> {
    let parts = item.get("content")?.as_array()?;
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|part| {
            part.get("text")
                .or_else(|| part.get("transcript"))
                .and_then(Value::as_str)
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join(" "))
}

/// `create_response`, `interrupt_response` and `idle_timeout_ms` of a turn detection.
#[derive(Debug, Clone, PartialEq)]
struct ResponseFlags {
    create_response: bool,
    interrupt_response: bool,
    idle_timeout_ms: Value,
}

/// The response flags of a `turn_detection` that [`session::parse_turn_detection`] accepted
/// (so its keys are known); defaults for `null`.
fn parse_response_flags(detection: &Value) -> Result<ResponseFlags, ApiError> {
    const PATH: &str = "session.audio.input.turn_detection";
    let flag = |key: &str| {
        params::optional_bool(detection.get(key), &format!("{PATH}.{key}"))
            .map(|flag| flag.unwrap_or(true))
    };
    let idle_timeout_ms = match detection.get("idle_timeout_ms") {
        None | Some(Value::Null) => Value::Null,
        Some(value) => {
            let param = format!("{PATH}.idle_timeout_ms");
            params::integer_in(value, &param, "an integer", IDLE_TIMEOUT_RANGE_MS)?;
            value.clone()
        }
    };
    Ok(ResponseFlags {
        create_response: flag("create_response")?,
        interrupt_response: flag("interrupt_response")?,
        idle_timeout_ms,
    })
}

/// `["audio"]` or `["text"]`; both at once is refused (§6: "never both").
fn parse_modalities(value: &Value, param: &str) -> Result<Modality, ApiError> {
    const MODALITIES: &[&str] = &["audio", "text"];
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::invalid_type(param, "an array", value))?;
    if items.is_empty() {
        return Err(ApiError::empty_array(param));
    }
    let mut audio = false;
    let mut text = false;
    for (index, item) in items.iter().enumerate() {
        let item_param = format!("{param}[{index}]");
        match item.as_str() {
            Some("audio") => audio = true,
            Some("text") => text = true,
            Some(other) => return Err(ApiError::invalid_value(&item_param, other, MODALITIES)),
            None => return Err(ApiError::invalid_type(&item_param, "a string", item)),
        }
    }
    match (audio, text) {
        (true, true) => Err(ApiError::invalid_request(
            format!(
                "Invalid '{param}': 'audio' and 'text' cannot be combined. Use ['audio'] (audio \
                 with its transcript) or ['text']."
            ),
            Some(param),
            Some("invalid_value"),
        )),
        (true, false) => Ok(Modality::Audio),
        _ => Ok(Modality::Text),
    }
}

/// A built-in voice name or `{"id": "…"}`, kept as given (the session shows it back).
fn parse_voice(voice: &Value, param: &str) -> Result<Value, ApiError> {
    speech::parse_voice(voice, param, VOICES).map(|_| voice.clone())
}

fn string(value: &Value, param: &str) -> Result<String, ApiError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid_type(param, "a string", value))
}

fn validate_bool(value: &Value, param: &str) -> Result<(), ApiError> {
    match value {
        Value::Bool(_) => Ok(()),
        other => Err(ApiError::invalid_type(param, "a boolean", other)),
    }
}

fn validate_tools(value: &Value, param: &str) -> Result<(), ApiError> {
    params::array_of(value, param, "an object", Value::is_object).map(drop)
}

fn validate_tool_choice(value: &Value, param: &str) -> Result<(), ApiError> {
    const CHOICES: &[&str] = &["auto", "none", "required"];
    match value {
        Value::String(choice) if CHOICES.contains(&choice.as_str()) => Ok(()),
        Value::String(choice) => Err(ApiError::invalid_value(param, choice, CHOICES)),
        Value::Object(_) => Ok(()),
        other => Err(ApiError::invalid_type(
            param,
            "a string or an object",
            other,
        )),
    }
}

/// 1–4096 or `"inf"`.
fn validate_max_output_tokens(value: &Value, param: &str) -> Result<(), ApiError> {
    match value {
        Value::String(inf) if inf == "inf" => Ok(()),
        Value::String(other) => Err(ApiError::invalid_value(param, other, &["inf"])),
        Value::Number(_) => {
            params::integer_in(value, param, "an integer or 'inf'", MAX_OUTPUT_TOKENS_RANGE)
                .map(drop)
        }
        other => Err(ApiError::invalid_type(param, "an integer or 'inf'", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(session: Value) -> Result<ConversationConfig, ApiError> {
        let mut current = ConversationConfig::new("sess_1", None, 0);
        current
            .apply_update(&session, &SimConfig::default(), false)
            .map(|()| current)
    }

    #[test]
    fn a_new_session_shows_the_service_defaults() {
        let shown = ConversationConfig::new("sess_1", None, 0).session_json();
        assert_eq!(shown["type"], "realtime");
        assert_eq!(shown["model"], DEFAULT_MODEL);
        assert_eq!(shown["output_modalities"], json!(["audio"]));
        assert_eq!(shown["audio"]["output"]["voice"], "marin");
        let detection = &shown["audio"]["input"]["turn_detection"];
        assert_eq!(detection["type"], "server_vad");
        assert_eq!(detection["silence_duration_ms"], 200);
        assert_eq!(detection["create_response"], true);
        assert_eq!(detection["interrupt_response"], true);
        assert!(shown["audio"]["input"]["transcription"].is_null());
        assert_eq!(shown["max_output_tokens"], "inf");
    }

    #[test]
    fn a_voice_agent_update_is_applied() {
        let session = update(json!({
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": { "type": "audio/pcm", "rate": 24000 },
                    "noise_reduction": { "type": "near_field" },
                    "transcription": { "model": "gpt-4o-mini-transcribe", "language": "en" },
                    "turn_detection": { "type": "semantic_vad", "eagerness": "high", "create_response": false },
                },
                "output": { "format": { "type": "audio/pcm", "rate": 24000 }, "voice": "cedar", "speed": 1.2 },
            },
            "max_output_tokens": 300,
            "tools": [],
            "tool_choice": "auto",
        }))
        .expect("valid update");
        assert_eq!(session.instructions, "Be brief.");
        assert!(session.transcribes());
        assert!(!session.create_response);
        assert!(session.interrupt_response);
        assert_eq!(voice_name(&session.voice), "cedar");
        let shown = session.session_json();
        assert_eq!(
            shown["audio"]["input"]["transcription"]["language"],
            json!("en")
        );
        assert_eq!(
            shown["audio"]["input"]["turn_detection"]["type"],
            "semantic_vad"
        );
        assert_eq!(shown["max_output_tokens"], 300);
        let off = {
            let mut session = session;
            session
                .apply_update(
                    &json!({"type": "realtime", "audio": {"input": {"transcription": null, "turn_detection": null}}}),
                    &SimConfig::default(),
                    false,
                )
                .expect("valid update");
            session
        };
        assert!(!off.transcribes());
        assert_eq!(off.input.turn_detection, TurnDetection::Manual);
        assert_eq!(off.instructions, "Be brief.", "the rest is kept");
    }

    #[test]
    fn beta_fields_and_bad_values_are_refused_and_change_nothing() {
        let cases = [
            (
                json!({"type": "realtime", "modalities": ["audio"]}),
                "session.modalities",
                "unknown_parameter",
            ),
            (
                json!({"type": "realtime", "voice": "alloy"}),
                "session.voice",
                "unknown_parameter",
            ),
            (
                json!({"type": "realtime", "input_audio_format": "pcm16"}),
                "session.input_audio_format",
                "unknown_parameter",
            ),
            (
                json!({"type": "realtime", "temperature": 0.8}),
                "session.temperature",
                "unknown_parameter",
            ),
            (
                json!({"type": "realtime", "turn_detection": null}),
                "session.turn_detection",
                "unknown_parameter",
            ),
            (
                json!({"type": "realtime", "model": "gpt-realtime"}),
                "session.model",
                "invalid_value",
            ),
            (
                json!({"type": "realtime", "output_modalities": ["audio", "text"]}),
                "session.output_modalities",
                "invalid_value",
            ),
            (
                json!({"type": "realtime", "audio": {"output": {"voice": "robot"}}}),
                "session.audio.output.voice",
                "invalid_value",
            ),
            (
                json!({"type": "realtime", "audio": {"output": {"speed": 2.0}}}),
                "session.audio.output.speed",
                "decimal_above_max_value",
            ),
            (
                json!({"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-nope"}}}}),
                "session.audio.input.transcription.model",
                "model_not_found",
            ),
            (
                json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 100}}}}),
                "session.audio.input.turn_detection.idle_timeout_ms",
                "integer_below_min_value",
            ),
            (
                json!({"type": "realtime", "max_output_tokens": 5000}),
                "session.max_output_tokens",
                "integer_above_max_value",
            ),
            (
                json!({"type": "transcription"}),
                "session.type",
                "invalid_value",
            ),
        ];
        for (session, param, code) in cases {
            update(session.clone())
                .expect_err("invalid update")
                .assert_names(param, code, &session);
        }
        let error = update(json!({"type": "realtime", "temperature": 0.8})).expect_err("beta");
        assert_eq!(error.message, "Unknown parameter: 'session.temperature'.");
    }

    #[test]
    fn the_voice_is_fixed_once_the_assistant_has_spoken() {
        let mut session = ConversationConfig::new("sess_1", None, 0);
        let change = json!({"type": "realtime", "audio": {"output": {"voice": "ash"}}});
        let error = session
            .apply_update(&change, &SimConfig::default(), true)
            .expect_err("locked");
        assert_eq!(error.code.as_deref(), Some("cannot_update_voice"));
        let same = json!({"type": "realtime", "audio": {"output": {"voice": "marin"}}});
        assert!(
            session
                .apply_update(&same, &SimConfig::default(), true)
                .is_ok()
        );
    }

    #[test]
    fn response_overrides_apply_to_one_response() {
        let session = ConversationConfig::new("sess_1", None, 0);
        let options = ResponseOptions::parse(
            Some(&json!({
                "instructions": "Answer briefly.",
                "output_modalities": ["text"],
                "audio": {"output": {"voice": {"id": "voice_123"}}},
                "metadata": {"topic": "weather"},
                "conversation": "none",
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}],
            })),
            &session,
        )
        .expect("valid overrides");
        assert_eq!(options.modality, Modality::Text);
        assert_eq!(voice_name(&options.voice), "voice_123");
        assert!(!options.in_conversation);
        assert_eq!(options.input_text.as_deref(), Some("Hi there"));
        let defaults = ResponseOptions::parse(None, &session).expect("no overrides");
        assert_eq!(defaults, ResponseOptions::from_session(&session));
        let error = ResponseOptions::parse(Some(&json!({"temperature": 1})), &session)
            .expect_err("unknown");
        assert_eq!(error.param.as_deref(), Some("response.temperature"));
    }
}
