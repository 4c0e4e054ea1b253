//! The turn state machine of one session: pure, no IO, no clocks.
//!
//! `Listening → UserSpeaking → Transcribing → Responding{Thinking, Speaking} → Listening`.
//!
//! [`TurnMachine::handle`] takes one [`Input`] and pushes the [`Action`]s the session must carry
//! out. It also maps the upstream's item ids to our turn ids and releases final transcripts in
//! turn order: turns are numbered in the order their audio was committed (which is the order of
//! `input_audio_buffer.committed` events, each naming its `previous_item_id`), and a turn whose
//! transcript completes early waits for the turns before it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use protocol::{ResponseId, TurnDetection, TurnId};

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the user.
    Listening,
    /// The user is speaking.
    UserSpeaking,
    /// The user's turn ended; its transcript is on the way.
    Transcribing,
    /// A response is generating, no audio of it sent yet.
    Thinking(ResponseId),
    /// A response's audio is streaming to the browser.
    Speaking(ResponseId),
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// The browser's VAD heard speech start.
    ClientSpeechStarted,
    /// The browser's VAD ended the turn.
    ClientSpeechStopped,
    /// The browser's VAD heard a short pause: the turn may be ending.
    ClientSpeechPaused,
    /// Speech went on after a short pause: the same turn continues.
    ClientSpeechResumed,
    /// The browser sent audio.
    ClientAudio,
    /// The browser cancelled a response.
    ClientCancel(ResponseId),
    /// Server VAD heard speech start.
    UpstreamSpeechStarted {
        /// The item the turn will become.
        item_id: String,
    },
    /// Server VAD heard speech end.
    UpstreamSpeechStopped {
        /// The item.
        item_id: String,
    },
    /// The upstream committed a turn's audio as an item.
    Committed {
        /// The item.
        item_id: String,
    },
    /// Part of an item's transcript.
    TranscriptDelta {
        /// The item.
        item_id: String,
        /// Text to append.
        delta: String,
    },
    /// An item's final transcript.
    TranscriptCompleted {
        /// The item.
        item_id: String,
        /// The text.
        transcript: String,
    },
    /// An item could not be transcribed.
    TranscriptFailed {
        /// The item.
        item_id: String,
    },
    /// Our last commit held too little audio.
    CommitEmpty,
    /// An item's transcription request failed upstream (the error is reported with the turn).
    TranscriptUnavailable {
        /// The item.
        item_id: String,
    },
    /// The transcription of the oldest open turn took too long.
    TranscriptTimedOut,
    /// The transcriber is gone: no open turn will be transcribed.
    TranscriberLost,
    /// The transcriber is gone (or hung) and a fresh one takes its place: each open turn not
    /// retried before is committed again on it from the audio the session kept
    /// ([`Action::Recommit`]); a turn already retried once is dropped for `reason`.
    TranscriberReplaced {
        /// Why a turn that already had its retry is dropped.
        reason: DropReason,
    },
    /// The first audio of a response went to the browser.
    ResponseAudioStarted(ResponseId),
    /// A response finished generating (or failed).
    ResponseEnded(ResponseId),
}

/// What the session must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The user's turn ended now: start its latency clock.
    TurnEnded(TurnId),
    /// Send `input_audio_buffer.commit` upstream: the audio since the last commit is (a piece
    /// of) this turn.
    Commit(TurnId),
    /// Forget the audio appended since the last commit: it is this turn's trailing silence,
    /// after its words were committed at the pause (the turn's commit is done).
    ClearInput(TurnId),
    /// Append this turn's kept audio to the fresh transcriber and commit it (its retry).
    Recommit(TurnId),
    /// Tell the browser server VAD heard speech start.
    NotifySpeechStarted(TurnId),
    /// Tell the browser server VAD heard speech end.
    NotifySpeechStopped(TurnId),
    /// Forward part of a transcript.
    TranscriptDelta(TurnId, String),
    /// A final transcript, released in turn order: add it to the history.
    TranscriptFinal(TurnId, String),
    /// A turn produced no transcript (failed, empty or timed out).
    TurnDropped(TurnId, DropReason),
    /// Answer the conversation so far, as this response, for this turn.
    StartResponse(ResponseId, TurnId),
    /// Stop generating this response at once.
    CancelResponse(ResponseId),
    /// Start answering this turn before it is confirmed, on what the user said up to the
    /// pause (the history plus this text); nothing of it reaches the browser until it is
    /// confirmed.
    StartSpeculation(ResponseId, TurnId, String),
    /// The turn ended as speculated: the speculative response becomes this turn's answer.
    ConfirmSpeculation(ResponseId, TurnId),
    /// The speculation is void (the user went on): stop it; nothing of it was heard.
    CancelSpeculation(ResponseId),
    /// What was done for a turn committed in pieces before it ended, reported at its end.
    EarlyWork(TurnId, EarlyWork),
}

/// What was done for a turn before it was confirmed, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EarlyWork {
    /// Pieces its audio was committed in.
    pub pieces: u32,
    /// Responses started speculatively at its pauses.
    pub speculations: u32,
    /// Of those, how many were cancelled because the user went on.
    pub speculations_cancelled: u32,
}

/// How the machine may get ahead of the end of a turn (client turn detection only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EarlyTurns {
    /// Commit the audio in pieces at the VAD's short pauses, so at the end of a long turn only
    /// its last piece remains to transcribe.
    pub commit_at_pauses: bool,
    /// At a short pause whose pieces are all transcribed, start answering before the turn is
    /// confirmed (needs `commit_at_pauses`).
    pub speculate: bool,
}

/// Speculative responses per turn at most: each costs an LLM request (and maybe a Speech
/// request) when the user goes on, and a user who keeps pausing is not about to stop.
const MAX_SPECULATIONS_PER_TURN: u32 = 2;

/// No speculation once a turn has this many pieces: a long question pauses often, and its
/// answer gains little from starting a few hundred milliseconds early.
const SPECULATION_MAX_PIECES: usize = 3;

/// Why a turn produced no transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The upstream could not transcribe it.
    Failed,
    /// It held too little audio.
    Empty,
    /// No transcript came in time.
    TimedOut,
    /// The transcriber was lost before the transcript came (and the loss was reported).
    Lost,
    /// The transcriber was lost again on the turn's retry.
    LostAgain,
    /// Its transcription request failed upstream; the session reports the upstream's error.
    Upstream,
}

/// How a turn's transcription ended, while it waits for earlier turns.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Text(String),
    Dropped(DropReason),
}

/// A turn committed in pieces, until every piece has its transcript and the turn has ended.
#[derive(Debug, Default)]
struct Assembly {
    /// Each committed piece's outcome, in commit order (`None`: not transcribed yet).
    pieces: Vec<Option<Outcome>>,
    /// Pieces the upstream has named an item for (the next item is piece `named`).
    named: usize,
    /// Pieces whose transcript has started arriving (their first delta gets a separator).
    delta_started: Vec<bool>,
    /// The user's turn has ended.
    ended: bool,
}

impl Assembly {
    fn is_transcribed(&self) -> bool {
        self.pieces.iter().all(Option::is_some)
    }

    /// The turn's outcome from its pieces: their texts joined in order, or the first failure.
    fn outcome(&self) -> Outcome {
        let mut text = String::new();
        for piece in self.pieces.iter().flatten() {
            match piece {
                Outcome::Text(piece) => {
                    let piece = piece.trim();
                    if !piece.is_empty() {
                        if !text.is_empty() {
                            text.push(' ');
                        }
                        text.push_str(piece);
                    }
                }
                Outcome::Dropped(DropReason::Empty) => {}
                Outcome::Dropped(reason) => return Outcome::Dropped(*reason),
            }
        }
        Outcome::Text(text)
    }
}

/// The turn the user is speaking, once a piece of it was committed at a pause.
#[derive(Debug)]
struct Spoken {
    turn: TurnId,
    /// The user is in a short pause right after a piece was committed.
    paused: bool,
    work: EarlyWork,
}

/// The state of one session's conversation flow.
#[derive(Debug)]
pub(crate) struct TurnMachine {
    detection: TurnDetection,
    early: EarlyTurns,
    /// The turn being spoken, committed in pieces so far.
    spoken: Option<Spoken>,
    /// Turns committed in pieces whose pieces are not all transcribed yet (or not ended).
    assembling: BTreeMap<TurnId, Assembly>,
    /// Items of pieced turns: item id → (turn, piece).
    piece_items: HashMap<String, (TurnId, usize)>,
    /// The response started speculatively, and the turn it answers.
    speculation: Option<(ResponseId, TurnId)>,
    phase: Phase,
    last_turn: TurnId,
    last_response: ResponseId,
    /// Whether audio arrived since the last commit (a commit without audio is pointless).
    audio_since_commit: bool,
    /// The turn being spoken right now (server VAD announces it before its item exists).
    speaking_turn: Option<TurnId>,
    /// Turns we committed whose item the upstream has not named yet, oldest first.
    awaiting_item: VecDeque<TurnId>,
    /// Upstream item id → our turn.
    items: HashMap<String, TurnId>,
    /// Turns not yet released, with their outcome once known.
    open: BTreeMap<TurnId, Option<Outcome>>,
    /// The latest released transcript that no response has answered yet.
    unanswered: Option<TurnId>,
    /// Open turns already committed a second time on a fresh transcriber.
    retried: std::collections::HashSet<TurnId>,
}

impl TurnMachine {
    /// A session that starts listening, commits each turn once at its end and never answers
    /// early.
    #[cfg(test)]
    pub(crate) fn new(detection: TurnDetection) -> Self {
        Self::with_early_turns(detection, EarlyTurns::default())
    }

    /// A session that starts listening and gets ahead of the end of turns as `early` allows
    /// (with the client's turn detection only).
    pub(crate) fn with_early_turns(detection: TurnDetection, early: EarlyTurns) -> Self {
        Self {
            detection,
            early,
            spoken: None,
            assembling: BTreeMap::new(),
            piece_items: HashMap::new(),
            speculation: None,
            phase: Phase::Listening,
            last_turn: protocol::TurnId(0),
            last_response: protocol::ResponseId(0),
            audio_since_commit: false,
            speaking_turn: None,
            awaiting_item: VecDeque::new(),
            items: HashMap::new(),
            open: BTreeMap::new(),
            unanswered: None,
            retried: std::collections::HashSet::new(),
        }
    }

    /// Where the conversation is.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The response generating now, if any.
    pub(crate) fn live_response(&self) -> Option<ResponseId> {
        match self.phase {
            Phase::Thinking(id) | Phase::Speaking(id) => Some(id),
            _ => None,
        }
    }

    /// Whether a turn is waiting for its transcript (a piece of the turn being spoken counts).
    pub(crate) fn has_open_turns(&self) -> bool {
        !self.open.is_empty() || !self.assembling.is_empty()
    }

    /// How many turns are waiting for their transcript (or for earlier turns').
    pub(crate) fn open_turn_count(&self) -> usize {
        self.open.len()
    }

    /// Applies one input, pushing the resulting actions onto `actions`.
    pub(crate) fn handle(&mut self, input: Input, actions: &mut Vec<Action>) {
        match input {
            Input::ClientAudio => self.audio_since_commit = true,
            Input::ClientSpeechStarted => self.user_started(actions),
            Input::ClientSpeechPaused => self.user_paused(actions),
            Input::ClientSpeechResumed => self.user_resumed(actions),
            Input::ClientSpeechStopped if self.spoken.is_some() => self.end_pieced_turn(actions),
            Input::ClientSpeechStopped => {
                if self.detection == TurnDetection::Client && self.audio_since_commit {
                    self.audio_since_commit = false;
                    let turn = self.new_turn();
                    self.awaiting_item.push_back(turn);
                    self.open.insert(turn, None);
                    actions.push(Action::TurnEnded(turn));
                    actions.push(Action::Commit(turn));
                    self.phase = Phase::Transcribing;
                } else if self.phase == Phase::UserSpeaking {
                    // Nothing to commit (or the server decides): back to waiting, answering
                    // what was said before if that had to wait.
                    self.phase = self.idle_phase();
                    self.answer_if_ready(actions);
                }
            }
            Input::ClientCancel(response) => {
                if self.live_response() == Some(response) {
                    actions.push(Action::CancelResponse(response));
                    self.phase = self.idle_phase();
                }
            }
            Input::UpstreamSpeechStarted { item_id } => {
                self.user_started(actions);
                let turn = self.new_turn();
                self.items.insert(item_id, turn);
                self.open.insert(turn, None);
                self.speaking_turn = Some(turn);
                actions.push(Action::NotifySpeechStarted(turn));
            }
            Input::UpstreamSpeechStopped { item_id } => {
                let turn = self.turn_of(&item_id);
                self.speaking_turn = None;
                self.audio_since_commit = false;
                actions.push(Action::NotifySpeechStopped(turn));
                actions.push(Action::TurnEnded(turn));
                if self.phase == Phase::UserSpeaking {
                    self.phase = Phase::Transcribing;
                }
            }
            Input::Committed { item_id } => {
                if !self.items.contains_key(&item_id) && !self.piece_items.contains_key(&item_id) {
                    let turn = match self.awaiting_item.pop_front() {
                        Some(turn) if self.assembling.contains_key(&turn) => {
                            let assembly = self.assembling.get_mut(&turn).expect("checked");
                            self.piece_items.insert(item_id, (turn, assembly.named));
                            assembly.named += 1;
                            return;
                        }
                        Some(turn) => turn,
                        None => {
                            // Server VAD committed a turn it never announced.
                            let turn = self.new_turn();
                            self.open.insert(turn, None);
                            turn
                        }
                    };
                    self.items.insert(item_id, turn);
                }
            }
            Input::TranscriptDelta { item_id, delta } => {
                if let Some(&(turn, piece)) = self.piece_items.get(&item_id) {
                    self.piece_delta(turn, piece, delta, actions);
                } else if let Some(&turn) = self.items.get(&item_id) {
                    actions.push(Action::TranscriptDelta(turn, delta));
                }
            }
            Input::TranscriptCompleted {
                item_id,
                transcript,
            } => {
                if let Some((turn, piece)) = self.piece_items.remove(&item_id) {
                    self.piece_done(turn, piece, Outcome::Text(transcript), actions);
                } else if let Some(turn) = self.items.remove(&item_id) {
                    self.resolve(turn, Outcome::Text(transcript), actions);
                }
            }
            Input::TranscriptFailed { item_id } => {
                if let Some((turn, piece)) = self.piece_items.remove(&item_id) {
                    self.piece_done(turn, piece, Outcome::Dropped(DropReason::Failed), actions);
                } else if let Some(turn) = self.items.remove(&item_id) {
                    self.resolve(turn, Outcome::Dropped(DropReason::Failed), actions);
                }
            }
            Input::TranscriptUnavailable { item_id } => {
                if let Some((turn, piece)) = self.piece_items.remove(&item_id) {
                    self.piece_done(turn, piece, Outcome::Dropped(DropReason::Upstream), actions);
                } else if let Some(turn) = self.items.remove(&item_id) {
                    self.resolve(turn, Outcome::Dropped(DropReason::Upstream), actions);
                }
            }
            Input::CommitEmpty => {
                if let Some(turn) = self.awaiting_item.pop_front() {
                    if let Some(assembly) = self.assembling.get_mut(&turn) {
                        let piece = assembly.named;
                        assembly.named += 1;
                        self.piece_done(turn, piece, Outcome::Dropped(DropReason::Empty), actions);
                        return;
                    }
                    self.resolve(turn, Outcome::Dropped(DropReason::Empty), actions);
                }
            }
            Input::TranscriptTimedOut => {
                if let Some((&turn, _)) = self.open.iter().find(|(_, outcome)| outcome.is_none()) {
                    self.awaiting_item.retain(|&t| t != turn);
                    self.items.retain(|_, &mut t| t != turn);
                    self.piece_items.retain(|_, &mut (t, _)| t != turn);
                    self.assembling.remove(&turn);
                    self.resolve(turn, Outcome::Dropped(DropReason::TimedOut), actions);
                }
            }
            Input::TranscriberLost => {
                self.speaking_turn = None;
                self.cancel_speculation(actions);
                for turn in self.forget_transcriber() {
                    if let Some(assembly) = self.assembling.get_mut(&turn) {
                        // A turn still being spoken is dropped when it ends.
                        for piece in assembly.pieces.iter_mut().filter(|p| p.is_none()) {
                            *piece = Some(Outcome::Dropped(DropReason::Lost));
                        }
                        if !assembly.ended {
                            continue;
                        }
                        self.assembling.remove(&turn);
                    }
                    self.resolve(turn, Outcome::Dropped(DropReason::Lost), actions);
                }
            }
            Input::TranscriberReplaced { reason } => {
                self.cancel_speculation(actions);
                for turn in self.forget_transcriber() {
                    if self.retried.insert(turn) {
                        if let Some(assembly) = self.assembling.get_mut(&turn) {
                            // All of the turn's audio so far goes again as one piece.
                            assembly.pieces = vec![None];
                            assembly.delta_started = vec![false];
                            assembly.named = 0;
                        }
                        // Committed again, in turn order: the fresh transcriber's items map
                        // to these turns in the same order.
                        self.awaiting_item.push_back(turn);
                        actions.push(Action::Recommit(turn));
                    } else {
                        if let Some(assembly) = self.assembling.get_mut(&turn) {
                            for piece in assembly.pieces.iter_mut().filter(|p| p.is_none()) {
                                *piece = Some(Outcome::Dropped(reason));
                            }
                            if !assembly.ended {
                                continue;
                            }
                            self.assembling.remove(&turn);
                        }
                        self.resolve(turn, Outcome::Dropped(reason), actions);
                    }
                }
            }
            Input::ResponseAudioStarted(response) => {
                if self.phase == Phase::Thinking(response) {
                    self.phase = Phase::Speaking(response);
                }
            }
            Input::ResponseEnded(response) => {
                if self.live_response() == Some(response) {
                    self.phase = self.idle_phase();
                }
            }
        }
    }

    /// Forgets the transcriber's items; returns the turns still waiting for a transcript,
    /// oldest first.
    fn forget_transcriber(&mut self) -> Vec<TurnId> {
        self.awaiting_item.clear();
        self.items.clear();
        self.piece_items.clear();
        let mut turns: Vec<TurnId> = self
            .open
            .iter()
            .filter(|(_, outcome)| outcome.is_none())
            .map(|(&turn, _)| turn)
            .collect();
        // A turn still being spoken with pieces in flight is not in `open` yet.
        for (&turn, assembly) in &self.assembling {
            if !assembly.is_transcribed() && !turns.contains(&turn) {
                turns.push(turn);
            }
        }
        turns.sort();
        turns
    }

    /// A short pause: commit what was said since the last commit as a piece of the turn, and
    /// speculate if its pieces are all in already.
    fn user_paused(&mut self, actions: &mut Vec<Action>) {
        let pieces_allowed = self.early.commit_at_pauses && self.detection == TurnDetection::Client;
        if !pieces_allowed || self.phase != Phase::UserSpeaking || !self.audio_since_commit {
            return;
        }
        if self.spoken.is_none() {
            let turn = self.new_turn();
            self.assembling.insert(turn, Assembly::default());
            self.spoken = Some(Spoken {
                turn,
                paused: false,
                work: EarlyWork::default(),
            });
        }
        self.cancel_speculation(actions);
        let turn = self.commit_piece(actions);
        if let Some(spoken) = &mut self.spoken {
            spoken.paused = true;
        }
        self.speculate_if_ready(turn, actions);
    }

    /// Speech went on after a pause: a speculation on the words before it is void.
    fn user_resumed(&mut self, actions: &mut Vec<Action>) {
        if let Some(spoken) = &mut self.spoken {
            spoken.paused = false;
        }
        if let Some((response, _)) = self.speculation.take() {
            actions.push(Action::CancelSpeculation(response));
            if let Some(spoken) = &mut self.spoken {
                spoken.work.speculations_cancelled += 1;
            }
        }
    }

    /// Commits the audio since the last commit as the next piece of the spoken turn.
    fn commit_piece(&mut self, actions: &mut Vec<Action>) -> TurnId {
        let spoken = self.spoken.as_mut().expect("a spoken turn");
        let turn = spoken.turn;
        spoken.work.pieces += 1;
        self.audio_since_commit = false;
        let assembly = self.assembling.entry(turn).or_default();
        assembly.pieces.push(None);
        assembly.delta_started.push(false);
        self.awaiting_item.push_back(turn);
        actions.push(Action::Commit(turn));
        turn
    }

    /// The end of a turn committed in pieces: its last words are committed (or, when it ended
    /// in the pause after a piece, the trailing silence is dropped), and it is answered once
    /// every piece has its transcript.
    fn end_pieced_turn(&mut self, actions: &mut Vec<Action>) {
        let Some(spoken) = self.spoken.as_ref() else {
            return;
        };
        let (turn, paused) = (spoken.turn, spoken.paused);
        actions.push(Action::TurnEnded(turn));
        if !paused && self.audio_since_commit {
            self.commit_piece(actions);
        } else {
            self.audio_since_commit = false;
            actions.push(Action::ClearInput(turn));
        }
        let spoken = self.spoken.take().expect("checked above");
        actions.push(Action::EarlyWork(turn, spoken.work));
        self.open.insert(turn, None);
        self.phase = Phase::Transcribing;
        if let Some(assembly) = self.assembling.get_mut(&turn) {
            assembly.ended = true;
        }
        self.finish_if_transcribed(turn, actions);
    }

    /// Part of a piece's transcript: forwarded, with a space before a later piece's first part.
    fn piece_delta(
        &mut self,
        turn: TurnId,
        piece: usize,
        delta: String,
        actions: &mut Vec<Action>,
    ) {
        let Some(assembly) = self.assembling.get_mut(&turn) else {
            return;
        };
        let Some(started) = assembly.delta_started.get_mut(piece) else {
            return;
        };
        let delta = if piece > 0 && !*started {
            format!(" {}", delta.trim_start())
        } else {
            delta
        };
        *started = true;
        actions.push(Action::TranscriptDelta(turn, delta));
    }

    /// A piece's transcription ended.
    fn piece_done(
        &mut self,
        turn: TurnId,
        piece: usize,
        outcome: Outcome,
        actions: &mut Vec<Action>,
    ) {
        let Some(slot) = self
            .assembling
            .get_mut(&turn)
            .and_then(|assembly| assembly.pieces.get_mut(piece))
        else {
            return;
        };
        *slot = Some(outcome);
        if self.finish_if_transcribed(turn, actions) {
            return;
        }
        let still_paused = self
            .spoken
            .as_ref()
            .is_some_and(|spoken| spoken.turn == turn && spoken.paused);
        if still_paused {
            self.speculate_if_ready(turn, actions);
        }
    }

    /// Resolves an ended pieced turn once all its pieces are transcribed; `true` if it did.
    fn finish_if_transcribed(&mut self, turn: TurnId, actions: &mut Vec<Action>) -> bool {
        let Some(assembly) = self.assembling.get(&turn) else {
            return false;
        };
        if !assembly.ended || !assembly.is_transcribed() {
            return false;
        }
        let outcome = assembly.outcome();
        self.assembling.remove(&turn);
        self.resolve(turn, outcome, actions);
        true
    }

    /// Starts answering the spoken turn before it is confirmed, when everything said so far
    /// is transcribed and nothing else is in the way.
    fn speculate_if_ready(&mut self, turn: TurnId, actions: &mut Vec<Action>) {
        let Some(spoken) = self.spoken.as_ref() else {
            return;
        };
        let Some(assembly) = self.assembling.get(&turn) else {
            return;
        };
        let allowed = self.early.speculate
            && spoken.turn == turn
            && spoken.paused
            && spoken.work.speculations < MAX_SPECULATIONS_PER_TURN
            && assembly.pieces.len() <= SPECULATION_MAX_PIECES
            && self.speculation.is_none()
            && self.open.is_empty()
            && self.live_response().is_none()
            && assembly.is_transcribed();
        if !allowed {
            return;
        }
        let Outcome::Text(text) = assembly.outcome() else {
            return;
        };
        if text.is_empty() {
            return;
        }
        self.last_response = self.last_response.next();
        self.speculation = Some((self.last_response, turn));
        if let Some(spoken) = &mut self.spoken {
            spoken.work.speculations += 1;
        }
        actions.push(Action::StartSpeculation(self.last_response, turn, text));
    }

    /// Drops a speculation that can no longer be right.
    fn cancel_speculation(&mut self, actions: &mut Vec<Action>) {
        if let Some((response, _)) = self.speculation.take() {
            actions.push(Action::CancelSpeculation(response));
            if let Some(spoken) = &mut self.spoken {
                spoken.work.speculations_cancelled += 1;
            }
        }
    }

    /// The user started speaking: a live response is interrupted (barge-in).
    fn user_started(&mut self, actions: &mut Vec<Action>) {
        if let Some(response) = self.live_response() {
            actions.push(Action::CancelResponse(response));
        }
        self.cancel_speculation(actions);
        self.phase = Phase::UserSpeaking;
    }

    /// The last turn and response ids given out, to continue from after a resume.
    pub(crate) fn last_ids(&self) -> (TurnId, ResponseId) {
        (self.last_turn, self.last_response)
    }

    /// Continues the ids of a resumed session: the next turn and response come after these.
    pub(crate) fn continue_ids(&mut self, last_turn: TurnId, last_response: ResponseId) {
        self.last_turn = self.last_turn.max(last_turn);
        self.last_response = self.last_response.max(last_response);
    }

    fn new_turn(&mut self) -> TurnId {
        self.last_turn = self.last_turn.next();
        self.last_turn
    }

    /// The turn an item belongs to, creating one for an item never seen before.
    fn turn_of(&mut self, item_id: &str) -> TurnId {
        if let Some(&turn) = self.items.get(item_id) {
            return turn;
        }
        let turn = self.speaking_turn.unwrap_or_else(|| {
            let turn = self.new_turn();
            self.open.insert(turn, None);
            turn
        });
        self.items.insert(item_id.to_owned(), turn);
        turn
    }

    /// Where to go when nothing is generating.
    fn idle_phase(&self) -> Phase {
        if self.speaking_turn.is_some() {
            Phase::UserSpeaking
        } else if self.open.values().any(Option::is_none) {
            Phase::Transcribing
        } else {
            Phase::Listening
        }
    }

    /// Records a turn's outcome and releases every finished turn at the head of the order.
    fn resolve(&mut self, turn: TurnId, outcome: Outcome, actions: &mut Vec<Action>) {
        if let Some(slot) = self.open.get_mut(&turn) {
            *slot = Some(outcome);
        }
        while let Some(entry) = self.open.first_entry() {
            let Some(outcome) = entry.get().clone() else {
                break;
            };
            let turn = *entry.key();
            entry.remove();
            self.retried.remove(&turn);
            match outcome {
                Outcome::Text(text) if !text.trim().is_empty() => {
                    actions.push(Action::TranscriptFinal(turn, text));
                    self.unanswered = Some(turn);
                }
                Outcome::Text(_) => actions.push(Action::TurnDropped(turn, DropReason::Empty)),
                Outcome::Dropped(reason) => actions.push(Action::TurnDropped(turn, reason)),
            }
        }
        if self.live_response().is_none() && self.phase != Phase::UserSpeaking {
            self.phase = self.idle_phase();
        }
        self.answer_if_ready(actions);
    }

    /// Answers once everything the user said is in: not while they speak again, and not while
    /// a later turn is still being transcribed (that one will be answered, with this one in
    /// the history).
    fn answer_if_ready(&mut self, actions: &mut Vec<Action>) {
        let user_busy = self.phase == Phase::UserSpeaking || self.speaking_turn.is_some();
        if user_busy || !self.open.is_empty() {
            return;
        }
        let Some(turn) = self.unanswered.take() else {
            return;
        };
        if let Some(response) = self.live_response() {
            actions.push(Action::CancelResponse(response));
        }
        if let Some((response, speculated)) = self.speculation.take() {
            if speculated == turn {
                // The turn ended as it was when the answer started: that answer is the one.
                actions.push(Action::ConfirmSpeculation(response, turn));
                self.phase = Phase::Thinking(response);
                return;
            }
            actions.push(Action::CancelSpeculation(response));
        }
        self.last_response = self.last_response.next();
        actions.push(Action::StartResponse(self.last_response, turn));
        self.phase = Phase::Thinking(self.last_response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_turn_is_committed_again_once_then_dropped() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        let actions = run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechStopped,
                Input::Committed {
                    item_id: "a".into(),
                },
                Input::TranscriberReplaced {
                    reason: DropReason::LostAgain,
                },
            ],
        );
        assert!(
            actions.contains(&Action::Recommit(TurnId(1))),
            "{actions:?}"
        );
        // The fresh transcriber's item is the same turn.
        let actions = run(
            &mut m,
            vec![
                Input::Committed {
                    item_id: "b".into(),
                },
                Input::TranscriptCompleted {
                    item_id: "b".into(),
                    transcript: "hello".into(),
                },
            ],
        );
        assert!(
            actions.contains(&Action::TranscriptFinal(TurnId(1), "hello".into())),
            "{actions:?}"
        );
        // A second turn lost twice is dropped the second time.
        let actions = run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechStopped,
                Input::TranscriberReplaced {
                    reason: DropReason::LostAgain,
                },
                Input::TranscriberReplaced {
                    reason: DropReason::LostAgain,
                },
            ],
        );
        assert!(
            actions.contains(&Action::Recommit(TurnId(2))),
            "{actions:?}"
        );
        assert!(
            actions.contains(&Action::TurnDropped(TurnId(2), DropReason::LostAgain)),
            "{actions:?}"
        );
    }

    fn run(machine: &mut TurnMachine, inputs: Vec<Input>) -> Vec<Action> {
        let mut actions = Vec::new();
        for input in inputs {
            machine.handle(input, &mut actions);
        }
        actions
    }

    fn client_turn(machine: &mut TurnMachine) -> Vec<Action> {
        run(
            machine,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechStopped,
            ],
        )
    }

    fn item(id: &str) -> String {
        id.to_owned()
    }

    #[test]
    fn a_client_detected_turn_commits_and_answers() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        assert_eq!(
            client_turn(&mut m),
            vec![
                Action::TurnEnded(protocol::TurnId(1)),
                Action::Commit(protocol::TurnId(1))
            ]
        );
        assert_eq!(m.phase(), Phase::Transcribing);
        let actions = run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::TranscriptDelta {
                    item_id: item("a"),
                    delta: "Hi".into(),
                },
                Input::TranscriptCompleted {
                    item_id: item("a"),
                    transcript: "Hi there.".into(),
                },
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::TranscriptDelta(protocol::TurnId(1), "Hi".into()),
                Action::TranscriptFinal(protocol::TurnId(1), "Hi there.".into()),
                Action::StartResponse(protocol::ResponseId(1), protocol::TurnId(1)),
            ]
        );
        assert_eq!(m.phase(), Phase::Thinking(protocol::ResponseId(1)));
        run(
            &mut m,
            vec![Input::ResponseAudioStarted(protocol::ResponseId(1))],
        );
        assert_eq!(m.phase(), Phase::Speaking(protocol::ResponseId(1)));
        run(&mut m, vec![Input::ResponseEnded(protocol::ResponseId(1))]);
        assert_eq!(m.phase(), Phase::Listening);
    }

    #[test]
    fn a_stop_without_audio_commits_nothing() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        let actions = run(
            &mut m,
            vec![Input::ClientSpeechStarted, Input::ClientSpeechStopped],
        );
        assert!(actions.is_empty());
        assert_eq!(m.phase(), Phase::Listening);
    }

    #[test]
    fn barge_in_cancels_the_live_response() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::TranscriptCompleted {
                    item_id: item("a"),
                    transcript: "Tell me a story.".into(),
                },
                Input::ResponseAudioStarted(protocol::ResponseId(1)),
            ],
        );
        let actions = run(&mut m, vec![Input::ClientSpeechStarted]);
        assert_eq!(
            actions,
            vec![Action::CancelResponse(protocol::ResponseId(1))]
        );
        assert_eq!(m.phase(), Phase::UserSpeaking);
        // Late events of the cancelled response change nothing.
        run(
            &mut m,
            vec![
                Input::ResponseAudioStarted(protocol::ResponseId(1)),
                Input::ResponseEnded(protocol::ResponseId(1)),
            ],
        );
        assert_eq!(m.phase(), Phase::UserSpeaking);
    }

    #[test]
    fn cancel_only_touches_the_live_response() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::TranscriptCompleted {
                    item_id: item("a"),
                    transcript: "Hello.".into(),
                },
            ],
        );
        assert!(run(&mut m, vec![Input::ClientCancel(protocol::ResponseId(7))]).is_empty());
        assert_eq!(
            run(&mut m, vec![Input::ClientCancel(protocol::ResponseId(1))]),
            vec![Action::CancelResponse(protocol::ResponseId(1))]
        );
        assert_eq!(m.phase(), Phase::Listening);
    }

    #[test]
    fn transcripts_are_released_in_turn_order() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        client_turn(&mut m);
        let actions = run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::Committed { item_id: item("b") },
                // The second turn finishes first.
                Input::TranscriptCompleted {
                    item_id: item("b"),
                    transcript: "Second.".into(),
                },
            ],
        );
        assert!(actions.is_empty(), "{actions:?}");
        let actions = run(
            &mut m,
            vec![Input::TranscriptCompleted {
                item_id: item("a"),
                transcript: "First.".into(),
            }],
        );
        assert_eq!(
            actions,
            vec![
                Action::TranscriptFinal(protocol::TurnId(1), "First.".into()),
                Action::TranscriptFinal(protocol::TurnId(2), "Second.".into()),
                Action::StartResponse(protocol::ResponseId(1), protocol::TurnId(2)),
            ]
        );
    }

    #[test]
    fn a_failed_turn_does_not_block_later_ones() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        client_turn(&mut m);
        let actions = run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::Committed { item_id: item("b") },
                Input::TranscriptCompleted {
                    item_id: item("b"),
                    transcript: "Second.".into(),
                },
                Input::TranscriptFailed { item_id: item("a") },
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::TurnDropped(protocol::TurnId(1), DropReason::Failed),
                Action::TranscriptFinal(protocol::TurnId(2), "Second.".into()),
                Action::StartResponse(protocol::ResponseId(1), protocol::TurnId(2)),
            ]
        );
    }

    #[test]
    fn an_empty_commit_drops_the_turn() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        assert_eq!(
            run(&mut m, vec![Input::CommitEmpty]),
            vec![Action::TurnDropped(protocol::TurnId(1), DropReason::Empty)]
        );
        assert_eq!(m.phase(), Phase::Listening);
    }

    #[test]
    fn a_stuck_transcription_times_out() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        run(&mut m, vec![Input::Committed { item_id: item("a") }]);
        assert_eq!(
            run(&mut m, vec![Input::TranscriptTimedOut]),
            vec![Action::TurnDropped(
                protocol::TurnId(1),
                DropReason::TimedOut
            )]
        );
        assert!(!m.has_open_turns());
        // A late transcript for it is ignored.
        assert!(
            run(
                &mut m,
                vec![Input::TranscriptCompleted {
                    item_id: item("a"),
                    transcript: "Late.".into()
                }]
            )
            .is_empty()
        );
    }

    #[test]
    fn losing_the_transcriber_drops_open_turns_and_answers_what_was_heard() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        client_turn(&mut m);
        run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::TranscriptCompleted {
                    item_id: item("a"),
                    transcript: "First.".into(),
                },
            ],
        );
        // Turn 1 waited for turn 2, which will never come: answer turn 1.
        assert_eq!(
            run(&mut m, vec![Input::TranscriberLost]),
            vec![
                Action::TurnDropped(protocol::TurnId(2), DropReason::Lost),
                Action::StartResponse(protocol::ResponseId(1), protocol::TurnId(1))
            ]
        );
        assert!(!m.has_open_turns());
    }

    #[test]
    fn a_transcript_that_arrives_while_the_user_speaks_again_waits() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::ClientSpeechStarted,
            ],
        );
        let actions = run(
            &mut m,
            vec![Input::TranscriptCompleted {
                item_id: item("a"),
                transcript: "Wait,".into(),
            }],
        );
        assert_eq!(
            actions,
            vec![Action::TranscriptFinal(protocol::TurnId(1), "Wait,".into())]
        );
        assert_eq!(m.phase(), Phase::UserSpeaking);
        run(&mut m, vec![Input::ClientAudio, Input::ClientSpeechStopped]);
        let actions = run(
            &mut m,
            vec![
                Input::Committed { item_id: item("b") },
                Input::TranscriptCompleted {
                    item_id: item("b"),
                    transcript: "one more thing.".into(),
                },
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::TranscriptFinal(protocol::TurnId(2), "one more thing.".into()),
                Action::StartResponse(protocol::ResponseId(1), protocol::TurnId(2))
            ]
        );
    }

    #[test]
    fn a_waiting_transcript_is_answered_when_the_interruption_was_nothing() {
        let mut m = TurnMachine::new(TurnDetection::Client);
        client_turn(&mut m);
        run(
            &mut m,
            vec![
                Input::Committed { item_id: item("a") },
                Input::ClientSpeechStarted,
            ],
        );
        run(
            &mut m,
            vec![Input::TranscriptCompleted {
                item_id: item("a"),
                transcript: "Hello.".into(),
            }],
        );
        // The second "utterance" carried no audio.
        assert_eq!(
            run(&mut m, vec![Input::ClientSpeechStopped]),
            vec![Action::StartResponse(
                protocol::ResponseId(1),
                protocol::TurnId(1)
            )]
        );
    }

    #[test]
    fn server_vad_turns_are_announced_and_answered() {
        let mut m = TurnMachine::new(TurnDetection::ServerVad);
        // The browser's own stop does not commit in server mode.
        assert!(client_turn(&mut m).is_empty());
        let actions = run(
            &mut m,
            vec![
                Input::UpstreamSpeechStarted { item_id: item("x") },
                Input::UpstreamSpeechStopped { item_id: item("x") },
                Input::Committed { item_id: item("x") },
                Input::TranscriptCompleted {
                    item_id: item("x"),
                    transcript: "Hello.".into(),
                },
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::NotifySpeechStarted(protocol::TurnId(1)),
                Action::NotifySpeechStopped(protocol::TurnId(1)),
                Action::TurnEnded(protocol::TurnId(1)),
                Action::TranscriptFinal(protocol::TurnId(1), "Hello.".into()),
                Action::StartResponse(protocol::ResponseId(1), protocol::TurnId(1)),
            ]
        );
    }

    #[test]
    fn server_vad_speech_during_a_response_is_barge_in() {
        let mut m = TurnMachine::new(TurnDetection::ServerVad);
        run(
            &mut m,
            vec![
                Input::UpstreamSpeechStarted { item_id: item("x") },
                Input::UpstreamSpeechStopped { item_id: item("x") },
                Input::Committed { item_id: item("x") },
                Input::TranscriptCompleted {
                    item_id: item("x"),
                    transcript: "Hello.".into(),
                },
            ],
        );
        let actions = run(
            &mut m,
            vec![Input::UpstreamSpeechStarted { item_id: item("y") }],
        );
        assert_eq!(
            actions,
            vec![
                Action::CancelResponse(protocol::ResponseId(1)),
                Action::NotifySpeechStarted(protocol::TurnId(2))
            ]
        );
    }

    fn early(speculate: bool) -> TurnMachine {
        TurnMachine::with_early_turns(
            TurnDetection::Client,
            EarlyTurns {
                commit_at_pauses: true,
                speculate,
            },
        )
    }

    fn transcribed(id: &str, text: &str) -> Vec<Input> {
        vec![
            Input::Committed { item_id: item(id) },
            Input::TranscriptCompleted {
                item_id: item(id),
                transcript: text.into(),
            },
        ]
    }

    const T1: TurnId = protocol::TurnId(1);

    #[test]
    fn a_turn_ending_in_a_short_pause_is_committed_at_the_pause() {
        let mut m = early(false);
        let actions = run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechPaused,
            ],
        );
        assert_eq!(actions, vec![Action::Commit(T1)]);
        assert_eq!(m.phase(), Phase::UserSpeaking);
        assert!(run(&mut m, transcribed("a", "Hello there.")).is_empty());
        // The hangover's silence went up too; it is dropped, not transcribed.
        let actions = run(&mut m, vec![Input::ClientAudio, Input::ClientSpeechStopped]);
        assert_eq!(
            actions,
            vec![
                Action::TurnEnded(T1),
                Action::ClearInput(T1),
                Action::EarlyWork(
                    T1,
                    EarlyWork {
                        pieces: 1,
                        ..EarlyWork::default()
                    }
                ),
                Action::TranscriptFinal(T1, "Hello there.".into()),
                Action::StartResponse(protocol::ResponseId(1), T1),
            ]
        );
    }

    #[test]
    fn the_pieces_of_a_long_turn_are_joined_in_order_whatever_order_they_finish_in() {
        let mut m = early(false);
        let mut inputs = vec![Input::ClientSpeechStarted];
        for _ in 0..2 {
            inputs.extend([
                Input::ClientAudio,
                Input::ClientSpeechPaused,
                Input::ClientSpeechResumed,
            ]);
        }
        inputs.extend([Input::ClientAudio, Input::ClientSpeechStopped]);
        let actions = run(&mut m, inputs);
        assert_eq!(
            actions,
            vec![
                Action::Commit(T1),
                Action::Commit(T1),
                Action::TurnEnded(T1),
                Action::Commit(T1),
                Action::EarlyWork(
                    T1,
                    EarlyWork {
                        pieces: 3,
                        ..EarlyWork::default()
                    }
                ),
            ]
        );
        let mut actions = run(
            &mut m,
            ["a", "b", "c"]
                .map(|id| Input::Committed { item_id: item(id) })
                .into(),
        );
        actions.extend(run(
            &mut m,
            vec![
                Input::TranscriptDelta {
                    item_id: item("b"),
                    delta: "asked".into(),
                },
                Input::TranscriptCompleted {
                    item_id: item("c"),
                    transcript: "a question.".into(),
                },
                Input::TranscriptCompleted {
                    item_id: item("a"),
                    transcript: "Someone".into(),
                },
            ],
        ));
        assert_eq!(actions, vec![Action::TranscriptDelta(T1, " asked".into())]);
        let actions = run(
            &mut m,
            vec![Input::TranscriptCompleted {
                item_id: item("b"),
                transcript: " asked ".into(),
            }],
        );
        assert_eq!(
            actions,
            vec![
                Action::TranscriptFinal(T1, "Someone asked a question.".into()),
                Action::StartResponse(protocol::ResponseId(1), T1),
            ]
        );
    }

    #[test]
    fn a_pause_whose_words_are_transcribed_starts_the_answer_and_the_end_confirms_it() {
        let mut m = early(true);
        run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechPaused,
            ],
        );
        let actions = run(&mut m, transcribed("a", "What time is it?"));
        assert_eq!(
            actions,
            vec![Action::StartSpeculation(
                protocol::ResponseId(1),
                T1,
                "What time is it?".into()
            )]
        );
        // Not live yet: the user may still go on.
        assert_eq!(m.phase(), Phase::UserSpeaking);
        let actions = run(&mut m, vec![Input::ClientAudio, Input::ClientSpeechStopped]);
        assert_eq!(
            actions,
            vec![
                Action::TurnEnded(T1),
                Action::ClearInput(T1),
                Action::EarlyWork(
                    T1,
                    EarlyWork {
                        pieces: 1,
                        speculations: 1,
                        speculations_cancelled: 0
                    }
                ),
                Action::TranscriptFinal(T1, "What time is it?".into()),
                Action::ConfirmSpeculation(protocol::ResponseId(1), T1),
            ]
        );
        assert_eq!(m.phase(), Phase::Thinking(protocol::ResponseId(1)));
    }

    #[test]
    fn going_on_after_the_pause_cancels_the_speculation_and_the_whole_turn_is_answered() {
        let mut m = early(true);
        run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechPaused,
            ],
        );
        run(&mut m, transcribed("a", "What time"));
        let actions = run(
            &mut m,
            vec![
                Input::ClientSpeechResumed,
                Input::ClientAudio,
                Input::ClientSpeechStopped,
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::CancelSpeculation(protocol::ResponseId(1)),
                Action::TurnEnded(T1),
                Action::Commit(T1),
                Action::EarlyWork(
                    T1,
                    EarlyWork {
                        pieces: 2,
                        speculations: 1,
                        speculations_cancelled: 1
                    }
                ),
            ]
        );
        let actions = run(&mut m, transcribed("b", "is it in Lima?"));
        assert_eq!(
            actions,
            vec![
                Action::TranscriptFinal(T1, "What time is it in Lima?".into()),
                Action::StartResponse(protocol::ResponseId(2), T1),
            ]
        );
    }

    #[test]
    fn speculation_is_bounded_per_turn_and_off_in_long_turns() {
        let mut m = early(true);
        run(&mut m, vec![Input::ClientSpeechStarted]);
        let mut speculations = 0;
        for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let mut actions = run(&mut m, vec![Input::ClientAudio, Input::ClientSpeechPaused]);
            actions.extend(run(&mut m, transcribed(id, "words")));
            actions.extend(run(&mut m, vec![Input::ClientSpeechResumed]));
            let started = actions
                .iter()
                .filter(|a| matches!(a, Action::StartSpeculation(..)))
                .count();
            assert!(started <= 1, "pause {n}: {actions:?}");
            speculations += started;
        }
        assert_eq!(speculations, MAX_SPECULATIONS_PER_TURN as usize);
    }

    #[test]
    fn pauses_change_nothing_when_the_server_ends_turns() {
        let mut m = TurnMachine::with_early_turns(
            TurnDetection::ServerVad,
            EarlyTurns {
                commit_at_pauses: true,
                speculate: true,
            },
        );
        let actions = run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechPaused,
                Input::ClientSpeechResumed,
            ],
        );
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn a_lost_transcriber_mid_turn_retries_the_pieces_so_far_as_one() {
        let mut m = early(false);
        run(
            &mut m,
            vec![
                Input::ClientSpeechStarted,
                Input::ClientAudio,
                Input::ClientSpeechPaused,
                Input::Committed { item_id: item("a") },
                Input::ClientSpeechResumed,
            ],
        );
        let actions = run(
            &mut m,
            vec![Input::TranscriberReplaced {
                reason: DropReason::LostAgain,
            }],
        );
        assert_eq!(actions, vec![Action::Recommit(T1)]);
        let mut actions = run(&mut m, vec![Input::ClientAudio, Input::ClientSpeechStopped]);
        actions.extend(run(&mut m, transcribed("x", "Hello")));
        actions.extend(run(&mut m, transcribed("y", "again.")));
        assert!(
            actions.contains(&Action::TranscriptFinal(T1, "Hello again.".into())),
            "{actions:?}"
        );
    }
}
