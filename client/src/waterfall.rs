//! The per-turn latency waterfall of a `metrics` message, as labelled steps for the page.
//!
//! Every step is milliseconds from the moment the proxy learned the user stopped speaking.
//! The page draws each as a bar whose width is relative to the turn's last step.

use protocol::Waterfall;

/// One step of the waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Words for the page.
    pub label: &'static str,
    /// Milliseconds after the end of the user's speech.
    pub at_ms: f64,
    /// `at_ms` as a share of the last step (0–1], for the bar width.
    pub fraction: f64,
}

/// The steps that happened, in pipeline order.
pub fn steps(waterfall: &Waterfall) -> Vec<Step> {
    let all = [
        ("Turn committed", waterfall.commit_sent_ms),
        ("Transcript final", waterfall.transcript_final_ms),
        ("LLM request sent", waterfall.llm_request_ms),
        ("LLM first token", waterfall.llm_first_token_ms),
        ("First clause ready", waterfall.first_clause_ms),
        ("TTS request sent", waterfall.tts_request_ms),
        ("TTS first audio", waterfall.tts_first_byte_ms),
        ("First audio sent", waterfall.first_audio_sent_ms),
    ];
    let last = all
        .iter()
        .filter_map(|(_, at)| *at)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    all.into_iter()
        .filter_map(|(label, at)| {
            let at_ms = at?;
            Some(Step {
                label,
                at_ms,
                fraction: (at_ms / last).clamp(0.0, 1.0),
            })
        })
        .collect()
}

/// Milliseconds for a label: "0.3 ms" below 10 ms, whole milliseconds above.
pub fn format_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_in_pipeline_order_and_scaled_to_the_last() {
        let waterfall = Waterfall {
            commit_sent_ms: Some(0.2),
            transcript_final_ms: Some(200.0),
            llm_first_token_ms: Some(400.0),
            first_audio_sent_ms: Some(800.0),
            ..Waterfall::default()
        };
        let steps = steps(&waterfall);
        let labels: Vec<_> = steps.iter().map(|step| step.label).collect();
        assert_eq!(
            labels,
            [
                "Turn committed",
                "Transcript final",
                "LLM first token",
                "First audio sent"
            ]
        );
        assert_eq!(steps[1].fraction, 0.25);
        assert_eq!(steps[3].fraction, 1.0);
    }

    #[test]
    fn an_empty_waterfall_has_no_steps() {
        assert!(steps(&Waterfall::default()).is_empty());
    }

    #[test]
    fn milliseconds_read_well() {
        assert_eq!(format_ms(0.25), "0.2 ms");
        assert_eq!(format_ms(812.5), "812 ms");
    }
}
