//! One response of a conversation session (docs/openai-wire.md §6): the task that streams it,
//! stops it when it is cancelled and applies its fault.
//!
//! The events, in order: `response.created`, `rate_limits.updated`,
//! `response.output_item.added` and `conversation.item.added` (the assistant item),
//! `response.content_part.added`; after `realtime_first_audio_ms` the
//! `response.output_audio.delta`s (about 100 ms of PCM16 24 kHz each, paced at
//! `tts_realtime_factor`) interleaved with `response.output_audio_transcript.delta`s, one per
//! word, each sent a little before the audio that speaks it, as the service does; then
//! `response.output_audio.done`, `response.output_audio_transcript.done`,
//! `response.content_part.done`, `response.output_item.done`, `conversation.item.done` and
//! `response.done` with `usage`. A text response (`output_modalities: ["text"]`) sends
//! `response.output_text.delta`s paced at `llm_tokens_per_second` instead.
//!
//! A cancel (`response.cancel`, or speech while `interrupt_response` is on) stops the stream
//! at the next event and sends the trailing `…done` events with what was sent so far (the
//! item `incomplete`), then `response.done` with `status: "cancelled"`. A few audio deltas may
//! already sit in the outbound queue: a client must drop deltas of a cancelled response, as
//! with the service. An out-of-band response (`conversation: "none"`) sends no
//! `conversation.item.*` events and has no `conversation_id`.
//!
//! Faults count this response's events: `MidStreamError { after }` sends an `error` and a
//! `response.done` with `status: "failed"`; `Drop` aborts the socket; `Stall` stops all
//! sending (the session keeps reading).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{Modality, ResponseOptions, voice_name};
use super::{ITEM_ADDED, ITEM_DONE, Item, Ledger, ROLE_ASSISTANT};
use crate::config::paced;
use crate::fault::Fault;
use crate::session::pcm_format;
use crate::synth::{self, BYTES_PER_MS};
use crate::text;
use crate::turn::{self, Outbound};

/// Audio per `response.output_audio.delta`, in ms.
const AUDIO_CHUNK_MS: u64 = 100;
/// Audio per `response.output_audio.delta`, in bytes of PCM16 at 24 kHz.
const AUDIO_CHUNK_BYTES: usize = (AUDIO_CHUNK_MS * BYTES_PER_MS) as usize;
/// How far ahead of the audio the transcript runs: a word's delta goes out before the audio
/// chunk that starts it, and up to this much earlier.
const TRANSCRIPT_LEAD_MS: u64 = 200;
/// Audio tokens per millisecond of assistant audio in `usage` (20 per second; cosmetic).
const OUTPUT_AUDIO_MS_PER_TOKEN: u64 = 50;
/// `rate_limits.updated`: the requests limit shown.
const RATE_LIMIT_REQUESTS: u64 = 5_000;
/// `rate_limits.updated`: the tokens limit shown.
const RATE_LIMIT_TOKENS: u64 = 40_000;
/// Tokens the service reserves for a response's output until it is settled (§6).
const RATE_LIMIT_OUTPUT_RESERVATION_TOKENS: u64 = 4_096;

/// Everything a response needs, fixed when it starts.
#[derive(Debug)]
pub(super) struct ResponsePlan {
    pub(super) response_id: String,
    pub(super) item_id: String,
    /// `None` for an out-of-band response.
    pub(super) conversation_id: Option<String>,
    pub(super) options: ResponseOptions,
    pub(super) reply: String,
    pub(super) fault: Option<Fault>,
    pub(super) first_output: Duration,
    pub(super) realtime_factor: f64,
    pub(super) tokens_per_second: f64,
    /// `usage.input_token_details`: text tokens (instructions, text items, transcripts) and
    /// audio tokens (user audio) of the conversation so far.
    pub(super) input_text_tokens: u64,
    pub(super) input_audio_tokens: u64,
}

/// What the response task shares with its session.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) ledger: Arc<Ledger>,
    pub(super) out: mpsc::Sender<Outbound>,
    /// Cancelled by `response.cancel` or barge-in; the reason is in the ledger.
    pub(super) cancel: CancellationToken,
    /// Cancelled when the connection ends: the task just stops.
    pub(super) done: CancellationToken,
}

/// Runs a response until it is done, or until the connection ends.
pub(super) async fn run(plan: ResponsePlan, link: Link) {
    let done = link.done.clone();
    let ledger = Arc::clone(&link.ledger);
    let response_id = plan.response_id.clone();
    let mut streamer = Streamer::new(plan, link);
    tokio::select! {
        () = streamer.respond() => {}
        () = done.cancelled() => {
            // The connection ended mid-response: that is when it stopped.
            let at_ms = ledger.shared.now_ms();
            ledger.update_response(&response_id, |record| {
                record.ended_ms.get_or_insert(at_ms);
            });
        }
    }
}

/// Why the stream stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Cancelled, with the `status_details.reason`.
    Cancelled(&'static str),
    /// A `MidStreamError` fault: the response fails.
    Failed,
    /// A fault silenced the socket, or the connection is gone: nothing more is sent.
    Silenced,
}

/// How the response ended, for `response.done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Completed,
    Cancelled(&'static str),
}

#[derive(Debug)]
struct Streamer {
    plan: ResponsePlan,
    link: Link,
    /// Events sent so far (what a fault's `after` counts).
    sent: usize,
    /// `response.output_item.added` went out: the item's `…done` events are owed.
    item_added: bool,
    /// `response.content_part.added` went out.
    part_added: bool,
    /// The transcript (or text) sent in deltas so far.
    transcript_sent: String,
    audio_bytes_sent: usize,
}

impl Streamer {
    fn new(plan: ResponsePlan, link: Link) -> Self {
        Self {
            plan,
            link,
            sent: 0,
            item_added: false,
            part_added: false,
            transcript_sent: String::new(),
            audio_bytes_sent: 0,
        }
    }

    async fn respond(&mut self) {
        let synthesis = (self.plan.options.modality == Modality::Audio).then(|| {
            let reply = self.plan.reply.clone();
            let voice = voice_name(&self.plan.options.voice).to_owned();
            let speed = self.plan.options.speed;
            // Its own task: a cancelled response does not waste a synthesis others may share.
            tokio::spawn(async move { synth::speech(&reply, &voice, speed).await })
        });
        let ending = match self.stream(synthesis).await {
            Ok(()) => Ending::Completed,
            Err(Stop::Cancelled(reason)) => Ending::Cancelled(reason),
            Err(Stop::Failed) => return self.fail().await,
            Err(Stop::Silenced) => return self.settle(None),
        };
        match self.finish(ending).await {
            Ok(()) => {}
            Err(Stop::Failed) => self.fail().await,
            Err(Stop::Silenced | Stop::Cancelled(_)) => self.settle(None),
        }
    }

    /// Everything up to the last delta.
    async fn stream(
        &mut self,
        synthesis: Option<tokio::task::JoinHandle<Option<Bytes>>>,
    ) -> Result<(), Stop> {
        let started = Instant::now();
        self.check_fault().await?;
        let created = json!({
            "type": "response.created",
            "event_id": text::event_id(),
            "response": self.response_json("in_progress", Value::Null, &[], Value::Null),
        });
        // Sent even if a cancel already came: a `response.done` never arrives unannounced.
        self.emit(created).await?;
        self.step(self.rate_limits()).await?;
        let previous_item_id = self.add_item();
        self.check_cancel()?;
        self.send(json!({
            "type": "response.output_item.added",
            "event_id": text::event_id(),
            "response_id": self.plan.response_id,
            "output_index": 0,
            "item": self.item_json("in_progress", None),
        }))
        .await?;
        self.item_added = true;
        self.check_fault().await?;
        if self.plan.conversation_id.is_some() {
            let item = self.item_json("in_progress", None);
            self.step(turn::item_event(
                ITEM_ADDED,
                previous_item_id.as_deref(),
                &item,
            ))
            .await?;
        }
        self.check_cancel()?;
        let mut part_added = self.content_event("response.content_part.added");
        part_added["part"] = self.part_json("");
        self.send(part_added).await?;
        self.part_added = true;
        self.check_fault().await?;
        self.pause_until(started + self.plan.first_output).await?;
        match synthesis {
            Some(synthesis) => {
                let pcm = tokio::select! {
                    pcm = synthesis => pcm.ok().flatten().unwrap_or_default(),
                    () = self.link.cancel.cancelled() => return Err(self.cancelled()),
                };
                self.stream_audio(&pcm).await
            }
            None => self.stream_text().await,
        }
    }

    async fn stream_audio(&mut self, pcm: &[u8]) -> Result<(), Stop> {
        let reply = self.plan.reply.clone();
        let words = text::words(&reply);
        let starts = word_starts_ms(&words, synth::duration_ms(pcm.len()));
        let mut next_word = 0;
        let audio_start = Instant::now();
        for (index, chunk) in pcm.chunks(AUDIO_CHUNK_BYTES).enumerate() {
            let offset = index * AUDIO_CHUNK_BYTES;
            let elapsed_s = synth::duration_ms(offset) as f64 / 1000.0;
            self.pause_until(audio_start + paced(elapsed_s, self.plan.realtime_factor))
                .await?;
            let horizon_ms = synth::duration_ms(offset + chunk.len()) + TRANSCRIPT_LEAD_MS;
            while let Some(word) = words
                .get(next_word)
                .filter(|_| starts[next_word] < horizon_ms)
            {
                self.send_text_delta("response.output_audio_transcript.delta", word)
                    .await?;
                next_word += 1;
            }
            self.check_cancel()?;
            let mut delta = self.content_event("response.output_audio.delta");
            delta["delta"] = json!(BASE64.encode(chunk));
            self.send(delta).await?;
            self.audio_bytes_sent += chunk.len();
            self.record_progress();
            self.check_fault().await?;
        }
        for word in &words[next_word..] {
            self.send_text_delta("response.output_audio_transcript.delta", word)
                .await?;
        }
        Ok(())
    }

    /// Sends one word of the reply's text (`kind`: the audio's transcript or the text
    /// itself) unless the response was cancelled.
    async fn send_text_delta(&mut self, kind: &str, word: &str) -> Result<(), Stop> {
        self.check_cancel()?;
        let mut delta = self.content_event(kind);
        delta["delta"] = json!(word);
        self.send(delta).await?;
        self.transcript_sent.push_str(word);
        self.record_progress();
        self.check_fault().await
    }

    async fn stream_text(&mut self) -> Result<(), Stop> {
        let reply = self.plan.reply.clone();
        let start = Instant::now();
        for (index, word) in text::words(&reply).into_iter().enumerate() {
            // Word counts are small: exact in f64.
            self.pause_until(start + paced(index as f64, self.plan.tokens_per_second))
                .await?;
            self.send_text_delta("response.output_text.delta", word)
                .await?;
        }
        Ok(())
    }

    /// The trailing `…done` events and `response.done`.
    async fn finish(&mut self, ending: Ending) -> Result<(), Stop> {
        // Decided under the ledger's lock, so a cancel either makes it in or finds the
        // response ending (and is then too late, as with the service).
        let id = self.plan.response_id.clone();
        let ending = self.link.ledger.with(|dialogue| {
            let Some(active) = dialogue.active_for(&id) else {
                return ending;
            };
            active.ending = true;
            match (ending, active.reason) {
                (Ending::Completed, Some(reason)) => Ending::Cancelled(reason),
                _ => ending,
            }
        });
        let item_status = match ending {
            Ending::Completed => "completed",
            Ending::Cancelled(_) => "incomplete",
        };
        let transcript = self.transcript_sent.clone();
        if self.part_added {
            let dones = match self.plan.options.modality {
                Modality::Audio => vec![
                    ("response.output_audio.done", None),
                    (
                        "response.output_audio_transcript.done",
                        Some(("transcript", json!(transcript))),
                    ),
                ],
                Modality::Text => vec![(
                    "response.output_text.done",
                    Some(("text", json!(transcript))),
                )],
            };
            for (kind, field) in dones {
                let mut event = self.content_event(kind);
                if let Some((key, value)) = field {
                    event[key] = value;
                }
                self.emit(event).await?;
            }
            let mut part_done = self.content_event("response.content_part.done");
            part_done["part"] = self.part_json(&transcript);
            self.emit(part_done).await?;
        }
        let mut output = Vec::new();
        if self.item_added {
            let item = self.item_json(item_status, Some(&transcript));
            self.emit(json!({
                "type": "response.output_item.done",
                "event_id": text::event_id(),
                "response_id": self.plan.response_id,
                "output_index": 0,
                "item": item,
            }))
            .await?;
            if self.plan.conversation_id.is_some() {
                let previous_item_id = self.link.ledger.with(|dialogue| {
                    dialogue
                        .position(&self.plan.item_id)
                        .and_then(|index| dialogue.id_before(index))
                });
                self.emit(turn::item_event(
                    ITEM_DONE,
                    previous_item_id.as_deref(),
                    &item,
                ))
                .await?;
            }
            output.push(item);
        }
        let (status, details, reason) = match ending {
            Ending::Completed => ("completed", Value::Null, None),
            Ending::Cancelled(reason) => (
                "cancelled",
                json!({ "type": "cancelled", "reason": reason }),
                Some(reason),
            ),
        };
        self.settle(Some((status, reason)));
        let done = json!({
            "type": "response.done",
            "event_id": text::event_id(),
            "response": self.response_json(status, details, &output, self.usage()),
        });
        // The last event: a fault due after it has nothing left to cut.
        self.send(done).await
    }

    /// `MidStreamError`: an `error`, then `response.done` with `status: "failed"`.
    async fn fail(&mut self) {
        let error = Fault::mid_stream_error();
        let details = json!({
            "type": "failed",
            "error": { "type": error.kind, "code": null, "message": error.message },
        });
        let output: Vec<Value> = if self.item_added {
            vec![self.item_json("incomplete", Some(&self.transcript_sent.clone()))]
        } else {
            Vec::new()
        };
        self.settle(Some(("failed", None)));
        let _ = self.send(error.realtime_event(None)).await;
        let done = json!({
            "type": "response.done",
            "event_id": text::event_id(),
            "response": self.response_json("failed", details, &output, self.usage()),
        });
        let _ = self.send(done).await;
    }

    /// The response is over (or cut off): the conversation keeps what was said, the session
    /// may start another response, and the record gets its final status (`None`: the status
    /// stays `in_progress`, since no `response.done` will come) and its `ended_ms` (the first
    /// settle's).
    fn settle(&mut self, outcome: Option<(&str, Option<&str>)>) {
        let transcript = self.transcript_sent.clone();
        let id = self.plan.response_id.clone();
        let item_id = self.plan.item_id.clone();
        self.link.ledger.change(|dialogue| {
            if let Some(item) = dialogue.item_mut(&item_id)
                && !item.truncated
            {
                item.text = Some(transcript.clone());
            }
            if outcome.is_some() && dialogue.active_for(&id).is_some() {
                dialogue.active = None;
            }
        });
        let at_ms = self.link.ledger.shared.now_ms();
        self.link.ledger.update_response(&id, |record| {
            record.transcript_sent = transcript;
            record.ended_ms.get_or_insert(at_ms);
            if let Some((status, reason)) = outcome {
                record.status = status.to_owned();
                record.status_reason = reason.map(str::to_owned);
            }
        });
    }

    /// Adds the assistant item to the conversation; returns the id of the item before it.
    fn add_item(&self) -> Option<String> {
        self.plan.conversation_id.as_ref()?;
        let item = Item {
            id: self.plan.item_id.clone(),
            role: ROLE_ASSISTANT,
            text: None,
            audio_ms: (self.plan.options.modality == Modality::Audio).then_some(0),
            truncated: false,
        };
        self.link.ledger.change(|dialogue| dialogue.push(item))
    }

    /// Records the audio and transcript sent so far (truncate checks against the audio).
    fn record_progress(&self) {
        let audio_ms = synth::duration_ms(self.audio_bytes_sent);
        let item_id = &self.plan.item_id;
        if self.plan.conversation_id.is_some() && self.audio_bytes_sent > 0 {
            self.link.ledger.change(|dialogue| {
                if let Some(item) = dialogue.item_mut(item_id)
                    && !item.truncated
                {
                    item.audio_ms = Some(audio_ms);
                }
            });
        }
        let transcript = &self.transcript_sent;
        self.link
            .ledger
            .update_response(&self.plan.response_id, |record| {
                record.audio_ms_sent = audio_ms;
                record.transcript_sent.clone_from(transcript);
            });
    }

    /// Sends one event of the stream: stops first if the response was cancelled.
    async fn step(&mut self, event: Value) -> Result<(), Stop> {
        self.check_cancel()?;
        self.emit(event).await
    }

    /// Sends one event and applies the fault if its point has come.
    async fn emit(&mut self, event: Value) -> Result<(), Stop> {
        self.send(event).await?;
        self.check_fault().await
    }

    /// Queues one event (counted for the fault).
    async fn send(&mut self, event: Value) -> Result<(), Stop> {
        if self.link.out.send(Outbound::Event(event)).await.is_err() {
            return Err(Stop::Silenced);
        }
        self.sent += 1;
        Ok(())
    }

    /// Fires the fault if `after` events have been sent.
    async fn check_fault(&mut self) -> Result<(), Stop> {
        let action = match &self.plan.fault {
            Some(Fault::MidStreamError { after }) if self.sent >= *after => {
                self.plan.fault = None;
                return Err(Stop::Failed);
            }
            Some(Fault::Drop { after }) if self.sent >= *after => Outbound::Abort,
            Some(Fault::Stall { after }) if self.sent >= *after => Outbound::Stall,
            _ => return Ok(()),
        };
        self.plan.fault = None;
        let _ = self.link.out.send(action).await;
        Err(Stop::Silenced)
    }

    fn check_cancel(&self) -> Result<(), Stop> {
        if self.link.cancel.is_cancelled() {
            Err(self.cancelled())
        } else {
            Ok(())
        }
    }

    /// The cancel's reason, as the session recorded it.
    fn cancelled(&self) -> Stop {
        let id = &self.plan.response_id;
        let reason = self
            .link
            .ledger
            .with(|dialogue| dialogue.active_for(id).and_then(|active| active.reason));
        Stop::Cancelled(reason.unwrap_or(super::CLIENT_CANCELLED))
    }

    /// Waits until `deadline`, unless the response is cancelled first.
    async fn pause_until(&self, deadline: Instant) -> Result<(), Stop> {
        if deadline <= Instant::now() {
            return self.check_cancel();
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Ok(()),
            () = self.link.cancel.cancelled() => Err(self.cancelled()),
        }
    }

    fn rate_limits(&self) -> Value {
        let reserved = self.plan.input_text_tokens
            + self.plan.input_audio_tokens
            + RATE_LIMIT_OUTPUT_RESERVATION_TOKENS;
        json!({
            "type": "rate_limits.updated",
            "event_id": text::event_id(),
            "rate_limits": [
                { "name": "requests", "limit": RATE_LIMIT_REQUESTS, "remaining": RATE_LIMIT_REQUESTS - 1, "reset_seconds": 0.012 },
                { "name": "tokens", "limit": RATE_LIMIT_TOKENS, "remaining": RATE_LIMIT_TOKENS.saturating_sub(reserved), "reset_seconds": 6.144 },
            ],
        })
    }

    fn usage(&self) -> Value {
        usage(
            self.plan.input_text_tokens,
            self.plan.input_audio_tokens,
            text::estimate_tokens(&self.transcript_sent),
            synth::duration_ms(self.audio_bytes_sent) / OUTPUT_AUDIO_MS_PER_TOKEN,
        )
    }

    /// The `response` object of `response.created` / `response.done`.
    fn response_json(&self, status: &str, details: Value, output: &[Value], usage: Value) -> Value {
        let options = &self.plan.options;
        json!({
            "object": "realtime.response",
            "id": self.plan.response_id,
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": self.plan.conversation_id,
            "output_modalities": options.modality.to_json(),
            "max_output_tokens": options.max_output_tokens,
            "audio": { "output": { "format": pcm_format(), "voice": options.voice } },
            "usage": usage,
            "metadata": options.metadata,
        })
    }

    /// The assistant item; `content` is empty until the part is done.
    fn item_json(&self, status: &str, transcript: Option<&str>) -> Value {
        let content: Vec<Value> = transcript.map(|t| self.part_json(t)).into_iter().collect();
        json!({
            "id": self.plan.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    /// An event of type `kind` about the item's one content part.
    fn content_event(&self, kind: &str) -> Value {
        json!({
            "type": kind,
            "event_id": text::event_id(),
            "response_id": self.plan.response_id,
            "item_id": self.plan.item_id,
            "output_index": 0,
            "content_index": 0,
        })
    }

    fn part_json(&self, transcript: &str) -> Value {
        match self.plan.options.modality {
            Modality::Audio => json!({ "type": "output_audio", "transcript": transcript }),
            Modality::Text => json!({ "type": "output_text", "text": transcript }),
        }
    }
}

/// When each word starts in `total_ms` of speech, in ms: spread by letters, as the
/// synthesizer gives longer words more time.
fn word_starts_ms(words: &[&str], total_ms: u64) -> Vec<u64> {
    let total_chars: usize = words.iter().map(|word| word.chars().count()).sum();
    let mut before = 0_usize;
    words
        .iter()
        .map(|word| {
            let start = match u64::try_from(total_chars) {
                Ok(total) if total > 0 => total_ms * before as u64 / total,
                _ => 0,
            };
            before += word.chars().count();
            start
        })
        .collect()
}

/// The `usage` of `response.done`.
fn usage(
    input_text_tokens: u64,
    input_audio_tokens: u64,
    output_text_tokens: u64,
    output_audio_tokens: u64,
) -> Value {
    let input = input_text_tokens + input_audio_tokens;
    let output = output_text_tokens + output_audio_tokens;
    json!({
        "total_tokens": input + output,
        "input_tokens": input,
        "output_tokens": output,
        "input_token_details": {
            "text_tokens": input_text_tokens,
            "audio_tokens": input_audio_tokens,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": { "text_tokens": 0, "audio_tokens": 0, "image_tokens": 0 },
        },
        "output_token_details": {
            "text_tokens": output_text_tokens,
            "audio_tokens": output_audio_tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_start_in_order_spread_by_letters() {
        let words = text::words("Hi there, friend.");
        let starts = word_starts_ms(&words, 1700);
        assert_eq!(starts.len(), 3);
        assert_eq!(starts[0], 0);
        assert!(starts[0] < starts[1] && starts[1] < starts[2]);
        assert!(starts[2] < 1700);
        assert!(word_starts_ms(&[], 1000).is_empty());
    }

    #[test]
    fn usage_adds_up() {
        let usage = usage(10, 20, 5, 40);
        assert_eq!(usage["input_tokens"], 30);
        assert_eq!(usage["output_tokens"], 45);
        assert_eq!(usage["total_tokens"], 75);
        assert_eq!(usage["output_token_details"]["audio_tokens"], 40);
    }
}
