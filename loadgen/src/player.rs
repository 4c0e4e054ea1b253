//! A model of the page's 24 kHz player: it starts playing a response at its first chunk, with
//! no buffer ahead (as the playback worklet does), and runs dry whenever a chunk arrives after
//! the audio before it has played out. Pure: time is passed in.

use std::time::{Duration, Instant};

/// The wire's sample rate.
const RATE_HZ: f64 = 24_000.0;

/// Lateness a player absorbs without an audible gap: one render quantum (128 samples at
/// 48 kHz), the granularity at which the worklet plays.
const UNDERRUN_TOLERANCE: Duration = Duration::from_micros(2_667);

/// The playback of one response.
#[derive(Debug, Clone, Default)]
pub struct Player {
    /// When the audio received so far will have played out.
    ends_at: Option<Instant>,
    received_samples: u64,
    underruns: u32,
    gap: Duration,
}

impl Player {
    /// Takes a chunk of `samples` arriving `now`.
    pub fn receive(&mut self, now: Instant, samples: u64) {
        let length = Duration::from_secs_f64(samples as f64 / RATE_HZ);
        self.received_samples += samples;
        self.ends_at = Some(match self.ends_at {
            None => now + length,
            Some(ends_at) if now > ends_at + UNDERRUN_TOLERANCE => {
                self.underruns += 1;
                self.gap += now - ends_at;
                now + length
            }
            Some(ends_at) => ends_at.max(now) + length,
        });
    }

    /// Samples played by `now`.
    pub fn played_samples(&self, now: Instant) -> u64 {
        let Some(ends_at) = self.ends_at else {
            return 0;
        };
        let left = ends_at.saturating_duration_since(now).as_secs_f64() * RATE_HZ;
        self.received_samples.saturating_sub(left.ceil() as u64)
    }

    /// When everything received will have played (`None`: nothing received).
    pub fn drained_at(&self) -> Option<Instant> {
        self.ends_at
    }

    /// Times the player ran dry before the next chunk came.
    pub fn underruns(&self) -> u32 {
        self.underruns
    }

    /// Silence those underruns put into the answer, in all.
    pub fn gap(&self) -> Duration {
        self.gap
    }

    /// Samples received.
    pub fn received_samples(&self) -> u64 {
        self.received_samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: u64 = 2_400; // 100 ms

    #[test]
    fn chunks_faster_than_real_time_play_without_a_gap() {
        let start = Instant::now();
        let mut player = Player::default();
        for n in 0..10 {
            player.receive(start + Duration::from_millis(50 * n), CHUNK);
        }
        assert_eq!(player.underruns(), 0);
        assert_eq!(player.drained_at(), Some(start + Duration::from_secs(1)));
        assert_eq!(
            player.played_samples(start + Duration::from_millis(500)),
            12_000
        );
        assert_eq!(
            player.played_samples(start + Duration::from_secs(2)),
            24_000
        );
    }

    #[test]
    fn a_chunk_after_the_audio_ran_out_is_an_underrun() {
        let start = Instant::now();
        let mut player = Player::default();
        player.receive(start, CHUNK);
        // Due at 100 ms; a millisecond late is within a render quantum.
        player.receive(start + Duration::from_millis(101), CHUNK);
        assert_eq!(player.underruns(), 0);
        // Due at 201 ms, comes at 300 ms.
        player.receive(start + Duration::from_millis(300), CHUNK);
        assert_eq!(player.underruns(), 1);
        assert_eq!(player.gap(), Duration::from_millis(99));
        assert_eq!(
            player.drained_at(),
            Some(start + Duration::from_millis(400))
        );
    }
}
