//! Serving: the listener (TCP_NODELAY on every connection), graceful shutdown, and [`run`],
//! which builds the state from a configuration and serves it.

use std::future::Future;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::app;
use crate::state::{AppState, StartError};

/// How long shutdown waits for sessions to say goodbye before giving up on them.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `state` on `listener` until `shutdown` completes, then closes every session
/// gracefully.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let token = state.shutdown_token().clone();
    let router = app(state.clone());
    // Audio frames are small and latency-critical: never let Nagle's algorithm hold them back.
    let listener = listener.tap_io(|socket| {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        tokio::select! {
            () = shutdown => {}
            () = token.cancelled() => {}
        }
        // Sessions live on upgraded connections: tell them now, so they close while the
        // listener drains.
        token.cancel();
    });
    let result = server.await;
    state.shutdown(SHUTDOWN_DRAIN_TIMEOUT).await;
    result.map_err(StartError::Serve)
}

/// Builds the state from `config` and serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = AppState::new(config).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, simulated = state.simulated(), "voice agent proxy listening");
    }
    serve(listener, state, shutdown).await
}
