//! The capture pipeline on real speech: `tests/fixtures/two_sentences_24k.wav` (see the README
//! there for how it was made and what it contains).

use crate::capture::PREROLL_MS;
use crate::pcm;
use crate::resample::Resampler;
use crate::test_support::{CaptureRun, read_wav};
use crate::vad::{self, FRAME_SAMPLES, StopReason, VadConfig};

const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/two_sentences_24k.wav");
const FIXTURE_RATE_HZ: u32 = 24_000;

/// Where the sentences were placed when the fixture was made, in seconds.
const CONSTRUCTED_SPEECH_S: [(f64, f64); 2] = [(0.5, 2.029_6), (3.529_6, 4.430_0)];

/// Envelope threshold for "speech present": 20 dB above the fixture's −65 dBFS noise, below
/// any syllable.
const ENVELOPE_THRESHOLD_DBFS: f32 = -45.0;

/// Gaps shorter than this inside a sentence (a comma, a stop consonant) do not split it.
const ENVELOPE_MERGE_GAP_S: f64 = 0.3;

/// Tolerances the VAD must meet against the measured boundaries.
const START_REPORTED_WITHIN_S: f64 = 0.060;
const ONSET_POSITION_WITHIN_S: f64 = 0.030;
const STOP_AFTER_HANGOVER_WITHIN_S: f64 = 0.060;

fn fixture() -> Vec<i16> {
    let wav = read_wav(FIXTURE).unwrap();
    assert_eq!(wav.rate_hz, FIXTURE_RATE_HZ);
    wav.samples
}

/// Speech regions measured from the 10 ms frame envelope: runs of frames above the threshold,
/// merged across short gaps. In seconds.
fn measured_speech_s(samples: &[i16]) -> Vec<(f64, f64)> {
    let frame_s = FRAME_SAMPLES as f64 / f64::from(FIXTURE_RATE_HZ);
    let mut regions: Vec<(f64, f64)> = Vec::new();
    for (i, frame) in samples.chunks_exact(FRAME_SAMPLES).enumerate() {
        if vad::frame_level_dbfs(frame) <= ENVELOPE_THRESHOLD_DBFS {
            continue;
        }
        let (start, end) = (i as f64 * frame_s, (i + 1) as f64 * frame_s);
        match regions.last_mut() {
            Some(last) if start - last.1 < ENVELOPE_MERGE_GAP_S => last.1 = end,
            _ => regions.push((start, end)),
        }
    }
    regions
}

/// The fixture at `rate_hz` as f32: converted with our own upsampler for device rates, and
/// shifted back by its delay so event times stay comparable.
fn fixture_at(rate_hz: u32) -> Vec<f32> {
    let samples: Vec<f32> = fixture().into_iter().map(pcm::i16_to_f32).collect();
    if rate_hz == FIXTURE_RATE_HZ {
        return samples;
    }
    let mut upsampler = Resampler::new(FIXTURE_RATE_HZ, rate_hz).unwrap();
    let delay = (upsampler.delay_input_samples() * f64::from(rate_hz) / f64::from(FIXTURE_RATE_HZ))
        as usize;
    let mut out = Vec::new();
    upsampler.process(&samples, |y| out.push(y));
    out.split_off(delay)
}

#[test]
fn the_fixture_envelope_matches_its_construction() {
    let measured = measured_speech_s(&fixture());
    assert_eq!(measured.len(), CONSTRUCTED_SPEECH_S.len(), "{measured:?}");
    for (&(m_start, m_end), &(c_start, c_end)) in measured.iter().zip(&CONSTRUCTED_SPEECH_S) {
        assert!(
            (m_start - c_start).abs() <= 0.015,
            "start {m_start} vs {c_start}"
        );
        assert!((m_end - c_end).abs() <= 0.015, "end {m_end} vs {c_end}");
    }
}

#[test]
fn vad_events_land_on_the_speech_boundaries_at_device_rates() {
    let speech = measured_speech_s(&fixture());
    let hangover_s = f64::from(VadConfig::default().hangover_ms) / 1e3;
    for rate_hz in [24_000, 44_100, 48_000, 16_000] {
        let run = CaptureRun::new(rate_hz, VadConfig::default()).feed(&fixture_at(rate_hz), 128);
        let (starts, stops) = (run.starts(), run.stops());
        assert_eq!(
            (starts.len(), stops.len()),
            (2, 2),
            "{rate_hz} Hz: {:?}",
            run.events
        );
        for ((&(onset, offset), start), stop) in speech.iter().zip(&starts).zip(&stops) {
            let reported = start.reported_s - onset;
            assert!(
                (0.0..=START_REPORTED_WITHIN_S).contains(&reported),
                "{rate_hz} Hz: start reported {:.0} ms after the onset at {onset:.3} s",
                reported * 1e3
            );
            assert!(
                (start.at_s - onset).abs() <= ONSET_POSITION_WITHIN_S,
                "{rate_hz} Hz: onset placed at {:.3} s, measured {onset:.3} s",
                start.at_s
            );
            let late = stop.reported_s - offset - hangover_s;
            assert!(
                late.abs() <= STOP_AFTER_HANGOVER_WITHIN_S,
                "{rate_hz} Hz: stop {:.0} ms off offset + hangover (offset {offset:.3} s)",
                late * 1e3
            );
            assert_eq!(stop.reason, Some(StopReason::Silence));
        }
    }
}

#[test]
fn gated_audio_holds_all_of_each_sentence() {
    let samples = fixture();
    let speech = measured_speech_s(&samples);
    let run = CaptureRun::new(FIXTURE_RATE_HZ, VadConfig::default())
        .feed(&fixture_at(FIXTURE_RATE_HZ), 128);
    assert_eq!(run.utterances.len(), 2);
    let energy = |s: &[i16]| {
        s.iter()
            .map(|&x| f64::from(pcm::i16_to_f32(x)).powi(2))
            .sum::<f64>()
    };
    for (utterance, &(onset, offset)) in run.utterances.iter().zip(&speech) {
        let sentence = &samples[(onset * 24_000.0) as usize..(offset * 24_000.0) as usize];
        let kept = energy(utterance) / energy(sentence);
        assert!(
            kept > 0.99,
            "only {:.1} % of the sentence energy was sent",
            kept * 100.0
        );
        // Pre-roll + speech + hangover, the pre-roll counted back from the confirmation.
        let expected_s = f64::from(PREROLL_MS) / 1e3 + (offset - onset) + 0.5 - 0.03;
        let got_s = utterance.len() as f64 / 24_000.0;
        assert!(
            (got_s - expected_s).abs() <= 0.05,
            "utterance of {got_s:.3} s, expected ≈ {expected_s:.3} s"
        );
    }
}

/// Web Audio's render quantum, in device samples.
const RENDER_QUANTUM: usize = 128;

/// Render quanta from the user's voice onset over an audible answer to the player's first
/// silent quantum, with the page's defaults: the capture VAD confirms the barge-in after
/// `barge_in_onset_ms`, the page clears the player at once (modelled as before the next
/// quantum: the two port messages through the main thread are not counted), and the player
/// fades out within `FADE_MS`. Prints the figure (BENCHMARKS.md quotes it):
/// `cargo test -p audio barge_in -- --nocapture`.
#[test]
fn barge_in_silences_the_answer_within_the_onset_and_a_fade() {
    use crate::playback::{FADE_MS, Playback};
    use crate::test_support::sine_i16;

    let (onset_s, _) = measured_speech_s(&fixture())[0];
    let config = VadConfig::default();
    for rate_hz in [48_000, 44_100] {
        let quantum_ms = RENDER_QUANTUM as f64 * 1e3 / f64::from(rate_hz);
        let mut capture = crate::capture::Capture::new(rate_hz, config).unwrap();
        capture.set_assistant_audible(true);
        let mut player = Playback::new(rate_hz).unwrap();
        let answer = sine_i16(440.0, 24_000, 0.3, 24_000 * 2);
        assert_eq!(
            player.push(1, &answer),
            crate::playback::PushOutcome::Queued
        );
        let onset_quantum = (onset_s * f64::from(rate_hz)) as usize / RENDER_QUANTUM;
        let mut out = [0.0f32; RENDER_QUANTUM];
        let (mut cleared_at, mut silent_at) = (None, None);
        for (quantum, input) in fixture_at(rate_hz).chunks(RENDER_QUANTUM).enumerate() {
            if cleared_at.is_none() {
                capture.process(input);
                let started = capture
                    .events()
                    .iter()
                    .any(|e| matches!(e.event, crate::vad::VadEvent::SpeechStarted { .. }));
                if started {
                    assert!(quantum >= onset_quantum, "no barge-in before the voice");
                    player.clear();
                    cleared_at = Some(quantum);
                    continue;
                }
            }
            player.render(&mut out);
            if cleared_at.is_some() && out.iter().all(|&x| x == 0.0) {
                silent_at = Some(quantum);
                break;
            }
            if cleared_at.is_none() && quantum > onset_quantum + 2 {
                assert!(out.iter().any(|&x| x != 0.0), "the answer plays until then");
            }
        }
        let cleared_at = cleared_at.expect("the voice over the answer is a barge-in");
        let silent_at = silent_at.expect("the answer goes silent after the clear");
        let detect = cleared_at + 1 - onset_quantum;
        let fade = silent_at - cleared_at;
        let total = silent_at - onset_quantum;
        println!(
            "{rate_hz} Hz: voice onset → silent output {total} quanta ({:.0} ms): the VAD confirms \
             in {detect} ({:.0} ms), the fade takes {} more",
            total as f64 * quantum_ms,
            detect as f64 * quantum_ms,
            fade - 1
        );
        // The onset, the voice's rise from the envelope's threshold to the echo-guarded one
        // (a few frames), the fade and the resampler's millisecond, and the quanta they end in.
        let bound_ms = f64::from(config.barge_in_onset_ms + 4 * vad::FRAME_MS + FADE_MS + 1);
        assert!(
            total as f64 * quantum_ms <= bound_ms + 2.0 * quantum_ms,
            "{rate_hz} Hz: {total} quanta is more than the onset, the rise and the fade"
        );
    }
}
