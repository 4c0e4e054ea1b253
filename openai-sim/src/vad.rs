//! Server-side voice activity detection for Realtime sessions with `turn_detection` set
//! (docs/openai-wire.md §1.3, events in §1.6): a real energy detector over the appended PCM16.
//!
//! Audio is cut into 20 ms frames. A frame is voiced when its RMS level is above a threshold
//! derived from `threshold` (0.0 → −60 dBFS, 0.5 → −35 dBFS, 1.0 → −10 dBFS). Speech starts
//! after [`ONSET_FRAMES`] voiced frames in a row (so clicks do not count); `audio_start_ms`
//! is the first of them minus `prefix_padding_ms`. Speech stops once `silence_duration_ms`
//! of unvoiced audio followed the last voiced frame; `audio_end_ms` is the end of that last
//! voiced frame. Times count from the first byte appended in the session.
//!
//! `semantic_vad` has no model of meaning here: it behaves like `server_vad` with threshold
//! 0.5, padding 300 ms and a silence that depends on `eagerness` (high 200 ms, medium/auto
//! 350 ms, low 600 ms), shorter than server VAD's default 500 ms except for `low`.
//!
//! The detector only sees audio the client appends: if the client stops sending in the
//! middle of speech, no `speech_stopped` comes until more (silent) audio arrives.

use super::synth::SAMPLE_RATE_HZ;

/// Analysis frame length.
const FRAME_MS: u64 = 20;
/// Samples per analysis frame.
const FRAME_SAMPLES: u64 = FRAME_MS * SAMPLE_RATE_HZ as u64 / 1000;
/// Consecutive voiced frames needed to start speech (60 ms): ignores clicks and pops.
const ONSET_FRAMES: u32 = 3;
/// Level of the threshold 0.0, in dBFS.
const THRESHOLD_FLOOR_DBFS: f64 = -60.0;
/// dB the level rises from threshold 0.0 to 1.0.
const THRESHOLD_SPAN_DB: f64 = 50.0;

/// Default `threshold` of server VAD (docs/openai-wire.md §1.3).
pub(crate) const DEFAULT_THRESHOLD: f64 = 0.5;
/// Default `prefix_padding_ms` of server VAD.
pub(crate) const DEFAULT_PREFIX_PADDING_MS: u64 = 300;
/// Default `silence_duration_ms` of server VAD.
pub(crate) const DEFAULT_SILENCE_DURATION_MS: u64 = 500;

/// Silence after which `semantic_vad` ends a turn, by `eagerness`.
pub(crate) fn semantic_silence_ms(eagerness: &str) -> u64 {
    match eagerness {
        "high" => 200,
        "low" => 600,
        _ => 350,
    }
}

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VadParams {
    pub(crate) threshold: f64,
    pub(crate) prefix_padding_ms: u64,
    pub(crate) silence_duration_ms: u64,
}

/// What the detector found; times in ms since the session's first audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VadEvent {
    SpeechStarted {
        audio_start_ms: u64,
    },
    /// `detected_at_ms` is where the silence was confirmed: the turn's audio ends there.
    SpeechStopped {
        audio_end_ms: u64,
        detected_at_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence { voiced_run: u32, run_start: u64 },
    Speech { last_voiced_end: u64 },
}

/// An energy detector fed with raw PCM16 LE bytes.
#[derive(Debug)]
pub(crate) struct Vad {
    /// Mean square (of samples scaled to ±1) a voiced frame must exceed.
    threshold_power: f64,
    prefix_padding_samples: u64,
    silence_samples: u64,
    state: State,
    /// Samples analysed so far in the session, including the partial frame.
    position: u64,
    frame_power_sum: f64,
    frame_len: u64,
    /// A byte left over from an append that ended mid-sample.
    odd_byte: Option<u8>,
}

impl Vad {
    /// A detector whose clock starts at `position_samples` (audio already in the session).
    pub(crate) fn new(params: VadParams, position_samples: u64) -> Self {
        let level_dbfs =
            THRESHOLD_FLOOR_DBFS + THRESHOLD_SPAN_DB * params.threshold.clamp(0.0, 1.0);
        Self {
            threshold_power: 10_f64.powf(level_dbfs / 10.0),
            prefix_padding_samples: ms_to_samples(params.prefix_padding_ms),
            silence_samples: ms_to_samples(params.silence_duration_ms),
            state: State::Silence {
                voiced_run: 0,
                run_start: position_samples,
            },
            position: position_samples,
            frame_power_sum: 0.0,
            frame_len: 0,
            odd_byte: None,
        }
    }

    /// Whether speech is in progress.
    #[cfg(test)]
    fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Forgets any speech in progress (after a manual commit or a clear).
    pub(crate) fn reset(&mut self) {
        self.state = State::Silence {
            voiced_run: 0,
            run_start: self.position,
        };
    }

    /// Analyses more audio; `events` receives what was detected, in order.
    pub(crate) fn push(&mut self, pcm: &[u8], events: &mut Vec<VadEvent>) {
        let mut bytes = pcm;
        if let Some(low) = self.odd_byte.take() {
            let Some((&high, rest)) = bytes.split_first() else {
                self.odd_byte = Some(low);
                return;
            };
            self.push_sample(i16::from_le_bytes([low, high]), events);
            bytes = rest;
        }
        let mut pairs = bytes.chunks_exact(2);
        for pair in &mut pairs {
            self.push_sample(i16::from_le_bytes([pair[0], pair[1]]), events);
        }
        self.odd_byte = pairs.remainder().first().copied();
    }

    fn push_sample(&mut self, sample: i16, events: &mut Vec<VadEvent>) {
        let value = f64::from(sample) / f64::from(i16::MAX);
        self.frame_power_sum += value * value;
        self.frame_len += 1;
        self.position += 1;
        if self.frame_len == FRAME_SAMPLES {
            // FRAME_SAMPLES is 480: exact in f64.
            let voiced = self.frame_power_sum / FRAME_SAMPLES as f64 > self.threshold_power;
            self.frame_power_sum = 0.0;
            self.frame_len = 0;
            self.end_frame(voiced, events);
        }
    }

    fn end_frame(&mut self, voiced: bool, events: &mut Vec<VadEvent>) {
        let frame_end = self.position;
        let frame_start = frame_end - FRAME_SAMPLES;
        self.state = match self.state {
            State::Silence {
                voiced_run,
                run_start,
            } if voiced => {
                let run_start = if voiced_run == 0 {
                    frame_start
                } else {
                    run_start
                };
                if voiced_run + 1 >= ONSET_FRAMES {
                    let start = run_start.saturating_sub(self.prefix_padding_samples);
                    events.push(VadEvent::SpeechStarted {
                        audio_start_ms: samples_to_ms(start),
                    });
                    State::Speech {
                        last_voiced_end: frame_end,
                    }
                } else {
                    State::Silence {
                        voiced_run: voiced_run + 1,
                        run_start,
                    }
                }
            }
            State::Silence { .. } => State::Silence {
                voiced_run: 0,
                run_start: frame_end,
            },
            State::Speech { .. } if voiced => State::Speech {
                last_voiced_end: frame_end,
            },
            State::Speech { last_voiced_end } => {
                if frame_end - last_voiced_end >= self.silence_samples {
                    events.push(VadEvent::SpeechStopped {
                        audio_end_ms: samples_to_ms(last_voiced_end),
                        detected_at_ms: samples_to_ms(frame_end),
                    });
                    State::Silence {
                        voiced_run: 0,
                        run_start: frame_end,
                    }
                } else {
                    State::Speech { last_voiced_end }
                }
            }
        };
    }
}

/// Samples in `ms` milliseconds at 24 kHz.
pub(crate) fn ms_to_samples(ms: u64) -> u64 {
    ms * u64::from(SAMPLE_RATE_HZ) / 1000
}

/// Milliseconds in `samples` samples at 24 kHz.
pub(crate) fn samples_to_ms(samples: u64) -> u64 {
    samples * 1000 / u64::from(SAMPLE_RATE_HZ)
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    fn params() -> VadParams {
        VadParams {
            threshold: DEFAULT_THRESHOLD,
            prefix_padding_ms: DEFAULT_PREFIX_PADDING_MS,
            silence_duration_ms: DEFAULT_SILENCE_DURATION_MS,
        }
    }

    /// `ms` of a 220 Hz tone at `amplitude` (fraction of full scale); 0 gives silence.
    fn tone(ms: u64, amplitude: f64) -> Vec<u8> {
        (0..ms_to_samples(ms))
            .flat_map(|n| {
                let value = amplitude * (TAU * 220.0 * n as f64 / 24_000.0).sin();
                ((value * f64::from(i16::MAX)) as i16).to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn finds_a_tone_burst_in_silence() {
        let mut vad = Vad::new(params(), 0);
        let mut events = Vec::new();
        let audio = [tone(1000, 0.0), tone(800, 0.25), tone(1000, 0.0)].concat();
        // Feed in odd-sized pieces to exercise the split-sample path.
        for piece in audio.chunks(777) {
            vad.push(piece, &mut events);
        }
        assert_eq!(events.len(), 2, "{events:?}");
        let VadEvent::SpeechStarted { audio_start_ms } = events[0] else {
            panic!("{events:?}")
        };
        let VadEvent::SpeechStopped {
            audio_end_ms,
            detected_at_ms,
        } = events[1]
        else {
            panic!("{events:?}")
        };
        assert!((680..=720).contains(&audio_start_ms), "{audio_start_ms}");
        assert!((1780..=1820).contains(&audio_end_ms), "{audio_end_ms}");
        assert!(detected_at_ms >= audio_end_ms + 500);
        assert!(!vad.in_speech());
    }

    #[test]
    fn quiet_noise_and_clicks_are_not_speech() {
        let mut vad = Vad::new(params(), 0);
        let mut events = Vec::new();
        vad.push(&tone(1000, 0.001), &mut events);
        // One loud 20 ms frame: below the onset length.
        vad.push(&tone(20, 0.5), &mut events);
        vad.push(&tone(1000, 0.0), &mut events);
        assert!(events.is_empty(), "{events:?}");
    }
}
