//! Getting ahead of the end of a turn: pieces committed at the user's short pauses, and an
//! answer started at a pause that is heard only if the turn really ended there.

use openai_sim::{Outcome, Records, SimConfig};
use protocol::{ClientMessage, ResponseId, ServerMessage, TurnId};
use voice_agent_e2e::{Browser, DEADLINE, TestProxy, tone};

/// The `input_audio_buffer` commits and clears the proxy sent on every transcription socket.
fn buffer_events(records: &Records, kind: &str) -> usize {
    records
        .realtime
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e["type"] == kind)
        .count()
}

/// The last user message of a chat request.
fn last_user_message(records: &Records, request: usize) -> String {
    let messages = records.chat[request].body["messages"]
        .as_array()
        .expect("messages")
        .clone();
    messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .expect("a user message")
        .to_owned()
}

async fn speak_and_pause(browser: &mut Browser, seconds: f64) {
    browser.send_audio(&tone(seconds)).await;
    browser.send(ClientMessage::SpeechPaused).await;
}

#[tokio::test]
async fn a_long_question_is_committed_in_pieces_and_answered_as_one_turn() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.speculative_start = false;
    })
    .await;
    for piece in ["Which mountain", "is the tallest", "in Europe?"] {
        proxy.sim.script_transcript(piece);
    }
    proxy.sim.script_reply("Mount Elbrus.");
    let mut browser = proxy.connect().await;
    browser.send(ClientMessage::SpeechStarted).await;
    for _ in 0..2 {
        speak_and_pause(&mut browser, 0.4).await;
        browser.send(ClientMessage::SpeechResumed).await;
    }
    browser.send_audio(&tone(0.4)).await;
    browser.send(ClientMessage::SpeechStopped).await;

    let final_text = browser
        .wait_for(|m| matches!(m, ServerMessage::TranscriptFinal { .. }))
        .await;
    assert_eq!(
        final_text,
        ServerMessage::TranscriptFinal {
            turn_id: TurnId(1),
            text: "Which mountain is the tallest in Europe?".into()
        }
    );
    let metrics = browser
        .wait_for(|m| matches!(m, ServerMessage::Metrics { .. }))
        .await;
    let ServerMessage::Metrics { waterfall, .. } = metrics else {
        unreachable!()
    };
    assert_eq!(waterfall.pieces, Some(3));
    let done = browser.response_done(ResponseId(1)).expect("answered");
    assert!(!done.interrupted);
    assert_eq!(done.text, "Mount Elbrus.");

    let records = proxy.sim.records();
    assert_eq!(buffer_events(&records, "input_audio_buffer.commit"), 3);
    assert_eq!(records.chat.len(), 1, "one answer for the one turn");
    assert_eq!(
        last_user_message(&records, 0),
        "Which mountain is the tallest in Europe?"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_answer_started_at_the_pause_is_heard_once_the_turn_ends_there() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    proxy.sim.script_transcript("What time is it?");
    proxy.sim.script_reply("It is noon.");
    let mut browser = proxy.connect().await;
    browser.send(ClientMessage::SpeechStarted).await;
    speak_and_pause(&mut browser, 0.6).await;
    // The pause's words are transcribed and the answer starts before the turn ends...
    proxy
        .sim
        .wait_until(DEADLINE, |r| !r.chat.is_empty())
        .await
        .expect("a chat request started at the pause");
    // ...but nothing of it reaches the browser until the turn ends: the turn's final
    // transcript (sent at its end) comes before the answer's start.
    browser.send(ClientMessage::SpeechStopped).await;
    let first = browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::TranscriptFinal { .. } | ServerMessage::ResponseStarted { .. }
            )
        })
        .await;
    assert!(
        matches!(first, ServerMessage::TranscriptFinal { .. }),
        "{:#?}",
        browser.messages()
    );

    let done = browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    let ServerMessage::ResponseDone {
        response_id,
        text,
        interrupted,
        audio_samples,
    } = done
    else {
        unreachable!()
    };
    assert_eq!((text.as_str(), interrupted), ("It is noon.", false));
    assert_eq!(
        browser.audio_of(response_id).len() as u64,
        audio_samples * 2,
        "all of the answer's audio arrived"
    );
    let metrics = browser
        .wait_for(|m| matches!(m, ServerMessage::Metrics { .. }))
        .await;
    let ServerMessage::Metrics { waterfall, .. } = metrics else {
        unreachable!()
    };
    assert_eq!(
        (
            waterfall.pieces,
            waterfall.speculative_starts,
            waterfall.speculations_cancelled
        ),
        (Some(1), Some(1), Some(0))
    );
    let records = proxy.sim.records();
    assert_eq!(
        records.chat.len(),
        1,
        "the speculative answer was the answer"
    );
    assert_eq!(buffer_events(&records, "input_audio_buffer.commit"), 1);
    assert_eq!(
        buffer_events(&records, "input_audio_buffer.clear"),
        1,
        "the hangover's silence is not transcribed"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn going_on_after_the_pause_cancels_the_early_answer_unheard_and_answers_the_whole_turn() {
    let proxy = TestProxy::start(
        SimConfig {
            // The early answer is still streaming when the user goes on.
            llm_tokens_per_second: 5.0,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    proxy.sim.script_transcript("What time");
    proxy.sim.script_transcript("is it in Lima?");
    proxy.sim.script_reply("Someone asked about the time.");
    proxy.sim.script_reply("It is seven.");
    let mut browser = proxy.connect().await;
    browser.send(ClientMessage::SpeechStarted).await;
    speak_and_pause(&mut browser, 0.6).await;
    proxy
        .sim
        .wait_until(DEADLINE, |r| !r.chat.is_empty())
        .await
        .expect("a chat request started at the pause");
    browser.send(ClientMessage::SpeechResumed).await;
    proxy
        .sim
        .wait_until(DEADLINE, |r| {
            r.chat
                .first()
                .is_some_and(|c| c.outcome == Outcome::ClientClosed)
        })
        .await
        .expect("the early answer's request is closed");
    browser.send_audio(&tone(0.6)).await;
    browser.send(ClientMessage::SpeechStopped).await;

    let done = browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    let ServerMessage::ResponseDone {
        response_id, text, ..
    } = done
    else {
        unreachable!()
    };
    assert_eq!(text, "It is seven.");
    let records = proxy.sim.records();
    assert_eq!(records.chat.len(), 2);
    assert_eq!(last_user_message(&records, 0), "What time");
    assert_eq!(last_user_message(&records, 1), "What time is it in Lima?");
    // The browser never heard of the cancelled answer.
    let early = ResponseId(response_id.0 - 1);
    assert!(browser.audio_of(early).is_empty());
    assert!(
        !browser.messages().iter().any(|m| matches!(
            m,
            ServerMessage::ResponseStarted { response_id, .. } if *response_id == early
        )),
        "{:#?}",
        browser.messages()
    );
    let metrics = browser
        .wait_for(|m| matches!(m, ServerMessage::Metrics { .. }))
        .await;
    let ServerMessage::Metrics { waterfall, .. } = metrics else {
        unreachable!()
    };
    assert_eq!(
        (
            waterfall.speculative_starts,
            waterfall.speculations_cancelled
        ),
        (Some(1), Some(1))
    );
    proxy.stop().await;
}
