//! The test-facing snapshot behind `window.__voiceTest()`.
//!
//! Browser tests read counters here instead of scraping the page: per response the samples
//! received and played, the playback worklet's underruns, the VAD events, the audio sent, the
//! last error. It is built only when a test asks (the page never calls it), so it costs nothing
//! while audio runs. Keep it small: it is not an API for anything but tests.

use std::collections::BTreeMap;

use protocol::ResponseId;
use serde::Serialize;

use crate::session::{ResponseTrack, Session};

/// A VAD event as the capture worklet reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VadRecord {
    /// `speech_started`, `speech_paused`, `speech_resumed` or `speech_stopped`.
    pub event: &'static str,
    /// Milliseconds of capture stream since the worklet started.
    pub audio_ms: f64,
}

/// Counters the browser glue keeps (the session keeps the rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlueCounters {
    /// The AudioContext's rate, once running.
    pub sample_rate: Option<f64>,
    /// How the capture worklet got its wasm: `module` or `bytes`.
    pub capture_via: Option<String>,
    /// How the playback worklet got its wasm.
    pub playback_via: Option<String>,
    /// The WebSocket is open.
    pub connected: bool,
    /// The connection badge's state (`connecting`, `connected`, `reconnecting`, `offline`).
    pub connection: &'static str,
    /// Sockets opened to reconnect after a drop (successful or not).
    pub reconnect_attempts: u32,
    /// Reconnects that got a session (resumed or fresh).
    pub reconnects: u32,
    /// `session_ready.resumed` of the latest session.
    pub resumed: Option<bool>,
    /// `session_ready.simulated`.
    pub simulated: Option<bool>,
    /// Whether the browser cancels echo on the microphone (its track settings).
    pub echo_cancellation: Option<bool>,
    /// VAD events in order.
    pub vad: Vec<VadRecord>,
    /// Binary audio frames sent to the proxy.
    pub sent_frames: u64,
    /// Bytes of those frames.
    pub sent_bytes: u64,
    /// The last error shown, as text.
    pub last_error: Option<String>,
}

/// The whole snapshot.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe<'a> {
    #[serde(flatten)]
    glue: &'a GlueCounters,
    pipeline: &'static str,
    responses: BTreeMap<String, &'a ResponseTrack>,
    underruns: u64,
    stale_dropped: u64,
    unknown_frames: u64,
}

impl<'a> Probe<'a> {
    /// Gathers the snapshot.
    pub fn new(glue: &'a GlueCounters, session: &'a Session) -> Self {
        Self {
            glue,
            pipeline: session.pipeline().key(),
            responses: session
                .responses()
                .iter()
                .map(|(id, track): (&ResponseId, _)| (id.to_string(), track))
                .collect(),
            underruns: session.underruns(),
            stale_dropped: session.stale_dropped(),
            unknown_frames: session.unknown_frames(),
        }
    }

    /// As JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the probe always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_is_flat_camel_case_json() {
        let glue = GlueCounters {
            sample_rate: Some(44_100.0),
            sent_frames: 3,
            connection: "reconnecting",
            reconnect_attempts: 2,
            ..GlueCounters::default()
        };
        let session = Session::new();
        let json: serde_json::Value =
            serde_json::from_str(&Probe::new(&glue, &session).to_json()).unwrap();
        assert_eq!(json["sampleRate"], 44_100.0);
        assert_eq!(json["sentFrames"], 3);
        assert_eq!(json["pipeline"], "idle");
        assert_eq!(json["connection"], "reconnecting");
        assert_eq!(json["reconnectAttempts"], 2);
        assert_eq!(json["reconnects"], 0);
        assert!(json["resumed"].is_null());
        assert!(json["responses"].as_object().unwrap().is_empty());
    }
}
