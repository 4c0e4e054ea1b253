//! Barge-in: the user talks over the answer.

use openai_sim::{Outcome, SimConfig};
use protocol::{ClientMessage, ServerMessage};
use voice_agent_e2e::{Browser, DEADLINE, Received, TestProxy, tone};

const LONG_ANSWER: &str = "Once upon a time there was a lighthouse keeper. Every night she climbed \
the tower and lit the lamp. Ships passed safely through the storms. One winter the lamp went out. \
She carried a lantern up the stairs and held it until dawn. The sailors never forgot her. \
They built a statue by the harbour. It still stands there today. Children leave shells at its feet.";

/// Slow enough that the answer is still generating and synthesizing when the user interrupts:
/// the LLM needs seconds for the whole text and speech plays in real time.
fn slow_upstream() -> SimConfig {
    SimConfig {
        llm_tokens_per_second: 8.0,
        tts_realtime_factor: 1.0,
        ..SimConfig::default()
    }
}

/// Connects a browser and asks for [`LONG_ANSWER`].
async fn ask_for_the_story(proxy: &TestProxy) -> Browser {
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("Tell me a story.");
    proxy.sim.script_reply(LONG_ANSWER);
    browser.say(&tone(0.6)).await;
    browser
}

#[tokio::test]
async fn barge_in_cancels_upstream_requests_drops_stale_audio_and_keeps_only_what_was_heard() {
    let proxy = TestProxy::start(slow_upstream(), |_| {}).await;
    let mut browser = ask_for_the_story(&proxy).await;

    // Some audio of the answer plays...
    browser
        .wait_for_frame(|r| {
            matches!(
                r,
                Received::Audio {
                    response_id: protocol::ResponseId(1),
                    ..
                }
            )
        })
        .await;
    // ...then the user speaks: the client has already cleared its playback.
    browser.send(ClientMessage::SpeechStarted).await;
    let done = browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::ResponseDone {
                    response_id: protocol::ResponseId(1),
                    ..
                }
            )
        })
        .await;
    assert!(matches!(
        done,
        ServerMessage::ResponseDone {
            interrupted: true,
            ..
        }
    ));
    let done_at = browser.received.len();

    // The simulator sees the LLM stream and every TTS request of that answer closed.
    let records = proxy
        .sim
        .wait_until(DEADLINE, |r| {
            r.chat.len() == 1
                && r.chat[0].outcome != Outcome::InProgress
                && !r.speech.is_empty()
                && r.speech.iter().all(|s| s.outcome != Outcome::InProgress)
        })
        .await
        .expect("upstream requests end");
    assert_eq!(records.chat[0].outcome, Outcome::ClientClosed);
    assert!(
        records
            .speech
            .iter()
            .any(|s| s.outcome == Outcome::ClientClosed),
        "{:?}",
        records
            .speech
            .iter()
            .map(|s| &s.outcome)
            .collect::<Vec<_>>()
    );

    // The client reports how much it played; the history keeps that much.
    let played_samples = 24_000 / 2;
    browser
        .send(ClientMessage::Cancel {
            response_id: protocol::ResponseId(1),
            played_samples,
        })
        .await;
    let truncated = browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::ResponseTruncated {
                    response_id: protocol::ResponseId(1),
                    ..
                }
            )
        })
        .await;
    let ServerMessage::ResponseTruncated { heard_text, .. } = truncated else {
        unreachable!()
    };
    assert!(LONG_ANSWER.starts_with(&heard_text), "{heard_text:?}");
    assert!(heard_text.len() < LONG_ANSWER.len() / 2, "{heard_text:?}");

    // The next turn: nothing of response 1 arrives any more, and the history holds the heard
    // part only.
    proxy.sim.script_transcript("Actually, tell me a joke.");
    proxy
        .sim
        .script_reply("Why did the robot cross the road? It was programmed to.");
    browser.send_audio(&tone(0.6)).await;
    browser.send(ClientMessage::SpeechStopped).await;
    browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::ResponseDone {
                    response_id: protocol::ResponseId(2),
                    ..
                }
            )
        })
        .await;
    assert!(
        !browser.received[done_at..].iter().any(|r| matches!(
            r,
            Received::Audio {
                response_id: protocol::ResponseId(1),
                ..
            }
        )),
        "stale audio of the interrupted answer arrived after it was cancelled"
    );
    let records = proxy.sim.records();
    let messages = records.chat[1].body["messages"].as_array().unwrap().clone();
    let assistant: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(assistant, [heard_text.as_str()]);
    proxy.stop().await;
}

#[tokio::test]
async fn cancel_after_generation_finished_still_truncates_history() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = ask_for_the_story(&proxy).await;
    browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::ResponseDone {
                    interrupted: false,
                    ..
                }
            )
        })
        .await;
    // All audio was sent, but the browser had played none of it when the user spoke.
    browser.send(ClientMessage::SpeechStarted).await;
    browser
        .send(ClientMessage::Cancel {
            response_id: protocol::ResponseId(1),
            played_samples: 0,
        })
        .await;
    let truncated = browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseTruncated { .. }))
        .await;
    assert!(
        matches!(truncated, ServerMessage::ResponseTruncated { heard_text, .. } if heard_text.is_empty())
    );
    proxy.sim.script_transcript("Never mind.");
    proxy.sim.script_reply("Okay.");
    browser.send_audio(&tone(0.6)).await;
    browser.send(ClientMessage::SpeechStopped).await;
    browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::ResponseDone {
                    response_id: protocol::ResponseId(2),
                    ..
                }
            )
        })
        .await;
    let records = proxy.sim.records();
    let messages = records.chat[1].body["messages"].as_array().unwrap().clone();
    assert!(
        !messages.iter().any(|m| m["role"] == "assistant"),
        "{messages:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_browser_that_leaves_mid_answer_closes_every_upstream_request() {
    let proxy = TestProxy::start(slow_upstream(), |_| {}).await;
    let mut browser = ask_for_the_story(&proxy).await;
    browser
        .wait_for_frame(|r| matches!(r, Received::Audio { .. }))
        .await;
    drop(browser);
    let records = proxy
        .sim
        .wait_until(DEADLINE, |r| {
            r.chat.iter().all(|c| c.outcome != Outcome::InProgress)
                && r.speech.iter().all(|s| s.outcome != Outcome::InProgress)
                && r.realtime.iter().all(|c| c.closed)
        })
        .await
        .expect("every upstream request ends");
    assert_eq!(records.chat[0].outcome, Outcome::ClientClosed);
    proxy.wait_for_sessions(|n| n == 0).await;
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_session_with_service_restart() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut first = proxy.connect().await;
    let mut second = proxy.connect().await;
    proxy.wait_for_sessions(|n| n == 2).await;
    let state = proxy.state.clone();
    let stopping = tokio::spawn(proxy.stop());
    // 1012 "service restart": the pages reconnect and resume.
    assert_eq!(first.wait_for_close().await, Some(1012));
    assert_eq!(second.wait_for_close().await, Some(1012));
    stopping.await.unwrap();
    assert_eq!(state.live_sessions(), 0);
}
