//! PCM16 conversion.
//!
//! Full scale is 32 768 in both directions, so `i16 → f32 → i16` is exact and −1.0 maps to
//! −32 768. +1.0 would be 32 768, one past `i16::MAX`, and clips to 32 767. Rounding is to
//! nearest, ties to even: unbiased, and a single `f32.nearest` instruction in wasm.

/// Scale between a float sample in [-1, 1) and a PCM16 sample.
const FULL_SCALE: f32 = 32_768.0;

/// Converts one float sample to PCM16: rounded, clipped to the `i16` range, NaN → 0.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // A float → int `as` cast saturates at the type's bounds and maps NaN to 0, which is
    // exactly the clipping this needs (and ±inf clip too).
    (x * FULL_SCALE).round_ties_even() as i16
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
    fn i16_round_trips_exactly() {
        for s in (i16::MIN..=i16::MAX).step_by(7).chain([i16::MAX]) {
            assert_eq!(f32_to_i16(i16_to_f32(s)), s);
        }
        assert_eq!(i16_to_f32(i16::MIN), -1.0);
        assert!(i16_to_f32(i16::MAX) < 1.0);
    }
}
