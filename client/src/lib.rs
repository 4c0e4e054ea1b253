//! The voice agent's browser app: a Leptos (CSR) page that captures the microphone, streams
//! the user's speech to the proxy over one WebSocket, plays the streamed answer gaplessly and
//! shows the conversation.
//!
//! # Layout
//!
//! Plain Rust, compiled everywhere and unit-tested natively:
//!
//! * [`session`] — the client side of a voice session as a pure state machine: turn
//!   announcements, which audio to play or drop, barge-in (clear playback, tell the proxy,
//!   report what was played), the echo guard, the pipeline state the page shows.
//! * [`conversation`] — the transcript model: user text partial → final, the answer as it
//!   streams, interrupted answers split where the user stopped hearing them.
//! * [`waterfall`] — the per-turn latency waterfall as labelled steps.
//! * [`errors`] — errors in plain words, with the stage they came from.
//! * [`bundle_config`] — where the proxy is: the page's own host, or the `proxy_url` of a
//!   `config.json` beside `index.html` (the bundle deployed apart from the proxy).
//! * [`reconnect`] — after a dropped socket: which closes reconnect, the jittered backoff,
//!   when to present the resume token, what the page says when the new session comes.
//! * [`probe`] — the counters browser tests read through `window.__voiceTest()`.
//! * [`worklet_messages`] — the messages between the page and the two worklets, as types (their
//!   decoding and encoding; on `wasm32` also on JS objects).
//!
//! Browser only (`wasm32`): `app` (the components), `engine` (the running session: the
//! socket, the AudioContext and the two worklets, wired to [`session::Session`]), `ui_state`
//! (the signals the engine writes and the components read), `audio` (AudioContext,
//! `audio.wasm`, worklet nodes, the microphone) and `socket` (the WebSocket).
//!
//! Imports run one way, with no circle: `app` (the view) → `engine` → `ui_state`, `audio`,
//! `socket`, `worklet_messages`, `probe` → the plain modules (`session`, `conversation`,
//! `errors`, `waterfall`, `bundle_config`, `reconnect`). `app` also uses `ui_state` and `audio`; nothing imports `app`, and
//! only `app` imports `engine`.
//!
//! # Audio path
//!
//! The DSP runs in two AudioWorklets (`client/worklet/worklets.js`) on `audio.wasm`
//! (`client/audio`), which this page fetches and compiles once and hands to both as a
//! `WebAssembly.Module`. The capture worklet resamples the microphone from the device rate to
//! 24 kHz, runs the VAD and posts 20 ms PCM16 frames only while the user speaks; this page
//! forwards each frame's buffer to the socket untouched. The playback worklet takes the
//! answer's PCM16 chunks, tagged with their response id, and plays them through a jitter
//! cushion at the device rate.

pub mod bundle_config;
pub mod conversation;
pub mod errors;
pub mod probe;
pub mod reconnect;
pub mod session;
pub mod waterfall;
pub mod worklet_messages;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod audio;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod socket;
#[cfg(target_arch = "wasm32")]
mod ui_state;

#[cfg(target_arch = "wasm32")]
pub use app::start;
