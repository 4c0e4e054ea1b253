//! What every session actor has, whatever its pipeline: the browser link, the session's timers,
//! the audio budget, the protocol-error allowance and the warning episodes. Both actors (the
//! chained pipeline's in [`super`] and [`super::speech_to_speech`]) hold one and let it deal
//! with what is the same for both.

use std::ops::ControlFlow;
use std::time::Duration;

use axum::extract::ws::close_code;
use bytes::Bytes;
use protocol::{ErrorCode, ErrorEvent, ServerMessage, Stage};
use tokio::sync::mpsc;

use super::audio_budget::{AudioBudget, AudioVerdict, audio_ms};
use super::browser::{AudioWritten, BrowserLink};
use super::deadlines::{Deadlines, Timer};
use crate::config::Limits;
use crate::limits::{Episode, TokenBucket};
use crate::observability::{Metrics, SessionEnd};

/// The window over which protocol errors are counted before the session is closed.
const PROTOCOL_ERROR_WINDOW: Duration = Duration::from_secs(10);

/// Warnings of one session closer together than this are one episode: the first is logged,
/// the rest counted, so one client cannot fill the log.
const WARNING_EPISODE_QUIET: Duration = Duration::from_secs(10);

/// Reports of audio the upstream could not take closer together than this are one episode,
/// reported once: a slow upstream drops many frames in a row.
const BACKLOG_EPISODE_QUIET: Duration = Duration::from_secs(10);

/// What the user hears of a turn with (almost) no audio, in either pipeline.
pub(crate) const AUDIO_TOO_SHORT_MESSAGE: &str =
    "I didn't catch anything; please speak a little longer.";

/// The error of a turn with (almost) no audio.
pub(crate) fn audio_too_short() -> ErrorEvent {
    ErrorEvent::new(
        Stage::Stt,
        ErrorCode::AudioTooShort,
        AUDIO_TOO_SHORT_MESSAGE,
        true,
    )
}

/// What became of a frame of microphone audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Within the budget: relay it.
    Relay(Bytes),
    /// Over the budget: dropped (and said so, once per episode).
    Dropped,
    /// A sustained flood: the session is closed with 1008.
    Closed,
}

/// The parts every session actor shares.
#[derive(Debug)]
pub(crate) struct Shell {
    /// The browser's socket, through its writer.
    pub(crate) browser: BrowserLink,
    /// The writer's reports that a response's audio is all on the socket.
    pub(crate) audio_written: mpsc::Receiver<AudioWritten>,
    /// The session's timers.
    pub(crate) deadlines: Deadlines,
    audio_budget: AudioBudget,
    /// Protocol errors allowed before the session is closed (refilled over the window).
    protocol_errors: TokenBucket,
    /// Warnings logged: one per episode.
    warnings: Episode,
    /// Frames the upstream could not take: reported once per episode.
    backlog: Episode,
    /// Whether any frame came from the browser since the last ping.
    heard_since_ping: bool,
    /// Audio of the utterance in progress, in milliseconds.
    utterance_ms: f64,
    /// Timeouts and spend limits.
    pub(crate) limits: Limits,
    /// The server's metrics.
    pub(crate) metrics: Metrics,
}

impl Shell {
    /// The shell of a session starting now on this browser link.
    pub(crate) fn new(
        browser: BrowserLink,
        audio_written: mpsc::Receiver<AudioWritten>,
        limits: Limits,
        metrics: Metrics,
    ) -> Self {
        let now = tokio::time::Instant::now();
        let deadlines = Deadlines::new(
            now,
            limits.session_idle_timeout,
            limits.max_session_length,
            limits.browser_ping_interval,
        );
        let audio_budget = AudioBudget::new(limits.audio_rate_limit, now.into_std());
        let max_errors = f64::from(limits.max_protocol_errors.max(1));
        let protocol_errors = TokenBucket::new(
            max_errors,
            max_errors / PROTOCOL_ERROR_WINDOW.as_secs_f64(),
            now.into_std(),
        );
        Self {
            browser,
            audio_written,
            deadlines,
            audio_budget,
            protocol_errors,
            warnings: Episode::new(WARNING_EPISODE_QUIET),
            backlog: Episode::new(BACKLOG_EPISODE_QUIET),
            heard_since_ping: true,
            utterance_ms: 0.0,
            limits,
            metrics,
        }
    }

    /// A frame came from the browser: it is alive.
    pub(crate) fn heard(&mut self) {
        self.heard_since_ping = true;
    }

    /// Tells the browser about an error and logs it, once per episode of warnings.
    pub(crate) async fn send_error(&mut self, event: ErrorEvent) {
        self.warn(&event);
        self.send_logged_error(event).await;
    }

    /// Tells the browser about an error the caller has logged already.
    pub(crate) async fn send_logged_error(&mut self, event: ErrorEvent) {
        self.metrics.error_sent(&event);
        self.browser.send(ServerMessage::Error(event)).await;
    }

    /// Logs an error event as a warning, unless this session is in an episode of them.
    pub(crate) fn warn(&mut self, event: &ErrorEvent) {
        if let Some(previous) = self.warnings.record(std::time::Instant::now()) {
            tracing::warn!(
                stage = event.stage.as_str(),
                code = ?event.code,
                previous_episode_warnings = previous,
                "{}",
                event.message
            );
        } else {
            tracing::debug!(stage = event.stage.as_str(), code = ?event.code, "{}", event.message);
        }
    }

    /// A frame the contract does not allow: reported, and counted; too many in the window
    /// close the session with 1008.
    pub(crate) async fn on_protocol_error(&mut self, event: ErrorEvent) -> ControlFlow<SessionEnd> {
        if self
            .protocol_errors
            .try_take(1.0, std::time::Instant::now())
        {
            self.send_error(event).await;
            return ControlFlow::Continue(());
        }
        tracing::warn!("too many protocol errors; closing the session");
        self.browser
            .close(close_code::POLICY, "Too many invalid messages.")
            .await;
        ControlFlow::Break(SessionEnd::ProtocolErrors)
    }

    /// Admits microphone audio within the session's budget; a sustained flood closes the
    /// session with 1008. Every frame received counts as audio in, admitted or not.
    pub(crate) async fn admit_audio(&mut self, audio: Bytes) -> Admitted {
        self.metrics.audio_in(audio.len());
        match self
            .audio_budget
            .admit(audio_ms(audio.len()), std::time::Instant::now())
        {
            AudioVerdict::Accept => Admitted::Relay(audio),
            AudioVerdict::Drop { report } => {
                if report {
                    self.send_error(ErrorEvent::new(
                        Stage::Proxy,
                        ErrorCode::AudioTooFast,
                        "Audio is arriving faster than real time; the excess was dropped.",
                        false,
                    ))
                    .await;
                }
                Admitted::Dropped
            }
            AudioVerdict::Flood => {
                tracing::warn!("audio flood; closing the session");
                self.browser
                    .close(close_code::POLICY, "Audio sent faster than real time.")
                    .await;
                Admitted::Closed
            }
        }
    }

    /// The upstream's queue was full and a frame of the user's audio was lost: the user hears
    /// `message` (from `stage`) once per episode.
    pub(crate) async fn audio_lost_upstream(&mut self, stage: Stage, message: &'static str) {
        if self.backlog.record(std::time::Instant::now()).is_some() {
            self.send_error(ErrorEvent::new(
                stage,
                ErrorCode::UpstreamTimeout,
                message,
                true,
            ))
            .await;
        }
    }

    /// A new utterance begins.
    pub(crate) fn utterance_started(&mut self) {
        self.utterance_ms = 0.0;
    }

    /// Counts a relayed frame of `frame_ms` into the utterance; `true` once the utterance is
    /// longer than `MAX_UTTERANCE_S`.
    pub(crate) fn utterance_too_long(&mut self, frame_ms: f64) -> bool {
        self.utterance_ms += frame_ms;
        self.utterance_ms > self.limits.max_utterance.as_secs_f64() * 1000.0
    }

    /// Tells the user their utterance is ended at the longest length allowed (the caller ends
    /// the turn, as if they had paused), and starts counting afresh.
    pub(crate) async fn end_long_utterance(&mut self) {
        self.utterance_ms = 0.0;
        let seconds = self.limits.max_utterance.as_secs();
        self.send_error(ErrorEvent::new(
            Stage::Proxy,
            ErrorCode::UtteranceTooLong,
            format!("You spoke for over {seconds} seconds; I'll answer what I heard so far."),
            true,
        ))
        .await;
    }

    /// Handles the timers every session has (idle, maximum length, ping), which may end the
    /// session. Other timers are the caller's and are left alone.
    pub(crate) async fn on_session_timer(&mut self, timer: Timer) -> ControlFlow<SessionEnd> {
        let now = tokio::time::Instant::now();
        match timer {
            Timer::Idle => {
                let minutes = self.limits.session_idle_timeout.as_secs().div_ceil(60);
                tracing::info!("closing an idle session");
                let reason = format!(
                    "Session closed after {minutes} minute{} without speech.",
                    if minutes == 1 { "" } else { "s" }
                );
                self.browser.close(close_code::NORMAL, reason).await;
                ControlFlow::Break(SessionEnd::Idle)
            }
            Timer::End => {
                tracing::info!("closing a session at its maximum length");
                self.browser
                    .close(close_code::NORMAL, "Session reached its maximum length.")
                    .await;
                ControlFlow::Break(SessionEnd::MaxLength)
            }
            Timer::Ping => {
                if !self.heard_since_ping {
                    // Not even a pong for a whole interval: the browser is gone (a closed
                    // laptop, a dropped network). No close handshake with nobody.
                    tracing::info!("browser did not answer the ping; ending its session");
                    return ControlFlow::Break(SessionEnd::PingTimeout);
                }
                self.heard_since_ping = false;
                self.browser.ping();
                self.deadlines.pinged(now);
                ControlFlow::Continue(())
            }
            Timer::Transcript | Timer::QuietClose => ControlFlow::Continue(()),
        }
    }
}
