//! How much microphone audio a session may send upstream: at most a multiple of real time
//! (a token bucket counted in audio milliseconds), so a script cannot relay hours of audio in
//! seconds on the operator's key. Excess audio is dropped; the user hears of it once per
//! episode; a flood that goes on closes the session.

use std::time::{Duration, Instant};

use crate::limits::{Episode, TokenBucket};

/// Audio a session may send at once beyond the rate, in milliseconds: the client's pre-roll
/// and a network hiccup's worth of frames arriving together.
const BURST_MS: f64 = 3_000.0;

/// Drops closer together than this belong to one episode.
const EPISODE_QUIET: Duration = Duration::from_secs(1);

/// An episode of drops lasting this long is a flood, not jitter: the session is closed.
pub(crate) const FLOOD_CLOSE_AFTER: Duration = Duration::from_secs(5);

/// What to do with one audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioVerdict {
    /// Within the budget: relay it.
    Accept,
    /// Over the budget: drop it; `report` is true for the first drop of an episode.
    Drop {
        /// Tell the user (once per episode).
        report: bool,
    },
    /// Over the budget for [`FLOOD_CLOSE_AFTER`]: close the session.
    Flood,
}

/// The session's audio budget.
#[derive(Debug, Clone)]
pub(crate) struct AudioBudget {
    bucket: TokenBucket,
    drops: Episode,
    episode_began: Option<Instant>,
}

impl AudioBudget {
    /// A budget of `rate` × real time, full at `now`.
    pub(crate) fn new(rate: f64, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(BURST_MS, rate * 1000.0, now),
            drops: Episode::new(EPISODE_QUIET),
            episode_began: None,
        }
    }

    /// Decides on a frame of `audio_ms` milliseconds arriving `now`.
    pub(crate) fn admit(&mut self, audio_ms: f64, now: Instant) -> AudioVerdict {
        if self.bucket.try_take(audio_ms, now) {
            return AudioVerdict::Accept;
        }
        let report = self.drops.record(now).is_some();
        if report {
            self.episode_began = Some(now);
        }
        let flooding = self
            .episode_began
            .is_some_and(|began| now.saturating_duration_since(began) >= FLOOD_CLOSE_AFTER);
        if flooding {
            AudioVerdict::Flood
        } else {
            AudioVerdict::Drop { report }
        }
    }
}

/// Milliseconds of PCM16 mono audio at 24 kHz in `bytes`.
pub(crate) fn audio_ms(bytes: usize) -> f64 {
    bytes as f64 / 48.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds 20 ms frames at `speed` × real time for `seconds`; returns the milliseconds
    /// accepted, the drops reported, and when (if) it flooded.
    fn feed(speed: f64, seconds: f64) -> (f64, usize, Option<f64>) {
        let start = Instant::now();
        let mut budget = AudioBudget::new(1.5, start);
        let frame_ms = 20.0;
        let frames = (seconds * 1000.0 * speed / frame_ms) as usize;
        let (mut accepted, mut reports) = (0.0, 0);
        for n in 0..frames {
            let at = start + Duration::from_secs_f64(n as f64 * frame_ms / speed / 1000.0);
            match budget.admit(frame_ms, at) {
                AudioVerdict::Accept => accepted += frame_ms,
                AudioVerdict::Drop { report } => reports += usize::from(report),
                AudioVerdict::Flood => {
                    return (
                        accepted,
                        reports,
                        Some(n as f64 * frame_ms / speed / 1000.0),
                    );
                }
            }
        }
        (accepted, reports, None)
    }

    #[test]
    fn real_time_audio_always_passes() {
        let (accepted, reports, flood) = feed(1.0, 600.0);
        assert_eq!(accepted, 600_000.0);
        assert_eq!((reports, flood), (0, None));
        let (accepted, _, flood) = feed(1.4, 60.0);
        assert_eq!((accepted, flood), (84_000.0, None));
    }

    #[test]
    fn a_flood_gets_the_rate_one_report_and_then_the_door() {
        let (accepted, reports, flood) = feed(10.0, 10.0);
        assert_eq!(reports, 1);
        let flooded_at = flood.expect("a sustained flood closes the session");
        // Filled the burst, then took 1.5 s of audio per second until the flood was called.
        assert!(
            accepted <= BURST_MS + 1500.0 * flooded_at + 20.0,
            "{accepted}"
        );
        assert!(flooded_at < 10.0, "{flooded_at}");
    }

    #[test]
    fn audio_is_measured_in_milliseconds() {
        assert_eq!(audio_ms(960), 20.0);
        assert_eq!(audio_ms(48_000), 1000.0);
    }
}
