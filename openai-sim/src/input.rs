//! The input audio buffer of a Realtime session, as both kinds of session keep it
//! (docs/openai-wire.md §1.5, §6): the session clock (bytes appended so far), where the
//! uncommitted buffer starts, the turn detector and the speech it has heard, and the point at
//! which a [`Fault::DropAfterAudio`](super::fault::Fault::DropAfterAudio) drops the
//! connection. It decides what appended audio, `input_audio_buffer.commit` and `.clear` mean
//! and builds their events; what a turn then does (transcribe it, answer it) is the session's.
//!
//! `session.update` is the same dance in both sessions too ([`InputBuffer::update_session`]):
//! a session whose turn detection changes gets a new detector from the current position.

use serde_json::{Value, json};

use super::error::ApiError;
use super::session::{AudioInput, TurnDetection};
use super::synth::{BYTES_PER_MS, BYTES_PER_SAMPLE};
use super::text;
use super::vad::{Vad, VadEvent};

/// Shortest committable buffer (§1.5: "Expected at least 100ms").
const MIN_COMMIT_MS: u64 = 100;

/// A session configuration that a `session.update` changes.
pub(crate) trait Configurable {
    /// Its `audio.input`.
    fn audio_input(&self) -> &AudioInput;
    /// The `session` object of `session.created` / `session.updated`.
    fn session_json(&self) -> Value;

    /// The turn detection in effect.
    fn turn_detection(&self) -> &TurnDetection {
        &self.audio_input().turn_detection
    }
}

/// What appended audio made the turn detector hear, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Heard {
    /// Speech started: this `input_audio_buffer.speech_started` is to be sent.
    Started(Value),
    /// Speech stopped: this `input_audio_buffer.speech_stopped` is to be sent, then the
    /// buffer up to the end of the speech is committed as `item_id`, `audio_ms` long.
    Stopped {
        event: Value,
        item_id: String,
        audio_ms: u64,
    },
}

/// The input audio buffer of one session.
#[derive(Debug)]
pub(crate) struct InputBuffer {
    /// Bytes appended over the whole session: the clock of `audio_start_ms` / `audio_end_ms`.
    total_bytes: u64,
    /// Session byte offset where the uncommitted input buffer starts.
    buffer_start: u64,
    vad: Option<Vad>,
    /// The item id announced by `speech_started`, and where that speech started (ms).
    speech: Option<(String, u64)>,
    /// [`Fault::DropAfterAudio`](super::fault::Fault::DropAfterAudio): the session's audio
    /// byte count at which the connection drops.
    drop_at_audio_bytes: Option<u64>,
}

impl InputBuffer {
    /// An empty buffer, detecting turns as `detection` says.
    pub(crate) fn new(detection: &TurnDetection) -> Self {
        Self {
            total_bytes: 0,
            buffer_start: 0,
            vad: detection.vad_params().map(|params| Vad::new(params, 0)),
            speech: None,
            drop_at_audio_bytes: None,
        }
    }

    /// Runs a `session.update` event: `apply` changes `session` with the event's `session`
    /// (or refuses it, changing nothing); a changed turn detection restarts the detector at
    /// the current position, forgetting speech in progress. Returns the `session.updated`.
    pub(crate) fn update_session<S: Configurable>(
        &mut self,
        session: &mut S,
        event: &Value,
        apply: impl FnOnce(&mut S, &Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let update = event
            .get("session")
            .ok_or_else(|| ApiError::missing("session"))?;
        let before = session.turn_detection().clone();
        apply(session, update)?;
        if *session.turn_detection() != before {
            let position = self.total_bytes / BYTES_PER_SAMPLE as u64;
            self.vad = session
                .turn_detection()
                .vad_params()
                .map(|params| Vad::new(params, position));
            self.speech = None;
        }
        Ok(json!({
            "type": "session.updated",
            "event_id": text::event_id(),
            "session": session.session_json(),
        }))
    }

    /// Arms [`Fault::DropAfterAudio`](super::fault::Fault::DropAfterAudio): the connection
    /// drops once `bytes` more have been appended.
    pub(crate) fn drop_after(&mut self, bytes: usize) {
        self.drop_at_audio_bytes = Some(self.total_bytes + bytes as u64);
    }

    /// Adds appended audio and runs the detector over it; `None` when the point of a
    /// `DropAfterAudio` fault has come (the connection is to drop, the audio is not heard).
    pub(crate) fn push(&mut self, audio: &[u8]) -> Option<Vec<Heard>> {
        self.total_bytes += audio.len() as u64;
        if self
            .drop_at_audio_bytes
            .is_some_and(|at| self.total_bytes >= at)
        {
            self.drop_at_audio_bytes = None;
            return None;
        }
        let mut found = Vec::new();
        if let Some(vad) = &mut self.vad {
            vad.push(audio, &mut found);
        }
        Some(
            found
                .into_iter()
                .filter_map(|event| self.hear(event))
                .collect(),
        )
    }

    fn hear(&mut self, event: VadEvent) -> Option<Heard> {
        match event {
            VadEvent::SpeechStarted { audio_start_ms } => {
                let audio_start_ms = audio_start_ms.max(self.buffer_start / BYTES_PER_MS);
                let item_id = text::item_id();
                self.speech = Some((item_id.clone(), audio_start_ms));
                Some(Heard::Started(json!({
                    "type": "input_audio_buffer.speech_started",
                    "event_id": text::event_id(),
                    "audio_start_ms": audio_start_ms,
                    "item_id": item_id,
                })))
            }
            VadEvent::SpeechStopped {
                audio_end_ms,
                detected_at_ms,
            } => {
                let (item_id, start_ms) = self.speech.take()?;
                self.buffer_start = detected_at_ms * BYTES_PER_MS;
                Some(Heard::Stopped {
                    event: json!({
                        "type": "input_audio_buffer.speech_stopped",
                        "event_id": text::event_id(),
                        "audio_end_ms": audio_end_ms,
                        "item_id": item_id,
                    }),
                    item_id,
                    audio_ms: audio_end_ms.saturating_sub(start_ms),
                })
            }
        }
    }

    /// A client `input_audio_buffer.commit`: the item id of the turn (the one
    /// `speech_started` announced, if any) and its length in ms, or the service's error for a
    /// buffer too short (nothing changes then).
    pub(crate) fn commit(&mut self) -> Result<(String, u64), ApiError> {
        let buffered = self.total_bytes - self.buffer_start;
        check_commit(buffered)?;
        self.buffer_start = self.total_bytes;
        if let Some(vad) = &mut self.vad {
            vad.reset();
        }
        let item_id = self
            .speech
            .take()
            .map_or_else(text::item_id, |(item_id, _)| item_id);
        Ok((item_id, buffered / BYTES_PER_MS))
    }

    /// A client `input_audio_buffer.clear`: forgets the buffer and any speech in it; returns
    /// the `input_audio_buffer.cleared` to send.
    pub(crate) fn clear(&mut self) -> Value {
        self.buffer_start = self.total_bytes;
        self.speech = None;
        if let Some(vad) = &mut self.vad {
            vad.reset();
        }
        json!({ "type": "input_audio_buffer.cleared", "event_id": text::event_id() })
    }
}

/// Whether a buffer of `buffered` bytes can be committed: the service's
/// `input_audio_buffer_commit_empty` under [`MIN_COMMIT_MS`] (§1.5).
fn check_commit(buffered: u64) -> Result<(), ApiError> {
    if buffered / BYTES_PER_MS >= MIN_COMMIT_MS {
        return Ok(());
    }
    // Byte counts of a buffer under 100 ms are tiny: exact in f64.
    let ms = buffered as f64 / BYTES_PER_MS as f64;
    Err(ApiError::invalid_request(
        format!(
            "Error committing input audio buffer: buffer too small. Expected at least \
             {MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2}ms of audio."
        ),
        None,
        Some("input_audio_buffer_commit_empty"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_under_100_ms_is_refused_and_changes_nothing() {
        let mut input = InputBuffer::new(&TurnDetection::Manual);
        assert_eq!(
            input.push(&[0; 99 * BYTES_PER_MS as usize]),
            Some(Vec::new())
        );
        let error = input.commit().expect_err("too short");
        assert_eq!(
            error.code.as_deref(),
            Some("input_audio_buffer_commit_empty")
        );
        assert!(error.message.ends_with("buffer only has 99.00ms of audio."));
        assert_eq!(input.push(&[0; BYTES_PER_MS as usize]), Some(Vec::new()));
        let (item_id, audio_ms) = input.commit().expect("100 ms");
        assert!(item_id.starts_with("item_"));
        assert_eq!(audio_ms, 100);
    }

    #[test]
    fn vad_times_use_the_session_clock() {
        assert_eq!(
            crate::vad::ms_to_samples(1000) * BYTES_PER_SAMPLE as u64,
            1000 * BYTES_PER_MS
        );
    }

    #[test]
    fn a_drop_fault_fires_at_its_byte_count() {
        let mut input = InputBuffer::new(&TurnDetection::Manual);
        input.drop_after(100);
        assert!(input.push(&[0; 60]).is_some());
        assert!(input.push(&[0; 40]).is_none());
        assert!(input.push(&[0; 40]).is_some(), "it fires once");
    }
}
