//! The per-turn latency waterfall: when each step happened, measured from the moment the
//! proxy learned the user stopped speaking.

use std::collections::VecDeque;
use std::time::Instant;

use protocol::{ResponseId, TurnId, Waterfall};

/// The steps of a turn, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `input_audio_buffer.commit` sent.
    CommitSent,
    /// Final transcript received.
    TranscriptFinal,
    /// Chat Completions request sent.
    LlmRequest,
    /// First token received.
    LlmFirstToken,
    /// First clause handed to TTS.
    FirstClause,
    /// First Speech request sent.
    TtsRequest,
    /// First synthesized byte received.
    TtsFirstByte,
    /// First audio sent to the browser.
    FirstAudioSent,
}

/// The clock of one turn.
#[derive(Debug, Clone)]
pub(crate) struct TurnClock {
    /// The turn.
    pub turn_id: TurnId,
    /// Its response, once one started.
    pub response_id: Option<ResponseId>,
    started: Instant,
    waterfall: Waterfall,
    reported: bool,
}

impl TurnClock {
    /// Starts timing a turn whose speech ended at `started`.
    pub(crate) fn new(turn_id: TurnId, started: Instant) -> Self {
        Self {
            turn_id,
            response_id: None,
            started,
            waterfall: Waterfall::default(),
            reported: false,
        }
    }

    /// Records a step, keeping the first time it happened.
    pub(crate) fn mark(&mut self, step: Step, at: Instant) {
        let ms = at.saturating_duration_since(self.started).as_secs_f64() * 1000.0;
        let w = &mut self.waterfall;
        let slot = match step {
            Step::CommitSent => &mut w.commit_sent_ms,
            Step::TranscriptFinal => &mut w.transcript_final_ms,
            Step::LlmRequest => &mut w.llm_request_ms,
            Step::LlmFirstToken => &mut w.llm_first_token_ms,
            Step::FirstClause => &mut w.first_clause_ms,
            Step::TtsRequest => &mut w.tts_request_ms,
            Step::TtsFirstByte => &mut w.tts_first_byte_ms,
            Step::FirstAudioSent => &mut w.first_audio_sent_ms,
        };
        slot.get_or_insert((ms * 1000.0).round() / 1000.0);
    }

    /// The waterfall so far.
    #[cfg(test)]
    pub(crate) fn waterfall(&self) -> &Waterfall {
        &self.waterfall
    }

    /// Takes the waterfall for reporting, once: `None` if it was already reported.
    pub(crate) fn report(&mut self) -> Option<Waterfall> {
        (!std::mem::replace(&mut self.reported, true)).then(|| self.waterfall.clone())
    }
}

/// The clocks of a session's turns still in flight, oldest first.
#[derive(Debug, Default)]
pub(crate) struct TurnClocks {
    clocks: VecDeque<TurnClock>,
}

impl TurnClocks {
    /// Starts timing a turn whose speech ended now.
    pub(crate) fn start(&mut self, turn_id: TurnId, now: Instant) {
        self.clocks.push_back(TurnClock::new(turn_id, now));
    }

    /// Records a step of a turn.
    pub(crate) fn mark(&mut self, turn_id: TurnId, step: Step, at: Instant) {
        if let Some(clock) = self.clock_mut(turn_id) {
            clock.mark(step, at);
        }
    }

    /// Records what was done for a turn before it ended (pieces, speculative starts).
    pub(crate) fn early_work(&mut self, turn_id: TurnId, work: super::turn::EarlyWork) {
        if let Some(clock) = self.clock_mut(turn_id) {
            let w = &mut clock.waterfall;
            w.pieces = Some(work.pieces);
            w.speculative_starts = Some(work.speculations);
            w.speculations_cancelled = Some(work.speculations_cancelled);
        }
    }

    /// Ties a turn to the response that answers it.
    pub(crate) fn set_response(&mut self, turn_id: TurnId, response_id: ResponseId) {
        if let Some(clock) = self.clock_mut(turn_id) {
            clock.response_id = Some(response_id);
        }
    }

    /// Forgets a turn that produced no transcript.
    pub(crate) fn forget(&mut self, turn_id: TurnId) {
        self.clocks.retain(|c| c.turn_id != turn_id);
    }

    /// A turn's waterfall with its response, once (`None` if reported or unknown); the turn
    /// and older ones are forgotten.
    pub(crate) fn report(&mut self, turn_id: TurnId) -> Option<(Option<ResponseId>, Waterfall)> {
        let clock = self.clock_mut(turn_id)?;
        let response_id = clock.response_id;
        let waterfall = clock.report();
        self.clocks.retain(|c| c.turn_id > turn_id);
        waterfall.map(|waterfall| (response_id, waterfall))
    }

    fn clock_mut(&mut self, turn_id: TurnId) -> Option<&mut TurnClock> {
        self.clocks.iter_mut().find(|c| c.turn_id == turn_id)
    }
}

/// The hops of a turn's waterfall, in pipeline order: the `hop` label of the metrics'
/// per-hop histogram, each the gap [`hop_gaps_ms`] gives at the same index.
pub(crate) const HOPS: [&str; 8] = [
    "commit",
    "stt",
    "llm_request",
    "llm_ttft",
    "first_clause",
    "tts_request",
    "tts_ttfb",
    "first_audio",
];

/// Each hop's gap in milliseconds (see [`HOPS`]): end of speech → commit sent → transcript
/// (from the end of speech when nothing was committed, as the log's `stt_wait_ms`) → LLM
/// request → first token (the log's `llm_ttft_ms`) → first clause → TTS request → first
/// synthesized byte (the log's `tts_ttfb_ms`) → first audio sent. `None` where either step is
/// missing (speech-to-speech has no LLM or TTS request) or the later one came first: a
/// speculative start runs the answer's steps before the transcript is final, and the
/// speech-to-speech transcript arrives beside the answer, not before it.
pub(crate) fn hop_gaps_ms(w: &Waterfall) -> [Option<f64>; HOPS.len()] {
    let gap = |later: Option<f64>, earlier: Option<f64>| match (later, earlier) {
        (Some(later), Some(earlier)) if later >= earlier => Some(later - earlier),
        _ => None,
    };
    [
        gap(w.commit_sent_ms, Some(0.0)),
        gap(w.transcript_final_ms, w.commit_sent_ms.or(Some(0.0))),
        gap(w.llm_request_ms, w.transcript_final_ms),
        gap(w.llm_first_token_ms, w.llm_request_ms),
        gap(w.first_clause_ms, w.llm_first_token_ms),
        gap(w.tts_request_ms, w.first_clause_ms),
        gap(w.tts_first_byte_ms, w.tts_request_ms),
        gap(w.first_audio_sent_ms, w.tts_first_byte_ms),
    ]
}

/// Logs a waterfall as one structured line (in the session's span, which names the session):
/// each step's offset and the gap from the step before it, in milliseconds.
pub(crate) fn log_waterfall(turn_id: TurnId, response_id: Option<ResponseId>, w: &Waterfall) {
    let gap = |later: Option<f64>, earlier: Option<f64>| match (later, earlier) {
        (Some(l), Some(e)) => Some(((l - e) * 10.0).round() / 10.0),
        _ => None,
    };
    tracing::info!(
        target: "voice::turn",
        turn = turn_id.0,
        response = response_id.map(|id| id.0),
        commit_ms = w.commit_sent_ms,
        stt_ms = w.transcript_final_ms,
        llm_request_ms = w.llm_request_ms,
        llm_first_token_ms = w.llm_first_token_ms,
        first_clause_ms = w.first_clause_ms,
        tts_request_ms = w.tts_request_ms,
        tts_first_byte_ms = w.tts_first_byte_ms,
        first_audio_ms = w.first_audio_sent_ms,
        stt_wait_ms = gap(w.transcript_final_ms, w.commit_sent_ms.or(Some(0.0))),
        llm_ttft_ms = gap(w.llm_first_token_ms, w.llm_request_ms),
        tts_ttfb_ms = gap(w.tts_first_byte_ms, w.tts_request_ms),
        "turn latency"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn steps_are_offsets_from_the_end_of_speech_and_keep_the_first_time() {
        let t0 = Instant::now();
        let mut clock = TurnClock::new(protocol::TurnId(1), t0);
        clock.mark(Step::CommitSent, t0 + Duration::from_micros(300));
        clock.mark(Step::FirstAudioSent, t0 + Duration::from_millis(900));
        clock.mark(Step::FirstAudioSent, t0 + Duration::from_millis(950));
        let w = clock.waterfall();
        assert_eq!(w.commit_sent_ms, Some(0.3));
        assert_eq!(w.first_audio_sent_ms, Some(900.0));
        assert_eq!(w.llm_request_ms, None);
    }

    #[test]
    fn a_report_forgets_the_turn_and_older_ones() {
        let t0 = Instant::now();
        let mut clocks = TurnClocks::default();
        clocks.start(protocol::TurnId(1), t0);
        clocks.start(protocol::TurnId(2), t0);
        clocks.start(protocol::TurnId(3), t0);
        clocks.set_response(protocol::TurnId(2), protocol::ResponseId(7));
        let (response, _) = clocks
            .report(protocol::TurnId(2))
            .expect("turn 2 is reported");
        assert_eq!(response, Some(ResponseId(7)));
        assert!(clocks.report(protocol::TurnId(1)).is_none());
        assert!(clocks.report(protocol::TurnId(2)).is_none());
        assert!(clocks.report(protocol::TurnId(3)).is_some());
    }

    #[test]
    fn hops_are_the_gaps_between_steps_present_in_order() {
        let w = Waterfall {
            commit_sent_ms: Some(0.5),
            transcript_final_ms: Some(200.5),
            llm_request_ms: Some(201.0),
            llm_first_token_ms: Some(451.0),
            tts_first_byte_ms: Some(600.0),
            first_audio_sent_ms: Some(601.0),
            ..Waterfall::default()
        };
        assert_eq!(
            hop_gaps_ms(&w),
            [
                Some(0.5),
                Some(200.0),
                Some(0.5),
                Some(250.0),
                None,
                None,
                None,
                Some(1.0)
            ]
        );
        // A speculative start: the answer's first steps came before the transcript.
        let speculative = Waterfall {
            transcript_final_ms: Some(150.0),
            llm_request_ms: Some(0.0),
            ..Waterfall::default()
        };
        assert_eq!(hop_gaps_ms(&speculative)[2], None);
    }

    #[test]
    fn a_turn_is_reported_once() {
        let mut clock = TurnClock::new(protocol::TurnId(1), Instant::now());
        assert!(clock.report().is_some());
        assert!(clock.report().is_none());
    }
}
