//! Playback: a jitter-buffered ring of 24 kHz PCM16, rendered at the device rate.
//!
//! * [`Playback::push`] appends a chunk tagged with its response id. Consecutive chunks of one
//!   id form a *segment*; a small table of *response records* remembers, per id, how many
//!   samples were played, whether the server said the response ended, and whether it was
//!   cancelled (chunks of a cancelled id are dropped and counted as stale).
//! * [`Playback::render`] pulls 24 kHz samples through the 24 kHz → device-rate
//!   [`Resampler`] until the device quantum is full. It starts only once a cushion of
//!   [`INITIAL_CUSHION_MS`] is queued — or at once if the queued response has ended, so a
//!   short answer or the tail of one never waits for the cushion.
//! * The last [`FADE_MS`] before the queue runs dry are always faded out, so neither an
//!   underrun nor a response cut mid-waveform clicks (the cost is a small dip when a chunk
//!   arrives just in time). Running dry while more audio is expected is an underrun: it is
//!   counted, the cushion grows by [`CUSHION_STEP_MS`] up to [`MAX_CUSHION_MS`], and
//!   playback waits for the cushion again, fading back in.
//! * End of response: after its last sample, zeros keep flowing through the filter so its tail
//!   decays naturally, and a [`Drained`] record tells how many samples were played.
//! * [`Playback::clear`] (barge-in) keeps only the next [`FADE_MS`], fades them to zero, drops
//!   everything else at once, cancels every queued response, and answers how much of the
//!   current response was played. Once silent the resampler is reset.
//!
//! Played samples are counted when a 24 kHz sample enters the resampler, i.e. when it is
//! rendered (the filter adds about one millisecond of delay). All memory is allocated in
//! [`Playback::new`].

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use crate::pcm;
use crate::resample::{Resampler, UnsupportedRate};

/// Rate of the PCM the proxy streams (OpenAI's Speech API output).
pub const SOURCE_RATE_HZ: u32 = 24_000;

/// Initial jitter cushion: absorbs ±20 ms of network jitter on 20–40 ms chunks while keeping
/// "first audio → audible" within the 60 ms latency budget.
pub const INITIAL_CUSHION_MS: u32 = 60;

/// Cushion growth per underrun: one typical chunk of jitter.
pub const CUSHION_STEP_MS: u32 = 20;

/// Cushion ceiling: beyond 200 ms the added latency is worse than an occasional underrun.
pub const MAX_CUSHION_MS: u32 = 200;

/// Fade length for underruns, their recovery and barge-in: 5 ms is inaudible as a gap yet long
/// enough that cutting a waveform does not click.
pub const FADE_MS: u32 = 5;

/// Default ring size: TTS arrives faster than real time, so a whole long answer may be queued.
pub const DEFAULT_CAPACITY_MS: u32 = 60_000;

/// Most segments queued at once (one per change of response id in the stream).
const MAX_SEGMENTS: usize = 32;

/// Response records kept: the playing one, the few queued behind it, and recently cancelled
/// ids whose late chunks may still be in flight.
const MAX_RESPONSES: usize = 16;

/// Most [`Drained`] records one render can produce (each needs a distinct queued response).
const MAX_DRAINED_PER_RENDER: usize = MAX_SEGMENTS;

const fn samples_for_ms(ms: u32) -> usize {
    (SOURCE_RATE_HZ as usize / 1000) * ms as usize
}

/// [`FADE_MS`] in 24 kHz samples.
const FADE_SAMPLES: usize = samples_for_ms(FADE_MS);

/// What happened to a pushed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued in full.
    Queued,
    /// Dropped: its response was cancelled.
    Stale,
    /// The ring (or the segment table) was full; this many samples were dropped.
    Overflow {
        /// Samples not queued.
        dropped_samples: usize,
    },
}

/// A response whose audio has been fully rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The response.
    pub response_id: u32,
    /// 24 kHz samples of it that were played.
    pub played_samples: u32,
}

/// The answer to [`Playback::clear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    /// The response that was playing (or played last), if any.
    pub response_id: Option<u32>,
    /// 24 kHz samples of it played before the clear.
    pub played_samples: u32,
}

/// The player for one device rate.
#[derive(Debug)]
pub struct Playback {
    resampler: Resampler,
    queue: Queue,
    /// Consecutive silent inputs fed to the resampler; after `taps` of them its history is all
    /// zeros and rendering can skip it.
    silent_inputs: usize,
    /// Whether the resampler has been reset since it last saw audio.
    resampler_idle: bool,
}

impl Playback {
    /// A player for a device running at `device_rate_hz` with a [`DEFAULT_CAPACITY_MS`] ring.
    pub fn new(device_rate_hz: u32) -> Result<Self, UnsupportedRate> {
        Self::with_capacity(device_rate_hz, samples_for_ms(DEFAULT_CAPACITY_MS))
    }

    /// A player whose ring holds `capacity_samples` 24 kHz samples.
    pub fn with_capacity(
        device_rate_hz: u32,
        capacity_samples: usize,
    ) -> Result<Self, UnsupportedRate> {
        Ok(Self {
            resampler: Resampler::new(SOURCE_RATE_HZ, device_rate_hz)?,
            queue: Queue::new(capacity_samples),
            silent_inputs: 0,
            resampler_idle: true,
        })
    }

    /// Queues a chunk of 24 kHz PCM16 of `response_id`.
    pub fn push(&mut self, response_id: u32, pcm: &[i16]) -> PushOutcome {
        self.queue.push(response_id, pcm)
    }

    /// All audio of `response_id` has been pushed: play it out without waiting for the cushion.
    pub fn end(&mut self, response_id: u32) {
        self.queue.end(response_id);
    }

    /// Drops chunks of `response_id` that arrive from now on (use [`Self::clear`] to also stop
    /// what is queued).
    pub fn cancel(&mut self, response_id: u32) {
        self.queue.cancel(response_id);
    }

    /// Barge-in: fades out within [`FADE_MS`], empties the queue and cancels what was in it.
    pub fn clear(&mut self) -> Cleared {
        self.queue.clear()
    }

    /// Renders `out.len()` device-rate samples.
    pub fn render(&mut self, out: &mut [f32]) {
        self.queue.drained.clear();
        if self.silent_inputs >= self.resampler.taps() && !self.queue.wants_to_play() {
            if !self.resampler_idle {
                self.resampler.reset();
                self.resampler_idle = true;
            }
            out.fill(0.0);
            return;
        }
        self.resampler_idle = false;
        let Self {
            resampler,
            queue,
            silent_inputs,
            ..
        } = self;
        resampler.pull(out, || match queue.next_sample() {
            Some(x) => {
                *silent_inputs = 0;
                x
            }
            None => {
                *silent_inputs = silent_inputs.saturating_add(1);
                0.0
            }
        });
    }

    /// Responses that finished playing during the last [`Self::render`].
    pub fn drained(&self) -> &[Drained] {
        &self.queue.drained
    }

    /// 24 kHz samples of `response_id` played so far, if it is still remembered.
    pub fn played_samples(&self, response_id: u32) -> Option<u32> {
        self.queue
            .find(response_id)
            .map(|slot| self.queue.record(slot).played)
    }

    /// The response playing now, or the one that played last.
    pub fn current_response(&self) -> Option<u32> {
        self.queue.current
    }

    /// Whether audio is being rendered (not waiting for the cushion, not idle).
    pub fn is_playing(&self) -> bool {
        !matches!(self.queue.state, State::Buffering)
    }

    /// Queued 24 kHz samples not yet rendered (excluding a barge-in fade in progress).
    pub fn buffered_samples(&self) -> usize {
        self.queue.buffered()
    }

    /// The current start cushion in 24 kHz samples.
    pub fn cushion_samples(&self) -> usize {
        self.queue.cushion_samples
    }

    /// Times the queue ran dry while more audio was expected.
    pub fn underruns(&self) -> u32 {
        self.queue.underruns
    }

    /// Chunks dropped because their response had been cancelled.
    pub fn stale_chunks(&self) -> u32 {
        self.queue.stale_chunks
    }

    /// Samples dropped because the ring was full.
    pub fn overflow_samples(&self) -> u32 {
        self.queue.overflow_samples
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Silent, waiting for the cushion (or an ended response).
    Buffering,
    /// Rendering queued audio.
    Playing,
    /// Barge-in: rendering the last `tail` samples with a fade to zero.
    Clearing { tail: usize },
}

/// Queued samples of one response, in ring order.
#[derive(Debug, Clone, Copy)]
struct Segment {
    response_id: u32,
    remaining: usize,
}

#[derive(Debug, Clone, Copy)]
struct ResponseRecord {
    response_id: u32,
    played: u32,
    ended: bool,
    drained: bool,
    cancelled: bool,
    /// Creation order, for evicting the oldest record.
    created: u64,
}

/// Everything on the 24 kHz side of the resampler.
#[derive(Debug)]
struct Queue {
    ring: Ring,
    segments: VecDeque<Segment>,
    records: [Option<ResponseRecord>; MAX_RESPONSES],
    records_created: u64,
    /// Record of the front segment once it has started playing.
    front_slot: Option<usize>,
    /// Whether the last queued response has not ended, i.e. more audio is expected after what
    /// is queued (so playback waits for the cushion).
    more_expected: bool,
    current: Option<u32>,
    state: State,
    gain: f32,
    cushion_samples: usize,
    underruns: u32,
    stale_chunks: u32,
    overflow_samples: u32,
    drained: Vec<Drained>,
}

impl Queue {
    fn new(capacity_samples: usize) -> Self {
        Self {
            ring: Ring::new(capacity_samples),
            segments: VecDeque::with_capacity(MAX_SEGMENTS),
            records: [None; MAX_RESPONSES],
            records_created: 0,
            front_slot: None,
            more_expected: false,
            current: None,
            state: State::Buffering,
            gain: 0.0,
            cushion_samples: samples_for_ms(INITIAL_CUSHION_MS),
            underruns: 0,
            stale_chunks: 0,
            overflow_samples: 0,
            drained: Vec::with_capacity(MAX_DRAINED_PER_RENDER),
        }
    }

    fn push(&mut self, response_id: u32, pcm: &[i16]) -> PushOutcome {
        if pcm.is_empty() {
            return PushOutcome::Queued;
        }
        let slot = self.find_or_create(response_id);
        if self.record(slot).cancelled {
            self.stale_chunks = self.stale_chunks.saturating_add(1);
            return PushOutcome::Stale;
        }
        let extends_last = self
            .segments
            .back()
            .is_some_and(|s| s.response_id == response_id);
        let accepted = if extends_last || self.segments.len() < MAX_SEGMENTS {
            self.ring.push(pcm)
        } else {
            0
        };
        if accepted > 0 {
            match self.segments.back_mut() {
                Some(last) if extends_last => last.remaining += accepted,
                _ => self.segments.push_back(Segment {
                    response_id,
                    remaining: accepted,
                }),
            }
        }
        self.refresh_more_expected();
        let dropped_samples = pcm.len() - accepted;
        if dropped_samples == 0 {
            PushOutcome::Queued
        } else {
            self.overflow_samples = self.overflow_samples.saturating_add(dropped_samples as u32);
            PushOutcome::Overflow { dropped_samples }
        }
    }

    fn end(&mut self, response_id: u32) {
        let slot = self.find_or_create(response_id);
        let record = self.record_mut(slot);
        if record.cancelled || record.drained {
            return;
        }
        record.ended = true;
        // A response without (remaining) audio still has to report that it drained: queue an
        // empty segment, which render drains in order behind what is already queued.
        let queued = self.segments.iter().any(|s| s.response_id == response_id);
        if !queued && self.segments.len() < MAX_SEGMENTS {
            self.segments.push_back(Segment {
                response_id,
                remaining: 0,
            });
        }
        self.refresh_more_expected();
    }

    fn cancel(&mut self, response_id: u32) {
        let slot = self.find_or_create(response_id);
        self.record_mut(slot).cancelled = true;
    }

    fn clear(&mut self) -> Cleared {
        let played_samples = self
            .current
            .and_then(|id| self.find(id))
            .map_or(0, |slot| self.record(slot).played);
        let cleared = Cleared {
            response_id: self.current,
            played_samples,
        };

        let cancelled: [Option<u32>; MAX_SEGMENTS + 1] = core::array::from_fn(|i| match i {
            0 => self.current,
            _ => self.segments.get(i - 1).map(|s| s.response_id),
        });
        for response_id in cancelled.into_iter().flatten() {
            self.cancel(response_id);
        }

        let tail = match self.state {
            State::Playing => self.ring.len().min(FADE_SAMPLES),
            State::Clearing { tail } => tail,
            State::Buffering => 0,
        };
        self.ring.truncate(tail);
        self.segments.clear();
        self.front_slot = None;
        self.refresh_more_expected();
        if tail > 0 {
            self.state = State::Clearing { tail };
        } else {
            self.state = State::Buffering;
            self.gain = 0.0;
        }
        cleared
    }

    fn buffered(&self) -> usize {
        match self.state {
            State::Clearing { tail } => self.ring.len() - tail,
            _ => self.ring.len(),
        }
    }

    /// Whether the next render has anything to play.
    fn wants_to_play(&self) -> bool {
        self.state != State::Buffering || self.ready_to_start()
    }

    fn ready_to_start(&self) -> bool {
        !self.segments.is_empty()
            && (self.ring.len() >= self.cushion_samples || !self.more_expected)
    }

    /// The next 24 kHz sample to render, or `None` for silence (nothing playing).
    fn next_sample(&mut self) -> Option<f32> {
        match self.state {
            State::Clearing { tail } => {
                let x = pcm::i16_to_f32(self.ring.pop());
                let left = tail - 1;
                self.gain = self.gain.min(left as f32 / FADE_SAMPLES as f32);
                let y = x * self.gain;
                self.state = if left == 0 {
                    State::Buffering
                } else {
                    State::Clearing { tail: left }
                };
                return Some(y);
            }
            State::Buffering if self.ready_to_start() => self.state = State::Playing,
            State::Buffering => return None,
            State::Playing => {}
        }
        loop {
            let Some(front) = self.segments.front_mut() else {
                // Everything queued has drained: silence until the next response.
                self.state = State::Buffering;
                self.gain = 0.0;
                return None;
            };
            if front.remaining > 0 {
                front.remaining -= 1;
                let response_id = front.response_id;
                let slot = match self.front_slot {
                    Some(slot) => slot,
                    None => {
                        let slot = self.find_or_create(response_id);
                        self.front_slot = Some(slot);
                        self.current = Some(response_id);
                        slot
                    }
                };
                let record = self.record_mut(slot);
                record.played = record.played.saturating_add(1);
                let x = pcm::i16_to_f32(self.ring.pop());
                // Fade in after a (re)start, and make the gain reach zero exactly when the queue
                // runs dry, whether that is an underrun or a response cut mid-waveform.
                let limit = self.ring.len() as f32 / FADE_SAMPLES as f32;
                self.gain = (self.gain + 1.0 / FADE_SAMPLES as f32).min(1.0).min(limit);
                return Some(x * self.gain);
            }
            let response_id = front.response_id;
            let slot = self
                .front_slot
                .unwrap_or_else(|| self.find_or_create(response_id));
            if self.record(slot).ended || self.segments.len() > 1 {
                let record = self.record_mut(slot);
                record.drained = true;
                let played_samples = record.played;
                if self.drained.len() < MAX_DRAINED_PER_RENDER {
                    self.drained.push(Drained {
                        response_id,
                        played_samples,
                    });
                }
                self.segments.pop_front();
                self.front_slot = None;
                self.refresh_more_expected();
                continue;
            }
            // Ran dry with more audio expected: underrun (already faded out above).
            self.underruns = self.underruns.saturating_add(1);
            self.cushion_samples = (self.cushion_samples + samples_for_ms(CUSHION_STEP_MS))
                .min(samples_for_ms(MAX_CUSHION_MS));
            self.state = State::Buffering;
            self.gain = 0.0;
            return None;
        }
    }

    fn refresh_more_expected(&mut self) {
        self.more_expected = match self.segments.back() {
            Some(last) => self
                .find(last.response_id)
                .is_none_or(|slot| !self.record(slot).ended),
            None => false,
        };
    }

    fn find(&self, response_id: u32) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.is_some_and(|r| r.response_id == response_id))
    }

    fn record(&self, slot: usize) -> &ResponseRecord {
        self.records[slot].as_ref().expect("slot holds a record")
    }

    fn record_mut(&mut self, slot: usize) -> &mut ResponseRecord {
        self.records[slot].as_mut().expect("slot holds a record")
    }

    /// The record of `response_id`, created if needed by reusing a free slot or else the
    /// oldest one that is not playing.
    fn find_or_create(&mut self, response_id: u32) -> usize {
        if let Some(slot) = self.find(response_id) {
            return slot;
        }
        let slot = self
            .records
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                (0..MAX_RESPONSES)
                    .filter(|&slot| Some(slot) != self.front_slot)
                    .min_by_key(|&slot| self.record(slot).created)
                    .expect("more than one record slot")
            });
        self.records_created += 1;
        self.records[slot] = Some(ResponseRecord {
            response_id,
            played: 0,
            ended: false,
            drained: false,
            cancelled: false,
            created: self.records_created,
        });
        slot
    }
}

/// Fixed-capacity FIFO of PCM16 samples.
struct Ring {
    buf: Box<[i16]>,
    head: usize,
    len: usize,
}

impl core::fmt::Debug for Ring {
    // Not the samples: the ring holds a minute of audio.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.buf.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Appends as much of `samples` as fits; returns how many.
    fn push(&mut self, samples: &[i16]) -> usize {
        let capacity = self.buf.len();
        let n = samples.len().min(capacity - self.len);
        let tail = (self.head + self.len) % capacity;
        let first = n.min(capacity - tail);
        self.buf[tail..tail + first].copy_from_slice(&samples[..first]);
        self.buf[..n - first].copy_from_slice(&samples[first..n]);
        self.len += n;
        n
    }

    /// Removes the oldest sample. The caller checks `len` first (segments count the samples).
    fn pop(&mut self) -> i16 {
        debug_assert!(self.len > 0);
        let x = self.buf[self.head];
        self.head = if self.head + 1 == self.buf.len() {
            0
        } else {
            self.head + 1
        };
        self.len -= 1;
        x
    }

    /// Keeps only the oldest `keep` samples.
    fn truncate(&mut self, keep: usize) {
        self.len = self.len.min(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{db, max_step, sine_i16, tone_amplitude};

    const DEVICE_HZ: u32 = 48_000;
    /// Device samples per Web Audio render quantum.
    const QUANTUM: usize = 128;
    const AMPLITUDE: f32 = 0.5;
    /// Largest sample-to-sample step of a 440 Hz sine at amplitude 0.5 at 48 kHz is ≈ 0.029;
    /// a click is a step of the order of the amplitude.
    const CLICK_STEP: f32 = 0.05;

    fn ms(ms: u32) -> usize {
        samples_for_ms(ms)
    }

    /// Renders `quanta` quanta and returns all output.
    fn render(playback: &mut Playback, quanta: usize) -> Vec<f32> {
        let mut out = vec![0.0; quanta * QUANTUM];
        for quantum in out.chunks_mut(QUANTUM) {
            playback.render(quantum);
        }
        out
    }

    /// Renders until a response drains (at most `max_quanta`), returning output and the record.
    fn render_until_drained(
        playback: &mut Playback,
        max_quanta: usize,
    ) -> (Vec<f32>, Option<Drained>) {
        let mut out = Vec::new();
        let mut quantum = [0.0; QUANTUM];
        for _ in 0..max_quanta {
            playback.render(&mut quantum);
            out.extend_from_slice(&quantum);
            if let Some(&drained) = playback.drained().first() {
                return (out, Some(drained));
            }
        }
        (out, None)
    }

    fn tone(samples: usize) -> Vec<i16> {
        sine_i16(440.0, SOURCE_RATE_HZ, AMPLITUDE, samples)
    }

    #[test]
    fn waits_for_the_cushion_before_playing() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        playback.push(1, &tone(ms(40)));
        assert!(render(&mut playback, 10).iter().all(|&y| y == 0.0));
        assert_eq!(playback.buffered_samples(), ms(40));
        playback.push(1, &tone(ms(30)));
        let out = render(&mut playback, 10);
        assert!(out.iter().any(|&y| y.abs() > 0.1));
        assert!(playback.is_playing());
    }

    #[test]
    fn an_ended_response_plays_at_once_and_drains_with_its_tail() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        let chunk = tone(ms(20));
        playback.push(7, &chunk);
        playback.end(7);
        let (mut out, drained) = render_until_drained(&mut playback, 100);
        assert_eq!(
            drained,
            Some(Drained {
                response_id: 7,
                played_samples: chunk.len() as u32
            })
        );
        assert_eq!(playback.played_samples(7), Some(chunk.len() as u32));
        // It started in the first quantum (no cushion wait) ...
        assert!(out[..QUANTUM].iter().any(|&y| y.abs() > 0.01));
        // ... and after the flush the filter is silent again.
        let after = render(&mut playback, 4);
        assert!(after[after.len() - QUANTUM..].iter().all(|&y| y == 0.0));
        out.extend(after);
        assert!(max_step(&out) < CLICK_STEP);
    }

    #[test]
    fn renders_the_requested_count_at_the_device_rate_with_the_tone_intact() {
        for device_hz in [44_100, 48_000] {
            let mut playback = Playback::new(device_hz).unwrap();
            let seconds = 1;
            playback.push(3, &tone(SOURCE_RATE_HZ as usize * seconds));
            playback.end(3);
            let mut out = vec![0.0; device_hz as usize * seconds];
            for quantum in out.chunks_mut(QUANTUM) {
                playback.render(quantum);
            }
            let level = db(
                tone_amplitude(&out[device_hz as usize / 10..], 440.0, device_hz)
                    / f64::from(AMPLITUDE),
            );
            assert!(level.abs() < 0.5, "{device_hz} Hz: {level:.2} dB");
        }
    }

    #[test]
    fn underrun_fades_out_counts_grows_the_cushion_and_recovers_without_clicks() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        let mut signal = tone(ms(300));
        let (first, rest) = signal.split_at_mut(ms(100));
        playback.push(1, first);
        let mut out = render(&mut playback, 60); // 160 ms: runs dry after 100 ms.
        assert_eq!(playback.underruns(), 1);
        assert_eq!(
            playback.cushion_samples(),
            ms(INITIAL_CUSHION_MS + CUSHION_STEP_MS)
        );
        assert!(
            out[out.len() - QUANTUM..].iter().all(|&y| y.abs() < 1e-3),
            "silent after the underrun"
        );

        // The rest arrives: it waits for the grown cushion (80 ms), then resumes with a fade-in.
        playback.push(1, &rest[..ms(70)]);
        let waiting = render(&mut playback, 4);
        assert!(waiting.iter().all(|&y| y.abs() < 1e-3));
        playback.push(1, &rest[ms(70)..]);
        playback.end(1);
        let (tail, drained) = render_until_drained(&mut playback, 200);
        out.extend(waiting);
        out.extend(tail);
        assert_eq!(drained.map(|d| d.played_samples), Some(ms(300) as u32));
        assert_eq!(playback.underruns(), 1);
        assert!(max_step(&out) < CLICK_STEP, "step {}", max_step(&out));
    }

    #[test]
    fn clear_fades_out_within_5_ms_reports_the_played_samples_and_drops_stale_chunks() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        playback.push(5, &tone(ms(1_000)));
        let before = render(&mut playback, 38); // ≈ 100 ms
        let played = playback.played_samples(5).unwrap();
        let cleared = playback.clear();
        assert_eq!(
            cleared,
            Cleared {
                response_id: Some(5),
                played_samples: played
            }
        );
        assert!(
            played > ms(95) as u32 && played < ms(105) as u32,
            "{played}"
        );
        assert_eq!(playback.buffered_samples(), 0, "emptied at once");

        let after = render(&mut playback, 8);
        let last_sound = after
            .iter()
            .rposition(|&y| y.abs() > 1e-4)
            .map_or(0, |i| i + 1);
        let silent_after_ms = last_sound as f64 * 1_000.0 / f64::from(DEVICE_HZ);
        // The 5 ms fade plus the filter's 1 ms delay.
        assert!(
            silent_after_ms <= 6.5,
            "silent after {silent_after_ms:.2} ms"
        );
        assert!(
            after[after.len() - 4 * QUANTUM..].iter().all(|&y| y == 0.0),
            "then exactly zero"
        );
        let mut whole = before;
        whole.extend(after);
        assert!(max_step(&whole) < CLICK_STEP);
        assert_eq!(
            playback.played_samples(5),
            Some(played),
            "the fade is not counted as played"
        );

        // Late chunks of the cancelled response are dropped and counted; a new one plays.
        assert_eq!(playback.push(5, &tone(ms(40))), PushOutcome::Stale);
        assert_eq!(playback.stale_chunks(), 1);
        assert_eq!(playback.push(6, &tone(ms(100))), PushOutcome::Queued);
        assert!(render(&mut playback, 10).iter().any(|&y| y.abs() > 0.1));
        assert_eq!(playback.current_response(), Some(6));
    }

    #[test]
    fn clear_while_buffering_is_immediate() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        playback.push(2, &tone(ms(20)));
        assert_eq!(
            playback.clear(),
            Cleared {
                response_id: None,
                played_samples: 0
            }
        );
        assert_eq!(playback.buffered_samples(), 0);
        assert_eq!(playback.push(2, &tone(ms(20))), PushOutcome::Stale);
        assert!(render(&mut playback, 4).iter().all(|&y| y == 0.0));
    }

    #[test]
    fn cancel_before_the_first_chunk_drops_the_response() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        playback.cancel(9);
        assert_eq!(playback.push(9, &tone(ms(100))), PushOutcome::Stale);
        assert_eq!(playback.buffered_samples(), 0);
    }

    #[test]
    fn consecutive_responses_play_gaplessly_and_each_reports_its_count() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        let signal = tone(ms(200));
        playback.push(1, &signal[..ms(80)]);
        playback.end(1);
        playback.push(2, &signal[ms(80)..]);
        playback.end(2);
        let mut out = Vec::new();
        let mut drained = Vec::new();
        let mut quantum = [0.0; QUANTUM];
        for _ in 0..100 {
            playback.render(&mut quantum);
            out.extend_from_slice(&quantum);
            drained.extend_from_slice(playback.drained());
        }
        assert_eq!(
            drained,
            [
                Drained {
                    response_id: 1,
                    played_samples: ms(80) as u32
                },
                Drained {
                    response_id: 2,
                    played_samples: ms(120) as u32
                }
            ]
        );
        assert!(max_step(&out) < CLICK_STEP);
        assert_eq!(playback.underruns(), 0);
    }

    #[test]
    fn an_empty_response_still_drains() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        playback.end(4);
        let (_, drained) = render_until_drained(&mut playback, 2);
        assert_eq!(
            drained,
            Some(Drained {
                response_id: 4,
                played_samples: 0
            })
        );
        playback.end(4);
        assert!(
            render_until_drained(&mut playback, 2).1.is_none(),
            "drains once"
        );
    }

    #[test]
    fn a_full_ring_drops_and_counts_the_excess() {
        let mut playback = Playback::with_capacity(DEVICE_HZ, 1_000).unwrap();
        assert_eq!(playback.push(1, &tone(800)), PushOutcome::Queued);
        assert_eq!(
            playback.push(1, &tone(300)),
            PushOutcome::Overflow {
                dropped_samples: 100
            }
        );
        assert_eq!(playback.overflow_samples(), 100);
        assert_eq!(playback.buffered_samples(), 1_000);
    }

    #[test]
    fn the_cushion_growth_is_bounded() {
        let mut playback = Playback::new(DEVICE_HZ).unwrap();
        for _ in 0..20 {
            playback.push(1, &tone(playback.cushion_samples()));
            render(&mut playback, 200);
        }
        assert_eq!(playback.underruns(), 20);
        assert_eq!(playback.cushion_samples(), ms(MAX_CUSHION_MS));
    }

    #[test]
    fn jittery_chunks_play_without_underruns_or_clicks() {
        // 40 ms chunks arriving up to 20 ms early or late, as in the browser measurement.
        let mut playback = Playback::new(44_100).unwrap();
        let signal = tone(SOURCE_RATE_HZ as usize * 2);
        let chunk = ms(40);
        let jitter_ms = [0i32, 15, -10, 20, -20, 5, 18, -15, 0, 12];
        let mut out = Vec::new();
        let mut quantum = [0.0; QUANTUM];
        let mut next = 0;
        let mut device_samples = 0usize;
        while out.len() < 44_100 * 2 + 44_100 / 2 {
            let now_ms = device_samples as f64 * 1_000.0 / 44_100.0;
            while next * chunk < signal.len()
                && now_ms >= (next as i32 * 40 + jitter_ms[next % jitter_ms.len()]) as f64
            {
                playback.push(1, &signal[next * chunk..(next + 1) * chunk]);
                next += 1;
                if next * chunk == signal.len() {
                    playback.end(1);
                }
            }
            playback.render(&mut quantum);
            out.extend_from_slice(&quantum);
            device_samples += QUANTUM;
        }
        assert_eq!(playback.underruns(), 0);
        assert_eq!(playback.played_samples(1), Some(signal.len() as u32));
        assert!(max_step(&out) < CLICK_STEP, "step {}", max_step(&out));
    }
}
