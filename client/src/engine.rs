//! The running session: the socket, the AudioContext and the two worklets, wired to the pure
//! [`Session`] and to the page's signals.
//!
//! One [`Engine`] exists per Start. Every event — a socket frame, a worklet message, a timer —
//! is a separate task of the browser's event loop, so each takes the engine's `RefCell` briefly
//! and never re-enters it (Leptos runs effects later, `postMessage` and `send` are
//! asynchronous).
//!
//! When the socket drops, the engine keeps the microphone and the worklets and opens a new
//! socket on the schedule of [`crate::reconnect`], presenting the resume token; the pure
//! [`Session`] gates what is sent meanwhile. Each socket has a generation number: events of
//! an older socket, and timers set for one, find the number moved on and do nothing.
//!
//! The audio hot paths allocate nothing in Rust beyond what the APIs force: a capture frame's
//! `ArrayBuffer` goes to the socket untouched; an incoming frame (a `Vec` from gloo-net) is
//! copied once into a fresh `ArrayBuffer` that is transferred to the playback worklet in a
//! message object reused for every frame. Worklet messages are the typed vocabulary of
//! [`crate::worklet_messages`], which reads and writes them with JS strings made once.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use futures_util::StreamExt;
use gloo_net::websocket::{Message, WebSocketError};
use js_sys::{Array, ArrayBuffer, Object};
use leptos::prelude::*;
use protocol::{BYTES_PER_SAMPLE, ProtocolError, ResponseId, ServerMessage};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    AudioContext, AudioWorkletNode, MediaStream, MediaStreamAudioSourceNode, MessageEvent,
    MessagePort,
};

use crate::audio;
use crate::bundle_config::SessionTarget;
use crate::conversation::Conversation;
use crate::errors::{ClientError, ShownError};
use crate::probe::{GlueCounters, Probe, VadRecord};
use crate::reconnect::{ATTEMPT_TIMEOUT_MS, AfterClose, Reconnector};
use crate::session::{Command, PlaybackCommand, Session};
use crate::socket::{Sent, Socket};
use crate::ui_state::{Connection, Level, Run, Ui};
use crate::worklet_messages::{FromCapture, FromPlayback, ToCapture, ToPlayback};

thread_local! {
    /// The engine of the current (or last) Start; the probe reads it after Stop too.
    static CURRENT: RefCell<Option<Rc<RefCell<Engine>>>> = const { RefCell::new(None) };
}

/// Starts a session. Call it synchronously from the Start click: the AudioContext is created
/// here, inside the user gesture.
pub(crate) fn start(ui: Ui) {
    let context = match audio::create_context() {
        Ok(context) => context,
        Err(error) => {
            ui.show_error(ShownError::from_client(&error));
            return;
        }
    };
    let engine = Rc::new(RefCell::new(Engine::new(ui, context)));
    if let Some(previous) = CURRENT.with_borrow_mut(|slot| slot.replace(Rc::clone(&engine))) {
        previous.borrow_mut().teardown();
    }
    ui.running.set(Run::Starting);
    ui.connection.set(Connection::Connecting);
    leptos::task::spawn_local(async move {
        if let Err(error) = connect(&engine).await {
            engine.borrow_mut().fail(&error);
        }
    });
}

/// Stops the current session, if any.
pub(crate) fn stop() {
    if let Some(engine) = CURRENT.with_borrow(Clone::clone) {
        engine.borrow_mut().teardown();
    }
}

/// The probe's JSON for `window.__voiceTest()`: `null` before the first Start.
pub(crate) fn probe_json() -> String {
    CURRENT.with_borrow(|slot| match slot {
        Some(engine) => match engine.try_borrow() {
            Ok(engine) => Probe::new(&engine.counters, &engine.session).to_json(),
            Err(_) => "null".to_owned(),
        },
        None => "null".to_owned(),
    })
}

/// The close code a browser reports for a socket that ended without a close frame; also
/// what an attempt that timed out counts as.
const CLOSE_ABNORMAL: u16 = 1006;

/// Everything after the click: socket, DSP module, worklets, microphone. Each await may find
/// the engine stopped meanwhile; then it stops too.
async fn connect(engine: &Rc<RefCell<Engine>>) -> Result<(), ClientError> {
    let target = crate::socket::session_target().await?;
    if engine.borrow().stopped {
        return Ok(());
    }
    let (socket, incoming) = Socket::open(&target.url)?;
    let generation = {
        let mut engine = engine.borrow_mut();
        engine.target = Some(target);
        engine.adopt(socket)
    };
    leptos::task::spawn_local(receive(Rc::downgrade(engine), incoming, generation));

    let context = engine.borrow().context.clone();
    let dsp = audio::dsp_module().await?;
    audio::load_worklets(&context).await?;
    if engine.borrow().stopped {
        return Ok(());
    }
    let playback = audio::playback_node(&context, &dsp)?;
    let capture = audio::capture_node(&context, &dsp)?;
    let stream = audio::open_microphone().await?;
    if engine.borrow().stopped {
        audio::stop_microphone(&stream);
        return Ok(());
    }
    let echo_cancellation = audio::echo_cancellation(&stream);
    engine.borrow_mut().counters.echo_cancellation = echo_cancellation;
    engine.borrow().ui.echo_cancellation.set(echo_cancellation);
    let source = audio::connect_microphone(&context, &stream, &capture)?;
    let parts = AudioParts::new(engine, stream, source, capture, playback)?;
    let mut engine = engine.borrow_mut();
    engine.audio = Some(parts);
    engine.ui.running.set(Run::Running);
    Ok(())
}

/// Feeds incoming frames of socket `generation` to the engine until it closes.
async fn receive(
    engine: Weak<RefCell<Engine>>,
    mut incoming: gloo_net::websocket::futures::WebSocket,
    generation: u32,
) {
    while let Some(item) = incoming.next().await {
        let Some(engine) = engine.upgrade() else {
            break;
        };
        let closed = {
            let mut engine = engine.borrow_mut();
            if !engine.is_current(generation) {
                break;
            }
            match item {
                Ok(Message::Text(text)) => {
                    engine.on_text(&text);
                    None
                }
                Ok(Message::Bytes(frame)) => {
                    engine.on_audio_frame(&frame);
                    None
                }
                Err(WebSocketError::ConnectionClose(event)) => Some((event.code, event.reason)),
                // A close event follows an error event; report that one.
                Err(_) => None,
            }
        };
        if let Some((code, reason)) = closed {
            socket_closed(&engine, code, reason);
            break;
        }
    }
}

/// The current socket closed with `code`: reconnect after a wait, or stop with the error
/// that fits.
fn socket_closed(engine: &Rc<RefCell<Engine>>, code: u16, reason: String) {
    let mut guard = engine.borrow_mut();
    let this = &mut *guard;
    let was_ready = this.session.is_ready();
    let reconnecting = this.reconnect.is_reconnecting();
    let after =
        this.reconnect
            .on_close(code, was_ready, js_sys::Date::now(), js_sys::Math::random());
    match after {
        AfterClose::Reconnect { delay_ms } => {
            this.socket = None;
            this.counters.connected = false;
            if was_ready {
                this.session.on_disconnected(&mut this.commands);
                this.run_commands();
            }
            this.set_connection(Connection::Reconnecting);
            let generation = this.generation;
            drop(guard);
            leptos::task::spawn_local(reconnect_after(Rc::downgrade(engine), delay_ms, generation));
        }
        AfterClose::GiveUp { attempts } => this.fail(&ClientError::ReconnectFailed { attempts }),
        AfterClose::Final => {
            let error = match &this.target {
                _ if was_ready || reconnecting => ClientError::closed_while_running(code, reason),
                Some(SessionTarget {
                    foreign_proxy: Some(proxy),
                    page_origin,
                    ..
                }) => ClientError::RefusedForeign {
                    code,
                    proxy: proxy.clone(),
                    page_origin: page_origin.clone(),
                },
                _ => ClientError::Refused { code },
            };
            this.fail(&error);
        }
    }
}

/// Opens the next socket after `delay_ms`, unless the engine stopped or moved on from socket
/// `generation` meanwhile.
async fn reconnect_after(engine: Weak<RefCell<Engine>>, delay_ms: f64, generation: u32) {
    sleep_ms(delay_ms).await;
    let Some(engine) = engine.upgrade() else {
        return;
    };
    let (socket, incoming) = {
        let mut engine = engine.borrow_mut();
        if !engine.is_current(generation) {
            return;
        }
        let Some(target) = engine.target.clone() else {
            return;
        };
        let token = engine.reconnect.begin_attempt(js_sys::Date::now());
        engine.counters.reconnect_attempts = engine.reconnect.attempts();
        match Socket::open(&target.resuming(token.as_deref())) {
            Ok(opened) => opened,
            Err(error) => {
                engine.fail(&error);
                return;
            }
        }
    };
    let generation = engine.borrow_mut().adopt(socket);
    leptos::task::spawn_local(receive(Rc::downgrade(&engine), incoming, generation));
    leptos::task::spawn_local(attempt_deadline(Rc::downgrade(&engine), generation));
}

/// Gives up on reconnect socket `generation` if it has no session after
/// [`ATTEMPT_TIMEOUT_MS`]: it counts as a failed attempt.
async fn attempt_deadline(engine: Weak<RefCell<Engine>>, generation: u32) {
    sleep_ms(ATTEMPT_TIMEOUT_MS).await;
    let Some(engine) = engine.upgrade() else {
        return;
    };
    {
        let mut engine = engine.borrow_mut();
        // A socket that got its session, or already closed, is not pending.
        if !engine.is_current(generation) || engine.session.is_ready() {
            return;
        }
        let Some(socket) = engine.socket.take() else {
            return;
        };
        // Whatever that socket says from now on is stale.
        engine.generation += 1;
        socket.close();
    }
    socket_closed(&engine, CLOSE_ABNORMAL, String::new());
}

/// Resolves after `ms` (`setTimeout`).
async fn sleep_ms(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        if let Some(window) = web_sys::window() {
            let _ = window
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms.round() as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// The audio graph of a running session and the handlers of its worklet ports.
struct AudioParts {
    stream: MediaStream,
    source: MediaStreamAudioSourceNode,
    capture: AudioWorkletNode,
    capture_port: MessagePort,
    playback: AudioWorkletNode,
    playback_port: MessagePort,
    /// Kept alive while the ports may call them; dropped after the ports are detached.
    _port_handlers: [Closure<dyn FnMut(MessageEvent)>; 2],
    /// Reports a worklet that threw (e.g. a sample rate its DSP refuses).
    _processor_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl AudioParts {
    fn new(
        engine: &Rc<RefCell<Engine>>,
        stream: MediaStream,
        source: MediaStreamAudioSourceNode,
        capture: AudioWorkletNode,
        playback: AudioWorkletNode,
    ) -> Result<Self, ClientError> {
        let port = |node: &AudioWorkletNode| {
            node.port()
                .map_err(|error| ClientError::AudioProcessor(audio::describe(&error)))
        };
        let capture_port = port(&capture)?;
        let playback_port = port(&playback)?;
        let handler = |on_message: fn(&mut Engine, &JsValue)| {
            let engine = Rc::downgrade(engine);
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                if let Some(engine) = engine.upgrade() {
                    on_message(&mut engine.borrow_mut(), &event.data());
                }
            })
        };
        let on_capture = handler(Engine::on_capture_message);
        let on_playback = handler(Engine::on_playback_message);
        capture_port.set_onmessage(Some(on_capture.as_ref().unchecked_ref()));
        playback_port.set_onmessage(Some(on_playback.as_ref().unchecked_ref()));
        let processor_error = {
            let engine = Rc::downgrade(engine);
            Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
                let detail = event
                    .dyn_ref::<web_sys::ErrorEvent>()
                    .map(web_sys::ErrorEvent::message)
                    .filter(|message| !message.is_empty())
                    .unwrap_or_else(|| "it stopped with an error".to_owned());
                if let Some(engine) = engine.upgrade() {
                    engine
                        .borrow_mut()
                        .fail(&ClientError::AudioProcessor(detail));
                }
            })
        };
        capture.set_onprocessorerror(Some(processor_error.as_ref().unchecked_ref()));
        playback.set_onprocessorerror(Some(processor_error.as_ref().unchecked_ref()));
        Ok(Self {
            stream,
            source,
            capture,
            capture_port,
            playback,
            playback_port,
            _port_handlers: [on_capture, on_playback],
            _processor_error: processor_error,
        })
    }

    fn shut_down(&self) {
        self.capture_port.set_onmessage(None);
        self.playback_port.set_onmessage(None);
        self.capture.set_onprocessorerror(None);
        self.playback.set_onprocessorerror(None);
        let _ = self.source.disconnect();
        let _ = self.capture.disconnect();
        let _ = self.playback.disconnect();
        audio::stop_microphone(&self.stream);
    }
}

/// One running session. See the module docs.
pub(crate) struct Engine {
    ui: Ui,
    context: AudioContext,
    /// Where sockets go; set once the first one opens.
    target: Option<SessionTarget>,
    /// The socket of [`Engine::generation`]; `None` between a drop and the next attempt.
    socket: Option<Socket>,
    /// Counts the sockets opened: only the newest one's events and timers count.
    generation: u32,
    reconnect: Reconnector,
    audio: Option<AudioParts>,
    session: Session,
    counters: GlueCounters,
    /// Reused for every event's commands.
    commands: Vec<Command>,
    /// The message object reused for every audio chunk posted to playback, and its transfer
    /// list.
    chunk_message: Object,
    chunk_transfer: Array,
    stopped: bool,
}

impl Engine {
    fn new(ui: Ui, context: AudioContext) -> Self {
        let sample_rate = context.sample_rate();
        ui.sample_rate.set(Some(sample_rate));
        Self {
            ui,
            context,
            target: None,
            socket: None,
            generation: 0,
            reconnect: Reconnector::new(),
            audio: None,
            session: Session::new(),
            counters: GlueCounters {
                sample_rate: Some(f64::from(sample_rate)),
                connection: Connection::Connecting.key(),
                ..GlueCounters::default()
            },
            commands: Vec::with_capacity(8),
            chunk_message: Object::new(),
            chunk_transfer: Array::new_with_length(1),
            stopped: false,
        }
    }

    /// Makes `socket` the current one; returns its generation.
    fn adopt(&mut self, socket: Socket) -> u32 {
        self.generation += 1;
        self.socket = Some(socket);
        self.generation
    }

    /// Whether events of socket `generation` still count.
    fn is_current(&self, generation: u32) -> bool {
        !self.stopped && self.generation == generation
    }

    /// Shows the connection state (and tells the probe).
    fn set_connection(&mut self, connection: Connection) {
        self.counters.connection = connection.key();
        self.ui.connection.set(connection);
    }

    /// A text frame from the proxy.
    fn on_text(&mut self, text: &str) {
        let message = match ServerMessage::from_json(text) {
            Ok(message) => message,
            // A newer proxy may send types this page does not know: skip them.
            Err(ProtocolError::UnknownType(kind)) => {
                leptos::logging::warn!("ignoring unknown server message type {kind:?}");
                return;
            }
            Err(error) => {
                self.show(&ClientError::BadMessage(error.to_string()));
                return;
            }
        };
        if let Err(error) = self.session.on_server_message(&message, &mut self.commands) {
            self.fail(&error.into());
            return;
        }
        match &message {
            ServerMessage::SessionReady {
                simulated,
                resume,
                resumed,
                ..
            } => {
                let ready = self.reconnect.on_session_ready(resume.clone(), *resumed);
                self.counters.reconnects = self.reconnect.reconnects();
                self.counters.resumed = Some(*resumed);
                self.counters.connected = true;
                self.counters.simulated = Some(*simulated);
                self.ui.simulated.set(*simulated);
                self.set_connection(Connection::Connected);
                if !ready.keeps_conversation() {
                    self.ui.conversation.set(Conversation::new());
                }
                if let Some(notice) = ready.notice() {
                    self.show(&notice);
                }
            }
            ServerMessage::Error(event) => self.show_error(ShownError::from_event(event)),
            _ => {}
        }
        self.ui
            .conversation
            .maybe_update(|conversation| conversation.apply(&message));
        self.run_commands();
    }

    /// A binary frame from the proxy: one chunk of an answer's audio.
    fn on_audio_frame(&mut self, frame: &[u8]) {
        let (response_id, pcm) = match protocol::decode_audio_frame(frame) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.show(&ClientError::BadMessage(error.to_string()));
                return;
            }
        };
        let samples = (pcm.len() / BYTES_PER_SAMPLE) as u64;
        let verdict = self
            .session
            .on_audio(response_id, samples, &mut self.commands);
        if verdict == crate::session::AudioVerdict::Play && !pcm.is_empty() {
            self.post_chunk(self.session.playback_id(response_id), pcm);
        }
        self.run_commands();
    }

    /// Hands one chunk to the playback worklet (`response_id` is the worklet's,
    /// [`Session::playback_id`]), transferring a fresh buffer.
    fn post_chunk(&mut self, response_id: ResponseId, pcm: &[u8]) {
        let Some(audio) = &self.audio else {
            return;
        };
        let bytes = js_sys::Uint8Array::new_with_length(pcm.len() as u32);
        bytes.copy_from(pcm);
        let chunk = ToPlayback::Audio {
            response_id,
            pcm: bytes.buffer(),
        };
        chunk.write_js(&self.chunk_message);
        if let Some(buffer) = chunk.into_transfer() {
            self.chunk_transfer.set(0, buffer.into());
        }
        let _ = audio
            .playback_port
            .post_message_with_transferable(&self.chunk_message, &self.chunk_transfer);
    }

    /// A message from the capture worklet.
    fn on_capture_message(&mut self, data: &JsValue) {
        let Ok(message) = FromCapture::from_js(data) else {
            return;
        };
        match message {
            FromCapture::Audio { pcm } => self.on_capture_frame(&pcm),
            FromCapture::Level { dbfs, speaking } => self.ui.level.set(Level {
                dbfs: dbfs as f32,
                speaking,
            }),
            FromCapture::Vad(vad) => {
                self.counters.vad.push(VadRecord {
                    event: vad.name(),
                    audio_ms: vad.audio_ms(),
                });
                self.session.on_capture(vad.event(), &mut self.commands);
                self.run_commands();
            }
            FromCapture::Ready(ready) => self.counters.capture_via = ready.via,
        }
    }

    /// A 20 ms capture frame: to the proxy as it is, if the session is in a turn.
    fn on_capture_frame(&mut self, pcm: &ArrayBuffer) {
        if !self.session.should_send_audio() {
            return;
        }
        let Some(socket) = &self.socket else {
            return;
        };
        if socket.send_audio(pcm) == Sent::Yes {
            self.counters.sent_frames += 1;
            self.counters.sent_bytes += u64::from(pcm.byte_length());
        }
    }

    /// A message from the playback worklet.
    fn on_playback_message(&mut self, data: &JsValue) {
        let Ok(message) = FromPlayback::from_js(data) else {
            return;
        };
        match message.event() {
            Some(event) => {
                self.session.on_playback(event, &mut self.commands);
                self.run_commands();
            }
            None => {
                if let FromPlayback::Ready(ready) = message {
                    self.counters.playback_via = ready.via;
                }
            }
        }
    }

    /// Carries out the session's commands, then shows the pipeline state.
    fn run_commands(&mut self) {
        let mut commands = std::mem::take(&mut self.commands);
        for command in commands.drain(..) {
            match command {
                Command::Send(message) => {
                    if let Some(socket) = &self.socket
                        && let Err(error) = socket.send_text(&message.to_json())
                    {
                        leptos::logging::warn!("could not send {message:?}: {error}");
                    }
                }
                Command::Playback(PlaybackCommand::End(response_id)) => {
                    let playback_id = self.session.playback_id(response_id);
                    self.post_to_playback(&ToPlayback::End(playback_id));
                }
                Command::Playback(PlaybackCommand::Clear(response_id)) => {
                    let playback_id = self.session.playback_id(response_id);
                    self.post_to_playback(&ToPlayback::Clear(Some(playback_id)));
                    self.ui
                        .conversation
                        .maybe_update(|conversation| conversation.mark_interrupted(response_id));
                }
                Command::EchoGuard(audible) => {
                    if let Some(audio) = &self.audio {
                        let message = ToCapture::AssistantAudible(audible).to_js();
                        let _ = audio.capture_port.post_message(&message);
                    }
                }
            }
        }
        self.commands = commands;
        let pipeline = self.session.pipeline();
        if self.ui.pipeline.get_untracked() != pipeline {
            self.ui.pipeline.set(pipeline);
        }
    }

    /// Posts a command (`end`, `clear`) to the playback worklet.
    fn post_to_playback(&self, command: &ToPlayback<ArrayBuffer>) {
        let Some(audio) = &self.audio else {
            return;
        };
        let _ = audio.playback_port.post_message(&command.to_js());
    }

    /// Lists an error from this side.
    fn show(&mut self, error: &ClientError) {
        self.show_error(ShownError::from_client(error));
    }

    fn show_error(&mut self, shown: ShownError) {
        self.counters.last_error = Some(format!("{}: {}", shown.stage, shown.message));
        self.ui.show_error(shown);
    }

    /// Shows the error and stops the session.
    fn fail(&mut self, error: &ClientError) {
        if self.stopped {
            return;
        }
        self.show(error);
        self.teardown();
    }

    /// Stops everything: socket, microphone, nodes, context. Idempotent.
    fn teardown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(socket) = &self.socket {
            socket.close();
        }
        if let Some(audio) = self.audio.take() {
            audio.shut_down();
            // Its handlers may be what called this: drop them once they have returned.
            leptos::task::spawn_local(async move { drop(audio) });
        }
        let _ = self.context.close();
        self.counters.connected = false;
        self.ui.running.set(Run::Stopped);
        self.set_connection(Connection::Offline);
        self.ui.pipeline.set(crate::session::Pipeline::Idle);
        self.ui.level.set(Level::default());
        self.ui.echo_cancellation.set(None);
    }
}
