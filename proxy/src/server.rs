//! Serving: the accept loop and its connection caps, HTTP/1.1 with a header-read timeout
//! (which also bounds how long a kept-alive connection may idle), over TLS when configured
//! (with the plain-HTTP redirect listener beside it; `tls.rs`), graceful shutdown, and
//! [`run`], which builds the state from a configuration and serves it.
//!
//! The loop is hyper's own connection builder rather than `axum::serve`, which sets no timer:
//! without one, a client that sends its headers one line every few seconds (slowloris) holds a
//! connection, and a file descriptor, forever.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::config::{Config, ConfigError};
use crate::http::app;
use crate::limits::Episode;
use crate::state::{AppState, StartError};
use crate::tls::{Handshaker, ServerTls, redirect_app};

/// How long shutdown waits for sessions to say goodbye before giving up on them.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// After an accept error (above all, out of file descriptors), wait this long before accepting
/// again: retrying at once spins a core while nothing can be freed.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A connection that has not sent a whole request for this long may be closed to make room
/// for a new one: a browser sends its headers within milliseconds, a slowloris client never.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// Repeated refusals of the same kind closer together than this are one episode: one log line.
const REFUSAL_EPISODE_QUIET: Duration = Duration::from_secs(10);

/// Connections the metrics listener (`METRICS_ADDR`) holds at once: a scraper or two and an
/// operator's `curl`. Its own gate, so scrapes never take a voice session's place, nor a flood
/// of them the scraper's.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// How often the metrics' histogram samples are folded into their buckets: the exporter's own
/// default upkeep period. Without it they would pile up between scrapes, or forever when
/// nobody scrapes.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `state` on `listener` until `shutdown` completes, then closes every session
/// gracefully. With TLS configured it serves HTTPS, and with `HTTP_REDIRECT_ADDR` it binds
/// that address too and redirects plain HTTP there to HTTPS.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let tls = ServerTls::from_config(state.config())?;
    let redirect = bind_redirect(state.config()).await?;
    serve_with(listener, redirect, tls, state, shutdown).await
}

/// As [`serve`], with the plain-HTTP redirect listener bound by the caller (on any port, as
/// tests do) instead of at `HTTP_REDIRECT_ADDR`. Needs TLS configured.
pub async fn serve_redirecting(
    listener: TcpListener,
    redirect: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let tls = ServerTls::from_config(state.config())?;
    serve_with(listener, Some(redirect), tls, state, shutdown).await
}

/// The listener of `HTTP_REDIRECT_ADDR`, when set.
async fn bind_redirect(config: &Config) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = config.http_redirect_addr else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| StartError::RedirectBind { addr, source })
}

async fn serve_with(
    listener: TcpListener,
    redirect: Option<TcpListener>,
    tls: Option<ServerTls>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if redirect.is_some() && tls.is_none() {
        return Err(ConfigError::RedirectWithoutTls.into());
    }
    let metrics_listener = bind_metrics(&state).await?;
    let token = state.shutdown_token().clone();
    let stop = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = stop.cancelled() => {}
        }
        // Sessions live on upgraded connections: tell them now, so they close while the
        // listener drains.
        stop.cancel();
    });
    let router = app(state.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config().limits.header_read_timeout)
        .keep_alive(true);
    let gate = ConnectionGate::new(
        state.max_connections(),
        state
            .config()
            .client_address_header
            .is_none()
            .then_some(state.config().limits.max_connections_per_address),
    );
    let connections = TaskTracker::new();
    // The handshake's deadline is the header read timeout: both bound a client that connects
    // and says nothing.
    let handshaker = tls
        .as_ref()
        .map(|tls| tls.handshaker(state.config().limits.header_read_timeout));
    // Dropped (so stopped) when this function returns, whatever way.
    let _reloader =
        tls.map(|tls| tls.spawn_reloader(state.config().tls_reload_interval, token.clone()));
    if let Some(redirect) = redirect {
        let https_port = listener.local_addr().map_err(StartError::Serve)?.port();
        // Its connections count against the same caps: they hold descriptors all the same.
        connections.spawn(accept_loop(
            redirect,
            redirect_app(state.config().public_hosts.clone(), https_port),
            None,
            builder.clone(),
            gate.clone(),
            token.clone(),
            connections.clone(),
        ));
    }
    if let Some(metrics) = metrics_listener {
        connections.spawn(accept_loop(
            metrics,
            crate::http::metrics_app(state.clone()),
            None,
            builder.clone(),
            ConnectionGate::new(METRICS_MAX_CONNECTIONS, None),
            token.clone(),
            connections.clone(),
        ));
    }
    connections.spawn(keep_metrics(state.clone(), token.clone()));
    accept_loop(
        listener,
        router,
        handshaker,
        builder,
        gate,
        token,
        connections.clone(),
    )
    .await;
    connections.close();
    state.shutdown(SHUTDOWN_DRAIN_TIMEOUT).await;
    let _ = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, connections.wait()).await;
    Ok(())
}

/// The listener of `METRICS_ADDR`, when set; its address is noted in the state (a test asks
/// for port 0 and reads the one it got).
async fn bind_metrics(state: &AppState) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = state.config().metrics_addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::MetricsBind { addr, source })?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(addr = %bound, "serving /metrics on its own listener");
        state.set_metrics_addr(bound);
    }
    Ok(Some(listener))
}

/// Folds the metrics' histogram samples into their buckets every
/// [`METRICS_UPKEEP_INTERVAL`], until `token` fires.
async fn keep_metrics(state: AppState, token: CancellationToken) {
    let mut ticks = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = ticks.tick() => state.metrics().upkeep(),
        }
    }
}

/// Accepts connections on `listener` until `token` fires, each through the gate onto its own
/// task in `connections`; over TLS when `tls` is given.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<Handshaker>,
    builder: hyper::server::conn::http1::Builder,
    gate: ConnectionGate,
    token: CancellationToken,
    connections: TaskTracker,
) {
    let mut accept_errors = Episode::new(REFUSAL_EPISODE_QUIET);
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if let Some(previous) = accept_errors.record(Instant::now()) {
                    tracing::error!(%error, previous, "cannot accept connections");
                }
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Some(permit) = gate.enter(peer.ip()) else {
            // Closing at once frees the descriptor; the client sees the connection refused.
            drop(stream);
            continue;
        };
        // Audio frames are small and latency-critical: never let Nagle's algorithm hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        match &tls {
            None => connections.spawn(serve_connection(
                stream,
                peer,
                router.clone(),
                builder.clone(),
                token.clone(),
                permit,
            )),
            Some(tls) => connections.spawn(serve_tls_connection(
                stream,
                peer,
                tls.clone(),
                router.clone(),
                builder.clone(),
                token.clone(),
                permit,
            )),
        };
    }
}

/// Completes the TLS handshake of a new connection (or answers its plain HTTP), then serves it
/// as any other. Its place in the gate was taken before the handshake: a client that never
/// finishes one counts against the caps and is the first to make room.
async fn serve_tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Handshaker,
    router: Router,
    builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
    permit: ConnectionPermit,
) {
    let stream = tokio::select! {
        stream = tls.accept(stream, peer) => stream,
        () = permit.evicted.cancelled() => return,
        () = shutdown.cancelled() => return,
    };
    if let Some(stream) = stream {
        serve_connection(stream, peer, router, builder, shutdown, permit).await;
    }
}

/// Serves HTTP on one connection until it closes, or finishes its request in flight when the
/// server shuts down.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
    permit: ConnectionPermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let requested = permit.requested.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        requested.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // Its place went to a newer connection: it never sent a whole request.
        () = permit.evicted.cancelled() => return,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, connection).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = result {
        // Timeouts and resets of clients are routine; they are not the server's errors.
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// Admits connections up to a global cap and, unless the proxy stands behind a reverse proxy,
/// a per-peer-address cap. Over a cap, the oldest connection that has not yet sent a whole
/// request (a slowloris client, or a browser's spare connection) makes room for the new one;
/// only when every connection in the way is serving a request is the new one refused. So a
/// flood of slow connections, even from the client's own address, cannot lock a client out.
#[derive(Debug, Clone)]
struct ConnectionGate {
    inner: Arc<Mutex<GateState>>,
}

#[derive(Debug)]
struct GateState {
    max_total: usize,
    max_per_address: Option<usize>,
    per_address: HashMap<IpAddr, usize>,
    open: HashMap<u64, OpenConnection>,
    next_id: u64,
    refusals: Episode,
    evictions: Episode,
}

/// What the gate knows of one open connection.
#[derive(Debug)]
struct OpenConnection {
    address: IpAddr,
    accepted: Instant,
    /// Set once a whole request has arrived on it.
    requested: Arc<AtomicBool>,
    /// Fired to close it early.
    evict: CancellationToken,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
struct ConnectionPermit {
    gate: ConnectionGate,
    id: u64,
    /// Set once a whole request has arrived (the service sets it).
    requested: Arc<AtomicBool>,
    /// Fires when the gate gives this connection's place to a newer one.
    evicted: CancellationToken,
}

impl ConnectionGate {
    fn new(max_total: usize, max_per_address: Option<usize>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(GateState {
                max_total,
                max_per_address,
                per_address: HashMap::new(),
                open: HashMap::new(),
                next_id: 0,
                refusals: Episode::new(REFUSAL_EPISODE_QUIET),
                evictions: Episode::new(REFUSAL_EPISODE_QUIET),
            })),
        }
    }

    /// A place for a connection from `address`, or `None` when over a cap with nothing to
    /// make room.
    fn enter(&self, address: IpAddr) -> Option<ConnectionPermit> {
        self.enter_at(address, Instant::now())
    }

    fn enter_at(&self, address: IpAddr, now: Instant) -> Option<ConnectionPermit> {
        let mut state = self
            .inner
            .lock()
            .expect("the gate's lock is never poisoned");
        let of_address = state.per_address.get(&address).copied().unwrap_or(0);
        let over_address = state.max_per_address.is_some_and(|max| of_address >= max);
        let over_total = state.open.len() >= state.max_total;
        if over_address || over_total {
            // Make room within the scope that is full: this address's, else everyone's.
            let scope = over_address.then_some(address);
            if !state.evict_oldest_waiting(scope, now) {
                if let Some(previous) = state.refusals.record(now) {
                    tracing::warn!(
                        %address,
                        open = state.open.len(),
                        of_address,
                        reason = if over_address { "per-address connection cap" } else { "connection cap" },
                        previous_episode_refusals = previous,
                        "refusing connections"
                    );
                }
                return None;
            }
            if let Some(previous) = state.evictions.record(now) {
                tracing::warn!(
                    %address,
                    open = state.open.len(),
                    previous_episode_evictions = previous,
                    "connection cap reached; closing connections that sent no request"
                );
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let requested = Arc::new(AtomicBool::new(false));
        let evicted = CancellationToken::new();
        state.open.insert(
            id,
            OpenConnection {
                address,
                accepted: now,
                requested: requested.clone(),
                evict: evicted.clone(),
            },
        );
        *state.per_address.entry(address).or_insert(0) += 1;
        Some(ConnectionPermit {
            gate: self.clone(),
            id,
            requested,
            evicted,
        })
    }
}

impl GateState {
    /// Closes the oldest connection (of `address`, if given) that has waited at least
    /// [`EVICTABLE_AFTER`] without sending a whole request, freeing its place at once. `false`
    /// if there is none.
    fn evict_oldest_waiting(&mut self, address: Option<IpAddr>, now: Instant) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, c)| address.is_none_or(|a| c.address == a))
            .filter(|(_, c)| !c.requested.load(Ordering::Relaxed))
            .filter(|(_, c)| now.saturating_duration_since(c.accepted) >= EVICTABLE_AFTER)
            .min_by_key(|(_, c)| c.accepted)
            .map(|(id, _)| *id);
        let Some(id) = oldest else {
            return false;
        };
        self.remove(id);
        true
    }

    fn remove(&mut self, id: u64) {
        let Some(connection) = self.open.remove(&id) else {
            return;
        };
        connection.evict.cancel();
        if let Some(count) = self.per_address.get_mut(&connection.address) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&connection.address);
            }
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.gate
            .inner
            .lock()
            .expect("the gate's lock is never poisoned")
            .remove(self.id);
    }
}

/// Builds the state from `config` and serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    // The files and the second port are checked before anything starts.
    let tls = ServerTls::from_config(&config)?;
    let redirect = bind_redirect(&config).await?;
    let state = AppState::new(config).await?;
    if let Some(addr) = redirect.as_ref().and_then(|r| r.local_addr().ok()) {
        tracing::info!(%addr, "redirecting plain HTTP to HTTPS");
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            tls = tls.is_some(),
            simulated = state.simulated(),
            max_sessions = state.max_sessions(),
            max_connections = state.max_connections(),
            "voice agent proxy listening"
        );
    }
    serve_with(listener, redirect, tls, state, shutdown).await
}

/// Raises the process's open-file soft limit to its hard limit and returns the limit now in
/// force: every connection and upstream socket is a descriptor, and the default soft limit
/// (often 1,024) would cap the proxy at a few hundred sessions.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not raise the open-file limit");
            current_open_file_limit()
        }
    }
}

/// The open-file soft limit in force (a generous guess where it cannot be read).
pub(crate) fn current_open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(4096, |(soft, _hard)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permit whose connection has sent a request (so it is not evicted).
    fn busy(gate: &ConnectionGate, address: IpAddr) -> ConnectionPermit {
        let permit = gate.enter(address).expect("room");
        permit.requested.store(true, Ordering::Relaxed);
        permit
    }

    #[test]
    fn the_gate_holds_both_caps_and_frees_places() {
        let gate = ConnectionGate::new(3, Some(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = busy(&gate, a);
        let _second = busy(&gate, a);
        assert!(gate.enter(a).is_none(), "per-address cap");
        let _third = busy(&gate, b);
        assert!(gate.enter(b).is_none(), "global cap");
        drop(first);
        assert!(gate.enter(a).is_some());
    }

    #[test]
    fn connections_that_sent_nothing_make_room_oldest_first() {
        let gate = ConnectionGate::new(3, Some(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        let slow_1 = gate.enter_at(a, start).expect("room");
        let slow_2 = gate
            .enter_at(a, start + Duration::from_millis(10))
            .expect("room");
        // Both still young: no room is made.
        assert!(
            gate.enter_at(a, start + Duration::from_millis(20))
                .is_none()
        );
        // Once they have waited, the oldest gives way.
        let later = start + EVICTABLE_AFTER + Duration::from_millis(10);
        let newer = gate.enter_at(a, later).expect("room made");
        assert!(slow_1.evicted.is_cancelled());
        assert!(!slow_2.evicted.is_cancelled());
        newer.requested.store(true, Ordering::Relaxed);
        // Another address fills the server; the slow one of `a` gives way to it.
        let _b1 = busy(&gate, b);
        let _b2 = gate.enter_at(b, later).expect("room made");
        assert!(slow_2.evicted.is_cancelled());
        _b2.requested.store(true, Ordering::Relaxed);
        // Everyone is busy now: refused.
        assert!(gate.enter(b).is_none());
        drop((slow_1, slow_2));
        assert!(
            gate.enter(b).is_none(),
            "evicted places were already given away"
        );
    }
}
