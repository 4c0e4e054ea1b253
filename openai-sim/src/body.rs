//! Streamed HTTP response bodies whose fate is recorded.
//!
//! A handler spawns a producer that paces pieces into a [`BodySender`]; the response body is
//! the matching [`TrackedBody`]. The body records each chunk as hyper takes it (speech keeps
//! the exact bytes, docs/openai-wire.md §3.2) and the request's [`Outcome`]: `Completed` when the
//! producer finishes, `Failed` when it aborts on a fault (the chunked body is cut without its
//! terminator, so the client sees a truncated stream), and `ClientClosed` when hyper drops the
//! body early because the client went away ([`Tracker`] is the drop guard).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::record::{Outcome, RecordRef};
use super::state::Shared;

/// Pieces in flight between producer and body. One is enough: the producer waits for hyper
/// to take each chunk, so "sent" in the records means "handed to the socket".
const BODY_CHANNEL_PIECES: usize = 1;

/// What a producer hands to the body.
#[derive(Debug)]
enum Piece {
    /// Bytes for the wire; `audio` is the audio they carry, for the speech record.
    Data { wire: Bytes, audio: Option<Bytes> },
    /// End the body normally, recording this outcome.
    Finish(Outcome),
    /// Cut the body (an I/O error for hyper, which resets the connection).
    Abort,
}

/// Why a producer must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StreamEnd {
    #[error("the client went away")]
    ClientGone,
    #[error("the simulator is shutting down")]
    Shutdown,
}

/// Records a request's outcome; if dropped before [`Tracker::finish`], the client went away.
#[derive(Debug)]
pub(crate) struct Tracker {
    shared: Arc<Shared>,
    at: RecordRef,
    finished: bool,
}

impl Tracker {
    pub(crate) fn new(shared: Arc<Shared>, at: RecordRef) -> Self {
        Self {
            shared,
            at,
            finished: false,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn at(&self) -> RecordRef {
        self.at
    }

    /// Records the final outcome and when it came (the first final outcome recorded wins).
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        self.finished = true;
        let at_ms = self.shared.now_ms();
        self.shared
            .update_http(self.at, |record| record.finish(outcome, at_ms));
    }
}

impl Drop for Tracker {
    /// Hyper drops the handler's future (before the headers) or the response body (while
    /// streaming) as soon as it sees the connection close, even while the producer sleeps
    /// until its next chunk: this is the moment the simulator saw the client go away.
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Outcome::ClientClosed);
        }
    }
}

/// A response body fed by a [`BodySender`].
#[derive(Debug)]
pub(crate) struct TrackedBody {
    rx: mpsc::Receiver<Piece>,
    tracker: Tracker,
    ended: bool,
}

/// The producer's end of a [`TrackedBody`].
#[derive(Debug)]
pub(crate) struct BodySender {
    tx: mpsc::Sender<Piece>,
    shutdown: CancellationToken,
}

/// A connected producer and body; the body takes over the request's tracker.
pub(crate) fn channel(tracker: Tracker) -> (BodySender, TrackedBody) {
    let (tx, rx) = mpsc::channel(BODY_CHANNEL_PIECES);
    let shutdown = tracker.shared.shutdown.clone();
    (
        BodySender { tx, shutdown },
        TrackedBody {
            rx,
            tracker,
            ended: false,
        },
    )
}

impl BodySender {
    /// Sends bytes; `audio` is recorded as sent speech when hyper takes the chunk.
    pub(crate) async fn send(&self, wire: Bytes, audio: Option<Bytes>) -> Result<(), StreamEnd> {
        tokio::select! {
            sent = self.tx.send(Piece::Data { wire, audio }) => {
                sent.map_err(|_| StreamEnd::ClientGone)
            }
            () = self.shutdown.cancelled() => Err(StreamEnd::Shutdown),
        }
    }

    /// Waits until `deadline`, or stops early if the client leaves or the simulator stops.
    pub(crate) async fn sleep_until(&self, deadline: Instant) -> Result<(), StreamEnd> {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => Ok(()),
            () = self.tx.closed() => Err(StreamEnd::ClientGone),
            () = self.shutdown.cancelled() => Err(StreamEnd::Shutdown),
        }
    }

    /// Ends the body normally.
    pub(crate) async fn finish(self, outcome: Outcome) {
        let _ = self.tx.send(Piece::Finish(outcome)).await;
    }

    /// Cuts the body: the client sees the connection drop mid-response.
    pub(crate) async fn abort(self) {
        let _ = self.tx.send(Piece::Abort).await;
    }

    /// Sends nothing more and holds the connection open until the client leaves (or the
    /// simulator stops).
    pub(crate) async fn stall(self) {
        tokio::select! {
            () = self.tx.closed() => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

impl Stream for TrackedBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let Some(piece) = std::task::ready!(this.rx.poll_recv(cx)) else {
            // The producer stopped without finishing: the simulator is shutting down.
            this.ended = true;
            this.tracker.finish(Outcome::Failed);
            return Poll::Ready(Some(Err(io::Error::other("simulator shut down"))));
        };
        match piece {
            Piece::Data { wire, audio } => {
                if let Some(audio) = audio {
                    this.tracker
                        .shared
                        .update_speech(this.tracker.at, |record| {
                            record.sent.extend_from_slice(&audio);
                            record.sent_chunks.push(audio.len());
                        });
                }
                Poll::Ready(Some(Ok(wire)))
            }
            Piece::Finish(outcome) => {
                this.ended = true;
                this.tracker.finish(outcome);
                Poll::Ready(None)
            }
            Piece::Abort => {
                this.ended = true;
                this.tracker.finish(Outcome::Failed);
                Poll::Ready(Some(Err(io::Error::other(
                    "connection dropped (injected fault)",
                ))))
            }
        }
    }
}
