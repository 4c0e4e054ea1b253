//! The API key reaches the upstream and nowhere else: not the browser, not the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use openai_sim::{Fault, SimConfig, SimStage};
use protocol::{ServerMessage, Stage};
use voice_agent_e2e::{Received, TEST_API_KEY, TestProxy, tone};

/// Collects every log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_appears_in_no_browser_frame_and_no_log_line() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("What's my key?");
    proxy.sim.script_reply("I cannot tell you. Nobody can.");
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    // Failures too: their messages must not quote the key either.
    proxy.sim.inject(SimStage::Chat, Fault::unauthorized());
    proxy.sim.script_transcript("Again?");
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.stage == Stage::Llm))
        .await;
    // The upstream did get it, in the Authorization header of every request.
    let records = proxy.sim.records();
    let expected = format!("Bearer {TEST_API_KEY}");
    assert_eq!(
        records.realtime[0].authorization.as_deref(),
        Some(expected.as_str())
    );
    assert!(
        records
            .chat
            .iter()
            .all(|c| c.authorization.as_deref() == Some(expected.as_str()))
    );
    assert!(
        records
            .speech
            .iter()
            .all(|s| s.authorization.as_deref() == Some(expected.as_str()))
    );
    proxy.stop().await;

    for received in &browser.received {
        if let Received::Message(message) = received {
            assert!(!message.to_json().contains(TEST_API_KEY), "{message:?}");
        }
    }
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logs.contains("session started"), "logs were captured");
    // Each turn logs its latency waterfall as one structured line.
    let waterfall = logs
        .lines()
        .find(|line| line.contains("turn latency"))
        .expect("a turn latency line");
    for field in [
        "commit_ms",
        "stt_ms",
        "llm_first_token_ms",
        "tts_first_byte_ms",
        "first_audio_ms",
    ] {
        assert!(waterfall.contains(field), "{field} missing: {waterfall}");
    }
    let leaks: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(&TEST_API_KEY[8..]))
        .collect();
    assert!(leaks.is_empty(), "the key leaked into the logs: {leaks:#?}");
}
