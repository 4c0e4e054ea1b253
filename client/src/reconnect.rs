//! Reconnecting after a dropped socket, as pure rules: which closes are worth a reconnect, the
//! backoff schedule, when to stop presenting the resume token, and what the page says when the
//! new session arrives. No clocks or randomness of its own: the engine passes the time
//! (`Date.now()`) and a uniform random number (`Math.random()`) in, so every rule is
//! unit-tested natively.
//!
//! # The schedule
//!
//! A socket that drops while its session was ready (no close frame: 1006; or 1001, 1005,
//! 1011, 1012, 1013) is reopened after a wait. Attempt `n` (from 0) waits
//! `min(250 ms × 2^n, 8 s)`, drawn uniformly from the upper half of that, `[d/2, d]`, so that
//! many pages dropped at once (a proxy restart) do not all come back in the same millisecond:
//!
//! | attempt | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 |
//! |---|---|---|---|---|---|---|---|---|
//! | wait, s | 0.125–0.25 | 0.25–0.5 | 0.5–1 | 1–2 | 2–4 | 4–8 | 4–8 | 4–8 |
//!
//! After [`MAX_RECONNECT_ATTEMPTS`] failed attempts (16 to 32 s of waiting) the page gives up
//! with an error. An attempt whose socket reached no `session_ready` within
//! [`ATTEMPT_TIMEOUT_MS`] counts as failed. Closes with 1000 (the server ended the session on
//! purpose: idle, maximum length), 1008 (policy) and 1009 (too big) are final, as is any code
//! not listed above.
//!
//! # The token
//!
//! Every `session_ready` may carry a [`ResumeTicket`]; the latest one is kept. Each attempt
//! presents its token (`?resume=`) until the ticket's `grace_s` has passed since the drop;
//! after that the proxy has forgotten the conversation, so the page asks for a fresh session
//! instead. The new `session_ready` then says whether the conversation went on
//! ([`Ready::Resumed`]) or began again ([`Ready::Restarted`], which the page announces).

use protocol::ResumeTicket;

use crate::errors::ClientError;

/// The first wait: long enough that a socket cut by a blip in the network finds it over, short
/// enough that the user hardly notices.
pub const BASE_DELAY_MS: f64 = 250.0;

/// The longest wait: beyond 8 s the page would look dead to someone waiting for it.
pub const MAX_DELAY_MS: f64 = 8_000.0;

/// Attempts before giving up: with the schedule above, 16 to 32 s of trying, which outlasts a
/// proxy restart or a network handover; longer, and the user is better served by an error
/// and the Start button.
pub const MAX_RECONNECT_ATTEMPTS: u32 = 8;

/// How long one attempt may take to reach `session_ready`: a handshake on a working network
/// takes well under a second, while a dead route leaves the browser waiting for minutes (TCP
/// retransmits its SYN), which would stall the whole schedule.
pub const ATTEMPT_TIMEOUT_MS: f64 = 10_000.0;

/// Whether a socket that closed with `code` while its session ran is worth reopening: the
/// network dropped it (1006: no close frame; 1005: a close frame without a code) or the
/// server went away, failed or restarts (1001, 1011, 1012, 1013). Everything else, notably
/// 1000 (ended on purpose), 1008 (policy) and 1009 (too big), is final.
pub fn should_reconnect(code: u16) -> bool {
    matches!(code, 1001 | 1005 | 1006 | 1011 | 1012 | 1013)
}

/// The wait before attempt `attempt` (from 0), in ms: `min(BASE × 2^attempt, MAX)` scaled to
/// `[½, 1]` of itself by `random`, a uniform number in `[0, 1)`.
pub fn backoff_delay_ms(attempt: u32, random: f64) -> f64 {
    let ceiling = (BASE_DELAY_MS * 2f64.powi(attempt.min(31) as i32)).min(MAX_DELAY_MS);
    ceiling * (0.5 + 0.5 * random.clamp(0.0, 1.0))
}

/// What to do after a socket closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterClose {
    /// Open a new socket after this many ms (the page shows "Reconnecting…").
    Reconnect {
        /// The wait, ms.
        delay_ms: f64,
    },
    /// [`MAX_RECONNECT_ATTEMPTS`] attempts failed: stop, with [`ClientError::ReconnectFailed`].
    GiveUp {
        /// How many were made.
        attempts: u32,
    },
    /// The close is final (or the first socket never got a session): stop, as before.
    Final,
}

/// What a `session_ready` means for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The session of Start.
    First,
    /// A reconnect continued the conversation: the page keeps it and goes on.
    Resumed,
    /// A reconnect got a fresh session (the token was unknown or expired, or there was none):
    /// the page starts its conversation view afresh and says why.
    Restarted,
}

impl Ready {
    /// Whether the conversation shown so far still holds.
    pub fn keeps_conversation(self) -> bool {
        matches!(self, Ready::First | Ready::Resumed)
    }

    /// What the page announces, if anything.
    pub fn notice(self) -> Option<ClientError> {
        match self {
            Ready::First | Ready::Resumed => None,
            Ready::Restarted => Some(ClientError::ConversationRestarted),
        }
    }
}

/// One dropped socket and the attempts since.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outage {
    /// `Date.now()` when the socket dropped.
    dropped_at_ms: f64,
    /// Attempts whose socket closed (or timed out) without a session.
    failed_attempts: u32,
}

/// The reconnect state of one Start. See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconnector {
    /// From the latest `session_ready`.
    ticket: Option<ResumeTicket>,
    /// Set from the drop until the next `session_ready`.
    outage: Option<Outage>,
    /// Attempts made, over the whole Start.
    attempts: u32,
    /// Attempts that got a session, over the whole Start.
    reconnects: u32,
}

impl Reconnector {
    /// Before the first socket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Between a drop and the next `session_ready`.
    pub fn is_reconnecting(&self) -> bool {
        self.outage.is_some()
    }

    /// Attempts made since Start.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Attempts that got a session since Start.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// A `session_ready` arrived with `resume` and `resumed`: keeps the ticket (each one is
    /// single use; this is the next) and says what it means.
    pub fn on_session_ready(&mut self, resume: Option<ResumeTicket>, resumed: bool) -> Ready {
        self.ticket = resume;
        if self.outage.take().is_none() {
            return Ready::First;
        }
        self.reconnects += 1;
        if resumed {
            Ready::Resumed
        } else {
            Ready::Restarted
        }
    }

    /// The socket closed with `code` (or an attempt timed out, as 1006); `session_ready` says
    /// whether its session was ready; `now_ms` is `Date.now()`, `random` uniform in `[0, 1)`.
    pub fn on_close(
        &mut self,
        code: u16,
        session_ready: bool,
        now_ms: f64,
        random: f64,
    ) -> AfterClose {
        if !should_reconnect(code) {
            self.outage = None;
            return AfterClose::Final;
        }
        let failed_attempts = if session_ready {
            // A live session dropped (an attempt's session too, once ready).
            self.outage = Some(Outage {
                dropped_at_ms: now_ms,
                failed_attempts: 0,
            });
            0
        } else if let Some(outage) = &mut self.outage {
            outage.failed_attempts += 1;
            outage.failed_attempts
        } else {
            // The socket of Start never got a session: a refusal, reported as before.
            return AfterClose::Final;
        };
        if failed_attempts >= MAX_RECONNECT_ATTEMPTS {
            self.outage = None;
            return AfterClose::GiveUp {
                attempts: failed_attempts,
            };
        }
        AfterClose::Reconnect {
            delay_ms: backoff_delay_ms(failed_attempts, random),
        }
    }

    /// An attempt starts at `now_ms`: the token to present, if the conversation may still be
    /// resumed (a ticket, and its grace not over since the drop). A ticket past its grace is
    /// forgotten.
    pub fn begin_attempt(&mut self, now_ms: f64) -> Option<String> {
        self.attempts += 1;
        let dropped_at_ms = self.outage.map_or(now_ms, |outage| outage.dropped_at_ms);
        let ticket = self.ticket.take()?;
        if now_ms - dropped_at_ms >= f64::from(ticket.grace_s) * 1000.0 {
            return None;
        }
        let token = ticket.token.clone();
        // Kept for the next attempt in case this one fails before the proxy takes it.
        self.ticket = Some(ticket);
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(token: &str, grace_s: u32) -> Option<ResumeTicket> {
        Some(ResumeTicket {
            token: token.into(),
            grace_s,
        })
    }

    #[test]
    fn drops_reconnect_and_deliberate_closes_do_not() {
        for code in [1001, 1005, 1006, 1011, 1012, 1013] {
            assert!(should_reconnect(code), "{code}");
        }
        for code in [1000, 1002, 1003, 1007, 1008, 1009, 1010, 1015, 4000] {
            assert!(!should_reconnect(code), "{code}");
        }
    }

    #[test]
    fn the_backoff_doubles_from_250_ms_to_8_s_and_is_jittered_in_its_upper_half() {
        let ceilings: Vec<f64> = (0..10).map(|n| backoff_delay_ms(n, 1.0)).collect();
        assert_eq!(
            ceilings,
            [
                250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 8000.0, 8000.0, 8000.0, 8000.0
            ]
        );
        assert_eq!(backoff_delay_ms(0, 0.0), 125.0);
        assert_eq!(backoff_delay_ms(3, 0.5), 1500.0);
        assert_eq!(backoff_delay_ms(7, 0.0), 4000.0);
        // Out-of-range randoms and huge attempts stay inside the schedule.
        assert_eq!(backoff_delay_ms(1, 7.0), 500.0);
        assert_eq!(backoff_delay_ms(u32::MAX, 0.0), 4000.0);
        // The whole schedule waits 16 to 32 s before giving up.
        let total = |random| {
            (0..MAX_RECONNECT_ATTEMPTS)
                .map(|n| backoff_delay_ms(n, random))
                .sum::<f64>()
        };
        assert_eq!((total(0.0), total(1.0)), (15_875.0, 31_750.0));
    }

    #[test]
    fn a_drop_of_a_ready_session_schedules_attempts_until_one_gets_a_session() {
        let mut reconnect = Reconnector::new();
        assert_eq!(
            reconnect.on_session_ready(ticket("t1", 60), false),
            Ready::First
        );
        assert_eq!(
            reconnect.on_close(1006, true, 1_000.0, 0.0),
            AfterClose::Reconnect { delay_ms: 125.0 }
        );
        assert!(reconnect.is_reconnecting());
        assert_eq!(reconnect.begin_attempt(1_125.0).as_deref(), Some("t1"));
        // That attempt fails before a session: the next waits longer, and presents the
        // same token (the proxy never took it).
        assert_eq!(
            reconnect.on_close(1006, false, 1_200.0, 1.0),
            AfterClose::Reconnect { delay_ms: 500.0 }
        );
        assert_eq!(reconnect.begin_attempt(1_700.0).as_deref(), Some("t1"));
        assert_eq!(
            reconnect.on_session_ready(ticket("t2", 60), true),
            Ready::Resumed
        );
        assert!(!reconnect.is_reconnecting());
        assert_eq!((reconnect.attempts(), reconnect.reconnects()), (2, 1));
        // The next drop starts the schedule over, with the newest token.
        assert_eq!(
            reconnect.on_close(1012, true, 5_000.0, 0.0),
            AfterClose::Reconnect { delay_ms: 125.0 }
        );
        assert_eq!(reconnect.begin_attempt(5_125.0).as_deref(), Some("t2"));
    }

    #[test]
    fn it_gives_up_after_the_last_attempt_fails() {
        let mut reconnect = Reconnector::new();
        reconnect.on_session_ready(ticket("t", 60), false);
        let mut delays = Vec::new();
        let mut after = reconnect.on_close(1006, true, 0.0, 1.0);
        while let AfterClose::Reconnect { delay_ms } = after {
            delays.push(delay_ms);
            reconnect.begin_attempt(0.0);
            after = reconnect.on_close(1006, false, 0.0, 1.0);
        }
        assert_eq!(delays.len(), MAX_RECONNECT_ATTEMPTS as usize);
        assert_eq!(
            after,
            AfterClose::GiveUp {
                attempts: MAX_RECONNECT_ATTEMPTS
            }
        );
        assert!(!reconnect.is_reconnecting());
    }

    #[test]
    fn deliberate_closes_and_refusals_at_start_are_final() {
        let mut reconnect = Reconnector::new();
        // The socket of Start closed before any session: a refusal, not a drop.
        assert_eq!(reconnect.on_close(1006, false, 0.0, 0.0), AfterClose::Final);
        reconnect.on_session_ready(ticket("t", 60), false);
        for code in [1000, 1008, 1009] {
            assert_eq!(
                reconnect.on_close(code, true, 0.0, 0.0),
                AfterClose::Final,
                "{code}"
            );
        }
        // A final close during an outage ends it too.
        reconnect.on_close(1006, true, 0.0, 0.0);
        assert_eq!(reconnect.on_close(1008, false, 0.0, 0.0), AfterClose::Final);
        assert!(!reconnect.is_reconnecting());
    }

    #[test]
    fn after_the_grace_period_the_token_is_no_longer_presented() {
        let mut reconnect = Reconnector::new();
        reconnect.on_session_ready(ticket("t", 2), false);
        reconnect.on_close(1006, true, 10_000.0, 0.0);
        assert_eq!(reconnect.begin_attempt(11_999.0).as_deref(), Some("t"));
        reconnect.on_close(1006, false, 11_999.0, 0.0);
        assert_eq!(reconnect.begin_attempt(12_000.0), None);
        reconnect.on_close(1006, false, 12_000.0, 0.0);
        assert_eq!(reconnect.begin_attempt(12_100.0), None, "forgotten");
        // A fresh session after that: the conversation restarted.
        assert_eq!(
            reconnect.on_session_ready(ticket("u", 2), false),
            Ready::Restarted
        );
    }

    #[test]
    fn a_session_without_a_ticket_reconnects_to_a_fresh_conversation() {
        let mut reconnect = Reconnector::new();
        reconnect.on_session_ready(None, false);
        assert!(matches!(
            reconnect.on_close(1006, true, 0.0, 0.0),
            AfterClose::Reconnect { .. }
        ));
        assert_eq!(reconnect.begin_attempt(200.0), None);
        let ready = reconnect.on_session_ready(None, false);
        assert_eq!(ready, Ready::Restarted);
        assert!(!ready.keeps_conversation());
        assert_eq!(
            ready.notice().map(|notice| notice.to_string()).as_deref(),
            Some(
                "The connection dropped and the conversation restarted: earlier turns are \
                 forgotten."
            )
        );
        assert!(Ready::Resumed.keeps_conversation() && Ready::Resumed.notice().is_none());
        assert!(Ready::First.keeps_conversation() && Ready::First.notice().is_none());
    }
}
