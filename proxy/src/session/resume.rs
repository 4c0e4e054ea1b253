//! A session's part in resume, the same for both actors: what it continues, its hold on its
//! resume token (the conversation kept in the store while it runs, parked or forgotten when
//! it ends), and the close that tells the page to come back.

use axum::extract::ws::close_code;
use protocol::ResumeTicket;
use tokio_util::sync::CancellationToken;

use super::SessionContext;
use super::browser::BrowserLink;
use crate::observability::SessionEnd;
use crate::session_store::{Claim, LiveGuard, SavedSession};

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Resumption {
    /// The hold on this session's token; `None` when resume is off or the session ended.
    held: Option<LiveGuard>,
    /// Whether the session continues an earlier socket's conversation.
    resumed: bool,
    /// Fired when a reconnect presenting this session's token takes over; `None` without
    /// resume (no token, nothing to take over).
    superseded: Option<CancellationToken>,
    /// The grace period for the client's ticket, in seconds.
    grace_s: u32,
}

impl Resumption {
    /// Claims what `token` continues (see [`crate::session_store::Resume::claim`]) and takes a
    /// fresh token for this session; returns the conversation to continue, if any.
    pub(crate) async fn begin(
        context: &SessionContext,
        token: Option<&str>,
    ) -> (Self, Option<SavedSession>) {
        let claim = context.resume.claim(token).await;
        context.metrics.resume_claimed(&claim);
        let saved = match claim {
            Claim::Resumed(saved) => {
                tracing::info!(resumed_from = %saved.session_id, "session resumed");
                Some(saved)
            }
            Claim::Fresh | Claim::Restarted => None,
        };
        let held = context
            .resume
            .enabled()
            .then(|| context.resume.register(crate::session_store::new_token()));
        let superseded = held.as_ref().map(LiveGuard::superseded_token);
        let resumption = Self {
            held,
            resumed: saved.is_some(),
            superseded,
            grace_s: context.resume.grace_s(),
        };
        (resumption, saved)
    }

    /// The ticket for `session_ready`.
    pub(crate) fn ticket(&self) -> Option<ResumeTicket> {
        self.held.as_ref().map(|held| ResumeTicket {
            token: held.token().to_owned(),
            grace_s: self.grace_s,
        })
    }

    /// Whether the session continues an earlier socket's conversation.
    pub(crate) fn resumed(&self) -> bool {
        self.resumed
    }

    /// Completes when `token` (see [`Self::superseded_token`]) fires; never without resume.
    /// A free function of the token: the actor is borrowed while it selects on this.
    pub(crate) async fn superseded(token: Option<&CancellationToken>) {
        match token {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// The token [`Self::superseded`] waits on.
    pub(crate) fn superseded_token(&self) -> Option<CancellationToken> {
        self.superseded.clone()
    }

    /// Keeps the conversation for a resume (built only if resume is on).
    pub(crate) fn keep(&self, saved: impl FnOnce() -> SavedSession) {
        if let Some(held) = &self.held {
            held.keep(saved());
        }
    }

    /// The session ended for `end`: its conversation (`saved`, after the caller cut what was
    /// not heard when [`SessionEnd::keeps_conversation`]) is parked for the grace period if the page may come back, and
    /// forgotten otherwise.
    pub(crate) async fn end(&mut self, end: SessionEnd, saved: SavedSession) {
        let Some(held) = self.held.take() else {
            return;
        };
        if end.keeps_conversation() {
            held.park(saved).await;
        } else {
            held.forget().await;
        }
    }
}

/// The close for the ends this side chose with a reconnect in mind, sent once the
/// conversation is parked, so the reconnect it prompts finds it.
pub(crate) async fn close_after(end: SessionEnd, browser: &BrowserLink) {
    match end {
        // 1012: the page reconnects and resumes (on another proxy, with a shared store).
        SessionEnd::Shutdown => browser.close(close_code::RESTART, "service restart").await,
        SessionEnd::TakenOver => {
            browser
                .close(close_code::NORMAL, "resumed on a new connection")
                .await;
        }
        _ => {}
    }
}
