//! [`SessionLink`]: what every part of a Realtime session (the connection's reader loop and a
//! conversation session's own state) uses to answer the client and to record what happened,
//! so that each does it the same way.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::fault::{Fault, SimStage, Taker};
use super::record::{RealtimeRecord, RecordRef};
use super::state::Shared;
use super::turn::Outbound;

/// The simulator's state, the connection's record, its outbound queue and its end.
#[derive(Debug, Clone)]
pub(crate) struct SessionLink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) at: RecordRef,
    pub(crate) out: mpsc::Sender<Outbound>,
    /// Cancelled when the connection ends for any reason; stops turns, responses and the
    /// writer.
    pub(crate) done: CancellationToken,
}

impl SessionLink {
    /// Sends an event that belongs to no turn or response (those count their own events for
    /// their faults).
    pub(crate) async fn send(&self, event: Value) {
        self.order(Outbound::Event(event)).await;
    }

    /// Sends the `error` event for `error`, naming the client event it answers.
    pub(crate) async fn send_error(&self, error: ApiError, client_event_id: Option<&str>) {
        self.send(error.realtime_event(client_event_id)).await;
    }

    /// Sends `event`, or the error that refused what the client asked for.
    pub(crate) async fn answer(
        &self,
        event: Result<Value, ApiError>,
        client_event_id: Option<&str>,
    ) {
        match event {
            Ok(event) => self.send(event).await,
            Err(error) => self.send_error(error, client_event_id).await,
        }
    }

    /// Tells the writer what to do. A writer that has gone has closed the connection: nothing
    /// is left to tell.
    pub(crate) async fn order(&self, order: Outbound) {
        let _ = self.out.send(order).await;
    }

    /// Takes the next Realtime fault for `taker` and records it.
    pub(crate) fn take_fault(&self, taker: Taker) -> Option<Fault> {
        let fault = self.shared.take_fault(SimStage::Realtime, taker)?;
        self.update(|record| record.faults.push(fault.clone()));
        Some(fault)
    }

    /// Changes the connection's record (nothing when it is not recorded).
    pub(crate) fn update(&self, change: impl FnOnce(&mut RealtimeRecord)) {
        self.shared.update_realtime(self.at, change);
    }

    /// Records a client event; `event` is only built when recording.
    pub(crate) fn record_event(&self, event: impl FnOnce() -> Value) {
        if self.at.is_recorded() {
            let event = event();
            self.update(|record| record.events.push(event));
        }
    }
}
