//! Streaming rational polyphase FIR resampler (Kaiser-windowed sinc).
//!
//! One type serves both directions: device rate → 24 kHz for capture and 24 kHz → device rate
//! for playback. The ratio is reduced by the gcd to `L/M` (`up`/`down`); conceptually the
//! input is zero-stuffed by `L`, low-pass filtered and decimated by `M`, but only the filter
//! taps that meet real input samples are ever computed: each output is one dot product of
//! `taps` input samples with one *phase* row of the prototype filter.
//!
//! * Phase accounting is an exact integer (`phase` counts `1/L` input samples), so the output
//!   count over any run is exactly `ceil(inputs · L / M)`: no drift, ever.
//! * Coefficients are stored phase-major and the input history twice in a row, so every dot
//!   product reads two contiguous slices.
//! * When `L` is larger than [`MAX_EXACT_PHASES`] (only for odd device rates such as 44 101 Hz)
//!   the table holds [`INTERPOLATED_PHASES`] + 1 rows and the coefficients for the exact phase
//!   are linearly interpolated between the two nearest rows, which bounds memory and set-up
//!   time for any integer rate.
//! * All buffers are allocated in [`Resampler::new`]; processing never allocates.
//!
//! Filter design: the cutoff and transition are fixed fractions of the *lower* rate's Nyquist
//! frequency, and the filter spans [`FILTER_SPAN_SAMPLES_AT_LOWER_RATE`] samples of that lower
//! rate. For a 24 kHz side that gives a flat passband to 10 kHz and ≥ 80 dB rejection from
//! 13 kHz (measured in the tests below).

use alloc::boxed::Box;
use alloc::vec;
use core::fmt;

use crate::math;

/// Filter length measured in samples of the lower of the two rates. With β = 8 a Kaiser window
/// needs about 5.1 / span of that rate for its transition band: 48 puts the band between
/// ≈ 10.2 kHz and ≈ 12.8 kHz for a 24 kHz side, i.e. flat to 10 kHz and ≥ 80 dB from 13 kHz.
pub const FILTER_SPAN_SAMPLES_AT_LOWER_RATE: f64 = 48.0;

/// Kaiser window shape: β = 8 gives ≈ 80 dB stopband sidelobes, comfortably past the 60 dB
/// needed to keep a 13–20 kHz whistle out of the 24 kHz stream.
pub const KAISER_BETA: f64 = 8.0;

/// −6 dB cutoff as a fraction of the lower rate's Nyquist frequency: centred in the 10–13 kHz
/// gap (11.5 kHz for a 24 kHz side) so both the passband and the stopband spec have margin.
pub const CUTOFF_FRACTION_OF_LOWER_NYQUIST: f64 = 0.958;

/// Taps per phase are rounded up to a multiple of this so the dot product can run four
/// independent accumulators without a remainder loop (`dot` writes the four out).
const TAP_ALIGNMENT: usize = 4;

/// Largest `L` that gets one exact coefficient row per phase. Every common device rate fits
/// (the largest is 11 025 Hz → 24 kHz with L = 320); beyond this the table would grow without
/// bound for odd rates (44 101 Hz has L = 24 000).
pub const MAX_EXACT_PHASES: u32 = 512;

/// Rows in the interpolated table used when `L` > [`MAX_EXACT_PHASES`]. Linear interpolation
/// between 512 rows leaves an error near −100 dB, far below the filter's own stopband.
pub const INTERPOLATED_PHASES: u32 = 512;

/// Lowest accepted rate: below this nothing useful for speech is left and the filter would be
/// asked to span very few samples.
pub const MIN_RATE_HZ: u32 = 3_000;

/// Highest accepted rate: 4 × 192 kHz; keeps the taps per phase (and so the cost) bounded.
pub const MAX_RATE_HZ: u32 = 768_000;

/// A sample rate outside [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedRate {
    /// The rejected rate.
    pub rate_hz: u32,
}

impl fmt::Display for UnsupportedRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unsupported sample rate {} Hz (supported: {MIN_RATE_HZ}..={MAX_RATE_HZ})",
            self.rate_hz
        )
    }
}

impl core::error::Error for UnsupportedRate {}

/// Streaming `input_rate → output_rate` converter. See the module docs for the design.
pub struct Resampler {
    input_rate_hz: u32,
    output_rate_hz: u32,
    /// `L`: interpolation factor of the reduced ratio.
    up: u32,
    /// `M`: decimation factor of the reduced ratio.
    down: u32,
    /// Input samples per dot product.
    taps: usize,
    /// Coefficient rows in `coeffs` that map phases (excluding the extra interpolation row).
    table_phases: u32,
    /// Whether rows are interpolated (`L` > [`MAX_EXACT_PHASES`]).
    interpolated: bool,
    /// Phase-major rows of `taps` coefficients, each ordered oldest input first.
    coeffs: Box<[f32]>,
    /// The last `taps` inputs, stored twice so `history[newest + 1 ..][..taps]` is always the
    /// whole window, oldest first.
    history: Box<[f32]>,
    /// Index in the first copy of `history` of the newest input.
    newest: usize,
    /// Position of the next output after the newest input, in `1/L` input samples.
    /// `phase >= up` means that input has no more outputs: push the next one.
    phase: u32,
    /// Equal rates: samples pass through untouched (nothing to band-limit, and no filter
    /// delay to pay).
    passthrough: bool,
}

impl fmt::Debug for Resampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resampler")
            .field("input_rate_hz", &self.input_rate_hz)
            .field("output_rate_hz", &self.output_rate_hz)
            .field("up", &self.up)
            .field("down", &self.down)
            .field("taps", &self.taps)
            .field("interpolated", &self.interpolated)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// Builds the filter for `input_rate_hz → output_rate_hz`.
    pub fn new(input_rate_hz: u32, output_rate_hz: u32) -> Result<Self, UnsupportedRate> {
        for rate_hz in [input_rate_hz, output_rate_hz] {
            if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate_hz) {
                return Err(UnsupportedRate { rate_hz });
            }
        }
        let divisor = gcd(input_rate_hz, output_rate_hz);
        let up = output_rate_hz / divisor;
        let down = input_rate_hz / divisor;
        let lower_rate_hz = input_rate_hz.min(output_rate_hz);

        let span_in_inputs =
            FILTER_SPAN_SAMPLES_AT_LOWER_RATE * f64::from(input_rate_hz) / f64::from(lower_rate_hz);
        let taps = math::ceil_to_usize(span_in_inputs).next_multiple_of(TAP_ALIGNMENT);

        let interpolated = up > MAX_EXACT_PHASES;
        let table_phases = if interpolated {
            INTERPOLATED_PHASES
        } else {
            up
        };
        let rows = table_phases as usize + usize::from(interpolated);
        // Cutoff in cycles per input sample.
        let cutoff = CUTOFF_FRACTION_OF_LOWER_NYQUIST * 0.5 * f64::from(lower_rate_hz)
            / f64::from(input_rate_hz);
        let coeffs = design_rows(taps, table_phases, rows, cutoff);

        Ok(Self {
            input_rate_hz,
            output_rate_hz,
            up,
            down,
            taps,
            table_phases,
            interpolated,
            coeffs,
            history: vec![0.0; 2 * taps].into_boxed_slice(),
            newest: 0,
            phase: up,
            passthrough: input_rate_hz == output_rate_hz,
        })
    }

    /// Input rate in Hz.
    pub fn input_rate_hz(&self) -> u32 {
        self.input_rate_hz
    }

    /// Output rate in Hz.
    pub fn output_rate_hz(&self) -> u32 {
        self.output_rate_hz
    }

    /// The reduced ratio `(L, M)`: `output/input = L/M`.
    pub fn ratio(&self) -> (u32, u32) {
        (self.up, self.down)
    }

    /// Input samples in each dot product. Feeding this many zeros flushes the filter completely.
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// Group delay in input samples (the filter is linear-phase).
    pub fn delay_input_samples(&self) -> f64 {
        if self.passthrough {
            return 0.0;
        }
        filter_centre(self.taps, self.table_phases)
    }

    /// Upper bound on the outputs that `input_len` inputs can produce in one [`Self::process`].
    pub fn max_output_len(&self, input_len: usize) -> usize {
        (input_len as u64 * u64::from(self.up)).div_ceil(u64::from(self.down)) as usize + 1
    }

    /// Forgets all history: the next input starts a fresh stream.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.newest = 0;
        self.phase = self.up;
    }

    /// Push model (capture): consumes every input and hands each output to `emit` in order.
    #[inline]
    pub fn process(&mut self, input: &[f32], mut emit: impl FnMut(f32)) {
        if self.passthrough {
            input.iter().for_each(|&x| emit(x));
            return;
        }
        for &x in input {
            self.push(x);
            while let Some(y) = self.next_output() {
                emit(y);
            }
        }
    }

    /// Pull model (playback): fills all of `out`, asking `next_input` for inputs as needed.
    #[inline]
    pub fn pull(&mut self, out: &mut [f32], mut next_input: impl FnMut() -> f32) {
        if self.passthrough {
            out.iter_mut().for_each(|y| *y = next_input());
            return;
        }
        for y in out {
            *y = loop {
                if let Some(v) = self.next_output() {
                    break v;
                }
                self.push(next_input());
            };
        }
    }

    /// Appends one input. Only called once the previous input has no outputs left.
    #[inline]
    fn push(&mut self, x: f32) {
        debug_assert!(
            self.phase >= self.up,
            "outputs of the previous input not drained"
        );
        self.phase -= self.up;
        self.newest = if self.newest + 1 == self.taps {
            0
        } else {
            self.newest + 1
        };
        self.history[self.newest] = x;
        self.history[self.newest + self.taps] = x;
    }

    /// The next output of the newest input, if it has one left.
    #[inline]
    fn next_output(&mut self) -> Option<f32> {
        let phase = self.next_phase()?;
        Some(self.output_at(phase))
    }

    /// Phase accounting alone: the phase of the next output of the newest input, if any.
    #[inline]
    fn next_phase(&mut self) -> Option<u32> {
        if self.phase >= self.up {
            return None;
        }
        let phase = self.phase;
        self.phase += self.down;
        Some(phase)
    }

    /// The output at `phase` (in `1/L` input samples after the newest input).
    #[inline]
    fn output_at(&self, phase: u32) -> f32 {
        let window = &self.history[self.newest + 1..self.newest + 1 + self.taps];
        if self.interpolated {
            let position = u64::from(phase) * u64::from(self.table_phases);
            let row = (position / u64::from(self.up)) as usize;
            let frac = (position % u64::from(self.up)) as f32 / self.up as f32;
            let a = dot(self.row(row), window);
            let b = dot(self.row(row + 1), window);
            a + (b - a) * frac
        } else {
            dot(self.row(phase as usize), window)
        }
    }

    #[inline]
    fn row(&self, index: usize) -> &[f32] {
        &self.coeffs[index * self.taps..][..self.taps]
    }
}

/// Centre of the prototype in input samples, chosen so the exact-phase table is symmetric.
fn filter_centre(taps: usize, phases: u32) -> f64 {
    (taps as f64 * f64::from(phases) - 1.0) / (2.0 * f64::from(phases))
}

/// Rows `r = 0..rows` of the windowed sinc sampled at input offsets `i + r / phases`, each
/// reversed to oldest-first order and normalised to unit DC gain so no phase adds a ripple.
fn design_rows(taps: usize, phases: u32, rows: usize, cutoff: f64) -> Box<[f32]> {
    let centre = filter_centre(taps, phases);
    let half_width = taps as f64 / 2.0;
    let beta_squared = KAISER_BETA * KAISER_BETA;
    let window_norm = bessel_i0_of_square(beta_squared);
    let mut coeffs = vec![0.0f32; rows * taps];
    let mut row_f64 = vec![0.0f64; taps];
    for (r, row) in coeffs.chunks_exact_mut(taps).enumerate() {
        let offset = r as f64 / f64::from(phases);
        for (i, c) in row_f64.iter_mut().enumerate() {
            // Tap `i` multiplies the input `i` samples older than the newest one.
            let t = i as f64 + offset - centre;
            let x = t / half_width;
            let window = if x.abs() >= 1.0 {
                0.0
            } else {
                bessel_i0_of_square(beta_squared * (1.0 - x * x)) / window_norm
            };
            *c = 2.0 * cutoff * sinc(2.0 * cutoff * t) * window;
        }
        let sum: f64 = row_f64.iter().sum();
        for (dst, &c) in row.iter_mut().rev().zip(&row_f64) {
            *dst = (c / sum) as f32;
        }
    }
    coeffs.into_boxed_slice()
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        math::sin_pi(x) / (core::f64::consts::PI * x)
    }
}

/// Modified Bessel function of the first kind, order 0, of `√x2` (power series; converges fast
/// for the arguments a Kaiser window uses). The series needs only the square, so the window's
/// `β·√(1 − x²)` never takes a root.
fn bessel_i0_of_square(x2: f64) -> f64 {
    let quarter_x2 = x2 / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= quarter_x2 / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// Dot product with four independent accumulators (lengths are multiples of [`TAP_ALIGNMENT`]),
/// which lets the CPU overlap the multiply-adds instead of serialising on one sum. The four
/// lanes are written out: as an inner loop, the size-optimised wasm build kept it a loop and
/// ran at half speed.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (mut acc0, mut acc1, mut acc2, mut acc3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for (ca, cb) in a
        .chunks_exact(TAP_ALIGNMENT)
        .zip(b.chunks_exact(TAP_ALIGNMENT))
    {
        acc0 += ca[0] * cb[0];
        acc1 += ca[1] * cb[1];
        acc2 += ca[2] * cb[2];
        acc3 += ca[3] * cb[3];
    }
    (acc0 + acc1) + (acc2 + acc3)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{db, sine, tone_amplitude};

    const TARGET_HZ: u32 = 24_000;
    /// Test tones' amplitude: loud but clear of clipping.
    const AMPLITUDE: f32 = 0.5;

    /// Resamples 0.5 s of a tone and returns its level at the output (same frequency, or its
    /// alias when `measure_hz` differs), in dB relative to the input amplitude.
    fn gain_db(input_rate: u32, output_rate: u32, tone_hz: f64, measure_hz: f64) -> f64 {
        let mut rs = Resampler::new(input_rate, output_rate).unwrap();
        let input = sine(tone_hz, input_rate, AMPLITUDE, input_rate as usize / 2);
        let mut out = Vec::new();
        for quantum in input.chunks(128) {
            rs.process(quantum, |y| out.push(y));
        }
        // Skip the first 50 ms so the filter has settled.
        let settled = &out[output_rate as usize / 20..];
        db(tone_amplitude(settled, measure_hz, output_rate) / f64::from(AMPLITUDE))
    }

    /// Where a tone at `hz` lands after sampling at `rate`.
    fn alias_hz(hz: f64, rate: u32) -> f64 {
        let rate = f64::from(rate);
        let folded = hz % rate;
        if folded > rate / 2.0 {
            rate - folded
        } else {
            folded
        }
    }

    #[test]
    fn equal_rates_pass_samples_through_untouched_and_without_delay() {
        let mut rs = Resampler::new(TARGET_HZ, TARGET_HZ).unwrap();
        assert_eq!(rs.delay_input_samples(), 0.0);
        let input = sine(1_000.0, TARGET_HZ, AMPLITUDE, 300);
        let mut out = Vec::new();
        rs.process(&input, |y| out.push(y));
        assert_eq!(out, input);
        let mut pulled = vec![0.0; 300];
        let mut next = input.iter().copied();
        rs.pull(&mut pulled, || next.next().unwrap_or_default());
        assert_eq!(pulled, input);
    }

    #[test]
    fn ratios_are_reduced_by_gcd() {
        let ratio = |i, o| Resampler::new(i, o).unwrap().ratio();
        assert_eq!(ratio(48_000, TARGET_HZ), (1, 2));
        assert_eq!(ratio(44_100, TARGET_HZ), (80, 147));
        assert_eq!(ratio(16_000, TARGET_HZ), (3, 2));
        assert_eq!(ratio(22_050, TARGET_HZ), (160, 147));
        assert_eq!(ratio(96_000, TARGET_HZ), (1, 4));
        assert_eq!(ratio(TARGET_HZ, 44_100), (147, 80));
        assert_eq!(ratio(TARGET_HZ, 48_000), (2, 1));
    }

    #[test]
    fn rejects_rates_out_of_range() {
        assert_eq!(
            Resampler::new(0, TARGET_HZ).unwrap_err(),
            UnsupportedRate { rate_hz: 0 }
        );
        assert!(Resampler::new(TARGET_HZ, 10_000_000).is_err());
        assert!(Resampler::new(MIN_RATE_HZ, MAX_RATE_HZ).is_ok());
    }

    #[test]
    fn passband_is_flat_to_10_khz_for_capture_rates() {
        for input_rate in [44_100, 48_000, 96_000, 22_050, 44_101] {
            for tone in [100.0, 1_000.0, 4_000.0, 8_000.0, 10_000.0] {
                let g = gain_db(input_rate, TARGET_HZ, tone, tone);
                assert!(g.abs() < 1.0, "{input_rate} Hz in, {tone} Hz: {g:.2} dB");
            }
        }
    }

    #[test]
    fn passband_of_16_khz_input_is_flat_below_its_nyquist() {
        for tone in [100.0, 1_000.0, 4_000.0, 6_500.0] {
            let g = gain_db(16_000, TARGET_HZ, tone, tone);
            assert!(g.abs() < 1.0, "16 kHz in, {tone} Hz: {g:.2} dB");
        }
        // 7 kHz's image at 9 kHz must not leak into the 24 kHz stream.
        let image = gain_db(16_000, TARGET_HZ, 7_000.0, 9_000.0);
        assert!(
            image < -60.0,
            "16 kHz in, image of 7 kHz at 9 kHz: {image:.1} dB"
        );
    }

    #[test]
    fn tones_above_13_khz_are_rejected_by_60_db_at_24_khz() {
        for input_rate in [44_100, 48_000, 96_000, 44_101] {
            for tone in [13_000.0, 14_000.0, 16_000.0, 20_000.0] {
                let alias = alias_hz(tone, TARGET_HZ);
                let g = gain_db(input_rate, TARGET_HZ, tone, alias);
                assert!(
                    g < -60.0,
                    "{input_rate} Hz in, {tone} Hz (alias {alias} Hz): {g:.1} dB"
                );
            }
        }
    }

    #[test]
    fn upsampler_passband_is_flat_and_images_are_rejected() {
        for output_rate in [44_100, 48_000] {
            for tone in [100.0, 1_000.0, 4_000.0, 8_000.0, 10_000.0] {
                let g = gain_db(TARGET_HZ, output_rate, tone, tone);
                assert!(g.abs() < 1.0, "24k → {output_rate}, {tone} Hz: {g:.2} dB");
                // Zero-stuffing would put an image at 24 kHz − tone.
                let image = gain_db(TARGET_HZ, output_rate, tone, f64::from(TARGET_HZ) - tone);
                assert!(
                    image < -60.0,
                    "24k → {output_rate}, image of {tone} Hz: {image:.1} dB"
                );
            }
        }
    }

    /// Feeds `seconds` of silence in 128-sample quanta through [`Resampler::process`] and
    /// counts the outputs.
    fn count_outputs(input_rate: u32, output_rate: u32, seconds: usize) -> usize {
        let mut rs = Resampler::new(input_rate, output_rate).unwrap();
        let quantum = [0.0f32; 128];
        let total_in = input_rate as usize * seconds;
        let mut fed = 0;
        let mut produced = 0usize;
        while fed < total_in {
            let n = (total_in - fed).min(quantum.len());
            rs.process(&quantum[..n], |_| produced += 1);
            fed += n;
        }
        produced
    }

    const DRIFT_PAIRS: [(u32, u32); 4] = [
        (44_100, TARGET_HZ),
        (48_000, TARGET_HZ),
        (TARGET_HZ, 44_100),
        (TARGET_HZ, 48_000),
    ];

    /// Ten minutes of audio in 128-sample quanta produce exactly the rate-ratio count (the
    /// crate is optimised in test builds, so this runs in every `cargo test`).
    #[test]
    fn output_count_never_drifts_over_ten_minutes() {
        const SECONDS: usize = 600;
        for (input_rate, output_rate) in DRIFT_PAIRS {
            let produced = count_outputs(input_rate, output_rate, SECONDS);
            assert_eq!(
                produced,
                output_rate as usize * SECONDS,
                "{input_rate} → {output_rate}"
            );
        }
    }

    #[test]
    fn pull_and_process_agree() {
        let input = sine(440.0, TARGET_HZ, AMPLITUDE, 4_800);
        let mut pushed = Vec::new();
        Resampler::new(TARGET_HZ, 44_100)
            .unwrap()
            .process(&input, |y| pushed.push(y));
        let mut pulled = vec![0.0; pushed.len()];
        let mut source = input.iter().copied();
        Resampler::new(TARGET_HZ, 44_100)
            .unwrap()
            .pull(&mut pulled, || source.next().unwrap_or(0.0));
        assert_eq!(pushed, pulled);
    }

    #[test]
    fn zeros_flush_the_filter_to_silence_and_reset_forgets_history() {
        let mut rs = Resampler::new(48_000, TARGET_HZ).unwrap();
        rs.process(&sine(1_000.0, 48_000, 1.0, 480), |_| {});
        let mut last = f32::NAN;
        // `taps` zeros empty the window; the ratio may leave the last of them without output.
        rs.process(&vec![0.0; rs.taps() + 2], |y| last = y);
        assert_eq!(last, 0.0);

        rs.process(&[1.0; 64], |_| {});
        rs.reset();
        let mut out = Vec::new();
        rs.process(&[0.0; 8], |y| out.push(y));
        assert!(out.iter().all(|&y| y == 0.0));
    }

    #[test]
    fn dc_passes_with_unit_gain_through_every_phase() {
        for (input_rate, output_rate) in [
            (44_100, TARGET_HZ),
            (TARGET_HZ, 44_100),
            (44_101, TARGET_HZ),
        ] {
            let mut rs = Resampler::new(input_rate, output_rate).unwrap();
            let mut out = Vec::new();
            rs.process(&vec![0.25; 4 * rs.taps() + 1_000], |y| out.push(y));
            for &y in &out[out.len() / 2..] {
                assert!((y - 0.25).abs() < 1e-5, "{input_rate} → {output_rate}: {y}");
            }
        }
    }
}
