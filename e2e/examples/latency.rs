//! Benchmark: the proxy's own share of the turn latency.
//!
//! Runs many turns through a real proxy in front of a simulator with every upstream delay at
//! zero, so what remains is the proxy's work: the hops of the latency budget in `docs/ARCHITECTURE.md`.
//! Then measures what opening the transcription socket at the first speech (not at session
//! start) costs a session's first turn, with the upstream handshake taking 0, 150 and 400 ms and
//! the user speaking one second at real time. Prints percentiles; asserts nothing (machines are
//! noisy).
//!
//! ```text
//! cargo run --release --example latency [-- TURNS]
//! ```

use std::time::Instant;

use openai_sim::SimConfig;
use protocol::{ClientMessage, ServerMessage, Waterfall};
use voice_agent_e2e::{Received, TestProxy, tone};

#[tokio::main]
async fn main() {
    let turns: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    // Turns follow each other as fast as the proxy answers them, so the client sends audio far
    // faster than real time: lift the audio budget, which would rightly drop it.
    let proxy = TestProxy::start(SimConfig::instant(), |config| {
        config.limits.audio_rate_limit = 1_000.0;
    })
    .await;
    let mut browser = proxy.connect().await;
    let speech = tone(0.3);
    let mut waterfalls = Vec::with_capacity(turns);
    let mut stop_to_first_audio_ms = Vec::with_capacity(turns);
    for turn in 0..turns {
        proxy.sim.script_transcript("How is the weather today?");
        proxy
            .sim
            .script_reply("It is sunny and warm, with a light breeze. Enjoy it!");
        browser.send(ClientMessage::SpeechStarted).await;
        browser.send_audio(&speech).await;
        let stopped = Instant::now();
        browser.send(ClientMessage::SpeechStopped).await;
        let response_id = turn as u32 + 1;
        browser
            .wait_for_frame(
                |r| matches!(r, Received::Audio { response_id: id, .. } if *id == protocol::ResponseId(response_id)),
            )
            .await;
        stop_to_first_audio_ms.push(stopped.elapsed().as_secs_f64() * 1000.0);
        let metrics = browser
            .wait_for(|m| matches!(m, ServerMessage::Metrics { response_id: Some(id), .. } if *id == protocol::ResponseId(response_id)))
            .await;
        if let ServerMessage::Metrics { waterfall, .. } = metrics {
            waterfalls.push(waterfall);
        }
        browser.received.clear();
    }
    proxy.stop().await;

    let gap =
        |w: &Waterfall,
         later: fn(&Waterfall) -> Option<f64>,
         earlier: fn(&Waterfall) -> Option<f64>| { Some(later(w)? - earlier(w)?) };
    println!("{turns} turns, simulator delays at zero; milliseconds");
    println!(
        "{:<44} {:>8} {:>8} {:>8}",
        "hop (budget)", "p50", "p95", "max"
    );
    let rows: [(&str, Pick); 9] = [
        (
            "speech_stopped -> commit sent (< 1)",
            Box::new(|w| w.commit_sent_ms),
        ),
        (
            "transcript final -> LLM request sent (< 1)",
            Box::new(move |w| gap(w, |w| w.llm_request_ms, |w| w.transcript_final_ms)),
        ),
        (
            "first clause -> TTS request sent (< 1)",
            Box::new(move |w| gap(w, |w| w.tts_request_ms, |w| w.first_clause_ms)),
        ),
        (
            "TTS first byte -> first audio sent",
            Box::new(move |w| gap(w, |w| w.first_audio_sent_ms, |w| w.tts_first_byte_ms)),
        ),
        (
            "speech_stopped -> transcript final (upstream)",
            Box::new(|w| w.transcript_final_ms),
        ),
        (
            "LLM request -> first token (upstream)",
            Box::new(move |w| gap(w, |w| w.llm_first_token_ms, |w| w.llm_request_ms)),
        ),
        (
            "first token -> first clause (LLM writing)",
            Box::new(move |w| gap(w, |w| w.first_clause_ms, |w| w.llm_first_token_ms)),
        ),
        (
            "TTS request -> first byte (upstream)",
            Box::new(move |w| gap(w, |w| w.tts_first_byte_ms, |w| w.tts_request_ms)),
        ),
        (
            "speech_stopped -> first audio sent",
            Box::new(|w| w.first_audio_sent_ms),
        ),
    ];
    for (name, pick) in rows {
        let values: Vec<f64> = waterfalls.iter().filter_map(&pick).collect();
        print_row(name, values);
    }
    print_row(
        "client: speech_stopped sent -> first audio",
        stop_to_first_audio_ms,
    );

    println!();
    println!("first turn (socket opened at speech start) vs second turn; milliseconds");
    println!(
        "{:<44} {:>8} {:>8} {:>8}",
        "speech_stopped -> first audio", "p50", "p95", "max"
    );
    for handshake_ms in [0, 150, 400] {
        let (first, second) = first_and_second_turns(handshake_ms, 20).await;
        print_row(&format!("handshake {handshake_ms} ms: first turn"), first);
        print_row(&format!("handshake {handshake_ms} ms: second turn"), second);
    }
}

/// Runs `sessions` sessions of two turns each (one second of speech at real time, 20 ms
/// frames) against a simulator whose Realtime handshake takes `handshake_ms`; returns the
/// client's speech_stopped → first audio of the first and of the second turns.
async fn first_and_second_turns(handshake_ms: u64, sessions: usize) -> (Vec<f64>, Vec<f64>) {
    let proxy = TestProxy::start(
        SimConfig {
            realtime_handshake_ms: handshake_ms,
            ..SimConfig::instant()
        },
        |config| {
            config.limits.max_sessions_per_address = sessions + 1;
            config.limits.sessions_per_address_per_minute = 6_000;
        },
    )
    .await;
    let speech = tone(1.0);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..sessions {
        let mut browser = proxy.connect().await;
        for (turn, figures) in [&mut first, &mut second].into_iter().enumerate() {
            proxy.sim.script_reply("Sure.");
            browser.send(ClientMessage::SpeechStarted).await;
            let mut next_frame = tokio::time::Instant::now();
            for frame in speech.chunks(960) {
                browser.send_binary(frame.to_vec()).await;
                next_frame += std::time::Duration::from_millis(20);
                tokio::time::sleep_until(next_frame).await;
            }
            let stopped = Instant::now();
            browser.send(ClientMessage::SpeechStopped).await;
            let response_id = protocol::ResponseId(turn as u32 + 1);
            browser
                .wait_for_frame(
                    |r| matches!(r, Received::Audio { response_id: id, .. } if *id == response_id),
                )
                .await;
            figures.push(stopped.elapsed().as_secs_f64() * 1000.0);
            browser
                .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id: id, .. } if *id == response_id))
                .await;
        }
    }
    proxy.stop().await;
    (first, second)
}

/// Reads one figure from a turn's waterfall.
type Pick = Box<dyn Fn(&Waterfall) -> Option<f64>>;

fn print_row(name: &str, mut values: Vec<f64>) {
    if values.is_empty() {
        println!("{name:<44} {:>8}", "n/a");
        return;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<44} {:>8.3} {:>8.3} {:>8.3}",
        at(0.5),
        at(0.95),
        values[values.len() - 1]
    );
}
