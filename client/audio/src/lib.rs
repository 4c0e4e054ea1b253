//! Pure-Rust DSP for the browser's AudioWorklets, with no dependencies.
//!
//! Built twice: as an `rlib` for native tests and benches, and as a `cdylib` for
//! `wasm32-unknown-unknown` — `audio.wasm`, a module with **zero imports** that the worklets in
//! `client/worklet/` instantiate synchronously and drive through plain `extern "C"` exports
//! over fixed buffers in its linear memory (no wasm-bindgen, no shared memory, no atomics).
//!
//! # Modules
//!
//! * [`resample`] — one streaming rational polyphase FIR resampler (Kaiser-windowed sinc) for
//!   both directions: device rate → 24 kHz (capture) and 24 kHz → device rate (playback). The
//!   ratio is reduced by the gcd; phase accounting is exact, so output counts never drift.
//!   Flat (±1 dB) to 10 kHz, ≥ 80 dB rejection from 13 kHz at 24 kHz.
//! * [`pcm`] — f32 ↔ PCM16 with rounding, clipping and NaN → 0.
//! * [`vad`] — energy VAD on 10 ms frames at 24 kHz: adaptive noise floor, onset
//!   confirmation, short pauses, hangover, maximum utterance length, echo guard.
//! * [`capture`] — resample → PCM16 → VAD → 300 ms pre-roll → gated 20 ms frames + events.
//! * [`playback`] — jitter-buffered ring of 24 kHz PCM16 tagged with response ids: cushion,
//!   fades on underrun and barge-in, stale-chunk dropping, played-sample accounting.
//! * `wasm` (wasm32 only) — the exports below, the allocator and the panic handler; the only
//!   module with `unsafe`.
//!
//! On wasm32 the crate is `no_std` (`core` and `alloc` only): std's panic, formatting and
//! allocator machinery was most of the module's size. Native builds keep std for the tests
//! and benches. The few float functions `core` lacks (`log10`, `sin`) live in a small `math`
//! module that both targets run, so the native tests check the browser's arithmetic.
//!
//! Real-time rule: nothing allocates or logs per quantum or per sample. Every buffer is
//! allocated in a constructor; the worst-case sizes are derived from [`capture::MAX_INPUT_SAMPLES`]
//! and the resampling ratio.
//!
//! # Wasm export contract
//!
//! All numbers are `u32` unless marked; pointers are byte offsets into `memory`. JS must
//! re-create typed-array views whenever `memory.buffer` changes (`memory.grow` detaches the old
//! buffer). Every export is safe to call in any order: before the matching `*_new` it returns
//! 0 / null and does nothing. Capture and playback state are independent.
//!
//! Capture (one quantum in, gated PCM16 frames and VAD events out):
//!
//! | export | meaning |
//! |---|---|
//! | `cap_new(sample_rate) -> u32` | create (or re-create, in the old one's memory) for the device rate; 1 ok, 0 unsupported rate (the old one stays) |
//! | `cap_in_ptr() -> *mut f32`, `cap_in_capacity() -> u32` | input buffer (4096 samples) |
//! | `cap_process(n) -> u32` | process `n` input samples; returns PCM16 samples ready (whole 480-sample / 20 ms frames) |
//! | `cap_out_ptr() -> *const i16` | those samples, valid until the next `cap_process` |
//! | `cap_event_count() -> u32` | VAD events of the last `cap_process` |
//! | `cap_event_kind(i) -> u32` | 1 speech started, 2 stopped by silence, 3 stopped at max length, 4 paused, 5 resumed |
//! | `cap_event_ms(i) -> f64` | onset / pause / resume / end of speech, ms of capture stream since `cap_new` |
//! | `cap_event_offset(i) -> u32` | output samples that precede the event (post those frames first) |
//! | `cap_speaking() -> u32` | 1 while speech is in progress |
//! | `cap_take_level_dbfs() -> f32` | input RMS since the previous call, dBFS (−100 = silence) |
//! | `cap_noise_floor_dbfs() -> f32` | the VAD's noise floor |
//! | `cap_set_assistant_audible(audible)` | echo guard on (nonzero) / off |
//! | `cap_set_hangover_ms(ms)`, `cap_set_pause_ms(ms)`, `cap_set_max_utterance_ms(ms)`, `cap_set_echo_guard_db(f32)` | VAD tuning |
//!
//! Playback (24 kHz PCM16 chunks in, device-rate f32 quanta out):
//!
//! | export | meaning |
//! |---|---|
//! | `play_new(sample_rate) -> u32` | create (or re-create) for the device rate; 1 ok, 0 unsupported rate (the old one stays) |
//! | `play_in_ptr() -> *mut i16`, `play_in_capacity() -> u32` | chunk buffer (8192 samples; push larger chunks in pieces) |
//! | `play_push(response_id, n) -> u32` | queue `n` samples; 0 queued, 1 stale (dropped), 2 ring full (partly dropped) |
//! | `play_end(response_id)` | all audio of the response was pushed: play it out, then report it drained |
//! | `play_cancel(response_id)` | drop future chunks of this id |
//! | `play_clear() -> u32` | barge-in: 5 ms fade, empty the queue, cancel its responses; returns samples played of the current response |
//! | `play_render(n) -> u32` | render `n` device samples (≤ `play_out_capacity()`, 4096) |
//! | `play_out_ptr() -> *const f32` | the rendered samples |
//! | `play_drained_count() -> u32`, `play_drained_response(i) -> u32`, `play_drained_played(i) -> u32` | responses that finished during the last render |
//! | `play_current_response() -> f64` | id playing now or last (−1 if none) |
//! | `play_played_samples(response_id) -> u32` | 24 kHz samples of it played so far |
//! | `play_buffered_samples()`, `play_underruns()`, `play_stale_chunks()`, `play_overflow_samples()`, `play_cushion_samples()`, `play_is_playing()` | statistics |

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod capture;
mod math;
pub mod pcm;
pub mod playback;
pub mod resample;
pub mod vad;

#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod speech_tests;
