//! The speech-to-speech upstream: one OpenAI Realtime *conversation* WebSocket per browser
//! session, GA shape (`docs/openai-wire.md` §6): `…/realtime?model=…`, `session.update` with
//! `session.type = "realtime"`, audio in as `input_audio_buffer.append`, audio out as
//! `response.output_audio.delta`, the answer's words as `response.output_audio_transcript.*`
//! and the user's as `conversation.item.input_audio_transcription.*`.
//!
//! Like the transcriber, a task owns the socket and talks to the session over bounded
//! channels ([`AgentCommand`] in, [`AgentEvent`] out); it shares the transcriber's connect,
//! keepalive and relay code. Server events are read leniently: unknown types and fields are
//! ignored.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use protocol::TurnDetection;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::realtime::{
    Parsed, TRANSCRIBER_COMMAND_QUEUE_FRAMES, append_event, connect_with_retry,
    fatal_session_error, relay,
};
use super::{UpstreamConfig, UpstreamError};

/// Events buffered towards the session: audio deltas among them (about 100 ms each), so this
/// is several seconds of answer; the session reads them promptly.
const AGENT_EVENT_QUEUE: usize = 128;

/// What the session asks of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// Microphone audio: PCM16 LE mono 24 kHz.
    Append(Bytes),
    /// End of the user's turn (client turn detection): the buffer becomes a user item.
    Commit,
    /// Ask for an answer (client turn detection: right after the commit, without waiting
    /// for its acknowledgement).
    Respond,
    /// Forget audio appended since the last commit.
    Clear,
    /// Stop the answer in progress.
    Cancel,
    /// Cut the model's memory of an assistant item at what the user heard.
    Truncate {
        /// The assistant item.
        item_id: String,
        /// Milliseconds of its audio that were played.
        audio_end_ms: u64,
    },
    /// Adds a text message to the conversation (to give a fresh session the history).
    AddMessage {
        /// `user` or `assistant`.
        assistant: bool,
        /// The text.
        text: String,
    },
}

/// How an answer ended, from `response.done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerStatus {
    /// Spoken to its end.
    Completed,
    /// Cancelled (by us, or by the upstream's turn detection).
    Cancelled,
    /// Cut by a limit (`max_output_tokens`, the content filter).
    Incomplete,
    /// Failed upstream.
    Failed {
        /// The upstream's message, for the log.
        message: String,
    },
}

/// What the conversation reports.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The upstream heard the user start speaking (server turn detection).
    SpeechStarted {
        /// The user item the speech becomes.
        item_id: String,
    },
    /// The upstream heard the user stop speaking (server turn detection).
    SpeechStopped {
        /// The user item.
        item_id: String,
    },
    /// The user's audio became an item.
    Committed {
        /// The user item.
        item_id: String,
    },
    /// More of the user's words.
    UserDelta {
        /// The user item.
        item_id: String,
        /// Text to append.
        delta: String,
    },
    /// The user's words, whole.
    UserTranscript {
        /// The user item.
        item_id: String,
        /// The text.
        transcript: String,
    },
    /// Transcribing the user's words failed (the model still heard them).
    UserTranscriptFailed {
        /// The user item.
        item_id: String,
    },
    /// An answer began.
    ResponseCreated {
        /// The upstream's response id.
        response_id: String,
    },
    /// Audio of an answer: PCM16 LE mono 24 kHz.
    Audio {
        /// The upstream's response id.
        response_id: String,
        /// The assistant item the audio belongs to.
        item_id: String,
        /// The samples.
        pcm: Bytes,
    },
    /// More of the answer's words.
    AnswerDelta {
        /// The upstream's response id.
        response_id: String,
        /// Text to append.
        delta: String,
    },
    /// The answer ended.
    ResponseDone {
        /// The upstream's response id.
        response_id: String,
        /// How.
        status: AnswerStatus,
    },
    /// A commit found (almost) no audio.
    CommitEmpty,
    /// A recoverable `error` event; the session stays open.
    Error {
        /// The upstream's code.
        code: Option<String>,
        /// The upstream's message, for the log.
        message: String,
    },
    /// The connection failed or ended; the conversation is gone.
    Closed(UpstreamError),
}

/// The session's end of a running conversation. Dropping it ends the task and closes the
/// socket.
#[derive(Debug)]
pub struct AgentHandle {
    /// Commands to the upstream.
    pub commands: mpsc::Sender<AgentCommand>,
    /// Events from the upstream.
    pub events: mpsc::Receiver<AgentEvent>,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

/// Opens speech-to-speech conversations.
#[derive(Debug, Clone)]
pub struct Agent {
    config: Arc<UpstreamConfig>,
    turn_detection: TurnDetection,
    instructions: String,
}

impl Agent {
    /// Conversations with this turn detection, under these instructions (the system prompt).
    pub fn new(
        config: Arc<UpstreamConfig>,
        turn_detection: TurnDetection,
        instructions: String,
    ) -> Self {
        Self {
            config,
            turn_detection,
            instructions,
        }
    }

    /// Starts connecting in the background and returns at once; commands sent before the
    /// socket is up wait in the queue.
    pub fn spawn(&self, cancel: CancellationToken) -> AgentHandle {
        let (command_tx, command_rx) = mpsc::channel(TRANSCRIBER_COMMAND_QUEUE_FRAMES);
        let (event_tx, event_rx) = mpsc::channel(AGENT_EVENT_QUEUE);
        let stop = cancel.clone();
        let this = self.clone();
        tokio::spawn(
            async move {
                if let Err(error) = this.run(command_rx, &event_tx, &cancel).await {
                    let _ = event_tx.send(AgentEvent::Closed(error)).await;
                }
            }
            .in_current_span(),
        );
        AgentHandle {
            commands: command_tx,
            events: event_rx,
            _stop_on_drop: stop.drop_guard(),
        }
    }

    async fn run(
        &self,
        commands: mpsc::Receiver<AgentCommand>,
        events: &mpsc::Sender<AgentEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), UpstreamError> {
        let url = format!(
            "{}?model={}",
            self.config.endpoints.conversation_url, self.config.realtime_model
        );
        let socket = tokio::select! {
            socket = connect_with_retry("conversation connect", &self.config, &url) => socket?,
            () = cancel.cancelled() => return Ok(()),
        };
        let first = session_update(&self.config, self.turn_detection, &self.instructions);
        let mut append_text = String::new();
        let encode = move |command| encode(command, &mut append_text);
        relay(
            &self.config,
            socket,
            first,
            commands,
            events,
            cancel,
            encode,
            parse_server_event,
        )
        .await
    }
}

/// The `session.update` of a voice-agent session (`docs/openai-wire.md` §6.2): audio in and
/// out at 24 kHz, the user's words transcribed for the page, and turn detection as configured
/// (`null` for the client's: the proxy commits and asks for each answer).
pub fn session_update(
    config: &UpstreamConfig,
    turn_detection: TurnDetection,
    instructions: &str,
) -> Value {
    let mut transcription = json!({ "model": config.stt_model });
    if let Some(language) = &config.stt_language {
        transcription["language"] = json!(language);
    }
    let turn_detection = match turn_detection {
        TurnDetection::Client => Value::Null,
        TurnDetection::ServerVad => json!({
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "create_response": true,
            "interrupt_response": true
        }),
        TurnDetection::SemanticVad => json!({
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": true,
            "interrupt_response": true
        }),
    };
    let format = json!({ "type": "audio/pcm", "rate": protocol::SAMPLE_RATE_HZ });
    json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": format,
                    "transcription": transcription,
                    "turn_detection": turn_detection
                },
                "output": { "format": format, "voice": config.realtime_voice }
            }
        }
    })
}

/// One command as the text of its frame.
fn encode(command: AgentCommand, append_text: &mut String) -> String {
    match command {
        AgentCommand::Append(pcm) => {
            append_event(&pcm, append_text);
            std::mem::take(append_text)
        }
        AgentCommand::Commit => json!({"type": "input_audio_buffer.commit"}).to_string(),
        AgentCommand::Respond => json!({"type": "response.create"}).to_string(),
        AgentCommand::Clear => json!({"type": "input_audio_buffer.clear"}).to_string(),
        AgentCommand::Cancel => json!({"type": "response.cancel"}).to_string(),
        AgentCommand::Truncate {
            item_id,
            audio_end_ms,
        } => json!({
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": audio_end_ms
        })
        .to_string(),
        AgentCommand::AddMessage { assistant, text } => {
            let (role, kind) = if assistant {
                ("assistant", "output_text")
            } else {
                ("user", "input_text")
            };
            json!({
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": role,
                    "content": [{ "type": kind, "text": text }]
                }
            })
            .to_string()
        }
    }
}

/// Reads one server event, tolerating unknown types and missing optional fields.
fn parse_server_event(text: &str) -> Parsed<AgentEvent> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("unreadable conversation event ignored");
        return Parsed::Ignored;
    };
    let string = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let item_id = || string(&value, "item_id").unwrap_or_default();
    let response_id = || string(&value, "response_id").unwrap_or_default();
    let event = match value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "input_audio_buffer.speech_started" => AgentEvent::SpeechStarted { item_id: item_id() },
        "input_audio_buffer.speech_stopped" => AgentEvent::SpeechStopped { item_id: item_id() },
        "input_audio_buffer.committed" => AgentEvent::Committed { item_id: item_id() },
        "conversation.item.input_audio_transcription.delta" => AgentEvent::UserDelta {
            item_id: item_id(),
            delta: string(&value, "delta").unwrap_or_default(),
        },
        "conversation.item.input_audio_transcription.completed" => AgentEvent::UserTranscript {
            item_id: item_id(),
            transcript: string(&value, "transcript").unwrap_or_default(),
        },
        "conversation.item.input_audio_transcription.failed" => {
            AgentEvent::UserTranscriptFailed { item_id: item_id() }
        }
        "response.created" => AgentEvent::ResponseCreated {
            response_id: value
                .pointer("/response/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        "response.output_audio.delta" => {
            let Some(pcm) = value
                .get("delta")
                .and_then(Value::as_str)
                .and_then(|delta| base64::engine::general_purpose::STANDARD.decode(delta).ok())
            else {
                tracing::warn!("audio delta without readable audio ignored");
                return Parsed::Ignored;
            };
            AgentEvent::Audio {
                response_id: response_id(),
                item_id: item_id(),
                pcm: Bytes::from(pcm),
            }
        }
        "response.output_audio_transcript.delta" => AgentEvent::AnswerDelta {
            response_id: response_id(),
            delta: string(&value, "delta").unwrap_or_default(),
        },
        "response.done" => {
            let response = value.get("response").cloned().unwrap_or_default();
            let status = match response.get("status").and_then(Value::as_str) {
                Some("cancelled") => AnswerStatus::Cancelled,
                Some("incomplete") => AnswerStatus::Incomplete,
                Some("failed") => AnswerStatus::Failed {
                    message: response
                        .pointer("/status_details/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("the answer failed upstream")
                        .to_owned(),
                },
                _ => AnswerStatus::Completed,
            };
            AgentEvent::ResponseDone {
                response_id: string(&response, "id").unwrap_or_default(),
                status,
            }
        }
        "error" => {
            let error = value.get("error").cloned().unwrap_or_default();
            let code = string(&error, "code");
            let message = string(&error, "message").unwrap_or_default();
            if code.as_deref() == Some("input_audio_buffer_commit_empty") {
                AgentEvent::CommitEmpty
            } else if let Some(fatal) = fatal_session_error(code.as_deref(), &message) {
                return Parsed::Fatal(fatal);
            } else {
                AgentEvent::Error { code, message }
            }
        }
        // session.*, conversation.item.added/done/truncated, response.output_item.*,
        // response.content_part.*, the .done events of audio and transcript,
        // rate_limits.updated and anything new.
        _ => return Parsed::Ignored,
    };
    Parsed::Event(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoints;

    fn config() -> UpstreamConfig {
        UpstreamConfig::for_tests(Endpoints::from_base("http://127.0.0.1:1/v1").unwrap())
    }

    #[test]
    fn session_update_is_the_ga_realtime_shape() {
        let update = session_update(&config(), TurnDetection::Client, "Be brief.");
        assert_eq!(update["type"], "session.update");
        let session = &update["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["instructions"], "Be brief.");
        assert_eq!(session["output_modalities"], json!(["audio"]));
        assert!(session["audio"]["input"]["turn_detection"].is_null());
        assert_eq!(
            session["audio"]["input"]["format"],
            json!({"type": "audio/pcm", "rate": 24000})
        );
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert!(
            session.get("model").is_none(),
            "the model is fixed by the URL"
        );
        assert!(
            session.get("temperature").is_none(),
            "GA has no temperature"
        );
        let server = session_update(&config(), TurnDetection::ServerVad, "");
        let detection = &server["session"]["audio"]["input"]["turn_detection"];
        assert_eq!(detection["type"], "server_vad");
        assert_eq!(detection["interrupt_response"], true);
    }

    #[test]
    fn answer_events_are_read() {
        let audio = parse_server_event(
            r#"{"type":"response.output_audio.delta","response_id":"r1","item_id":"a1","output_index":0,"content_index":0,"delta":"AAECAw=="}"#,
        );
        assert_eq!(
            audio,
            Parsed::Event(AgentEvent::Audio {
                response_id: "r1".into(),
                item_id: "a1".into(),
                pcm: Bytes::from_static(&[0, 1, 2, 3])
            })
        );
        let done = parse_server_event(
            r#"{"type":"response.done","response":{"id":"r1","status":"cancelled","status_details":{"type":"cancelled","reason":"client_cancelled"}}}"#,
        );
        assert_eq!(
            done,
            Parsed::Event(AgentEvent::ResponseDone {
                response_id: "r1".into(),
                status: AnswerStatus::Cancelled
            })
        );
        let failed = parse_server_event(
            r#"{"type":"response.done","response":{"id":"r2","status":"failed","status_details":{"type":"failed","error":{"type":"server_error","message":"boom"}}}}"#,
        );
        assert_eq!(
            failed,
            Parsed::Event(AgentEvent::ResponseDone {
                response_id: "r2".into(),
                status: AnswerStatus::Failed {
                    message: "boom".into()
                }
            })
        );
    }

    #[test]
    fn events_a_client_must_tolerate_are_ignored() {
        for text in [
            r#"{"type":"conversation.item.added","item":{"id":"x"}}"#,
            r#"{"type":"conversation.item.truncated","item_id":"a1","audio_end_ms":10}"#,
            r#"{"type":"response.output_audio.done","response_id":"r1"}"#,
            r#"{"type":"rate_limits.updated","rate_limits":[]}"#,
            r#"{"type":"something.new"}"#,
            "not json",
        ] {
            assert_eq!(parse_server_event(text), Parsed::Ignored, "{text}");
        }
        assert!(matches!(
            parse_server_event(
                r#"{"type":"error","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"no"}}"#
            ),
            Parsed::Fatal(_)
        ));
    }

    #[test]
    fn commands_are_ga_client_events() {
        let mut scratch = String::new();
        let truncate: Value = serde_json::from_str(&encode(
            AgentCommand::Truncate {
                item_id: "a1".into(),
                audio_end_ms: 1500,
            },
            &mut scratch,
        ))
        .unwrap();
        assert_eq!(
            truncate,
            json!({"type": "conversation.item.truncate", "item_id": "a1", "content_index": 0, "audio_end_ms": 1500})
        );
        let item: Value = serde_json::from_str(&encode(
            AgentCommand::AddMessage {
                assistant: false,
                text: "hi".into(),
            },
            &mut scratch,
        ))
        .unwrap();
        assert_eq!(item["item"]["content"][0]["type"], "input_text");
        assert_eq!(
            serde_json::from_str::<Value>(&encode(AgentCommand::Respond, &mut scratch)).unwrap()["type"],
            "response.create"
        );
    }
}
