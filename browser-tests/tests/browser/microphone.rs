//! The fake microphones: WAV files made at test time, 48 kHz mono PCM16.
//!
//! Speech comes from espeak-ng (resampled, trimmed and normalized by sox), tones and the quiet
//! room noise between them are synthesized here. Chromium plays the file once from the moment
//! the page opens the microphone, and resamples it to the AudioContext's rate.

use std::path::{Path, PathBuf};
use std::process::Command;

use proxy::wav::Wav;

use super::artifacts_dir;

/// The rate of the files.
pub(crate) const FILE_RATE_HZ: u32 = 48_000;

/// Level of the quiet room noise between the parts, dBFS (RMS of white noise).
const ROOM_NOISE_DBFS: f64 = -65.0;

/// One part of a microphone recording.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part<'a> {
    /// Room noise only, for this many seconds.
    Quiet(f64),
    /// These words, spoken by espeak-ng (peak −3 dBFS).
    Speech(&'a str),
    /// A sine tone.
    Tone {
        /// Frequency, Hz.
        hz: f64,
        /// Length, seconds.
        seconds: f64,
        /// Peak level, dBFS.
        peak_dbfs: f64,
    },
}

/// Writes `target/e2e-browser/microphone/NAME.wav` from `parts`, in order.
pub(crate) fn microphone(name: &str, parts: &[Part<'_>]) -> PathBuf {
    let dir = artifacts_dir().join("microphone");
    std::fs::create_dir_all(&dir).expect("create the microphone dir");
    let mut noise = Noise::new(name.len() as u64 + 1);
    let mut samples: Vec<i16> = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        match *part {
            Part::Quiet(seconds) => {
                let count = (seconds * f64::from(FILE_RATE_HZ)).round() as usize;
                samples.extend((0..count).map(|_| noise.sample()));
            }
            Part::Speech(words) => {
                let speech = speak(words, &dir.join(format!("{name}-{index}")));
                samples.extend(speech.iter().map(|s| s.saturating_add(noise.sample())));
            }
            Part::Tone {
                hz,
                seconds,
                peak_dbfs,
            } => {
                let amplitude = 32767.0 * 10f64.powf(peak_dbfs / 20.0);
                let count = (seconds * f64::from(FILE_RATE_HZ)).round() as usize;
                samples.extend((0..count).map(|n| {
                    let t = n as f64 / f64::from(FILE_RATE_HZ);
                    (amplitude * (std::f64::consts::TAU * hz * t).sin()).round() as i16
                }));
            }
        }
    }
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let path = dir.join(format!("{name}.wav"));
    std::fs::write(&path, Wav::encode_mono(FILE_RATE_HZ, &pcm)).expect("write the WAV");
    path
}

/// `words` as 48 kHz mono samples, silence trimmed at both ends, peak at −3 dBFS.
fn speak(words: &str, stem: &Path) -> Vec<i16> {
    let raw = stem.with_extension("espeak.wav");
    let ready = stem.with_extension("speech.wav");
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "160", "-w"])
        .arg(&raw)
        .arg(words));
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", &FILE_RATE_HZ.to_string(), "-c", "1", "-b", "16"])
        .arg(&ready)
        .args(["silence", "1", "0.01", "0.3%", "reverse"])
        .args(["silence", "1", "0.01", "0.3%", "reverse"])
        .args(["gain", "-n", "-3"]));
    let wav = Wav::parse(&std::fs::read(&ready).expect("read the sox output"))
        .expect("sox writes 16-bit PCM");
    assert_eq!((wav.sample_rate_hz, wav.channels), (FILE_RATE_HZ, 1));
    wav.samples
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?} runs (install espeak-ng and sox): {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deterministic white noise at [`ROOM_NOISE_DBFS`].
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn sample(&mut self) -> i16 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let uniform =
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        // Uniform in [-a, a] has RMS a/√3.
        let rms = 32767.0 * 10f64.powf(ROOM_NOISE_DBFS / 20.0);
        ((uniform * 2.0 - 1.0) * rms * 3f64.sqrt()).round() as i16
    }
}
