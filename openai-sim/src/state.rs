//! [`Shared`]: the state every handler of one simulator sees — live configuration, scripted
//! transcripts and replies, fault queues, records with their change signal, the shutdown
//! token — and the bearer-token check all three APIs share (openai-api.md §1.1, §4.1).
//!
//! Locks are `std::sync::Mutex`es held for a few instructions and never across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::http::HeaderMap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::SimConfig;
use super::error::ApiError;
use super::fault::{Fault, FaultQueues, SimStage, Taker};
use super::record::{ChatRecord, HttpRecord, RealtimeRecord, RecordRef, Records, SpeechRecord};

/// Golden-ratio increment that spreads consecutive request numbers over the seed space.
const SEED_STRIDE: u64 = 0x9e37_79b9_7f4a_7c15;

/// State shared by all connections of one simulator.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Mutex<SimConfig>,
    transcripts: Mutex<VecDeque<String>>,
    replies: Mutex<VecDeque<String>>,
    faults: Mutex<FaultQueues>,
    records: Mutex<Records>,
    /// Bumped after every change of `records`.
    changes: watch::Sender<u64>,
    /// Cancelled when the simulator shuts down: every stream and socket ends.
    pub(crate) shutdown: CancellationToken,
    /// Counts requests and turns, to derive a distinct seed for each.
    streams: AtomicU64,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            config: Mutex::new(config),
            transcripts: Mutex::default(),
            replies: Mutex::default(),
            faults: Mutex::default(),
            records: Mutex::default(),
            changes: watch::Sender::new(0),
            shutdown: CancellationToken::new(),
            streams: AtomicU64::new(0),
        }
    }

    pub(crate) fn config(&self) -> SimConfig {
        lock(&self.config).clone()
    }

    pub(crate) fn update_config(&self, change: impl FnOnce(&mut SimConfig)) {
        change(&mut lock(&self.config));
    }

    /// A seed for one stream's pseudo-random choices: the configured seed mixed with a
    /// running count, so every stream differs but a rerun repeats them.
    pub(crate) fn next_seed(&self) -> u64 {
        let n = self.streams.fetch_add(1, Ordering::Relaxed);
        self.config().seed ^ n.wrapping_add(1).wrapping_mul(SEED_STRIDE)
    }

    // --- Scripts and faults ---

    pub(crate) fn push_transcript(&self, text: String) {
        lock(&self.transcripts).push_back(text);
    }

    pub(crate) fn pop_transcript(&self) -> Option<String> {
        lock(&self.transcripts).pop_front()
    }

    pub(crate) fn push_reply(&self, text: String) {
        lock(&self.replies).push_back(text);
    }

    pub(crate) fn pop_reply(&self) -> Option<String> {
        lock(&self.replies).pop_front()
    }

    pub(crate) fn inject(&self, stage: SimStage, fault: Fault) {
        lock(&self.faults).push(stage, fault);
    }

    pub(crate) fn take_fault(&self, stage: SimStage, taker: Taker) -> Option<Fault> {
        lock(&self.faults).take(stage, taker)
    }

    // --- Records ---

    pub(crate) fn records(&self) -> Records {
        lock(&self.records).clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Changes the records and wakes every waiter.
    fn record<R>(&self, change: impl FnOnce(&mut Records) -> R) -> R {
        let result = change(&mut lock(&self.records));
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
        result
    }

    /// Whether records are being kept ([`SimConfig::recording`]).
    pub(crate) fn recording(&self) -> bool {
        lock(&self.config).recording
    }

    pub(crate) fn add_realtime(&self, record: RealtimeRecord) -> RecordRef {
        RecordRef::Realtime(self.recording().then(|| {
            self.record(|records| {
                records.realtime.push(record);
                records.realtime.len() - 1
            })
        }))
    }

    pub(crate) fn add_chat(&self, record: ChatRecord) -> RecordRef {
        RecordRef::Chat(self.recording().then(|| {
            self.record(|records| {
                records.chat.push(record);
                records.chat.len() - 1
            })
        }))
    }

    pub(crate) fn add_speech(&self, record: SpeechRecord) -> RecordRef {
        RecordRef::Speech(self.recording().then(|| {
            self.record(|records| {
                records.speech.push(record);
                records.speech.len() - 1
            })
        }))
    }

    pub(crate) fn update_realtime(&self, at: RecordRef, change: impl FnOnce(&mut RealtimeRecord)) {
        if let RecordRef::Realtime(Some(index)) = at {
            self.record(|records| records.realtime.get_mut(index).map(change));
        }
    }

    pub(crate) fn update_chat(&self, at: RecordRef, change: impl FnOnce(&mut ChatRecord)) {
        if let RecordRef::Chat(Some(index)) = at {
            self.record(|records| records.chat.get_mut(index).map(change));
        }
    }

    pub(crate) fn update_speech(&self, at: RecordRef, change: impl FnOnce(&mut SpeechRecord)) {
        if let RecordRef::Speech(Some(index)) = at {
            self.record(|records| records.speech.get_mut(index).map(change));
        }
    }

    /// Updates the parts chat and speech records share.
    pub(crate) fn update_http(&self, at: RecordRef, change: impl FnOnce(&mut dyn HttpRecord)) {
        if matches!(at, RecordRef::Chat(Some(_)) | RecordRef::Speech(Some(_))) {
            self.record(|records| records.http_mut(at).map(change));
        }
    }

    // --- Authentication ---

    /// Checks a bearer token against the configured key (any token if none is configured).
    pub(crate) fn authorize(&self, token: Option<&str>) -> Result<(), ApiError> {
        let token = token
            .filter(|token| !token.is_empty())
            .ok_or_else(ApiError::missing_api_key)?;
        match &lock(&self.config).api_key {
            Some(key) if key != token => Err(ApiError::invalid_api_key(token)),
            _ => Ok(()),
        }
    }
}

/// A header as text, for the records.
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bearer_passes_without_a_configured_key() {
        let shared = Shared::new(SimConfig::default());
        assert!(shared.authorize(Some("anything")).is_ok());
        assert_eq!(shared.authorize(None), Err(ApiError::missing_api_key()));
        assert_eq!(shared.authorize(Some("")), Err(ApiError::missing_api_key()));
    }

    #[test]
    fn a_configured_key_must_match() {
        let shared = Shared::new(SimConfig {
            api_key: Some("sk-right".into()),
            ..SimConfig::default()
        });
        assert!(shared.authorize(Some("sk-right")).is_ok());
        let error = shared
            .authorize(Some("sk-wrong-key"))
            .expect_err("wrong key");
        assert_eq!(error.code.as_deref(), Some("invalid_api_key"));
    }

    #[test]
    fn nothing_is_recorded_when_recording_is_off() {
        let shared = Shared::new(SimConfig {
            recording: false,
            ..SimConfig::default()
        });
        let at = shared.add_chat(ChatRecord::new(None, serde_json::Value::Null));
        shared.update_http(at, |record| record.set_status(500));
        assert!(shared.records().chat.is_empty());
    }
}
