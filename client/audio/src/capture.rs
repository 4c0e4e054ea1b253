//! Capture pipeline: device-rate f32 quanta in, gated 20 ms PCM16 frames at 24 kHz out.
//!
//! `resample → f32→i16 → 10 ms VAD frames → gate → 20 ms output frames`
//!
//! * While idle, every VAD frame goes into a [`PREROLL_MS`] ring; nothing is output.
//! * At speech start the ring is emitted oldest-first (so the first syllable, which the onset
//!   confirmation needed 30 ms to be sure of, is not clipped), then every frame while speaking,
//!   including the hangover, up to the frame that decided the stop.
//! * The output is cut into [`OUTPUT_FRAME_SAMPLES`] frames. An utterance is padded with
//!   silence to a whole frame at its stop, so every frame belongs to exactly one utterance.
//! * Each [`Capture::process`] call returns the complete frames it finished (a partial frame is
//!   carried into the next call) plus the VAD events, each tagged with the offset in that
//!   output where it happened, so a consumer can interleave events and frames in order.
//!   Short pauses ([`VadEvent::SpeechPaused`], [`VadEvent::SpeechResumed`]) change nothing in
//!   the gating: the audio inside an utterance flows through them.
//!
//! Everything is allocated in [`Capture::new`]; a call never allocates.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use crate::pcm;
use crate::resample::{Resampler, UnsupportedRate};
use crate::vad::{self, FRAME_SAMPLES, Vad, VadConfig, VadEvent};

/// The output rate: what the proxy and OpenAI's Realtime API take, so nobody resamples again.
pub const OUTPUT_RATE_HZ: u32 = vad::SAMPLE_RATE_HZ;

/// Output frame length: 20 ms is a common network audio packet size, small enough for low
/// latency and large enough that per-message overhead stays negligible.
pub const OUTPUT_FRAME_MS: u32 = 20;

/// Samples in one output frame at [`OUTPUT_RATE_HZ`].
pub const OUTPUT_FRAME_SAMPLES: usize = (OUTPUT_RATE_HZ * OUTPUT_FRAME_MS / 1000) as usize;

/// Audio kept from before the confirmed start: covers the onset confirmation (30 ms; 200 ms
/// for a barge-in) plus a soft leading consonant, matching common server VAD prefix padding.
pub const PREROLL_MS: u32 = 300;

/// Samples in the pre-roll at [`OUTPUT_RATE_HZ`] (a whole number of VAD frames).
pub const PREROLL_SAMPLES: usize = (OUTPUT_RATE_HZ * PREROLL_MS / 1000) as usize;

/// Most device samples one [`Capture::process`] call accepts: 32 of today's 128-frame render
/// quanta, leaving room for larger quanta (Web Audio's `renderSizeHint`) without reallocation.
pub const MAX_INPUT_SAMPLES: usize = 4096;

/// A VAD event and where it falls in the output of the call that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureEvent {
    /// What happened.
    pub event: VadEvent,
    /// Output samples (of [`Capture::output`]) that precede the event; always a whole number of
    /// frames. For a start, the utterance's audio begins here; for a stop, it ended here; a
    /// pause or a resume falls inside the utterance, after the frames complete when it was
    /// decided (the frame being filled then follows it).
    pub output_offset: usize,
}

/// The capture pipeline for one device rate.
#[derive(Debug)]
pub struct Capture {
    resampler: Resampler,
    gate: Gate,
    /// Sum of squares of device samples since the last [`Capture::take_level_dbfs`].
    level_energy: f32,
    level_samples: u32,
}

impl Capture {
    /// A pipeline for microphone audio at `input_rate_hz`.
    pub fn new(input_rate_hz: u32, config: VadConfig) -> Result<Self, UnsupportedRate> {
        let resampler = Resampler::new(input_rate_hz, OUTPUT_RATE_HZ)?;
        // Each device sample ends up in exactly one VAD frame and each frame is emitted at most
        // once (plus a stop's padding), so these bounds hold for any call.
        let max_frames_per_call = resampler
            .max_output_len(MAX_INPUT_SAMPLES)
            .div_ceil(FRAME_SAMPLES)
            + 1;
        let out_capacity =
            OUTPUT_FRAME_SAMPLES + PREROLL_SAMPLES + max_frames_per_call * 2 * FRAME_SAMPLES;
        Ok(Self {
            resampler,
            gate: Gate {
                vad: Vad::new(config),
                frame: [0; FRAME_SAMPLES],
                frame_len: 0,
                preroll: vec![0; PREROLL_SAMPLES].into_boxed_slice(),
                preroll_oldest: 0,
                preroll_len: 0,
                out: vec![0; out_capacity].into_boxed_slice(),
                out_len: 0,
                ready_len: 0,
                events: Vec::with_capacity(max_frames_per_call),
            },
            level_energy: 0.0,
            level_samples: 0,
        })
    }

    /// Runs one quantum of mono device-rate samples (at most [`MAX_INPUT_SAMPLES`]) and
    /// returns how many output samples are ready in [`Self::output`] (whole frames).
    pub fn process(&mut self, input: &[f32]) -> usize {
        assert!(
            input.len() <= MAX_INPUT_SAMPLES,
            "capture quantum of {} samples",
            input.len()
        );
        self.level_energy += input.iter().map(|x| x * x).sum::<f32>();
        self.level_samples = self.level_samples.saturating_add(input.len() as u32);

        let gate = &mut self.gate;
        gate.begin_call();
        self.resampler
            .process(input, |y| gate.push_sample(pcm::f32_to_i16(y)));
        gate.finish_call()
    }

    /// Complete 20 ms frames of gated 24 kHz PCM16 from the last [`Self::process`] call.
    pub fn output(&self) -> &[i16] {
        &self.gate.out[..self.gate.ready_len]
    }

    /// VAD events of the last [`Self::process`] call, in order.
    pub fn events(&self) -> &[CaptureEvent] {
        &self.gate.events
    }

    /// Whether speech is in progress (output is flowing).
    pub fn is_speaking(&self) -> bool {
        self.gate.vad.is_speaking()
    }

    /// RMS level of the device input since the previous call, in dBFS (for a level meter).
    pub fn take_level_dbfs(&mut self) -> f32 {
        let mean_square = self.level_energy / self.level_samples.max(1) as f32;
        self.level_energy = 0.0;
        self.level_samples = 0;
        vad::power_to_dbfs(mean_square)
    }

    /// The VAD's adaptive noise floor, in dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        self.gate.vad.noise_floor_dbfs()
    }

    /// Echo guard: raise the VAD start threshold while the assistant's voice is playing.
    pub fn set_assistant_audible(&mut self, audible: bool) {
        self.gate.vad.set_assistant_audible(audible);
    }

    /// The VAD configuration in force.
    pub fn vad_config(&self) -> &VadConfig {
        self.gate.vad.config()
    }

    /// Replaces the VAD configuration, keeping its state.
    pub fn set_vad_config(&mut self, config: VadConfig) {
        self.gate.vad.set_config(config);
    }
}

/// Everything after the resampler: VAD framing, pre-roll, gating, output framing.
struct Gate {
    vad: Vad,
    /// The VAD frame being filled.
    frame: [i16; FRAME_SAMPLES],
    frame_len: usize,
    /// Ring of whole VAD frames heard while idle.
    preroll: Box<[i16]>,
    preroll_oldest: usize,
    preroll_len: usize,
    /// `out[..ready_len]` is this call's complete frames; `out[ready_len..out_len]` is the
    /// partial frame carried to the next call.
    out: Box<[i16]>,
    out_len: usize,
    ready_len: usize,
    /// This call's events; capacity reserved in `new` for the most a call can produce.
    events: Vec<CaptureEvent>,
}

impl core::fmt::Debug for Gate {
    // Not the sample buffers, which hold seconds of audio.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gate")
            .field("vad", &self.vad)
            .field("preroll_len", &self.preroll_len)
            .field("out_len", &self.out_len)
            .field("ready_len", &self.ready_len)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Gate {
    fn begin_call(&mut self) {
        self.out.copy_within(self.ready_len..self.out_len, 0);
        self.out_len -= self.ready_len;
        self.ready_len = 0;
        self.events.clear();
    }

    fn finish_call(&mut self) -> usize {
        self.ready_len = self.out_len - self.out_len % OUTPUT_FRAME_SAMPLES;
        self.ready_len
    }

    #[inline]
    fn push_sample(&mut self, sample: i16) {
        self.frame[self.frame_len] = sample;
        self.frame_len += 1;
        if self.frame_len == FRAME_SAMPLES {
            self.frame_len = 0;
            self.on_frame();
        }
    }

    fn on_frame(&mut self) {
        match self.vad.process_frame(&self.frame) {
            Some(event @ VadEvent::SpeechStarted { .. }) => {
                self.preroll_push_frame();
                self.record(event);
                self.drain_preroll();
            }
            Some(event @ VadEvent::SpeechStopped { .. }) => {
                self.emit_frame();
                // Close the utterance on a frame boundary.
                let padding = self.out_len.next_multiple_of(OUTPUT_FRAME_SAMPLES) - self.out_len;
                self.out[self.out_len..][..padding].fill(0);
                self.out_len += padding;
                self.record(event);
            }
            Some(event @ (VadEvent::SpeechPaused { .. } | VadEvent::SpeechResumed { .. })) => {
                self.emit_frame();
                self.record(event);
            }
            None if self.vad.is_speaking() => self.emit_frame(),
            None => self.preroll_push_frame(),
        }
    }

    fn record(&mut self, event: VadEvent) {
        debug_assert!(
            self.events.len() < self.events.capacity(),
            "event capacity is reserved"
        );
        // Starts and stops sit on a frame boundary already; a pause or a resume goes before
        // the frame being filled, so it never splits one.
        self.events.push(CaptureEvent {
            event,
            output_offset: self.out_len - self.out_len % OUTPUT_FRAME_SAMPLES,
        });
    }

    fn emit_frame(&mut self) {
        self.out[self.out_len..][..FRAME_SAMPLES].copy_from_slice(&self.frame);
        self.out_len += FRAME_SAMPLES;
    }

    fn preroll_push_frame(&mut self) {
        if self.preroll_len == PREROLL_SAMPLES {
            // Full: the oldest frame makes room.
            self.preroll_oldest = (self.preroll_oldest + FRAME_SAMPLES) % PREROLL_SAMPLES;
            self.preroll_len -= FRAME_SAMPLES;
        }
        // The ring holds whole frames and its size is a multiple of a frame, so a frame never
        // wraps.
        let slot = (self.preroll_oldest + self.preroll_len) % PREROLL_SAMPLES;
        self.preroll[slot..][..FRAME_SAMPLES].copy_from_slice(&self.frame);
        self.preroll_len += FRAME_SAMPLES;
    }

    fn drain_preroll(&mut self) {
        let (first, second) = self.preroll.split_at(self.preroll_oldest);
        let older = &second[..self.preroll_len.min(second.len())];
        let newer = &first[..self.preroll_len - older.len()];
        for part in [older, newer] {
            self.out[self.out_len..][..part.len()].copy_from_slice(part);
            self.out_len += part.len();
        }
        self.preroll_oldest = 0;
        self.preroll_len = 0;
    }
}

const _: () = assert!(PREROLL_SAMPLES.is_multiple_of(FRAME_SAMPLES));
const _: () = assert!(OUTPUT_FRAME_SAMPLES.is_multiple_of(FRAME_SAMPLES));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{CaptureRun, Lcg, RunKind, sine};
    use crate::vad::StopReason;

    const HANGOVER_MS: f64 = 500.0;

    /// −60 dBFS noise with 300 Hz-ish harmonic bursts ("voiced speech") at −25 dBFS RMS.
    fn noise_with_bursts(
        rate: u32,
        seconds: f64,
        bursts: &[(f64, f64)],
        burst_hz: f64,
        burst_dbfs: f32,
    ) -> Vec<f32> {
        let mut rng = Lcg::new(11);
        let noise_amplitude = 10f32.powf(-60.0 / 20.0) * 3f32.sqrt();
        let tone_amplitude = 10f32.powf(burst_dbfs / 20.0) * 2f32.sqrt();
        let n = (seconds * f64::from(rate)) as usize;
        let tone = sine(burst_hz, rate, tone_amplitude, n);
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                let inside = bursts.iter().any(|&(a, b)| t >= a && t < b);
                noise_amplitude * rng.next_bipolar() + if inside { tone[i] } else { 0.0 }
            })
            .collect()
    }

    #[test]
    fn bursts_start_within_50_ms_and_stop_after_the_hangover_at_common_rates() {
        let bursts = [(1.0, 2.2), (3.5, 3.9), (5.0, 6.5)];
        for rate in [16_000, 44_100, 48_000, 96_000] {
            let input = noise_with_bursts(rate, 7.5, &bursts, 300.0, -25.0);
            let run = CaptureRun::new(rate, VadConfig::default()).feed(&input, 128);
            assert_eq!(
                run.starts().len(),
                bursts.len(),
                "{rate} Hz: {:?}",
                run.events
            );
            for (&(onset, offset), (start, stop)) in
                bursts.iter().zip(run.starts().iter().zip(run.stops()))
            {
                let start_delay_ms = (start.reported_s - onset) * 1e3;
                assert!(
                    (0.0..=50.0).contains(&start_delay_ms),
                    "{rate} Hz start {start_delay_ms:.1} ms late"
                );
                let onset_error_ms = (start.at_s - onset) * 1e3;
                assert!(
                    onset_error_ms.abs() <= 15.0,
                    "{rate} Hz onset {onset_error_ms:.1} ms off"
                );
                let stop_delay_ms = (stop.reported_s - offset) * 1e3;
                assert!(
                    (stop_delay_ms - HANGOVER_MS).abs() <= 50.0,
                    "{rate} Hz stop {stop_delay_ms:.1} ms after the offset"
                );
                assert_eq!(stop.reason, Some(StopReason::Silence));
            }
        }
    }

    #[test]
    fn gated_output_is_preroll_plus_speech_plus_hangover_in_20_ms_frames() {
        let rate = 48_000;
        let input = noise_with_bursts(rate, 4.0, &[(1.0, 2.0)], 300.0, -25.0);
        let run = CaptureRun::new(rate, VadConfig::default()).feed(&input, 128);
        assert_eq!(run.utterances.len(), 1);
        let utterance = &run.utterances[0];
        assert_eq!(utterance.len() % OUTPUT_FRAME_SAMPLES, 0);
        // 300 ms pre-roll (ending at the confirmation, 30 ms after the onset) + the rest of the
        // 1 s burst + 500 ms hangover, give or take a frame of alignment and the padding.
        let expected_ms = 300.0 + (1_000.0 - 30.0) + HANGOVER_MS;
        let got_ms = utterance.len() as f64 / 24.0;
        assert!(
            (got_ms - expected_ms).abs() <= 30.0,
            "utterance of {got_ms} ms"
        );
        // Oldest first: the burst begins ≈ 270 ms into the utterance.
        let first_loud = utterance
            .iter()
            .position(|s| s.unsigned_abs() > 1_000)
            .unwrap();
        let first_loud_ms = first_loud as f64 / 24.0;
        assert!(
            (first_loud_ms - 270.0).abs() <= 15.0,
            "burst at {first_loud_ms} ms"
        );
        assert!(run.all_output_in_frames);
    }

    #[test]
    fn events_and_frames_interleave_in_order() {
        let input = noise_with_bursts(44_100, 4.0, &[(1.0, 1.5)], 300.0, -25.0);
        let run = CaptureRun::new(44_100, VadConfig::default()).feed(&input, 128);
        // CaptureRun files frames under the utterance opened by the last start event and
        // fails on frames outside one; a single utterance with audio proves the ordering.
        assert_eq!(run.utterances.len(), 1);
        assert!(run.frames_outside_utterances == 0);
    }

    #[test]
    fn a_15_khz_whistle_at_48_khz_is_filtered_out_and_never_triggers() {
        let input = noise_with_bursts(48_000, 4.0, &[(1.0, 3.0)], 15_000.0, -12.0);
        let run = CaptureRun::new(48_000, VadConfig::default()).feed(&input, 128);
        assert!(run.events.is_empty(), "{:?}", run.events);
    }

    #[test]
    fn max_utterance_length_forces_a_stop() {
        let config = VadConfig {
            max_utterance_ms: 2_000,
            ..VadConfig::default()
        };
        let input = noise_with_bursts(48_000, 5.0, &[(1.0, 4.5)], 300.0, -25.0);
        let run = CaptureRun::new(48_000, config).feed(&input, 128);
        let stop = run.stops()[0];
        assert_eq!(stop.reason, Some(StopReason::MaxLength));
        let length_ms = (stop.reported_s - run.starts()[0].at_s) * 1e3;
        assert!(
            (length_ms - 2_000.0).abs() <= 20.0,
            "forced stop after {length_ms} ms"
        );
    }

    #[test]
    fn echo_guard_suppresses_a_burst_that_would_otherwise_start() {
        let input = noise_with_bursts(48_000, 3.0, &[(1.0, 1.5)], 300.0, -40.0);
        assert_eq!(
            CaptureRun::new(48_000, VadConfig::default())
                .feed(&input, 128)
                .starts()
                .len(),
            1
        );
        let mut guarded = CaptureRun::new(48_000, VadConfig::default());
        guarded.capture.set_assistant_audible(true);
        assert!(guarded.feed(&input, 128).events.is_empty());
    }

    #[test]
    fn a_barge_in_still_sends_its_first_words_from_the_preroll() {
        let rate = 48_000;
        let input = noise_with_bursts(rate, 3.0, &[(1.0, 2.0)], 300.0, -20.0);
        let mut run = CaptureRun::new(rate, VadConfig::default());
        run.capture.set_assistant_audible(true);
        let run = run.feed(&input, 128);
        assert_eq!(run.utterances.len(), 1, "{:?}", run.events);
        // Confirmed after the longer barge-in onset, but the utterance still opens with quiet
        // before the first loud sample: nothing of the interruption is lost.
        let start = run.starts()[0];
        let barge_in_onset_ms = f64::from(VadConfig::default().barge_in_onset_ms);
        assert!((start.reported_s - 1.0) * 1e3 >= barge_in_onset_ms - 10.0);
        let first_loud = run.utterances[0]
            .iter()
            .position(|s| s.unsigned_abs() > 1_000)
            .unwrap();
        let lead_ms = first_loud as f64 / 24.0;
        let expected_lead_ms = f64::from(PREROLL_MS) - barge_in_onset_ms;
        assert!(
            (lead_ms - expected_lead_ms).abs() <= 15.0,
            "the interruption begins {lead_ms} ms into the utterance"
        );
    }

    #[test]
    fn level_meter_reports_the_rms_since_the_last_read() {
        let mut capture = Capture::new(48_000, VadConfig::default()).unwrap();
        assert_eq!(capture.take_level_dbfs(), vad::SILENCE_DBFS);
        // A sine at amplitude 0.1 has RMS 0.1/√2 ≈ −23 dBFS.
        let input = sine(1_000.0, 48_000, 0.1, 2_400);
        for quantum in input.chunks(128) {
            capture.process(quantum);
        }
        let level = capture.take_level_dbfs();
        assert!((level - (-23.0)).abs() < 0.2, "{level}");
        assert_eq!(capture.take_level_dbfs(), vad::SILENCE_DBFS);
    }

    #[test]
    fn quanta_of_any_size_up_to_the_maximum_give_the_same_output() {
        let input = noise_with_bursts(44_100, 3.0, &[(1.0, 1.6)], 300.0, -25.0);
        let small = CaptureRun::new(44_100, VadConfig::default()).feed(&input, 128);
        let large = CaptureRun::new(44_100, VadConfig::default()).feed(&input, MAX_INPUT_SAMPLES);
        let odd = CaptureRun::new(44_100, VadConfig::default()).feed(&input, 333);
        assert_eq!(small.utterances, large.utterances);
        assert_eq!(small.utterances, odd.utterances);
    }

    #[test]
    fn a_short_pause_keeps_the_audio_flowing_and_is_reported_in_order() {
        let rate = 48_000;
        // Two phrases 300 ms apart: one utterance, paused and resumed between them.
        let input = noise_with_bursts(rate, 4.0, &[(1.0, 1.6), (1.9, 2.5)], 300.0, -25.0);
        let run = CaptureRun::new(rate, VadConfig::default()).feed(&input, 128);
        let kinds: Vec<RunKind> = run.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                RunKind::Started,
                RunKind::Paused,
                RunKind::Resumed,
                RunKind::Paused,
                RunKind::Stopped
            ]
        );
        assert_eq!(run.utterances.len(), 1);
        assert_eq!(run.frames_outside_utterances, 0);
        assert!(
            run.all_output_in_frames,
            "event offsets on frame boundaries"
        );
        let pause_ms = f64::from(VadConfig::default().pause_ms);
        let (pause, resume) = (
            run.of_kind(RunKind::Paused)[0],
            run.of_kind(RunKind::Resumed)[0],
        );
        assert!(
            (pause.at_s - 1.6).abs() <= 0.015,
            "pause at {} s",
            pause.at_s
        );
        let pause_delay_ms = (pause.reported_s - 1.6) * 1e3;
        assert!(
            (pause_delay_ms - pause_ms).abs() <= 30.0,
            "pause reported {pause_delay_ms:.0} ms after the phrase"
        );
        assert!(
            (resume.at_s - 1.9).abs() <= 0.015,
            "resume at {} s",
            resume.at_s
        );
        // The whole turn, the pause included: pre-roll + 1.5 s of speech after the
        // confirmation + hangover.
        let expected_ms = 300.0 + (1_500.0 - 30.0) + HANGOVER_MS;
        let got_ms = run.utterances[0].len() as f64 / 24.0;
        assert!(
            (got_ms - expected_ms).abs() <= 30.0,
            "utterance of {got_ms} ms"
        );
    }
}
