//! The client side of one voice session, as a pure state machine: no IO, no clocks, no browser.
//!
//! The browser glue feeds it what happens — server messages and audio frames from the socket,
//! VAD events from the capture worklet, reports from the playback worklet — and carries out the
//! [`Command`]s it pushes: messages to the proxy, commands to the playback worklet, the echo
//! guard of the capture worklet. Keeping it pure lets the barge-in rules be unit-tested
//! natively.
//!
//! # Barge-in
//!
//! VAD speech start while a response is active (generating, or its audio still playing):
//! 1. [`PlaybackCommand::Clear`] for that response at once — the worklet fades out within one
//!    render quantum, no server round trip;
//! 2. [`ClientMessage::SpeechStarted`] — the proxy cancels the LLM and TTS requests;
//! 3. when the worklet answers [`PlaybackEvent::Cleared`], [`ClientMessage::Cancel`] with the
//!    samples of the response actually played, so the proxy keeps only what was heard.
//!
//! Audio frames of the cancelled response still in flight are dropped
//! ([`AudioVerdict::Drop`]).
//!
//! # Short pauses
//!
//! The VAD also reports a short pause inside speech and the speech coming back. Inside a turn
//! we announced, they go to the proxy as [`ClientMessage::SpeechPaused`] and
//! [`ClientMessage::SpeechResumed`] (a resume only after a pause it was told of), so it may
//! start answering before the hangover ends the turn. Audio keeps flowing through a pause and
//! the page still shows the user speaking.
//!
//! # A dropped socket
//!
//! [`Session::on_disconnected`] puts the session back before `session_ready` while the page
//! reconnects (see [`crate::reconnect`]): nothing goes to the proxy and no audio is sent (the
//! microphone stays open), a turn in progress is lost (the next socket hears of no turn until
//! the VAD's next speech start, so it never gets a `speech_stopped` or audio without its
//! `speech_started`), and the answer that was playing is cleared at once (the rest of its
//! audio will never come; the proxy keeps of it what was last reported played). If the new
//! session resumes the conversation, response ids carry on; if it is a fresh one, they start
//! from 1 again, so the session forgets its responses and numbers the new ones apart from
//! the old for the playback worklet, which still remembers those ([`Session::playback_id`]).

use std::collections::BTreeMap;

use protocol::{ClientMessage, PROTOCOL_VERSION, ResponseId, ServerMessage};

/// A VAD event of the capture worklet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CaptureEvent {
    /// Speech started; the pre-roll and the speech frames follow.
    SpeechStarted,
    /// A short pause inside speech; the frames go on.
    SpeechPaused,
    /// Speech came back after a pause, in the same turn.
    SpeechResumed,
    /// Speech ended: the end of the user's turn.
    SpeechStopped,
}

/// A report of the playback worklet. Sample counts are 24 kHz samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlaybackEvent {
    /// Periodic position report.
    Progress {
        /// The response playing now or last, if any.
        response_id: Option<ResponseId>,
        /// Samples of it played so far.
        played_samples: u64,
        /// Underruns since the worklet started.
        underruns: u64,
        /// Chunks of cancelled responses the worklet dropped.
        stale_dropped: u64,
    },
    /// A response whose `end` was sent has fully played.
    Drained {
        /// The response.
        response_id: ResponseId,
        /// All of its samples played.
        played_samples: u64,
    },
    /// The answer to [`PlaybackCommand::Clear`].
    Cleared {
        /// The response that was current when the queue was cleared, if any.
        response_id: Option<ResponseId>,
        /// Samples of that response played before the fade.
        played_samples: u64,
    },
}

/// A command for the playback worklet. Ids are the proxy's; the glue gives the worklet
/// [`Session::playback_id`] of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackCommand {
    /// All audio of the response was sent: play the tail out, then report it drained.
    End(ResponseId),
    /// Fade out and empty the queue at once; the id also cancels that response's future audio.
    Clear(ResponseId),
}

/// Something the glue must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send a text message to the proxy.
    Send(ClientMessage),
    /// Tell the playback worklet.
    Playback(PlaybackCommand),
    /// Tell the capture worklet whether the assistant is audible (raises its VAD threshold).
    EchoGuard(bool),
}

/// What to do with an audio frame from the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioVerdict {
    /// Hand it to the playback worklet.
    Play,
    /// Drop it: its response was cancelled or never announced.
    Drop,
}

/// Where the conversation is, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pipeline {
    /// No session yet.
    #[default]
    Idle,
    /// Waiting for the user to speak.
    Listening,
    /// The user is speaking.
    UserSpeaking,
    /// The user's turn ended; the answer is on its way.
    Thinking,
    /// The answer is playing.
    Speaking,
}

impl Pipeline {
    /// Words for the page.
    pub fn label(self) -> &'static str {
        match self {
            Pipeline::Idle => "Not started",
            Pipeline::Listening => "Listening",
            Pipeline::UserSpeaking => "You're speaking",
            Pipeline::Thinking => "Thinking",
            Pipeline::Speaking => "Speaking",
        }
    }

    /// A stable machine name (CSS class, test attribute).
    pub fn key(self) -> &'static str {
        match self {
            Pipeline::Idle => "idle",
            Pipeline::Listening => "listening",
            Pipeline::UserSpeaking => "user-speaking",
            Pipeline::Thinking => "thinking",
            Pipeline::Speaking => "speaking",
        }
    }
}

/// How far a response got on this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponsePhase {
    /// Announced; no audio yet.
    Waiting,
    /// Audio went to the playback worklet; not drained yet.
    Playing,
    /// Played to the end.
    Drained,
    /// Finished without any audio.
    Silent,
    /// Cut by a barge-in; later frames are dropped.
    Cancelled,
}

/// What this side knows about one response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTrack {
    /// Where it is.
    pub phase: ResponsePhase,
    /// The proxy is still generating it (no `response_done` yet).
    pub generating: bool,
    /// 24 kHz samples received and handed to playback.
    pub received_samples: u64,
    /// 24 kHz samples the worklet reported played.
    pub played_samples: u64,
    /// Frames dropped because the response was cancelled.
    pub dropped_frames: u64,
    /// The last `played_samples` sent to the proxy.
    #[serde(skip)]
    reported_samples: u64,
}

impl ResponseTrack {
    fn new() -> Self {
        Self {
            phase: ResponsePhase::Waiting,
            generating: true,
            received_samples: 0,
            played_samples: 0,
            dropped_frames: 0,
            reported_samples: 0,
        }
    }

    /// Generating, or playing, or both: what a barge-in would cut.
    fn is_active(&self) -> bool {
        match self.phase {
            ResponsePhase::Waiting => self.generating,
            ResponsePhase::Playing => true,
            ResponsePhase::Drained | ResponsePhase::Silent | ResponsePhase::Cancelled => false,
        }
    }
}

/// Why a session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The proxy speaks another version of the contract.
    #[error("the server speaks protocol version {server}, this page version {client}")]
    ProtocolVersion {
        /// The proxy's version.
        server: u32,
        /// Ours.
        client: u32,
    },
}

/// The client side of one session. See the module docs.
#[derive(Debug, Default)]
pub struct Session {
    ready: bool,
    user_speaking: bool,
    /// We sent `speech_started` and not yet `speech_stopped`: audio frames may go out.
    turn_open: bool,
    /// We sent `speech_paused` in the open turn and no `speech_resumed` since.
    pause_sent: bool,
    /// A turn ended and its answer has not started (or the turn failed) yet.
    awaiting_answer: bool,
    /// A barge-in cleared playback; `cancel` goes out when the worklet confirms.
    barge_pending: Option<ResponseId>,
    echo_guard: bool,
    responses: BTreeMap<ResponseId, ResponseTrack>,
    /// Added to the proxy's response ids for the playback worklet: the highest id of every
    /// conversation before this one (see the module docs).
    playback_base: u32,
    underruns: u64,
    stale_dropped: u64,
    unknown_frames: u64,
}

impl Session {
    /// A session before `session_ready`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The proxy said `session_ready`: messages and audio may flow.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The id the playback worklet knows response `response_id` of the current conversation
    /// by: its audio, `end` and `clear` carry it, and its reports come back with it.
    pub fn playback_id(&self, response_id: ResponseId) -> ResponseId {
        ResponseId(response_id.0.saturating_add(self.playback_base))
    }

    /// The response of the current conversation the worklet's id `playback_id` stands for;
    /// `None` for one of an earlier conversation.
    fn response_of_playback(&self, playback_id: ResponseId) -> Option<ResponseId> {
        playback_id
            .0
            .checked_sub(self.playback_base)
            .filter(|id| *id > 0)
            .map(ResponseId)
    }

    /// The socket dropped: back to before `session_ready` (see the module docs). Pushes a
    /// playback `Clear` for each answer still generating or playing.
    pub fn on_disconnected(&mut self, out: &mut Vec<Command>) {
        self.ready = false;
        self.turn_open = false;
        self.pause_sent = false;
        self.awaiting_answer = false;
        // Its `cancel` would reach a socket that never saw the answer.
        self.barge_pending = None;
        for (response_id, track) in &mut self.responses {
            if track.is_active() {
                track.phase = ResponsePhase::Cancelled;
                track.generating = false;
                out.push(Command::Playback(PlaybackCommand::Clear(*response_id)));
            }
        }
        self.update_echo_guard(out);
    }

    /// Whether capture frames should go to the proxy now: only inside a turn we announced.
    pub fn should_send_audio(&self) -> bool {
        self.ready && self.turn_open
    }

    /// What the page shows.
    pub fn pipeline(&self) -> Pipeline {
        if !self.ready {
            Pipeline::Idle
        } else if self.user_speaking {
            Pipeline::UserSpeaking
        } else if self.assistant_audible() {
            Pipeline::Speaking
        } else if self.awaiting_answer || self.responses.values().any(ResponseTrack::is_active) {
            Pipeline::Thinking
        } else {
            Pipeline::Listening
        }
    }

    /// A response's audio is in the playback worklet.
    pub fn assistant_audible(&self) -> bool {
        self.responses
            .values()
            .any(|track| track.phase == ResponsePhase::Playing)
    }

    /// Every response seen, by id.
    pub fn responses(&self) -> &BTreeMap<ResponseId, ResponseTrack> {
        &self.responses
    }

    /// Underruns the playback worklet reported (since it started).
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Chunks of cancelled responses the playback worklet dropped.
    pub fn stale_dropped(&self) -> u64 {
        self.stale_dropped
    }

    /// Audio frames for responses never announced (dropped).
    pub fn unknown_frames(&self) -> u64 {
        self.unknown_frames
    }

    /// A text message from the proxy.
    pub fn on_server_message(
        &mut self,
        message: &ServerMessage,
        out: &mut Vec<Command>,
    ) -> Result<(), SessionError> {
        match message {
            ServerMessage::SessionReady {
                protocol_version,
                resumed,
                ..
            } => {
                if *protocol_version != PROTOCOL_VERSION {
                    return Err(SessionError::ProtocolVersion {
                        server: *protocol_version,
                        client: PROTOCOL_VERSION,
                    });
                }
                if !*resumed {
                    self.forget_conversation();
                }
                self.ready = true;
            }
            ServerMessage::ResponseStarted { response_id, .. } => {
                self.awaiting_answer = false;
                self.responses
                    .entry(*response_id)
                    .or_insert_with(ResponseTrack::new);
            }
            ServerMessage::ResponseDone { response_id, .. } => {
                if let Some(track) = self.responses.get_mut(response_id) {
                    track.generating = false;
                    match track.phase {
                        ResponsePhase::Playing => {
                            out.push(Command::Playback(PlaybackCommand::End(*response_id)))
                        }
                        ResponsePhase::Waiting => track.phase = ResponsePhase::Silent,
                        ResponsePhase::Drained
                        | ResponsePhase::Silent
                        | ResponsePhase::Cancelled => {}
                    }
                }
            }
            // The turn's pipeline is over (metrics come last) or failed: stop waiting.
            ServerMessage::Metrics { .. } | ServerMessage::Error(_) => {
                self.awaiting_answer = false;
            }
            ServerMessage::SpeechStarted { .. }
            | ServerMessage::SpeechStopped { .. }
            | ServerMessage::TranscriptDelta { .. }
            | ServerMessage::TranscriptFinal { .. }
            | ServerMessage::ResponseTextDelta { .. }
            | ServerMessage::ResponseTruncated { .. } => {}
        }
        self.update_echo_guard(out);
        Ok(())
    }

    /// An audio frame of `samples` 24 kHz samples from the proxy. Called per frame: pushes at
    /// most one command (into `out`'s existing capacity once it has grown).
    pub fn on_audio(
        &mut self,
        response_id: ResponseId,
        samples: u64,
        out: &mut Vec<Command>,
    ) -> AudioVerdict {
        let Some(track) = self.responses.get_mut(&response_id) else {
            self.unknown_frames += 1;
            return AudioVerdict::Drop;
        };
        match track.phase {
            ResponsePhase::Cancelled => {
                track.dropped_frames += 1;
                AudioVerdict::Drop
            }
            ResponsePhase::Waiting | ResponsePhase::Playing => {
                track.phase = ResponsePhase::Playing;
                track.received_samples += samples;
                self.update_echo_guard(out);
                AudioVerdict::Play
            }
            // Audio after the end: the proxy broke the contract; playing it would restart a
            // response the worklet already closed.
            ResponsePhase::Drained | ResponsePhase::Silent => {
                self.unknown_frames += 1;
                AudioVerdict::Drop
            }
        }
    }

    /// A VAD event from the capture worklet.
    pub fn on_capture(&mut self, event: CaptureEvent, out: &mut Vec<Command>) {
        match event {
            CaptureEvent::SpeechStarted => {
                self.user_speaking = true;
                if !self.ready {
                    return;
                }
                let active = self
                    .responses
                    .iter()
                    .rev()
                    .find(|(_, track)| track.is_active())
                    .map(|(id, _)| *id);
                if let Some(response_id) = active {
                    out.push(Command::Playback(PlaybackCommand::Clear(response_id)));
                    if let Some(track) = self.responses.get_mut(&response_id) {
                        track.phase = ResponsePhase::Cancelled;
                    }
                    self.barge_pending = Some(response_id);
                }
                self.turn_open = true;
                self.pause_sent = false;
                self.awaiting_answer = false;
                out.push(Command::Send(ClientMessage::SpeechStarted));
            }
            CaptureEvent::SpeechPaused => {
                if self.turn_open && !self.pause_sent {
                    self.pause_sent = true;
                    out.push(Command::Send(ClientMessage::SpeechPaused));
                }
            }
            CaptureEvent::SpeechResumed => {
                if self.turn_open && self.pause_sent {
                    self.pause_sent = false;
                    out.push(Command::Send(ClientMessage::SpeechResumed));
                }
            }
            CaptureEvent::SpeechStopped => {
                self.user_speaking = false;
                if self.turn_open {
                    self.turn_open = false;
                    self.pause_sent = false;
                    self.awaiting_answer = true;
                    out.push(Command::Send(ClientMessage::SpeechStopped));
                }
            }
        }
        self.update_echo_guard(out);
    }

    /// A fresh conversation: its response ids start from 1 again, so the old responses are
    /// forgotten and the new ones numbered past them for the worklet.
    fn forget_conversation(&mut self) {
        if let Some(last) = self.responses.keys().next_back() {
            self.playback_base = self.playback_base.saturating_add(last.0);
        }
        self.responses.clear();
    }

    /// A report from the playback worklet (its ids are [`Session::playback_id`]s).
    pub fn on_playback(&mut self, event: PlaybackEvent, out: &mut Vec<Command>) {
        match event {
            PlaybackEvent::Progress {
                response_id,
                played_samples,
                underruns,
                stale_dropped,
            } => {
                self.underruns = underruns;
                self.stale_dropped = stale_dropped;
                if let Some(response_id) = response_id.and_then(|id| self.response_of_playback(id))
                {
                    self.record_played(response_id, played_samples, out);
                }
            }
            PlaybackEvent::Drained {
                response_id,
                played_samples,
            } => {
                let Some(response_id) = self.response_of_playback(response_id) else {
                    return;
                };
                self.record_played(response_id, played_samples, out);
                if let Some(track) = self.responses.get_mut(&response_id)
                    && track.phase == ResponsePhase::Playing
                {
                    track.phase = ResponsePhase::Drained;
                }
            }
            PlaybackEvent::Cleared {
                response_id,
                played_samples,
            } => {
                let Some(cut) = self.barge_pending.take() else {
                    return;
                };
                // The worklet reports the response current at the clear; if that is another
                // (older) one, none of the cut response had played.
                let response_id = response_id.and_then(|id| self.response_of_playback(id));
                let played_samples = if response_id == Some(cut) {
                    played_samples
                } else {
                    0
                };
                if let Some(track) = self.responses.get_mut(&cut) {
                    track.played_samples = played_samples;
                    track.reported_samples = played_samples;
                }
                out.push(Command::Send(ClientMessage::Cancel {
                    response_id: cut,
                    played_samples,
                }));
            }
        }
        self.update_echo_guard(out);
    }

    /// Notes a played position and reports it to the proxy when it moved.
    fn record_played(&mut self, response_id: ResponseId, played: u64, out: &mut Vec<Command>) {
        let Some(track) = self.responses.get_mut(&response_id) else {
            return;
        };
        track.played_samples = track.played_samples.max(played);
        // A cancelled response's position goes out once, in `cancel`; nothing goes out
        // without a session.
        if self.ready
            && track.phase != ResponsePhase::Cancelled
            && track.played_samples > track.reported_samples
        {
            track.reported_samples = track.played_samples;
            out.push(Command::Send(ClientMessage::PlaybackProgress {
                response_id,
                played_samples: track.played_samples,
            }));
        }
    }

    /// Tells the capture worklet when audibility changes.
    fn update_echo_guard(&mut self, out: &mut Vec<Command>) {
        let audible = self.assistant_audible();
        if audible != self.echo_guard {
            self.echo_guard = audible;
            out.push(Command::EchoGuard(audible));
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::{AudioFormat, ErrorCode, ErrorEvent, Stage, TurnDetection, TurnId};

    use super::*;

    fn ready_session() -> Session {
        let mut session = Session::new();
        let mut out = Vec::new();
        session
            .on_server_message(&session_ready(PROTOCOL_VERSION), &mut out)
            .expect("same version");
        assert!(out.is_empty());
        session
    }

    fn session_ready(protocol_version: u32) -> ServerMessage {
        ServerMessage::SessionReady {
            protocol_version,
            session_id: "s1".into(),
            audio: AudioFormat::default(),
            turn_detection: TurnDetection::Client,
            simulated: true,
            resume: None,
            resumed: false,
        }
    }

    fn resumed_session_ready() -> ServerMessage {
        ServerMessage::SessionReady {
            protocol_version: PROTOCOL_VERSION,
            session_id: "s1".into(),
            audio: AudioFormat::default(),
            turn_detection: TurnDetection::Client,
            simulated: true,
            resume: Some(protocol::ResumeTicket {
                token: "t2".into(),
                grace_s: 60,
            }),
            resumed: true,
        }
    }

    fn started(response_id: ResponseId) -> ServerMessage {
        ServerMessage::ResponseStarted {
            response_id,
            turn_id: TurnId(response_id.0),
        }
    }

    fn done(response_id: ResponseId, interrupted: bool) -> ServerMessage {
        ServerMessage::ResponseDone {
            response_id,
            text: "Hi.".into(),
            interrupted,
            audio_samples: 0,
        }
    }

    /// Runs one user turn to the point where response 1 plays.
    fn playing_session() -> Session {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        session
            .on_server_message(&started(protocol::ResponseId(1)), &mut out)
            .unwrap();
        assert_eq!(
            session.on_audio(protocol::ResponseId(1), 960, &mut out),
            AudioVerdict::Play
        );
        session
    }

    /// The playing session's answer 1 is done, and its 960 samples played to the end.
    fn answer_done_and_played(session: &mut Session, out: &mut Vec<Command>) {
        session
            .on_server_message(&done(protocol::ResponseId(1), false), out)
            .unwrap();
        session.on_playback(
            PlaybackEvent::Drained {
                response_id: protocol::ResponseId(1),
                played_samples: 960,
            },
            out,
        );
    }

    #[test]
    fn a_turn_is_announced_in_order_and_audio_flows_only_inside_it() {
        let mut session = ready_session();
        let mut out = Vec::new();
        assert!(!session.should_send_audio());
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert!(session.should_send_audio());
        assert_eq!(session.pipeline(), Pipeline::UserSpeaking);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert!(!session.should_send_audio());
        assert_eq!(
            out,
            [
                Command::Send(ClientMessage::SpeechStarted),
                Command::Send(ClientMessage::SpeechStopped)
            ]
        );
        assert_eq!(session.pipeline(), Pipeline::Thinking);
    }

    #[test]
    fn short_pauses_inside_a_turn_are_announced_and_audio_flows_through_them() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        assert!(session.should_send_audio(), "audio flows through a pause");
        assert_eq!(session.pipeline(), Pipeline::UserSpeaking);
        session.on_capture(CaptureEvent::SpeechResumed, &mut out);
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert_eq!(
            out,
            [
                Command::Send(ClientMessage::SpeechStarted),
                Command::Send(ClientMessage::SpeechPaused),
                Command::Send(ClientMessage::SpeechResumed),
                Command::Send(ClientMessage::SpeechPaused),
                Command::Send(ClientMessage::SpeechStopped),
            ]
        );
        assert_eq!(session.pipeline(), Pipeline::Thinking);
    }

    #[test]
    fn pauses_outside_an_announced_turn_are_not_sent() {
        let mut session = Session::new();
        let mut out = Vec::new();
        // Before session_ready: the turn was never announced, nor is its pause.
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session
            .on_server_message(&session_ready(PROTOCOL_VERSION), &mut out)
            .unwrap();
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        session.on_capture(CaptureEvent::SpeechResumed, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        // After the turn ended: nothing to pause.
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_resume_goes_out_only_after_a_pause_that_went_out() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechResumed, &mut out);
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        assert_eq!(
            out,
            [
                Command::Send(ClientMessage::SpeechStarted),
                Command::Send(ClientMessage::SpeechPaused),
            ]
        );
        // A turn that ended paused starts the next one unpaused.
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        out.clear();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechResumed, &mut out);
        assert_eq!(out, [Command::Send(ClientMessage::SpeechStarted)]);
    }

    #[test]
    fn nothing_is_sent_before_session_ready() {
        let mut session = Session::new();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert!(out.is_empty());
        assert!(!session.should_send_audio());
        assert_eq!(session.pipeline(), Pipeline::Idle);
    }

    #[test]
    fn a_stop_without_an_announced_start_is_not_sent() {
        let mut session = Session::new();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session
            .on_server_message(&session_ready(PROTOCOL_VERSION), &mut out)
            .unwrap();
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let mut session = Session::new();
        let error = session
            .on_server_message(&session_ready(PROTOCOL_VERSION + 1), &mut Vec::new())
            .unwrap_err();
        assert!(matches!(error, SessionError::ProtocolVersion { .. }));
        assert!(!session.is_ready());
    }

    #[test]
    fn a_played_response_reports_progress_ends_and_drains() {
        let mut session = playing_session();
        assert_eq!(session.pipeline(), Pipeline::Speaking);
        let mut out = Vec::new();
        session.on_playback(
            PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 480,
                underruns: 0,
                stale_dropped: 0,
            },
            &mut out,
        );
        // The same position again is not re-sent.
        session.on_playback(
            PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 480,
                underruns: 0,
                stale_dropped: 0,
            },
            &mut out,
        );
        answer_done_and_played(&mut session, &mut out);
        assert_eq!(
            out,
            [
                Command::Send(ClientMessage::PlaybackProgress {
                    response_id: protocol::ResponseId(1),
                    played_samples: 480
                }),
                Command::Playback(PlaybackCommand::End(protocol::ResponseId(1))),
                Command::Send(ClientMessage::PlaybackProgress {
                    response_id: protocol::ResponseId(1),
                    played_samples: 960
                }),
                Command::EchoGuard(false),
            ]
        );
        assert_eq!(session.pipeline(), Pipeline::Listening);
        let track = &session.responses()[&ResponseId(1)];
        assert_eq!(track.phase, ResponsePhase::Drained);
        assert_eq!((track.received_samples, track.played_samples), (960, 960));
    }

    #[test]
    fn the_echo_guard_follows_audibility() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        session
            .on_server_message(&started(protocol::ResponseId(1)), &mut out)
            .unwrap();
        out.clear();
        session.on_audio(protocol::ResponseId(1), 480, &mut out);
        session.on_audio(protocol::ResponseId(1), 480, &mut out);
        assert_eq!(out, [Command::EchoGuard(true)]);
    }

    #[test]
    fn barge_in_clears_playback_first_then_announces_speech_then_cancels_with_played_samples() {
        let mut session = playing_session();
        let mut out = Vec::new();
        session.on_playback(
            PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 300,
                underruns: 0,
                stale_dropped: 0,
            },
            &mut out,
        );
        out.clear();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert_eq!(
            out,
            [
                Command::Playback(PlaybackCommand::Clear(protocol::ResponseId(1))),
                Command::Send(ClientMessage::SpeechStarted),
                Command::EchoGuard(false),
            ]
        );
        assert_eq!(session.pipeline(), Pipeline::UserSpeaking);
        out.clear();
        // Frames still in flight are dropped.
        assert_eq!(
            session.on_audio(protocol::ResponseId(1), 480, &mut out),
            AudioVerdict::Drop
        );
        // Progress of the cancelled response does not go out; the cancel carries it.
        session.on_playback(
            PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 400,
                underruns: 0,
                stale_dropped: 1,
            },
            &mut out,
        );
        session.on_playback(
            PlaybackEvent::Cleared {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 420,
            },
            &mut out,
        );
        assert_eq!(
            out,
            [Command::Send(ClientMessage::Cancel {
                response_id: protocol::ResponseId(1),
                played_samples: 420
            })]
        );
        let track = &session.responses()[&ResponseId(1)];
        assert_eq!(track.phase, ResponsePhase::Cancelled);
        assert_eq!(track.dropped_frames, 1);
        // The interrupted response's done neither ends playback nor changes the state.
        out.clear();
        session
            .on_server_message(&done(protocol::ResponseId(1), true), &mut out)
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn barge_in_before_any_audio_cancels_with_zero_played() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        session
            .on_server_message(&started(protocol::ResponseId(2)), &mut out)
            .unwrap();
        assert_eq!(session.pipeline(), Pipeline::Thinking);
        out.clear();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert_eq!(
            out[..2],
            [
                Command::Playback(PlaybackCommand::Clear(protocol::ResponseId(2))),
                Command::Send(ClientMessage::SpeechStarted)
            ]
        );
        out.clear();
        // The worklet's current response is an older one: nothing of 2 was played.
        session.on_playback(
            PlaybackEvent::Cleared {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 5000,
            },
            &mut out,
        );
        assert_eq!(
            out,
            [Command::Send(ClientMessage::Cancel {
                response_id: protocol::ResponseId(2),
                played_samples: 0
            })]
        );
    }

    #[test]
    fn barge_in_during_the_tail_of_a_finished_response_still_cuts_it() {
        let mut session = playing_session();
        let mut out = Vec::new();
        session
            .on_server_message(&done(protocol::ResponseId(1), false), &mut out)
            .unwrap();
        out.clear();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert_eq!(
            out[0],
            Command::Playback(PlaybackCommand::Clear(protocol::ResponseId(1)))
        );
    }

    #[test]
    fn speech_after_the_answer_played_is_a_plain_new_turn() {
        let mut session = playing_session();
        let mut out = Vec::new();
        answer_done_and_played(&mut session, &mut out);
        out.clear();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert_eq!(out, [Command::Send(ClientMessage::SpeechStarted)]);
        // A stray `cleared` without a barge-in sends nothing.
        out.clear();
        session.on_playback(
            PlaybackEvent::Cleared {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 960,
            },
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn frames_of_unknown_or_finished_responses_are_dropped() {
        let mut session = ready_session();
        let mut out = Vec::new();
        assert_eq!(
            session.on_audio(protocol::ResponseId(9), 480, &mut out),
            AudioVerdict::Drop
        );
        session
            .on_server_message(&started(protocol::ResponseId(1)), &mut out)
            .unwrap();
        session
            .on_server_message(&done(protocol::ResponseId(1), false), &mut out)
            .unwrap();
        assert_eq!(
            session.responses()[&ResponseId(1)].phase,
            ResponsePhase::Silent
        );
        assert_eq!(
            session.on_audio(protocol::ResponseId(1), 480, &mut out),
            AudioVerdict::Drop
        );
        assert_eq!(session.unknown_frames(), 2);
    }

    #[test]
    fn a_failed_turn_stops_thinking() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert_eq!(session.pipeline(), Pipeline::Thinking);
        session
            .on_server_message(
                &ServerMessage::Error(ErrorEvent {
                    stage: Stage::Stt,
                    code: ErrorCode::AudioTooShort,
                    message: "Too short.".into(),
                    retryable: true,
                    turn_id: Some(protocol::TurnId(1)),
                    response_id: None,
                }),
                &mut out,
            )
            .unwrap();
        assert_eq!(session.pipeline(), Pipeline::Listening);
    }

    #[test]
    fn a_drop_clears_the_playing_answer_and_sends_nothing_until_the_next_session() {
        let mut session = playing_session();
        let mut out = Vec::new();
        session.on_disconnected(&mut out);
        assert_eq!(
            out,
            [
                Command::Playback(PlaybackCommand::Clear(protocol::ResponseId(1))),
                Command::EchoGuard(false),
            ]
        );
        assert!(!session.is_ready());
        assert_eq!(session.pipeline(), Pipeline::Idle);
        let track = &session.responses()[&ResponseId(1)];
        assert_eq!(track.phase, ResponsePhase::Cancelled);
        assert!(!track.generating);
        out.clear();
        // The worklet's reports and the VAD's events send nothing while the page reconnects;
        // late frames of the cut answer are dropped.
        session.on_playback(
            PlaybackEvent::Cleared {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 700,
            },
            &mut out,
        );
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert!(!session.should_send_audio());
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert_eq!(
            session.on_audio(protocol::ResponseId(1), 480, &mut out),
            AudioVerdict::Drop
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_turn_in_progress_at_the_drop_is_lost_and_the_next_starts_at_the_next_speech() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechPaused, &mut out);
        session.on_disconnected(&mut out);
        assert!(!session.should_send_audio());
        out.clear();
        session
            .on_server_message(&resumed_session_ready(), &mut out)
            .unwrap();
        // The rest of the lost turn: the new socket never heard it start.
        session.on_capture(CaptureEvent::SpeechResumed, &mut out);
        assert!(!session.should_send_audio());
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(session.pipeline(), Pipeline::Listening, "not thinking");
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        assert!(session.should_send_audio());
        assert_eq!(out, [Command::Send(ClientMessage::SpeechStarted)]);
    }

    #[test]
    fn a_drop_while_waiting_for_the_answer_stops_waiting() {
        let mut session = ready_session();
        let mut out = Vec::new();
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        session.on_disconnected(&mut out);
        session
            .on_server_message(&resumed_session_ready(), &mut out)
            .unwrap();
        assert_eq!(session.pipeline(), Pipeline::Listening);
    }

    #[test]
    fn a_resumed_session_keeps_its_responses_and_ids_carry_on() {
        let mut session = playing_session();
        let mut out = Vec::new();
        answer_done_and_played(&mut session, &mut out);
        session.on_disconnected(&mut out);
        out.clear();
        session
            .on_server_message(&resumed_session_ready(), &mut out)
            .unwrap();
        assert_eq!(
            session.responses()[&ResponseId(1)].phase,
            ResponsePhase::Drained,
            "a played answer is not cut"
        );
        session
            .on_server_message(&started(protocol::ResponseId(2)), &mut out)
            .unwrap();
        assert_eq!(session.playback_id(protocol::ResponseId(2)), ResponseId(2));
        assert_eq!(
            session.on_audio(protocol::ResponseId(2), 480, &mut out),
            AudioVerdict::Play
        );
    }

    #[test]
    fn a_fresh_session_after_a_drop_numbers_its_responses_apart_from_the_old_ones() {
        let mut session = playing_session();
        let mut out = Vec::new();
        session.on_disconnected(&mut out);
        session
            .on_server_message(&session_ready(PROTOCOL_VERSION), &mut out)
            .unwrap();
        assert!(
            session.responses().is_empty(),
            "the old conversation is gone"
        );
        // The new conversation's response 1 is the worklet's response 2: the worklet still
        // holds the old response 1 as cancelled.
        assert_eq!(session.playback_id(protocol::ResponseId(1)), ResponseId(2));
        session.on_capture(CaptureEvent::SpeechStarted, &mut out);
        session.on_capture(CaptureEvent::SpeechStopped, &mut out);
        session
            .on_server_message(&started(protocol::ResponseId(1)), &mut out)
            .unwrap();
        assert_eq!(
            session.on_audio(protocol::ResponseId(1), 960, &mut out),
            AudioVerdict::Play
        );
        out.clear();
        // A late report of the old response 1 is not taken for the new one.
        session.on_playback(
            PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(1)),
                played_samples: 5000,
                underruns: 0,
                stale_dropped: 0,
            },
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        session.on_playback(
            PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(2)),
                played_samples: 480,
                underruns: 0,
                stale_dropped: 0,
            },
            &mut out,
        );
        assert_eq!(
            out,
            [Command::Send(ClientMessage::PlaybackProgress {
                response_id: protocol::ResponseId(1),
                played_samples: 480
            })]
        );
    }
}
