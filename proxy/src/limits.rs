//! The pure parts of the proxy's limits: a token bucket (handshake rates, audio budgets,
//! `/api/*` rates), episodes (one log line or one error per burst of the same trouble, not one
//! per event), and the per-address table of who holds how many sessions.
//!
//! Nothing here reads a clock: callers pass `now`, so tests drive time by hand.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: holds up to `capacity` tokens, refilled at `per_second`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(capacity: f64, per_second: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_second,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Takes `amount` tokens if the bucket holds them.
    pub(crate) fn try_take(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// How long until `amount` tokens are there (zero if they are now).
    pub(crate) fn wait_for(&mut self, amount: f64, now: Instant) -> Duration {
        self.refill(now);
        let missing = (amount - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_second)
    }

    /// Whether the bucket is full again: nothing was taken for a while.
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

/// Groups repeated trouble of one kind into episodes: an episode starts at the first event
/// and lasts while events keep coming less than `quiet` apart. The caller logs (or tells the
/// user) once per episode, with how many events the previous one held.
#[derive(Debug, Clone)]
pub(crate) struct Episode {
    quiet: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Episode {
    /// No episode yet; one ends after `quiet` without events.
    pub(crate) const fn new(quiet: Duration) -> Self {
        Self {
            quiet,
            last: None,
            count: 0,
        }
    }

    /// Records an event. Returns `Some(events of the previous episode)` when this event starts
    /// a new episode (report it), `None` while the current one goes on (stay quiet).
    pub(crate) fn record(&mut self, now: Instant) -> Option<u64> {
        let continues = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.quiet);
        self.last = Some(now);
        if continues {
            self.count += 1;
            None
        } else {
            let previous = self.count;
            self.count = 1;
            Some(previous)
        }
    }
}

/// Why an address may not open a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressRefusal {
    /// It holds its maximum of sessions.
    TooManySessions,
    /// It opens sessions faster than the handshake rate allows; try again after this long.
    TooFast(Duration),
}

/// Per-address session counts and handshake rates.
#[derive(Debug)]
pub(crate) struct AddressTable {
    max_sessions: usize,
    handshake_burst: f64,
    handshakes_per_second: f64,
    entries: HashMap<IpAddr, AddressEntry>,
}

#[derive(Debug)]
struct AddressEntry {
    sessions: usize,
    handshakes: TokenBucket,
}

/// Entries kept before idle ones are pruned: an address with no session and a full bucket
/// carries no state worth keeping, so the table stays as small as the set of active clients.
const PRUNE_ABOVE_ENTRIES: usize = 4096;

impl AddressTable {
    /// A table allowing `max_sessions` per address and `handshakes_per_second` new sessions
    /// per address, in bursts of `handshake_burst`.
    pub(crate) fn new(
        max_sessions: usize,
        handshake_burst: u32,
        handshakes_per_second: f64,
    ) -> Self {
        Self {
            max_sessions,
            handshake_burst: f64::from(handshake_burst),
            handshakes_per_second,
            entries: HashMap::new(),
        }
    }

    /// Counts a new session of `address`, unless over a limit.
    pub(crate) fn admit(&mut self, address: IpAddr, now: Instant) -> Result<(), AddressRefusal> {
        if self.entries.len() > PRUNE_ABOVE_ENTRIES {
            self.entries
                .retain(|_, entry| entry.sessions > 0 || !entry.handshakes.is_full(now));
        }
        let (burst, rate) = (self.handshake_burst, self.handshakes_per_second);
        let entry = self.entries.entry(address).or_insert_with(|| AddressEntry {
            sessions: 0,
            handshakes: TokenBucket::new(burst, rate, now),
        });
        if entry.sessions >= self.max_sessions {
            return Err(AddressRefusal::TooManySessions);
        }
        if !entry.handshakes.try_take(1.0, now) {
            return Err(AddressRefusal::TooFast(entry.handshakes.wait_for(1.0, now)));
        }
        entry.sessions += 1;
        Ok(())
    }

    /// Forgets one session of `address`.
    pub(crate) fn release(&mut self, address: IpAddr) {
        if let Some(entry) = self.entries.get_mut(&address) {
            entry.sessions = entry.sessions.saturating_sub(1);
        }
    }

    /// Sessions `address` holds.
    #[cfg(test)]
    fn sessions_of(&self, address: IpAddr) -> usize {
        self.entries.get(&address).map_or(0, |entry| entry.sessions)
    }
}

/// Cuts a string a client sent to at most `max_chars` characters for a log line or an error
/// message, marking the cut: a client must not be able to fill the log.
pub(crate) fn truncate_for_log(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => std::borrow::Cow::Owned(format!(
            "{}… ({} more bytes)",
            &text[..cut],
            text.len() - cut
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 1.0, start);
        assert!(bucket.try_take(2.0, start));
        assert!(!bucket.try_take(1.0, start));
        assert_eq!(bucket.wait_for(1.0, start), Duration::from_secs(1));
        assert!(bucket.try_take(1.0, start + Duration::from_secs(1)));
        assert!(bucket.is_full(start + Duration::from_secs(10)));
        assert!(bucket.try_take(2.0, start + Duration::from_secs(10)));
        assert!(!bucket.try_take(0.5, start + Duration::from_secs(10)));
    }

    #[test]
    fn an_episode_is_reported_once_and_counted() {
        let start = Instant::now();
        let quiet = Duration::from_secs(10);
        let mut episode = Episode::new(quiet);
        assert_eq!(episode.record(start), Some(0));
        for second in 1..=20 {
            assert_eq!(episode.record(start + Duration::from_secs(second)), None);
        }
        // Ten quiet seconds end it; the next event starts another and counts the last.
        assert_eq!(episode.record(start + Duration::from_secs(31)), Some(21));
        assert_eq!(episode.record(start + Duration::from_secs(32)), None);
    }

    #[test]
    fn an_address_is_held_to_its_sessions_and_handshake_rate() {
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut table = AddressTable::new(3, 2, 1.0);
        assert_eq!(table.admit(a, start), Ok(()));
        assert_eq!(table.admit(a, start), Ok(()));
        assert!(matches!(
            table.admit(a, start),
            Err(AddressRefusal::TooFast(wait)) if wait == Duration::from_secs(1)
        ));
        // Another address is not affected.
        assert_eq!(table.admit(b, start), Ok(()));
        let later = start + Duration::from_secs(5);
        assert_eq!(table.admit(a, later), Ok(()));
        assert_eq!(table.sessions_of(a), 3);
        assert_eq!(table.admit(a, later), Err(AddressRefusal::TooManySessions));
        table.release(a);
        assert_eq!(table.admit(a, later), Ok(()));
    }

    #[test]
    fn long_client_strings_are_cut_for_logs() {
        assert_eq!(truncate_for_log("short", 10), "short");
        let long = "é".repeat(100);
        let cut = truncate_for_log(&long, 8);
        assert!(cut.starts_with(&"é".repeat(8)), "{cut}");
        assert!(cut.ends_with("(184 more bytes)"), "{cut}");
    }
}
