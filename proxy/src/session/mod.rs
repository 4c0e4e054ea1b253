//! One browser session: an actor that owns the conversation, and the parts it drives.
//!
//! * [`browser`] — the browser connection: what its frames mean, and the writer task that owns
//!   the socket's sending half (control before audio; audio of dead responses dropped);
//! * [`transcriber_slot`] — the session's transcriber: opened at the first speech (an idle
//!   session holds no upstream socket), closed after a quiet period, replaced before it
//!   expires or when it hangs;
//! * [`deadlines`] — the session's timers (transcript, quiet close, idle, maximum length,
//!   browser ping); [`audio_budget`] — audio accepted at most at a multiple of real time;
//! * [`turn`] — the pure turn state machine; [`history`] — the conversation and each answer's
//!   record; [`response`] — one answer's LLM → sentences → TTS pipeline; [`metrics`] — the
//!   latency waterfall of each turn;
//! * [`shell`] — what every session actor has (browser link, timers, budgets, warnings);
//!   [`speech_to_speech`] — the other pipeline's actor, one Realtime conversation upstream.
//!
//! The actor reads browser frames, transcriber events and response events in one `select!`,
//! feeds them to the [`turn::TurnMachine`] and carries out the actions it returns. Every
//! channel is bounded. When the actor returns (browser gone or not reading, shutdown),
//! everything it started ends with it: the response task is aborted (closing its LLM and TTS
//! requests), the transcriber is dropped (closing the upstream socket), and the writer's queues
//! close. Audio bypasses the actor on its way out: a response task sends it straight to the
//! writer.

mod audio_budget;
mod browser;
mod deadlines;
pub(crate) mod history;
pub(crate) mod metrics;
pub(crate) mod response;
mod resume;
mod shell;
pub(crate) mod speech_to_speech;
mod transcriber_slot;
pub(crate) mod turn;
mod turn_audio;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{WebSocket, close_code};
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::SplitStream;
use protocol::{
    AudioFormat, ClientMessage, ErrorCode, ErrorEvent, PROTOCOL_VERSION, ResponseId, ServerMessage,
    Stage, TurnDetection, TurnId,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;

use crate::config::Limits;
use crate::observability::{Metrics, SessionEnd};
use crate::session_store::{Resume, SavedSession};
use crate::upstream::realtime::Transcriber;
use audio_budget::audio_ms;
use browser::{AudioWritten, BrowserLink, Incoming};
use deadlines::Timer;
use history::Conversation;
use resume::Resumption;
// `self::`: the `metrics` crate has the same name.
use self::metrics::{Step, TurnClocks, log_waterfall};
use response::{Pipeline, ResponseEvent};
use shell::{Admitted, Shell};
use transcriber_slot::{Report, TranscriberSlot};
use turn::{Action, DropReason, Input, Phase, TurnMachine};
use turn_audio::TurnAudio;

/// Response events queued for the actor (text deltas, marks); read promptly.
const RESPONSE_EVENT_QUEUE: usize = 256;

/// Silence appended upstream after the browser's VAD says the user stopped, in the modes where
/// the upstream ends the turn, in milliseconds. The shipped client streams audio only while
/// its VAD hears speech (plus a short hangover), so without this the upstream never hears the
/// silence it waits for and the turn never ends. `server_vad` waits `silence_duration_ms`
/// (500 ms) of it; `semantic_vad` at most 4 s (eagerness `auto` = medium). The silence is
/// counted in audio time, so sending it at once costs no wall-clock wait.
const SERVER_VAD_SILENCE_PAD_MS: usize = 1_000;
/// See [`SERVER_VAD_SILENCE_PAD_MS`].
const SEMANTIC_VAD_SILENCE_PAD_MS: usize = 4_500;

/// PCM16 bytes per millisecond at the wire's 24 kHz.
const BYTES_PER_MS: usize = 48;

/// The silence of the longest pad, made once.
static SILENCE: [u8; SEMANTIC_VAD_SILENCE_PAD_MS * BYTES_PER_MS] =
    [0; SEMANTIC_VAD_SILENCE_PAD_MS * BYTES_PER_MS];

/// The silence to append upstream when the browser's VAD says the user stopped, in the
/// modes where the upstream ends the turn (see [`SERVER_VAD_SILENCE_PAD_MS`]).
fn silence_pad(turn_detection: TurnDetection) -> Option<Bytes> {
    let pad_ms = match turn_detection {
        TurnDetection::Client => return None,
        TurnDetection::ServerVad => SERVER_VAD_SILENCE_PAD_MS,
        TurnDetection::SemanticVad => SEMANTIC_VAD_SILENCE_PAD_MS,
    };
    Some(Bytes::from_static(&SILENCE[..pad_ms * BYTES_PER_MS]))
}

/// How long a socket closed for an oversized message stays open after its close frame: time
/// for the browser to read it before the unread rest of its message makes the kernel reset the
/// connection (which would discard the close frame on the way).
const OVERSIZE_CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What every session shares: the upstream roles and the operator's settings.
#[derive(Debug)]
pub(crate) struct SessionContext {
    /// Speech-to-text.
    pub transcriber: Transcriber,
    /// LLM and TTS.
    pub pipeline: Pipeline,
    /// The speech-to-speech upstream, when that pipeline is chosen: sessions then run in
    /// [`speech_to_speech`].
    pub agent: Option<crate::upstream::conversation::Agent>,
    /// The system prompt of each conversation.
    pub system_prompt: String,
    /// History bound, in messages.
    pub history_max_messages: usize,
    /// Who ends a turn.
    pub turn_detection: TurnDetection,
    /// How far the turn machine gets ahead of the end of a turn.
    pub early_turns: turn::EarlyTurns,
    /// Whether the LLM and speech connections are warmed when the user starts speaking.
    pub warm_connections: bool,
    /// Whether the upstream is the built-in simulator.
    pub simulated: bool,
    /// How long a committed turn may wait for its transcript.
    pub transcript_timeout: Duration,
    /// How long the browser may take to accept one frame before the session ends.
    pub browser_send_timeout: Duration,
    /// Timeouts and spend limits.
    pub limits: Limits,
    /// The server's metrics.
    pub metrics: Metrics,
    /// Where conversations are kept for a resume, and for how long.
    pub resume: Arc<Resume>,
}

/// Runs one session until the browser leaves or `shutdown` fires, and says why it ended. Call
/// it inside the session's tracing span: every task it starts logs in that span. With
/// `resume_token`, the session continues the conversation kept under it, if there is one.
pub(crate) async fn run(
    socket: WebSocket,
    context: Arc<SessionContext>,
    session_id: String,
    resume_token: Option<String>,
    shutdown: CancellationToken,
) -> SessionEnd {
    let (resumption, saved) = Resumption::begin(&context, resume_token.as_deref()).await;
    let (conversation, session_id, last_ids) = match saved {
        Some(saved) => (
            Conversation::restored(
                context.system_prompt.clone(),
                context.history_max_messages,
                saved.history,
            ),
            saved.session_id,
            Some((TurnId(saved.last_turn), ResponseId(saved.last_response))),
        ),
        None => (
            Conversation::new(context.system_prompt.clone(), context.history_max_messages),
            session_id,
            None,
        ),
    };
    let superseded = resumption.superseded_token();
    let (sink, stream) = socket.split();
    let (browser, audio_written) =
        BrowserLink::open(sink, context.browser_send_timeout, context.metrics.clone());
    let (events_tx, events_rx) = mpsc::channel(RESPONSE_EVENT_QUEUE);
    let cancel = shutdown.child_token();
    let shell = Shell::new(
        browser,
        audio_written,
        context.limits.clone(),
        context.metrics.clone(),
    );
    let mut machine = TurnMachine::with_early_turns(context.turn_detection, context.early_turns);
    if let Some((last_turn, last_response)) = last_ids {
        machine.continue_ids(last_turn, last_response);
    }
    let mut session = Session {
        machine,
        conversation,
        resumption,
        transcriber: TranscriberSlot::new(context.transcriber.clone(), cancel.clone()),
        context,
        id: session_id,
        shell,
        ending: None,
        response_task: None,
        speculation: None,
        response_events: events_tx,
        clocks: TurnClocks::default(),
        turn_audio: TurnAudio::default(),
        turn_errors: std::collections::VecDeque::new(),
        actions: Vec::new(),
    };
    tracing::info!("session started");
    session.start().await;
    let mut frames = stream;
    let end = session
        .run(&mut frames, events_rx, &shutdown, superseded.as_ref())
        .await;
    cancel.cancel();
    if end.keeps_conversation() {
        session.conversation.cut_at_drop();
    }
    let saved = session.saved();
    session.resumption.end(end, saved).await;
    resume::close_after(end, &session.shell.browser).await;
    let Session { shell, .. } = session;
    shell.browser.finish().await;
    if end == SessionEnd::MessageTooBig {
        tokio::time::sleep(OVERSIZE_CLOSE_LINGER).await;
    }
    drop(frames);
    end
}

/// Why the browser's socket broke: the session end for the close it is sent, if any.
fn broken_end(close: Option<(axum::extract::ws::CloseCode, &'static str)>) -> SessionEnd {
    match close {
        None => SessionEnd::SocketError,
        Some((close_code::SIZE, _)) => SessionEnd::MessageTooBig,
        Some(_) => SessionEnd::BadFrame,
    }
}

struct Session {
    context: Arc<SessionContext>,
    id: String,
    machine: TurnMachine,
    conversation: Conversation,
    /// What it continues, and its hold on its resume token.
    resumption: Resumption,
    shell: Shell,
    /// The response whose task has finished and whose audio the writer is still writing, with
    /// its length in samples.
    ending: Option<(ResponseId, u64)>,
    transcriber: TranscriberSlot,
    response_task: Option<AbortOnDropHandle<()>>,
    /// The response started at a short pause, not yet the turn's answer.
    speculation: Option<Speculation>,
    response_events: mpsc::Sender<(ResponseId, ResponseEvent)>,
    clocks: TurnClocks,
    /// The audio of turns not yet transcribed, for their retry (client turn detection).
    turn_audio: TurnAudio,
    /// Upstream errors of failed turn transcriptions, reported when the machine drops their
    /// turns (in turn order, as it drops them).
    turn_errors: std::collections::VecDeque<ErrorEvent>,
    actions: Vec<Action>,
}

/// A response started speculatively at a short pause: nothing of it reaches the browser or the
/// history until the turn ends as it was when it started.
struct Speculation {
    id: ResponseId,
    /// Its events so far, replayed in order once it is confirmed. Bounded in practice: a
    /// speculation lives for the rest of a hangover (a few hundred milliseconds) and its audio
    /// waits in the response's own bounded queues.
    events: Vec<ResponseEvent>,
    /// Fired when confirmed (its audio may go out); dropped when void.
    release: tokio::sync::oneshot::Sender<()>,
    task: AbortOnDropHandle<()>,
}

impl Session {
    async fn start(&mut self) {
        self.shell
            .browser
            .send(ServerMessage::SessionReady {
                protocol_version: PROTOCOL_VERSION,
                session_id: self.id.clone(),
                audio: AudioFormat::default(),
                turn_detection: self.context.turn_detection,
                simulated: self.context.simulated,
                resume: self.resumption.ticket(),
                resumed: self.resumption.resumed(),
            })
            .await;
        // Resumable from the first moment: a drop right now loses nothing.
        self.keep();
        // No transcriber yet: it opens at the first speech, so an idle session costs no
        // upstream socket.
    }

    async fn run(
        &mut self,
        frames: &mut SplitStream<WebSocket>,
        mut response_events: mpsc::Receiver<(ResponseId, ResponseEvent)>,
        shutdown: &CancellationToken,
        superseded: Option<&CancellationToken>,
    ) -> SessionEnd {
        loop {
            tokio::select! {
                // Closed by `run` once the conversation is parked, so the reconnect that
                // the close prompts finds it.
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                // A reconnect presented this session's token: this socket is stale.
                () = Resumption::superseded(superseded) => return SessionEnd::TakenOver,
                // The writer gave up on a browser that stopped reading.
                () = self.shell.browser.gone() => return SessionEnd::NotReading,
                frame = frames.next() => {
                    self.shell.heard();
                    match browser::decode(frame) {
                        Incoming::Message(message) => self.on_client_message(message).await,
                        Incoming::Audio(audio) => {
                            if let ControlFlow::Break(end) = self.on_browser_audio(audio).await {
                                return end;
                            }
                        }
                        Incoming::Invalid(event) => {
                            if let ControlFlow::Break(end) = self.shell.on_protocol_error(event).await {
                                return end;
                            }
                        }
                        Incoming::Ignored => {}
                        Incoming::Gone => return SessionEnd::ClientClosed,
                        Incoming::Broken(close) => {
                            if let Some((code, reason)) = close {
                                self.shell.browser.close(code, reason).await;
                            }
                            return broken_end(close);
                        }
                    }
                }
                event = self.transcriber.next_event() => {
                    let idle = self.transcriber_idle();
                    match self.transcriber.on_event(event, idle) {
                        Report::Nothing => {}
                        Report::Input(input) => self.apply(input).await,
                        Report::Error(event) => self.shell.send_error(event).await,
                        Report::Lost(event) => self.on_transcriber_lost(event).await,
                        Report::TurnFailed(input, event) => {
                            self.turn_errors.push_back(event);
                            self.apply(input).await;
                        }
                    }
                }
                Some((id, event)) = response_events.recv() => {
                    self.shell.deadlines.active(tokio::time::Instant::now());
                    self.on_response(id, event).await;
                }
                Some(written) = self.shell.audio_written.recv() => self.on_audio_written(written).await,
                timer = self.shell.deadlines.fired() => {
                    if let ControlFlow::Break(end) = self.on_timer(timer).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Handles a timer, which may end the session.
    async fn on_timer(&mut self, timer: Timer) -> ControlFlow<SessionEnd> {
        let now = tokio::time::Instant::now();
        match timer {
            Timer::Transcript => {
                self.shell.deadlines.transcript = None;
                if self.retries_turns() {
                    // The transcriber may be hung with its socket open: a fresh one takes the
                    // turns (a turn that already had its retry times out).
                    tracing::info!("a transcript is overdue; retrying on a fresh transcriber");
                    self.retry_on_fresh_transcriber(DropReason::TimedOut).await;
                } else {
                    self.apply(Input::TranscriptTimedOut).await;
                    self.replace_hung_transcriber().await;
                }
            }
            Timer::QuietClose => {
                self.shell.deadlines.quiet_close = None;
                if !self.transcriber_idle() {
                    // A turn still waits for its transcript: look again a quiet period on.
                    self.shell.deadlines.quiet_close =
                        Some(now + self.context.limits.transcriber_quiet_close);
                } else if self.transcriber.is_open() {
                    tracing::info!("nobody spoke for a while; closing the transcription socket");
                    let input = self.transcriber.close();
                    self.apply(input).await;
                }
            }
            Timer::Idle | Timer::End | Timer::Ping => {
                return self.shell.on_session_timer(timer).await;
            }
        }
        ControlFlow::Continue(())
    }

    /// Whether lost turns are retried: with the client's turn detection, where the proxy cuts
    /// the turns and so knows each one's audio. In the server-side modes the upstream cuts
    /// them, and a lost turn is reported at once.
    fn retries_turns(&self) -> bool {
        self.context.turn_detection == TurnDetection::Client
    }

    /// The transcriber is gone. If it took turns (or audio not yet committed) with it and the
    /// failure may pass, a fresh one gets them again; otherwise the loss is reported.
    async fn on_transcriber_lost(&mut self, event: Option<ErrorEvent>) {
        let something_to_retry =
            self.machine.has_open_turns() || !self.turn_audio.pending().is_empty();
        let may_pass = event.as_ref().is_some_and(|e| e.retryable);
        if self.retries_turns() && something_to_retry && may_pass {
            tracing::info!("transcriber lost; retrying its turns on a fresh one");
            self.retry_on_fresh_transcriber(DropReason::LostAgain).await;
            return;
        }
        if let Some(event) = event {
            self.shell.send_error(event).await;
        }
        self.turn_audio.clear_pending();
        self.apply(Input::TranscriberLost).await;
    }

    /// Opens a fresh transcriber and gives it every open turn again (committed anew from the
    /// kept audio, once per turn; a turn that already had its retry is dropped for `reason`),
    /// then the audio not yet committed, so the user's current utterance goes on.
    async fn retry_on_fresh_transcriber(&mut self, reason: DropReason) {
        // The machine forgets the old items through `TranscriberReplaced` below.
        let _ = self.transcriber.close();
        self.transcriber.ensure();
        self.apply(Input::TranscriberReplaced { reason }).await;
        for frame in self.turn_audio.pending().to_vec() {
            // A full queue is reported by the next frame from the browser.
            let _ = self.transcriber.append(frame);
        }
        self.refresh_transcript_deadline();
    }

    /// After a turn timed out: the transcriber may be hung with its socket open, so it is
    /// replaced, and the turns still waiting on it are reported as timed out.
    async fn replace_hung_transcriber(&mut self) {
        for _ in 0..self.machine.open_turn_count() {
            self.apply(Input::TranscriptTimedOut).await;
        }
        let still_speaking = self.machine.phase() == Phase::UserSpeaking;
        let input = self.transcriber.replace_hung(still_speaking);
        self.apply(input).await;
    }

    async fn on_client_message(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::SpeechStarted => {
                let idle = !self.machine.has_open_turns();
                if let Some(input) = self.transcriber.close_if_expiring(idle) {
                    self.apply(input).await;
                }
                self.shell.utterance_started();
                self.speech_activity();
                self.transcriber.ensure();
                if self.context.warm_connections {
                    self.context.pipeline.warm();
                }
                self.apply(Input::ClientSpeechStarted).await;
            }
            ClientMessage::SpeechPaused => self.apply(Input::ClientSpeechPaused).await,
            ClientMessage::SpeechResumed => self.apply(Input::ClientSpeechResumed).await,
            ClientMessage::SpeechStopped => {
                self.speech_activity();
                self.pad_silence_for_the_upstream_vad();
                // Whatever is batched goes up now: the upstream's VAD must hear the end.
                let _ = self.transcriber.flush();
                self.apply(Input::ClientSpeechStopped).await;
            }
            ClientMessage::PlaybackProgress {
                response_id,
                played_samples,
            } => {
                if let Some(answer) = self.conversation.answer_mut(response_id) {
                    answer.played(played_samples);
                }
            }
            ClientMessage::Cancel {
                response_id,
                played_samples,
            } => {
                if self.conversation.answer_mut(response_id).is_none() {
                    return;
                }
                self.apply(Input::ClientCancel(response_id)).await;
                // The answer may have finished generating while it was still playing: the
                // history keeps what was heard either way.
                if let Some(heard_text) = self.conversation.truncate(response_id, played_samples) {
                    self.keep();
                    self.shell
                        .browser
                        .send(ServerMessage::ResponseTruncated {
                            response_id,
                            heard_text,
                        })
                        .await;
                }
            }
        }
    }

    /// Relays microphone audio within the session's budget; a sustained flood closes the
    /// session with 1008.
    async fn on_browser_audio(&mut self, audio: Bytes) -> ControlFlow<SessionEnd> {
        let frame_ms = audio_ms(audio.len());
        let audio = match self.shell.admit_audio(audio).await {
            Admitted::Relay(audio) => audio,
            Admitted::Dropped => return ControlFlow::Continue(()),
            Admitted::Closed => return ControlFlow::Break(SessionEnd::AudioFlood),
        };
        self.speech_activity();
        self.machine.handle(Input::ClientAudio, &mut self.actions);
        if self.retries_turns() {
            self.turn_audio.push(audio.clone());
        }
        if self.transcriber.append(audio).is_err() {
            self.shell
                .audio_lost_upstream(
                    Stage::Stt,
                    "Speech recognition is not keeping up; some audio was lost.",
                )
                .await;
        }
        if self.shell.utterance_too_long(frame_ms) && self.machine.phase() == Phase::UserSpeaking {
            self.end_long_utterance().await;
        }
        ControlFlow::Continue(())
    }

    /// Ends an utterance at the longest length allowed, as if the user had paused, and says so.
    async fn end_long_utterance(&mut self) {
        self.shell.end_long_utterance().await;
        if self.context.turn_detection == TurnDetection::Client {
            self.apply(Input::ClientSpeechStopped).await;
        } else {
            // The upstream decides turns in these modes; a commit ends this one there.
            self.transcriber.commit();
        }
    }

    /// In the server-side turn modes, appends the silence the upstream's VAD needs to end the
    /// turn (see [`SERVER_VAD_SILENCE_PAD_MS`]).
    fn pad_silence_for_the_upstream_vad(&mut self) {
        if let Some(silence) = silence_pad(self.context.turn_detection) {
            // A full queue is reported by the audio that filled it.
            let _ = self.transcriber.append(silence);
        }
    }

    /// Someone speaks: the session is not idle, and the transcriber stays open for a quiet
    /// period more.
    fn speech_activity(&mut self) {
        let now = tokio::time::Instant::now();
        self.shell.deadlines.active(now);
        self.shell.deadlines.quiet_close = Some(now + self.context.limits.transcriber_quiet_close);
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
                self.clocks.start(turn, Instant::now());
                self.refresh_transcript_deadline();
            }
            Action::Recommit(turn) => {
                for frame in self.turn_audio.of(turn).to_vec() {
                    let _ = self.transcriber.append(frame);
                }
                self.transcriber.commit();
            }
            Action::Commit(turn) => {
                self.transcriber.commit();
                if self.retries_turns() {
                    self.turn_audio.commit(turn);
                }
                self.clocks.mark(turn, Step::CommitSent, Instant::now());
            }
            Action::ClearInput(turn) => {
                self.transcriber.clear();
                self.turn_audio.clear_pending();
                // Its words went up at the pause: the commit is already done.
                self.clocks.mark(turn, Step::CommitSent, Instant::now());
            }
            Action::EarlyWork(turn, work) => self.clocks.early_work(turn, work),
            Action::StartSpeculation(response_id, _turn, text) => {
                self.start_speculation(response_id, text);
            }
            Action::ConfirmSpeculation(response_id, turn_id) => {
                self.confirm_speculation(response_id, turn_id).await;
            }
            Action::CancelSpeculation(response_id) => {
                if self
                    .speculation
                    .as_ref()
                    .is_some_and(|s| s.id == response_id)
                {
                    // Aborts its task (closing its requests); nothing of it went out.
                    self.speculation = None;
                }
            }
            Action::NotifySpeechStarted(turn_id) => {
                self.shell
                    .browser
                    .send(ServerMessage::SpeechStarted { turn_id })
                    .await;
            }
            Action::NotifySpeechStopped(turn_id) => {
                self.shell
                    .browser
                    .send(ServerMessage::SpeechStopped { turn_id })
                    .await;
            }
            Action::TranscriptDelta(turn_id, delta) => {
                self.shell
                    .browser
                    .send(ServerMessage::TranscriptDelta { turn_id, delta })
                    .await;
            }
            Action::TranscriptFinal(turn_id, text) => {
                self.turn_audio.forget(turn_id);
                self.clocks
                    .mark(turn_id, Step::TranscriptFinal, Instant::now());
                self.conversation.add_user(&text);
                self.keep();
                self.shell
                    .browser
                    .send(ServerMessage::TranscriptFinal { turn_id, text })
                    .await;
                self.refresh_transcript_deadline();
            }
            Action::TurnDropped(turn_id, reason) => {
                self.turn_audio.forget(turn_id);
                self.clocks.forget(turn_id);
                self.refresh_transcript_deadline();
                let (code, message) = match reason {
                    // Already reported as the lost transcription session.
                    DropReason::Lost => return,
                    DropReason::Failed => (
                        ErrorCode::TranscriptionFailed,
                        "Sorry, I couldn't make out what you said.",
                    ),
                    DropReason::Empty => (ErrorCode::AudioTooShort, shell::AUDIO_TOO_SHORT_MESSAGE),
                    DropReason::TimedOut => (
                        ErrorCode::UpstreamTimeout,
                        "Speech recognition did not answer in time.",
                    ),
                    DropReason::LostAgain => (
                        ErrorCode::SessionLost,
                        "Speech recognition lost its connection twice; please say that again.",
                    ),
                    DropReason::Upstream => {
                        if let Some(event) = self.turn_errors.pop_front() {
                            self.shell.send_error(event.for_turn(turn_id)).await;
                        }
                        return;
                    }
                };
                self.shell
                    .send_error(ErrorEvent::new(Stage::Stt, code, message, true).for_turn(turn_id))
                    .await;
            }
            Action::StartResponse(response_id, turn_id) => {
                self.start_response(response_id, turn_id).await;
            }
            Action::CancelResponse(response_id) => self.cancel_response(response_id).await,
        }
    }

    /// Starts answering the history plus `text` (what the user said up to a short pause),
    /// held back until confirmed.
    fn start_speculation(&mut self, response_id: ResponseId, text: String) {
        let mut messages = self.conversation.messages();
        match messages.last_mut() {
            // The history joins consecutive user messages the same way.
            Some(last) if last.role == crate::upstream::chat::Role::User => {
                last.content.push('\n');
                last.content.push_str(&text);
            }
            _ => messages.push(crate::upstream::chat::ChatMessage {
                role: crate::upstream::chat::Role::User,
                content: text,
            }),
        }
        let (release, hold) = tokio::sync::oneshot::channel();
        let task = self.context.pipeline.clone().respond(
            response_id,
            messages,
            self.response_events.clone(),
            self.shell.browser.audio_sender(),
            Some(hold),
        );
        self.speculation = Some(Speculation {
            id: response_id,
            events: Vec::new(),
            release,
            task: AbortOnDropHandle::new(tokio::spawn(task.in_current_span())),
        });
    }

    /// The turn ended as speculated: the speculative response becomes its answer, and what it
    /// did so far reaches the browser in order.
    async fn confirm_speculation(&mut self, response_id: ResponseId, turn_id: TurnId) {
        let Some(speculation) = self.speculation.take() else {
            return;
        };
        if speculation.id != response_id {
            return;
        }
        let Speculation {
            events,
            release,
            task,
            ..
        } = speculation;
        self.announce_response(response_id, turn_id).await;
        self.response_task = Some(task);
        let _ = release.send(());
        for event in events {
            Box::pin(self.on_response(response_id, event)).await;
        }
    }

    /// Makes `response_id` the turn's answer: its clock, its audio let out, its place in the
    /// history, and `response_started` to the browser.
    async fn announce_response(&mut self, response_id: ResponseId, turn_id: TurnId) {
        self.clocks.set_response(turn_id, response_id);
        self.shell.browser.set_live(response_id);
        self.conversation.begin_answer(response_id, turn_id);
        self.shell
            .browser
            .send(ServerMessage::ResponseStarted {
                response_id,
                turn_id,
            })
            .await;
    }

    async fn start_response(&mut self, response_id: ResponseId, turn_id: TurnId) {
        let messages = self.conversation.messages();
        self.announce_response(response_id, turn_id).await;
        let task = self.context.pipeline.clone().respond(
            response_id,
            messages,
            self.response_events.clone(),
            self.shell.browser.audio_sender(),
            None,
        );
        self.response_task = Some(AbortOnDropHandle::new(tokio::spawn(task.in_current_span())));
    }

    /// Stops a live response at once: no more of its audio goes out, its upstream requests
    /// close, and the history keeps what was heard of it.
    async fn cancel_response(&mut self, response_id: ResponseId) {
        // Before anything else: the writer drops this response's audio from now on.
        self.shell.browser.stop_audio_of(response_id);
        self.response_task = None;
        let Some(answer) = self.conversation.interrupt(response_id) else {
            return;
        };
        let done = ServerMessage::ResponseDone {
            response_id,
            text: answer.text().to_owned(),
            interrupted: true,
            audio_samples: answer.audio_samples(),
        };
        let turn_id = answer.turn_id();
        self.keep();
        tracing::info!(response = %response_id, "response interrupted");
        self.shell.browser.send(done).await;
        self.report_turn(turn_id).await;
    }

    async fn on_response(&mut self, id: ResponseId, event: ResponseEvent) {
        if let Some(speculation) = self.speculation.as_mut()
            && speculation.id == id
        {
            speculation.events.push(event);
            return;
        }
        let Some(answer) = self.conversation.answer_mut(id) else {
            return;
        };
        if !answer.is_generating() {
            // Late events of a cancelled response.
            return;
        }
        let turn_id = answer.turn_id();
        match event {
            ResponseEvent::LlmRequestSent(at) => self.clocks.mark(turn_id, Step::LlmRequest, at),
            ResponseEvent::LlmFirstToken(at) => self.clocks.mark(turn_id, Step::LlmFirstToken, at),
            ResponseEvent::FirstClause(at) => self.clocks.mark(turn_id, Step::FirstClause, at),
            ResponseEvent::TtsRequestSent(at) => self.clocks.mark(turn_id, Step::TtsRequest, at),
            ResponseEvent::TtsFirstByte(at) => self.clocks.mark(turn_id, Step::TtsFirstByte, at),
            ResponseEvent::TextDelta(delta) => {
                answer.push_text(&delta);
                self.shell
                    .browser
                    .send(ServerMessage::ResponseTextDelta {
                        response_id: id,
                        delta,
                    })
                    .await;
            }
            ResponseEvent::SegmentStarted { text, start_sample } => {
                answer.segment_started(text, start_sample);
            }
            ResponseEvent::SegmentFinished { samples } => answer.segment_finished(samples),
            // Queued for the writer: the turn machine learns the answer is audible. The
            // waterfall takes the time the writer put it on the socket (`on_audio_written`).
            ResponseEvent::FirstAudioSent(_queued_at) => {
                self.apply(Input::ResponseAudioStarted(id)).await;
            }
            ResponseEvent::Failed(stage, error) => {
                tracing::warn!(response = %id, stage = stage.as_str(), %error, "response stage failed");
                answer.cut_by_error();
                let event = error.to_event(stage).for_turn(turn_id).for_response(id);
                self.shell.send_logged_error(event).await;
            }
            ResponseEvent::Finished { audio_samples } => {
                // Every chunk is queued; `response_done` waits until the writer has written
                // them all, so it never overtakes the answer's audio.
                self.response_task = None;
                self.ending = Some((id, audio_samples));
                self.shell.browser.end_of_audio(id).await;
            }
        }
    }

    /// The writer has put the last frame of a finished response on the socket: the response
    /// is done. An answer cut by an upstream error counts as interrupted, and the history keeps
    /// what was sent of it as audio.
    async fn on_audio_written(&mut self, written: AudioWritten) {
        let AudioWritten {
            response_id: id,
            first_frame_at,
        } = written;
        let Some((ending_id, audio_samples)) = self.ending else {
            return;
        };
        if ending_id != id {
            return;
        }
        self.ending = None;
        let Some(answer) = self.conversation.answer_mut(id) else {
            return;
        };
        if !answer.is_generating() {
            // Cancelled meanwhile; its response_done went out then.
            return;
        }
        let turn_id = answer.turn_id();
        let (text, interrupted) = if answer.was_cut_by_error() {
            let kept = self
                .conversation
                .truncate(id, audio_samples)
                .unwrap_or_default();
            (kept, true)
        } else {
            let text = self
                .conversation
                .finish(id)
                .map(|answer| answer.text().to_owned())
                .unwrap_or_default();
            (text, false)
        };
        self.keep();
        if let Some(at) = first_frame_at {
            self.clocks.mark(turn_id, Step::FirstAudioSent, at);
        }
        self.shell
            .browser
            .send(ServerMessage::ResponseDone {
                response_id: id,
                text,
                interrupted,
                audio_samples,
            })
            .await;
        self.apply(Input::ResponseEnded(id)).await;
        self.report_turn(turn_id).await;
    }

    /// The conversation as a resume would continue it.
    fn saved(&self) -> SavedSession {
        let (last_turn, last_response) = self.machine.last_ids();
        SavedSession {
            session_id: self.id.clone(),
            last_turn: last_turn.0,
            last_response: last_response.0,
            history: self.conversation.saved(),
        }
    }

    /// Keeps the conversation for a resume, after each change of the history.
    fn keep(&self) {
        self.resumption.keep(|| self.saved());
    }

    /// Logs and sends a turn's waterfall, once, and forgets the turn and older ones.
    async fn report_turn(&mut self, turn_id: TurnId) {
        if let Some((response_id, waterfall)) = self.clocks.report(turn_id) {
            log_waterfall(turn_id, response_id, &waterfall);
            self.shell.metrics.turn_reported(&waterfall);
            self.shell
                .browser
                .send(ServerMessage::Metrics {
                    turn_id,
                    response_id,
                    waterfall,
                })
                .await;
        }
    }

    /// Keeps a deadline on the oldest turn still waiting for its transcript.
    fn refresh_transcript_deadline(&mut self) {
        self.shell.deadlines.transcript = self
            .machine
            .has_open_turns()
            .then(|| tokio::time::Instant::now() + self.context.transcript_timeout);
    }
}
