//! Per-quantum cost of the worklet DSP. Prints figures; never gates.
//!
//! `cargo bench -p audio`

use std::hint::black_box;

use audio::capture::Capture;
use audio::playback::Playback;
use audio::vad::VadConfig;
use criterion::{Criterion, criterion_group, criterion_main};

/// Samples in one Web Audio render quantum.
const QUANTUM: usize = 128;

/// A speech-like test signal: a 150 Hz harmonic series with a 4 Hz syllable envelope over
/// faint noise, so the VAD switches between idle and speaking as it would on a voice.
fn voice_like(rate: u32, seconds: usize) -> Vec<f32> {
    let mut seed = 1u32;
    (0..rate as usize * seconds)
        .map(|n| {
            let t = n as f32 / rate as f32;
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let envelope = (0.5 - 0.5 * (std::f32::consts::TAU * 4.0 * t).cos())
                * if t % 3.0 < 1.5 { 1.0 } else { 0.0 };
            let voice: f32 = (1..=8)
                .map(|k| (std::f32::consts::TAU * 150.0 * k as f32 * t).sin() / k as f32)
                .sum();
            0.1 * envelope * voice + 0.002 * noise
        })
        .collect()
}

fn capture_quantum(c: &mut Criterion) {
    for rate in [44_100, 48_000] {
        let signal = voice_like(rate, 6);
        let mut capture = Capture::new(rate, VadConfig::default()).unwrap();
        let mut quanta = signal.chunks_exact(QUANTUM).cycle();
        c.bench_function(&format!("capture quantum of {QUANTUM} at {rate} Hz"), |b| {
            b.iter(|| black_box(capture.process(black_box(quanta.next().unwrap()))))
        });
    }
}

fn playback_quantum(c: &mut Criterion) {
    for rate in [44_100, 48_000] {
        let pcm: Vec<i16> = voice_like(24_000, 2)
            .iter()
            .map(|&x| audio::pcm::f32_to_i16(x))
            .collect();
        let mut playback = Playback::new(rate).unwrap();
        let mut out = [0.0f32; QUANTUM];
        let mut response_id = 0;
        c.bench_function(&format!("playback render of {QUANTUM} at {rate} Hz"), |b| {
            b.iter(|| {
                // Keep the ring fed so every quantum really resamples audio.
                if playback.buffered_samples() < 4_800 {
                    response_id += 1;
                    playback.push(response_id, &pcm);
                }
                playback.render(black_box(&mut out));
                black_box(out[0])
            })
        });
    }
}

criterion_group!(benches, capture_quantum, playback_quantum);
criterion_main!(benches);
