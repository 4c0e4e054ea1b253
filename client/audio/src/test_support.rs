//! Shared test helpers: signals, measurement, a WAV reader and a capture driver.

use std::f64::consts::PI;

use crate::capture::{Capture, OUTPUT_FRAME_SAMPLES, OUTPUT_RATE_HZ};
use crate::pcm;
use crate::vad::{StopReason, VadConfig, VadEvent};

/// Deterministic noise source (64-bit LCG, Knuth's constants).
#[derive(Debug)]
pub(crate) struct Lcg(u64);

impl Lcg {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn next_bipolar(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

pub(crate) fn sine(hz: f64, rate: u32, amplitude: f32, samples: usize) -> Vec<f32> {
    (0..samples)
        .map(|n| amplitude * (2.0 * PI * hz * n as f64 / f64::from(rate)).sin() as f32)
        .collect()
}

pub(crate) fn sine_i16(hz: f64, rate: u32, amplitude: f32, samples: usize) -> Vec<i16> {
    sine(hz, rate, amplitude, samples)
        .into_iter()
        .map(pcm::f32_to_i16)
        .collect()
}

pub(crate) fn db(ratio: f64) -> f64 {
    20.0 * ratio.max(1e-12).log10()
}

/// Amplitude of the component at `hz`: one DFT bin under a 4-term Blackman–Harris window,
/// whose −92 dB sidelobes keep a strong tone from leaking into a weak one being measured.
pub(crate) fn tone_amplitude(signal: &[f32], hz: f64, rate: u32) -> f64 {
    let n = signal.len() as f64;
    let (mut re, mut im, mut window_sum) = (0.0, 0.0, 0.0);
    for (i, &x) in signal.iter().enumerate() {
        let t = 2.0 * PI * i as f64 / (n - 1.0);
        let w =
            0.358_75 - 0.488_29 * t.cos() + 0.141_28 * (2.0 * t).cos() - 0.011_68 * (3.0 * t).cos();
        let phase = 2.0 * PI * hz * i as f64 / f64::from(rate);
        re += w * f64::from(x) * phase.cos();
        im -= w * f64::from(x) * phase.sin();
        window_sum += w;
    }
    2.0 * (re * re + im * im).sqrt() / window_sum
}

/// Largest sample-to-sample jump: a click shows up as a step far above the signal's own slope.
pub(crate) fn max_step(signal: &[f32]) -> f32 {
    signal
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

/// A mono 16-bit PCM WAV file.
#[derive(Debug)]
pub(crate) struct Wav {
    pub(crate) rate_hz: u32,
    pub(crate) samples: Vec<i16>,
}

/// Reads a RIFF/WAVE file of mono 16-bit PCM, skipping chunks it does not need.
pub(crate) fn read_wav(bytes: &[u8]) -> Result<Wav, String> {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12;
    let mut rate_hz = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(at + 4) as usize;
        let body = at + 8;
        let end = body
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or("truncated chunk")?;
        match id {
            b"fmt " => {
                let (format, channels, bits) = (u16_at(body), u16_at(body + 2), u16_at(body + 14));
                if format != 1 || channels != 1 || bits != 16 {
                    return Err(format!(
                        "want mono 16-bit PCM, got format {format}, {channels} ch, {bits} bit"
                    ));
                }
                rate_hz = Some(u32_at(body + 4));
            }
            b"data" => {
                let rate_hz = rate_hz.ok_or("data before fmt")?;
                let samples = bytes[body..end]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok(Wav { rate_hz, samples });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = end + (size & 1);
    }
    Err("no data chunk".into())
}

/// Which VAD event a [`RunEvent`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    Started,
    Paused,
    Resumed,
    Stopped,
}

/// A VAD event as seen from outside the capture pipeline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunEvent {
    pub(crate) kind: RunKind,
    /// The event's position (onset, pause, resume or end of speech) in seconds of input.
    pub(crate) at_s: f64,
    /// Input time at the end of the quantum that reported it, in seconds.
    pub(crate) reported_s: f64,
    pub(crate) reason: Option<StopReason>,
}

/// Drives a [`Capture`] like the worklet does and collects what it would post.
#[derive(Debug)]
pub(crate) struct CaptureRun {
    pub(crate) capture: Capture,
    input_rate_hz: u32,
    fed: usize,
    speaking: bool,
    pub(crate) events: Vec<RunEvent>,
    /// Audio of each utterance, in the order the frames were posted.
    pub(crate) utterances: Vec<Vec<i16>>,
    pub(crate) frames_outside_utterances: usize,
    pub(crate) all_output_in_frames: bool,
}

impl CaptureRun {
    pub(crate) fn new(input_rate_hz: u32, config: VadConfig) -> Self {
        Self {
            capture: Capture::new(input_rate_hz, config).unwrap(),
            input_rate_hz,
            fed: 0,
            speaking: false,
            events: Vec::new(),
            utterances: Vec::new(),
            frames_outside_utterances: 0,
            all_output_in_frames: true,
        }
    }

    pub(crate) fn feed(mut self, input: &[f32], quantum: usize) -> Self {
        for chunk in input.chunks(quantum) {
            let ready = self.capture.process(chunk);
            self.fed += chunk.len();
            self.all_output_in_frames &= ready.is_multiple_of(OUTPUT_FRAME_SAMPLES);
            let reported_s = self.fed as f64 / f64::from(self.input_rate_hz);
            let mut posted = 0;
            for event in self.capture.events().to_vec() {
                self.file_frames(posted, event.output_offset);
                posted = event.output_offset;
                let (kind, sample, reason) = match event.event {
                    VadEvent::SpeechStarted { start_sample } => {
                        (RunKind::Started, start_sample, None)
                    }
                    VadEvent::SpeechPaused { pause_sample } => {
                        (RunKind::Paused, pause_sample, None)
                    }
                    VadEvent::SpeechResumed { resume_sample } => {
                        (RunKind::Resumed, resume_sample, None)
                    }
                    VadEvent::SpeechStopped { end_sample, reason } => {
                        (RunKind::Stopped, end_sample, Some(reason))
                    }
                };
                self.all_output_in_frames &=
                    event.output_offset.is_multiple_of(OUTPUT_FRAME_SAMPLES);
                match kind {
                    RunKind::Started => {
                        self.utterances.push(Vec::new());
                        self.speaking = true;
                    }
                    RunKind::Stopped => self.speaking = false,
                    RunKind::Paused | RunKind::Resumed => {}
                }
                let at_s = sample as f64 / f64::from(OUTPUT_RATE_HZ);
                self.events.push(RunEvent {
                    kind,
                    at_s,
                    reported_s,
                    reason,
                });
            }
            self.file_frames(posted, ready);
        }
        self
    }

    fn file_frames(&mut self, from: usize, to: usize) {
        let frames = &self.capture.output()[from..to];
        match self.utterances.last_mut() {
            Some(utterance) if self.speaking || frames.is_empty() => {
                utterance.extend_from_slice(frames)
            }
            _ => self.frames_outside_utterances += frames.len() / OUTPUT_FRAME_SAMPLES,
        }
    }

    pub(crate) fn of_kind(&self, kind: RunKind) -> Vec<RunEvent> {
        self.events
            .iter()
            .copied()
            .filter(|e| e.kind == kind)
            .collect()
    }

    pub(crate) fn starts(&self) -> Vec<RunEvent> {
        self.of_kind(RunKind::Started)
    }

    pub(crate) fn stops(&self) -> Vec<RunEvent> {
        self.of_kind(RunKind::Stopped)
    }
}
