//! The session's timers, in one place: the actor waits on the earliest of them in its
//! `select!` and learns which one fired.
//!
//! * transcript — the oldest committed turn waits too long for its transcript;
//! * quiet close — nobody spoke for a while: the upstream transcription socket can close;
//! * idle — nobody spoke for much longer: the session closes (1000, with a reason);
//! * end — the session reached its maximum length;
//! * ping — time to ping the browser, and to check it answered the last ping.

use std::time::Duration;

use tokio::time::Instant;

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A committed turn's transcript is overdue.
    Transcript,
    /// The transcriber may close: nobody spoke for the quiet period.
    QuietClose,
    /// The session is idle: nobody spoke for the idle timeout.
    Idle,
    /// The session reached its maximum length.
    End,
    /// Ping the browser (and check it answered the previous ping).
    Ping,
}

/// The session's deadlines.
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    /// The oldest open turn's transcript deadline, if a turn is open.
    pub(crate) transcript: Option<Instant>,
    /// When the transcriber closes for quiet, if one is open.
    pub(crate) quiet_close: Option<Instant>,
    idle: Instant,
    end: Instant,
    ping: Instant,
    idle_timeout: Duration,
    ping_interval: Duration,
}

impl Deadlines {
    /// The deadlines of a session starting `now`.
    pub(crate) fn new(
        now: Instant,
        idle_timeout: Duration,
        max_length: Duration,
        ping_interval: Duration,
    ) -> Self {
        Self {
            transcript: None,
            quiet_close: None,
            idle: now + idle_timeout,
            end: now + max_length,
            ping: now + ping_interval,
            idle_timeout,
            ping_interval,
        }
    }

    /// Someone spoke (or an answer played): the idle clock starts again.
    pub(crate) fn active(&mut self, now: Instant) {
        self.idle = now + self.idle_timeout;
    }

    /// The ping was sent: the next one is due an interval from `now`.
    pub(crate) fn pinged(&mut self, now: Instant) {
        self.ping = now + self.ping_interval;
    }

    /// The earliest deadline and which timer it belongs to.
    pub(crate) fn next(&self) -> (Timer, Instant) {
        let mut earliest = (Timer::End, self.end);
        for (timer, at) in [
            (Timer::Idle, Some(self.idle)),
            (Timer::Ping, Some(self.ping)),
            (Timer::QuietClose, self.quiet_close),
            (Timer::Transcript, self.transcript),
        ] {
            if let Some(at) = at
                && at <= earliest.1
            {
                earliest = (timer, at);
            }
        }
        earliest
    }

    /// Completes when the earliest deadline passes, with its timer.
    pub(crate) async fn fired(&self) -> Timer {
        let (timer, at) = self.next();
        tokio::time::sleep_until(at).await;
        timer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_wins() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut deadlines = Deadlines::new(now, s(300), s(3600), s(20));
        assert_eq!(deadlines.next(), (Timer::Ping, now + s(20)));
        deadlines.quiet_close = Some(now + s(10));
        assert_eq!(deadlines.next(), (Timer::QuietClose, now + s(10)));
        deadlines.transcript = Some(now + s(5));
        assert_eq!(deadlines.next(), (Timer::Transcript, now + s(5)));
        deadlines.transcript = None;
        deadlines.quiet_close = None;
        deadlines.pinged(now + s(400));
        assert_eq!(deadlines.next(), (Timer::Idle, now + s(300)));
        deadlines.active(now + s(4000));
        deadlines.pinged(now + s(4000));
        assert_eq!(deadlines.next(), (Timer::End, now + s(3600)));
    }

    #[tokio::test(start_paused = true)]
    async fn fired_waits_for_the_earliest() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut deadlines = Deadlines::new(now, s(300), s(3600), s(20));
        deadlines.quiet_close = Some(now + s(7));
        assert_eq!(deadlines.fired().await, Timer::QuietClose);
        assert_eq!(Instant::now(), now + s(7));
    }
}
