//! The listener the server accepts on: it sets `TCP_NODELAY`, counts the connections
//! ([`Records::connections_accepted`](super::Records::connections_accepted)) and makes every
//! new connection pay [`SimConfig::handshake_ms`](super::SimConfig::handshake_ms), the TCP
//! and TLS setup of a distant service.
//!
//! The setup cost is a delay on the connection's first read, armed when it is accepted: the
//! first request on a connection (HTTP or WebSocket upgrade) is read that much later, later
//! requests on the same keep-alive connection are not delayed, and `accept` itself never
//! waits, so connections set up concurrently.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use super::state::Shared;

/// Accepts connections for `axum::serve`; see the module docs.
#[derive(Debug)]
pub(crate) struct SimListener {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl SimListener {
    pub(crate) fn new(listener: TcpListener, shared: Arc<Shared>) -> Self {
        Self { listener, shared }
    }
}

impl axum::serve::Listener for SimListener {
    type Io = SetupDelay<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop: it retries (and backs off on) accept errors.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let accepted = Instant::now();
        // Small SSE events and audio chunks must leave at once, not wait for Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        self.shared.count_connection();
        let setup = Duration::from_millis(self.shared.config().handshake_ms);
        (SetupDelay::new(stream, accepted + setup), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A stream that reads nothing before `ready_at`; writes pass straight through.
#[derive(Debug)]
pub(crate) struct SetupDelay<T> {
    io: T,
    /// `None` once the setup is over (or when there is none).
    setup: Option<Pin<Box<Sleep>>>,
}

impl<T> SetupDelay<T> {
    fn new(io: T, ready_at: Instant) -> Self {
        let setup =
            (ready_at > Instant::now()).then(|| Box::pin(tokio::time::sleep_until(ready_at)));
        Self { io, setup }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SetupDelay<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(setup) = &mut this.setup {
            ready!(setup.as_mut().poll(cx));
            this.setup = None;
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SetupDelay<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Polls a read once: `Ready` with the byte, or `Pending`.
    fn try_read<T: AsyncRead + Unpin>(io: &mut T) -> Poll<u8> {
        let mut byte = [0; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(io).poll_read(&mut cx, &mut buf) {
            Poll::Ready(result) => {
                result.expect("a read");
                Poll::Ready(byte[0])
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[tokio::test]
    async fn nothing_is_read_during_the_setup() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"ab").await.expect("written");
        let far = Instant::now() + Duration::from_secs(3600);
        let mut server = SetupDelay::new(server, far);
        assert_eq!(
            try_read(&mut server),
            Poll::Pending,
            "bytes wait for the setup"
        );
        server.write_all(b"c").await.expect("writes pass at once");
        let mut byte = [0; 1];
        client.read_exact(&mut byte).await.expect("read back");
        assert_eq!(&byte, b"c");
    }

    #[tokio::test]
    async fn reads_flow_once_the_setup_is_over() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"ab").await.expect("written");
        let mut server = SetupDelay::new(server, Instant::now() + Duration::from_millis(20));
        let mut byte = [0; 1];
        server.read_exact(&mut byte).await.expect("the first read");
        assert_eq!(&byte, b"a");
        assert_eq!(try_read(&mut server), Poll::Ready(b'b'), "no second wait");
        let none = SetupDelay::new(tokio::io::duplex(64).1, Instant::now());
        assert!(none.setup.is_none(), "no setup, no timer");
    }
}
