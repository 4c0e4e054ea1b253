//! [`Shared`]: the state every handler of one simulator sees — live configuration, scripted
//! transcripts and replies, fault queues, records with their change signal, the shutdown
//! token — the reset that empties all of it, and the bearer-token check all three APIs share
//! (docs/openai-wire.md §1.1, §4.1).
//!
//! Locks are `std::sync::Mutex`es held for a few instructions and never across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::http::HeaderMap;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::SimConfig;
use super::error::ApiError;
use super::fault::{Fault, FaultQueues, SimStage, Taker};
use super::record::{
    ChatRecord, HttpRecord, RealtimeRecord, RecordRef, Records, Slot, SpeechRecord,
    TranscriptionRecord,
};
use super::text;

/// Golden-ratio increment that spreads consecutive request numbers over the seed space.
const SEED_STRIDE: u64 = 0x9e37_79b9_7f4a_7c15;

/// State shared by all connections of one simulator.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Mutex<SimConfig>,
    /// The configuration the simulator started with, which a reset restores.
    initial_config: SimConfig,
    transcripts: Mutex<VecDeque<String>>,
    replies: Mutex<VecDeque<String>>,
    faults: Mutex<FaultQueues>,
    records: Mutex<RecordStore>,
    /// Bumped after every change of `records`.
    changes: watch::Sender<u64>,
    /// Cancelled when the simulator shuts down: every stream and socket ends.
    pub(crate) shutdown: CancellationToken,
    /// Counts requests and turns, to derive a distinct seed for each.
    streams: AtomicU64,
    /// When the simulator started: the origin of every moment in the records.
    started: Instant,
}

/// The records and their generation, bumped by every reset.
#[derive(Debug, Default)]
struct RecordStore {
    records: Records,
    generation: u64,
}

impl RecordStore {
    /// The slot's index if it belongs to the current generation.
    fn index(&self, slot: Option<Slot>) -> Option<usize> {
        slot.filter(|slot| slot.generation == self.generation)
            .map(|slot| slot.index)
    }
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        Self {
            initial_config: config.clone(),
            config: Mutex::new(config),
            transcripts: Mutex::default(),
            replies: Mutex::default(),
            faults: Mutex::default(),
            records: Mutex::default(),
            changes: watch::Sender::new(0),
            shutdown: CancellationToken::new(),
            streams: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Milliseconds since the simulator started, the clock of the records' moments.
    pub(crate) fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
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

    /// Queues a transcript; returns how many are queued now.
    pub(crate) fn push_transcript(&self, text: String) -> usize {
        let mut queue = lock(&self.transcripts);
        queue.push_back(text);
        queue.len()
    }

    pub(crate) fn pop_transcript(&self) -> Option<String> {
        lock(&self.transcripts).pop_front()
    }

    /// The transcript of `audio_ms` of user audio: the next scripted one, else one that says
    /// how long the user spoke.
    pub(crate) fn next_transcript(&self, audio_ms: u64) -> String {
        self.pop_transcript()
            .unwrap_or_else(|| text::duration_transcript(audio_ms))
    }

    /// Queues a reply; returns how many are queued now.
    pub(crate) fn push_reply(&self, text: String) -> usize {
        let mut queue = lock(&self.replies);
        queue.push_back(text);
        queue.len()
    }

    pub(crate) fn pop_reply(&self) -> Option<String> {
        lock(&self.replies).pop_front()
    }

    /// The reply to the user's last message: the next scripted one, else the configured
    /// [`SimConfig::default_reply`], else the echo.
    pub(crate) fn next_reply(&self, last_user_message: Option<&str>) -> String {
        self.pop_reply()
            .or_else(|| lock(&self.config).default_reply.clone())
            .unwrap_or_else(|| text::echo_reply(last_user_message))
    }

    /// Queues a fault; returns how many are queued for `stage` now.
    pub(crate) fn inject(&self, stage: SimStage, fault: Fault) -> usize {
        let mut queues = lock(&self.faults);
        queues.push(stage, fault);
        queues.pending(stage).len()
    }

    /// The faults still queued for `stage`, in order.
    pub(crate) fn pending_faults(&self, stage: SimStage) -> Vec<Fault> {
        lock(&self.faults).pending(stage).iter().cloned().collect()
    }

    /// Forgets scripts, queued faults and records, and restores the configuration the
    /// simulator started with (keeping `control` as it is, so the surface that asked stays).
    /// Requests in flight finish but no longer update the records.
    pub(crate) fn reset(&self) {
        lock(&self.transcripts).clear();
        lock(&self.replies).clear();
        *lock(&self.faults) = FaultQueues::default();
        {
            let mut config = lock(&self.config);
            let control = config.control;
            *config = SimConfig {
                control,
                ..self.initial_config.clone()
            };
        }
        self.streams.store(0, Ordering::Relaxed);
        self.record(|store| {
            store.records = Records::default();
            store.generation += 1;
        });
    }

    pub(crate) fn take_fault(&self, stage: SimStage, taker: Taker) -> Option<Fault> {
        lock(&self.faults).take(stage, taker)
    }

    // --- Records ---

    pub(crate) fn records(&self) -> Records {
        lock(&self.records).records.clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Changes the records and wakes every waiter.
    fn record<R>(&self, change: impl FnOnce(&mut RecordStore) -> R) -> R {
        let result = change(&mut lock(&self.records));
        self.changes
            .send_modify(|generation| *generation = generation.wrapping_add(1));
        result
    }

    /// Whether records are being kept ([`SimConfig::recording`]).
    pub(crate) fn recording(&self) -> bool {
        lock(&self.config).recording
    }

    /// Counts an accepted TCP connection, if recording.
    pub(crate) fn count_connection(&self) {
        if self.recording() {
            self.record(|store| store.records.connections_accepted += 1);
        }
    }

    pub(crate) fn add_realtime(&self, record: RealtimeRecord) -> RecordRef {
        RecordRef::Realtime(self.add(|records| &mut records.realtime, record))
    }

    pub(crate) fn add_chat(&self, record: ChatRecord) -> RecordRef {
        RecordRef::Chat(self.add(|records| &mut records.chat, record))
    }

    pub(crate) fn add_speech(&self, record: SpeechRecord) -> RecordRef {
        RecordRef::Speech(self.add(|records| &mut records.speech, record))
    }

    pub(crate) fn add_transcription(&self, record: TranscriptionRecord) -> RecordRef {
        RecordRef::Transcription(self.add(|records| &mut records.transcription, record))
    }

    pub(crate) fn update_transcription(
        &self,
        at: RecordRef,
        change: impl FnOnce(&mut TranscriptionRecord),
    ) {
        if let RecordRef::Transcription(slot) = at {
            self.record(|store| {
                let index = store.index(slot)?;
                store.records.transcription.get_mut(index).map(change)
            });
        }
    }

    /// Appends a record to one list, if recording; returns its slot.
    fn add<T>(&self, list: impl FnOnce(&mut Records) -> &mut Vec<T>, record: T) -> Option<Slot> {
        self.recording().then(|| {
            self.record(|store| {
                let list = list(&mut store.records);
                list.push(record);
                Slot {
                    generation: store.generation,
                    index: list.len() - 1,
                }
            })
        })
    }

    pub(crate) fn update_realtime(&self, at: RecordRef, change: impl FnOnce(&mut RealtimeRecord)) {
        if let RecordRef::Realtime(slot) = at {
            self.record(|store| {
                let index = store.index(slot)?;
                store.records.realtime.get_mut(index).map(change)
            });
        }
    }

    pub(crate) fn update_chat(&self, at: RecordRef, change: impl FnOnce(&mut ChatRecord)) {
        if let RecordRef::Chat(slot) = at {
            self.record(|store| {
                let index = store.index(slot)?;
                store.records.chat.get_mut(index).map(change)
            });
        }
    }

    pub(crate) fn update_speech(&self, at: RecordRef, change: impl FnOnce(&mut SpeechRecord)) {
        if let RecordRef::Speech(slot) = at {
            self.record(|store| {
                let index = store.index(slot)?;
                store.records.speech.get_mut(index).map(change)
            });
        }
    }

    /// Updates the parts chat and speech records share.
    pub(crate) fn update_http(&self, at: RecordRef, change: impl FnOnce(&mut dyn HttpRecord)) {
        if let RecordRef::Chat(slot) | RecordRef::Speech(slot) | RecordRef::Transcription(slot) = at
            && slot.is_some()
        {
            self.record(|store| {
                store.index(slot)?;
                store.records.http_mut(at).map(change)
            });
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
        let at = shared.add_chat(ChatRecord::new(None, serde_json::Value::Null, 0.0));
        shared.update_http(at, |record| record.set_status(500));
        assert!(shared.records().chat.is_empty());
    }

    #[test]
    fn replies_are_scripted_else_the_default_else_the_echo() {
        let shared = Shared::new(SimConfig::default());
        let echo = text::echo_reply(Some("Hi?"));
        assert_eq!(shared.next_reply(Some("Hi?")), echo);
        shared.update_config(|config| config.default_reply = Some("Always this.".into()));
        shared.push_reply("Scripted.".into());
        assert_eq!(shared.next_reply(Some("Hi?")), "Scripted.");
        assert_eq!(shared.next_reply(Some("Hi?")), "Always this.");
        assert_eq!(shared.next_reply(None), "Always this.");
    }

    #[test]
    fn a_reset_detaches_requests_in_flight() {
        let shared = Shared::new(SimConfig::default());
        let old = shared.add_chat(ChatRecord::new(None, serde_json::Value::Null, 0.0));
        shared.push_reply("scripted".into());
        shared.update_config(|config| config.quirks = false);
        shared.reset();
        assert!(shared.pop_reply().is_none());
        assert!(shared.config().quirks, "the starting configuration is back");
        let new = shared.add_chat(ChatRecord::new(None, serde_json::Value::Null, 0.0));
        shared.update_http(old, |record| record.set_status(500));
        shared.update_http(new, |record| record.set_status(201));
        let records = shared.records();
        assert_eq!(records.chat.len(), 1);
        assert_eq!(
            records.chat[0].status, 201,
            "the old request updates nothing"
        );
    }
}
