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
//! The simulator is a load-test target, where synthesis was most of its CPU: hundreds of
//! sessions speak the same few replies. So [`speech`] keeps what it synthesized in a small
//! process-wide cache (least recently used first out, bounded in entries and bytes; the
//! output depends on nothing but text, voice and speed) and hands out shared [`Bytes`] that
//! streams slice without copying; concurrent requests for the same utterance wait for one
//! synthesis. A miss computes the whole utterance into one pre-sized buffer; the per-sample
//! loop does not allocate and needs one `sin_cos` (overtones by recurrence), the tremolo and
//! the peak scale coming from tables computed once. The bytes are exactly those of a direct
//! computation (tests pin them).

use std::collections::HashMap;
use std::f64::consts::{PI, TAU};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use tokio::sync::OnceCell;

use super::state::lock;

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
/// Most utterances [`speech`] keeps: a load test's sessions speak a few replies (per voice
/// and speed), a test suite a few dozen.
const CACHE_MAX_ENTRIES: usize = 64;
/// Most PCM bytes [`speech`] keeps: about 5.8 minutes of audio at 24 kHz. An utterance
/// larger than this is not kept at all (it would push out everything else).
const CACHE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Output amplitude per unit of the harmonic waveform, so the peak is [`PEAK_FULL_SCALE`].
static SCALE: LazyLock<f64> =
    LazyLock::new(|| PEAK_FULL_SCALE * f64::from(i16::MAX) / waveform_peak());
/// [`tremolo`] for every sample of the longest word at speed 1 (longer words, at slower
/// speeds, compute the rest).
static TREMOLO: LazyLock<Vec<f64>> =
    LazyLock::new(|| (0..samples_for(MAX_WORD_MS)).map(tremolo).collect());
/// What [`speech`] synthesized.
static CACHE: LazyLock<Mutex<SpeechCache>> =
    LazyLock::new(|| Mutex::new(SpeechCache::new(CACHE_MAX_ENTRIES, CACHE_MAX_BYTES)));

/// One piece of the utterance: a voiced word or a silence.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    samples: usize,
    /// Pitch at the start and at the end of a voiced word; `None` for silence.
    pitch_hz: Option<(f64, f64)>,
}

/// [`synthesize`], from the cache when this utterance was spoken recently: the bytes are the
/// same, shared. A miss synthesizes on the blocking pool; if the caller that started it stops
/// waiting, the next one starts again. `None` if the synthesis task failed.
pub(crate) async fn speech(text: &str, voice: &str, speed: f64) -> Option<Bytes> {
    let utterance = Utterance {
        text: text.to_owned(),
        voice: voice.to_owned(),
        speed_bits: speed.to_bits(),
    };
    let cell = lock(&CACHE).cell(&utterance);
    let pcm = cell
        .get_or_try_init(|| {
            let Utterance { text, voice, .. } = utterance.clone();
            tokio::task::spawn_blocking(move || Bytes::from(synthesize(&text, &voice, speed)))
        })
        .await
        .ok()?
        .clone();
    lock(&CACHE).settle(&utterance, pcm.len());
    Some(pcm)
}

/// What a synthesis depends on: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Utterance {
    text: String,
    voice: String,
    /// The speed's bits (`f64` is not `Eq`).
    speed_bits: u64,
}

/// One utterance in the cache: its audio once synthesized (callers that come while it is
/// being synthesized wait on the same cell).
#[derive(Debug)]
struct Entry {
    pcm: Arc<OnceCell<Bytes>>,
    /// The cache's clock when it was last asked for.
    last_used: u64,
    /// Its size once known (0 while it is synthesized).
    bytes: usize,
}

/// A least-recently-used map of utterances to their audio, bounded in entries and bytes.
/// Eviction scans every entry: there are a few dozen.
#[derive(Debug)]
struct SpeechCache {
    entries: HashMap<Utterance, Entry>,
    /// Sum of the entries' `bytes`.
    bytes: usize,
    /// Counts lookups, to order entries by use.
    clock: u64,
    max_entries: usize,
    max_bytes: usize,
}

impl SpeechCache {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            clock: 0,
            max_entries,
            max_bytes,
        }
    }

    /// The cell holding `utterance`'s audio (a new, empty one if it is not kept); marks it
    /// used.
    fn cell(&mut self, utterance: &Utterance) -> Arc<OnceCell<Bytes>> {
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(utterance) {
            entry.last_used = self.clock;
            return Arc::clone(&entry.pcm);
        }
        let pcm = Arc::new(OnceCell::new());
        let entry = Entry {
            pcm: Arc::clone(&pcm),
            last_used: self.clock,
            bytes: 0,
        };
        self.entries.insert(utterance.clone(), entry);
        self.evict();
        pcm
    }

    /// Counts the `bytes` of `utterance`'s finished synthesis (once) and evicts what no
    /// longer fits; an utterance larger than the whole budget is dropped instead.
    fn settle(&mut self, utterance: &Utterance, bytes: usize) {
        if bytes > self.max_bytes {
            if let Some(entry) = self.entries.remove(utterance) {
                self.bytes -= entry.bytes;
            }
            return;
        }
        if let Some(entry) = self.entries.get_mut(utterance)
            && entry.bytes == 0
        {
            entry.bytes = bytes;
            self.bytes += bytes;
        }
        self.evict();
    }

    /// Drops the least recently used entries until both bounds hold.
    fn evict(&mut self) {
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(utterance, _)| utterance.clone())
            else {
                return;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.bytes -= entry.bytes;
            }
        }
    }
}

/// Synthesizes `text` as PCM16 LE mono 24 kHz. `speed` (0.25–4.0) scales durations.
pub(crate) fn synthesize(text: &str, voice: &str, speed: f64) -> Vec<u8> {
    let segments = plan(text, voice, speed);
    let total: usize = segments.iter().map(|segment| segment.samples).sum();
    let mut pcm = Vec::with_capacity(total * BYTES_PER_SAMPLE);
    let scale = *SCALE;
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
/// sends it; the resampler is the proxy's and the browser's own (`client/audio`). At 24 kHz
/// the same bytes, not a copy.
pub(crate) fn at_rate(pcm: Bytes, rate_hz: u32) -> Bytes {
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
    Bytes::from(out)
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
    let tremolos: &[f64] = &TREMOLO;
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
        let tremolo = tremolos
            .get(index)
            .copied()
            .unwrap_or_else(|| tremolo(index));
        let value = harmonic_sum(*phase) * scale * fade_in * fade_out * tremolo;
        // |value| <= i16::MAX / 2 by construction; the cast saturates anyway.
        let sample = value.round() as i16;
        pcm.extend_from_slice(&sample.to_le_bytes());
    }
}

/// The syllable tremolo's gain at sample `index` of a word.
fn tremolo(index: usize) -> f64 {
    // Sample counts are far below 2^52: the conversion is exact.
    let i = index as f64;
    let rate = f64::from(SAMPLE_RATE_HZ);
    1.0 - SYLLABLE_DEPTH * 0.5 * (1.0 - (TAU * SYLLABLE_RATE_HZ * i / rate).cos())
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
    fn the_bytes_are_those_synthesis_always_gave() {
        // Length and FNV-1a of the output before the tables and the cache: optimizations
        // must not change a single sample.
        let pinned: [(&str, &str, f64, usize, u64); 5] = [
            (
                "Sure, here is a short answer. It has three sentences of about the usual \
                 length. That is all for now.",
                "marin",
                1.0,
                340_800,
                0x9666_88a2_cdd0_9bcd,
            ),
            (
                "Hello there. How are you doing today?",
                "coral",
                1.0,
                135_120,
                0x01cf_9a2a_a628_93f4,
            ),
            (
                "Hello there.",
                "alloy",
                0.25,
                203_520,
                0x4833_792b_6cd2_2194,
            ),
            (
                "Supercalifragilisticexpialidociousandevenlongerwords? a I, x!",
                "voice_custom",
                4.0,
                26_760,
                0x3a9e_349c_7777_6e07,
            ),
            (
                "Ünïcödé wörds; 123 — yes: no",
                "ash",
                1.37,
                66_920,
                0x3085_94e0_01cf_c616,
            ),
        ];
        for (text, voice, speed, bytes, hash) in pinned {
            let pcm = synthesize(text, voice, speed);
            assert_eq!((pcm.len(), fnv1a(&pcm)), (bytes, hash), "{text:?}");
        }
    }

    #[tokio::test]
    async fn repeated_speech_is_the_same_bytes_from_the_cache() {
        let text = "Cached speech, spoken twice.";
        let first = speech(text, "sage", 1.25).await.expect("synthesized");
        let again = speech(text, "sage", 1.25).await.expect("cached");
        assert_eq!(first, synthesize(text, "sage", 1.25));
        assert_eq!(again, first);
        assert_eq!(
            again.as_ptr(),
            first.as_ptr(),
            "shared, not synthesized again"
        );
        let other_voice = speech(text, "ash", 1.25).await.expect("synthesized");
        assert_eq!(other_voice, synthesize(text, "ash", 1.25));
    }

    fn utterance(text: &str) -> Utterance {
        Utterance {
            text: text.to_owned(),
            voice: "alloy".to_owned(),
            speed_bits: 1.0_f64.to_bits(),
        }
    }

    /// Puts `text` with `bytes` of audio in the cache.
    fn fill(cache: &mut SpeechCache, text: &str, bytes: usize) {
        let cell = cache.cell(&utterance(text));
        cell.set(Bytes::from(vec![0; bytes])).expect("a new cell");
        cache.settle(&utterance(text), bytes);
    }

    fn kept(cache: &SpeechCache, text: &str) -> bool {
        cache.entries.contains_key(&utterance(text))
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_beyond_its_entries() {
        let mut cache = SpeechCache::new(2, 1_000);
        fill(&mut cache, "a", 10);
        fill(&mut cache, "b", 10);
        assert!(cache.cell(&utterance("a")).initialized(), "a hit");
        fill(&mut cache, "c", 10);
        assert!(kept(&cache, "a") && kept(&cache, "c"));
        assert!(!kept(&cache, "b"), "b was used least recently");
        assert_eq!(cache.bytes, 20);
    }

    #[test]
    fn the_cache_keeps_within_its_bytes_and_skips_what_cannot_fit() {
        let mut cache = SpeechCache::new(10, 100);
        fill(&mut cache, "a", 60);
        fill(&mut cache, "b", 30);
        fill(&mut cache, "c", 30);
        assert!(!kept(&cache, "a") && kept(&cache, "b") && kept(&cache, "c"));
        assert_eq!(cache.bytes, 60);
        fill(&mut cache, "huge", 101);
        assert!(!kept(&cache, "huge"), "larger than the whole budget");
        assert!(
            kept(&cache, "b") && kept(&cache, "c"),
            "and it pushed nothing out"
        );
        assert_eq!(cache.bytes, 60);
        // Settling twice counts once.
        cache.settle(&utterance("b"), 30);
        assert_eq!(cache.bytes, 60);
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
