//! Speech synthesis for `/v1/audio/speech`: turns text into a real, audible, voice-like
//! signal in the `pcm` format of docs/openai-wire.md §3.1 (24 kHz, 16-bit signed little-endian,
//! mono, no header), plus the header of the `wav` format.
//!
//! Each word becomes a buzzy harmonic tone (a fundamental and four overtones, like a sung
//! vowel) whose length follows its letters (~65 ms each), whose pitch depends on the word and
//! glides down (up before a `?`), with a smooth attack/release envelope and a gentle syllable
//! tremolo. Words are separated by short gaps, clauses and sentences by longer pauses. The
//! peak is −6 dBFS and every word starts and ends at zero, so there are no clicks. Everything
//! derives from the text, voice and speed: the same request always gives the same bytes.
//!
//! The whole utterance is computed once per request into one pre-sized buffer; the per-sample
//! loop does not allocate and needs two trigonometric calls (overtones by recurrence).

use std::f64::consts::{PI, TAU};

/// Output sample rate: the only rate of the `pcm` format.
pub(crate) const SAMPLE_RATE_HZ: u32 = 24_000;
/// Bytes per PCM16 sample.
pub(crate) const BYTES_PER_SAMPLE: usize = 2;
/// PCM16 bytes per millisecond at 24 kHz mono (48).
pub(crate) const BYTES_PER_MS: u64 = SAMPLE_RATE_HZ as u64 / 1000 * BYTES_PER_SAMPLE as u64;
/// Peak amplitude, as a fraction of full scale: −6 dBFS leaves headroom for any mixer.
const PEAK_FULL_SCALE: f64 = 0.5;
/// Spoken length per letter, roughly conversational English (~15 letters per second).
const MS_PER_LETTER: f64 = 65.0;
/// Shortest word, so "a" and "I" are still audible syllables.
const MIN_WORD_MS: f64 = 140.0;
/// Longest word, so a 40-letter token does not drone for seconds.
const MAX_WORD_MS: f64 = 900.0;
/// Gap between words.
const WORD_GAP_MS: f64 = 50.0;
/// Pause after `,` `;` `:`.
const CLAUSE_PAUSE_MS: f64 = 180.0;
/// Pause after `.` `!` `?`.
const SENTENCE_PAUSE_MS: f64 = 320.0;
/// Silence before the first word, as real TTS output starts with a breath of silence.
const LEAD_IN_MS: f64 = 40.0;
/// Fade-in at the start of each word (raised cosine).
const ATTACK_MS: f64 = 20.0;
/// Fade-out at the end of each word (raised cosine).
const RELEASE_MS: f64 = 30.0;
/// Syllable rhythm of the tremolo.
const SYLLABLE_RATE_HZ: f64 = 4.5;
/// How deep the tremolo dips (0 = none, 1 = to silence).
const SYLLABLE_DEPTH: f64 = 0.3;
/// Relative amplitudes of the fundamental and its overtones: a vowel-like buzz whose highest
/// overtone stays far below Nyquist for any pitch used here.
const HARMONICS: [f64; 5] = [1.0, 0.55, 0.32, 0.18, 0.1];
/// Lowest base pitch of a voice; the voice name picks one in `[MIN, MIN + RANGE)`.
const BASE_PITCH_MIN_HZ: f64 = 100.0;
/// Range of base pitches voices are spread over.
const BASE_PITCH_RANGE_HZ: u64 = 100;
/// Pitch at the end of a word relative to its start (declination).
const WORD_GLIDE_DOWN: f64 = 0.9;
/// Pitch at the end of a word before `?` relative to its start (question rise).
const WORD_GLIDE_UP: f64 = 1.12;
/// Resolution of the scan that finds the peak of one period of the harmonic waveform.
const PEAK_SCAN_POINTS: u32 = 4096;

/// One piece of the utterance: a voiced word or a silence.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    samples: usize,
    /// Pitch at the start and at the end of a voiced word; `None` for silence.
    pitch_hz: Option<(f64, f64)>,
}

/// Synthesizes `text` as PCM16 LE mono 24 kHz. `speed` (0.25–4.0) scales durations.
pub(crate) fn synthesize(text: &str, voice: &str, speed: f64) -> Vec<u8> {
    let segments = plan(text, voice, speed);
    let total: usize = segments.iter().map(|segment| segment.samples).sum();
    let mut pcm = Vec::with_capacity(total * BYTES_PER_SAMPLE);
    let scale = PEAK_FULL_SCALE * f64::from(i16::MAX) / waveform_peak();
    let mut phase = 0.0_f64;
    for segment in &segments {
        match segment.pitch_hz {
            None => pcm.resize(pcm.len() + segment.samples * BYTES_PER_SAMPLE, 0),
            Some((start_hz, end_hz)) => {
                render_word(
                    &mut pcm,
                    segment.samples,
                    start_hz,
                    end_hz,
                    scale,
                    &mut phase,
                );
            }
        }
    }
    pcm
}

/// The 44-byte RIFF header of a `wav` response holding `data_bytes` of PCM16 mono at `rate_hz`.
pub(crate) fn wav_header(data_bytes: u32, rate_hz: u32) -> [u8; 44] {
    const CHANNELS: u16 = 1;
    const BITS_PER_SAMPLE: u16 = 16;
    let block_align = CHANNELS * BITS_PER_SAMPLE / 8;
    let byte_rate = rate_hz * u32::from(block_align);
    let mut header = [0_u8; 44];
    let fields: [&[u8]; 13] = [
        b"RIFF",
        &data_bytes.saturating_add(36).to_le_bytes(),
        b"WAVEfmt ",
        &16_u32.to_le_bytes(),
        &1_u16.to_le_bytes(), // PCM
        &CHANNELS.to_le_bytes(),
        &rate_hz.to_le_bytes(),
        &byte_rate.to_le_bytes(),
        &block_align.to_le_bytes(),
        &BITS_PER_SAMPLE.to_le_bytes(),
        b"data",
        &data_bytes.to_le_bytes(),
        &[],
    ];
    let mut at = 0;
    for field in fields {
        header[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    header
}

/// `pcm` (PCM16 mono 24 kHz) at `rate_hz` instead, as a server that speaks at another rate
/// sends it; the resampler is the proxy's and the browser's own (`client/audio`).
pub(crate) fn at_rate(pcm: Vec<u8>, rate_hz: u32) -> Vec<u8> {
    if rate_hz == SAMPLE_RATE_HZ {
        return pcm;
    }
    let Ok(mut resampler) = audio::resample::Resampler::new(SAMPLE_RATE_HZ, rate_hz) else {
        return pcm;
    };
    let input: Vec<f32> = pcm
        .chunks_exact(BYTES_PER_SAMPLE)
        .map(|s| audio::pcm::i16_to_f32(i16::from_le_bytes([s[0], s[1]])))
        .collect();
    let mut out = Vec::with_capacity(pcm.len() * rate_hz as usize / SAMPLE_RATE_HZ as usize + 2);
    resampler.process(&input, |y| {
        out.extend_from_slice(&audio::pcm::f32_to_i16(y).to_le_bytes());
    });
    out
}

/// Duration of `bytes` of PCM16 mono 24 kHz, in milliseconds.
pub(crate) fn duration_ms(bytes: usize) -> u64 {
    let samples = u64::try_from(bytes / BYTES_PER_SAMPLE).unwrap_or(u64::MAX);
    samples * 1000 / u64::from(SAMPLE_RATE_HZ)
}

/// Splits the text into voiced words and pauses.
fn plan(text: &str, voice: &str, speed: f64) -> Vec<Segment> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    // The hash is reduced below 100 first, so the conversion is exact.
    let base_hz = BASE_PITCH_MIN_HZ + (fnv1a(voice.as_bytes()) % BASE_PITCH_RANGE_HZ) as f64;
    let silence = |ms: f64| Segment {
        samples: samples_for(ms / speed),
        pitch_hz: None,
    };
    let mut segments = vec![silence(LEAD_IN_MS)];
    for word in text.split_whitespace() {
        let letters = word.chars().filter(|ch| ch.is_alphanumeric()).count();
        if letters > 0 {
            // Letter counts are small, so the conversion is exact.
            let ms = (letters as f64 * MS_PER_LETTER).clamp(MIN_WORD_MS, MAX_WORD_MS);
            let lower = word.to_lowercase();
            // -3..=4 semitones around the voice's base pitch.
            let semitones = (fnv1a(lower.as_bytes()) % 8) as f64 - 3.0;
            let start_hz = base_hz * (semitones / 12.0).exp2();
            let glide = if word.ends_with('?') {
                WORD_GLIDE_UP
            } else {
                WORD_GLIDE_DOWN
            };
            segments.push(Segment {
                samples: samples_for(ms / speed),
                pitch_hz: Some((start_hz, start_hz * glide)),
            });
        }
        let pause = match word.chars().last() {
            Some('.' | '!' | '?') => SENTENCE_PAUSE_MS,
            Some(',' | ';' | ':') => CLAUSE_PAUSE_MS,
            _ => WORD_GAP_MS,
        };
        segments.push(silence(pause));
    }
    segments
}

/// Appends one voiced word of `samples` samples to `pcm`.
fn render_word(
    pcm: &mut Vec<u8>,
    samples: usize,
    start_hz: f64,
    end_hz: f64,
    scale: f64,
    phase: &mut f64,
) {
    let rate = f64::from(SAMPLE_RATE_HZ);
    let attack = samples_for(ATTACK_MS).min(samples / 2).max(1);
    let release = samples_for(RELEASE_MS).min(samples - attack).max(1);
    // Sample counts are far below 2^52: conversions to f64 are exact.
    let length = samples as f64;
    for index in 0..samples {
        let i = index as f64;
        let frequency = start_hz + (end_hz - start_hz) * (i / length);
        *phase = (*phase + TAU * frequency / rate) % TAU;
        let fade_in = if index < attack {
            let progress = i / attack as f64;
            0.5 - 0.5 * (PI * progress).cos()
        } else {
            1.0
        };
        let remaining = samples - index;
        let fade_out = if remaining <= release {
            let progress = (remaining - 1) as f64 / release as f64;
            0.5 - 0.5 * (PI * progress).cos()
        } else {
            1.0
        };
        let tremolo =
            1.0 - SYLLABLE_DEPTH * 0.5 * (1.0 - (TAU * SYLLABLE_RATE_HZ * i / rate).cos());
        let value = harmonic_sum(*phase) * scale * fade_in * fade_out * tremolo;
        // |value| <= i16::MAX / 2 by construction; the cast saturates anyway.
        let sample = value.round() as i16;
        pcm.extend_from_slice(&sample.to_le_bytes());
    }
}

/// `Σ a_k sin(kφ)`, with `sin(kφ)` by the Chebyshev recurrence
/// `sin((k+1)φ) = 2 cos φ · sin(kφ) − sin((k−1)φ)`.
fn harmonic_sum(phase: f64) -> f64 {
    let (sin, cos) = phase.sin_cos();
    let mut previous = 0.0; // sin(0·φ)
    let mut current = sin; // sin(1·φ)
    let mut sum = 0.0;
    for amplitude in HARMONICS {
        sum += amplitude * current;
        let next = 2.0 * cos * current - previous;
        previous = current;
        current = next;
    }
    sum
}

/// Peak of `|harmonic_sum|` over one period, so the output peak is exactly
/// [`PEAK_FULL_SCALE`].
fn waveform_peak() -> f64 {
    (0..PEAK_SCAN_POINTS)
        .map(|point| harmonic_sum(TAU * f64::from(point) / f64::from(PEAK_SCAN_POINTS)).abs())
        .fold(f64::MIN_POSITIVE, f64::max)
}

/// Whole samples in `ms` milliseconds.
fn samples_for(ms: f64) -> usize {
    // Durations here are non-negative and at most seconds long.
    (ms.max(0.0) * f64::from(SAMPLE_RATE_HZ) / 1000.0).round() as usize
}

/// FNV-1a: a tiny hash that is stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(pcm: &[u8]) -> Vec<i16> {
        pcm.chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            .collect()
    }

    #[test]
    fn same_text_same_bytes_and_longer_text_longer_audio() {
        let short = synthesize("Hello there.", "coral", 1.0);
        assert_eq!(short, synthesize("Hello there.", "coral", 1.0));
        let long = synthesize("Hello there. How are you doing today?", "coral", 1.0);
        assert!(long.len() > short.len() * 2);
        assert_ne!(synthesize("Hello there.", "alloy", 1.0), short);
        assert!(synthesize("Hello there.", "coral", 2.0).len() < short.len());
    }

    #[test]
    fn peak_is_about_minus_six_dbfs_and_there_are_no_clicks() {
        let pcm = samples(&synthesize(
            "Sure, here's the answer to your question!",
            "ash",
            1.0,
        ));
        let peak = pcm
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .expect("non-empty audio");
        let peak_dbfs = 20.0 * (f64::from(peak) / f64::from(i16::MAX)).log10();
        assert!((-7.0..=-5.9).contains(&peak_dbfs), "peak {peak_dbfs} dBFS");
        let largest_step = pcm
            .windows(2)
            .map(|pair| (i32::from(pair[1]) - i32::from(pair[0])).abs())
            .max()
            .expect("at least two samples");
        assert!(largest_step < 4_000, "step of {largest_step} is a click");
        assert_eq!(pcm.first(), Some(&0));
        assert!(pcm.last().is_some_and(|last| last.abs() < 50));
    }

    #[test]
    fn length_follows_letters() {
        // 40 ms lead-in, 10 letters, gap after each word.
        let pcm = synthesize("abcde fghij", "alloy", 1.0);
        let ms = duration_ms(pcm.len());
        assert!((700..=900).contains(&ms), "{ms} ms");
    }

    #[test]
    fn wav_header_describes_the_data() {
        let header = wav_header(48_000, SAMPLE_RATE_HZ);
        assert_eq!(&header[..4], b"RIFF");
        assert_eq!(&header[36..40], b"data");
        assert_eq!(
            u32::from_le_bytes([header[40], header[41], header[42], header[43]]),
            48_000
        );
        assert_eq!(
            u32::from_le_bytes([header[24], header[25], header[26], header[27]]),
            24_000
        );
    }
}
