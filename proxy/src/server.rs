//! Serving: the accept loop and its connection caps, HTTP/1.1 with a header-read timeout
//! (which also bounds how long a kept-alive connection may idle), graceful shutdown, and
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

use crate::config::Config;
use crate::http::app;
use crate::limits::Episode;
use crate::state::{AppState, StartError};

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

/// Serves `state` on `listener` until `shutdown` completes, then closes every session
/// gracefully.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
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
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            builder.clone(),
            token.clone(),
            permit,
        ));
    }
    drop(listener);
    connections.close();
    state.shutdown(SHUTDOWN_DRAIN_TIMEOUT).await;
    let _ = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, connections.wait()).await;
    Ok(())
}

/// Serves HTTP on one connection until it closes, or finishes its request in flight when the
/// server shuts down.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: hyper::server::conn::http1::Builder,
    shutdown: CancellationToken,
    permit: ConnectionPermit,
) {
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
    let state = AppState::new(config).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            simulated = state.simulated(),
            max_sessions = state.max_sessions(),
            max_connections = state.max_connections(),
            "voice agent proxy listening"
        );
    }
    serve(listener, state, shutdown).await
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
