//! The page's state as signals: what the engine writes and the components read.
//!
//! [`Ui`] is a `Copy` bundle of signals, provided as context by the page (`app`) and handed to
//! the engine (`engine`) on Start. Both import this module; it imports neither, so the arrows
//! run view → engine → state.

use leptos::prelude::*;

use crate::conversation::Conversation;
use crate::errors::ShownError;
use crate::session::Pipeline;

/// How many errors the page keeps listed (the newest).
const SHOWN_ERRORS: usize = 5;

/// Whether a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Run {
    /// Nothing runs; the button says Start.
    #[default]
    Stopped,
    /// Start was pressed; the socket, audio and microphone are being set up.
    Starting,
    /// Audio flows.
    Running,
}

/// The socket's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Connection {
    /// No socket.
    #[default]
    Offline,
    /// Opening, waiting for `session_ready`.
    Connecting,
    /// `session_ready` arrived.
    Connected,
    /// The socket dropped; a new one is on its way (see [`crate::reconnect`]). The microphone
    /// stays open but sends nothing.
    Reconnecting,
}

impl Connection {
    /// Words for the page.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Connection::Offline => "Not connected",
            Connection::Connecting => "Connecting…",
            Connection::Connected => "Connected",
            Connection::Reconnecting => "Reconnecting…",
        }
    }

    /// A stable machine name (test attribute).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Connection::Offline => "offline",
            Connection::Connecting => "connecting",
            Connection::Connected => "connected",
            Connection::Reconnecting => "reconnecting",
        }
    }
}

/// The microphone level, from the capture worklet every ~50 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Level {
    /// Input level, dBFS.
    pub(crate) dbfs: f32,
    /// The VAD hears speech.
    pub(crate) speaking: bool,
}

impl Default for Level {
    fn default() -> Self {
        Self {
            dbfs: -100.0,
            speaking: false,
        }
    }
}

/// Everything the page shows, as signals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) running: RwSignal<Run>,
    pub(crate) connection: RwSignal<Connection>,
    pub(crate) pipeline: RwSignal<Pipeline>,
    pub(crate) level: RwSignal<Level>,
    pub(crate) conversation: RwSignal<Conversation>,
    pub(crate) errors: RwSignal<Vec<ShownError>>,
    pub(crate) simulated: RwSignal<bool>,
    pub(crate) sample_rate: RwSignal<Option<f32>>,
    /// Whether the browser cancels echo on the microphone, once it is open.
    pub(crate) echo_cancellation: RwSignal<Option<bool>>,
}

impl Ui {
    pub(crate) fn new() -> Self {
        Self {
            running: RwSignal::new(Run::default()),
            connection: RwSignal::new(Connection::default()),
            pipeline: RwSignal::new(Pipeline::default()),
            level: RwSignal::new(Level::default()),
            conversation: RwSignal::new(Conversation::new()),
            errors: RwSignal::new(Vec::new()),
            simulated: RwSignal::new(false),
            sample_rate: RwSignal::new(None),
            echo_cancellation: RwSignal::new(None),
        }
    }

    /// Lists an error, keeping the newest few.
    pub(crate) fn show_error(&self, shown: ShownError) {
        self.errors.update(|errors| {
            errors.push(shown);
            let excess = errors.len().saturating_sub(SHOWN_ERRORS);
            errors.drain(..excess);
        });
    }
}
