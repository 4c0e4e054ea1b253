//! The speech-to-speech pipeline (`PIPELINE=speech-to-speech`) over real sockets: one Realtime
//! conversation session per browser session behind the unchanged browser protocol, barge-in
//! cut at what was played, and what the user sees when the upstream fails.

use openai_sim::{Fault, SimConfig, SimStage};
use protocol::{ClientMessage, ErrorCode, ResponseId, ServerMessage, Stage, TurnDetection};
use proxy::config::{Config, PipelineKind};
use voice_agent_e2e::{Browser, Received, ResponseDone, TestProxy, tone};

fn speech_to_speech(config: &mut Config) {
    config.pipeline = PipelineKind::SpeechToSpeech;
}

/// Waits for the waterfall of `response_id`, which follows its `response_done`.
async fn answered(browser: &mut Browser, response_id: ResponseId) {
    browser
        .wait_for(|m| matches!(m, ServerMessage::Metrics { response_id: Some(id), .. } if *id == response_id))
        .await;
}

/// The texts a fresh upstream session was given (`conversation.item.create`), in order.
fn seeded(session: &openai_sim::RealtimeRecord) -> Vec<String> {
    session
        .events_of_type("conversation.item.create")
        .map(|event| {
            event["item"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The `response_done` of `response_id`, which must have arrived.
fn response_done(browser: &Browser, response_id: ResponseId) -> ResponseDone {
    browser
        .response_done(response_id)
        .expect("response_done arrived")
}

#[tokio::test]
async fn a_three_turn_conversation_runs_on_one_realtime_session() {
    let proxy = TestProxy::start(SimConfig::default(), speech_to_speech).await;
    let mut browser = proxy.connect().await;
    let turns = [
        (
            "What is the capital of France?",
            "Paris is the capital of France.",
        ),
        ("And of Italy?", "Rome is the capital of Italy."),
        ("Thank you.", "You are welcome."),
    ];
    for (n, (question, answer)) in turns.iter().enumerate() {
        proxy.sim.script_transcript(*question);
        proxy.sim.script_reply(*answer);
        browser.say(&tone(0.5)).await;
        let response_id = ResponseId(n as u32 + 1);
        answered(&mut browser, response_id).await;
        let ResponseDone {
            text,
            interrupted,
            audio_samples: samples,
        } = response_done(&browser, response_id);
        assert_eq!(text, *answer);
        assert!(!interrupted);
        assert_eq!(
            browser.audio_of(response_id).len() as u64,
            samples * 2,
            "the answer's audio, all of it before its response_done"
        );
        assert!(samples > 0);
    }
    // The page saw each of the user's turns transcribed.
    let transcripts: Vec<String> = browser
        .messages()
        .iter()
        .filter_map(|m| match m {
            ServerMessage::TranscriptFinal { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    // The user's words come on their own, often after the answer began: all but the last
    // turn's are in by the time the next answer is done.
    assert!(
        transcripts[..2] == [turns[0].0, turns[1].0],
        "{transcripts:?}"
    );
    assert!(browser.errors().is_empty(), "{:?}", browser.errors());

    let records = proxy.sim.records();
    assert!(records.chat.is_empty() && records.speech.is_empty());
    assert_eq!(
        records.realtime.len(),
        1,
        "one upstream session for the whole conversation"
    );
    let session = &records.realtime[0];
    assert!(
        session
            .query
            .as_deref()
            .unwrap_or_default()
            .contains("model=gpt-realtime"),
        "{:?}",
        session.query
    );
    let update = session
        .events_of_type("session.update")
        .next()
        .expect("session.update");
    assert_eq!(update["session"]["type"], "realtime");
    assert!(update["session"]["audio"]["input"]["turn_detection"].is_null());
    assert_eq!(
        session.events_of_type("input_audio_buffer.commit").count(),
        3
    );
    assert_eq!(session.events_of_type("response.create").count(), 3);
    assert!(session.responses.iter().all(|r| r.status == "completed"));
    proxy.stop().await;
}

#[tokio::test]
async fn barge_in_cancels_upstream_and_truncates_the_answer_at_what_was_played() {
    let proxy = TestProxy::start(
        SimConfig {
            // Real-time audio: the answer is still being generated when the user speaks.
            tts_realtime_factor: 1.0,
            ..SimConfig::default()
        },
        speech_to_speech,
    )
    .await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_reply(
        "Once upon a time there was a fox who lived in a quiet wood, and every morning it \
         walked down to the river to watch the fish.",
    );
    browser.say(&tone(0.5)).await;
    // Over half a second of the answer arrived; then the user talks over it.
    while browser.audio_of(ResponseId(1)).len() < 2 * 14_400 {
        browser
            .wait_for_frame(|r| matches!(r, Received::Audio { response_id, .. } if *response_id == ResponseId(1)))
            .await;
    }
    browser.send(ClientMessage::SpeechStarted).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id, .. } if *response_id == ResponseId(1)))
        .await;
    let cut = response_done(&browser, ResponseId(1));
    assert!(cut.interrupted);
    let sent_samples = cut.audio_samples;
    // The browser played half a second of it.
    assert!(sent_samples > 12_000, "{sent_samples}");
    let played_samples = 12_000;
    browser
        .send(ClientMessage::Cancel {
            response_id: ResponseId(1),
            played_samples,
        })
        .await;
    let heard = browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseTruncated { .. }))
        .await;
    let ServerMessage::ResponseTruncated { heard_text, .. } = heard else {
        unreachable!()
    };
    assert!(heard_text.len() < 60, "{heard_text:?}");
    // The simulator saw the cancel and the truncate, at the played milliseconds, of the
    // answer's own item.
    let expected_ms = played_samples * 1000 / 24_000;
    let records = proxy
        .sim
        .wait_until(voice_agent_e2e::DEADLINE, |records| {
            records
                .realtime
                .first()
                .is_some_and(|s| !s.truncations.is_empty())
        })
        .await
        .expect("the simulator saw the truncate");
    let session = &records.realtime[0];
    assert_eq!(session.events_of_type("response.cancel").count(), 1);
    let truncation = &session.truncations[0];
    assert_eq!(truncation.audio_end_ms, expected_ms);
    assert_eq!(truncation.item_id, session.responses[0].item_id);
    assert_eq!(session.responses[0].status, "cancelled");

    // The user's interrupting turn is answered as usual.
    proxy.sim.script_reply("Sure, what would you like?");
    browser.send_audio(&tone(0.5)).await;
    browser.send(ClientMessage::SpeechStopped).await;
    answered(&mut browser, ResponseId(2)).await;
    assert_eq!(
        response_done(&browser, ResponseId(2)).text,
        "Sure, what would you like?"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn with_server_vad_the_upstream_ends_turns_and_answers_on_its_own() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        speech_to_speech(config);
        config.turn_detection = TurnDetection::ServerVad;
    })
    .await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_reply("Hello! How can I help?");
    browser.say(&tone(0.6)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::SpeechStarted { .. }))
        .await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::SpeechStopped { .. }))
        .await;
    answered(&mut browser, ResponseId(1)).await;
    assert_eq!(
        response_done(&browser, ResponseId(1)).text,
        "Hello! How can I help?"
    );
    let records = proxy.sim.records();
    let session = &records.realtime[0];
    assert_eq!(
        session.events_of_type("input_audio_buffer.commit").count(),
        0
    );
    assert_eq!(session.events_of_type("response.create").count(), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn rejected_credentials_are_reported_as_the_language_models() {
    let proxy = TestProxy::start(SimConfig::default(), speech_to_speech).await;
    proxy.sim.inject(SimStage::Realtime, Fault::unauthorized());
    let mut browser = proxy.connect().await;
    browser.say(&tone(0.5)).await;
    let event = browser.wait_for_error(|_| true).await;
    assert_eq!(
        (event.stage, event.code),
        (Stage::Llm, ErrorCode::UpstreamAuth)
    );
    assert!(!event.message.contains(voice_agent_e2e::TEST_API_KEY));
    proxy.stop().await;
}

#[tokio::test]
async fn a_failed_answer_is_interrupted_and_a_lost_session_is_replaced_with_the_history() {
    let proxy = TestProxy::start(SimConfig::default(), speech_to_speech).await;
    let mut browser = proxy.connect().await;

    // A first exchange, whole.
    proxy.sim.script_transcript("My name is Ada.");
    proxy.sim.script_reply("Nice to meet you, Ada.");
    browser.say(&tone(0.5)).await;
    answered(&mut browser, ResponseId(1)).await;
    let heard_ada = |m: &ServerMessage| matches!(m, ServerMessage::TranscriptFinal { text, .. } if text == "My name is Ada.");
    if !browser.messages().into_iter().any(heard_ada) {
        // The user's words may come after the answer.
        browser.wait_for(heard_ada).await;
    }

    // An answer that fails upstream: reported, and interrupted.
    proxy
        .sim
        .script_reply("Let me think about that for a moment.");
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::MidStreamError { after: 6 });
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id, .. } if *response_id == ResponseId(2)))
        .await;
    assert!(response_done(&browser, ResponseId(2)).interrupted);
    assert!(
        browser
            .errors()
            .iter()
            .any(|e| e.response_id == Some(ResponseId(2))),
        "{:?}",
        browser.errors()
    );

    // The connection drops mid-answer: reported, and the answer is interrupted.
    proxy
        .sim
        .script_reply("This answer will not arrive in one piece, I am afraid.");
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::Drop { after: 8 });
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { response_id, .. } if *response_id == ResponseId(3)))
        .await;
    assert!(response_done(&browser, ResponseId(3)).interrupted);

    // The next turn opens a fresh session, which is given the conversation so far.
    proxy.sim.script_reply("Your name is Ada.");
    browser.say(&tone(0.5)).await;
    answered(&mut browser, ResponseId(4)).await;
    assert_eq!(
        response_done(&browser, ResponseId(4)).text,
        "Your name is Ada."
    );
    let records = proxy.sim.records();
    assert_eq!(records.realtime.len(), 2);
    assert_eq!(
        seeded(&records.realtime[1])[..2],
        ["My name is Ada.", "Nice to meet you, Ada."]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_cut_socket_resumes_and_the_fresh_upstream_session_is_given_the_conversation() {
    let proxy = TestProxy::start(SimConfig::default(), speech_to_speech).await;
    let relay = voice_agent_e2e::relay::CuttingRelay::start(proxy.addr()).await;
    let mut browser = proxy.reconnect_at(relay.addr(), None).await;
    let (session_id, token, _) = browser.session_ready();
    let token = token.expect("a speech-to-speech session can be resumed too");
    proxy.sim.script_transcript("My name is Ada.");
    proxy.sim.script_reply("Nice to meet you, Ada.");
    browser.say(&tone(0.5)).await;
    answered(&mut browser, ResponseId(1)).await;
    // The user's words arrive on their own: wait for them before the network drops.
    let transcribed = |m: &ServerMessage| matches!(m, ServerMessage::TranscriptFinal { .. });
    if !browser.messages().into_iter().any(transcribed) {
        browser.wait_for(transcribed).await;
    }
    relay.cut();
    proxy.wait_for_sessions(|n| n == 0).await;

    let mut resumed = proxy.reconnect_at(relay.addr(), Some(&token)).await;
    let (resumed_id, _, was_resumed) = resumed.session_ready();
    assert!(was_resumed);
    assert_eq!(resumed_id, session_id);
    proxy.sim.script_reply("Your name is Ada.");
    resumed.say(&tone(0.5)).await;
    answered(&mut resumed, ResponseId(2)).await;
    let records = proxy.sim.records();
    assert_eq!(records.realtime.len(), 2, "a fresh upstream session");
    assert_eq!(
        seeded(&records.realtime[1])[..2],
        ["My name is Ada.", "Nice to meet you, Ada."]
    );
    proxy.stop().await;
}
