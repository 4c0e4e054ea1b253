//! The protocol's ordering promises, checked frame by frame over many turns and on every
//! pipeline (Realtime or file transcription, speech-to-speech): no audio of a
//! response follows its `response_done`, `metrics` follows `response_done`, and the audio
//! before `response_done` is exactly as long as it says.
//!
//! The browser here reads through a small socket buffer and only while it waits for a message,
//! so the proxy's writer backs up behind it as it would behind a slow network: the case where
//! a `response_done` could overtake queued audio.

use openai_sim::SimConfig;
use protocol::{ResponseId, ServerMessage};
use proxy::config::{Config, PipelineKind, SttMode};
use voice_agent_e2e::{Browser, Received, TestProxy, tone};

/// Checks the order of everything `browser` received for `response_id`.
fn check_order(browser: &Browser, response_id: ResponseId) {
    let position = |pred: &dyn Fn(&Received) -> bool| browser.received.iter().position(pred);
    let done_at = position(&|r| {
        matches!(r, Received::Message(ServerMessage::ResponseDone { response_id: id, .. }) if *id == response_id)
    })
    .expect("response_done arrived");
    let metrics_at = position(&|r| {
        matches!(r, Received::Message(ServerMessage::Metrics { response_id: Some(id), .. }) if *id == response_id)
    })
    .expect("metrics arrived");
    assert!(metrics_at > done_at, "metrics before response_done");
    let late_frames = browser.received[done_at..]
        .iter()
        .filter(|r| matches!(r, Received::Audio { response_id: id, .. } if *id == response_id))
        .count();
    assert_eq!(
        late_frames, 0,
        "{late_frames} audio frames of {response_id} after its response_done"
    );
    let Received::Message(ServerMessage::ResponseDone {
        audio_samples,
        interrupted,
        ..
    }) = &browser.received[done_at]
    else {
        unreachable!()
    };
    assert!(!interrupted);
    let before: usize = browser.received[..done_at]
        .iter()
        .map(|r| match r {
            Received::Audio {
                response_id: id,
                pcm,
            } if *id == response_id => pcm.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(
        before as u64,
        audio_samples * 2,
        "audio before response_done"
    );
}

/// Three turns per seed, four seeds, against a proxy configured by `configure`: the order
/// holds for every response.
async fn order_holds_over_many_turns(configure: fn(&mut Config)) {
    for seed in 1..=4 {
        // A fresh chunking of the upstream streams per seed.
        let proxy = TestProxy::start(
            SimConfig {
                seed,
                tts_realtime_factor: 8.0,
                ..SimConfig::default()
            },
            configure,
        )
        .await;
        let mut browser = proxy.connect_with_receive_buffer(4096).await;
        for turn in 1..=3u32 {
            proxy.sim.script_reply(
                "Here is a first sentence of the answer. And here comes a second one, a bit \
                 longer than the first. A third closes it.",
            );
            browser.say(&tone(0.5)).await;
            let response_id = ResponseId(turn);
            browser
                .wait_for(|m| matches!(m, ServerMessage::Metrics { response_id: Some(id), .. } if *id == response_id))
                .await;
            check_order(&browser, response_id);
        }
        proxy.stop().await;
    }
}

#[tokio::test]
async fn no_audio_follows_its_response_done_over_many_turns() {
    order_holds_over_many_turns(|_| {}).await;
}

#[tokio::test]
async fn with_file_transcription_no_audio_follows_its_response_done() {
    order_holds_over_many_turns(|config| config.stt_mode = SttMode::File).await;
}

#[tokio::test]
async fn speech_to_speech_no_audio_follows_its_response_done() {
    order_holds_over_many_turns(|config| config.pipeline = PipelineKind::SpeechToSpeech).await;
}

/// The `response_done` of `response_id`: its text and whether it was interrupted.
fn response_done(browser: &Browser, response_id: ResponseId) -> (String, bool) {
    let done = browser
        .response_done(response_id)
        .expect("response_done arrived");
    (done.text, done.interrupted)
}

#[tokio::test]
async fn an_answer_cut_by_an_upstream_error_is_interrupted_and_the_history_stays_well_formed() {
    use openai_sim::{Fault, SimStage};
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;

    // An answer broken off after a few tokens: what was said of it stands, marked interrupted.
    proxy.sim.script_transcript("Tell me a story.");
    proxy
        .sim
        .script_reply("Once upon a time there was a fox who lived in a quiet wood.");
    proxy
        .sim
        .inject(SimStage::Chat, Fault::MidStreamError { after: 4 });
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::Metrics { response_id: Some(id), .. } if *id == ResponseId(1)))
        .await;
    let (kept, interrupted) = response_done(&browser, ResponseId(1));
    assert!(interrupted, "an answer cut by an error is interrupted");
    assert!(!kept.is_empty() && kept.len() < 40, "{kept:?}");

    // An answer that never started (401): interrupted, nothing kept.
    proxy.sim.script_transcript("Are you there?");
    proxy.sim.inject(SimStage::Chat, Fault::unauthorized());
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id: id, .. } if *id == ResponseId(2)))
        .await;
    assert_eq!(
        response_done(&browser, ResponseId(2)),
        (String::new(), true)
    );

    // The next request reads strictly alternating roles: the unanswered user turn is merged
    // with this one, and the cut answer is there as far as it was said.
    proxy.sim.script_transcript("Hello?");
    proxy.sim.script_reply("Yes, I am here.");
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id: id, .. } if *id == ResponseId(3)))
        .await;
    let records = proxy.sim.records();
    let last = records.chat.last().expect("a chat request");
    let messages = last.body["messages"].as_array().expect("messages");
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user"],
        "{messages:?}"
    );
    assert_eq!(messages[2]["content"], kept.as_str());
    assert_eq!(messages[3]["content"], "Are you there?\nHello?");
    proxy.stop().await;
}
