//! Benchmark: barge-in, from the client's signal to the upstream requests closed.
//!
//! Many answers through a real proxy in front of the simulator, each talked over while it is
//! still generating and synthesizing: the browser sends `speech_started` (its VAD heard the
//! user), and the simulator records when it saw the answer's Chat Completions and Speech
//! requests closed, on its own clock, which the browser reads in the same process. Prints the
//! time from the signal to the last of them closed, p50 / p99 / max; asserts nothing.
//!
//! ```text
//! cargo run --release -p voice-agent-e2e --example barge_in [-- ANSWERS]
//! ```

use openai_sim::SimConfig;
use protocol::{ClientMessage, ResponseId, ServerMessage};
use voice_agent_e2e::{DEADLINE, Received, TestProxy, tone};

const STORY: &str = "Once upon a time there was a lighthouse keeper. Every night she climbed \
the tower and lit the lamp. Ships passed safely through the storms. One winter the lamp went \
out. She carried a lantern up the stairs and held it until dawn.";

#[tokio::main]
async fn main() {
    let answers: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    // Slow enough that every answer is still writing and speaking when it is cut.
    let sim = SimConfig {
        llm_tokens_per_second: 8.0,
        tts_realtime_factor: 1.0,
        ..SimConfig::instant()
    };
    let proxy = TestProxy::start(sim, |config| {
        config.limits.audio_rate_limit = 1_000.0;
    })
    .await;
    let mut browser = proxy.connect().await;
    let mut closed_after_ms = Vec::with_capacity(answers);
    for n in 0..answers {
        let response_id = ResponseId(u32::try_from(n + 1).expect("few answers"));
        proxy.sim.script_reply(STORY);
        browser.say(&tone(0.3)).await;
        browser
            .wait_for_frame(
                |r| matches!(r, Received::Audio { response_id: id, .. } if *id == response_id),
            )
            .await;
        let signal_ms = proxy.sim.now_ms();
        browser.send(ClientMessage::SpeechStarted).await;
        browser
            .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id: id, .. } if *id == response_id))
            .await;
        browser
            .send(ClientMessage::Cancel {
                response_id,
                played_samples: 0,
            })
            .await;
        let records = proxy
            .sim
            .wait_until(DEADLINE, |r| {
                !r.chat.is_empty()
                    && r.chat.iter().all(|c| c.ended_ms.is_some())
                    && r.speech.iter().all(|s| s.ended_ms.is_some())
            })
            .await
            .expect("the answer's requests close");
        let last_closed = records
            .chat
            .iter()
            .filter_map(|c| c.ended_ms)
            .chain(records.speech.iter().filter_map(|s| s.ended_ms))
            .fold(f64::MIN, f64::max);
        closed_after_ms.push(last_closed - signal_ms);
        proxy.sim.reset();
        // The next turn starts on an idle session.
        browser.send(ClientMessage::SpeechStopped).await;
    }
    closed_after_ms.sort_by(f64::total_cmp);
    let at = |q: f64| closed_after_ms[((closed_after_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "barge-in: speech_started → last upstream request closed, {} answers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        closed_after_ms.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    proxy.stop().await;
}
