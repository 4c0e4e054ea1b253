//! One user turn of a Realtime transcription session: the events it sends and the fault it
//! carries (docs/openai-wire.md §1.6 event shapes, §1.7 sequence). A conversation session
//! transcribes its committed turns with the same [`run`] when input transcription is on.
//!
//! A [`TurnEmitter`] sends the turn's events into the connection's outbound queue and applies
//! the turn's fault when its count of sent events reaches `after` (see
//! [`fault`](super::fault) for which turn takes which fault). After the connection has sent
//! `committed` and the item events, [`run`] transcribes in its own task: after
//! `stt_first_delta_ms` (plus `stt_ms_per_audio_s` per second of the turn's audio, see
//! [`SimConfig::stt_first_delta`]) the word-sized deltas, one every `stt_delta_interval_ms`, then
//! `completed` with token `usage` — or `…transcription.failed` for
//! [`Fault::TranscriptionFailed`]. Turns run concurrently, so a later turn can complete first.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::config::SimConfig;
use super::fault::Fault;
use super::text;

/// With `out_of_order`, the longest a turn's `completed` waits for the next turn's.
const OUT_OF_ORDER_MAX_HOLD: Duration = Duration::from_secs(3);
/// Audio tokens per second of input audio in transcription `usage` (10 per second).
const AUDIO_MS_PER_TOKEN: u64 = 100;

/// What the session loop and turns ask the socket writer to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send one server event.
    Event(Value),
    /// Send a close frame and end the connection.
    Close { code: u16, reason: String },
    /// Fault: drop the connection without a close frame.
    Abort,
    /// Fault: send nothing more, but keep the connection open.
    Stall,
}

/// Sends a turn's events and applies its fault.
#[derive(Debug)]
pub(crate) struct TurnEmitter {
    out: mpsc::Sender<Outbound>,
    fault: Option<Fault>,
    /// Events sent since the fault was taken.
    sent: usize,
    /// A fault ended the turn: nothing more is sent for it.
    silenced: bool,
}

impl TurnEmitter {
    pub(crate) fn new(out: mpsc::Sender<Outbound>) -> Self {
        Self {
            out,
            fault: None,
            sent: 0,
            silenced: false,
        }
    }

    pub(crate) fn has_fault(&self) -> bool {
        self.fault.is_some()
    }

    /// Whether this turn's transcription is to fail.
    pub(crate) fn transcription_fails(&self) -> bool {
        self.fault == Some(Fault::TranscriptionFailed)
    }

    /// Gives the turn a fault; acts at once if it is due after zero events.
    pub(crate) async fn arm(&mut self, fault: Fault) {
        self.fault = Some(fault);
        self.sent = 0;
        self.check().await;
    }

    /// Sends one event of this turn; `false` once a fault has ended the turn.
    pub(crate) async fn emit(&mut self, event: Value) -> bool {
        if self.silenced {
            return false;
        }
        if self.out.send(Outbound::Event(event)).await.is_err() {
            self.silenced = true;
            return false;
        }
        self.sent += 1;
        self.check().await;
        !self.silenced
    }

    /// Fires the fault if its point has come.
    async fn check(&mut self) {
        if self.silenced {
            return;
        }
        let action = match self.fault {
            Some(Fault::MidStreamError { after }) if self.sent >= after => {
                Outbound::Event(Fault::mid_stream_error().realtime_event(None))
            }
            Some(Fault::Drop { after }) if self.sent >= after => Outbound::Abort,
            Some(Fault::Stall { after }) if self.sent >= after => Outbound::Stall,
            _ => return,
        };
        self.silenced = true;
        let _ = self.out.send(action).await;
    }
}

/// Everything a committed turn needs to transcribe.
#[derive(Debug)]
pub(crate) struct TurnPlan {
    pub(crate) item_id: String,
    pub(crate) previous_item_id: Option<String>,
    pub(crate) transcript: String,
    pub(crate) audio_ms: u64,
    /// The session's transcription prompt, billed as text tokens.
    pub(crate) prompt: String,
    pub(crate) first_delta: Duration,
    pub(crate) delta_interval: Duration,
    pub(crate) quirks: bool,
    /// Quirk of transcription sessions: a `conversation.item.done` with the transcript after
    /// `completed` (a conversation session sends its `item.done` at the commit instead).
    pub(crate) item_done: bool,
    pub(crate) logprobs: bool,
    pub(crate) seed: u64,
    /// `out_of_order`: wait for this before sending `completed`.
    pub(crate) hold: Option<oneshot::Receiver<()>>,
    /// `out_of_order`: fire this after sending `completed` (dropping it releases too).
    pub(crate) release: Option<oneshot::Sender<()>>,
}

impl TurnPlan {
    /// Transcribing `item_id` into `transcript` at the configured pace, with the configured
    /// quirks; no prompt, no logprobs, no `item.done`, no ordering.
    pub(crate) fn new(
        item_id: String,
        previous_item_id: Option<String>,
        transcript: String,
        audio_ms: u64,
        config: &SimConfig,
        seed: u64,
    ) -> Self {
        Self {
            item_id,
            previous_item_id,
            transcript,
            audio_ms,
            prompt: String::new(),
            first_delta: config.stt_first_delta(audio_ms),
            delta_interval: Duration::from_millis(config.stt_delta_interval_ms),
            quirks: config.quirks,
            item_done: false,
            logprobs: false,
            seed,
            hold: None,
            release: None,
        }
    }
}

/// Transcribes a committed turn until done or until the connection ends.
pub(crate) async fn run(
    mut emitter: TurnEmitter,
    plan: TurnPlan,
    connection_done: CancellationToken,
) {
    tokio::select! {
        () = transcribe(&mut emitter, plan) => {}
        () = connection_done.cancelled() => {}
    }
}

async fn transcribe(emitter: &mut TurnEmitter, mut plan: TurnPlan) {
    tokio::time::sleep(plan.first_delta).await;
    if emitter.transcription_fails() {
        emitter.emit(failed_event(&plan.item_id)).await;
        return;
    }
    let mut pieces = text::words(&plan.transcript);
    if plan.quirks {
        pieces = text::split_oddly(pieces, &mut StdRng::seed_from_u64(plan.seed));
    }
    for (index, piece) in pieces.iter().enumerate() {
        if index > 0 {
            tokio::time::sleep(plan.delta_interval).await;
        }
        let mut delta = json!({
            "type": "conversation.item.input_audio_transcription.delta",
            "event_id": text::event_id(),
            "item_id": plan.item_id,
            "content_index": 0,
            "delta": piece,
        });
        if plan.logprobs {
            delta["logprobs"] = logprobs(&[piece]);
        }
        if plan.quirks {
            delta["obfuscation"] = json!(text::obfuscation());
        }
        if !emitter.emit(delta).await {
            return;
        }
    }
    if let Some(hold) = plan.hold.take() {
        let _ = tokio::time::timeout(OUT_OF_ORDER_MAX_HOLD, hold).await;
    }
    if !emitter.emit(completed_event(&plan, &pieces)).await {
        return;
    }
    if let Some(release) = plan.release.take() {
        let _ = release.send(());
    }
    if plan.item_done {
        let item = user_item(&plan.item_id, Some(&plan.transcript));
        emitter
            .emit(item_event(
                "conversation.item.done",
                plan.previous_item_id.as_deref(),
                &item,
            ))
            .await;
    }
}

fn completed_event(plan: &TurnPlan, pieces: &[&str]) -> Value {
    let audio_tokens = (plan.audio_ms / AUDIO_MS_PER_TOKEN).max(1);
    let text_tokens = text::estimate_tokens(&plan.prompt);
    let output_tokens = text::estimate_tokens(&plan.transcript);
    let mut event = json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": text::event_id(),
        "item_id": plan.item_id,
        "content_index": 0,
        "transcript": plan.transcript,
        "usage": {
            "type": "tokens",
            "total_tokens": audio_tokens + text_tokens + output_tokens,
            "input_tokens": audio_tokens + text_tokens,
            "input_token_details": { "text_tokens": text_tokens, "audio_tokens": audio_tokens },
            "output_tokens": output_tokens,
        },
    });
    if plan.logprobs {
        event["logprobs"] = logprobs(pieces);
    }
    event
}

fn failed_event(item_id: &str) -> Value {
    json!({
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": text::event_id(),
        "item_id": item_id,
        "content_index": 0,
        "error": {
            "type": "transcription_error",
            "code": "audio_unintelligible",
            "message": "The audio could not be transcribed.",
            "param": null,
        },
    })
}

/// `logprobs` entries for pieces of text: confident, with the UTF-8 bytes.
fn logprobs(pieces: &[&str]) -> Value {
    let entries: Vec<Value> = pieces
        .iter()
        .map(|piece| json!({ "token": piece, "logprob": -0.01, "bytes": piece.as_bytes() }))
        .collect();
    Value::Array(entries)
}

/// `input_audio_buffer.committed`: the buffer became user item `item_id`, after
/// `previous_item_id`.
pub(crate) fn committed_event(previous_item_id: Option<&str>, item_id: &str) -> Value {
    json!({
        "type": "input_audio_buffer.committed",
        "event_id": text::event_id(),
        "previous_item_id": previous_item_id,
        "item_id": item_id,
    })
}

/// A `conversation.item.*` event of type `kind` (`added`, `done`, the beta's `created`)
/// showing `item`, which follows `previous_item_id`.
pub(crate) fn item_event(kind: &str, previous_item_id: Option<&str>, item: &Value) -> Value {
    json!({
        "type": kind,
        "event_id": text::event_id(),
        "previous_item_id": previous_item_id,
        "item": item,
    })
}

/// The user message item a committed turn creates.
pub(crate) fn user_item(item_id: &str, transcript: Option<&str>) -> Value {
    json!({
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{ "type": "input_audio", "transcript": transcript }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(rx: &mut mpsc::Receiver<Outbound>) -> Vec<Outbound> {
        let mut all = Vec::new();
        while let Ok(next) = rx.try_recv() {
            all.push(next);
        }
        all
    }

    #[tokio::test]
    async fn drop_after_two_events_stops_the_turn() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut turn = TurnEmitter::new(tx);
        turn.arm(Fault::Drop { after: 2 }).await;
        assert!(turn.emit(json!({"n": 1})).await);
        assert!(!turn.emit(json!({"n": 2})).await);
        assert!(!turn.emit(json!({"n": 3})).await);
        let sent = drain(&mut rx).await;
        assert_eq!(sent.len(), 3);
        assert!(matches!(sent[2], Outbound::Abort));
    }

    #[tokio::test]
    async fn mid_stream_error_at_zero_fires_immediately() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut turn = TurnEmitter::new(tx);
        turn.arm(Fault::MidStreamError { after: 0 }).await;
        assert!(!turn.emit(json!({})).await);
        let sent = drain(&mut rx).await;
        assert_eq!(sent.len(), 1);
        let Outbound::Event(error) = &sent[0] else {
            panic!("{sent:?}")
        };
        assert_eq!(error["error"]["type"], "server_error");
    }

    #[test]
    fn the_first_delta_waits_longer_for_a_longer_turn() {
        let config = SimConfig {
            stt_first_delta_ms: 100,
            stt_ms_per_audio_s: 200,
            ..SimConfig::default()
        };
        let plan =
            |audio_ms| TurnPlan::new("item".into(), None, "Hi.".into(), audio_ms, &config, 1);
        assert_eq!(plan(1_000).first_delta, Duration::from_millis(300));
        assert_eq!(plan(2_500).first_delta, Duration::from_millis(600));
    }

    #[tokio::test]
    async fn transcription_sends_deltas_then_completed() {
        let (tx, mut rx) = mpsc::channel(64);
        let config = SimConfig {
            quirks: false,
            ..SimConfig::instant()
        };
        let plan = TurnPlan::new(
            "item_1".into(),
            None,
            "Hello there, friend.".into(),
            1200,
            &config,
            1,
        );
        run(TurnEmitter::new(tx), plan, CancellationToken::new()).await;
        let events: Vec<Value> = drain(&mut rx)
            .await
            .into_iter()
            .filter_map(|out| {
                if let Outbound::Event(event) = out {
                    Some(event)
                } else {
                    None
                }
            })
            .collect();
        let deltas: String = events[..events.len() - 1]
            .iter()
            .map(|event| event["delta"].as_str().expect("a delta"))
            .collect();
        assert_eq!(deltas, "Hello there, friend.");
        let completed = events.last().expect("completed");
        assert_eq!(completed["transcript"], "Hello there, friend.");
        assert_eq!(
            completed["usage"]["input_token_details"]["audio_tokens"],
            12
        );
    }
}
