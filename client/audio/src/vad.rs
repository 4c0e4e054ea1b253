//! Energy voice-activity detector on 10 ms frames of 24 kHz PCM16.
//!
//! Per frame: the level in dBFS (`10·log10(mean(x²))`, floored at [`SILENCE_DBFS`]) is compared
//! with thresholds derived from an adaptive noise floor:
//!
//! * **noise floor**: tracks the level while not speaking — fast when the level is below it
//!   (a quiet room is learnt in ~100 ms), slowly when above (rising noise is learnt in seconds
//!   but a word does not drag it up), frozen while speaking, clamped to a sane range. During a
//!   short warm-up after creation it follows the level fast in both directions and no speech
//!   can start, so the first guess does not matter.
//! * **start**: the level must exceed `max(floor + start_margin, min_start_level)` for
//!   `onset_ms` in a row (rejects clicks).
//! * **echo guard**: while the assistant is audible, and for `echo_tail_ms` after, the start
//!   threshold is raised by `echo_guard_db` and a start needs `barge_in_onset_ms` of loud
//!   frames, so its own voice leaking from the speakers past the browser's echo canceller
//!   (loudest while the canceller re-converges, e.g. right after the user cut in) does not
//!   barge in, while a real interruption still does.
//! * **pause**: inside speech, a quiet run (frames below the stop threshold) that reaches
//!   `pause_ms` is reported once as a short pause, and the first frame that breaks the run
//!   after it as a resume. A pause is shorter than the hangover, so it comes first: the proxy
//!   may commit what was said and start answering before the turn is confirmed. A turn that
//!   ends is a pause followed by a stop.
//! * **stop**: the level must stay below the start threshold minus `stop_hysteresis_db` for
//!   `hangover_ms` (does not cut between words), or the utterance reaches `max_utterance_ms`.
//!   After a forced stop the detector re-arms only once the level has dropped below the stop
//!   threshold, so a steady loud noise cannot chain max-length utterances: the floor catches up
//!   with it instead.
//!
//! Positions in events count 24 kHz samples since the detector was created.

use crate::{math, pcm};

/// Rate the detector runs at: the capture pipeline's output rate.
pub const SAMPLE_RATE_HZ: u32 = 24_000;

/// Length of one analysis frame: 10 ms is short enough for a ~30 ms reaction and long enough
/// for a stable energy estimate.
pub const FRAME_MS: u32 = 10;

/// Samples in one analysis frame at [`SAMPLE_RATE_HZ`].
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE_HZ * FRAME_MS / 1000) as usize;

/// Level reported for digital silence (−100 dBFS is below any real microphone's noise).
pub const SILENCE_DBFS: f32 = -100.0;

/// Tuning of [`Vad`]. Every field has a default that worked on real and synthetic speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// How far above the noise floor a frame must be to count towards a start, in dB.
    pub start_margin_db: f32,
    /// Absolute minimum level for a start, in dBFS: in a near-silent room the floor-relative
    /// threshold alone would fire on breathing.
    pub min_start_level_dbfs: f32,
    /// Hysteresis: speech continues while the level stays within this many dB below the start
    /// threshold.
    pub stop_hysteresis_db: f32,
    /// Consecutive loud time needed to confirm a start, in ms (rounded up to whole frames).
    pub onset_ms: u32,
    /// Quiet time after speech before the stop event, in ms (rounded up to whole frames,
    /// at least one).
    pub hangover_ms: u32,
    /// Quiet time inside speech reported as a short pause, in ms (rounded up to whole frames,
    /// at least one). No pause is reported when it is not shorter than `hangover_ms`.
    pub pause_ms: u32,
    /// Longest utterance; speech is force-stopped at this length, in ms.
    pub max_utterance_ms: u32,
    /// Added to the start threshold while the assistant is audible, in dB.
    pub echo_guard_db: f32,
    /// Consecutive loud time needed to confirm a start while the echo guard is up, in ms
    /// (rounded up to whole frames). Keep it under the capture pre-roll, so the words that
    /// confirmed a barge-in are still sent.
    pub barge_in_onset_ms: u32,
    /// How long the echo guard stays up after the assistant stops being audible, in ms.
    pub echo_tail_ms: u32,
    /// Fraction of the gap the floor closes per frame when the level is below it.
    pub floor_fall_per_frame: f32,
    /// Fraction of the gap the floor closes per frame when the level is above it.
    pub floor_rise_per_frame: f32,
    /// Lowest value of the noise floor, in dBFS.
    pub floor_min_dbfs: f32,
    /// Highest value of the noise floor, in dBFS: even a very noisy room must leave room for a
    /// start threshold below full scale.
    pub floor_max_dbfs: f32,
    /// Initial period in which the floor adapts fast both ways and no speech starts, in ms.
    pub warmup_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            // 12 dB above the floor: speech is typically 20–40 dB above room noise, while noise
            // fluctuations stay within a few dB.
            start_margin_db: 12.0,
            // A quiet laptop microphone sits near −60 dBFS; conversational speech near −30.
            min_start_level_dbfs: -50.0,
            // 5 dB (stop at floor + 7 with the default margin): soft word endings do not end
            // the utterance, but the return to room noise does.
            stop_hysteresis_db: 5.0,
            // Three frames: rejects clicks and taps, costs 30 ms of reaction.
            onset_ms: 30,
            // Matches common server VAD defaults (≈ 500 ms) and the latency budget's ≤ 500 ms.
            hangover_ms: 500,
            // Natural pauses between phrases run ~150–400 ms; 200 ms catches most of them and
            // comes 300 ms before the hangover confirms the end of the turn, the head start a
            // speculative answer gets.
            pause_ms: 200,
            // Bounds one turn's upload; longer monologues are split into several turns.
            max_utterance_ms: 30_000,
            // Speaker echo after browser AEC is typically 10–20 dB below the user's voice.
            echo_guard_db: 15.0,
            // 200 ms: bursts of echo that get past a re-converging browser AEC last ~150 ms
            // (seen in Firefox); a word lasts longer. Costs 170 ms of barge-in reaction, not
            // audio: the pre-roll still holds the start.
            barge_in_onset_ms: 200,
            // 250 ms: the last samples of an answer still travel through the output latency
            // (tens of ms) and the room's reverberation after the player drains.
            echo_tail_ms: 250,
            // ≈ 50 ms time constant: a drop in noise is learnt within a few frames.
            floor_fall_per_frame: 0.2,
            // ≈ 2 s time constant: rising noise is learnt in seconds; a 300 ms word moves the
            // floor by under 2 dB.
            floor_rise_per_frame: 0.005,
            floor_min_dbfs: -100.0,
            floor_max_dbfs: -20.0,
            // 200 ms: covers the microphone's opening transient and AGC settling.
            warmup_ms: 200,
        }
    }
}

/// Why speech stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The level stayed below the stop threshold for the hangover.
    Silence,
    /// The utterance reached `max_utterance_ms`.
    MaxLength,
}

/// A change of the speaking state, reported at the end of the frame that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech confirmed.
    SpeechStarted {
        /// First sample of the first loud frame of the onset.
        start_sample: u64,
    },
    /// A short pause inside speech: the quiet run reached `pause_ms`. Speech goes on (the
    /// audio keeps flowing) and is followed by [`VadEvent::SpeechResumed`] or
    /// [`VadEvent::SpeechStopped`].
    SpeechPaused {
        /// First sample of the quiet run.
        pause_sample: u64,
    },
    /// Speech came back after a [`VadEvent::SpeechPaused`], within the same utterance.
    SpeechResumed {
        /// First sample of the frame that ended the quiet run.
        resume_sample: u64,
    },
    /// Speech ended.
    SpeechStopped {
        /// First sample of the quiet run for [`StopReason::Silence`]; the cut point for
        /// [`StopReason::MaxLength`].
        end_sample: u64,
        /// Why it ended.
        reason: StopReason,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Idle {
        /// Consecutive frames above the start threshold.
        loud_frames: u32,
        /// Set by a forced stop: no start until a frame falls below the stop threshold.
        needs_rearm: bool,
    },
    Speaking {
        /// Frames since the first loud frame of the onset.
        frames: u32,
        /// Consecutive frames below the stop threshold.
        quiet_frames: u32,
        /// The current quiet run was reported as a pause.
        paused: bool,
    },
}

/// Frame counts derived from a [`VadConfig`].
#[derive(Debug, Clone, Copy)]
struct FrameCounts {
    onset: u32,
    barge_in_onset: u32,
    echo_tail: u32,
    hangover: u32,
    /// `None` when a pause could not come before the hangover.
    pause: Option<u32>,
    max_utterance: u32,
    warmup: u32,
}

impl FrameCounts {
    fn from_config(config: &VadConfig) -> Self {
        let frames = |ms: u32| ms.div_ceil(FRAME_MS);
        let hangover = frames(config.hangover_ms).max(1);
        let pause = frames(config.pause_ms).max(1);
        Self {
            onset: frames(config.onset_ms).max(1),
            barge_in_onset: frames(config.barge_in_onset_ms).max(1),
            echo_tail: frames(config.echo_tail_ms),
            hangover,
            pause: (pause < hangover).then_some(pause),
            max_utterance: frames(config.max_utterance_ms).max(1),
            warmup: frames(config.warmup_ms),
        }
    }
}

/// The detector. Feed it whole frames with [`Vad::process_frame`].
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    counts: FrameCounts,
    state: State,
    floor_dbfs: f32,
    level_dbfs: f32,
    assistant_audible: bool,
    /// Frames the echo guard stays up after the assistant stopped being audible.
    echo_tail_frames_left: u32,
    frames_seen: u64,
}

impl Vad {
    /// A detector in the idle state, warming up.
    pub fn new(config: VadConfig) -> Self {
        Self {
            counts: FrameCounts::from_config(&config),
            state: State::Idle {
                loud_frames: 0,
                needs_rearm: false,
            },
            // Anything in range works: the warm-up overwrites it within a few frames.
            floor_dbfs: config.min_start_level_dbfs - config.start_margin_db,
            level_dbfs: SILENCE_DBFS,
            assistant_audible: false,
            echo_tail_frames_left: 0,
            frames_seen: 0,
            config,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// Replaces the configuration; the state (speaking or not, the floor) is kept.
    pub fn set_config(&mut self, config: VadConfig) {
        self.counts = FrameCounts::from_config(&config);
        self.config = config;
    }

    /// Raises the echo guard while the assistant plays; it falls `echo_tail_ms` after.
    pub fn set_assistant_audible(&mut self, audible: bool) {
        if self.assistant_audible && !audible {
            self.echo_tail_frames_left = self.counts.echo_tail;
        }
        self.assistant_audible = audible;
    }

    /// Whether the echo guard is up: the assistant is audible or its echo may still be.
    pub fn is_echo_guarded(&self) -> bool {
        self.assistant_audible || self.echo_tail_frames_left > 0
    }

    /// Whether speech is in progress.
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// The adaptive noise floor, in dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        self.floor_dbfs
    }

    /// Level of the last frame, in dBFS.
    pub fn level_dbfs(&self) -> f32 {
        self.level_dbfs
    }

    /// Samples consumed so far (the position the next frame starts at).
    pub fn position_samples(&self) -> u64 {
        self.frames_seen * FRAME_SAMPLES as u64
    }

    /// The level a frame must exceed to count towards a start, in dBFS.
    pub fn start_threshold_dbfs(&self) -> f32 {
        let guard = if self.is_echo_guarded() {
            self.config.echo_guard_db
        } else {
            0.0
        };
        self.unguarded_start_threshold_dbfs() + guard
    }

    /// The level below which a frame counts as quiet, in dBFS.
    pub fn stop_threshold_dbfs(&self) -> f32 {
        self.unguarded_start_threshold_dbfs() - self.config.stop_hysteresis_db
    }

    fn unguarded_start_threshold_dbfs(&self) -> f32 {
        (self.floor_dbfs + self.config.start_margin_db).max(self.config.min_start_level_dbfs)
    }

    /// Analyses one frame of [`FRAME_SAMPLES`] samples.
    pub fn process_frame(&mut self, frame: &[i16]) -> Option<VadEvent> {
        debug_assert_eq!(frame.len(), FRAME_SAMPLES);
        let frame_start = self.position_samples();
        self.frames_seen += 1;
        let level = frame_level_dbfs(frame);
        self.level_dbfs = level;

        let warming_up = self.frames_seen <= u64::from(self.counts.warmup);
        let is_loud = level > self.start_threshold_dbfs();
        let is_quiet = level < self.stop_threshold_dbfs();
        let onset = if self.is_echo_guarded() {
            self.counts.barge_in_onset
        } else {
            self.counts.onset
        };
        self.echo_tail_frames_left = self.echo_tail_frames_left.saturating_sub(1);
        match &mut self.state {
            State::Idle {
                loud_frames,
                needs_rearm,
            } => {
                if is_quiet {
                    *needs_rearm = false;
                }
                *loud_frames = if is_loud && !warming_up && !*needs_rearm {
                    *loud_frames + 1
                } else {
                    0
                };
                if *loud_frames >= onset {
                    let start_sample = frame_start + FRAME_SAMPLES as u64
                        - u64::from(*loud_frames) * FRAME_SAMPLES as u64;
                    self.state = State::Speaking {
                        frames: *loud_frames,
                        quiet_frames: 0,
                        paused: false,
                    };
                    return Some(VadEvent::SpeechStarted { start_sample });
                }
                self.adapt_floor(level, warming_up);
                None
            }
            State::Speaking {
                frames,
                quiet_frames,
                paused,
            } => {
                *frames += 1;
                *quiet_frames = if is_quiet { *quiet_frames + 1 } else { 0 };
                let frame_end = frame_start + FRAME_SAMPLES as u64;
                let event = if *quiet_frames >= self.counts.hangover {
                    let end_sample = frame_end - u64::from(*quiet_frames) * FRAME_SAMPLES as u64;
                    self.state = State::Idle {
                        loud_frames: 0,
                        needs_rearm: false,
                    };
                    VadEvent::SpeechStopped {
                        end_sample,
                        reason: StopReason::Silence,
                    }
                } else if *frames >= self.counts.max_utterance {
                    self.state = State::Idle {
                        loud_frames: 0,
                        needs_rearm: true,
                    };
                    VadEvent::SpeechStopped {
                        end_sample: frame_end,
                        reason: StopReason::MaxLength,
                    }
                } else if !*paused && self.counts.pause.is_some_and(|p| *quiet_frames >= p) {
                    *paused = true;
                    VadEvent::SpeechPaused {
                        pause_sample: frame_end - u64::from(*quiet_frames) * FRAME_SAMPLES as u64,
                    }
                } else if *paused && *quiet_frames == 0 {
                    *paused = false;
                    VadEvent::SpeechResumed {
                        resume_sample: frame_start,
                    }
                } else {
                    return None;
                };
                Some(event)
            }
        }
    }

    /// Moves the floor towards `level`: fast down, slow up (fast both ways while warming up).
    fn adapt_floor(&mut self, level: f32, warming_up: bool) {
        let rate = if warming_up || level < self.floor_dbfs {
            self.config.floor_fall_per_frame
        } else {
            self.config.floor_rise_per_frame
        };
        self.floor_dbfs += rate * (level - self.floor_dbfs);
        // Not `clamp`: its check of the bounds (which come from the config) would link float
        // formatting into the wasm for the panic message.
        self.floor_dbfs = self
            .floor_dbfs
            .min(self.config.floor_max_dbfs)
            .max(self.config.floor_min_dbfs);
    }
}

/// Mean power of a frame in dBFS, floored at [`SILENCE_DBFS`].
pub fn frame_level_dbfs(frame: &[i16]) -> f32 {
    let energy: f32 = frame
        .iter()
        .map(|&s| {
            let x = pcm::i16_to_f32(s);
            x * x
        })
        .sum();
    power_to_dbfs(energy / frame.len().max(1) as f32)
}

/// `10·log10(mean square)` floored at [`SILENCE_DBFS`].
pub fn power_to_dbfs(mean_square: f32) -> f32 {
    if mean_square > 0.0 {
        (10.0 * math::log10(mean_square)).max(SILENCE_DBFS)
    } else {
        SILENCE_DBFS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Lcg;

    /// Frames of white noise at roughly `level_dbfs`.
    fn noise_frame(rng: &mut Lcg, level_dbfs: f32) -> [i16; FRAME_SAMPLES] {
        // Uniform noise in [-a, a] has RMS a/√3.
        let amplitude = 10f32.powf(level_dbfs / 20.0) * 3f32.sqrt();
        std::array::from_fn(|_| pcm::f32_to_i16(amplitude * rng.next_bipolar()))
    }

    fn tone_frame(index: u64, level_dbfs: f32) -> [i16; FRAME_SAMPLES] {
        // A sine's RMS is its amplitude / √2.
        let amplitude = 10f32.powf(level_dbfs / 20.0) * 2f32.sqrt();
        std::array::from_fn(|i| {
            let n = index * FRAME_SAMPLES as u64 + i as u64;
            let phase = 2.0 * std::f64::consts::PI * 300.0 * n as f64 / f64::from(SAMPLE_RATE_HZ);
            pcm::f32_to_i16(amplitude * phase.sin() as f32)
        })
    }

    /// Runs frames produced by `level_at(frame_index)` (None = noise at −60 dBFS, Some = a tone
    /// at that level) and returns the events with the frame index they fired at.
    fn run(
        vad: &mut Vad,
        frames: u64,
        level_at: impl Fn(u64) -> Option<f32>,
    ) -> Vec<(u64, VadEvent)> {
        let mut rng = Lcg::new(7);
        let mut events = Vec::new();
        for i in 0..frames {
            let frame = match level_at(i) {
                Some(level) => tone_frame(i, level),
                None => noise_frame(&mut rng, -60.0),
            };
            if let Some(e) = vad.process_frame(&frame) {
                events.push((i, e));
            }
        }
        events
    }

    /// The starts and stops of `events`: the turns, without the pauses inside them.
    fn turns(events: Vec<(u64, VadEvent)>) -> Vec<(u64, VadEvent)> {
        events
            .into_iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    VadEvent::SpeechStarted { .. } | VadEvent::SpeechStopped { .. }
                )
            })
            .collect()
    }

    /// Frame `i`'s first sample.
    fn sample(frame: u64) -> u64 {
        frame * FRAME_SAMPLES as u64
    }

    #[test]
    fn frame_level_measures_dbfs() {
        assert_eq!(frame_level_dbfs(&[0; FRAME_SAMPLES]), SILENCE_DBFS);
        assert!(frame_level_dbfs(&[i16::MIN; FRAME_SAMPLES]).abs() < 0.01);
        let level = frame_level_dbfs(&tone_frame(0, -20.0));
        assert!((level + 20.0).abs() < 0.2, "{level}");
    }

    #[test]
    fn the_floor_learns_the_room_and_noise_alone_never_starts_speech() {
        let mut vad = Vad::new(VadConfig::default());
        assert!(run(&mut vad, 500, |_| None).is_empty());
        let floor = vad.noise_floor_dbfs();
        assert!((floor + 60.0).abs() < 2.0, "floor {floor}");
    }

    #[test]
    fn onset_is_confirmed_after_three_loud_frames_and_stops_after_the_hangover() {
        let mut vad = Vad::new(VadConfig::default());
        let events = run(&mut vad, 300, |i| (100..150).contains(&i).then_some(-25.0));
        assert_eq!(
            turns(events),
            [
                (
                    102,
                    VadEvent::SpeechStarted {
                        start_sample: 100 * FRAME_SAMPLES as u64
                    }
                ),
                (
                    199,
                    VadEvent::SpeechStopped {
                        end_sample: 150 * FRAME_SAMPLES as u64,
                        reason: StopReason::Silence
                    }
                ),
            ]
        );
    }

    #[test]
    fn hangover_is_configurable_and_pauses_shorter_than_it_do_not_stop() {
        let config = VadConfig {
            hangover_ms: 200,
            ..VadConfig::default()
        };
        let mut vad = Vad::new(config);
        // Two words with a 150 ms gap, then silence.
        let events = run(&mut vad, 300, |i| {
            ((50..80).contains(&i) || (95..120).contains(&i)).then_some(-25.0)
        });
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1].0,
            120 + 20 - 1,
            "stop 200 ms after the second word"
        );
    }

    #[test]
    fn a_single_loud_click_does_not_start() {
        let mut vad = Vad::new(VadConfig::default());
        assert!(run(&mut vad, 200, |i| (i == 100 || i == 103).then_some(-10.0)).is_empty());
    }

    #[test]
    fn nothing_starts_during_warm_up() {
        let mut vad = Vad::new(VadConfig::default());
        let events = run(&mut vad, 100, |i| (i < 10).then_some(-20.0));
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn quiet_speech_below_the_absolute_minimum_does_not_start() {
        let mut vad = Vad::new(VadConfig::default());
        // 12 dB above the −60 dBFS floor but below −50 dBFS.
        assert!(run(&mut vad, 200, |i| (i >= 50).then_some(-53.0)).is_empty());
    }

    #[test]
    fn max_utterance_forces_a_stop_and_steady_noise_does_not_chain_utterances() {
        let config = VadConfig {
            max_utterance_ms: 1_000,
            ..VadConfig::default()
        };
        let mut vad = Vad::new(config);
        // A loud steady "noise" from frame 50 on: one forced stop, then the floor catches up.
        let events = run(&mut vad, 1_500, |i| (i >= 50).then_some(-30.0));
        assert_eq!(
            events,
            [
                (
                    52,
                    VadEvent::SpeechStarted {
                        start_sample: 50 * FRAME_SAMPLES as u64
                    }
                ),
                (
                    149,
                    VadEvent::SpeechStopped {
                        end_sample: 150 * FRAME_SAMPLES as u64,
                        reason: StopReason::MaxLength
                    }
                ),
            ]
        );
        assert!(
            vad.noise_floor_dbfs() > -33.0,
            "floor {}",
            vad.noise_floor_dbfs()
        );
    }

    #[test]
    fn echo_guard_raises_the_start_threshold_while_the_assistant_is_audible() {
        let burst = |i: u64| (100..150).contains(&i).then_some(-40.0);
        let mut guarded = Vad::new(VadConfig::default());
        guarded.set_assistant_audible(true);
        assert!(run(&mut guarded, 300, burst).is_empty());

        let mut unguarded = Vad::new(VadConfig::default());
        assert_eq!(turns(run(&mut unguarded, 300, burst)).len(), 2);

        // A louder voice still barges in through the guard.
        let mut barge_in = Vad::new(VadConfig::default());
        barge_in.set_assistant_audible(true);
        assert_eq!(
            turns(run(&mut barge_in, 300, |i| (100..150)
                .contains(&i)
                .then_some(-20.0)))
            .len(),
            2
        );
    }

    #[test]
    fn while_the_assistant_is_audible_a_start_needs_the_barge_in_onset() {
        let config = VadConfig::default();
        let barge_in_frames = u64::from(config.barge_in_onset_ms / FRAME_MS);
        // A loud burst shorter than the barge-in onset (echo past a re-converging AEC).
        let mut echo = Vad::new(config);
        echo.set_assistant_audible(true);
        let short = barge_in_frames - 5;
        assert!(
            run(&mut echo, 300, |i| (100..100 + short)
                .contains(&i)
                .then_some(-20.0))
            .is_empty()
        );

        // Speech as loud that goes on: the start is confirmed after the barge-in onset and
        // dated at its first loud frame.
        let mut speech = Vad::new(config);
        speech.set_assistant_audible(true);
        let events = run(&mut speech, 300, |i| {
            (100..160).contains(&i).then_some(-20.0)
        });
        assert_eq!(
            events.first(),
            Some(&(
                100 + barge_in_frames - 1,
                VadEvent::SpeechStarted {
                    start_sample: 100 * FRAME_SAMPLES as u64
                }
            ))
        );

        // Without the assistant audible the same short burst is speech.
        let mut unguarded = Vad::new(config);
        assert_eq!(
            turns(run(&mut unguarded, 300, |i| (100..100 + short)
                .contains(&i)
                .then_some(-20.0)))
            .len(),
            2
        );
    }

    #[test]
    fn the_echo_guard_stays_up_for_the_echo_tail_after_playback_ends() {
        let config = VadConfig::default();
        let tail_frames = u64::from(config.echo_tail_ms / FRAME_MS);
        let mut vad = Vad::new(config);
        run(&mut vad, 100, |_| None);
        vad.set_assistant_audible(true);
        run(&mut vad, 100, |_| None);
        vad.set_assistant_audible(false);
        assert!(vad.is_echo_guarded());
        // A burst right after playback ends (its echo still in the room) does not start...
        let after_end = run(&mut vad, tail_frames, |i| (i < 10).then_some(-40.0));
        assert!(after_end.is_empty(), "{after_end:?}");
        assert!(!vad.is_echo_guarded());
        // ...the same burst once the tail is over does.
        assert_eq!(
            turns(run(&mut vad, 100, |i| (i < 10).then_some(-40.0))).len(),
            2
        );
        // Setting "not audible" again does not restart the tail.
        vad.set_assistant_audible(false);
        assert!(!vad.is_echo_guarded());
    }

    #[test]
    fn the_floor_is_frozen_during_speech() {
        let mut vad = Vad::new(VadConfig {
            max_utterance_ms: 60_000,
            ..VadConfig::default()
        });
        run(&mut vad, 110, |i| (i >= 100).then_some(-25.0));
        assert!(vad.is_speaking());
        let before = vad.noise_floor_dbfs();
        for i in 0..1_000 {
            vad.process_frame(&tone_frame(i, -25.0));
        }
        assert!(vad.is_speaking());
        assert_eq!(vad.noise_floor_dbfs(), before);
    }

    #[test]
    fn config_changes_apply_to_speech_in_progress() {
        let mut vad = Vad::new(VadConfig::default());
        run(&mut vad, 60, |i| (i >= 50).then_some(-25.0));
        assert!(vad.is_speaking());
        vad.set_config(VadConfig {
            hangover_ms: 100,
            ..*vad.config()
        });
        let mut rng = Lcg::new(3);
        let stopped_after =
            (1..=20).find(|_| vad.process_frame(&noise_frame(&mut rng, -60.0)).is_some());
        assert_eq!(stopped_after, Some(10));
    }

    /// Default settings: 200 ms (20 frames) make a pause, 500 ms (50 frames) end the turn.
    const PAUSE_FRAMES: u64 = 20;
    const HANGOVER_FRAMES: u64 = 50;

    #[test]
    fn a_short_pause_is_reported_and_speech_that_comes_back_resumes_the_same_turn() {
        let mut vad = Vad::new(VadConfig::default());
        // A phrase, 250 ms of quiet, another phrase, then silence.
        let events = run(&mut vad, 400, |i| {
            ((100..150).contains(&i) || (175..220).contains(&i)).then_some(-25.0)
        });
        assert_eq!(
            events,
            [
                (
                    102,
                    VadEvent::SpeechStarted {
                        start_sample: sample(100)
                    }
                ),
                (
                    150 + PAUSE_FRAMES - 1,
                    VadEvent::SpeechPaused {
                        pause_sample: sample(150)
                    }
                ),
                (
                    175,
                    VadEvent::SpeechResumed {
                        resume_sample: sample(175)
                    }
                ),
                (
                    220 + PAUSE_FRAMES - 1,
                    VadEvent::SpeechPaused {
                        pause_sample: sample(220)
                    }
                ),
                (
                    220 + HANGOVER_FRAMES - 1,
                    VadEvent::SpeechStopped {
                        end_sample: sample(220),
                        reason: StopReason::Silence
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_end_of_a_turn_is_a_pause_then_a_stop_at_the_same_sample() {
        let mut vad = Vad::new(VadConfig::default());
        let events = run(&mut vad, 300, |i| (100..150).contains(&i).then_some(-25.0));
        assert_eq!(
            events[1..],
            [
                (
                    150 + PAUSE_FRAMES - 1,
                    VadEvent::SpeechPaused {
                        pause_sample: sample(150)
                    }
                ),
                (
                    150 + HANGOVER_FRAMES - 1,
                    VadEvent::SpeechStopped {
                        end_sample: sample(150),
                        reason: StopReason::Silence
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_quiet_run_shorter_than_the_pause_is_no_pause() {
        let mut vad = Vad::new(VadConfig::default());
        // 150 ms between two phrases: one run of speech, paused only at its end.
        let events = run(&mut vad, 400, |i| {
            ((100..150).contains(&i) || (165..200).contains(&i)).then_some(-25.0)
        });
        let pauses: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, VadEvent::SpeechPaused { .. }))
            .collect();
        assert_eq!(
            pauses,
            [&(
                200 + PAUSE_FRAMES - 1,
                VadEvent::SpeechPaused {
                    pause_sample: sample(200)
                }
            )]
        );
        assert!(
            !events
                .iter()
                .any(|(_, e)| matches!(e, VadEvent::SpeechResumed { .. }))
        );
    }

    #[test]
    fn long_speech_reports_one_pause_and_one_resume_per_quiet_run() {
        let mut vad = Vad::new(VadConfig::default());
        // Ten 400 ms phrases 300 ms apart: 7 s of speech in one turn.
        let phrase = |i: u64| (100..100 + 10 * 70).contains(&i) && (i - 100) % 70 < 40;
        let events = run(&mut vad, 1_000, |i| phrase(i).then_some(-25.0));
        let mut expected = vec![VadEvent::SpeechStarted {
            start_sample: sample(100),
        }];
        for gap in 0..10 {
            let quiet_from = 100 + gap * 70 + 40;
            expected.push(VadEvent::SpeechPaused {
                pause_sample: sample(quiet_from),
            });
            if gap < 9 {
                expected.push(VadEvent::SpeechResumed {
                    resume_sample: sample(quiet_from + 30),
                });
            }
        }
        expected.push(VadEvent::SpeechStopped {
            end_sample: sample(100 + 9 * 70 + 40),
            reason: StopReason::Silence,
        });
        assert_eq!(
            events.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
            expected
        );
    }

    #[test]
    fn no_pause_is_reported_when_it_could_not_come_before_the_hangover() {
        for pause_ms in [500, 800] {
            let mut vad = Vad::new(VadConfig {
                pause_ms,
                ..VadConfig::default()
            });
            let events = run(&mut vad, 300, |i| (100..150).contains(&i).then_some(-25.0));
            assert_eq!(events.len(), 2, "pause_ms {pause_ms}: {events:?}");
            assert_eq!(turns(events.clone()), events);
        }
    }

    #[test]
    fn no_pause_follows_a_forced_stop_at_max_length() {
        let mut vad = Vad::new(VadConfig {
            max_utterance_ms: 1_000,
            ..VadConfig::default()
        });
        // The cut falls 100 ms into the quiet after the speech, before a pause is due.
        let events = run(&mut vad, 400, |i| (50..140).contains(&i).then_some(-25.0));
        assert_eq!(
            events,
            [
                (
                    52,
                    VadEvent::SpeechStarted {
                        start_sample: sample(50)
                    }
                ),
                (
                    149,
                    VadEvent::SpeechStopped {
                        end_sample: sample(150),
                        reason: StopReason::MaxLength
                    }
                ),
            ]
        );
    }
}
