//! One browser session: an actor that owns the conversation, plus a writer task that owns the
//! socket's sending half.
//!
//! The actor reads browser frames, transcriber events and response events in one `select!`,
//! feeds them to the pure [`turn::TurnMachine`] and carries out the actions it returns. Every
//! channel is bounded. When the actor returns (browser gone or not reading, shutdown),
//! everything it started ends with it: the response task is aborted (closing its LLM and TTS
//! requests), the transcriber is dropped (closing the upstream socket), and the writer's queues
//! close. A browser that stops reading fills the bounded queues; the writer then gives up after
//! `browser_send_timeout` and the actor, seeing it gone, ends the session.
//!
//! Audio bypasses the actor on its way out: a response task sends it straight to the writer,
//! which drops any frame whose response is no longer live. The actor marks a response dead
//! *before* it queues the message that ends it, and the writer prefers control messages, so no
//! audio of a cancelled response ever follows its `response_done`.

pub mod history;
pub mod metrics;
pub mod response;
pub mod turn;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    AudioFormat, ClientMessage, ErrorCode, ErrorEvent, PROTOCOL_VERSION, ResponseId, ServerMessage,
    Stage, TurnDetection, TurnId,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::upstream::realtime::{SttCommand, SttEvent, Transcriber, TranscriberHandle};
use crate::upstream::unix_now_s;
use history::{Conversation, SpokenSegment, heard_text};
use metrics::{Step, TurnClock, log_waterfall};
use response::{AudioOut, Pipeline, ResponseEvent};
use turn::{Action, DropReason, Input, Phase, TurnMachine};

/// Control messages queued for the browser. They are small and rare; a full queue means the
/// browser stopped reading.
const CONTROL_QUEUE_MESSAGES: usize = 64;

/// Audio chunks queued for the browser. Speech chunks hold tens of milliseconds each, so this is
/// a second or two: enough to ride out jitter, small enough that a stalled browser slows the
/// TTS upstream instead of growing memory.
const AUDIO_QUEUE_CHUNKS: usize = 32;

/// Response events queued for the actor (text deltas, marks); read promptly.
const RESPONSE_EVENT_QUEUE: usize = 256;

/// Responses remembered after they end, so a late cancel can still truncate their history.
const RECENT_RESPONSES: usize = 4;

/// What every session shares: the upstream roles and the operator's settings.
#[derive(Debug)]
pub struct SessionContext {
    /// Speech-to-text.
    pub transcriber: Transcriber,
    /// LLM and TTS.
    pub pipeline: Pipeline,
    /// The system prompt of each conversation.
    pub system_prompt: String,
    /// History bound, in messages.
    pub history_max_messages: usize,
    /// Who ends a turn.
    pub turn_detection: TurnDetection,
    /// Whether the upstream is the built-in simulator.
    pub simulated: bool,
    /// How long a committed turn may wait for its transcript.
    pub transcript_timeout: Duration,
    /// How long the browser may take to accept one frame before the session ends.
    pub browser_send_timeout: Duration,
}

/// A message for the writer task.
#[derive(Debug)]
enum Control {
    Message(ServerMessage),
    Close(u16, &'static str),
}

/// What the session remembers of a response.
#[derive(Debug)]
struct ResponseRecord {
    id: ResponseId,
    turn_id: TurnId,
    text: String,
    segments: Vec<SpokenSegment>,
    played_samples: u64,
    /// Generation ended (finished or cancelled).
    ended: bool,
}

impl ResponseRecord {
    fn heard(&self) -> String {
        heard_text(&self.segments, self.played_samples)
    }

    fn audio_samples(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.samples.unwrap_or_default())
            .sum()
    }
}

/// Runs one session until the browser leaves or `shutdown` fires.
pub async fn run(
    socket: WebSocket,
    context: Arc<SessionContext>,
    session_id: String,
    shutdown: CancellationToken,
) {
    let (sink, stream) = socket.split();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE_MESSAGES);
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE_CHUNKS);
    let live = Arc::new(AtomicU32::new(0));
    let writer = AbortOnDropHandle::new(tokio::spawn(write(
        sink,
        control_rx,
        audio_rx,
        live.clone(),
        context.browser_send_timeout,
    )));
    let (events_tx, events_rx) = mpsc::channel(RESPONSE_EVENT_QUEUE);
    let cancel = shutdown.child_token();
    let mut session = Session {
        machine: TurnMachine::new(context.turn_detection),
        conversation: Conversation::new(
            context.system_prompt.clone(),
            context.history_max_messages,
        ),
        context,
        id: session_id,
        control: control_tx,
        audio: audio_tx,
        live,
        stt: None,
        stt_ready: false,
        stt_expires_at_unix_s: None,
        cancel: cancel.clone(),
        response_task: None,
        response_events: events_tx,
        responses: VecDeque::new(),
        clocks: VecDeque::new(),
        transcript_deadline: None,
        actions: Vec::new(),
    };
    tracing::info!(session = %session.id, "session started");
    session.start().await;
    session.run(stream, events_rx, &shutdown).await;
    cancel.cancel();
    drop(session);
    // Let the writer flush the close frame; it ends once its queues close.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

struct Session {
    context: Arc<SessionContext>,
    id: String,
    machine: TurnMachine,
    conversation: Conversation,
    control: mpsc::Sender<Control>,
    audio: mpsc::Sender<AudioOut>,
    /// The response whose audio may go out (0: none). Shared with the writer.
    live: Arc<AtomicU32>,
    stt: Option<TranscriberHandle>,
    stt_ready: bool,
    /// When the upstream will end the transcription session, once it said.
    stt_expires_at_unix_s: Option<u64>,
    cancel: CancellationToken,
    response_task: Option<AbortOnDropHandle<()>>,
    response_events: mpsc::Sender<(ResponseId, ResponseEvent)>,
    responses: VecDeque<ResponseRecord>,
    clocks: VecDeque<TurnClock>,
    transcript_deadline: Option<tokio::time::Instant>,
    actions: Vec<Action>,
}

impl Session {
    async fn start(&mut self) {
        self.send(ServerMessage::SessionReady {
            protocol_version: PROTOCOL_VERSION,
            session_id: self.id.clone(),
            audio: AudioFormat::default(),
            turn_detection: self.context.turn_detection,
            simulated: self.context.simulated,
        })
        .await;
        self.ensure_transcriber();
    }

    async fn run(
        &mut self,
        mut browser: SplitStream<WebSocket>,
        mut response_events: mpsc::Receiver<(ResponseId, ResponseEvent)>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let deadline = self.transcript_deadline;
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = self.control.send(Control::Close(1001, "server shutting down")).await;
                    return;
                }
                // The writer gave up on a browser that stopped reading.
                () = self.control.closed() => return,
                frame = browser.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_browser_text(&text).await,
                    Some(Ok(Message::Binary(audio))) => self.on_browser_audio(audio).await,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::info!(session = %self.id, %error, "browser socket failed");
                        if let Some((code, reason)) = close_for_read_error(&error) {
                            let _ = self.control.send(Control::Close(code, reason)).await;
                        }
                        return;
                    }
                },
                event = next_stt_event(&mut self.stt) => self.on_stt(event).await,
                Some((id, event)) = response_events.recv() => self.on_response(id, event).await,
                () = sleep_until(deadline) => {
                    self.transcript_deadline = None;
                    self.apply(Input::TranscriptTimedOut).await;
                    self.retire_transcriber().await;
                }
            }
        }
    }

    async fn send(&self, message: ServerMessage) {
        // The writer is gone only when the browser is; the read side will notice.
        let _ = self.control.send(Control::Message(message)).await;
    }

    async fn send_error(&self, event: ErrorEvent) {
        tracing::warn!(session = %self.id, stage = event.stage.as_str(), code = ?event.code, "{}", event.message);
        self.send(ServerMessage::Error(event)).await;
    }

    /// Starts a transcriber if none runs (at start, and at the next speech start after one
    /// was lost).
    fn ensure_transcriber(&mut self) {
        if self.stt.is_none() {
            self.stt = Some(self.context.transcriber.spawn(self.cancel.child_token()));
            self.stt_ready = false;
            self.stt_expires_at_unix_s = None;
        }
    }

    /// Drops the transcriber (closing its socket) and forgets its item ids, so a fresh one's
    /// items cannot be matched to them.
    async fn drop_transcriber(&mut self) {
        self.stt = None;
        self.apply(Input::TranscriberLost).await;
    }

    /// At a speech start with nothing waiting for a transcript: replaces a transcription
    /// session the upstream is about to end (it lasts at most an hour), so no turn is cut by
    /// its expiry.
    async fn rotate_expiring_transcriber(&mut self) {
        let expiring = self
            .stt_expires_at_unix_s
            .is_some_and(|at| expires_within_a_turn(at, unix_now_s()));
        if expiring && self.stt.is_some() && !self.machine.has_open_turns() {
            tracing::info!(session = %self.id, "transcription session near its end; opening a fresh one");
            self.drop_transcriber().await;
        }
    }

    /// Drops a transcriber that let a committed turn go unanswered: it may be hung with its
    /// socket still open, and keeping it would fail every later turn the same way. The next
    /// speech start opens a fresh one. Turns still waiting on it are reported as timed out.
    async fn retire_transcriber(&mut self) {
        for _ in 0..self.machine.open_turn_count() {
            self.apply(Input::TranscriptTimedOut).await;
        }
        self.drop_transcriber().await;
        if self.machine.phase() == Phase::UserSpeaking {
            // The rest of what is being said goes to the fresh one.
            self.ensure_transcriber();
        }
    }

    async fn on_browser_text(&mut self, text: &str) {
        let message = match ClientMessage::from_json(text) {
            Ok(message) => message,
            Err(error) => {
                self.send_error(ErrorEvent {
                    stage: Stage::Proxy,
                    code: ErrorCode::InvalidMessage,
                    message: format!("Message rejected: {error}"),
                    retryable: false,
                    turn_id: None,
                    response_id: None,
                })
                .await;
                return;
            }
        };
        match message {
            ClientMessage::SpeechStarted => {
                self.rotate_expiring_transcriber().await;
                self.ensure_transcriber();
                self.apply(Input::ClientSpeechStarted).await;
            }
            ClientMessage::SpeechStopped => self.apply(Input::ClientSpeechStopped).await,
            ClientMessage::PlaybackProgress {
                response_id,
                played_samples,
            } => {
                if let Some(record) = self.record_mut(response_id) {
                    record.played_samples = record.played_samples.max(played_samples);
                }
            }
            ClientMessage::Cancel {
                response_id,
                played_samples,
            } => {
                let Some(record) = self.record_mut(response_id) else {
                    return;
                };
                record.played_samples = played_samples;
                self.apply(Input::ClientCancel(response_id)).await;
                // The answer may have finished generating while it was still playing: cut
                // the history to what was heard either way.
                if let Some(record) = self.record_mut(response_id) {
                    let heard = record.heard();
                    self.conversation.set_assistant(response_id, &heard);
                    self.send(ServerMessage::ResponseTruncated {
                        response_id,
                        heard_text: heard,
                    })
                    .await;
                }
            }
        }
    }

    async fn on_browser_audio(&mut self, audio: Bytes) {
        if let Err(error) = protocol::validate_client_audio(&audio) {
            self.send_error(ErrorEvent {
                stage: Stage::Proxy,
                code: ErrorCode::InvalidMessage,
                message: format!("Audio frame rejected: {error}"),
                retryable: false,
                turn_id: None,
                response_id: None,
            })
            .await;
            return;
        }
        self.machine.handle(Input::ClientAudio, &mut self.actions);
        // Without a transcriber (it was lost; the browser was told) the audio has nowhere to
        // go; the next speech start reconnects. Reconnecting per frame would hammer a failing
        // upstream.
        let Some(stt) = &self.stt else { return };
        match stt.commands.try_send(SttCommand::Append(audio)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.send_error(ErrorEvent {
                    stage: Stage::Stt,
                    code: ErrorCode::UpstreamTimeout,
                    message: "Speech recognition is not keeping up; some audio was lost.".into(),
                    retryable: true,
                    turn_id: None,
                    response_id: None,
                })
                .await;
            }
            // The transcriber ended; its Closed event explains why.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    async fn on_stt(&mut self, event: Option<SttEvent>) {
        let Some(event) = event else {
            self.stt = None;
            return;
        };
        let input = match event {
            SttEvent::Ready { expires_at_unix_s } => {
                self.stt_ready = true;
                self.stt_expires_at_unix_s = expires_at_unix_s;
                return;
            }
            SttEvent::SpeechStarted { item_id } => Input::UpstreamSpeechStarted { item_id },
            SttEvent::SpeechStopped { item_id } => Input::UpstreamSpeechStopped { item_id },
            SttEvent::Committed { item_id, .. } => Input::Committed { item_id },
            SttEvent::Delta { item_id, delta } => Input::TranscriptDelta { item_id, delta },
            SttEvent::Completed {
                item_id,
                transcript,
            } => Input::TranscriptCompleted {
                item_id,
                transcript,
            },
            SttEvent::Failed { item_id, code } => {
                tracing::info!(session = %self.id, ?code, "transcription of a turn failed");
                Input::TranscriptFailed { item_id }
            }
            SttEvent::CommitEmpty => Input::CommitEmpty,
            SttEvent::Error { code, message } => {
                tracing::warn!(session = %self.id, ?code, %message, "transcription error event");
                if !self.stt_ready {
                    // The session configuration itself was refused.
                    self.send_error(ErrorEvent {
                        stage: Stage::Stt,
                        code: ErrorCode::UpstreamBadRequest,
                        message: "Speech recognition rejected the session configuration.".into(),
                        retryable: false,
                        turn_id: None,
                        response_id: None,
                    })
                    .await;
                }
                return;
            }
            SttEvent::Closed(error) if self.stt_ready && self.transcriber_idle() => {
                // Nothing was lost (the session reached its maximum duration, say): the next
                // speech start opens a fresh one, and the user need not hear of it.
                tracing::info!(session = %self.id, %error, "transcription session ended while idle");
                self.stt = None;
                Input::TranscriberLost
            }
            SttEvent::Closed(error) => {
                tracing::warn!(session = %self.id, %error, "transcriber lost");
                self.stt = None;
                let mut event = error.to_event(Stage::Stt);
                if event.code == ErrorCode::StreamInterrupted {
                    event.code = ErrorCode::SessionLost;
                    event.message = "The speech recognition connection was lost; it reconnects when you speak again.".into();
                    event.retryable = true;
                }
                self.send_error(event).await;
                // Turns waiting for it will never be transcribed (the error above says why).
                Input::TranscriberLost
            }
        };
        self.apply(input).await;
    }

    /// Whether the transcriber has nothing in hand: no turn waits for it, and no one speaks.
    fn transcriber_idle(&self) -> bool {
        !self.machine.has_open_turns() && self.machine.phase() != Phase::UserSpeaking
    }

    /// Feeds the turn machine and carries out what it decides.
    async fn apply(&mut self, input: Input) {
        self.machine.handle(input, &mut self.actions);
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            self.execute(action).await;
        }
        self.actions = actions;
    }

    async fn execute(&mut self, action: Action) {
        match action {
            Action::TurnEnded(turn) => {
                self.clocks.push_back(TurnClock::new(turn, Instant::now()));
                self.refresh_transcript_deadline();
            }
            Action::Commit => {
                self.ensure_transcriber();
                if let Some(stt) = &self.stt {
                    // Commands are in order behind the audio; a full queue is reported on append.
                    let _ = stt.commands.try_send(SttCommand::Commit);
                }
                self.mark_latest_turn(Step::CommitSent);
            }
            Action::NotifySpeechStarted(turn_id) => {
                self.send(ServerMessage::SpeechStarted { turn_id }).await;
            }
            Action::NotifySpeechStopped(turn_id) => {
                self.send(ServerMessage::SpeechStopped { turn_id }).await;
            }
            Action::TranscriptDelta(turn_id, delta) => {
                self.send(ServerMessage::TranscriptDelta { turn_id, delta })
                    .await;
            }
            Action::TranscriptFinal(turn_id, text) => {
                if let Some(clock) = self.clock_mut(turn_id) {
                    clock.mark(Step::TranscriptFinal, Instant::now());
                }
                self.conversation.add_user(&text);
                self.send(ServerMessage::TranscriptFinal { turn_id, text })
                    .await;
                self.refresh_transcript_deadline();
            }
            Action::TurnDropped(turn_id, reason) => {
                self.clocks.retain(|c| c.turn_id != turn_id);
                self.refresh_transcript_deadline();
                if reason == DropReason::Lost {
                    // Already reported as the lost transcription session.
                    return;
                }
                let (code, message) = match reason {
                    DropReason::Failed => (
                        ErrorCode::TranscriptionFailed,
                        "Sorry, I couldn't make out what you said.",
                    ),
                    DropReason::Empty => (
                        ErrorCode::AudioTooShort,
                        "I didn't catch anything; please speak a little longer.",
                    ),
                    DropReason::TimedOut | DropReason::Lost => (
                        ErrorCode::UpstreamTimeout,
                        "Speech recognition did not answer in time.",
                    ),
                };
                self.send_error(ErrorEvent {
                    stage: Stage::Stt,
                    code,
                    message: message.into(),
                    retryable: true,
                    turn_id: Some(turn_id),
                    response_id: None,
                })
                .await;
            }
            Action::StartResponse(response_id, turn_id) => {
                self.start_response(response_id, turn_id).await
            }
            Action::CancelResponse(response_id) => self.cancel_response(response_id).await,
        }
    }

    async fn start_response(&mut self, response_id: ResponseId, turn_id: TurnId) {
        if let Some(clock) = self.clock_mut(turn_id) {
            clock.response_id = Some(response_id);
        }
        self.live.store(response_id, Ordering::SeqCst);
        self.responses.push_back(ResponseRecord {
            id: response_id,
            turn_id,
            text: String::new(),
            segments: Vec::new(),
            played_samples: 0,
            ended: false,
        });
        while self.responses.len() > RECENT_RESPONSES {
            self.responses.pop_front();
        }
        let messages = self.conversation.messages();
        self.conversation.begin_assistant(response_id);
        self.send(ServerMessage::ResponseStarted {
            response_id,
            turn_id,
        })
        .await;
        let task = self.context.pipeline.clone().respond(
            response_id,
            messages,
            self.response_events.clone(),
            self.audio.clone(),
        );
        self.response_task = Some(AbortOnDropHandle::new(tokio::spawn(task)));
    }

    /// Stops a live response at once: no more of its audio goes out, its upstream requests
    /// close, and the history keeps what was heard so far.
    async fn cancel_response(&mut self, response_id: ResponseId) {
        // Before anything else: the writer drops this response's audio from now on.
        let _ = self
            .live
            .compare_exchange(response_id, 0, Ordering::SeqCst, Ordering::SeqCst);
        self.response_task = None;
        let Some(record) = self.record_mut(response_id) else {
            return;
        };
        record.ended = true;
        let (heard, text, audio_samples, turn_id) = (
            record.heard(),
            record.text.clone(),
            record.audio_samples(),
            record.turn_id,
        );
        self.conversation.set_assistant(response_id, &heard);
        tracing::info!(session = %self.id, response = response_id, "response interrupted");
        self.send(ServerMessage::ResponseDone {
            response_id,
            text,
            interrupted: true,
            audio_samples,
        })
        .await;
        self.report_turn(turn_id).await;
    }

    async fn on_response(&mut self, id: ResponseId, event: ResponseEvent) {
        let Some(record) = self.record_mut(id) else {
            return;
        };
        if record.ended {
            // Late events of a cancelled response.
            return;
        }
        let turn_id = record.turn_id;
        match event {
            ResponseEvent::LlmRequestSent(at) => self.mark(turn_id, Step::LlmRequest, at),
            ResponseEvent::LlmFirstToken(at) => self.mark(turn_id, Step::LlmFirstToken, at),
            ResponseEvent::FirstClause(at) => self.mark(turn_id, Step::FirstClause, at),
            ResponseEvent::TtsRequestSent(at) => self.mark(turn_id, Step::TtsRequest, at),
            ResponseEvent::TtsFirstByte(at) => self.mark(turn_id, Step::TtsFirstByte, at),
            ResponseEvent::TextDelta(delta) => {
                record.text.push_str(&delta);
                self.send(ServerMessage::ResponseTextDelta {
                    response_id: id,
                    delta,
                })
                .await;
            }
            ResponseEvent::SegmentStarted { text, start_sample } => {
                record.segments.push(SpokenSegment {
                    text,
                    start_sample,
                    samples: None,
                })
            }
            ResponseEvent::SegmentFinished { samples } => {
                if let Some(segment) = record.segments.last_mut() {
                    segment.samples = Some(samples);
                }
            }
            ResponseEvent::FirstAudioSent(at) => {
                self.mark(turn_id, Step::FirstAudioSent, at);
                self.apply(Input::ResponseAudioStarted(id)).await;
            }
            ResponseEvent::Failed(stage, error) => {
                tracing::warn!(session = %self.id, response = id, stage = stage.as_str(), %error, "response stage failed");
                let mut event = error.to_event(stage);
                event.turn_id = Some(turn_id);
                event.response_id = Some(id);
                self.send(ServerMessage::Error(event)).await;
            }
            ResponseEvent::Finished { audio_samples } => {
                record.ended = true;
                let text = record.text.clone();
                self.conversation.set_assistant(id, &text);
                self.send(ServerMessage::ResponseDone {
                    response_id: id,
                    text,
                    interrupted: false,
                    audio_samples,
                })
                .await;
                self.response_task = None;
                self.apply(Input::ResponseEnded(id)).await;
                self.report_turn(turn_id).await;
            }
        }
    }

    fn record_mut(&mut self, id: ResponseId) -> Option<&mut ResponseRecord> {
        self.responses.iter_mut().find(|r| r.id == id)
    }

    fn clock_mut(&mut self, turn_id: TurnId) -> Option<&mut TurnClock> {
        self.clocks.iter_mut().find(|c| c.turn_id == turn_id)
    }

    fn mark(&mut self, turn_id: TurnId, step: Step, at: Instant) {
        if let Some(clock) = self.clock_mut(turn_id) {
            clock.mark(step, at);
        }
    }

    fn mark_latest_turn(&mut self, step: Step) {
        if let Some(clock) = self.clocks.back_mut() {
            clock.mark(step, Instant::now());
        }
    }

    /// Logs and sends a turn's waterfall, once, and forgets the turn and older ones.
    async fn report_turn(&mut self, turn_id: TurnId) {
        let Some(clock) = self.clock_mut(turn_id) else {
            return;
        };
        let response_id = clock.response_id;
        if let Some(waterfall) = clock.report() {
            log_waterfall(&self.id, turn_id, response_id, &waterfall);
            self.send(ServerMessage::Metrics {
                turn_id,
                response_id,
                waterfall,
            })
            .await;
        }
        self.clocks.retain(|c| c.turn_id > turn_id);
    }

    /// Keeps a deadline on the oldest turn still waiting for its transcript.
    fn refresh_transcript_deadline(&mut self) {
        self.transcript_deadline = self
            .machine
            .has_open_turns()
            .then(|| tokio::time::Instant::now() + self.context.transcript_timeout);
    }
}

/// How long before its expiry a transcription session is no longer trusted with a new turn,
/// in seconds: the longest utterance (30 s) plus the transcript's wait (20 s), rounded up.
const STT_ROTATE_BEFORE_EXPIRY_S: u64 = 60;

/// Whether a session expiring at `expires_at` (Unix seconds) may end during a turn begun at
/// `now`.
fn expires_within_a_turn(expires_at: u64, now: u64) -> bool {
    now.saturating_add(STT_ROTATE_BEFORE_EXPIRY_S) >= expires_at
}

/// The close code that tells the browser why its socket was refused, for the read errors that
/// are the browser's fault (RFC 6455 §7.4.1); `None` when the socket just broke.
fn close_for_read_error(error: &axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error;
    match std::error::Error::source(error)?.downcast_ref::<Error>()? {
        Error::Capacity(_) => Some((1009, "message too big")),
        Error::Utf8(_) => Some((1007, "invalid UTF-8")),
        Error::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

/// The next transcriber event, or never when there is no transcriber.
async fn next_stt_event(stt: &mut Option<TranscriberHandle>) -> Option<SttEvent> {
    match stt {
        Some(handle) => handle.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the deadline, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The writer task: sends control messages first, then audio of the live response only.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut control: mpsc::Receiver<Control>,
    mut audio: mpsc::Receiver<AudioOut>,
    live: Arc<AtomicU32>,
    send_timeout: Duration,
) {
    let mut stale_chunks = 0u64;
    loop {
        let message = tokio::select! {
            biased;
            control = control.recv() => match control {
                Some(Control::Message(message)) => Message::Text(message.to_json().into()),
                Some(Control::Close(code, reason)) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))
                        .await;
                    break;
                }
                None => break,
            },
            chunk = audio.recv() => match chunk {
                Some(chunk) if chunk.response_id == live.load(Ordering::SeqCst) => {
                    let mut frame = Vec::new();
                    protocol::encode_audio_frame(chunk.response_id, &chunk.pcm, &mut frame);
                    Message::Binary(frame.into())
                }
                Some(_) => {
                    stale_chunks += 1;
                    continue;
                }
                None => break,
            },
        };
        match tokio::time::timeout(send_timeout, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!(?send_timeout, "browser stopped reading; ending its session");
                // No close handshake with a peer that does not read.
                return;
            }
        }
    }
    if stale_chunks > 0 {
        tracing::debug!(stale_chunks, "dropped audio of cancelled responses");
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcription_session_is_replaced_within_a_minute_of_its_expiry() {
        let expires_at = 10_000;
        assert!(!expires_within_a_turn(expires_at, expires_at - 61));
        assert!(expires_within_a_turn(expires_at, expires_at - 60));
        assert!(expires_within_a_turn(expires_at, expires_at + 5));
        assert!(!expires_within_a_turn(u64::MAX, 0));
    }
}
