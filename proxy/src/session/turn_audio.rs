//! The audio of the user's turns, kept until their transcripts arrive, so a turn whose
//! transcription session is lost or hangs can be committed again on a fresh one, and audio
//! not yet committed when the socket drops can be replayed to the next: nothing the user said
//! is lost to an upstream failure.
//!
//! Frames are the browser's own `Bytes` (reference-counted, never copied). What is kept is
//! bounded: an utterance ends at the maximum utterance length, and a turn's audio is dropped
//! when its transcript arrives or it is given up.

use std::collections::BTreeMap;

use bytes::Bytes;
use protocol::TurnId;

/// The kept audio of one session.
#[derive(Debug, Default)]
pub(crate) struct TurnAudio {
    /// Appended since the last commit.
    pending: Vec<Bytes>,
    /// Committed turns still waiting for their transcript.
    committed: BTreeMap<TurnId, Vec<Bytes>>,
}

impl TurnAudio {
    /// A frame appended upstream.
    pub(crate) fn push(&mut self, frame: Bytes) {
        self.pending.push(frame);
    }

    /// The audio appended since the last commit now belongs to `turn` (after what it had: a
    /// turn may be committed in pieces).
    pub(crate) fn commit(&mut self, turn: TurnId) {
        let audio = std::mem::take(&mut self.pending);
        self.committed.entry(turn).or_default().extend(audio);
    }

    /// The audio appended since the last commit is not a turn after all (the commit was
    /// empty, or the upstream decides the turns).
    pub(crate) fn clear_pending(&mut self) {
        self.pending.clear();
    }

    /// `turn` got its transcript or was given up.
    pub(crate) fn forget(&mut self, turn: TurnId) {
        self.committed.remove(&turn);
    }

    /// A committed turn's audio, to commit it again.
    pub(crate) fn of(&self, turn: TurnId) -> &[Bytes] {
        self.committed.get(&turn).map_or(&[], Vec::as_slice)
    }

    /// The audio appended since the last commit, to replay it.
    pub(crate) fn pending(&self) -> &[Bytes] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_follows_its_turn_until_forgotten() {
        let mut audio = TurnAudio::default();
        audio.push(Bytes::from_static(b"ab"));
        audio.push(Bytes::from_static(b"cd"));
        audio.commit(TurnId(1));
        audio.push(Bytes::from_static(b"ef"));
        assert_eq!(audio.of(TurnId(1)).concat(), b"abcd");
        assert_eq!(audio.pending().concat(), b"ef");
        audio.forget(TurnId(1));
        assert!(audio.of(TurnId(1)).is_empty());
        audio.clear_pending();
        assert!(audio.pending().is_empty());
    }
}
