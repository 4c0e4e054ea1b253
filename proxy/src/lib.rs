//! The voice agent's server: relays a browser's speech to OpenAI's Realtime transcription API,
//! streams each answer from Chat Completions into the Speech API sentence by sentence, and
//! streams the audio back while the model is still writing. It also serves the built client.
//!
//! # Layout
//!
//! * [`config`] — operator settings: the command line ([`config::Cli`], every flag also an
//!   environment variable) and the validated [`config::Config`]; the redacted [`config::Secret`].
//! * [`upstream`] — the three upstream roles: [`upstream::realtime`] (transcriber),
//!   [`upstream::chat`] (responder), [`upstream::speech`] (synthesizer), with shared error
//!   classification and retry policy.
//! * `session` — one actor per browser connection and the parts it drives: the browser link,
//!   the transcriber slot, the pure turn state machine (`session::turn`), the history with each
//!   answer's record (`session::history`), the response pipeline (`session::response`) and the
//!   latency waterfall (`session::metrics`).
//! * `speakable` — LLM text prepared for text-to-speech: sentence boundaries, markdown,
//!   cleaning, emoji.
//! * [`http`] — the HTTP surface: `/ws`, `/healthz`, one-shot `/api/*` endpoints, static files;
//!   `access` — who may open a session: the Origin check and the access token.
//! * `state` — [`AppState`]: what requests share, and the admission of sessions (global and
//!   per-address caps and rates); `server` — [`serve`] and [`run`]: the accept loop with its
//!   connection caps and header timeout, and graceful shutdown; `limits` — the pure pieces of
//!   the limits (token bucket, episodes, per-address table); `static_files` — the built client,
//!   served without following symlinks out of its directory, with its security headers.
//! * `tls` — HTTPS and WSS served directly (`TLS_CERT`, `TLS_KEY`): the certificate reloaded
//!   when its files change, plain HTTP on the TLS port answered with a `400`, and the
//!   plain-HTTP redirect listener (`HTTP_REDIRECT_ADDR`); its errors are [`TlsError`].
//! * `observability` — the Prometheus metrics `/metrics` serves: one recorder per server, its
//!   handles cloned into the sessions.
//! * [`wav`] — a small WAV reader and writer for the tools and tests.
//!
//! The OpenAI simulator the proxy runs on without a key is the `openai-sim` crate; the design
//! is in `docs/ARCHITECTURE.md`.
//!
//! [`run`] serves until a shutdown signal; [`AppState::new`] and [`serve`] (or [`app`]) let
//! tests build the same server on any listener.

pub(crate) mod access;
pub mod config;
pub mod http;
pub(crate) mod limits;
pub(crate) mod observability;
mod server;
pub(crate) mod session;
pub(crate) mod session_store;
pub(crate) mod speakable;
mod state;
mod static_files;
mod tls;
pub mod upstream;
pub mod wav;

pub use http::app;
pub use server::{SHUTDOWN_DRAIN_TIMEOUT, raise_open_file_limit, run, serve, serve_redirecting};
pub use session_store::StoreError;
pub use state::{AppState, Backend, StartError};
pub use tls::TlsError;
