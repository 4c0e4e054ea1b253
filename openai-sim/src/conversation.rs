//! A Realtime *conversation* session (speech to speech, GA shape; docs/openai-wire.md §6): the
//! session `realtime` opens for `?model=…` (or without `intent=transcription`) and hands its
//! client events to.
//!
//! * **Configuration** ([`config`]): `session.update` with `session.type: "realtime"` →
//!   `session.updated` with the whole effective session, or an `error` (the session stays
//!   open, unchanged). A transcription update gets the error the service gives it.
//! * **Input** (the buffer and its turn detection are `input`'s, as in a transcription
//!   session): `input_audio_buffer.append` (decoded by `realtime`), `.commit` (error
//!   `input_audio_buffer_commit_empty` under 100 ms), `.clear` → `cleared`. A commit sends
//!   `input_audio_buffer.committed`, then `conversation.item.added` and `conversation.item.done`
//!   for the user item (`input_audio`, `transcript: null`); it starts no response. With
//!   `audio.input.transcription` set, the item is transcribed in the background by [`turn`]
//!   (`…input_audio_transcription.delta`s and `.completed`, or `.failed`), unordered with
//!   the response as with the service.
//! * **Turn detection** (`server_vad`, the default, or `semantic_vad`): [`vad`](super::vad)
//!   finds speech in the appended audio and sends `speech_started` / `speech_stopped`, then
//!   commits; with `create_response` a response follows. Speech that starts while a response
//!   runs cancels it (`turn_detected`) when `interrupt_response` is on. A response still
//!   speaking with `interrupt_response` off is left alone, and the turn that ends meanwhile
//!   starts none.
//!   With `turn_detection: null` the client commits and sends `response.create` itself.
//!   `idle_timeout_ms` is accepted and shown but never fires.
//! * **Responses** ([`response`]): `response.create` (with optional overrides) starts one
//!   unless one is active (`conversation_already_has_active_response`); `response.cancel`
//!   stops it (`response.done` with `cancelled` / `client_cancelled`), or answers
//!   `response_cancel_not_active`. The reply is the next scripted reply, else `default_reply`,
//!   else an echo of the last user message's text (typed text, or the input transcript when
//!   transcription is on).
//! * **Items**: `conversation.item.create` (user, system or assistant `message`s with text, or
//!   user `input_audio`) → `conversation.item.added` + `.done`; `conversation.item.delete` →
//!   `conversation.item.deleted`; `conversation.item.truncate` of an assistant audio item →
//!   `conversation.item.truncated`, which drops the item's transcript from the conversation.
//!   An `audio_end_ms` past the audio sent for the item is the service's
//!   `invalid_request_error` without a code. An unknown item is `item_not_found`.
//!   `conversation.item.retrieve` is not implemented.
//!
//! The conversation (the items with their text) and the response in progress live in a
//! [`Ledger`] shared with the response task; every change is mirrored into the connection's
//! record (`conversation`, `responses`, `truncations`).
//!
//! Faults (see `fault`): `DropAfterAudio` is taken by a user turn at its first append,
//! `TranscriptionFailed` by a committed turn's transcription, the others by the next response
//! when it starts (`Freeze` then freezes the connection).

mod config;
mod response;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::config::{ConversationConfig, ResponseOptions, message_text};
use self::response::{Link, ResponsePlan};
use super::error::ApiError;
use super::fault::{Fault, Taker};
use super::input::{Configurable, Heard, InputBuffer};
use super::link::SessionLink;
use super::params;
use super::realtime::BASE64;
use super::record::{ConversationItemRecord, RecordRef, ResponseRecord, TruncationRecord};
use super::state::Shared;
use super::synth::BYTES_PER_MS;
use super::text;
use super::turn::{self, Outbound, TurnEmitter, TurnPlan};

/// `status_details.reason` of a response the client cancelled.
const CLIENT_CANCELLED: &str = "client_cancelled";
/// `status_details.reason` of a response cancelled by the user's speech.
const TURN_DETECTED: &str = "turn_detected";
/// Role of the model's items.
const ROLE_ASSISTANT: &str = "assistant";
/// Announces an item that joined the conversation.
const ITEM_ADDED: &str = "conversation.item.added";
/// Announces an item that is complete (at once for a user's or client's item, at the end of
/// the response for the assistant's).
const ITEM_DONE: &str = "conversation.item.done";
/// Audio tokens per millisecond of user audio in a response's `usage` (10 per second).
const INPUT_AUDIO_MS_PER_TOKEN: u64 = 100;
/// Client events this module answers; `realtime` answers the rest.
const HANDLED_EVENTS: &[&str] = &[
    "session.update",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.create",
    "response.cancel",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.truncate",
];

/// Whether a conversation session answers this client event type itself.
pub(crate) fn handles(kind: &str) -> bool {
    HANDLED_EVENTS.contains(&kind)
}

/// One item of the conversation as the simulated model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    id: String,
    role: &'static str,
    /// Typed text, a transcript, or `None` (unknown, or dropped by a truncate).
    text: Option<String>,
    /// User audio committed, or assistant audio sent so far; `None` for text items.
    audio_ms: Option<u64>,
    /// A truncate cut it: a response still streaming it no longer adds to it.
    truncated: bool,
}

impl Item {
    fn record(&self) -> ConversationItemRecord {
        ConversationItemRecord {
            id: self.id.clone(),
            role: self.role.to_owned(),
            text: self.text.clone(),
            audio_ms: self.audio_ms,
        }
    }
}

/// The response in progress.
#[derive(Debug)]
struct Active {
    response_id: String,
    /// Cancelled to stop the response task.
    cancel: CancellationToken,
    /// Why it was cancelled (`client_cancelled`, `turn_detected`); `None` while it runs.
    reason: Option<&'static str>,
    /// The task is sending its final events: a cancel comes too late.
    ending: bool,
}

/// The conversation and the response in progress.
#[derive(Debug, Default)]
struct Dialogue {
    items: Vec<Item>,
    active: Option<Active>,
}

impl Dialogue {
    fn item_mut(&mut self, id: &str) -> Option<&mut Item> {
        self.items.iter_mut().find(|item| item.id == id)
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|item| item.id == id)
    }

    /// The id of the item before position `index`, if there is one.
    fn id_before(&self, index: usize) -> Option<String> {
        let before = index.checked_sub(1)?;
        self.items.get(before).map(|item| item.id.clone())
    }

    /// Adds `item` at the end; returns the id of the item before it.
    fn push(&mut self, item: Item) -> Option<String> {
        let previous = self.id_before(self.items.len());
        self.items.push(item);
        previous
    }

    /// The active response, if it is `response_id`.
    fn active_for(&mut self, response_id: &str) -> Option<&mut Active> {
        self.active
            .as_mut()
            .filter(|active| active.response_id == response_id)
    }

    /// Cancels the active response (the one named, if `response_id` is given) for `reason`;
    /// `false` if there is none. A response already cancelled or ending stays as it is.
    fn cancel(&mut self, response_id: Option<&str>, reason: &'static str) -> bool {
        match &mut self.active {
            Some(active) if response_id.is_none_or(|id| id == active.response_id) => {
                if active.reason.is_none() && !active.ending {
                    active.reason = Some(reason);
                    active.cancel.cancel();
                }
                true
            }
            _ => false,
        }
    }

    /// The last user message's text, for the echo reply.
    fn last_user_text(&self) -> Option<String> {
        self.items
            .iter()
            .rev()
            .find(|item| item.role == "user")
            .and_then(|item| item.text.clone())
    }

    /// Text and audio tokens of the conversation, the input of the next response.
    fn input_tokens(&self) -> (u64, u64) {
        self.items.iter().fold((0, 0), |(text, audio), item| {
            let item_text = item.text.as_deref().map_or(0, text::estimate_tokens);
            let item_audio = match (item.role, item.audio_ms) {
                ("user", Some(ms)) => (ms / INPUT_AUDIO_MS_PER_TOKEN).max(1),
                _ => 0,
            };
            (text + item_text, audio + item_audio)
        })
    }
}

/// The [`Dialogue`] shared by the session loop and its response task, mirrored into the
/// connection's record on every change. The lock is held for a few instructions, never
/// across an `.await`, and never while the records are locked.
#[derive(Debug)]
struct Ledger {
    shared: Arc<Shared>,
    at: RecordRef,
    dialogue: Mutex<Dialogue>,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Dialogue> {
        self.dialogue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads or changes state that the record does not show (the active response).
    fn with<R>(&self, change: impl FnOnce(&mut Dialogue) -> R) -> R {
        change(&mut self.lock())
    }

    /// Changes the conversation and records it.
    fn change<R>(&self, change: impl FnOnce(&mut Dialogue) -> R) -> R {
        let (result, items) = {
            let mut dialogue = self.lock();
            let result = change(&mut dialogue);
            let items: Option<Vec<ConversationItemRecord>> = self
                .at
                .is_recorded()
                .then(|| dialogue.items.iter().map(Item::record).collect());
            (result, items)
        };
        if let Some(items) = items {
            self.shared
                .update_realtime(self.at, |record| record.conversation = items);
        }
        result
    }

    fn update_response(&self, response_id: &str, change: impl FnOnce(&mut ResponseRecord)) {
        self.shared.update_realtime(self.at, |record| {
            if let Some(response) = record
                .responses
                .iter_mut()
                .find(|response| response.id == response_id)
            {
                change(response);
            }
        });
    }
}

/// A message item a client creates, validated.
#[derive(Debug, Clone, PartialEq)]
struct NewItem {
    item: Item,
    /// The item as `conversation.item.added` shows it.
    json: Value,
}

/// The state of one conversation session, owned by the connection's reader loop.
#[derive(Debug)]
pub(crate) struct Conversation {
    link: SessionLink,
    config: ConversationConfig,
    conversation_id: String,
    ledger: Arc<Ledger>,
    /// The last response task, awaited when server VAD starts a response while a cancelled
    /// one is still sending its last events.
    task: Option<JoinHandle<()>>,
    input: InputBuffer,
    /// Audio has been appended since the last commit or clear (the user turn is open).
    turn_open: bool,
    /// [`Fault::Freeze`]: nothing more is read or sent.
    frozen: bool,
}

impl Conversation {
    /// A new session `session_id` (the service's defaults) that ends at `expires_at` (Unix
    /// seconds).
    pub(crate) fn new(
        link: SessionLink,
        session_id: &str,
        model: Option<&str>,
        expires_at: u64,
    ) -> Self {
        let config = ConversationConfig::new(session_id, model, expires_at);
        let ledger = Arc::new(Ledger {
            shared: Arc::clone(&link.shared),
            at: link.at,
            dialogue: Mutex::default(),
        });
        Self {
            link,
            input: InputBuffer::new(config.turn_detection()),
            config,
            conversation_id: text::conversation_id(),
            ledger,
            task: None,
            turn_open: false,
            frozen: false,
        }
    }

    /// The `session` of `session.created`.
    pub(crate) fn session_json(&self) -> Value {
        self.config.session_json()
    }

    /// Whether a [`Fault::Freeze`] froze the connection.
    pub(crate) fn frozen(&self) -> bool {
        self.frozen
    }

    /// Handles a client event of a type [`handles`] accepts (already recorded).
    pub(crate) async fn on_event(&mut self, kind: &str, event: &Value, event_id: Option<&str>) {
        match kind {
            "session.update" => self.session_update(event, event_id).await,
            "input_audio_buffer.commit" => self.commit(event_id).await,
            "input_audio_buffer.clear" => {
                self.turn_open = false;
                self.link.send(self.input.clear()).await;
            }
            "response.create" => self.response_create(event, event_id).await,
            "response.cancel" => self.response_cancel(event, event_id).await,
            "conversation.item.create" => self.item_create(event, event_id).await,
            "conversation.item.delete" => self.item_delete(event, event_id).await,
            "conversation.item.truncate" => self.item_truncate(event, event_id).await,
            _ => {}
        }
    }

    async fn session_update(&mut self, event: &Value, event_id: Option<&str>) {
        let voice_locked = self.ledger.with(|dialogue| {
            dialogue
                .items
                .iter()
                .any(|item| item.role == ROLE_ASSISTANT && item.audio_ms.unwrap_or(0) > 0)
        });
        let config = self.link.shared.config();
        let updated = self
            .input
            .update_session(&mut self.config, event, |session, update| {
                session.apply_update(update, &config, voice_locked)
            });
        self.link.answer(updated, event_id).await;
    }

    // --- Input audio ---

    /// Appended audio, decoded and recorded by `realtime`.
    pub(crate) async fn append(&mut self, audio: &[u8]) {
        if audio.is_empty() {
            return;
        }
        if !self.turn_open {
            self.turn_open = true;
            if let Some(Fault::DropAfterAudio { bytes }) = self.link.take_fault(Taker::InputAudio) {
                self.input.drop_after(bytes);
            }
        }
        let Some(heard) = self.input.push(audio) else {
            self.link.order(Outbound::Abort).await;
            return;
        };
        for heard in heard {
            match heard {
                Heard::Started(started) => {
                    self.link.send(started).await;
                    if self.config.interrupt_response {
                        self.ledger
                            .with(|dialogue| dialogue.cancel(None, TURN_DETECTED));
                    }
                }
                Heard::Stopped {
                    event,
                    item_id,
                    audio_ms,
                } => {
                    self.link.send(event).await;
                    self.turn_open = false;
                    self.commit_item(item_id, audio_ms).await;
                    if self.config.create_response {
                        self.respond_to_turn().await;
                    }
                }
            }
        }
    }

    /// A client `input_audio_buffer.commit`.
    async fn commit(&mut self, event_id: Option<&str>) {
        match self.input.commit() {
            Ok((item_id, audio_ms)) => {
                self.turn_open = false;
                self.commit_item(item_id, audio_ms).await;
            }
            Err(error) => self.link.send_error(error, event_id).await,
        }
    }

    /// Adds the committed user audio as item `item_id` and transcribes it if asked to.
    async fn commit_item(&mut self, item_id: String, audio_ms: u64) {
        let transcribes = self.config.transcribes();
        let fails = transcribes && self.link.take_fault(Taker::InputTranscription).is_some();
        // A turn whose transcription fails does not use up a scripted transcript.
        let transcript =
            (transcribes && !fails).then(|| self.link.shared.next_transcript(audio_ms));
        let item = Item {
            id: item_id.clone(),
            role: "user",
            text: transcript.clone(),
            audio_ms: Some(audio_ms),
            truncated: false,
        };
        let previous_item_id = self.ledger.change(|dialogue| dialogue.push(item));
        self.link
            .send(turn::committed_event(previous_item_id.as_deref(), &item_id))
            .await;
        self.announce_item(
            previous_item_id.as_deref(),
            &turn::user_item(&item_id, None),
        )
        .await;
        if !transcribes {
            return;
        }
        let mut emitter = TurnEmitter::new(self.link.out.clone());
        if fails {
            emitter.arm(Fault::TranscriptionFailed).await;
        }
        let config = self.link.shared.config();
        let seed = self.link.shared.next_seed();
        let plan = TurnPlan {
            prompt: self.config.transcription_prompt().to_owned(),
            logprobs: self.config.wants_logprobs(),
            ..TurnPlan::new(
                item_id,
                previous_item_id,
                transcript.unwrap_or_default(),
                audio_ms,
                &config,
                seed,
            )
        };
        tokio::spawn(turn::run(emitter, plan, self.link.done.clone()));
    }

    /// `conversation.item.added` and `.done` for a new `item` after `previous_item_id`.
    async fn announce_item(&self, previous_item_id: Option<&str>, item: &Value) {
        for kind in [ITEM_ADDED, ITEM_DONE] {
            self.link
                .send(turn::item_event(kind, previous_item_id, item))
                .await;
        }
    }

    // --- Responses ---

    async fn response_create(&mut self, event: &Value, event_id: Option<&str>) {
        let options = match ResponseOptions::parse(event.get("response"), &self.config) {
            Ok(options) => options,
            Err(error) => return self.link.send_error(error, event_id).await,
        };
        let active = self.ledger.with(|dialogue| {
            dialogue
                .active
                .as_ref()
                .map(|active| active.response_id.clone())
        });
        if let Some(active) = active {
            let error = ApiError::invalid_request(
                format!(
                    "Conversation already has an active response in progress: {active}. Wait \
                     until the response is finished before creating a new one."
                ),
                None,
                Some("conversation_already_has_active_response"),
            );
            return self.link.send_error(error, event_id).await;
        }
        self.start_response(options).await;
    }

    /// Server VAD ended a turn with `create_response` on: a response, unless one still
    /// speaks. One that was cancelled (by this turn's speech) is let finish first.
    async fn respond_to_turn(&mut self) {
        let finishing = self.ledger.with(|dialogue| {
            dialogue
                .active
                .as_ref()
                .map(|active| active.reason.is_some() || active.ending)
        });
        match finishing {
            Some(false) => return,
            Some(true) => {
                if let Some(task) = self.task.take() {
                    tokio::select! {
                        _ = task => {}
                        () = self.link.done.cancelled() => return,
                    }
                }
            }
            None => {}
        }
        // A response cut off by a fault stays active: nothing more starts.
        if self.ledger.with(|dialogue| dialogue.active.is_none()) {
            let options = ResponseOptions::from_session(&self.config);
            self.start_response(options).await;
        }
    }

    async fn start_response(&mut self, options: ResponseOptions) {
        let fault = self.link.take_fault(Taker::Response);
        if fault == Some(Fault::Freeze) {
            self.frozen = true;
            self.link.order(Outbound::Stall).await;
            return;
        }
        let response_id = text::response_id();
        let item_id = text::item_id();
        let last_user_text = options
            .input_text
            .clone()
            .or_else(|| self.ledger.with(|dialogue| dialogue.last_user_text()));
        let reply = self.link.shared.next_reply(last_user_text.as_deref());
        let cancel = CancellationToken::new();
        let (item_text_tokens, input_audio_tokens) = self.ledger.with(|dialogue| {
            dialogue.active = Some(Active {
                response_id: response_id.clone(),
                cancel: cancel.clone(),
                reason: None,
                ending: false,
            });
            dialogue.input_tokens()
        });
        self.link.update(|record| {
            record.responses.push(ResponseRecord {
                id: response_id.clone(),
                item_id: item_id.clone(),
                reply: reply.clone(),
                status: "in_progress".to_owned(),
                fault: fault.clone(),
                started_ms: self.link.shared.now_ms(),
                ..ResponseRecord::default()
            });
        });
        let config = self.link.shared.config();
        let plan = ResponsePlan {
            response_id,
            item_id,
            conversation_id: options
                .in_conversation
                .then(|| self.conversation_id.clone()),
            input_text_tokens: text::estimate_tokens(&options.instructions) + item_text_tokens,
            input_audio_tokens,
            options,
            reply,
            fault,
            first_output: Duration::from_millis(config.realtime_first_audio_ms),
            realtime_factor: config.tts_realtime_factor,
            tokens_per_second: config.llm_tokens_per_second,
        };
        let link = Link {
            ledger: Arc::clone(&self.ledger),
            out: self.link.out.clone(),
            cancel,
            done: self.link.done.clone(),
        };
        self.task = Some(tokio::spawn(response::run(plan, link)));
    }

    async fn response_cancel(&mut self, event: &Value, event_id: Option<&str>) {
        let response_id = match params::optional_string(event.get("response_id"), "response_id") {
            Ok(response_id) => response_id,
            Err(error) => return self.link.send_error(error, event_id).await,
        };
        if !self
            .ledger
            .with(|dialogue| dialogue.cancel(response_id, CLIENT_CANCELLED))
        {
            let error = ApiError::invalid_request(
                "Cancellation failed: no active response found",
                None,
                Some("response_cancel_not_active"),
            );
            self.link.send_error(error, event_id).await;
        }
    }

    // --- Items ---

    async fn item_create(&mut self, event: &Value, event_id: Option<&str>) {
        let created = match event.get("item") {
            None => Err(ApiError::missing("item")),
            Some(item) => parse_item(item),
        };
        let new = match created {
            Ok(new) => new,
            Err(error) => return self.link.send_error(error, event_id).await,
        };
        let after = params::optional_string(event.get("previous_item_id"), "previous_item_id").map(
            |after| match after {
                None => Placement::Last,
                Some("root") => Placement::First,
                Some(id) => Placement::After(id.to_owned()),
            },
        );
        let placed = after.and_then(|after| {
            self.ledger.change(|dialogue| {
                if dialogue.position(&new.item.id).is_some() {
                    return Err(ApiError::invalid_request(
                        format!("Item with item_id '{}' already exists.", new.item.id),
                        Some("item.id"),
                        Some("invalid_value"),
                    ));
                }
                let index = match &after {
                    Placement::Last => dialogue.items.len(),
                    Placement::First => 0,
                    Placement::After(id) => dialogue
                        .position(id)
                        .map(|index| index + 1)
                        .ok_or_else(|| item_not_found(id, "previous_item_id"))?,
                };
                let previous = dialogue.id_before(index);
                dialogue.items.insert(index, new.item.clone());
                Ok(previous)
            })
        });
        let previous_item_id = match placed {
            Ok(previous) => previous,
            Err(error) => return self.link.send_error(error, event_id).await,
        };
        self.announce_item(previous_item_id.as_deref(), &new.json)
            .await;
    }

    async fn item_delete(&mut self, event: &Value, event_id: Option<&str>) {
        let item_id = match params::required_string(event.get("item_id"), "item_id") {
            Ok(item_id) => item_id,
            Err(error) => return self.link.send_error(error, event_id).await,
        };
        let deleted = self.ledger.change(|dialogue| {
            let index = dialogue.position(&item_id)?;
            Some(dialogue.items.remove(index))
        });
        if deleted.is_none() {
            return self
                .link
                .send_error(item_not_found(&item_id, "item_id"), event_id)
                .await;
        }
        self.link
            .send(json!({
                "type": "conversation.item.deleted",
                "event_id": text::event_id(),
                "item_id": item_id,
            }))
            .await;
    }

    async fn item_truncate(&mut self, event: &Value, event_id: Option<&str>) {
        let request =
            params::required_string(event.get("item_id"), "item_id").and_then(|item_id| {
                let content_index = required_count(event, "content_index")?;
                let audio_end_ms = required_count(event, "audio_end_ms")?;
                Ok((item_id, content_index, audio_end_ms))
            });
        let (item_id, content_index, audio_end_ms) = match request {
            Ok(request) => request,
            Err(error) => return self.link.send_error(error, event_id).await,
        };
        let truncated = self.ledger.change(|dialogue| {
            let item = dialogue
                .item_mut(&item_id)
                .ok_or_else(|| item_not_found(&item_id, "item_id"))?;
            let (ROLE_ASSISTANT, Some(audio_ms)) = (item.role, item.audio_ms) else {
                return Err(ApiError::invalid_request(
                    "Only model output audio messages can be truncated",
                    Some("item_id"),
                    None,
                ));
            };
            check_truncate(content_index, audio_ms, audio_end_ms)?;
            item.text = None;
            item.audio_ms = Some(audio_end_ms);
            item.truncated = true;
            Ok(())
        });
        if let Err(error) = truncated {
            return self.link.send_error(error, event_id).await;
        }
        self.link.update(|record| {
            record.truncations.push(TruncationRecord {
                item_id: item_id.clone(),
                content_index,
                audio_end_ms,
            });
        });
        self.link
            .send(json!({
                "type": "conversation.item.truncated",
                "event_id": text::event_id(),
                "item_id": item_id,
                "content_index": content_index,
                "audio_end_ms": audio_end_ms,
            }))
            .await;
    }
}

/// Where `conversation.item.create` puts the item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    Last,
    First,
    After(String),
}

/// An item id the conversation does not hold (wording not confirmed from the service).
fn item_not_found(item_id: &str, param: &str) -> ApiError {
    ApiError::invalid_request(
        format!("Item with item_id '{item_id}' not found in the conversation."),
        Some(param),
        Some("item_not_found"),
    )
}

/// Whether an assistant item with `audio_ms` of audio can be cut at `audio_end_ms`
/// (inclusive); the service's message for a cut past the end, with neither param nor code.
fn check_truncate(content_index: u64, audio_ms: u64, audio_end_ms: u64) -> Result<(), ApiError> {
    if content_index != 0 {
        return Err(ApiError::invalid_request(
            format!(
                "Invalid 'content_index': {content_index}. Only content index 0 of an assistant \
                 message can be truncated."
            ),
            Some("content_index"),
            Some("invalid_value"),
        ));
    }
    if audio_end_ms > audio_ms {
        return Err(ApiError::invalid_request(
            format!("Audio content of {audio_ms}ms is already shorter than {audio_end_ms}ms"),
            None,
            None,
        ));
    }
    Ok(())
}

fn required_count(event: &Value, key: &str) -> Result<u64, ApiError> {
    match event.get(key) {
        None | Some(Value::Null) => Err(ApiError::missing(key)),
        Some(value) => value
            .as_u64()
            .ok_or_else(|| ApiError::invalid_type(key, "a non-negative integer", value)),
    }
}

/// Validates the `item` of a `conversation.item.create`: a `message` of a user (`input_text`,
/// `input_audio`), the system (`input_text`) or the assistant (`output_text`, or the beta's
/// `text`).
fn parse_item(item: &Value) -> Result<NewItem, ApiError> {
    const KEYS: &[&str] = &["id", "type", "object", "status", "role", "content"];
    const ROLES: &[&str] = &["user", "assistant", "system"];
    let fields = item
        .as_object()
        .ok_or_else(|| ApiError::invalid_type("item", "an object", item))?;
    match fields.get("type") {
        None => return Err(ApiError::missing("item.type")),
        Some(Value::String(kind)) if kind == "message" => {}
        Some(Value::String(kind)) if kind == "function_call" || kind == "function_call_output" => {
            return Err(ApiError::unsupported_by_simulator(
                "item.type",
                format!("The OpenAI simulator does not implement '{kind}' items (no tools)."),
            ));
        }
        Some(Value::String(kind)) => {
            return Err(ApiError::invalid_value(
                "item.type",
                kind,
                &["message", "function_call", "function_call_output"],
            ));
        }
        Some(other) => return Err(ApiError::invalid_type("item.type", "a string", other)),
    }
    if let Some(unknown) = fields.keys().find(|key| !KEYS.contains(&key.as_str())) {
        return Err(ApiError::unknown_parameter(&format!("item.{unknown}")));
    }
    let id = match params::optional_string(fields.get("id"), "item.id")? {
        None => text::item_id(),
        Some("") => return Err(ApiError::string_empty("item.id")),
        Some(id) => id.to_owned(),
    };
    let role = params::required_choice(fields.get("role"), "item.role", ROLES)?;
    let allowed: &[&str] = match role {
        "user" => &["input_text", "input_audio"],
        "system" => &["input_text"],
        _ => &["output_text", "text"],
    };
    let parts = params::required_array(fields.get("content"), "item.content")?;
    let mut shown = Vec::with_capacity(parts.len());
    let mut audio_ms = None;
    for (index, part) in parts.iter().enumerate() {
        let path = format!("item.content[{index}]");
        let part_fields = part
            .as_object()
            .ok_or_else(|| ApiError::invalid_type(&path, "an object", part))?;
        let type_param = format!("{path}.type");
        let kind = match part_fields.get("type") {
            // Present but `null`: of the wrong type, not missing.
            Some(Value::Null) => {
                return Err(ApiError::invalid_type(
                    &type_param,
                    "a string",
                    &Value::Null,
                ));
            }
            kind => params::required_choice(kind, &type_param, allowed)?,
        };
        if kind == "input_audio" {
            let audio_param = format!("{path}.audio");
            let bytes = match params::optional_string(part_fields.get("audio"), &audio_param)? {
                None => 0,
                Some(audio) => BASE64
                    .decode(audio)
                    .map_err(|_| {
                        ApiError::invalid_request(
                            format!(
                                "Invalid '{audio_param}'. Expected base64-encoded audio bytes."
                            ),
                            Some(&audio_param),
                            Some("invalid_value"),
                        )
                    })?
                    .len(),
            };
            *audio_ms.get_or_insert(0) += bytes as u64 / BYTES_PER_MS;
            let transcript = params::optional_string(
                part_fields.get("transcript"),
                &format!("{path}.transcript"),
            )?;
            shown.push(json!({ "type": kind, "transcript": transcript }));
        } else {
            params::required_string(part_fields.get("text"), &format!("{path}.text"))?;
            shown.push(part.clone());
        }
    }
    let mut json_item = Map::new();
    json_item.insert("id".into(), json!(id));
    json_item.insert("object".into(), json!("realtime.item"));
    json_item.insert("type".into(), json!("message"));
    json_item.insert("status".into(), json!("completed"));
    json_item.insert("role".into(), json!(role));
    json_item.insert("content".into(), Value::Array(shown));
    let json = Value::Object(json_item);
    Ok(NewItem {
        item: Item {
            id,
            role,
            text: message_text(&json),
            audio_ms,
            truncated: false,
        },
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_past_the_audio_is_worded_like_the_service() {
        assert!(check_truncate(0, 1500, 1500).is_ok());
        assert!(check_truncate(0, 1500, 500).is_ok());
        let error = check_truncate(0, 1500, 2000).expect_err("past the end");
        assert_eq!(
            error.message,
            "Audio content of 1500ms is already shorter than 2000ms"
        );
        assert_eq!(error.kind, "invalid_request_error");
        assert!(error.code.is_none() && error.param.is_none());
        let error = check_truncate(1, 1500, 0).expect_err("bad index");
        assert_eq!(error.param.as_deref(), Some("content_index"));
    }

    #[test]
    fn created_items_keep_their_text() {
        let new = parse_item(&json!({
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hello"}, {"type": "input_text", "text": "there"}],
        }))
        .expect("valid item");
        assert_eq!(new.item.text.as_deref(), Some("Hello there"));
        assert_eq!(new.item.role, "user");
        assert_eq!(new.json["object"], "realtime.item");
        assert!(
            new.json["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("item_"))
        );
        let audio = parse_item(&json!({
            "id": "mine", "type": "message", "role": "user",
            "content": [{"type": "input_audio", "audio": BASE64.encode(vec![0_u8; 4800]), "transcript": "hm"}],
        }))
        .expect("valid item");
        assert_eq!(audio.item.audio_ms, Some(100));
        assert_eq!(audio.item.id, "mine");
        assert!(audio.json["content"][0].get("audio").is_none());
        let assistant = parse_item(&json!({
            "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}],
        }))
        .expect("valid item");
        assert_eq!(assistant.item.audio_ms, None);
    }

    #[test]
    fn invalid_items_name_the_parameter() {
        let cases = [
            (json!({"role": "user", "content": []}), "item.type"),
            (
                json!({"type": "message", "role": "robot", "content": []}),
                "item.role",
            ),
            (
                json!({"type": "message", "role": "user", "content": []}),
                "item.content",
            ),
            (
                json!({"type": "message", "role": "system", "content": [{"type": "output_text", "text": "x"}]}),
                "item.content[0].type",
            ),
            (
                json!({"type": "message", "role": "user", "content": [{"type": "input_text"}]}),
                "item.content[0].text",
            ),
            (
                json!({"type": "message", "role": "user", "content": [], "extra": 1}),
                "item.extra",
            ),
        ];
        for (item, param) in cases {
            let error = parse_item(&item).expect_err("invalid");
            assert_eq!(error.param.as_deref(), Some(param), "{item}");
        }
    }

    #[test]
    fn cancel_finds_the_active_response_once() {
        let mut dialogue = Dialogue::default();
        assert!(!dialogue.cancel(None, CLIENT_CANCELLED));
        let token = CancellationToken::new();
        dialogue.active = Some(Active {
            response_id: "resp_1".into(),
            cancel: token.clone(),
            reason: None,
            ending: false,
        });
        assert!(!dialogue.cancel(Some("resp_2"), CLIENT_CANCELLED));
        assert!(!token.is_cancelled());
        assert!(dialogue.cancel(Some("resp_1"), TURN_DETECTED));
        assert!(dialogue.cancel(None, CLIENT_CANCELLED), "still active");
        assert!(token.is_cancelled());
        assert_eq!(
            dialogue.active.as_ref().and_then(|active| active.reason),
            Some(TURN_DETECTED),
            "the first reason stays"
        );
    }

    #[test]
    fn input_tokens_count_text_and_user_audio() {
        let dialogue = Dialogue {
            items: vec![
                Item {
                    id: "a".into(),
                    role: "user",
                    text: Some("12345678".into()),
                    audio_ms: Some(1000),
                    truncated: false,
                },
                Item {
                    id: "b".into(),
                    role: ROLE_ASSISTANT,
                    text: None,
                    audio_ms: Some(3000),
                    truncated: true,
                },
            ],
            active: None,
        };
        assert_eq!(dialogue.input_tokens(), (2, 10));
        assert_eq!(dialogue.last_user_text().as_deref(), Some("12345678"));
    }
}
