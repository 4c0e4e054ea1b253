//! The running session: the socket, the AudioContext and the two worklets, wired to the pure
//! [`Session`] and to the page's signals.
//!
//! One [`Engine`] exists per Start. Every event — a socket frame, a worklet message — is a
//! separate task of the browser's event loop, so each takes the engine's `RefCell` briefly and
//! never re-enters it (Leptos runs effects later, `postMessage` and `send` are asynchronous).
//!
//! The audio hot paths allocate nothing in Rust beyond what the APIs force: a capture frame's
//! `ArrayBuffer` goes to the socket untouched; an incoming frame (a `Vec` from gloo-net) is
//! copied once into a fresh `ArrayBuffer` that is transferred to the playback worklet in a
//! message object reused for every frame. Message types are compared against JS strings made
//! once.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use futures_util::StreamExt;
use gloo_net::websocket::{Message, WebSocketError};
use js_sys::{Array, ArrayBuffer, Object, Reflect};
use leptos::prelude::*;
use protocol::{BYTES_PER_SAMPLE, ProtocolError, ResponseId, ServerMessage};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    AudioContext, AudioWorkletNode, MediaStream, MediaStreamAudioSourceNode, MessageEvent,
    MessagePort,
};

use crate::app::{Connection, Level, Run, Ui};
use crate::audio;
use crate::errors::{ClientError, ShownError};
use crate::probe::{GlueCounters, Probe, VadRecord};
use crate::session::{CaptureEvent, Command, PlaybackCommand, PlaybackEvent, Session};
use crate::socket::{Sent, Socket};

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

/// Everything after the click: socket, DSP module, worklets, microphone. Each await may find
/// the engine stopped meanwhile; then it stops too.
async fn connect(engine: &Rc<RefCell<Engine>>) -> Result<(), ClientError> {
    let (socket, incoming) = Socket::open()?;
    engine.borrow_mut().socket = Some(socket);
    leptos::task::spawn_local(receive(Rc::downgrade(engine), incoming));

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

/// Feeds incoming frames to the engine until the socket closes.
async fn receive(
    engine: Weak<RefCell<Engine>>,
    mut incoming: gloo_net::websocket::futures::WebSocket,
) {
    while let Some(item) = incoming.next().await {
        let Some(engine) = engine.upgrade() else {
            break;
        };
        let mut engine = engine.borrow_mut();
        if engine.stopped {
            break;
        }
        match item {
            Ok(Message::Text(text)) => engine.on_text(&text),
            Ok(Message::Bytes(frame)) => engine.on_audio_frame(&frame),
            Err(WebSocketError::ConnectionClose(event)) => {
                let error = if engine.session.is_ready() {
                    ClientError::ConnectionLost {
                        code: event.code,
                        reason: event.reason,
                    }
                } else {
                    ClientError::Refused { code: event.code }
                };
                engine.fail(&error);
            }
            // A close event follows an error event; report that one.
            Err(_) => {}
        }
    }
}

/// JS strings of the worklet message vocabulary, made once per engine.
#[derive(Debug)]
struct Words {
    kind: JsValue,
    pcm: JsValue,
    response_id: JsValue,
    played_samples: JsValue,
    underruns: JsValue,
    stale_dropped: JsValue,
    event: JsValue,
    via: JsValue,
    dbfs: JsValue,
    speaking: JsValue,
    value: JsValue,
    audio_start_ms: JsValue,
    audio_end_ms: JsValue,
    audio: JsValue,
    level: JsValue,
    vad: JsValue,
    ready: JsValue,
    progress: JsValue,
    drained: JsValue,
    cleared: JsValue,
    speech_started: JsValue,
}

impl Words {
    fn new() -> Self {
        let word = JsValue::from_str;
        Self {
            kind: word("type"),
            pcm: word("pcm"),
            response_id: word("responseId"),
            played_samples: word("playedSamples"),
            underruns: word("underruns"),
            stale_dropped: word("staleDropped"),
            event: word("event"),
            via: word("via"),
            dbfs: word("dbfs"),
            speaking: word("speaking"),
            value: word("value"),
            audio_start_ms: word("audioStartMs"),
            audio_end_ms: word("audioEndMs"),
            audio: word("audio"),
            level: word("level"),
            vad: word("vad"),
            ready: word("ready"),
            progress: word("progress"),
            drained: word("drained"),
            cleared: word("cleared"),
            speech_started: word("speech_started"),
        }
    }
}

/// A field of a worklet message.
fn field(data: &JsValue, key: &JsValue) -> JsValue {
    Reflect::get(data, key).unwrap_or(JsValue::UNDEFINED)
}

/// A numeric field as a count (0 when missing).
fn count(data: &JsValue, key: &JsValue) -> u64 {
    field(data, key)
        .as_f64()
        .map_or(0, |value| value.max(0.0) as u64)
}

/// A response id field (`null` → `None`).
fn response_id(data: &JsValue, key: &JsValue) -> Option<ResponseId> {
    field(data, key).as_f64().map(|value| value as ResponseId)
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
    socket: Option<Socket>,
    audio: Option<AudioParts>,
    session: Session,
    counters: GlueCounters,
    /// Reused for every event's commands.
    commands: Vec<Command>,
    words: Words,
    /// The message object reused for every audio chunk posted to playback, and its transfer
    /// list.
    chunk_message: Object,
    chunk_transfer: Array,
    stopped: bool,
}

impl Engine {
    fn new(ui: Ui, context: AudioContext) -> Self {
        let words = Words::new();
        let chunk_message = Object::new();
        let _ = Reflect::set(&chunk_message, &words.kind, &words.audio);
        let sample_rate = context.sample_rate();
        ui.sample_rate.set(Some(sample_rate));
        Self {
            ui,
            context,
            socket: None,
            audio: None,
            session: Session::new(),
            counters: GlueCounters {
                sample_rate: Some(f64::from(sample_rate)),
                ..GlueCounters::default()
            },
            commands: Vec::with_capacity(8),
            words,
            chunk_message,
            chunk_transfer: Array::new_with_length(1),
            stopped: false,
        }
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
            ServerMessage::SessionReady { simulated, .. } => {
                self.counters.connected = true;
                self.counters.simulated = Some(*simulated);
                self.ui.simulated.set(*simulated);
                self.ui.connection.set(Connection::Connected);
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
            self.post_chunk(response_id, pcm);
        }
        self.run_commands();
    }

    /// Hands one chunk to the playback worklet, transferring a fresh buffer.
    fn post_chunk(&mut self, response_id: ResponseId, pcm: &[u8]) {
        let Some(audio) = &self.audio else {
            return;
        };
        let bytes = js_sys::Uint8Array::new_with_length(pcm.len() as u32);
        bytes.copy_from(pcm);
        let buffer = bytes.buffer();
        let _ = Reflect::set(
            &self.chunk_message,
            &self.words.response_id,
            &JsValue::from(response_id),
        );
        let _ = Reflect::set(&self.chunk_message, &self.words.pcm, &buffer);
        self.chunk_transfer.set(0, buffer.into());
        let _ = audio
            .playback_port
            .post_message_with_transferable(&self.chunk_message, &self.chunk_transfer);
    }

    /// A message from the capture worklet.
    fn on_capture_message(&mut self, data: &JsValue) {
        let kind = field(data, &self.words.kind);
        if kind == self.words.audio {
            self.on_capture_frame(data);
        } else if kind == self.words.level {
            let dbfs = field(data, &self.words.dbfs).as_f64().unwrap_or(-100.0);
            let speaking = field(data, &self.words.speaking).as_bool().unwrap_or(false);
            self.ui.level.set(Level {
                dbfs: dbfs as f32,
                speaking,
            });
        } else if kind == self.words.vad {
            let started = field(data, &self.words.event) == self.words.speech_started;
            let (event, name, at) = if started {
                (
                    CaptureEvent::SpeechStarted,
                    "speech_started",
                    &self.words.audio_start_ms,
                )
            } else {
                (
                    CaptureEvent::SpeechStopped,
                    "speech_stopped",
                    &self.words.audio_end_ms,
                )
            };
            let audio_ms = field(data, at).as_f64().unwrap_or(f64::NAN);
            self.counters.vad.push(VadRecord {
                event: name,
                audio_ms,
            });
            self.session.on_capture(event, &mut self.commands);
            self.run_commands();
        } else if kind == self.words.ready {
            self.counters.capture_via = field(data, &self.words.via).as_string();
        }
    }

    /// A 20 ms capture frame: to the proxy as it is, if the session is in a turn.
    fn on_capture_frame(&mut self, data: &JsValue) {
        if !self.session.should_send_audio() {
            return;
        }
        let (Some(socket), Ok(pcm)) = (
            &self.socket,
            field(data, &self.words.pcm).dyn_into::<ArrayBuffer>(),
        ) else {
            return;
        };
        if socket.send_audio(&pcm) == Sent::Yes {
            self.counters.sent_frames += 1;
            self.counters.sent_bytes += u64::from(pcm.byte_length());
        }
    }

    /// A message from the playback worklet.
    fn on_playback_message(&mut self, data: &JsValue) {
        let words = &self.words;
        let kind = field(data, &words.kind);
        let event = if kind == words.progress {
            PlaybackEvent::Progress {
                response_id: response_id(data, &words.response_id),
                played_samples: count(data, &words.played_samples),
                underruns: count(data, &words.underruns),
                stale_dropped: count(data, &words.stale_dropped),
            }
        } else if kind == words.drained {
            let Some(response_id) = response_id(data, &words.response_id) else {
                return;
            };
            PlaybackEvent::Drained {
                response_id,
                played_samples: count(data, &words.played_samples),
            }
        } else if kind == words.cleared {
            PlaybackEvent::Cleared {
                response_id: response_id(data, &words.response_id),
                played_samples: count(data, &words.played_samples),
            }
        } else {
            if kind == words.ready {
                self.counters.playback_via = field(data, &words.via).as_string();
            }
            return;
        };
        self.session.on_playback(event, &mut self.commands);
        self.run_commands();
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
                    self.post_to_playback("end", response_id);
                }
                Command::Playback(PlaybackCommand::Clear(response_id)) => {
                    self.post_to_playback("clear", response_id);
                    self.ui
                        .conversation
                        .maybe_update(|conversation| conversation.mark_interrupted(response_id));
                }
                Command::EchoGuard(audible) => {
                    if let Some(audio) = &self.audio {
                        let message = Object::new();
                        let _ =
                            Reflect::set(&message, &self.words.kind, &"assistant_audible".into());
                        let _ = Reflect::set(&message, &self.words.value, &audible.into());
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

    /// Posts `{type, responseId}` to the playback worklet.
    fn post_to_playback(&self, kind: &str, response_id: ResponseId) {
        let Some(audio) = &self.audio else {
            return;
        };
        let message = Object::new();
        let _ = Reflect::set(&message, &self.words.kind, &kind.into());
        let _ = Reflect::set(&message, &self.words.response_id, &response_id.into());
        let _ = audio.playback_port.post_message(&message);
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
        self.ui.connection.set(Connection::Offline);
        self.ui.pipeline.set(crate::session::Pipeline::Idle);
        self.ui.level.set(Level::default());
        self.ui.echo_cancellation.set(None);
    }
}
