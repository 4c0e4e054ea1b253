//! The proxy's Prometheus metrics, served at `/metrics`.
//!
//! One recorder per server (`AppState`), never a process-global one: tests run many servers
//! in one process, and each must count only its own sessions. Handles are registered on it
//! directly and [`Metrics`] is cloned wherever something is counted; the exporter renders the
//! text exposition format.
//!
//! Names start with `voice_` and carry their unit; counters end in `_total`; durations are in
//! seconds. Every series with a fixed label set exists from the start (at zero), so a rate over
//! it never misses its first event; the errors by stage and code appear at their first
//! occurrence (most of the pairs can never happen).
//!
//! Nothing here allocates or locks on the audio path: a frame costs an atomic add, and a
//! counter increment once a whole second of audio has gone by.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use protocol::{ErrorEvent, Stage, Waterfall};

use crate::session::metrics::{HOPS, hop_gaps_ms};
use crate::state::SessionRefused;

/// Sessions admitted and not yet ended (upgrading or running).
const SESSIONS_LIVE: &str = "voice_sessions_live";
/// Sessions ended, by why.
const SESSIONS_CLOSED: &str = "voice_sessions_closed_total";
const SESSION_RESUMES: &str = "voice_session_resumes_total";
/// WebSocket handshakes refused, by why.
const HANDSHAKES_REFUSED: &str = "voice_handshakes_refused_total";
/// Turns whose answer started (each reports its waterfall).
const TURNS: &str = "voice_turns_total";
/// Error events sent to browsers, by stage and code.
const ERRORS: &str = "voice_errors_total";
/// Upstream attempts retried, by the stage they serve.
const UPSTREAM_RETRIES: &str = "voice_upstream_retries_total";
/// Audio received from browsers.
const AUDIO_IN: &str = "voice_audio_in_seconds_total";
/// Audio written to browsers' sockets.
const AUDIO_OUT: &str = "voice_audio_out_seconds_total";
/// One hop of a turn's waterfall.
const TURN_HOP: &str = "voice_turn_hop_seconds";
/// End of the user's speech to the answer's first audio on the socket.
const FIRST_AUDIO: &str = "voice_first_audio_seconds";

/// Buckets of one hop, in seconds: a hop takes from well under a millisecond (a commit, a
/// first clause) to seconds (a slow transcription or first token), so roughly ×2 steps.
const HOP_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// Buckets of the wait for the first audio, in seconds: a person notices a pause from about
/// 0.3 s and gives up after a few seconds, so the steps are finest between those.
const FIRST_AUDIO_BUCKETS_SECONDS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0,
];

/// PCM bytes per second of the wire's audio (PCM16 mono at 24 kHz).
const AUDIO_BYTES_PER_SECOND: u64 =
    protocol::SAMPLE_RATE_HZ as u64 * protocol::BYTES_PER_SAMPLE as u64;

/// The stages upstream requests serve (the retries' `stage` label).
const UPSTREAM_STAGES: [Stage; 3] = [Stage::Stt, Stage::Llm, Stage::Tts];

/// What the recorder is told about each handle; the Prometheus recorder ignores it.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Why a session ended: the `reason` label of `voice_sessions_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// The browser closed the socket, or its connection ended.
    ClientClosed,
    /// The socket failed under the session.
    SocketError,
    /// The browser sent a message over the size limit (closed with 1009).
    MessageTooBig,
    /// The browser sent a frame the WebSocket refuses (bad UTF-8, a protocol error).
    BadFrame,
    /// The browser stopped reading: one frame took longer than the send timeout.
    NotReading,
    /// The browser answered no ping for a whole interval.
    PingTimeout,
    /// Nobody spoke for the idle timeout.
    Idle,
    /// The session reached its maximum length.
    MaxLength,
    /// Too many invalid messages (closed with 1008).
    ProtocolErrors,
    /// Audio sent faster than real time for too long (closed with 1008).
    AudioFlood,
    /// The server shut down (closed with 1012 "service restart": the page resumes elsewhere).
    Shutdown,
    /// A reconnect presented this session's resume token and took over its conversation.
    TakenOver,
}

impl SessionEnd {
    /// Every reason, for their series to exist from the start.
    const ALL: [SessionEnd; 12] = [
        SessionEnd::ClientClosed,
        SessionEnd::SocketError,
        SessionEnd::MessageTooBig,
        SessionEnd::BadFrame,
        SessionEnd::NotReading,
        SessionEnd::PingTimeout,
        SessionEnd::Idle,
        SessionEnd::MaxLength,
        SessionEnd::ProtocolErrors,
        SessionEnd::AudioFlood,
        SessionEnd::Shutdown,
        SessionEnd::TakenOver,
    ];

    /// The label value, also logged.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionEnd::ClientClosed => "client_closed",
            SessionEnd::SocketError => "socket_error",
            SessionEnd::MessageTooBig => "message_too_big",
            SessionEnd::BadFrame => "bad_frame",
            SessionEnd::NotReading => "not_reading",
            SessionEnd::PingTimeout => "ping_timeout",
            SessionEnd::Idle => "idle",
            SessionEnd::MaxLength => "max_length",
            SessionEnd::ProtocolErrors => "protocol_errors",
            SessionEnd::AudioFlood => "audio_flood",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::TakenOver => "taken_over",
        }
    }

    /// Whether the conversation is kept for a resume: the socket dropped or was closed by
    /// this side with a reconnect in mind, rather than the user leaving or the session being
    /// closed for good.
    pub(crate) fn keeps_conversation(self) -> bool {
        match self {
            SessionEnd::SocketError
            | SessionEnd::NotReading
            | SessionEnd::PingTimeout
            | SessionEnd::Shutdown
            | SessionEnd::TakenOver => true,
            SessionEnd::ClientClosed
            | SessionEnd::MessageTooBig
            | SessionEnd::BadFrame
            | SessionEnd::Idle
            | SessionEnd::MaxLength
            | SessionEnd::ProtocolErrors
            | SessionEnd::AudioFlood => false,
        }
    }
}

/// The `outcome` label of `voice_session_resumes_total`.
const RESUME_OUTCOMES: [&str; 2] = ["resumed", "restarted"];

/// Why a WebSocket handshake was refused: the `reason` label of
/// `voice_handshakes_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A `Host` this server is not configured as (`PUBLIC_HOSTS`).
    Host,
    /// No access token, or a wrong one.
    Token,
    /// A page of another site.
    Origin,
    /// The server is draining.
    ShuttingDown,
    /// The server holds its maximum of sessions.
    ServerFull,
    /// The client's address holds its maximum of sessions.
    AddressFull,
    /// The client's address opens sessions too fast.
    AddressRate,
}

impl Refusal {
    /// Every reason, for their series to exist from the start.
    const ALL: [Refusal; 7] = [
        Refusal::Host,
        Refusal::Token,
        Refusal::Origin,
        Refusal::ShuttingDown,
        Refusal::ServerFull,
        Refusal::AddressFull,
        Refusal::AddressRate,
    ];

    /// The label value.
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Token => "token",
            Refusal::Origin => "origin",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::ServerFull => "server_full",
            Refusal::AddressFull => "address_full",
            Refusal::AddressRate => "address_rate",
        }
    }
}

impl From<SessionRefused> for Refusal {
    fn from(refused: SessionRefused) -> Self {
        match refused {
            SessionRefused::ShuttingDown => Refusal::ShuttingDown,
            SessionRefused::Full => Refusal::ServerFull,
            SessionRefused::AddressFull => Refusal::AddressFull,
            SessionRefused::TooFast(_) => Refusal::AddressRate,
        }
    }
}

/// The server's metrics; cheap to clone (every clone counts into the same recorder).
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The registry's contents are what `/metrics` is for, not a debug line.
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    sessions_live: Gauge,
    turns: Counter,
    audio_in: AudioSeconds,
    audio_out: AudioSeconds,
    /// One per entry of [`HOPS`], in its order.
    hops: [Histogram; HOPS.len()],
    first_audio: Histogram,
}

impl Metrics {
    /// A fresh recorder with every fixed series registered at zero.
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(TURN_HOP.to_owned()), HOP_BUCKETS_SECONDS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(FIRST_AUDIO.to_owned()),
                    FIRST_AUDIO_BUCKETS_SECONDS,
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        describe(&recorder);
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &METADATA);
        // Registering is what makes a series exist: these are at zero from the start.
        for end in SessionEnd::ALL {
            counter_with(&recorder, SESSIONS_CLOSED, &[("reason", end.as_str())]).increment(0);
        }
        for outcome in RESUME_OUTCOMES {
            counter_with(&recorder, SESSION_RESUMES, &[("outcome", outcome)]).increment(0);
        }
        for refusal in Refusal::ALL {
            counter_with(
                &recorder,
                HANDSHAKES_REFUSED,
                &[("reason", refusal.as_str())],
            )
            .increment(0);
        }
        for stage in UPSTREAM_STAGES {
            counter_with(&recorder, UPSTREAM_RETRIES, &[("stage", stage.as_str())]).increment(0);
        }
        let hops = HOPS.map(|hop| {
            recorder.register_histogram(
                &Key::from_parts(TURN_HOP, vec![Label::from_static_parts("hop", hop)]),
                &METADATA,
            )
        });
        let inner = Inner {
            sessions_live: recorder
                .register_gauge(&Key::from_static_name(SESSIONS_LIVE), &METADATA),
            turns: counter(TURNS),
            audio_in: AudioSeconds::new(counter(AUDIO_IN)),
            audio_out: AudioSeconds::new(counter(AUDIO_OUT)),
            hops,
            first_audio: recorder
                .register_histogram(&Key::from_static_name(FIRST_AUDIO), &METADATA),
            handle: recorder.handle(),
            recorder,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Folds the histograms' recent samples into their buckets, so samples do not pile up
    /// between scrapes (or forever, when nobody scrapes).
    pub(crate) fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// A session was admitted.
    pub(crate) fn session_admitted(&self) {
        self.inner.sessions_live.increment(1.0);
    }

    /// An admitted session is gone (ended, or its upgrade never completed).
    pub(crate) fn session_released(&self) {
        self.inner.sessions_live.decrement(1.0);
    }

    /// A session ended for `end`.
    pub(crate) fn session_closed(&self, end: SessionEnd) {
        self.counter(SESSIONS_CLOSED, &[("reason", end.as_str())])
            .increment(1);
    }

    /// A socket presented a resume token, and this became of it.
    pub(crate) fn resume_claimed(&self, claim: &crate::session_store::Claim) {
        use crate::session_store::Claim;
        let outcome = match claim {
            Claim::Fresh => return,
            Claim::Resumed(_) => RESUME_OUTCOMES[0],
            Claim::Restarted => RESUME_OUTCOMES[1],
        };
        self.counter(SESSION_RESUMES, &[("outcome", outcome)])
            .increment(1);
    }

    /// A WebSocket handshake was refused.
    pub(crate) fn handshake_refused(&self, refusal: Refusal) {
        self.counter(HANDSHAKES_REFUSED, &[("reason", refusal.as_str())])
            .increment(1);
    }

    /// An error event went to a browser.
    pub(crate) fn error_sent(&self, event: &ErrorEvent) {
        self.counter(
            ERRORS,
            &[
                ("stage", event.stage.as_str()),
                ("code", event.code.as_str()),
            ],
        )
        .increment(1);
    }

    /// An upstream attempt for `stage` failed and is tried again.
    pub(crate) fn upstream_retry(&self, stage: Stage) {
        self.counter(UPSTREAM_RETRIES, &[("stage", stage.as_str())])
            .increment(1);
    }

    /// `bytes` of PCM arrived from a browser.
    pub(crate) fn audio_in(&self, bytes: usize) {
        self.inner.audio_in.add(bytes);
    }

    /// `bytes` of PCM went to a browser's socket.
    pub(crate) fn audio_out(&self, bytes: usize) {
        self.inner.audio_out.add(bytes);
    }

    /// A turn's answer reported its waterfall: the turn is counted and each of its hops, and
    /// the wait for its first audio, observed.
    pub(crate) fn turn_reported(&self, waterfall: &Waterfall) {
        let inner = &self.inner;
        inner.turns.increment(1);
        for (histogram, gap_ms) in inner.hops.iter().zip(hop_gaps_ms(waterfall)) {
            if let Some(gap_ms) = gap_ms {
                histogram.record(gap_ms / 1000.0);
            }
        }
        if let Some(first_audio_ms) = waterfall.first_audio_sent_ms {
            inner.first_audio.record(first_audio_ms / 1000.0);
        }
    }

    /// The counter `name` with `labels`, for events far rarer than audio frames (the lookup
    /// allocates its key).
    fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        counter_with(&self.inner.recorder, name, labels)
    }
}

/// Registers (or finds) the counter `name` with `labels` on `recorder`.
fn counter_with(
    recorder: &PrometheusRecorder,
    name: &'static str,
    labels: &[(&'static str, &'static str)],
) -> Counter {
    let labels = labels
        .iter()
        .map(|&(key, value)| Label::from_static_parts(key, value))
        .collect::<Vec<_>>();
    recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
}

/// The `# HELP` line of every metric.
fn describe(recorder: &PrometheusRecorder) {
    let counters = [
        (SESSIONS_CLOSED, "Voice sessions ended, by why."),
        (
            SESSION_RESUMES,
            "Sockets that presented a resume token: resumed (the conversation went on) or restarted (unknown or expired token).",
        ),
        (
            HANDSHAKES_REFUSED,
            "WebSocket handshakes on /ws refused, by why.",
        ),
        (
            TURNS,
            "User turns answered (each reports its latency waterfall).",
        ),
        (
            ERRORS,
            "Error events sent to browsers, by pipeline stage and error code.",
        ),
        (
            UPSTREAM_RETRIES,
            "Upstream attempts that failed and were tried again, by the stage they serve.",
        ),
        (
            AUDIO_IN,
            "Audio received from browsers, in whole seconds (PCM16 at 24 kHz).",
        ),
        (
            AUDIO_OUT,
            "Audio written to browsers' sockets, in whole seconds (PCM16 at 24 kHz).",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
    }
    recorder.describe_gauge(
        KeyName::from_const_str(SESSIONS_LIVE),
        None,
        "Voice sessions admitted and not yet ended.".into(),
    );
    recorder.describe_histogram(
        KeyName::from_const_str(TURN_HOP),
        None,
        "One hop of a turn's latency waterfall, by hop.".into(),
    );
    recorder.describe_histogram(
        KeyName::from_const_str(FIRST_AUDIO),
        None,
        "From the end of the user's speech to the answer's first audio on the socket.".into(),
    );
}

/// A counter of audio seconds fed in PCM bytes. The exporter's counters hold integers, so the
/// counter gets whole seconds and the rest waits here: the total is exact to within a second,
/// and a frame costs an atomic add (plus an increment once per second of audio).
#[derive(Debug)]
struct AudioSeconds {
    bytes: AtomicU64,
    seconds: Counter,
}

impl AudioSeconds {
    fn new(seconds: Counter) -> Self {
        Self {
            bytes: AtomicU64::new(0),
            seconds,
        }
    }

    fn add(&self, bytes: usize) {
        let bytes = bytes as u64;
        let before = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        // Each add sees its own `before`, so the whole seconds it completes add up exactly.
        let completed = (before + bytes) / AUDIO_BYTES_PER_SECOND - before / AUDIO_BYTES_PER_SECOND;
        if completed > 0 {
            self.seconds.increment(completed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name and labels as rendered) in `text`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    #[test]
    fn fixed_series_exist_at_zero() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert_eq!(value(&text, SESSIONS_LIVE), Some(0.0), "{text}");
        assert_eq!(value(&text, TURNS), Some(0.0));
        assert_eq!(
            value(&text, r#"voice_sessions_closed_total{reason="idle"}"#),
            Some(0.0)
        );
        assert_eq!(
            value(&text, r#"voice_handshakes_refused_total{reason="origin"}"#),
            Some(0.0)
        );
        assert_eq!(value(&text, "voice_first_audio_seconds_count"), Some(0.0));
        assert!(
            text.contains("# TYPE voice_turn_hop_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# HELP voice_audio_in_seconds_total "),
            "{text}"
        );
    }

    #[test]
    fn events_move_their_series() {
        let metrics = Metrics::new();
        metrics.session_admitted();
        metrics.session_admitted();
        metrics.session_released();
        metrics.session_closed(SessionEnd::Idle);
        metrics.handshake_refused(Refusal::from(SessionRefused::Full));
        metrics.upstream_retry(Stage::Tts);
        metrics.error_sent(&ErrorEvent::new(
            Stage::Llm,
            protocol::ErrorCode::RateLimited,
            "m",
            true,
        ));
        metrics.turn_reported(&Waterfall {
            commit_sent_ms: Some(0.5),
            transcript_final_ms: Some(200.5),
            first_audio_sent_ms: Some(900.0),
            ..Waterfall::default()
        });
        let text = metrics.render();
        assert_eq!(value(&text, SESSIONS_LIVE), Some(1.0), "{text}");
        assert_eq!(
            value(&text, r#"voice_sessions_closed_total{reason="idle"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"voice_handshakes_refused_total{reason="server_full"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, r#"voice_upstream_retries_total{stage="tts"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"voice_errors_total{stage="llm",code="rate_limited"}"#
            ),
            Some(1.0)
        );
        assert_eq!(value(&text, TURNS), Some(1.0));
        assert_eq!(value(&text, "voice_first_audio_seconds_count"), Some(1.0));
        assert_eq!(value(&text, "voice_first_audio_seconds_sum"), Some(0.9));
        assert_eq!(
            value(&text, r#"voice_turn_hop_seconds_count{hop="stt"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&text, r#"voice_turn_hop_seconds_sum{hop="stt"}"#),
            Some(0.2)
        );
        // Steps it does not have are not observed.
        assert_eq!(
            value(&text, r#"voice_turn_hop_seconds_count{hop="llm_ttft"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn audio_counts_whole_seconds_and_carries_the_rest() {
        let metrics = Metrics::new();
        let frame = 960; // 20 ms
        for _ in 0..49 {
            metrics.audio_in(frame);
        }
        assert_eq!(value(&metrics.render(), AUDIO_IN), Some(0.0));
        metrics.audio_in(frame);
        assert_eq!(value(&metrics.render(), AUDIO_IN), Some(1.0));
        metrics.audio_out(5 * 48_000 + 1);
        assert_eq!(value(&metrics.render(), AUDIO_OUT), Some(5.0));
    }
}
