//! A TCP relay in front of a server that a test can cut: every connection through it is reset
//! at once, both ways, as a dropped network would (no close frame, no FIN handshake), while
//! the relay keeps accepting new connections, so a client that reconnects gets through.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A listening relay to one target address. Dropping it stops it and cuts what runs through it.
#[derive(Debug)]
pub struct CuttingRelay {
    addr: SocketAddr,
    /// The token of the connections relayed now; cancelled and replaced by [`Self::cut`].
    live: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl CuttingRelay {
    /// Listens on a loopback port and relays each connection to `target`.
    pub async fn start(target: SocketAddr) -> CuttingRelay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let live = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, target, Arc::clone(&live), stop.clone()));
        CuttingRelay { addr, live, stop }
    }

    /// The relay's address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection relayed so far; later ones go through.
    pub fn cut(&self) {
        let mut live = self
            .live
            .lock()
            .expect("the relay's lock is never poisoned");
        live.cancel();
        *live = CancellationToken::new();
    }
}

impl Drop for CuttingRelay {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    live: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        let cut = live
            .lock()
            .expect("the relay's lock is never poisoned")
            .clone();
        tokio::spawn(relay(client, target, cut));
    }
}

/// Copies both ways until either side closes or the relay is cut; a cut resets both sockets.
async fn relay(client: TcpStream, target: SocketAddr, cut: CancellationToken) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client, mut server) = (client, server);
    tokio::select! {
        () = cut.cancelled() => {
            // A zero linger makes the close a reset: what a dropped network looks like to
            // both ends (no close frame, nothing more delivered).
            reset(&client);
            reset(&server);
        }
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}

fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
