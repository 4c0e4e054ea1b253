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
use tokio_util::sync::CancellationToken;

use super::realtime::{
    Parsed, Socket, SocketCommand, TRANSCRIBER_COMMAND_QUEUE_FRAMES, TranscriberEvent,
    UpstreamHandle, connect_and_relay, parse_input_event, spawn_socket_task,
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
    /// The input side, as a transcription session reports it: speech detected (server turn
    /// detection), commits, the user's words (`Delta`, `Completed`, `Failed`: the model heard
    /// the audio either way), `CommitEmpty` and recoverable errors. `Ready`, `TurnFailed` and
    /// `Closed` do not come this way.
    Input(TranscriberEvent),
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
    /// The connection failed or ended; the conversation is gone.
    Closed(UpstreamError),
}

/// The session's end of a running conversation.
pub type AgentHandle = UpstreamHandle<AgentCommand, AgentEvent>;

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
        let this = self.clone();
        spawn_socket_task(
            cancel,
            TRANSCRIBER_COMMAND_QUEUE_FRAMES,
            AGENT_EVENT_QUEUE,
            AgentEvent::Closed,
            move |commands, events, cancel| async move {
                let url = format!(
                    "{}?model={}",
                    this.config.endpoints.conversation_url, this.config.realtime_model
                );
                let socket = Socket {
                    what: "conversation connect",
                    url: &url,
                    first: session_update(&this.config, this.turn_detection, &this.instructions),
                };
                connect_and_relay(
                    &this.config,
                    socket,
                    commands,
                    &events,
                    &cancel,
                    parse_server_event,
                )
                .await
            },
        )
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

impl SocketCommand for AgentCommand {
    fn audio(&self) -> Option<&[u8]> {
        match self {
            Self::Append(pcm) => Some(pcm),
            _ => None,
        }
    }

    fn event(&self) -> Option<String> {
        let event = match self {
            Self::Append(_) => return None,
            Self::Commit => json!({"type": "input_audio_buffer.commit"}),
            Self::Respond => json!({"type": "response.create"}),
            Self::Clear => json!({"type": "input_audio_buffer.clear"}),
            Self::Cancel => json!({"type": "response.cancel"}),
            Self::Truncate {
                item_id,
                audio_end_ms,
            } => json!({
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms
            }),
            Self::AddMessage { assistant, text } => {
                let (role, kind) = if *assistant {
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
            }
        };
        Some(event.to_string())
    }
}

/// Reads one server event, tolerating unknown types and missing optional fields. The input
/// side's events (speech, commits, the user's transcription, errors) are read as the
/// transcriber reads them; the answer's are read here.
fn parse_server_event(text: &str) -> Parsed<AgentEvent> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("unreadable conversation event ignored");
        return Parsed::Ignored;
    };
    let string = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let event = match value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "response.created" => AgentEvent::ResponseCreated {
            response_id: value
                .pointer("/response/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        "response.output_audio.delta" => {
            let Some(pcm) = string("delta")
                .and_then(|delta| base64::engine::general_purpose::STANDARD.decode(delta).ok())
            else {
                tracing::warn!("audio delta without readable audio ignored");
                return Parsed::Ignored;
            };
            AgentEvent::Audio {
                response_id: string("response_id").unwrap_or_default(),
                item_id: string("item_id").unwrap_or_default(),
                pcm: Bytes::from(pcm),
            }
        }
        "response.output_audio_transcript.delta" => AgentEvent::AnswerDelta {
            response_id: string("response_id").unwrap_or_default(),
            delta: string("delta").unwrap_or_default(),
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
                response_id: response
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                status,
            }
        }
        // session.*, conversation.item.added/done/truncated, response.output_item.*,
        // response.content_part.*, the .done events of audio and transcript,
        // rate_limits.updated and anything new fall through to the input side's reader,
        // which ignores what it does not know.
        _ => {
            return match parse_input_event(&value) {
                Parsed::Event(TranscriberEvent::Ready { .. }) | Parsed::Ignored => Parsed::Ignored,
                Parsed::Event(event) => Parsed::Event(AgentEvent::Input(event)),
                Parsed::Fatal(error) => Parsed::Fatal(error),
            };
        }
    };
    Parsed::Event(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_update_is_the_ga_realtime_shape() {
        let update = session_update(
            &UpstreamConfig::for_tests(),
            TurnDetection::Client,
            "Be brief.",
        );
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
        let server = session_update(&UpstreamConfig::for_tests(), TurnDetection::ServerVad, "");
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
    fn input_side_events_are_read_as_the_transcriber_reads_them() {
        assert_eq!(
            parse_server_event(
                r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":10,"item_id":"u1"}"#
            ),
            Parsed::Event(AgentEvent::Input(TranscriberEvent::SpeechStarted {
                item_id: "u1".into()
            }))
        );
        assert_eq!(
            parse_server_event(
                r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"u1","content_index":0,"transcript":"Hi."}"#
            ),
            Parsed::Event(AgentEvent::Input(TranscriberEvent::Completed {
                item_id: "u1".into(),
                transcript: "Hi.".into()
            }))
        );
        assert_eq!(
            parse_server_event(
                r#"{"type":"error","error":{"type":"invalid_request_error","code":"response_cancel_not_active","message":"none"}}"#
            ),
            Parsed::Event(AgentEvent::Input(TranscriberEvent::Error {
                code: Some("response_cancel_not_active".into()),
                message: "none".into()
            }))
        );
        assert_eq!(
            parse_server_event(r#"{"type":"session.updated","session":{}}"#),
            Parsed::Ignored
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
        let event = |command: AgentCommand| -> Value {
            serde_json::from_str(&command.event().expect("an event")).unwrap()
        };
        let truncate = event(AgentCommand::Truncate {
            item_id: "a1".into(),
            audio_end_ms: 1500,
        });
        assert_eq!(
            truncate,
            json!({"type": "conversation.item.truncate", "item_id": "a1", "content_index": 0, "audio_end_ms": 1500})
        );
        let item = event(AgentCommand::AddMessage {
            assistant: false,
            text: "hi".into(),
        });
        assert_eq!(item["item"]["content"][0]["type"], "input_text");
        assert_eq!(event(AgentCommand::Respond)["type"], "response.create");
        assert!(
            AgentCommand::Append(Bytes::from_static(&[0, 0]))
                .event()
                .is_none()
        );
    }
}
