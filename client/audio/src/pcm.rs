//! PCM16 conversion.
//!
//! Full scale is 32 768 in both directions, so `i16 → f32 → i16` is exact and −1.0 maps to
//! −32 768. +1.0 would be 32 768, one past `i16::MAX`, and clips to 32 767. Rounding is to
//! nearest, ties to even: unbiased, and a single `f32.nearest` instruction in wasm.

/// Scale between a float sample in [-1, 1) and a PCM16 sample.
const FULL_SCALE: f32 = 32_768.0;

/// 1.5 × 2²³: adding and subtracting it rounds any |v| ≤ 2²² to the nearest integer, ties to
/// even, in plain float arithmetic. `round_ties_even` is a library call on baseline x86-64
/// (no SSE4.1), which made it the costliest line of the capture path natively.
const ROUNDER: f32 = 12_582_912.0;

/// Converts one float sample to PCM16: rounded (ties to even), clipped to the `i16` range,
/// NaN → 0.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // Clamping first keeps the value in the rounder's exact range (±inf included); NaN stays
    // NaN, and the float → int `as` cast maps it to 0 (and saturates the rounded ends).
    let clipped = (x * FULL_SCALE).clamp(-FULL_SCALE, FULL_SCALE - 1.0);
    ((clipped + ROUNDER) - ROUNDER) as i16
}

/// Converts one PCM16 sample to a float in [-1, 1).
#[inline]
pub fn i16_to_f32(s: i16) -> f32 {
    f32::from(s) / FULL_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSB: f32 = 1.0 / FULL_SCALE;

    #[test]
    fn full_scale_maps_to_the_i16_extremes() {
        assert_eq!(f32_to_i16(-1.0), i16::MIN);
        assert_eq!(
            f32_to_i16(1.0),
            i16::MAX,
            "+1.0 is one past i16::MAX and clips"
        );
        assert_eq!(f32_to_i16(0.0), 0);
        assert_eq!(f32_to_i16(0.5), 16_384);
    }

    #[test]
    fn beyond_full_scale_clips() {
        assert_eq!(f32_to_i16(1.5), i16::MAX);
        assert_eq!(f32_to_i16(-7.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::INFINITY), i16::MAX);
        assert_eq!(f32_to_i16(f32::NEG_INFINITY), i16::MIN);
    }

    #[test]
    fn nan_becomes_silence() {
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i16(-f32::NAN), 0);
    }

    #[test]
    fn rounds_to_nearest_with_ties_to_even() {
        assert_eq!(f32_to_i16(0.4 * LSB), 0);
        assert_eq!(f32_to_i16(0.6 * LSB), 1);
        assert_eq!(f32_to_i16(0.5 * LSB), 0);
        assert_eq!(f32_to_i16(1.5 * LSB), 2);
        assert_eq!(f32_to_i16(2.5 * LSB), 2);
        assert_eq!(f32_to_i16(-0.5 * LSB), 0);
        assert_eq!(f32_to_i16(-1.5 * LSB), -2);
        assert_eq!(f32_to_i16(-2.5 * LSB), -2);
    }

    #[test]
    fn agrees_with_round_ties_even_across_the_range() {
        // Quarter-LSB steps over and beyond full scale, ties and near-ties among them.
        for step in -140_000..=140_000 {
            let x = step as f32 * 0.25 * LSB;
            let expected = (x * FULL_SCALE)
                .round_ties_even()
                .clamp(-32_768.0, 32_767.0) as i16;
            assert_eq!(f32_to_i16(x), expected, "{x}");
        }
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let x = (state as f32 / u32::MAX as f32 - 0.5) * 2.2;
            let expected = (x * FULL_SCALE)
                .round_ties_even()
                .clamp(-32_768.0, 32_767.0) as i16;
            assert_eq!(f32_to_i16(x), expected, "{x}");
        }
    }

    #[test]
    fn i16_round_trips_exactly() {
        for s in (i16::MIN..=i16::MAX).step_by(7).chain([i16::MAX]) {
            assert_eq!(f32_to_i16(i16_to_f32(s)), s);
        }
        assert_eq!(i16_to_f32(i16::MIN), -1.0);
        assert!(i16_to_f32(i16::MAX) < 1.0);
    }
}
