//! The `extern "C"` surface the AudioWorklets call (wasm32 only). See the crate docs for the
//! export contract.
//!
//! Capture and playback live in two independent slots, so one instance can serve either
//! worklet (or both). Every export is total: before `cap_new`/`play_new` succeeded, or with an
//! out-of-range argument, it does nothing and returns 0 (or null, or −1 where documented)
//! instead of trapping.
//!
//! The crate is `no_std` here, so this module also provides what std would: the allocator
//! ([`Heap`]) and the panic handler (a trap: the exports never panic on any input, so a panic
//! is a bug, and a trap shows it in the worklet's `processorerror` without linking any of
//! `core::fmt`).

// This is the one module with `unsafe`: `#[unsafe(no_mangle)]` exports, the global state
// slots they share and the allocator. Everything below it is safe Rust.
#![allow(unsafe_code)]
// The exports are reached through the wasm symbol table, not through Rust paths.
#![allow(unreachable_pub)]

use alloc::boxed::Box;
use alloc::vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};

use crate::capture::{Capture, MAX_INPUT_SAMPLES};
use crate::playback::Playback;
use crate::vad::{StopReason, VadConfig, VadEvent};

/// PCM16 samples `play_push` takes per call; larger chunks are pushed in pieces. 8192 samples
/// (341 ms) holds any chunk a 24 kHz stream sends in one WebSocket message in practice.
const PLAY_IN_SAMPLES: usize = 8192;

/// Device samples `play_render` produces per call (32 of today's 128-frame quanta).
const PLAY_OUT_SAMPLES: usize = 4096;

/// Event codes returned by `cap_event_kind`.
const EVENT_SPEECH_STARTED: u32 = 1;
const EVENT_SPEECH_STOPPED_SILENCE: u32 = 2;
const EVENT_SPEECH_STOPPED_MAX_LENGTH: u32 = 3;
const EVENT_SPEECH_PAUSED: u32 = 4;
const EVENT_SPEECH_RESUMED: u32 = 5;

// ---- runtime: panic handler and allocator --------------------------------------------------

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// Bytes in one page of wasm memory.
const WASM_PAGE_BYTES: usize = 65_536;

/// A bump allocator over pages taken with `memory.grow`, which is all this module needs: every
/// buffer is made once, in `cap_new` / `play_new`, and lives as long as the instance (each
/// worklet node instantiates its own module and calls its `*_new` once).
///
/// It still takes memory back in the two cases that occur: freeing the newest block moves the
/// top back (the filter design's scratch row), and when no block is live the heap starts over.
/// The `*_new` exports drop the old state before building the new one, so re-creating the only
/// pipeline of an instance reuses its memory; re-creating one while the other slot is alive
/// leaves the old one's buffers unused (bounded: one pipeline's worth per call).
struct Heap {
    /// Address of the heap's first byte (0 until the first allocation).
    base: Cell<usize>,
    /// First free byte.
    top: Cell<usize>,
    /// End of the memory the heap owns.
    end: Cell<usize>,
    /// Blocks allocated and not freed.
    live: Cell<usize>,
}

// SAFETY: one thread, no re-entrancy (see `Slot`).
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap = Heap {
    base: Cell::new(0),
    top: Cell::new(0),
    end: Cell::new(0),
    live: Cell::new(0),
};

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.base.get() == 0 {
            // Everything below the current memory size belongs to the stack and statics.
            let start = core::arch::wasm32::memory_size(0) * WASM_PAGE_BYTES;
            self.base.set(start);
            self.top.set(start);
            self.end.set(start);
        }
        let Some(start) = self.top.get().checked_next_multiple_of(layout.align()) else {
            return core::ptr::null_mut();
        };
        let Some(new_top) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if new_top > self.end.get() {
            let pages = (new_top - self.end.get()).div_ceil(WASM_PAGE_BYTES);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return core::ptr::null_mut();
            }
            self.end.set(self.end.get() + pages * WASM_PAGE_BYTES);
        }
        self.top.set(new_top);
        self.live.set(self.live.get() + 1);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let live = self.live.get() - 1;
        self.live.set(live);
        if live == 0 {
            self.top.set(self.base.get());
        } else if ptr as usize + layout.size() == self.top.get() {
            self.top.set(ptr as usize);
        }
    }
}

/// One piece of global state.
struct Slot<T>(UnsafeCell<Option<T>>);

// SAFETY: this module is only compiled for wasm32 without the atomics feature, where there is
// exactly one thread. The module imports nothing, so an export can never re-enter another
// export while `with` holds the `&mut`.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    const fn empty() -> Self {
        Self(UnsafeCell::new(None))
    }

    /// Runs `f` on the value, or returns `default` when there is none yet.
    fn with<R>(&self, default: R, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: single thread and no re-entrancy (see the `Sync` impl), so this is the only
        // reference to the contents for the duration of `f`.
        let value = unsafe { &mut *self.0.get() };
        value.as_mut().map_or(default, f)
    }

    fn set(&self, value: T) {
        // SAFETY: as in `with`; no reference to the old contents is alive.
        unsafe { *self.0.get() = Some(value) }
    }

    /// Drops the value, so its memory can serve the next one.
    fn clear(&self) {
        // SAFETY: as in `with`; no reference to the contents is alive.
        unsafe { *self.0.get() = None }
    }
}

struct CaptureState {
    capture: Capture,
    input: Box<[f32]>,
}

struct PlaybackState {
    playback: Playback,
    input: Box<[i16]>,
    output: Box<[f32]>,
}

static CAPTURE: Slot<CaptureState> = Slot::empty();
static PLAYBACK: Slot<PlaybackState> = Slot::empty();

fn bool_u32(value: bool) -> u32 {
    u32::from(value)
}

/// Whether `*_new` can build a pipeline for this device rate: checked before the old one is
/// dropped, so an unsupported rate leaves it as it was.
fn is_supported_rate(sample_rate: u32) -> bool {
    (crate::resample::MIN_RATE_HZ..=crate::resample::MAX_RATE_HZ).contains(&sample_rate)
}

fn saturate_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

// ---- capture -------------------------------------------------------------------------------

/// Creates the capture pipeline for `sample_rate` Hz with the default VAD. 1 = ok, 0 = rate
/// unsupported.
#[unsafe(no_mangle)]
pub extern "C" fn cap_new(sample_rate: u32) -> u32 {
    if !is_supported_rate(sample_rate) {
        return 0;
    }
    CAPTURE.clear();
    match Capture::new(sample_rate, VadConfig::default()) {
        Ok(capture) => {
            let input = vec![0.0; MAX_INPUT_SAMPLES].into_boxed_slice();
            CAPTURE.set(CaptureState { capture, input });
            1
        }
        Err(_) => 0,
    }
}

/// Where to write the next quantum of mono f32 device samples.
#[unsafe(no_mangle)]
pub extern "C" fn cap_in_ptr() -> *mut f32 {
    CAPTURE.with(core::ptr::null_mut(), |s| s.input.as_mut_ptr())
}

/// How many samples fit at `cap_in_ptr`.
#[unsafe(no_mangle)]
pub extern "C" fn cap_in_capacity() -> u32 {
    CAPTURE.with(0, |s| saturate_u32(s.input.len()))
}

/// Processes the first `n` samples at `cap_in_ptr`; returns the PCM16 samples ready at
/// `cap_out_ptr` (whole 480-sample frames).
#[unsafe(no_mangle)]
pub extern "C" fn cap_process(n: u32) -> u32 {
    CAPTURE.with(0, |s| {
        let n = (n as usize).min(s.input.len());
        saturate_u32(s.capture.process(&s.input[..n]))
    })
}

/// The gated 24 kHz PCM16 output of the last `cap_process`.
#[unsafe(no_mangle)]
pub extern "C" fn cap_out_ptr() -> *const i16 {
    CAPTURE.with(core::ptr::null(), |s| s.capture.output().as_ptr())
}

/// VAD events of the last `cap_process`.
#[unsafe(no_mangle)]
pub extern "C" fn cap_event_count() -> u32 {
    CAPTURE.with(0, |s| saturate_u32(s.capture.events().len()))
}

/// Event `i`: 1 = speech started, 2 = stopped (silence), 3 = stopped (max length),
/// 4 = paused, 5 = resumed, 0 = none.
#[unsafe(no_mangle)]
pub extern "C" fn cap_event_kind(i: u32) -> u32 {
    CAPTURE.with(0, |s| {
        s.capture
            .events()
            .get(i as usize)
            .map_or(0, |e| match e.event {
                VadEvent::SpeechStarted { .. } => EVENT_SPEECH_STARTED,
                VadEvent::SpeechPaused { .. } => EVENT_SPEECH_PAUSED,
                VadEvent::SpeechResumed { .. } => EVENT_SPEECH_RESUMED,
                VadEvent::SpeechStopped {
                    reason: StopReason::Silence,
                    ..
                } => EVENT_SPEECH_STOPPED_SILENCE,
                VadEvent::SpeechStopped {
                    reason: StopReason::MaxLength,
                    ..
                } => EVENT_SPEECH_STOPPED_MAX_LENGTH,
            })
    })
}

/// Event `i`'s position in the capture stream, in ms since `cap_new`: where speech started,
/// paused (the start of the quiet), resumed, or ended (the start of the silence, or the cut).
#[unsafe(no_mangle)]
pub extern "C" fn cap_event_ms(i: u32) -> f64 {
    CAPTURE.with(0.0, |s| {
        s.capture.events().get(i as usize).map_or(0.0, |e| {
            let sample = match e.event {
                VadEvent::SpeechStarted { start_sample } => start_sample,
                VadEvent::SpeechPaused { pause_sample } => pause_sample,
                VadEvent::SpeechResumed { resume_sample } => resume_sample,
                VadEvent::SpeechStopped { end_sample, .. } => end_sample,
            };
            sample as f64 * 1_000.0 / f64::from(crate::capture::OUTPUT_RATE_HZ)
        })
    })
}

/// Event `i`'s offset in the output (samples before it): post frames up to here first.
#[unsafe(no_mangle)]
pub extern "C" fn cap_event_offset(i: u32) -> u32 {
    CAPTURE.with(0, |s| {
        s.capture
            .events()
            .get(i as usize)
            .map_or(0, |e| saturate_u32(e.output_offset))
    })
}

/// 1 while speech is in progress.
#[unsafe(no_mangle)]
pub extern "C" fn cap_speaking() -> u32 {
    CAPTURE.with(0, |s| bool_u32(s.capture.is_speaking()))
}

/// RMS level of the input since the previous call, in dBFS (−100 for silence).
#[unsafe(no_mangle)]
pub extern "C" fn cap_take_level_dbfs() -> f32 {
    CAPTURE.with(crate::vad::SILENCE_DBFS, |s| s.capture.take_level_dbfs())
}

/// The VAD's noise floor, in dBFS.
#[unsafe(no_mangle)]
pub extern "C" fn cap_noise_floor_dbfs() -> f32 {
    CAPTURE.with(crate::vad::SILENCE_DBFS, |s| s.capture.noise_floor_dbfs())
}

/// Echo guard: nonzero while the assistant is audible.
#[unsafe(no_mangle)]
pub extern "C" fn cap_set_assistant_audible(audible: u32) {
    CAPTURE.with((), |s| s.capture.set_assistant_audible(audible != 0));
}

/// VAD hangover in ms (default 500).
#[unsafe(no_mangle)]
pub extern "C" fn cap_set_hangover_ms(ms: u32) {
    CAPTURE.with((), |s| {
        s.capture.set_vad_config(VadConfig {
            hangover_ms: ms,
            ..*s.capture.vad_config()
        })
    });
}

/// Quiet in ms inside speech reported as a short pause (default 200; no pauses at or above the
/// hangover).
#[unsafe(no_mangle)]
pub extern "C" fn cap_set_pause_ms(ms: u32) {
    CAPTURE.with((), |s| {
        s.capture.set_vad_config(VadConfig {
            pause_ms: ms,
            ..*s.capture.vad_config()
        })
    });
}

/// Longest utterance in ms before a forced stop (default 30 000).
#[unsafe(no_mangle)]
pub extern "C" fn cap_set_max_utterance_ms(ms: u32) {
    CAPTURE.with((), |s| {
        s.capture.set_vad_config(VadConfig {
            max_utterance_ms: ms,
            ..*s.capture.vad_config()
        })
    });
}

/// dB added to the start threshold while the assistant is audible (default 15).
#[unsafe(no_mangle)]
pub extern "C" fn cap_set_echo_guard_db(db: f32) {
    CAPTURE.with((), |s| {
        s.capture.set_vad_config(VadConfig {
            echo_guard_db: db,
            ..*s.capture.vad_config()
        })
    });
}

// ---- playback ------------------------------------------------------------------------------

/// Creates the player for a device at `sample_rate` Hz. 1 = ok, 0 = rate unsupported.
#[unsafe(no_mangle)]
pub extern "C" fn play_new(sample_rate: u32) -> u32 {
    if !is_supported_rate(sample_rate) {
        return 0;
    }
    PLAYBACK.clear();
    match Playback::new(sample_rate) {
        Ok(playback) => {
            PLAYBACK.set(PlaybackState {
                playback,
                input: vec![0; PLAY_IN_SAMPLES].into_boxed_slice(),
                output: vec![0.0; PLAY_OUT_SAMPLES].into_boxed_slice(),
            });
            1
        }
        Err(_) => 0,
    }
}

/// Where to write a chunk of 24 kHz PCM16 before `play_push`.
#[unsafe(no_mangle)]
pub extern "C" fn play_in_ptr() -> *mut i16 {
    PLAYBACK.with(core::ptr::null_mut(), |s| s.input.as_mut_ptr())
}

/// How many samples fit at `play_in_ptr`.
#[unsafe(no_mangle)]
pub extern "C" fn play_in_capacity() -> u32 {
    PLAYBACK.with(0, |s| saturate_u32(s.input.len()))
}

/// Queues the first `n` samples at `play_in_ptr` for `response_id`. Returns 0 = queued,
/// 1 = dropped as stale (cancelled response), 2 = partly dropped (ring full).
#[unsafe(no_mangle)]
pub extern "C" fn play_push(response_id: u32, n: u32) -> u32 {
    PLAYBACK.with(0, |s| {
        let n = (n as usize).min(s.input.len());
        match s.playback.push(response_id, &s.input[..n]) {
            crate::playback::PushOutcome::Queued => 0,
            crate::playback::PushOutcome::Stale => 1,
            crate::playback::PushOutcome::Overflow { .. } => 2,
        }
    })
}

/// All audio of `response_id` has been pushed: play out its tail, then report it drained.
#[unsafe(no_mangle)]
pub extern "C" fn play_end(response_id: u32) {
    PLAYBACK.with((), |s| s.playback.end(response_id));
}

/// Drops future chunks of `response_id` (e.g. cancelled before its first chunk arrived).
#[unsafe(no_mangle)]
pub extern "C" fn play_cancel(response_id: u32) {
    PLAYBACK.with((), |s| s.playback.cancel(response_id));
}

/// Barge-in: 5 ms fade, queue emptied, queued responses cancelled. Returns the 24 kHz samples
/// played of the response that was current (read its id with `play_current_response` first).
#[unsafe(no_mangle)]
pub extern "C" fn play_clear() -> u32 {
    PLAYBACK.with(0, |s| s.playback.clear().played_samples)
}

/// Renders `n` device samples (at most `play_out_capacity`) to `play_out_ptr`; returns how
/// many were written.
#[unsafe(no_mangle)]
pub extern "C" fn play_render(n: u32) -> u32 {
    PLAYBACK.with(0, |s| {
        let n = (n as usize).min(s.output.len());
        s.playback.render(&mut s.output[..n]);
        saturate_u32(n)
    })
}

/// The device-rate f32 output of the last `play_render`.
#[unsafe(no_mangle)]
pub extern "C" fn play_out_ptr() -> *const f32 {
    PLAYBACK.with(core::ptr::null(), |s| s.output.as_ptr())
}

/// How many samples `play_render` can produce per call.
#[unsafe(no_mangle)]
pub extern "C" fn play_out_capacity() -> u32 {
    PLAYBACK.with(0, |s| saturate_u32(s.output.len()))
}

/// Responses that finished playing during the last `play_render`.
#[unsafe(no_mangle)]
pub extern "C" fn play_drained_count() -> u32 {
    PLAYBACK.with(0, |s| saturate_u32(s.playback.drained().len()))
}

/// Id of drained response `i`.
#[unsafe(no_mangle)]
pub extern "C" fn play_drained_response(i: u32) -> u32 {
    PLAYBACK.with(0, |s| {
        s.playback
            .drained()
            .get(i as usize)
            .map_or(0, |d| d.response_id)
    })
}

/// 24 kHz samples played of drained response `i`.
#[unsafe(no_mangle)]
pub extern "C" fn play_drained_played(i: u32) -> u32 {
    PLAYBACK.with(0, |s| {
        s.playback
            .drained()
            .get(i as usize)
            .map_or(0, |d| d.played_samples)
    })
}

/// The response playing now or played last, as an f64 so every u32 id fits; −1 if none yet.
#[unsafe(no_mangle)]
pub extern "C" fn play_current_response() -> f64 {
    PLAYBACK.with(-1.0, |s| {
        s.playback.current_response().map_or(-1.0, f64::from)
    })
}

/// 24 kHz samples of `response_id` played so far (0 if unknown).
#[unsafe(no_mangle)]
pub extern "C" fn play_played_samples(response_id: u32) -> u32 {
    PLAYBACK.with(0, |s| s.playback.played_samples(response_id).unwrap_or(0))
}

/// 24 kHz samples queued and not yet rendered.
#[unsafe(no_mangle)]
pub extern "C" fn play_buffered_samples() -> u32 {
    PLAYBACK.with(0, |s| saturate_u32(s.playback.buffered_samples()))
}

/// Times playback ran dry while more audio was expected.
#[unsafe(no_mangle)]
pub extern "C" fn play_underruns() -> u32 {
    PLAYBACK.with(0, |s| s.playback.underruns())
}

/// Chunks dropped because their response was cancelled.
#[unsafe(no_mangle)]
pub extern "C" fn play_stale_chunks() -> u32 {
    PLAYBACK.with(0, |s| s.playback.stale_chunks())
}

/// Samples dropped because the ring was full.
#[unsafe(no_mangle)]
pub extern "C" fn play_overflow_samples() -> u32 {
    PLAYBACK.with(0, |s| s.playback.overflow_samples())
}

/// The current start cushion, in 24 kHz samples.
#[unsafe(no_mangle)]
pub extern "C" fn play_cushion_samples() -> u32 {
    PLAYBACK.with(0, |s| saturate_u32(s.playback.cushion_samples()))
}

/// 1 while audio is being rendered (not buffering or idle).
#[unsafe(no_mangle)]
pub extern "C" fn play_is_playing() -> u32 {
    PLAYBACK.with(0, |s| bool_u32(s.playback.is_playing()))
}
