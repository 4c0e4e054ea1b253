//! Where resumable conversations are kept, under their resume token, until they expire.
//!
//! A session writes its conversation here whenever the history changes (with a time to live
//! of the idle timeout plus the grace period: a live session ends within its idle timeout),
//! and once more when its socket drops (with the grace period alone). A new socket that
//! presents the token takes the conversation out — once: the token is single use — and
//! continues it under a fresh token.
//!
//! * [`SessionStore::Memory`] — this process only (the default: nothing to run);
//! * [`SessionStore::Redis`] — a Redis server shared by several proxies, so a reconnect that
//!   lands on another proxy, or the sessions of a drained one, resume there. Each
//!   conversation is one key, `voice:resume:TOKEN`, holding JSON, with Redis's own expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::config::SessionStoreKind;

/// The prefix of every key the proxy writes in Redis.
const REDIS_KEY_PREFIX: &str = "voice:resume:";

/// Longest wait for one Redis command: a store that slow is treated as down (the session goes
/// on; only its resume is at stake), so a stalled Redis never stalls a conversation.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for a connection to Redis, at start and on each reconnect.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often at most the in-memory store drops expired conversations: often enough to bound
/// its memory by about one grace period of dropped sessions, rarely enough to cost nothing.
const MEMORY_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Random bytes of a resume token: 128 bits, beyond guessing.
const TOKEN_BYTES: usize = 16;

/// A conversation as kept for its resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedSession {
    /// The session's id, kept across resumes (logs follow one conversation).
    pub session_id: String,
    /// The last turn id given out: the resumed session counts on from it.
    pub last_turn: u32,
    /// The last response id given out.
    pub last_response: u32,
    /// The conversation, oldest first, without the system prompt.
    pub history: Vec<SavedMessage>,
}

/// One message of a saved conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedMessage {
    /// Who said it.
    pub role: SavedRole,
    /// What was said (of an answer: what the user heard of it).
    pub content: String,
}

/// The author of a [`SavedMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SavedRole {
    /// The person speaking.
    User,
    /// The voice agent.
    Assistant,
}

/// Why the store could not be used. Never fatal to a session: it only loses its resume.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused, failed or timed out; retrying later may work.
    #[error("session store: {0}")]
    Redis(#[from] redis::RedisError),
    /// What the store holds under a key is not a saved conversation (another program's key,
    /// or an incompatible version): not retryable.
    #[error("session store: unreadable entry: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl StoreError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Redis(_))
    }
}

/// A fresh, unguessable resume token: hex of [`TOKEN_BYTES`] from the thread's CSPRNG.
pub(crate) fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `token` could be one of ours: a malformed one is refused without a store lookup
/// (and never reaches a Redis key).
pub(crate) fn plausible_token(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The store of resumable conversations. Cheap to clone.
#[derive(Clone)]
pub(crate) enum SessionStore {
    /// In this process.
    Memory(Arc<MemoryStore>),
    /// In Redis.
    Redis(redis::aio::ConnectionManager),
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionStore::Memory(store) => f
                .debug_tuple("Memory")
                .field(&store.resumable(Instant::now()))
                .finish(),
            // The URL may hold a password.
            SessionStore::Redis(_) => f.write_str("Redis"),
        }
    }
}

impl SessionStore {
    /// Opens the configured store; a Redis store must answer now (a typo in its URL fails
    /// the start, not every resume).
    pub(crate) async fn open(kind: &SessionStoreKind) -> Result<Self, StoreError> {
        match kind {
            SessionStoreKind::Memory => Ok(SessionStore::Memory(Arc::default())),
            SessionStoreKind::Redis(url) => {
                let client = redis::Client::open(url.expose())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT));
                let mut manager =
                    redis::aio::ConnectionManager::new_with_config(client, config).await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut manager)
                    .await?;
                Ok(SessionStore::Redis(manager))
            }
        }
    }

    /// Keeps `saved` under `token` for `ttl`, replacing what was there.
    pub(crate) async fn put(
        &self,
        token: &str,
        saved: &SavedSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(store) => {
                store.put(token, saved.clone(), ttl, Instant::now());
                Ok(())
            }
            SessionStore::Redis(manager) => {
                let json = serde_json::to_string(saved)?;
                redis::cmd("SET")
                    .arg(redis_key(token))
                    .arg(json)
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                    .query_async::<()>(&mut manager.clone())
                    .await?;
                Ok(())
            }
        }
    }

    /// Takes the conversation kept under `token`, if it is there and has not expired; it is
    /// gone from the store afterwards.
    pub(crate) async fn take(&self, token: &str) -> Result<Option<SavedSession>, StoreError> {
        match self {
            SessionStore::Memory(store) => Ok(store.take(token, Instant::now())),
            SessionStore::Redis(manager) => {
                // GETDEL (Redis 6.2+): two proxies presented the same token cannot both
                // resume it.
                let json = redis::cmd("GETDEL")
                    .arg(redis_key(token))
                    .query_async::<Option<String>>(&mut manager.clone())
                    .await?;
                json.map(|json| serde_json::from_str(&json))
                    .transpose()
                    .map_err(StoreError::from)
            }
        }
    }

    /// Forgets the conversation under `token` (it ended for good).
    pub(crate) async fn forget(&self, token: &str) -> Result<(), StoreError> {
        self.take(token).await.map(drop)
    }

    /// Conversations this process holds that can still be resumed; `None` for a shared store
    /// (its count is not this proxy's).
    pub(crate) fn resumable_here(&self) -> Option<usize> {
        match self {
            SessionStore::Memory(store) => Some(store.resumable(Instant::now())),
            SessionStore::Redis(_) => None,
        }
    }
}

/// What a presented resume token turned out to be.
#[derive(Debug)]
pub(crate) enum Claim {
    /// No token was presented: a new conversation.
    Fresh,
    /// A token was presented but holds nothing (unknown, expired, already used, or the store
    /// failed): a new conversation, and the page is told it restarted.
    Restarted,
    /// The conversation to continue.
    Resumed(SavedSession),
}

/// Resume for the sessions of one server: the store, the grace period, and the tokens of the
/// sessions live in this process (so a reconnect that arrives before this proxy noticed the
/// old socket is gone takes over from the old session instead of racing it).
#[derive(Debug)]
pub(crate) struct Resume {
    store: SessionStore,
    /// How long a conversation is kept after its socket drops; zero: resume is off.
    grace: Duration,
    /// How long a live session's saved conversation is kept: it ends within its idle
    /// timeout, then is parked for the grace period.
    live_ttl: Duration,
    /// The sessions of this process by token, each with the token that makes it end (parking
    /// its conversation) for a reconnect.
    live: Mutex<HashMap<String, tokio_util::sync::CancellationToken>>,
    /// Woken whenever a live session lets go of its token (one for all: a session costs no
    /// signal of its own).
    released: tokio::sync::Notify,
}

/// How long a reconnect waits for the session it takes over to end and park.
const SUPERSEDE_WAIT: Duration = Duration::from_secs(3);

impl Resume {
    /// Resume over `store`, keeping conversations `grace` after a drop (zero: off); live
    /// sessions end within `idle_timeout`.
    pub(crate) fn new(store: SessionStore, grace: Duration, idle_timeout: Duration) -> Self {
        Self {
            store,
            grace,
            live_ttl: idle_timeout + grace,
            live: Mutex::new(HashMap::new()),
            released: tokio::sync::Notify::new(),
        }
    }

    /// Whether sessions can be resumed at all.
    pub(crate) fn enabled(&self) -> bool {
        !self.grace.is_zero()
    }

    /// The grace period, in whole seconds, for the client's ticket.
    pub(crate) fn grace_s(&self) -> u32 {
        u32::try_from(self.grace.as_secs()).unwrap_or(u32::MAX)
    }

    /// The store.
    pub(crate) fn store(&self) -> &SessionStore {
        &self.store
    }

    /// What `token` (if any) continues. A session of this process still holding it is ended
    /// first, and its conversation parked, so the reconnect continues from where it was.
    pub(crate) async fn claim(&self, token: Option<&str>) -> Claim {
        let Some(token) = token else {
            return Claim::Fresh;
        };
        if !self.enabled() || !plausible_token(token) {
            return Claim::Restarted;
        }
        let live = self.lock().get(token).cloned();
        if let Some(supersede) = live {
            tracing::info!("a reconnect takes over a session this proxy still holds");
            supersede.cancel();
            let _ = tokio::time::timeout(SUPERSEDE_WAIT, self.released(token)).await;
        }
        match self.store.take(token).await {
            Ok(Some(saved)) => Claim::Resumed(saved),
            Ok(None) => Claim::Restarted,
            Err(error) => {
                tracing::warn!(%error, "could not read a resumable conversation");
                Claim::Restarted
            }
        }
    }

    /// Completes once no live session holds `token` (it has parked its conversation).
    async fn released(&self, token: &str) {
        loop {
            // Registered before the look, so a release in between is not missed.
            let notified = self.released.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().contains_key(token) {
                return;
            }
            notified.await;
        }
    }

    /// Registers a live session under its `token`, for [`LiveGuard::keep`] and
    /// [`LiveGuard::superseded_token`].
    pub(crate) fn register(self: &Arc<Self>, token: String) -> LiveGuard {
        let supersede = tokio_util::sync::CancellationToken::new();
        self.lock().insert(token.clone(), supersede.clone());
        let writer = match &self.store {
            SessionStore::Memory(_) => None,
            SessionStore::Redis(_) => {
                let (latest, rx) = tokio::sync::watch::channel(None);
                let task = tokio::spawn(
                    write_latest(self.store.clone(), token.clone(), rx).in_current_span(),
                );
                Some(Writer { latest, task })
            }
        };
        LiveGuard {
            resume: Arc::clone(self),
            token,
            supersede,
            writer,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio_util::sync::CancellationToken>> {
        self.live
            .lock()
            .expect("the live-session lock is never poisoned")
    }
}

/// A live session's hold on its token: keeps its conversation in the store while it runs,
/// and parks or forgets it when it ends.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    resume: Arc<Resume>,
    token: String,
    /// Fired when a reconnect takes over.
    supersede: tokio_util::sync::CancellationToken,
    /// For a remote store: the writes go through a task of their own.
    writer: Option<Writer>,
}

/// The task that writes a session's latest conversation to a remote store.
#[derive(Debug)]
struct Writer {
    latest: tokio::sync::watch::Sender<Option<(SavedSession, Duration)>>,
    task: tokio::task::JoinHandle<()>,
}

/// Longest wait for the last write of an ended session: a store that slow loses that
/// session's resume rather than holding up the end (and the server's drain).
const LAST_WRITE_WAIT: Duration = Duration::from_secs(3);

impl LiveGuard {
    /// The token the client presents to resume.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Fires when a reconnect presenting this token takes over.
    pub(crate) fn superseded_token(&self) -> tokio_util::sync::CancellationToken {
        self.supersede.clone()
    }

    /// Keeps the conversation while the session runs. The session never waits on a remote
    /// store: its writes run in the background, the latest state winning.
    pub(crate) fn keep(&self, saved: SavedSession) {
        self.write(saved, self.resume.live_ttl);
    }

    /// The session ended with its socket gone: its conversation is kept for the grace period.
    pub(crate) async fn park(mut self, saved: SavedSession) {
        self.write(saved, self.resume.grace);
        self.flush().await;
    }

    /// The session ended for good (the user left, or it was closed): nothing to resume.
    pub(crate) async fn forget(mut self) {
        self.flush().await;
        if let Err(error) = self.resume.store.forget(&self.token).await {
            tracing::warn!(%error, "could not forget an ended conversation");
        }
    }

    fn write(&self, saved: SavedSession, ttl: Duration) {
        match (&self.writer, &self.resume.store) {
            (Some(writer), _) => {
                writer.latest.send_replace(Some((saved, ttl)));
            }
            (None, SessionStore::Memory(store)) => {
                store.put(&self.token, saved, ttl, Instant::now());
            }
            (None, SessionStore::Redis(_)) => {}
        }
    }

    /// Waits (boundedly) for the writer to finish its last write.
    async fn flush(&mut self) {
        if let Some(Writer { latest, task }) = self.writer.take() {
            drop(latest);
            if tokio::time::timeout(LAST_WRITE_WAIT, task).await.is_err() {
                tracing::warn!("the session store did not take the last write in time");
            }
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        // Tokens are never reused: the entry under this one is this session's.
        self.resume.lock().remove(&self.token);
        self.resume.released.notify_waiters();
        if let Some(writer) = &self.writer {
            writer.task.abort();
        }
    }
}

/// Writes each new conversation state of one session until the session lets go.
async fn write_latest(
    store: SessionStore,
    token: String,
    mut latest: tokio::sync::watch::Receiver<Option<(SavedSession, Duration)>>,
) {
    // A value sent just before the sender went is still seen (`changed` reports it first).
    while latest.changed().await.is_ok() {
        let Some((saved, ttl)) = latest.borrow_and_update().clone() else {
            continue;
        };
        if let Err(error) = store.put(&token, &saved, ttl).await {
            tracing::warn!(%error, "could not keep the conversation for a resume");
        }
    }
}

fn redis_key(token: &str) -> String {
    format!("{REDIS_KEY_PREFIX}{token}")
}

/// The in-process store: a map with expiry times, swept now and then.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    entries: HashMap<String, (Instant, SavedSession)>,
    last_sweep: Option<Instant>,
}

impl MemoryStore {
    fn put(&self, token: &str, saved: SavedSession, ttl: Duration, now: Instant) {
        let mut inner = self.lock();
        inner.sweep(now);
        inner.entries.insert(
            token.to_owned(),
            (now + ttl.max(Duration::from_millis(1)), saved),
        );
    }

    fn take(&self, token: &str, now: Instant) -> Option<SavedSession> {
        let mut inner = self.lock();
        inner.sweep(now);
        let (expires, saved) = inner.entries.remove(token)?;
        (expires > now).then_some(saved)
    }

    fn resumable(&self, now: Instant) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|(expires, _)| *expires > now)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner
            .lock()
            .expect("the session store's lock is never poisoned")
    }
}

impl MemoryInner {
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.duration_since(last) < MEMORY_SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.entries.retain(|_, (expires, _)| *expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(id: &str) -> SavedSession {
        SavedSession {
            session_id: id.into(),
            last_turn: 2,
            last_response: 2,
            history: vec![
                SavedMessage {
                    role: SavedRole::User,
                    content: "Hi.".into(),
                },
                SavedMessage {
                    role: SavedRole::Assistant,
                    content: "Hello!".into(),
                },
            ],
        }
    }

    #[test]
    fn a_token_is_taken_once() {
        let store = MemoryStore::default();
        let now = Instant::now();
        store.put("t1", saved("s1"), Duration::from_secs(60), now);
        assert_eq!(store.resumable(now), 1);
        assert_eq!(store.take("t1", now), Some(saved("s1")));
        assert_eq!(store.take("t1", now), None);
        assert_eq!(store.resumable(now), 0);
    }

    #[test]
    fn an_expired_conversation_cannot_be_taken_and_is_swept() {
        let store = MemoryStore::default();
        let now = Instant::now();
        store.put("t1", saved("s1"), Duration::from_secs(1), now);
        store.put("t2", saved("s2"), Duration::from_secs(60), now);
        let later = now + Duration::from_secs(2);
        assert_eq!(store.resumable(later), 1);
        assert_eq!(store.take("t1", later), None);
        // A put after the sweep interval drops what expired.
        store.put(
            "t3",
            saved("s3"),
            Duration::from_secs(60),
            now + MEMORY_SWEEP_INTERVAL * 2,
        );
        assert!(!store.lock().entries.contains_key("t1"));
        assert_eq!(store.take("t2", later), Some(saved("s2")));
    }

    #[test]
    fn a_later_put_replaces_the_conversation_and_its_expiry() {
        let store = MemoryStore::default();
        let now = Instant::now();
        store.put("t1", saved("s1"), Duration::from_secs(1), now);
        store.put("t1", saved("s1b"), Duration::from_secs(60), now);
        assert_eq!(
            store.take("t1", now + Duration::from_secs(30)),
            Some(saved("s1b"))
        );
    }

    #[test]
    fn tokens_are_unguessable_hex_and_malformed_ones_are_refused() {
        let token = new_token();
        assert!(plausible_token(&token), "{token}");
        assert_ne!(token, new_token());
        assert!(!plausible_token(""));
        assert!(!plausible_token(&"g".repeat(TOKEN_BYTES * 2)));
        assert!(!plausible_token(&format!("{token}0")));
        assert!(!plausible_token("voice:resume:*"));
    }

    #[test]
    fn a_saved_session_reads_back_from_its_json() {
        let json = serde_json::to_string(&saved("s1")).unwrap();
        assert!(json.contains(r#""role":"assistant""#), "{json}");
        assert_eq!(
            serde_json::from_str::<SavedSession>(&json).unwrap(),
            saved("s1")
        );
    }
}
