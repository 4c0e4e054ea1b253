//! The speech-to-speech session (`PIPELINE=speech-to-speech`): one Realtime conversation
//! upstream per browser session, behind the same browser protocol as the chained pipeline, so
//! the page works unchanged.
//!
//! * Turns: with the client's turn detection (the default) the proxy commits the user's audio
//!   at the browser's `speech_stopped` and asks for the answer at once (`commit` then
//!   `response.create`, no round trip between them); in the server-side modes the upstream's
//!   VAD ends turns and answers on its own, and the proxy pads the silence it needs.
//! * Answers: the model's audio deltas go to the browser as the answer's frames, its
//!   transcript as `response_text_delta`; `response_done` follows the last frame written.
//! * Barge-in: the user speaking over an answer stops its audio at once, cancels it upstream
//!   (`response.cancel`), and when the browser says how much it played, cuts the model's
//!   memory of it there (`conversation.item.truncate` at the played milliseconds).
//! * The upstream opens at the first speech (an idle session costs nothing) and stays for the
//!   session: it holds the conversation. If it is lost, the next speech opens a fresh one and
//!   gives it the conversation so far as text.
//!
//! Waterfall hops: `commit_sent` (client turns), `transcript_final` (the user's words arrive
//! on their own, often after the answer started), `tts_first_byte` (the model's first audio)
//! and `first_audio_sent`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::WebSocket;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::SplitStream;
use protocol::{
    AudioFormat, BYTES_PER_SAMPLE, ClientMessage, ErrorCode, ErrorEvent, PROTOCOL_VERSION,
    ResponseId, SAMPLE_RATE_HZ, ServerMessage, Stage, TurnDetection, TurnId,
};
use tokio_util::sync::CancellationToken;

use super::SessionContext;
use super::audio_budget::audio_ms;
use super::browser::{AudioWritten, BrowserLink, Incoming};
use super::deadlines::Timer;
use super::history::{SpokenSegment, heard_text};
use super::metrics::{Step, TurnClocks, log_waterfall};
use super::response::AudioOut;
use super::resume::Resumption;
use super::shell::{Admitted, Shell, audio_too_short};
use super::{broken_end, silence_pad};
use crate::observability::SessionEnd;
use crate::session_store::{SavedMessage, SavedRole, SavedSession};
use crate::upstream::conversation::{Agent, AgentCommand, AgentEvent, AgentHandle, AnswerStatus};
use crate::upstream::realtime::TranscriberEvent;

/// Shortest buffer the upstream commits, in milliseconds (it refuses less with
/// `input_audio_buffer_commit_empty`): a shorter turn is dropped here, before any request.
const MIN_COMMIT_MS: f64 = 100.0;

/// Answers remembered after they ended, for the browser's late `cancel` (it reports what it
/// played once its player has cleared): a few are plenty, one plays at a time.
const RECENT_ANSWERS: usize = 4;

/// Upstream error codes that need no word to the user: a cancel racing the answer's end.
const BENIGN_ERROR_CODES: &[&str] = &["response_cancel_not_active"];

/// Runs one speech-to-speech session on `agent` (the context's) until the browser leaves or
/// `shutdown` fires, and says why it ended.
pub(crate) async fn run(
    socket: WebSocket,
    context: Arc<SessionContext>,
    agent: Agent,
    session_id: String,
    resume_token: Option<String>,
    shutdown: CancellationToken,
) -> SessionEnd {
    let (resumption, saved) = Resumption::begin(&context, resume_token.as_deref()).await;
    let superseded = resumption.superseded_token();
    let (log, session_id, next_turn, next_response) = match saved {
        Some(saved) => {
            let log = TurnLog::restored(saved.history, context.history_max_messages / 2);
            let last_turn = TurnId(saved.last_turn.max(log.last_turn().0));
            (
                log,
                saved.session_id,
                last_turn,
                ResponseId(saved.last_response),
            )
        }
        None => (
            TurnLog::default(),
            session_id,
            TurnId::default(),
            ResponseId::default(),
        ),
    };
    let (sink, stream) = socket.split();
    let (browser, audio_written) =
        BrowserLink::open(sink, context.browser_send_timeout, context.metrics.clone());
    let shell = Shell::new(
        browser,
        audio_written,
        context.limits.clone(),
        context.metrics.clone(),
    );
    let cancel = shutdown.child_token();
    let mut session = Session {
        audio_out: shell.browser.audio_sender(),
        shell,
        agent,
        upstream: None,
        cancel: cancel.clone(),
        context,
        id: session_id,
        next_turn,
        next_response,
        speaking: None,
        buffered_ms: 0.0,
        items: VecDeque::new(),
        awaiting_commit: VecDeque::new(),
        answering: None,
        live: None,
        ending: None,
        recent: VecDeque::new(),
        log,
        clocks: TurnClocks::default(),
        resumption,
    };
    tracing::info!("speech-to-speech session started");
    session.start().await;
    let mut frames = stream;
    let end = session
        .run(&mut frames, &shutdown, superseded.as_ref())
        .await;
    cancel.cancel();
    if end.keeps_conversation() {
        session.cut_at_drop();
    }
    let saved = session.saved();
    session.resumption.end(end, saved).await;
    super::resume::close_after(end, &session.shell.browser).await;
    let Session { shell, .. } = session;
    shell.browser.finish().await;
    drop(frames);
    end
}

/// An answer being generated upstream.
#[derive(Debug, Clone)]
struct LiveAnswer {
    /// The upstream's id of it.
    upstream_id: String,
    record: AnswerRecord,
    first_audio: bool,
}

/// What is kept of an answer: enough to say what was heard of it and to truncate it.
#[derive(Debug, Clone)]
struct AnswerRecord {
    response_id: ResponseId,
    turn_id: TurnId,
    /// The assistant item its audio belongs to (the last one, should there be several).
    item_id: Option<String>,
    /// Its transcript so far.
    text: String,
    /// 24 kHz samples of its audio sent to the browser.
    samples: u64,
    /// Of those, played as far as the browser last said (`playback_progress`).
    played: u64,
}

impl AnswerRecord {
    /// What of it was heard by someone who played `played_samples` of it.
    fn heard(&self, played_samples: u64) -> String {
        let segment = SpokenSegment {
            text: self.text.trim().to_owned(),
            start_sample: 0,
            samples: Some(self.samples),
        };
        heard_text(std::slice::from_ref(&segment), played_samples)
    }
}

/// The conversation as text, turn by turn (the user's words can arrive after the answer to
/// them began), to give a fresh upstream session after a lost one.
#[derive(Debug, Default)]
struct TurnLog {
    turns: BTreeMap<TurnId, (Option<String>, Option<String>)>,
}

impl TurnLog {
    fn user(&mut self, turn: TurnId, text: String, max_turns: usize) {
        self.turns.entry(turn).or_default().0 = Some(text);
        self.bound(max_turns);
    }

    fn assistant(&mut self, turn: TurnId, text: String, max_turns: usize) {
        self.turns.entry(turn).or_default().1 = Some(text);
        self.bound(max_turns);
    }

    fn bound(&mut self, max_turns: usize) {
        while self.turns.len() > max_turns.max(1) {
            self.turns.pop_first();
        }
    }

    /// A log that continues a saved conversation: each user message opens a turn, and an
    /// answer joins the turn before it (turns numbered from 1).
    fn restored(saved: Vec<SavedMessage>, max_turns: usize) -> Self {
        let mut log = Self::default();
        let mut turn = TurnId::default();
        let mut answered = true;
        for message in saved {
            match message.role {
                SavedRole::User => {
                    turn = turn.next();
                    answered = false;
                    log.user(turn, message.content, max_turns);
                }
                SavedRole::Assistant => {
                    if answered {
                        turn = turn.next();
                    }
                    answered = true;
                    log.assistant(turn, message.content, max_turns);
                }
            }
        }
        log
    }

    /// The newest turn in the log.
    fn last_turn(&self) -> TurnId {
        self.turns.keys().next_back().copied().unwrap_or_default()
    }

    /// The conversation for the session store, oldest first.
    fn saved(&self) -> Vec<SavedMessage> {
        self.turns
            .values()
            .flat_map(|(user, assistant)| {
                let user = user.iter().map(|text| (SavedRole::User, text));
                let assistant = assistant.iter().map(|text| (SavedRole::Assistant, text));
                user.chain(assistant)
            })
            .filter(|(_, text)| !text.is_empty())
            .map(|(role, text)| SavedMessage {
                role,
                content: text.clone(),
            })
            .collect()
    }

    /// The messages to seed a fresh session with, oldest first.
    fn messages(&self) -> impl Iterator<Item = AgentCommand> + '_ {
        self.turns.values().flat_map(|(user, assistant)| {
            let user = user.iter().map(|text| AgentCommand::AddMessage {
                assistant: false,
                text: text.clone(),
            });
            let assistant = assistant.iter().map(|text| AgentCommand::AddMessage {
                assistant: true,
                text: text.clone(),
            });
            user.chain(assistant)
                .filter(|command| !matches!(command, AgentCommand::AddMessage { text, .. } if text.is_empty()))
        })
    }
}

struct Session {
    shell: Shell,
    audio_out: tokio::sync::mpsc::Sender<AudioOut>,
    agent: Agent,
    upstream: Option<AgentHandle>,
    cancel: CancellationToken,
    context: Arc<SessionContext>,
    id: String,
    next_turn: TurnId,
    next_response: ResponseId,
    /// The user's turn in progress (client turn detection).
    speaking: Option<TurnId>,
    /// Audio appended since the last commit, in milliseconds.
    buffered_ms: f64,
    /// Upstream user items and the turns they are (the last few).
    items: VecDeque<(String, TurnId)>,
    /// Turns committed whose `committed` has not come back yet, oldest first.
    awaiting_commit: VecDeque<TurnId>,
    /// The turn the next upstream answer answers.
    answering: Option<TurnId>,
    live: Option<LiveAnswer>,
    /// The answer whose upstream part ended and whose audio the writer is still writing, and
    /// whether it was cut short.
    ending: Option<(AnswerRecord, bool)>,
    /// Answers that ended, newest last.
    recent: VecDeque<AnswerRecord>,
    log: TurnLog,
    clocks: TurnClocks,
    /// What it continues, and its hold on its resume token.
    resumption: Resumption,
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
        // Resumable from the first moment; a resumed conversation reaches the upstream
        // (from the log) when it opens.
        self.keep();
    }

    /// The conversation as a resume would continue it.
    fn saved(&self) -> SavedSession {
        SavedSession {
            session_id: self.id.clone(),
            last_turn: self.next_turn.0,
            last_response: self.next_response.0,
            history: self.log.saved(),
        }
    }

    /// Keeps the conversation for a resume, after each change of the log.
    fn keep(&self) {
        self.resumption.keep(|| self.saved());
    }

    /// The socket dropped: the answer in progress, or one still playing, is kept in the log
    /// as far as the browser last said it played (not at all if it never said: a client that
    /// does not report playback keeps whole answers).
    fn cut_at_drop(&mut self) {
        let max_turns = self.context.history_max_messages / 2;
        let cut = self
            .live
            .as_ref()
            .map(|live| &live.record)
            .or(self.ending.as_ref().map(|(record, _)| record))
            .or(self.recent.back())
            .filter(|record| record.played > 0 && record.played < record.samples)
            .map(|record| (record.turn_id, record.heard(record.played)));
        if let Some((turn, heard)) = cut {
            self.log.assistant(turn, heard, max_turns);
        }
    }

    async fn run(
        &mut self,
        frames: &mut SplitStream<WebSocket>,
        shutdown: &CancellationToken,
        superseded: Option<&CancellationToken>,
    ) -> SessionEnd {
        loop {
            tokio::select! {
                // Closed by `run` once the conversation is parked.
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                () = Resumption::superseded(superseded) => return SessionEnd::TakenOver,
                () = self.shell.browser.gone() => return SessionEnd::NotReading,
                frame = frames.next() => {
                    self.shell.heard();
                    match super::browser::decode(frame) {
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
                Some(event) = next_event(&mut self.upstream) => self.on_upstream(event).await,
                Some(written) = self.shell.audio_written.recv() => self.on_audio_written(written).await,
                timer = self.shell.deadlines.fired() => {
                    if matches!(timer, Timer::Transcript | Timer::QuietClose) {
                        continue;
                    }
                    if let ControlFlow::Break(end) = self.shell.on_session_timer(timer).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Opens the upstream if it is not open, and gives a fresh one the conversation so far.
    fn ensure_upstream(&mut self) {
        if self.upstream.is_some() {
            return;
        }
        let handle = self.agent.spawn(self.cancel.child_token());
        for command in self.log.messages() {
            // A fresh queue holds the history of a session (bounded by HISTORY_MAX_MESSAGES).
            let _ = handle.commands.try_send(command);
        }
        self.upstream = Some(handle);
    }

    /// Queues a command upstream; `false` if the queue is full (the upstream is not keeping
    /// up) or there is no upstream.
    fn command(&self, command: AgentCommand) -> bool {
        self.upstream
            .as_ref()
            .is_some_and(|upstream| upstream.commands.try_send(command).is_ok())
    }

    fn new_turn(&mut self) -> TurnId {
        let turn = self.next_turn.next();
        self.next_turn = turn;
        turn
    }

    fn turn_of_item(&self, item_id: &str) -> Option<TurnId> {
        self.items
            .iter()
            .find_map(|(item, turn)| (item == item_id).then_some(*turn))
    }

    fn remember_item(&mut self, item_id: String, turn: TurnId) {
        self.items.push_back((item_id, turn));
        while self.items.len() > RECENT_ANSWERS * 2 {
            self.items.pop_front();
        }
    }

    fn speech_activity(&mut self) {
        self.shell.deadlines.active(tokio::time::Instant::now());
    }

    async fn on_client_message(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::SpeechStarted => {
                self.speech_activity();
                self.ensure_upstream();
                self.shell.utterance_started();
                // Barge-in: whatever is being said stops now.
                self.interrupt_answer().await;
                if self.context.turn_detection == TurnDetection::Client && self.speaking.is_none() {
                    self.speaking = Some(self.new_turn());
                }
            }
            // The model hears the whole turn at once; short pauses change nothing here.
            ClientMessage::SpeechPaused | ClientMessage::SpeechResumed => {}
            ClientMessage::SpeechStopped => {
                self.speech_activity();
                if let Some(silence) = silence_pad(self.context.turn_detection) {
                    let _ = self.command(AgentCommand::Append(silence));
                }
                self.end_client_turn().await;
            }
            ClientMessage::PlaybackProgress {
                response_id,
                played_samples,
            } => self.on_playback_progress(response_id, played_samples),
            ClientMessage::Cancel {
                response_id,
                played_samples,
            } => self.on_client_cancel(response_id, played_samples).await,
        }
    }

    /// Ends the user's turn (client turn detection): commits it and asks for the answer.
    async fn end_client_turn(&mut self) {
        let Some(turn) = self.speaking.take() else {
            return;
        };
        let buffered_ms = std::mem::take(&mut self.buffered_ms);
        if buffered_ms < MIN_COMMIT_MS {
            let _ = self.command(AgentCommand::Clear);
            self.shell
                .send_error(audio_too_short().for_turn(turn))
                .await;
            return;
        }
        let now = Instant::now();
        self.clocks.start(turn, now);
        if self.command(AgentCommand::Commit) && self.command(AgentCommand::Respond) {
            self.clocks.mark(turn, Step::CommitSent, Instant::now());
            self.awaiting_commit.push_back(turn);
            self.answering = Some(turn);
        } else {
            self.clocks.forget(turn);
            self.shell
                .send_error(
                    ErrorEvent::new(
                        Stage::Llm,
                        ErrorCode::UpstreamUnavailable,
                        "The voice model is not keeping up; please say that again.",
                        true,
                    )
                    .for_turn(turn),
                )
                .await;
        }
    }

    /// Relays microphone audio within the session's budget; a sustained flood closes the
    /// session.
    async fn on_browser_audio(&mut self, audio: Bytes) -> ControlFlow<SessionEnd> {
        let frame_ms = audio_ms(audio.len());
        let audio = match self.shell.admit_audio(audio).await {
            Admitted::Relay(audio) => audio,
            Admitted::Dropped => return ControlFlow::Continue(()),
            Admitted::Closed => return ControlFlow::Break(SessionEnd::AudioFlood),
        };
        self.speech_activity();
        self.ensure_upstream();
        if !self.command(AgentCommand::Append(audio)) {
            self.shell
                .audio_lost_upstream(
                    Stage::Llm,
                    "The voice model is not keeping up; some audio was lost.",
                )
                .await;
            return ControlFlow::Continue(());
        }
        self.buffered_ms += frame_ms;
        if self.shell.utterance_too_long(frame_ms) {
            self.shell.end_long_utterance().await;
            if self.context.turn_detection == TurnDetection::Client {
                self.end_client_turn().await;
            } else {
                // The upstream decides turns in these modes; a commit ends this one there.
                let _ = self.command(AgentCommand::Commit);
            }
        }
        ControlFlow::Continue(())
    }

    /// Stops the answer being spoken, if any: its audio stops at once, the upstream cancels
    /// it, and the browser hears it is done (interrupted). What was heard of it is settled
    /// when the browser reports how much it played ([`Self::on_client_cancel`]).
    async fn interrupt_answer(&mut self) {
        if let Some(live) = self.live.take() {
            let _ = self.command(AgentCommand::Cancel);
            self.finish_answer(live.record, true).await;
        } else if let Some((record, _)) = self.ending.take() {
            // Generated, but its audio is still on its way out.
            self.finish_answer(record, true).await;
        }
    }

    /// Sends `response_done` for an answer (after its last frame, or at once when it is cut
    /// short) and its waterfall, and remembers it for a late `cancel`.
    async fn finish_answer(&mut self, record: AnswerRecord, interrupted: bool) {
        self.shell.browser.stop_audio_of(record.response_id);
        self.shell
            .browser
            .send(ServerMessage::ResponseDone {
                response_id: record.response_id,
                text: record.text.clone(),
                interrupted,
                audio_samples: record.samples,
            })
            .await;
        if !interrupted {
            self.log.assistant(
                record.turn_id,
                record.text.trim().to_owned(),
                self.context.history_max_messages / 2,
            );
            self.keep();
        }
        self.report_turn(record.turn_id).await;
        self.recent.push_back(record);
        while self.recent.len() > RECENT_ANSWERS {
            self.recent.pop_front();
        }
    }

    /// How far the browser has played an answer, for what a drop keeps of it.
    fn on_playback_progress(&mut self, response_id: ResponseId, played_samples: u64) {
        let record = self
            .live
            .as_mut()
            .map(|live| &mut live.record)
            .filter(|record| record.response_id == response_id)
            .or(self
                .ending
                .as_mut()
                .map(|(record, _)| record)
                .filter(|record| record.response_id == response_id))
            .or(self
                .recent
                .iter_mut()
                .rev()
                .find(|record| record.response_id == response_id));
        if let Some(record) = record {
            record.played = record.played.max(played_samples);
        }
    }

    /// The browser cleared its player and says how much of the answer it played: the model's
    /// memory of the answer is cut there, and the page hears what was heard.
    async fn on_client_cancel(&mut self, response_id: ResponseId, played_samples: u64) {
        if self
            .live
            .as_ref()
            .is_some_and(|live| live.record.response_id == response_id)
            || self
                .ending
                .as_ref()
                .is_some_and(|(record, _)| record.response_id == response_id)
        {
            self.interrupt_answer().await;
        }
        let Some(record) = self
            .recent
            .iter()
            .rev()
            .find(|record| record.response_id == response_id)
            .cloned()
        else {
            return;
        };
        let played_samples = played_samples.min(record.samples);
        if played_samples < record.samples
            && let Some(item_id) = &record.item_id
        {
            let audio_end_ms = played_samples * 1000 / u64::from(SAMPLE_RATE_HZ);
            let _ = self.command(AgentCommand::Truncate {
                item_id: item_id.clone(),
                audio_end_ms,
            });
        }
        let heard_text = record.heard(played_samples);
        self.log.assistant(
            record.turn_id,
            heard_text.clone(),
            self.context.history_max_messages / 2,
        );
        self.keep();
        self.shell
            .browser
            .send(ServerMessage::ResponseTruncated {
                response_id,
                heard_text,
            })
            .await;
    }

    async fn on_upstream(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Input(TranscriberEvent::SpeechStarted { item_id }) => {
                self.speech_activity();
                let turn = self.new_turn();
                self.remember_item(item_id, turn);
                self.interrupt_answer().await;
                self.shell
                    .browser
                    .send(ServerMessage::SpeechStarted { turn_id: turn })
                    .await;
            }
            AgentEvent::Input(TranscriberEvent::SpeechStopped { item_id }) => {
                if let Some(turn) = self.turn_of_item(&item_id) {
                    self.clocks.start(turn, Instant::now());
                    self.answering = Some(turn);
                    self.shell
                        .browser
                        .send(ServerMessage::SpeechStopped { turn_id: turn })
                        .await;
                }
            }
            AgentEvent::Input(TranscriberEvent::Committed { item_id, .. }) => {
                if self.turn_of_item(&item_id).is_some() {
                    return;
                }
                let turn = match self.awaiting_commit.pop_front() {
                    Some(turn) => turn,
                    None => {
                        // Committed upstream without a speech event we saw.
                        let turn = self.new_turn();
                        self.clocks.start(turn, Instant::now());
                        self.answering = Some(turn);
                        turn
                    }
                };
                self.remember_item(item_id, turn);
            }
            AgentEvent::Input(TranscriberEvent::Delta { item_id, delta }) => {
                if let Some(turn_id) = self.turn_of_item(&item_id) {
                    self.shell
                        .browser
                        .send(ServerMessage::TranscriptDelta { turn_id, delta })
                        .await;
                }
            }
            AgentEvent::Input(TranscriberEvent::Completed {
                item_id,
                transcript,
            }) => {
                if let Some(turn_id) = self.turn_of_item(&item_id) {
                    self.clocks
                        .mark(turn_id, Step::TranscriptFinal, Instant::now());
                    let text = transcript.trim().to_owned();
                    self.log
                        .user(turn_id, text.clone(), self.context.history_max_messages / 2);
                    self.keep();
                    self.shell
                        .browser
                        .send(ServerMessage::TranscriptFinal { turn_id, text })
                        .await;
                }
            }
            AgentEvent::Input(TranscriberEvent::Failed { item_id, .. }) => {
                // The model heard the audio and answers it; only the page's copy is missing.
                tracing::info!(item = %item_id, "the user's words could not be transcribed");
            }
            AgentEvent::ResponseCreated { response_id } => {
                self.on_answer_created(response_id).await
            }
            AgentEvent::Audio {
                response_id,
                item_id,
                pcm,
            } => {
                // None: of an answer already cancelled (a few deltas are in flight).
                let Some(live) = live_answer(&mut self.live, &response_id) else {
                    return;
                };
                if !live.first_audio {
                    live.first_audio = true;
                    self.clocks
                        .mark(live.record.turn_id, Step::TtsFirstByte, Instant::now());
                }
                live.record.samples += (pcm.len() / BYTES_PER_SAMPLE) as u64;
                live.record.item_id = Some(item_id);
                let response_id = live.record.response_id;
                let _ = self.audio_out.send(AudioOut { response_id, pcm }).await;
            }
            AgentEvent::AnswerDelta { response_id, delta } => {
                let Some(live) = live_answer(&mut self.live, &response_id) else {
                    return;
                };
                live.record.text.push_str(&delta);
                let response_id = live.record.response_id;
                self.shell
                    .browser
                    .send(ServerMessage::ResponseTextDelta { response_id, delta })
                    .await;
            }
            AgentEvent::ResponseDone {
                response_id,
                status,
            } => self.on_answer_done(response_id, status).await,
            AgentEvent::Input(TranscriberEvent::CommitEmpty) => {
                let mut event = audio_too_short();
                if let Some(turn) = self.awaiting_commit.pop_front() {
                    self.clocks.forget(turn);
                    event = event.for_turn(turn);
                }
                self.shell.send_error(event).await;
            }
            AgentEvent::Input(TranscriberEvent::Error { code, message }) => {
                if code
                    .as_deref()
                    .is_some_and(|code| BENIGN_ERROR_CODES.contains(&code))
                {
                    return;
                }
                tracing::warn!(code = ?code, %message, "voice model reported an error");
            }
            // Not read off a conversation socket.
            AgentEvent::Input(
                TranscriberEvent::Ready { .. }
                | TranscriberEvent::TurnFailed { .. }
                | TranscriberEvent::Closed(_),
            ) => {}
            AgentEvent::Closed(error) => {
                tracing::warn!(%error, "voice model connection lost");
                self.upstream = None;
                self.awaiting_commit.clear();
                self.speaking = None;
                self.buffered_ms = 0.0;
                let mut event = error.to_event(Stage::Llm);
                if let Some(live) = self.live.take() {
                    event = event
                        .for_turn(live.record.turn_id)
                        .for_response(live.record.response_id);
                    self.shell.send_logged_error(event).await;
                    self.finish_answer(live.record, true).await;
                } else {
                    self.shell.send_error(event).await;
                }
            }
        }
    }

    async fn on_answer_created(&mut self, upstream_id: String) {
        let turn_id = match self.answering.take() {
            Some(turn) => turn,
            None => {
                let turn = self.new_turn();
                self.clocks.start(turn, Instant::now());
                turn
            }
        };
        let response_id = self.next_response.next();
        self.next_response = response_id;
        self.clocks.set_response(turn_id, response_id);
        self.shell.browser.set_live(response_id);
        self.live = Some(LiveAnswer {
            upstream_id,
            record: AnswerRecord {
                response_id,
                turn_id,
                item_id: None,
                text: String::new(),
                samples: 0,
                played: 0,
            },
            first_audio: false,
        });
        self.shell
            .browser
            .send(ServerMessage::ResponseStarted {
                response_id,
                turn_id,
            })
            .await;
    }

    async fn on_answer_done(&mut self, upstream_id: String, status: AnswerStatus) {
        let Some(live) = self.live.take_if(|live| live.upstream_id == upstream_id) else {
            return;
        };
        let record = live.record;
        let cut = match status {
            AnswerStatus::Completed => false,
            AnswerStatus::Cancelled | AnswerStatus::Incomplete => true,
            AnswerStatus::Failed { message } => {
                tracing::warn!(%message, "voice model answer failed");
                let event = ErrorEvent::new(
                    Stage::Llm,
                    ErrorCode::UpstreamUnavailable,
                    "The voice model failed while answering; please try again.",
                    true,
                )
                .for_turn(record.turn_id)
                .for_response(record.response_id);
                self.shell.send_error(event).await;
                true
            }
        };
        // Every delta of it is queued for the writer: `response_done` waits until the writer
        // has written them all.
        self.shell.browser.end_of_audio(record.response_id).await;
        self.ending = Some((record, cut));
    }

    /// The writer has put an answer's last frame on the socket.
    async fn on_audio_written(&mut self, written: AudioWritten) {
        let Some((record, cut)) = self
            .ending
            .take_if(|(record, _)| record.response_id == written.response_id)
        else {
            return;
        };
        if let Some(at) = written.first_frame_at {
            self.clocks.mark(record.turn_id, Step::FirstAudioSent, at);
        }
        self.finish_answer(record, cut).await;
    }

    /// Logs and sends a turn's waterfall, once.
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
}

/// The answer being generated, if it is upstream's `upstream_id`.
fn live_answer<'a>(
    live: &'a mut Option<LiveAnswer>,
    upstream_id: &str,
) -> Option<&'a mut LiveAnswer> {
    live.as_mut().filter(|live| live.upstream_id == upstream_id)
}

/// The next upstream event; pending forever while there is no upstream.
async fn next_event(upstream: &mut Option<AgentHandle>) -> Option<AgentEvent> {
    match upstream {
        Some(upstream) => upstream.events.recv().await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gives_a_fresh_session_the_conversation_in_turn_order() {
        let mut log = TurnLog::default();
        // The answer to turn 1 began before its user transcript arrived.
        log.assistant(TurnId(1), "Hello there.".into(), 8);
        log.user(TurnId(1), "Hi.".into(), 8);
        log.user(TurnId(2), "How are you?".into(), 8);
        log.assistant(TurnId(2), String::new(), 8);
        let messages: Vec<_> = log.messages().collect();
        assert_eq!(
            messages,
            [
                AgentCommand::AddMessage {
                    assistant: false,
                    text: "Hi.".into()
                },
                AgentCommand::AddMessage {
                    assistant: true,
                    text: "Hello there.".into()
                },
                AgentCommand::AddMessage {
                    assistant: false,
                    text: "How are you?".into()
                },
            ]
        );
        log.user(TurnId(3), "Bye.".into(), 2);
        assert_eq!(log.turns.len(), 2, "bounded, oldest turns dropped first");
    }

    #[test]
    fn a_saved_log_restores_turn_by_turn() {
        let mut log = TurnLog::default();
        log.user(TurnId(4), "Hi.".into(), 8);
        log.assistant(TurnId(4), "Hello.".into(), 8);
        // A turn whose answer was never heard, and an answer without its user words.
        log.user(TurnId(5), "Are you there?".into(), 8);
        log.assistant(TurnId(6), "Yes.".into(), 8);
        let saved = log.saved();
        let restored = TurnLog::restored(saved.clone(), 8);
        assert_eq!(restored.saved(), saved);
        assert_eq!(
            restored.messages().collect::<Vec<_>>(),
            log.messages().collect::<Vec<_>>()
        );
        // An answer joins the unanswered turn before it: the model reads the same messages.
        assert_eq!(restored.last_turn(), TurnId(2));
    }

    #[test]
    fn what_was_heard_is_in_proportion_to_what_played() {
        let record = AnswerRecord {
            response_id: ResponseId(1),
            turn_id: TurnId(1),
            item_id: Some("a".into()),
            text: "one two three four".into(),
            samples: 24_000,
            played: 0,
        };
        assert_eq!(record.heard(24_000), "one two three four");
        assert_eq!(record.heard(0), "");
        let half = record.heard(12_000);
        assert!(half.starts_with("one"), "{half}");
        assert!(!half.contains("four"), "{half}");
    }
}
