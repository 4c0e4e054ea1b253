//! The messages between the page and its two AudioWorklets (`client/worklet/worklets.js`), as
//! one typed vocabulary.
//!
//! | direction                   | type             |
//! |-----------------------------|------------------|
//! | capture worklet → page      | [`FromCapture`]  |
//! | playback worklet → page     | [`FromPlayback`] |
//! | page → capture worklet      | [`ToCapture`]    |
//! | page → playback worklet     | [`ToPlayback`]   |
//!
//! A message is a plain object `{ type, ...fields }`. Its field names are the [`Key`]s and its
//! string values (the message types, the VAD events, the stop reasons) the [`Word`]s; both hold
//! their JS spelling in exactly one place, [`Key::as_str`] and [`Word::as_str`]. `worklets.js`
//! names the same words in its `MSG` table, which mirrors [`Word`] (a unit test compares them).
//!
//! Each type has one decoder and one encoder, written against a message read or written field
//! by field ([`Fields`], [`FieldsMut`]), so they are plain Rust, compiled and unit-tested
//! natively. In the browser `from_js` and `to_js` run them on JS objects, comparing and setting
//! with JS strings made once per page: reading a message allocates nothing in Rust.
//!
//! Decoding is as lenient as the page always was: a missing number or flag takes its default
//! (level −100 dBFS, not speaking, 0 samples, no response); only an unknown type, an audio
//! message without its `ArrayBuffer` and a `drained` without its response id are errors (the
//! page ignores those messages).
//!
//! The PCM buffers are generic (`B`): `js_sys::ArrayBuffer` in the browser, where the buffer is
//! transferred with its message, bytes in the native tests.

use std::fmt;

use protocol::ResponseId;

use crate::session::{CaptureEvent, PlaybackEvent};

/// The level a `level` message without `dbfs` means, dBFS.
pub const SILENT_DBFS: f64 = -100.0;

/// A field name of a worklet message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `type`: which message it is (a [`Word`]).
    Type,
    /// `via`: how a worklet got its wasm, `module` or `bytes` (`ready`).
    Via,
    /// `sampleRate`: the worklet's rate, Hz (`ready`).
    SampleRate,
    /// `pcm`: an `ArrayBuffer` of PCM16 LE 24 kHz samples (`audio`).
    Pcm,
    /// `event`: `speech_started`, `speech_paused`, `speech_resumed` or `speech_stopped` (`vad`).
    Event,
    /// `reason`: why speech stopped, `silence` or `max_length` (`vad`).
    Reason,
    /// `audioStartMs`: where speech started, ms of capture stream (`vad`).
    AudioStartMs,
    /// `audioEndMs`: where speech stopped, ms of capture stream (`vad`).
    AudioEndMs,
    /// `audioPauseMs`: where a short pause began, ms of capture stream (`vad`).
    AudioPauseMs,
    /// `audioResumeMs`: where speech came back after a pause, ms of capture stream (`vad`).
    AudioResumeMs,
    /// `dbfs`: the input level (`level`).
    Dbfs,
    /// `speaking`: the VAD hears speech (`level`).
    Speaking,
    /// `responseId`: a response, u32 or `null` (playback messages).
    ResponseId,
    /// `playedSamples`: samples of the response played.
    PlayedSamples,
    /// `underruns`: underruns since the worklet started (`progress`).
    Underruns,
    /// `staleDropped`: chunks of cancelled responses dropped (`progress`).
    StaleDropped,
    /// `buffered`: samples queued (`progress`).
    Buffered,
    /// `value`: the echo guard on or off (`assistant_audible`).
    Value,
}

impl Key {
    /// Every key, in declaration order (`Key::ALL[k as usize] == k`).
    pub const ALL: [Key; 18] = [
        Key::Type,
        Key::Via,
        Key::SampleRate,
        Key::Pcm,
        Key::Event,
        Key::Reason,
        Key::AudioStartMs,
        Key::AudioEndMs,
        Key::AudioPauseMs,
        Key::AudioResumeMs,
        Key::Dbfs,
        Key::Speaking,
        Key::ResponseId,
        Key::PlayedSamples,
        Key::Underruns,
        Key::StaleDropped,
        Key::Buffered,
        Key::Value,
    ];

    /// The field's name in JS: the one place the names are spelled.
    pub const fn as_str(self) -> &'static str {
        match self {
            Key::Type => "type",
            Key::Via => "via",
            Key::SampleRate => "sampleRate",
            Key::Pcm => "pcm",
            Key::Event => "event",
            Key::Reason => "reason",
            Key::AudioStartMs => "audioStartMs",
            Key::AudioEndMs => "audioEndMs",
            Key::AudioPauseMs => "audioPauseMs",
            Key::AudioResumeMs => "audioResumeMs",
            Key::Dbfs => "dbfs",
            Key::Speaking => "speaking",
            Key::ResponseId => "responseId",
            Key::PlayedSamples => "playedSamples",
            Key::Underruns => "underruns",
            Key::StaleDropped => "staleDropped",
            Key::Buffered => "buffered",
            Key::Value => "value",
        }
    }

    /// The key named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|key| key.as_str() == name)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string value of a worklet message: the message types, the VAD events, the stop reasons.
/// `worklets.js`'s `MSG` table holds the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Word {
    /// Type `ready`: a worklet instantiated its DSP (both worklets).
    Ready,
    /// Type `audio`: a 20 ms capture frame, or a chunk of an answer for playback.
    Audio,
    /// Type `vad`: a VAD event (capture).
    Vad,
    /// Type `level`: the input level, every ~50 ms (capture).
    Level,
    /// Type `progress`: the playback position, every ~100 ms while anything changes.
    Progress,
    /// Type `drained`: a response (after `end`) has fully played.
    Drained,
    /// Type `cleared`: the answer to `clear`.
    Cleared,
    /// Type `assistant_audible`: the echo guard on or off (to capture).
    AssistantAudible,
    /// Type `end`: all audio of a response was sent (to playback).
    End,
    /// Type `clear`: barge-in, fade out and empty the queue (to playback).
    Clear,
    /// VAD event `speech_started`.
    SpeechStarted,
    /// VAD event `speech_stopped`.
    SpeechStopped,
    /// VAD event `speech_paused`: a short pause inside speech.
    SpeechPaused,
    /// VAD event `speech_resumed`: speech again after a pause.
    SpeechResumed,
    /// Stop reason `silence`: the hangover elapsed.
    Silence,
    /// Stop reason `max_length`: the utterance reached its longest.
    MaxLength,
}

impl Word {
    /// Every word, in declaration order (`Word::ALL[w as usize] == w`).
    pub const ALL: [Word; 16] = [
        Word::Ready,
        Word::Audio,
        Word::Vad,
        Word::Level,
        Word::Progress,
        Word::Drained,
        Word::Cleared,
        Word::AssistantAudible,
        Word::End,
        Word::Clear,
        Word::SpeechStarted,
        Word::SpeechStopped,
        Word::SpeechPaused,
        Word::SpeechResumed,
        Word::Silence,
        Word::MaxLength,
    ];

    /// The word in JS: the one place the words are spelled.
    pub const fn as_str(self) -> &'static str {
        match self {
            Word::Ready => "ready",
            Word::Audio => "audio",
            Word::Vad => "vad",
            Word::Level => "level",
            Word::Progress => "progress",
            Word::Drained => "drained",
            Word::Cleared => "cleared",
            Word::AssistantAudible => "assistant_audible",
            Word::End => "end",
            Word::Clear => "clear",
            Word::SpeechStarted => "speech_started",
            Word::SpeechStopped => "speech_stopped",
            Word::SpeechPaused => "speech_paused",
            Word::SpeechResumed => "speech_resumed",
            Word::Silence => "silence",
            Word::MaxLength => "max_length",
        }
    }

    /// The word spelled `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|word| word.as_str() == text)
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message object read field by field: a JS object in the browser, JSON in the tests.
pub trait Fields {
    /// What a `pcm` field holds.
    type Buffer;
    /// Which of `among` the field holds, if it holds one of them.
    fn word(&self, key: Key, among: &[Word]) -> Option<Word>;
    /// The field as a number, if it is one.
    fn number(&self, key: Key) -> Option<f64>;
    /// The field as a boolean, if it is one.
    fn boolean(&self, key: Key) -> Option<bool>;
    /// The field as text, if it is a string.
    fn text(&self, key: Key) -> Option<String>;
    /// The field as a buffer, if it is one.
    fn buffer(&self, key: Key) -> Option<Self::Buffer>;
}

/// A message object written field by field.
pub trait FieldsMut {
    /// What a `pcm` field holds.
    type Buffer;
    /// Sets a string field to a word.
    fn set_word(&mut self, key: Key, word: Word);
    /// Sets a number field.
    fn set_number(&mut self, key: Key, value: f64);
    /// Sets a boolean field.
    fn set_boolean(&mut self, key: Key, value: bool);
    /// Sets a string field.
    fn set_text(&mut self, key: Key, value: &str);
    /// Sets a field to `null`.
    fn set_null(&mut self, key: Key);
    /// Sets a buffer field (the buffer itself, not a copy).
    fn set_buffer(&mut self, key: Key, buffer: &Self::Buffer);
}

/// Why a worklet message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `type`, or one the receiver does not know.
    #[error("a worklet message of no known type")]
    UnknownType,
    /// A field the message cannot do without is missing or of the wrong kind.
    #[error("a worklet `{kind}` message without a usable `{key}`")]
    Missing {
        /// The message type.
        kind: Word,
        /// The field.
        key: Key,
    },
}

/// A `ready` message: a worklet instantiated its DSP.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ready {
    /// How it got its wasm: `module` or `bytes`.
    pub via: Option<String>,
    /// Its sample rate, Hz.
    pub sample_rate: Option<f64>,
}

impl Ready {
    fn decode<F: Fields + ?Sized>(message: &F) -> Self {
        Self {
            via: message.text(Key::Via),
            sample_rate: message.number(Key::SampleRate),
        }
    }

    fn encode<F: FieldsMut + ?Sized>(&self, message: &mut F) {
        message.set_word(Key::Type, Word::Ready);
        if let Some(via) = &self.via {
            message.set_text(Key::Via, via);
        }
        if let Some(rate) = self.sample_rate {
            message.set_number(Key::SampleRate, rate);
        }
    }
}

/// Why the capture worklet's VAD ended an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The hangover of silence elapsed.
    Silence,
    /// The utterance reached its longest.
    MaxLength,
}

impl StopReason {
    const WORDS: [Word; 2] = [Word::Silence, Word::MaxLength];

    /// The reason's word.
    pub const fn word(self) -> Word {
        match self {
            StopReason::Silence => Word::Silence,
            StopReason::MaxLength => Word::MaxLength,
        }
    }

    fn from_word(word: Word) -> Option<Self> {
        match word {
            Word::Silence => Some(StopReason::Silence),
            Word::MaxLength => Some(StopReason::MaxLength),
            _ => None,
        }
    }
}

/// A VAD event of the capture worklet. Times are ms of capture stream since the node started
/// (NaN when the message has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vad {
    /// `speech_started`: the pre-roll and the speech frames follow.
    SpeechStarted {
        /// Where speech started.
        audio_start_ms: f64,
    },
    /// `speech_paused`: a short pause inside speech; the frames go on.
    SpeechPaused {
        /// Where the pause began.
        audio_pause_ms: f64,
    },
    /// `speech_resumed`: speech again after a pause, in the same turn.
    SpeechResumed {
        /// Where speech came back.
        audio_resume_ms: f64,
    },
    /// `speech_stopped` (any `event` the page does not know).
    SpeechStopped {
        /// Why.
        reason: Option<StopReason>,
        /// Where speech stopped.
        audio_end_ms: f64,
    },
}

impl Vad {
    /// The event for the session.
    pub fn event(&self) -> CaptureEvent {
        match self {
            Vad::SpeechStarted { .. } => CaptureEvent::SpeechStarted,
            Vad::SpeechPaused { .. } => CaptureEvent::SpeechPaused,
            Vad::SpeechResumed { .. } => CaptureEvent::SpeechResumed,
            Vad::SpeechStopped { .. } => CaptureEvent::SpeechStopped,
        }
    }

    /// The event's name (`speech_started`, `speech_paused`, `speech_resumed`, `speech_stopped`).
    pub fn name(&self) -> &'static str {
        self.word().as_str()
    }

    /// When it happened, ms of capture stream.
    pub fn audio_ms(&self) -> f64 {
        match *self {
            Vad::SpeechStarted { audio_start_ms } => audio_start_ms,
            Vad::SpeechPaused { audio_pause_ms } => audio_pause_ms,
            Vad::SpeechResumed { audio_resume_ms } => audio_resume_ms,
            Vad::SpeechStopped { audio_end_ms, .. } => audio_end_ms,
        }
    }

    fn word(&self) -> Word {
        match self {
            Vad::SpeechStarted { .. } => Word::SpeechStarted,
            Vad::SpeechPaused { .. } => Word::SpeechPaused,
            Vad::SpeechResumed { .. } => Word::SpeechResumed,
            Vad::SpeechStopped { .. } => Word::SpeechStopped,
        }
    }

    /// The events other than a stop, which is what any other `event` means.
    const NOT_STOPS: [Word; 3] = [Word::SpeechStarted, Word::SpeechPaused, Word::SpeechResumed];

    fn decode<F: Fields + ?Sized>(message: &F) -> Self {
        let time = |key| message.number(key).unwrap_or(f64::NAN);
        match message.word(Key::Event, &Self::NOT_STOPS) {
            Some(Word::SpeechStarted) => Vad::SpeechStarted {
                audio_start_ms: time(Key::AudioStartMs),
            },
            Some(Word::SpeechPaused) => Vad::SpeechPaused {
                audio_pause_ms: time(Key::AudioPauseMs),
            },
            Some(Word::SpeechResumed) => Vad::SpeechResumed {
                audio_resume_ms: time(Key::AudioResumeMs),
            },
            _ => Vad::SpeechStopped {
                reason: message
                    .word(Key::Reason, &StopReason::WORDS)
                    .and_then(StopReason::from_word),
                audio_end_ms: time(Key::AudioEndMs),
            },
        }
    }

    fn encode<F: FieldsMut + ?Sized>(&self, message: &mut F) {
        message.set_word(Key::Type, Word::Vad);
        message.set_word(Key::Event, self.word());
        match *self {
            Vad::SpeechStarted { audio_start_ms } => {
                message.set_number(Key::AudioStartMs, audio_start_ms);
            }
            Vad::SpeechPaused { audio_pause_ms } => {
                message.set_number(Key::AudioPauseMs, audio_pause_ms);
            }
            Vad::SpeechResumed { audio_resume_ms } => {
                message.set_number(Key::AudioResumeMs, audio_resume_ms);
            }
            Vad::SpeechStopped {
                reason,
                audio_end_ms,
            } => {
                if let Some(reason) = reason {
                    message.set_word(Key::Reason, reason.word());
                }
                message.set_number(Key::AudioEndMs, audio_end_ms);
            }
        }
    }
}

/// What the capture worklet posts.
#[derive(Debug, Clone, PartialEq)]
pub enum FromCapture<B> {
    /// `{ type: 'ready', via, sampleRate }`.
    Ready(Ready),
    /// `{ type: 'audio', pcm }`: one 20 ms frame, 480 samples, its buffer transferred.
    Audio {
        /// The frame.
        pcm: B,
    },
    /// `{ type: 'vad', event, reason?, audioStartMs | audioPauseMs | audioResumeMs | audioEndMs }`.
    Vad(Vad),
    /// `{ type: 'level', dbfs, speaking }`, every ~50 ms.
    Level {
        /// Input level, dBFS.
        dbfs: f64,
        /// The VAD hears speech.
        speaking: bool,
    },
}

impl<B> FromCapture<B> {
    /// The types, most frequent first (the order they are tried in).
    const TYPES: [Word; 4] = [Word::Audio, Word::Level, Word::Vad, Word::Ready];

    /// Reads a message.
    pub fn decode<F: Fields<Buffer = B> + ?Sized>(message: &F) -> Result<Self, DecodeError> {
        match message.word(Key::Type, &Self::TYPES) {
            Some(Word::Audio) => message
                .buffer(Key::Pcm)
                .map(|pcm| FromCapture::Audio { pcm })
                .ok_or(DecodeError::Missing {
                    kind: Word::Audio,
                    key: Key::Pcm,
                }),
            Some(Word::Level) => Ok(FromCapture::Level {
                dbfs: message.number(Key::Dbfs).unwrap_or(SILENT_DBFS),
                speaking: message.boolean(Key::Speaking).unwrap_or(false),
            }),
            Some(Word::Vad) => Ok(FromCapture::Vad(Vad::decode(message))),
            Some(Word::Ready) => Ok(FromCapture::Ready(Ready::decode(message))),
            _ => Err(DecodeError::UnknownType),
        }
    }

    /// Writes the message.
    pub fn encode<F: FieldsMut<Buffer = B> + ?Sized>(&self, message: &mut F) {
        match self {
            FromCapture::Ready(ready) => ready.encode(message),
            FromCapture::Audio { pcm } => {
                message.set_word(Key::Type, Word::Audio);
                message.set_buffer(Key::Pcm, pcm);
            }
            FromCapture::Vad(vad) => vad.encode(message),
            FromCapture::Level { dbfs, speaking } => {
                message.set_word(Key::Type, Word::Level);
                message.set_number(Key::Dbfs, *dbfs);
                message.set_boolean(Key::Speaking, *speaking);
            }
        }
    }
}

/// What the playback worklet posts. Sample counts are 24 kHz samples.
#[derive(Debug, Clone, PartialEq)]
pub enum FromPlayback {
    /// `{ type: 'ready', via, sampleRate }`.
    Ready(Ready),
    /// `{ type: 'progress', responseId, playedSamples, underruns, staleDropped, buffered }`.
    Progress {
        /// The response playing now or last, if any.
        response_id: Option<ResponseId>,
        /// Samples of it played so far.
        played_samples: u64,
        /// Underruns since the worklet started.
        underruns: u64,
        /// Chunks of cancelled responses dropped.
        stale_dropped: u64,
        /// Samples queued.
        buffered: u64,
    },
    /// `{ type: 'drained', responseId, playedSamples }`: a response (after `end`) has fully
    /// played.
    Drained {
        /// The response.
        response_id: ResponseId,
        /// All of its samples played.
        played_samples: u64,
    },
    /// `{ type: 'cleared', responseId, playedSamples }`: the answer to `clear`.
    Cleared {
        /// The response that was current when the queue was cleared, if any.
        response_id: Option<ResponseId>,
        /// Samples of it played before the fade.
        played_samples: u64,
    },
}

impl FromPlayback {
    /// The types, most frequent first (the order they are tried in).
    const TYPES: [Word; 4] = [Word::Progress, Word::Drained, Word::Cleared, Word::Ready];

    /// The report for the session (`None` for `ready`).
    pub fn event(&self) -> Option<PlaybackEvent> {
        match *self {
            FromPlayback::Ready(_) => None,
            FromPlayback::Progress {
                response_id,
                played_samples,
                underruns,
                stale_dropped,
                buffered: _,
            } => Some(PlaybackEvent::Progress {
                response_id,
                played_samples,
                underruns,
                stale_dropped,
            }),
            FromPlayback::Drained {
                response_id,
                played_samples,
            } => Some(PlaybackEvent::Drained {
                response_id,
                played_samples,
            }),
            FromPlayback::Cleared {
                response_id,
                played_samples,
            } => Some(PlaybackEvent::Cleared {
                response_id,
                played_samples,
            }),
        }
    }

    /// Reads a message.
    pub fn decode<F: Fields + ?Sized>(message: &F) -> Result<Self, DecodeError> {
        match message.word(Key::Type, &Self::TYPES) {
            Some(Word::Progress) => Ok(FromPlayback::Progress {
                response_id: response_id(message),
                played_samples: count(message, Key::PlayedSamples),
                underruns: count(message, Key::Underruns),
                stale_dropped: count(message, Key::StaleDropped),
                buffered: count(message, Key::Buffered),
            }),
            Some(Word::Drained) => Ok(FromPlayback::Drained {
                response_id: response_id(message).ok_or(DecodeError::Missing {
                    kind: Word::Drained,
                    key: Key::ResponseId,
                })?,
                played_samples: count(message, Key::PlayedSamples),
            }),
            Some(Word::Cleared) => Ok(FromPlayback::Cleared {
                response_id: response_id(message),
                played_samples: count(message, Key::PlayedSamples),
            }),
            Some(Word::Ready) => Ok(FromPlayback::Ready(Ready::decode(message))),
            _ => Err(DecodeError::UnknownType),
        }
    }

    /// Writes the message.
    pub fn encode<F: FieldsMut + ?Sized>(&self, message: &mut F) {
        match *self {
            FromPlayback::Ready(ref ready) => ready.encode(message),
            FromPlayback::Progress {
                response_id,
                played_samples,
                underruns,
                stale_dropped,
                buffered,
            } => {
                message.set_word(Key::Type, Word::Progress);
                set_response_id(message, response_id);
                message.set_number(Key::PlayedSamples, played_samples as f64);
                message.set_number(Key::Underruns, underruns as f64);
                message.set_number(Key::StaleDropped, stale_dropped as f64);
                message.set_number(Key::Buffered, buffered as f64);
            }
            FromPlayback::Drained {
                response_id,
                played_samples,
            } => {
                message.set_word(Key::Type, Word::Drained);
                set_response_id(message, Some(response_id));
                message.set_number(Key::PlayedSamples, played_samples as f64);
            }
            FromPlayback::Cleared {
                response_id,
                played_samples,
            } => {
                message.set_word(Key::Type, Word::Cleared);
                set_response_id(message, response_id);
                message.set_number(Key::PlayedSamples, played_samples as f64);
            }
        }
    }
}

/// What the page posts to the capture worklet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToCapture {
    /// `{ type: 'assistant_audible', value }`: the echo guard on or off (raises the VAD
    /// threshold while the answer plays).
    AssistantAudible(bool),
}

impl ToCapture {
    const TYPES: [Word; 1] = [Word::AssistantAudible];

    /// Reads a message.
    pub fn decode<F: Fields + ?Sized>(message: &F) -> Result<Self, DecodeError> {
        match message.word(Key::Type, &Self::TYPES) {
            Some(Word::AssistantAudible) => Ok(ToCapture::AssistantAudible(
                message.boolean(Key::Value).unwrap_or(false),
            )),
            _ => Err(DecodeError::UnknownType),
        }
    }

    /// Writes the message.
    pub fn encode<F: FieldsMut + ?Sized>(&self, message: &mut F) {
        match *self {
            ToCapture::AssistantAudible(audible) => {
                message.set_word(Key::Type, Word::AssistantAudible);
                message.set_boolean(Key::Value, audible);
            }
        }
    }
}

/// What the page posts to the playback worklet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToPlayback<B> {
    /// `{ type: 'audio', responseId, pcm }`: PCM16 LE 24 kHz; transfer the buffer
    /// ([`ToPlayback::into_transfer`]).
    Audio {
        /// The response the chunk belongs to.
        response_id: ResponseId,
        /// The chunk.
        pcm: B,
    },
    /// `{ type: 'end', responseId }`: all audio of the response was sent.
    End(ResponseId),
    /// `{ type: 'clear', responseId? }`: barge-in; the id also cancels a response that has sent
    /// no audio yet.
    Clear(Option<ResponseId>),
}

impl<B> ToPlayback<B> {
    const TYPES: [Word; 3] = [Word::Audio, Word::End, Word::Clear];

    /// The buffer to transfer with the message, if it carries one.
    pub fn into_transfer(self) -> Option<B> {
        match self {
            ToPlayback::Audio { pcm, .. } => Some(pcm),
            ToPlayback::End(_) | ToPlayback::Clear(_) => None,
        }
    }

    /// Reads a message.
    pub fn decode<F: Fields<Buffer = B> + ?Sized>(message: &F) -> Result<Self, DecodeError> {
        let required = |kind: Word, key: Key| DecodeError::Missing { kind, key };
        match message.word(Key::Type, &Self::TYPES) {
            Some(Word::Audio) => Ok(ToPlayback::Audio {
                response_id: response_id(message).ok_or(required(Word::Audio, Key::ResponseId))?,
                pcm: message
                    .buffer(Key::Pcm)
                    .ok_or(required(Word::Audio, Key::Pcm))?,
            }),
            Some(Word::End) => Ok(ToPlayback::End(
                response_id(message).ok_or(required(Word::End, Key::ResponseId))?,
            )),
            Some(Word::Clear) => Ok(ToPlayback::Clear(response_id(message))),
            _ => Err(DecodeError::UnknownType),
        }
    }

    /// Writes the message (a `clear` without a response leaves `responseId` out).
    pub fn encode<F: FieldsMut<Buffer = B> + ?Sized>(&self, message: &mut F) {
        match self {
            ToPlayback::Audio { response_id, pcm } => {
                message.set_word(Key::Type, Word::Audio);
                set_response_id(message, Some(*response_id));
                message.set_buffer(Key::Pcm, pcm);
            }
            ToPlayback::End(response_id) => {
                message.set_word(Key::Type, Word::End);
                set_response_id(message, Some(*response_id));
            }
            ToPlayback::Clear(response_id) => {
                message.set_word(Key::Type, Word::Clear);
                if let Some(response_id) = response_id {
                    set_response_id(message, Some(*response_id));
                }
            }
        }
    }
}

/// A numeric field as a count (0 when missing).
fn count<F: Fields + ?Sized>(message: &F, key: Key) -> u64 {
    message.number(key).map_or(0, |value| value.max(0.0) as u64)
}

/// The `responseId` field (`null` or missing → `None`).
fn response_id<F: Fields + ?Sized>(message: &F) -> Option<ResponseId> {
    message
        .number(Key::ResponseId)
        .map(|value| ResponseId(value as u32))
}

/// Sets `responseId` (`None` → `null`).
fn set_response_id<F: FieldsMut + ?Sized>(message: &mut F, response_id: Option<ResponseId>) {
    match response_id {
        Some(response_id) => message.set_number(Key::ResponseId, f64::from(response_id.0)),
        None => message.set_null(Key::ResponseId),
    }
}

/// The vocabulary on JS objects: `from_js` and `to_js`.
#[cfg(target_arch = "wasm32")]
mod js {
    use js_sys::{ArrayBuffer, Object, Reflect};
    use wasm_bindgen::{JsCast, JsValue};

    use super::{
        DecodeError, Fields, FieldsMut, FromCapture, FromPlayback, Key, ToCapture, ToPlayback, Word,
    };

    /// The keys and words as JS strings, indexed by discriminant.
    struct Strings {
        keys: [JsValue; Key::ALL.len()],
        words: [JsValue; Word::ALL.len()],
    }

    thread_local! {
        /// Made once per page (worklet messages arrive on the main thread).
        static STRINGS: Strings = Strings {
            keys: Key::ALL.map(|key| JsValue::from_str(key.as_str())),
            words: Word::ALL.map(|word| JsValue::from_str(word.as_str())),
        };
    }

    /// A JS message object, read and written with the strings of [`STRINGS`].
    struct JsMessage<'a> {
        object: &'a JsValue,
        strings: &'a Strings,
    }

    impl JsMessage<'_> {
        fn get(&self, key: Key) -> JsValue {
            Reflect::get(self.object, &self.strings.keys[key as usize])
                .unwrap_or(JsValue::UNDEFINED)
        }

        fn set(&self, key: Key, value: &JsValue) {
            let _ = Reflect::set(self.object, &self.strings.keys[key as usize], value);
        }
    }

    impl Fields for JsMessage<'_> {
        type Buffer = ArrayBuffer;

        fn word(&self, key: Key, among: &[Word]) -> Option<Word> {
            let value = self.get(key);
            among
                .iter()
                .copied()
                .find(|word| value == self.strings.words[*word as usize])
        }

        fn number(&self, key: Key) -> Option<f64> {
            self.get(key).as_f64()
        }

        fn boolean(&self, key: Key) -> Option<bool> {
            self.get(key).as_bool()
        }

        fn text(&self, key: Key) -> Option<String> {
            self.get(key).as_string()
        }

        fn buffer(&self, key: Key) -> Option<ArrayBuffer> {
            self.get(key).dyn_into::<ArrayBuffer>().ok()
        }
    }

    impl FieldsMut for JsMessage<'_> {
        type Buffer = ArrayBuffer;

        fn set_word(&mut self, key: Key, word: Word) {
            self.set(key, &self.strings.words[word as usize]);
        }

        fn set_number(&mut self, key: Key, value: f64) {
            self.set(key, &JsValue::from_f64(value));
        }

        fn set_boolean(&mut self, key: Key, value: bool) {
            self.set(key, &JsValue::from_bool(value));
        }

        fn set_text(&mut self, key: Key, value: &str) {
            self.set(key, &JsValue::from_str(value));
        }

        fn set_null(&mut self, key: Key) {
            self.set(key, &JsValue::NULL);
        }

        fn set_buffer(&mut self, key: Key, buffer: &ArrayBuffer) {
            self.set(key, buffer);
        }
    }

    /// Runs `f` on `object` as a message.
    fn with_message<R>(object: &JsValue, f: impl FnOnce(&mut JsMessage<'_>) -> R) -> R {
        STRINGS.with(|strings| f(&mut JsMessage { object, strings }))
    }

    /// A fresh object with the message written into it.
    fn new_message(write: impl FnOnce(&mut JsMessage<'_>)) -> JsValue {
        let object = JsValue::from(Object::new());
        with_message(&object, write);
        object
    }

    impl FromCapture<ArrayBuffer> {
        /// Reads a message the capture worklet posted (`MessageEvent.data`).
        pub fn from_js(data: &JsValue) -> Result<Self, DecodeError> {
            with_message(data, |message| Self::decode(message))
        }

        /// The message as a JS object (the buffer itself, not a copy).
        pub fn to_js(&self) -> JsValue {
            new_message(|message| self.encode(message))
        }
    }

    impl FromPlayback {
        /// Reads a message the playback worklet posted (`MessageEvent.data`).
        pub fn from_js(data: &JsValue) -> Result<Self, DecodeError> {
            with_message(data, |message| Self::decode(message))
        }

        /// The message as a JS object.
        pub fn to_js(&self) -> JsValue {
            new_message(|message| self.encode(message))
        }
    }

    impl ToCapture {
        /// Reads a message for the capture worklet.
        pub fn from_js(data: &JsValue) -> Result<Self, DecodeError> {
            with_message(data, |message| Self::decode(message))
        }

        /// The message as a JS object, to post to the capture worklet.
        pub fn to_js(&self) -> JsValue {
            new_message(|message| self.encode(message))
        }
    }

    impl ToPlayback<ArrayBuffer> {
        /// Reads a message for the playback worklet.
        pub fn from_js(data: &JsValue) -> Result<Self, DecodeError> {
            with_message(data, |message| Self::decode(message))
        }

        /// The message as a JS object, to post to the playback worklet (transfer an `audio`
        /// chunk's buffer).
        pub fn to_js(&self) -> JsValue {
            new_message(|message| self.encode(message))
        }

        /// Writes the message into `target`, an object reused for every chunk so the audio
        /// path makes no message object per chunk.
        pub fn write_js(&self, target: &Object) {
            with_message(target, |message| self.encode(message));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Map, Value, json};

    use super::*;

    /// A message as JSON, as `worklets.js` would post it (buffers as arrays of bytes).
    #[derive(Debug, Default)]
    struct Json(Map<String, Value>);

    fn message(value: Value) -> Json {
        match value {
            Value::Object(fields) => Json(fields),
            other => panic!("not an object: {other}"),
        }
    }

    impl Fields for Json {
        type Buffer = Vec<u8>;

        fn word(&self, key: Key, among: &[Word]) -> Option<Word> {
            let text = self.0.get(key.as_str())?.as_str()?;
            among.iter().copied().find(|word| word.as_str() == text)
        }

        fn number(&self, key: Key) -> Option<f64> {
            self.0.get(key.as_str())?.as_f64()
        }

        fn boolean(&self, key: Key) -> Option<bool> {
            self.0.get(key.as_str())?.as_bool()
        }

        fn text(&self, key: Key) -> Option<String> {
            Some(self.0.get(key.as_str())?.as_str()?.to_owned())
        }

        fn buffer(&self, key: Key) -> Option<Vec<u8>> {
            self.0
                .get(key.as_str())?
                .as_array()?
                .iter()
                .map(|byte| byte.as_u64().and_then(|byte| u8::try_from(byte).ok()))
                .collect()
        }
    }

    impl FieldsMut for Json {
        type Buffer = Vec<u8>;

        fn set_word(&mut self, key: Key, word: Word) {
            self.0.insert(key.as_str().into(), word.as_str().into());
        }

        fn set_number(&mut self, key: Key, value: f64) {
            // JS has one kind of number: write whole ones as JSON integers, as JSON.stringify does.
            let number = if value.fract() == 0.0 && value.abs() < 2f64.powi(53) {
                Value::from(value as i64)
            } else {
                Value::from(value)
            };
            self.0.insert(key.as_str().into(), number);
        }

        fn set_boolean(&mut self, key: Key, value: bool) {
            self.0.insert(key.as_str().into(), value.into());
        }

        fn set_text(&mut self, key: Key, value: &str) {
            self.0.insert(key.as_str().into(), value.into());
        }

        fn set_null(&mut self, key: Key) {
            self.0.insert(key.as_str().into(), Value::Null);
        }

        fn set_buffer(&mut self, key: Key, buffer: &Vec<u8>) {
            self.0.insert(key.as_str().into(), buffer.clone().into());
        }
    }

    fn encoded(encode: impl FnOnce(&mut Json)) -> Value {
        let mut message = Json::default();
        encode(&mut message);
        Value::Object(message.0)
    }

    /// `worklets.js` without its comment lines.
    fn worklets_js_code() -> String {
        include_str!("../worklet/worklets.js")
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `NAME: 'value'` entries of `worklets.js`'s `MSG` table.
    fn msg_table() -> Vec<(String, String)> {
        let code = worklets_js_code();
        let start = code
            .find("const MSG = Object.freeze({")
            .expect("worklets.js has a MSG table");
        let body = &code[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("})").unwrap()];
        body.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (name, value) = entry.split_once(':').expect("NAME: 'value'");
                let value = value.trim().trim_matches('\'');
                (name.trim().to_owned(), value.to_owned())
            })
            .collect()
    }

    #[test]
    fn keys_and_words_are_listed_in_order_and_spelled_once() {
        for (index, key) in Key::ALL.into_iter().enumerate() {
            assert_eq!(key as usize, index);
            assert_eq!(Key::parse(key.as_str()), Some(key));
        }
        for (index, word) in Word::ALL.into_iter().enumerate() {
            assert_eq!(word as usize, index);
            assert_eq!(Word::parse(word.as_str()), Some(word));
        }
        let keys: BTreeSet<_> = Key::ALL.iter().map(|key| key.as_str()).collect();
        let words: BTreeSet<_> = Word::ALL.iter().map(|word| word.as_str()).collect();
        assert_eq!(keys.len(), Key::ALL.len());
        assert_eq!(words.len(), Word::ALL.len());
        assert_eq!(Key::parse("responseid"), None);
        assert_eq!(Word::parse("READY"), None);
    }

    #[test]
    fn the_worklets_msg_table_mirrors_the_words() {
        let table = msg_table();
        let values: BTreeSet<&str> = table.iter().map(|(_, value)| value.as_str()).collect();
        let words: BTreeSet<&str> = Word::ALL.iter().map(|word| word.as_str()).collect();
        assert_eq!(values, words);
        assert_eq!(table.len(), Word::ALL.len(), "each word once");
        for (name, value) in &table {
            assert_eq!(name, &value.to_uppercase(), "MSG.{name}");
        }
        // Outside the table the code names the words only through it.
        let code = worklets_js_code();
        for word in Word::ALL {
            for quoted in [format!("'{word}'"), format!("\"{word}\"")] {
                let uses = code.matches(&quoted).count();
                assert!(uses <= 1, "worklets.js spells {quoted} {uses} times");
            }
        }
    }

    #[test]
    fn the_worklets_use_the_keys() {
        let code = worklets_js_code();
        for key in Key::ALL {
            assert!(
                code.contains(key.as_str()),
                "worklets.js never uses `{key}`"
            );
        }
    }

    #[test]
    fn capture_messages_decode_as_the_worklet_posts_them() {
        let decode = |value: Value| {
            FromCapture::<Vec<u8>>::decode(&message(value)).map_err(|e| e.to_string())
        };
        assert_eq!(
            decode(json!({ "type": "ready", "via": "module", "sampleRate": 48_000 })),
            Ok(FromCapture::Ready(Ready {
                via: Some("module".into()),
                sample_rate: Some(48_000.0),
            }))
        );
        assert_eq!(
            decode(json!({ "type": "audio", "pcm": [1, 2, 3, 4] })),
            Ok(FromCapture::Audio {
                pcm: vec![1, 2, 3, 4]
            })
        );
        assert_eq!(
            decode(json!({ "type": "vad", "event": "speech_started", "audioStartMs": 1_000 })),
            Ok(FromCapture::Vad(Vad::SpeechStarted {
                audio_start_ms: 1_000.0
            }))
        );
        assert_eq!(
            decode(json!({ "type": "vad", "event": "speech_paused", "audioPauseMs": 1_800 })),
            Ok(FromCapture::Vad(Vad::SpeechPaused {
                audio_pause_ms: 1_800.0
            }))
        );
        assert_eq!(
            decode(json!({ "type": "vad", "event": "speech_resumed", "audioResumeMs": 2_100 })),
            Ok(FromCapture::Vad(Vad::SpeechResumed {
                audio_resume_ms: 2_100.0
            }))
        );
        assert_eq!(
            decode(json!({
                "type": "vad", "event": "speech_stopped", "reason": "max_length", "audioEndMs": 2_500
            })),
            Ok(FromCapture::Vad(Vad::SpeechStopped {
                reason: Some(StopReason::MaxLength),
                audio_end_ms: 2_500.0
            }))
        );
        assert_eq!(
            decode(json!({ "type": "level", "dbfs": -23.5, "speaking": true })),
            Ok(FromCapture::Level {
                dbfs: -23.5,
                speaking: true
            })
        );
    }

    #[test]
    fn capture_messages_are_read_as_leniently_as_ever() {
        let decode = |value: Value| FromCapture::<Vec<u8>>::decode(&message(value));
        assert_eq!(
            decode(json!({ "type": "level" })),
            Ok(FromCapture::Level {
                dbfs: SILENT_DBFS,
                speaking: false
            })
        );
        // An event the page does not know is a stop; a missing time is NaN.
        let Ok(FromCapture::Vad(vad)) = decode(json!({ "type": "vad", "event": "other" })) else {
            panic!("a vad message");
        };
        assert_eq!(vad.event(), CaptureEvent::SpeechStopped);
        assert_eq!(vad.name(), "speech_stopped");
        assert!(vad.audio_ms().is_nan());
        let Ok(FromCapture::Vad(pause)) =
            decode(json!({ "type": "vad", "event": "speech_paused" }))
        else {
            panic!("a vad message");
        };
        assert_eq!(pause.event(), CaptureEvent::SpeechPaused);
        assert!(pause.audio_ms().is_nan());
        assert_eq!(
            decode(json!({ "type": "ready" })),
            Ok(FromCapture::Ready(Ready::default()))
        );
        assert_eq!(
            decode(json!({ "type": "audio", "pcm": "not a buffer" })),
            Err(DecodeError::Missing {
                kind: Word::Audio,
                key: Key::Pcm
            })
        );
        assert_eq!(
            decode(json!({ "type": "drained" })),
            Err(DecodeError::UnknownType)
        );
        assert_eq!(decode(json!({})), Err(DecodeError::UnknownType));
        assert_eq!(decode(json!({ "type": 3 })), Err(DecodeError::UnknownType));
    }

    #[test]
    fn playback_messages_decode_as_the_worklet_posts_them() {
        let decode = |value: Value| FromPlayback::decode(&message(value));
        assert_eq!(
            decode(json!({
                "type": "progress", "responseId": 7, "playedSamples": 9_600,
                "underruns": 1, "staleDropped": 2, "buffered": 480,
            })),
            Ok(FromPlayback::Progress {
                response_id: Some(protocol::ResponseId(7)),
                played_samples: 9_600,
                underruns: 1,
                stale_dropped: 2,
                buffered: 480,
            })
        );
        assert_eq!(
            decode(json!({
                "type": "progress", "responseId": null, "playedSamples": 0,
                "underruns": 0, "staleDropped": 0, "buffered": 0,
            })),
            Ok(FromPlayback::Progress {
                response_id: None,
                played_samples: 0,
                underruns: 0,
                stale_dropped: 0,
                buffered: 0,
            })
        );
        assert_eq!(
            decode(json!({ "type": "drained", "responseId": 7, "playedSamples": 9_600 })),
            Ok(FromPlayback::Drained {
                response_id: protocol::ResponseId(7),
                played_samples: 9_600
            })
        );
        assert_eq!(
            decode(json!({ "type": "cleared", "responseId": null, "playedSamples": 0 })),
            Ok(FromPlayback::Cleared {
                response_id: None,
                played_samples: 0
            })
        );
        assert_eq!(
            decode(json!({ "type": "ready", "via": "bytes", "sampleRate": 44_100 })),
            Ok(FromPlayback::Ready(Ready {
                via: Some("bytes".into()),
                sample_rate: Some(44_100.0),
            }))
        );
        // Missing or negative counts are 0; a drained response needs its id.
        assert_eq!(
            decode(json!({ "type": "cleared", "responseId": 3, "playedSamples": -5 })),
            Ok(FromPlayback::Cleared {
                response_id: Some(protocol::ResponseId(3)),
                played_samples: 0
            })
        );
        assert_eq!(
            decode(json!({ "type": "drained", "responseId": null, "playedSamples": 1 })),
            Err(DecodeError::Missing {
                kind: Word::Drained,
                key: Key::ResponseId
            })
        );
        assert_eq!(
            decode(json!({ "type": "audio" })),
            Err(DecodeError::UnknownType)
        );
    }

    #[test]
    fn playback_messages_become_the_sessions_reports() {
        assert_eq!(FromPlayback::Ready(Ready::default()).event(), None);
        assert_eq!(
            FromPlayback::Progress {
                response_id: Some(protocol::ResponseId(2)),
                played_samples: 10,
                underruns: 1,
                stale_dropped: 3,
                buffered: 99,
            }
            .event(),
            Some(PlaybackEvent::Progress {
                response_id: Some(protocol::ResponseId(2)),
                played_samples: 10,
                underruns: 1,
                stale_dropped: 3,
            })
        );
        assert_eq!(
            FromPlayback::Drained {
                response_id: protocol::ResponseId(2),
                played_samples: 10
            }
            .event(),
            Some(PlaybackEvent::Drained {
                response_id: protocol::ResponseId(2),
                played_samples: 10
            })
        );
        assert_eq!(
            FromPlayback::Cleared {
                response_id: None,
                played_samples: 4
            }
            .event(),
            Some(PlaybackEvent::Cleared {
                response_id: None,
                played_samples: 4
            })
        );
        let started = Vad::SpeechStarted {
            audio_start_ms: 5.0,
        };
        assert_eq!(started.event(), CaptureEvent::SpeechStarted);
        assert_eq!(started.name(), "speech_started");
        assert_eq!(started.audio_ms(), 5.0);
        let paused = Vad::SpeechPaused {
            audio_pause_ms: 7.0,
        };
        assert_eq!(paused.event(), CaptureEvent::SpeechPaused);
        assert_eq!(paused.name(), "speech_paused");
        assert_eq!(paused.audio_ms(), 7.0);
        let resumed = Vad::SpeechResumed {
            audio_resume_ms: 9.0,
        };
        assert_eq!(resumed.event(), CaptureEvent::SpeechResumed);
        assert_eq!(resumed.name(), "speech_resumed");
        assert_eq!(resumed.audio_ms(), 9.0);
    }

    #[test]
    fn commands_encode_as_the_worklets_read_them() {
        assert_eq!(
            encoded(|m| ToCapture::AssistantAudible(true).encode(m)),
            json!({ "type": "assistant_audible", "value": true })
        );
        assert_eq!(
            encoded(|m| ToPlayback::Audio {
                response_id: protocol::ResponseId(4),
                pcm: vec![0, 1]
            }
            .encode(m)),
            json!({ "type": "audio", "responseId": 4, "pcm": [0, 1] })
        );
        assert_eq!(
            encoded(|m| ToPlayback::<Vec<u8>>::End(protocol::ResponseId(4)).encode(m)),
            json!({ "type": "end", "responseId": 4 })
        );
        assert_eq!(
            encoded(|m| ToPlayback::<Vec<u8>>::Clear(Some(protocol::ResponseId(4))).encode(m)),
            json!({ "type": "clear", "responseId": 4 })
        );
        assert_eq!(
            encoded(|m| ToPlayback::<Vec<u8>>::Clear(None).encode(m)),
            json!({ "type": "clear" })
        );
        let chunk = ToPlayback::Audio {
            response_id: protocol::ResponseId(1),
            pcm: vec![9],
        };
        assert_eq!(chunk.into_transfer(), Some(vec![9]));
        assert_eq!(
            ToPlayback::<Vec<u8>>::End(protocol::ResponseId(1)).into_transfer(),
            None
        );
    }

    #[test]
    fn every_message_survives_a_round_trip() {
        let from_capture = [
            FromCapture::Ready(Ready {
                via: Some("module".into()),
                sample_rate: Some(48_000.0),
            }),
            FromCapture::Ready(Ready::default()),
            FromCapture::Audio { pcm: vec![1, 2] },
            FromCapture::Vad(Vad::SpeechStarted {
                audio_start_ms: 20.0,
            }),
            FromCapture::Vad(Vad::SpeechPaused {
                audio_pause_ms: 30.0,
            }),
            FromCapture::Vad(Vad::SpeechResumed {
                audio_resume_ms: 35.0,
            }),
            FromCapture::Vad(Vad::SpeechStopped {
                reason: Some(StopReason::Silence),
                audio_end_ms: 40.0,
            }),
            FromCapture::Vad(Vad::SpeechStopped {
                reason: None,
                audio_end_ms: 60.0,
            }),
            FromCapture::Level {
                dbfs: -40.0,
                speaking: false,
            },
        ];
        for sent in from_capture {
            let mut wire = Json::default();
            sent.encode(&mut wire);
            assert_eq!(FromCapture::decode(&wire), Ok(sent));
        }
        let from_playback = [
            FromPlayback::Ready(Ready {
                via: Some("bytes".into()),
                sample_rate: None,
            }),
            FromPlayback::Progress {
                response_id: None,
                played_samples: 0,
                underruns: 2,
                stale_dropped: 1,
                buffered: 0,
            },
            FromPlayback::Progress {
                response_id: Some(protocol::ResponseId(u32::MAX)),
                played_samples: 1 << 40,
                underruns: 0,
                stale_dropped: 0,
                buffered: 960,
            },
            FromPlayback::Drained {
                response_id: protocol::ResponseId(3),
                played_samples: 24_000,
            },
            FromPlayback::Cleared {
                response_id: Some(protocol::ResponseId(3)),
                played_samples: 12,
            },
            FromPlayback::Cleared {
                response_id: None,
                played_samples: 0,
            },
        ];
        for sent in from_playback {
            let mut wire = Json::default();
            sent.encode(&mut wire);
            assert_eq!(FromPlayback::decode(&wire), Ok(sent));
        }
        for sent in [
            ToCapture::AssistantAudible(true),
            ToCapture::AssistantAudible(false),
        ] {
            let mut wire = Json::default();
            sent.encode(&mut wire);
            assert_eq!(ToCapture::decode(&wire), Ok(sent));
        }
        for sent in [
            ToPlayback::Audio {
                response_id: protocol::ResponseId(0),
                pcm: vec![255, 0],
            },
            ToPlayback::End(protocol::ResponseId(8)),
            ToPlayback::Clear(Some(protocol::ResponseId(8))),
            ToPlayback::Clear(None),
        ] {
            let mut wire = Json::default();
            sent.encode(&mut wire);
            assert_eq!(ToPlayback::decode(&wire), Ok(sent));
        }
    }

    #[test]
    fn decode_errors_say_what_is_missing() {
        assert_eq!(
            DecodeError::Missing {
                kind: Word::Drained,
                key: Key::ResponseId
            }
            .to_string(),
            "a worklet `drained` message without a usable `responseId`"
        );
    }
}
