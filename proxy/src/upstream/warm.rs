//! Warm connections: when a user starts speaking, the LLM and speech hosts get a connection
//! opened (a `GET …/models`, which every OpenAI-compatible server answers cheaply) unless one
//! was warmed recently, so the answer's requests find a pooled connection instead of paying a
//! TCP and TLS handshake after the user stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::{UpstreamConfig, authorize};

/// Warm-ups at most this often: the pool keeps an idle connection for
/// [`super::POOL_IDLE_TIMEOUT`], and servers close idle keep-alive connections after tens of
/// seconds, so a warm connection from this long ago is likely still open; under load the
/// answers' own requests keep the pool warm and this costs one request pair per interval.
const WARM_INTERVAL: Duration = Duration::from_secs(20);

/// Warms the connections of the LLM and speech roles; shared by every session.
#[derive(Debug)]
pub struct Warmer {
    http: reqwest::Client,
    config: Arc<UpstreamConfig>,
    /// When the last warm-up started, in milliseconds since `epoch` plus one (0: never).
    last_warm_ms: AtomicU64,
    epoch: Instant,
}

impl Warmer {
    /// A warmer using the shared HTTP client (whose pool the answers' requests draw from).
    pub fn new(http: reqwest::Client, config: Arc<UpstreamConfig>) -> Self {
        Self {
            http,
            config,
            last_warm_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Opens a connection to the LLM host and one to the speech host in the background,
    /// unless that was done within the last 20 s (`WARM_INTERVAL`). Returns whether it did.
    pub fn warm(&self) -> bool {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_warm_ms.load(Ordering::Relaxed);
        let interval_ms = u64::try_from(WARM_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now_ms.saturating_sub(last) < interval_ms {
            return false;
        }
        if self
            .last_warm_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another session is warming right now.
            return false;
        }
        let endpoints = &self.config.endpoints;
        let targets = [
            models_url(&endpoints.chat_url, "/chat/completions"),
            models_url(&endpoints.speech_url, "/audio/speech"),
        ];
        for url in targets.into_iter().flatten() {
            let request = authorize(self.http.get(url), self.config.api_key.as_ref())
                .timeout(self.config.response_timeout);
            // Bounded by the timeout; it holds nothing of any session.
            tokio::spawn(
                async move {
                    match request.send().await {
                        // Reading the body to its end returns the connection to the pool.
                        Ok(response) => drop(response.bytes().await),
                        Err(error) => tracing::debug!(%error, "warming a connection failed"),
                    }
                }
                .in_current_span(),
            );
        }
        true
    }
}

/// `…/models` beside an endpoint ending in `suffix`.
fn models_url(endpoint: &str, suffix: &str) -> Option<String> {
    endpoint
        .strip_suffix(suffix)
        .map(|base| format!("{base}/models"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_models_list_sits_beside_each_endpoint() {
        assert_eq!(
            models_url(
                "https://api.openai.com/v1/chat/completions",
                "/chat/completions"
            ),
            Some("https://api.openai.com/v1/models".to_owned())
        );
        assert_eq!(
            models_url("http://127.0.0.1:8001/v1/audio/speech", "/audio/speech"),
            Some("http://127.0.0.1:8001/v1/models".to_owned())
        );
        assert_eq!(models_url("http://x/other", "/audio/speech"), None);
    }

    #[tokio::test]
    async fn warming_again_soon_after_does_nothing() {
        let warmer = Warmer::new(
            reqwest::Client::new(),
            Arc::new(UpstreamConfig::for_tests()),
        );
        assert!(warmer.warm());
        assert!(!warmer.warm());
    }
}
