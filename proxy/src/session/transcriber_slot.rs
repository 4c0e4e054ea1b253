//! The session's transcriber: at most one Realtime transcription session at a time, opened
//! at the first speech start or audio (never at session start: an idle session holds no
//! upstream socket), closed by the session after a quiet period, replaced before the upstream
//! ends it, replaced when it hangs.
//!
//! The slot never calls back into the session: what the turn machine must learn (above all
//! that a transcriber's items are gone) comes back as an [`Input`] or a [`Report`] for the
//! session to apply.

use bytes::{Bytes, BytesMut};
use protocol::{ErrorCode, ErrorEvent, Stage};
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::turn::Input;
use crate::upstream::realtime::{
    APPEND_BATCH_BYTES, Transcriber, TranscriberCommand, TranscriberEvent, TranscriberHandle,
};
use crate::upstream::unix_now_s;

/// How long before its expiry a transcription session is no longer trusted with a new turn,
/// in seconds: the longest utterance (30 s) plus the transcript's wait (20 s), rounded up.
const ROTATE_BEFORE_EXPIRY_S: u64 = 60;

/// What an upstream event means for the session.
#[derive(Debug)]
pub(crate) enum Report {
    /// Nothing for the session to do.
    Nothing,
    /// Feed this to the turn machine.
    Input(Input),
    /// Tell the user; the session goes on.
    Error(ErrorEvent),
    /// The transcriber is gone: tell the user (unless nothing was lost), then feed the machine
    /// [`Input::TranscriberLost`].
    Lost(Option<ErrorEvent>),
    /// A turn's transcription failed upstream: feed the machine the input, and report the
    /// error with the turn it drops.
    TurnFailed(Input, ErrorEvent),
}

/// Why audio could not be handed to the transcriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AppendError {
    /// Its queue is full: the upstream is not keeping up; this frame is lost.
    #[error("the transcriber is not keeping up")]
    Backlogged,
}

/// Holds the session's transcriber, if one runs.
#[derive(Debug)]
pub(crate) struct TranscriberSlot {
    transcriber: Transcriber,
    cancel: CancellationToken,
    current: Option<TranscriberHandle>,
    /// The upstream accepted the session configuration.
    ready: bool,
    /// When the upstream will end the transcription session, once it said.
    expires_at_unix_s: Option<u64>,
    /// The last one was lost to a failure: audio alone does not reopen it (that would hammer a
    /// failing upstream once per frame); the next speech start does.
    lost: bool,
    /// Audio gathered for the transcriber until a batch is full: one command (and one wake of
    /// its socket task) per [`APPEND_BATCH_BYTES`] instead of per browser frame.
    batch: BytesMut,
}

impl TranscriberSlot {
    /// An empty slot; transcribers opened in it end when `cancel` fires.
    pub(crate) fn new(transcriber: Transcriber, cancel: CancellationToken) -> Self {
        Self {
            transcriber,
            cancel,
            current: None,
            ready: false,
            expires_at_unix_s: None,
            lost: false,
            batch: BytesMut::new(),
        }
    }

    /// Forgets the transcriber and the audio gathered for it (the session replays what a
    /// fresh one must hear from the turns' kept audio).
    fn drop_current(&mut self) {
        self.current = None;
        self.batch.clear();
    }

    /// Whether a transcriber is open (or connecting).
    pub(crate) fn is_open(&self) -> bool {
        self.current.is_some()
    }

    /// Opens a transcriber if none runs (at a speech start, at the first audio after a quiet
    /// close, at a commit). It connects in the background; audio sent meanwhile waits in its
    /// queue.
    pub(crate) fn ensure(&mut self) {
        self.lost = false;
        if self.current.is_none() {
            self.current = Some(self.transcriber.spawn(self.cancel.child_token()));
            self.ready = false;
            self.expires_at_unix_s = None;
        }
    }

    /// Drops the transcriber (closing its socket). The returned input makes the machine forget
    /// its item ids, so a fresh one's items cannot be matched to them.
    pub(crate) fn close(&mut self) -> Input {
        self.drop_current();
        Input::TranscriberLost
    }

    /// Replaces a transcriber that let a committed turn go unanswered: it may be hung with its
    /// socket still open, and keeping it would fail every later turn the same way. A fresh one
    /// opens at once if the user is `still_speaking` (the rest of what is said goes to it),
    /// else at the next speech start.
    pub(crate) fn replace_hung(&mut self, still_speaking: bool) -> Input {
        let input = self.close();
        if still_speaking {
            self.ensure();
        }
        input
    }

    /// At a speech start with nothing waiting for a transcript (`idle`): closes a
    /// transcription session the upstream is about to end (it lasts at most an hour), so no
    /// turn is cut by its expiry. The caller then opens a fresh one.
    pub(crate) fn close_if_expiring(&mut self, idle: bool) -> Option<Input> {
        let expiring = self
            .expires_at_unix_s
            .is_some_and(|at| expires_within_a_turn(at, unix_now_s()));
        if expiring && idle && self.current.is_some() {
            tracing::info!("transcription session near its end; opening a fresh one");
            return Some(self.close());
        }
        None
    }

    /// Hands audio to the transcriber, opening one if none runs. After a loss (the browser
    /// was told) the audio has nowhere to go and is dropped: the next speech start reconnects,
    /// since reconnecting per frame would hammer a failing upstream.
    pub(crate) fn append(&mut self, audio: Bytes) -> Result<(), AppendError> {
        if self.current.is_none() && !self.lost {
            self.ensure();
        }
        if self.current.is_none() {
            return Ok(());
        }
        if self.batch.capacity() == 0 {
            // Made at the first speech, not for an idle session; reused from then on.
            self.batch.reserve(APPEND_BATCH_BYTES * 2);
        }
        self.batch.extend_from_slice(&audio);
        if self.batch.len() < APPEND_BATCH_BYTES {
            return Ok(());
        }
        self.flush()
    }

    /// Hands the audio gathered so far to the transcriber (at the end of speech, before a
    /// commit, or when a batch is full).
    pub(crate) fn flush(&mut self) -> Result<(), AppendError> {
        let Some(current) = &self.current else {
            self.batch.clear();
            return Ok(());
        };
        if self.batch.is_empty() {
            return Ok(());
        }
        let audio = self.batch.split().freeze();
        match current.commands.try_send(TranscriberCommand::Append(audio)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(AppendError::Backlogged),
            // The transcriber ended; its Closed event explains why.
            Err(TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Ends the turn upstream, opening a transcriber first if none runs.
    pub(crate) fn commit(&mut self) {
        // A full queue is reported by the next frame's append.
        let _ = self.flush();
        self.ensure();
        if let Some(current) = &self.current {
            // Commands are in order behind the audio; a full queue is reported on append.
            let _ = current.commands.try_send(TranscriberCommand::Commit);
        }
    }

    /// Forgets the audio appended since the last commit (a turn's trailing silence, once its
    /// words were committed at the pause before it).
    pub(crate) fn clear(&mut self) {
        self.batch.clear();
        if let Some(current) = &self.current {
            // In order behind the audio; a full queue is reported on append.
            let _ = current.commands.try_send(TranscriberCommand::Clear);
        }
    }

    /// The next event of the transcriber, or never when there is none.
    pub(crate) async fn next_event(&mut self) -> Option<TranscriberEvent> {
        match &mut self.current {
            Some(handle) => handle.events.recv().await,
            None => std::future::pending().await,
        }
    }

    /// What an event (`None`: the transcriber's task ended) means for the session. `idle`:
    /// no turn waits for a transcript and no one speaks, so a transcriber that ends now loses
    /// nothing.
    pub(crate) fn on_event(&mut self, event: Option<TranscriberEvent>, idle: bool) -> Report {
        let Some(event) = event else {
            self.drop_current();
            return Report::Nothing;
        };
        let input = match event {
            TranscriberEvent::Ready { expires_at_unix_s } => {
                self.ready = true;
                self.expires_at_unix_s = expires_at_unix_s;
                return Report::Nothing;
            }
            TranscriberEvent::SpeechStarted { item_id } => Input::UpstreamSpeechStarted { item_id },
            TranscriberEvent::SpeechStopped { item_id } => Input::UpstreamSpeechStopped { item_id },
            TranscriberEvent::Committed { item_id, .. } => Input::Committed { item_id },
            TranscriberEvent::Delta { item_id, delta } => Input::TranscriptDelta { item_id, delta },
            TranscriberEvent::Completed {
                item_id,
                transcript,
            } => Input::TranscriptCompleted {
                item_id,
                transcript,
            },
            TranscriberEvent::Failed { item_id, code } => {
                tracing::info!(?code, "transcription of a turn failed");
                Input::TranscriptFailed { item_id }
            }
            TranscriberEvent::CommitEmpty => Input::CommitEmpty,
            TranscriberEvent::TurnFailed { item_id, error } => {
                tracing::warn!(%error, "transcription of a turn failed upstream");
                return Report::TurnFailed(
                    Input::TranscriptUnavailable { item_id },
                    error.to_event(Stage::Stt),
                );
            }
            TranscriberEvent::Error { code, message } => {
                tracing::warn!(?code, %message, "transcription error event");
                if self.ready {
                    return Report::Nothing;
                }
                // The session configuration itself was refused.
                return Report::Error(ErrorEvent::new(
                    Stage::Stt,
                    ErrorCode::UpstreamBadRequest,
                    "Speech recognition rejected the session configuration.",
                    false,
                ));
            }
            TranscriberEvent::Closed(error) => {
                let ready = self.ready;
                self.drop_current();
                if ready && idle {
                    // Nothing was lost (the session reached its maximum duration, say): the
                    // next speech start opens a fresh one, and the user need not hear of it.
                    tracing::info!(%error, "transcription session ended while idle");
                    return Report::Lost(None);
                }
                tracing::warn!(%error, "transcriber lost");
                let mut event = error.to_event(Stage::Stt);
                if event.code == ErrorCode::StreamInterrupted {
                    event.code = ErrorCode::SessionLost;
                    event.message = "The speech recognition connection was lost; it reconnects \
                                     when you speak again."
                        .into();
                    event.retryable = true;
                }
                self.lost = true;
                // Turns waiting for it will never be transcribed (the error says why).
                return Report::Lost(Some(event));
            }
        };
        Report::Input(input)
    }
}

/// Whether a session expiring at `expires_at` (Unix seconds) may end during a turn begun at
/// `now`.
fn expires_within_a_turn(expires_at: u64, now: u64) -> bool {
    now.saturating_add(ROTATE_BEFORE_EXPIRY_S) >= expires_at
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
