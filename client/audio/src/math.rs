//! The few floating-point functions the DSP needs beyond `core`, the same code on every target.
//!
//! The wasm build is `no_std`, so `f32::log10` and `f64::sin` (std's, backed by libm) are not
//! there. These are small and exact enough for their two uses — the VAD's dBFS levels (to well
//! under 0.001 dB) and the resampler's filter design (to ~1e-15, far below its −80 dB
//! stopband) — and native builds run them too, so the tests check what the browser runs.

/// `log10(x)` for the VAD's mean squares: natural log of the mantissa by the `atanh` series
/// (in f64, so the f32 result is within an ulp), plus the exponent. NaN for NaN and negative
/// `x`, −∞ for 0, +∞ for +∞, as std's.
pub(crate) fn log10(x: f32) -> f32 {
    const LOG10_E: f64 = core::f64::consts::LOG10_E;
    const LN_2: f64 = core::f64::consts::LN_2;
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return f32::INFINITY;
    }
    // f64 holds every f32, subnormals included, as a normal number.
    let bits = f64::from(x).to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mut mantissa = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    // Centre the mantissa on 1 ([√½, √2)) so the series below converges fast.
    if mantissa > core::f64::consts::SQRT_2 {
        mantissa *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2·atanh(s) with s = (m − 1)/(m + 1), |s| ≤ 0.172: six terms leave < 1e-11.
    let s = (mantissa - 1.0) / (mantissa + 1.0);
    let s2 = s * s;
    let series = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0)))));
    let ln = f64::from(exponent) * LN_2 + 2.0 * s * series;
    (ln * LOG10_E) as f32
}

/// `sin(π·x)` for the resampler's sinc: the reduction to |x| ≤ ¼ is exact (it works on `x`,
/// not on `π·x`), then fdlibm's minimax kernels for sin and cos on [−π/4, π/4].
pub(crate) fn sin_pi(x: f64) -> f64 {
    use core::f64::consts::PI;
    if !x.is_finite() {
        return f64::NAN;
    }
    // r ≡ x (mod 2), in [−1, 1]; exact for every |x| < 2^52 (larger x are even integers).
    let mut r = if x.abs() < 4_503_599_627_370_496.0 {
        x - 2.0 * ((x * 0.5) as i64 as f64)
    } else {
        0.0
    };
    if r > 1.0 {
        r -= 2.0;
    } else if r < -1.0 {
        r += 2.0;
    }
    // sin(π·r) = sin(π·(1 − r)): fold into [−½, ½].
    if r > 0.5 {
        r = 1.0 - r;
    } else if r < -0.5 {
        r = -1.0 - r;
    }
    if r.abs() <= 0.25 {
        kernel_sin(PI * r)
    } else {
        // sin(π·r) = ±cos(π·(½ − |r|)).
        let c = kernel_cos(PI * (0.5 - r.abs()));
        if r < 0.0 { -c } else { c }
    }
}

/// sin on [−π/4, π/4] (fdlibm `__kernel_sin`'s polynomial).
#[allow(clippy::excessive_precision)] // fdlibm's coefficients as published, to be checkable
fn kernel_sin(x: f64) -> f64 {
    const S1: f64 = -1.666_666_666_666_663_243_48e-1;
    const S2: f64 = 8.333_333_333_322_489_461_24e-3;
    const S3: f64 = -1.984_126_982_985_794_931_34e-4;
    const S4: f64 = 2.755_731_370_707_006_767_89e-6;
    const S5: f64 = -2.505_076_025_340_686_341_95e-8;
    const S6: f64 = 1.589_690_995_211_550_102_21e-10;
    let z = x * x;
    x + x * z * (S1 + z * (S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)))))
}

/// cos on [−π/4, π/4] (fdlibm `__kernel_cos`'s polynomial).
#[allow(clippy::excessive_precision)] // fdlibm's coefficients as published, to be checkable
fn kernel_cos(x: f64) -> f64 {
    const C1: f64 = 4.166_666_666_666_660_190_37e-2;
    const C2: f64 = -1.388_888_888_887_410_957_49e-3;
    const C3: f64 = 2.480_158_728_947_672_941_78e-5;
    const C4: f64 = -2.755_731_435_139_066_330_35e-7;
    const C5: f64 = 2.087_572_321_298_174_827_90e-9;
    const C6: f64 = -1.135_964_755_778_819_482_65e-11;
    let z = x * x;
    let half_z = 0.5 * z;
    let w = 1.0 - half_z;
    let tail = z * z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
    // fdlibm's split: the part of 1 − z/2 lost to rounding is added back with the tail.
    w + (((1.0 - w) - half_z) + tail)
}

/// The smallest integer not below `x`, for `x ≥ 0` (saturating above `usize::MAX`).
pub(crate) fn ceil_to_usize(x: f64) -> usize {
    let truncated = x as usize;
    if (truncated as f64) < x {
        truncated + 1
    } else {
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of `got` against `want`, in units of `want`'s last place.
    fn ulps_f32(got: f32, want: f32) -> f32 {
        (got - want).abs() / (want.abs() * f32::EPSILON).max(f32::MIN_POSITIVE)
    }

    #[test]
    fn log10_is_within_an_ulp_over_the_vads_range() {
        // Mean squares of PCM16 frames: from one LSB² (≈ 1e-9.6) to full scale and beyond,
        // subnormals included.
        // Stepped in f64: a small subnormal times 1.000 37 rounds back to itself in f32.
        let mut step = 1e-44_f64;
        while step < 1e6 {
            let x = step as f32;
            // Against f64's log10 rounded once: std's f32 log10 is itself off by an ulp here
            // and there.
            let (got, want) = (log10(x), f64::from(x).log10() as f32);
            assert!(
                ulps_f32(got, want) <= 1.0,
                "log10({x:e}) = {got}, std {want}"
            );
            step *= 1.000_37;
        }
        for exact in [1e-10_f32, 1e-5, 0.01, 1.0, 10.0, 1000.0] {
            let want = f64::from(exact).log10() as f32;
            assert!(ulps_f32(log10(exact), want) <= 1.0, "{exact}");
        }
        assert_eq!(log10(0.0), f32::NEG_INFINITY);
        assert_eq!(log10(f32::INFINITY), f32::INFINITY);
        assert!(log10(f32::NAN).is_nan());
        assert!(log10(-1.0).is_nan());
    }

    #[test]
    fn sin_pi_matches_std_over_the_filter_designs_range() {
        // The sinc's arguments reach a few thousand at 768 kHz.
        let mut worst = 0.0f64;
        for i in -2_000_000..=2_000_000 {
            let x = f64::from(i) * 0.002_345_678_9;
            let (got, want) = (sin_pi(x), (core::f64::consts::PI * x).sin());
            worst = worst.max((got - want).abs());
        }
        // std's sin(π·x) itself carries the rounding of π·x (up to ~1e-12 at x ≈ 4700).
        assert!(worst < 2e-12, "worst error {worst:e}");
        for i in -16_i32..=16 {
            let half = f64::from(i) * 0.5;
            let want = [0.0, 1.0, 0.0, -1.0][i.rem_euclid(4) as usize];
            assert_eq!(sin_pi(half), want, "sin(π·{half})");
        }
        let small = 1e-9;
        assert!((sin_pi(small) - core::f64::consts::PI * small).abs() < 1e-24);
        assert!(sin_pi(f64::NAN).is_nan() && sin_pi(f64::INFINITY).is_nan());
    }

    #[test]
    fn ceil_to_usize_rounds_up_fractions_only() {
        assert_eq!(ceil_to_usize(0.0), 0);
        assert_eq!(ceil_to_usize(47.000_001), 48);
        assert_eq!(ceil_to_usize(48.0), 48);
        assert_eq!(ceil_to_usize(1_536.5), 1_537);
    }
}
