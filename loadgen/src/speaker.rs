//! A simulated user at a microphone: room noise, and a voice when told to speak, fed 20 ms at a
//! time through the page's own capture pipeline (`client/audio`'s `Capture`: VAD with its
//! default settings, pre-roll, hangover, 20 ms PCM16 frames). So the VAD messages and frames a
//! proxy gets are the ones a browser would send, and the end of a turn is known to the sample:
//! the last voiced sample fed.

use audio::capture::{Capture, OUTPUT_FRAME_SAMPLES};
use audio::vad::{VadConfig, VadEvent};
use bytes::Bytes;

/// The wire's sample rate; the "device" runs at it, so the capture does not resample.
pub const RATE_HZ: u32 = 24_000;

/// Samples fed per tick: 20 ms, the page's capture quantum grouped as it sends them.
pub const TICK_SAMPLES: usize = OUTPUT_FRAME_SAMPLES;

/// Amplitude of the voice: about −20 dBFS, conversational speech at a laptop microphone.
const VOICE_AMPLITUDE: f32 = 0.1;

/// Amplitude of the room noise: about −70 dBFS, a quiet room.
const NOISE_AMPLITUDE: f32 = 0.0003;

/// Fundamental of the voice, in Hz: a low speaking voice; three harmonics follow it. A whole
/// number, so one second of it is whole periods.
const VOICE_HZ: f32 = 140.0;

/// One second of the voice, computed once for every speaker: a whole number of periods at
/// [`VOICE_HZ`], so it loops without a seam (a thousand speakers computing sines per sample
/// were a tenth of this generator's CPU).
fn voice_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..RATE_HZ)
            .map(|n| {
                let w = std::f32::consts::TAU * VOICE_HZ * n as f32 / RATE_HZ as f32;
                VOICE_AMPLITUDE * (0.6 * w.sin() + 0.3 * (2.0 * w).sin() + 0.1 * (3.0 * w).sin())
            })
            .collect()
    })
}

/// What one tick produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captured {
    /// The VAD heard speech start: send `speech_started`.
    SpeechStarted,
    /// A 20 ms frame of the utterance to send.
    Frame(Bytes),
    /// The VAD heard a short pause inside the speech: send `speech_paused`.
    SpeechPaused,
    /// The speech came back after the pause: send `speech_resumed`.
    SpeechResumed,
    /// The VAD heard the speech end: send `speech_stopped`.
    SpeechStopped,
}

/// One user's microphone.
#[derive(Debug)]
pub struct Speaker {
    capture: Capture,
    input: Vec<f32>,
    /// Samples of voice still to speak.
    voice_left: usize,
    /// Position of the voice's oscillator, in samples.
    phase: u64,
    /// The noise generator's state (xorshift).
    noise: u32,
}

impl Speaker {
    /// A quiet microphone; `seed` varies the noise between users.
    pub fn new(seed: u32) -> Self {
        Self {
            capture: Capture::new(RATE_HZ, VadConfig::default())
                .expect("the capture takes its own output rate"),
            input: vec![0.0; TICK_SAMPLES],
            voice_left: 0,
            phase: 0,
            noise: seed | 1,
        }
    }

    /// Speaks for `seconds` from the next tick on.
    pub fn speak(&mut self, seconds: f64) {
        self.voice_left = (seconds * f64::from(RATE_HZ)).round() as usize;
    }

    /// Whether voice is still to come.
    pub fn is_speaking(&self) -> bool {
        self.voice_left > 0
    }

    /// Whether the VAD holds an utterance open (the voice, then its hangover).
    pub fn utterance_open(&self) -> bool {
        self.capture.is_speaking()
    }

    /// Tells the VAD an answer is audible (its echo guard, as the page does).
    pub fn set_assistant_audible(&mut self, audible: bool) {
        self.capture.set_assistant_audible(audible);
    }

    /// Feeds one tick of microphone audio; returns what the page would send, in order, and
    /// whether this tick held the last voiced sample.
    pub fn tick(&mut self, out: &mut Vec<Captured>) -> bool {
        let voiced = self.voice_left.min(TICK_SAMPLES);
        for (n, sample) in self.input.iter_mut().enumerate() {
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 17;
            self.noise ^= self.noise << 5;
            let noise = (self.noise as f32 / u32::MAX as f32 - 0.5) * 2.0 * NOISE_AMPLITUDE;
            let voice = if n < voiced {
                let table = voice_table();
                let sample = table[self.phase as usize % table.len()];
                self.phase += 1;
                sample
            } else {
                0.0
            };
            *sample = voice + noise;
        }
        let ended = voiced > 0 && voiced == self.voice_left;
        self.voice_left -= voiced;
        self.capture.process(&self.input);
        let output = self.capture.output();
        let mut sent = 0;
        for event in self.capture.events() {
            push_frames(&output[sent..event.output_offset], out);
            sent = event.output_offset;
            out.push(match event.event {
                VadEvent::SpeechStarted { .. } => Captured::SpeechStarted,
                VadEvent::SpeechPaused { .. } => Captured::SpeechPaused,
                VadEvent::SpeechResumed { .. } => Captured::SpeechResumed,
                VadEvent::SpeechStopped { .. } => Captured::SpeechStopped,
            });
        }
        push_frames(&output[sent..], out);
        ended
    }
}

/// `seconds` of voice cut into phrases of `phrase_s` (the last one shorter); one phrase when
/// `phrase_s` is 0 or longer than the whole.
pub fn phrases(seconds: f64, phrase_s: f64) -> Vec<f64> {
    if phrase_s <= 0.0 || phrase_s >= seconds {
        return vec![seconds];
    }
    let mut phrases = Vec::new();
    let mut left = seconds;
    while left > 1e-9 {
        let phrase = phrase_s.min(left);
        phrases.push(phrase);
        left -= phrase;
    }
    phrases
}

/// Cuts samples into the page's 20 ms frames, as PCM16 LE bytes.
fn push_frames(samples: &[i16], out: &mut Vec<Captured>) {
    for frame in samples.chunks(OUTPUT_FRAME_SAMPLES) {
        out.push(Captured::Frame(Bytes::from(
            frame
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect::<Vec<u8>>(),
        )));
    }
}

/// Quiet ticks before an utterance is recorded: the VAD's warm-up (200 ms) and then some, so
/// its noise floor has settled.
const SETTLE_TICKS: usize = 25;

/// Ticks after the voice within which the VAD must have ended the utterance: its hangover
/// (500 ms) several times over.
const MAX_TAIL_TICKS: usize = 200;

/// One utterance as the page sends it, tick by tick: computed once through the capture
/// pipeline and replayed by every simulated user, so a thousand of them cost no DSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// What each 20 ms tick sends, from the tick the voice starts to the `speech_stopped`.
    pub ticks: Vec<Vec<Captured>>,
    /// The tick that holds the last voiced sample: the end of speech a user perceives.
    pub last_voiced_tick: usize,
}

impl Utterance {
    /// `seconds` of voice through the capture pipeline with the browser's defaults; with
    /// `over_an_answer`, the VAD's echo guard is up as while an answer plays (a barge-in).
    pub fn record(seconds: f64, over_an_answer: bool) -> Self {
        Self::record_phrases(&[seconds], std::time::Duration::ZERO, over_an_answer)
    }

    /// Phrases of voice (`phrases`, in seconds) with `gap` of room noise between them, through
    /// the capture pipeline, as a long question is spoken: a gap longer than the VAD's short
    /// pause and shorter than its hangover gives a `speech_paused` and a `speech_resumed`.
    pub fn record_phrases(phrases: &[f64], gap: std::time::Duration, over_an_answer: bool) -> Self {
        let mut speaker = Speaker::new(1);
        let mut scratch = Vec::new();
        for _ in 0..SETTLE_TICKS {
            speaker.tick(&mut scratch);
        }
        speaker.set_assistant_audible(over_an_answer);
        let gap_ticks = (gap.as_secs_f64() * 50.0).round() as usize;
        // When each phrase starts, in ticks from the first.
        let mut starts = Vec::with_capacity(phrases.len());
        let mut at = 0;
        for seconds in phrases {
            starts.push(at);
            // Whole ticks of voice, not fooled by 2.1 × 50 = 105.000…01.
            at += (seconds * 50.0 - 1e-6).ceil() as usize + gap_ticks;
        }
        let mut next_phrase = 0;
        let mut ticks = Vec::new();
        let mut last_voiced_tick = 0;
        for tick in 0..at + MAX_TAIL_TICKS {
            if next_phrase < phrases.len() && tick == starts[next_phrase] {
                speaker.speak(phrases[next_phrase]);
                next_phrase += 1;
            }
            let mut out = Vec::new();
            if speaker.tick(&mut out) {
                last_voiced_tick = tick;
            }
            let stopped = out.contains(&Captured::SpeechStopped);
            ticks.push(out);
            if stopped && next_phrase == phrases.len() {
                break;
            }
        }
        Self {
            ticks,
            last_voiced_tick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_becomes_one_utterance_with_its_pre_roll_and_hangover() {
        let mut speaker = Speaker::new(7);
        let mut out = Vec::new();
        // Half a second of room noise: the VAD warms up, nothing is sent.
        for _ in 0..25 {
            speaker.tick(&mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        speaker.speak(1.0);
        let mut last_voiced_tick = None;
        for tick in 0..100 {
            if speaker.tick(&mut out) {
                last_voiced_tick = Some(tick);
            }
        }
        assert_eq!(last_voiced_tick, Some(49), "one second is 50 ticks");
        assert_eq!(out.first(), Some(&Captured::SpeechStarted));
        assert_eq!(out.last(), Some(&Captured::SpeechStopped));
        let frames = out
            .iter()
            .filter(|c| matches!(c, Captured::Frame(_)))
            .count();
        // The voice, plus the pre-roll before it and the hangover after it.
        assert!((60..=90).contains(&frames), "{frames} frames");
        assert!(!speaker.utterance_open());
    }

    #[test]
    fn a_recorded_utterance_starts_sends_and_stops_once() {
        let utterance = Utterance::record(1.0, false);
        let all: Vec<&Captured> = utterance.ticks.iter().flatten().collect();
        assert_eq!(all.first(), Some(&&Captured::SpeechStarted));
        assert_eq!(all.last(), Some(&&Captured::SpeechStopped));
        assert_eq!(utterance.last_voiced_tick, 49);
        // Over an answer the echo guard delays the start, but the utterance still comes.
        let barge_in = Utterance::record(1.0, true);
        assert!(
            barge_in
                .ticks
                .iter()
                .flatten()
                .any(|c| *c == Captured::SpeechStarted)
        );
    }

    #[test]
    fn a_recorded_utterance_pauses_where_the_voice_ends_then_stops() {
        let utterance = Utterance::record(1.0, false);
        let tick_of = |wanted: &Captured| {
            utterance
                .ticks
                .iter()
                .position(|tick| tick.contains(wanted))
                .expect("the event is recorded")
        };
        let (paused, stopped) = (
            tick_of(&Captured::SpeechPaused),
            tick_of(&Captured::SpeechStopped),
        );
        // The VAD's defaults: a pause after 200 ms of quiet (10 ticks), the stop after 500 ms.
        let after_voice = paused - utterance.last_voiced_tick;
        assert!(
            (9..=12).contains(&after_voice),
            "paused {after_voice} ticks after the voice"
        );
        assert!(stopped > paused);
        // The voice never pauses: no resume.
        assert!(
            !utterance
                .ticks
                .iter()
                .flatten()
                .any(|c| *c == Captured::SpeechResumed)
        );
    }

    #[test]
    fn a_long_question_in_phrases_pauses_and_resumes_between_them_and_stops_once() {
        let phrases = phrases(9.0, 2.1);
        assert_eq!(phrases.len(), 5);
        assert!((phrases.iter().sum::<f64>() - 9.0).abs() < 1e-9);
        let utterance =
            Utterance::record_phrases(&phrases, std::time::Duration::from_millis(300), false);
        let count = |wanted: &Captured| {
            utterance
                .ticks
                .iter()
                .flatten()
                .filter(|c| *c == wanted)
                .count()
        };
        assert_eq!(count(&Captured::SpeechStarted), 1);
        assert_eq!(count(&Captured::SpeechStopped), 1);
        // A pause in each of the four gaps and one at the end; speech resumes after each gap.
        assert_eq!(count(&Captured::SpeechPaused), 5);
        assert_eq!(count(&Captured::SpeechResumed), 4);
        // The end of speech is the last phrase's last sample: 9 s of voice and 4 gaps.
        assert_eq!(utterance.last_voiced_tick, 450 + 4 * 15 - 1);
    }
}
