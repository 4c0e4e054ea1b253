//! A whole conversation through the real proxy and the simulator, over real sockets.

use openai_sim::{SimConfig, SimStage};
use protocol::{ServerMessage, TurnDetection};
use voice_agent_e2e::{Received, TestProxy, silence, tone};

/// The audio the simulator streamed for one response, in sentence order: each Speech request's
/// sent bytes, ordered by where its input appears in the reply.
fn synthesized_audio(proxy: &TestProxy, reply: &str) -> Vec<u8> {
    let records = proxy.sim.records();
    let mut requests: Vec<_> = records
        .speech
        .iter()
        .filter_map(|r| {
            let input = r.body["input"].as_str()?;
            Some((reply.find(input)?, r.sent.clone()))
        })
        .collect();
    requests.sort_by_key(|(position, _)| *position);
    requests.into_iter().flat_map(|(_, sent)| sent).collect()
}

fn position(received: &[Received], pred: impl Fn(&ServerMessage) -> bool) -> usize {
    received
        .iter()
        .position(|r| matches!(r, Received::Message(m) if pred(m)))
        .expect("message present")
}

#[tokio::test]
async fn three_turns_stream_text_and_audio_in_order_and_keep_history() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let turns = [
        (
            "What is the capital of France?",
            "Paris is the capital of France. It sits on the Seine, and it is famous for the Eiffel Tower.",
        ),
        (
            "How tall is the tower?",
            "The Eiffel Tower is about 330 metres tall. It was the tallest structure in the world until 1930!",
        ),
        ("Thanks, goodbye.", "You're welcome. Goodbye!"),
    ];
    let mut browser = proxy.connect().await;
    for (index, (question, answer)) in turns.iter().enumerate() {
        let turn = index as u32 + 1;
        proxy.sim.script_transcript(*question);
        proxy.sim.script_reply(*answer);
        let speech_requests_before = proxy.sim.records().speech.len();
        let first = browser.received.len();
        browser.say(&[tone(0.8), silence(0.2)].concat()).await;
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
        assert_eq!(response_id, protocol::ResponseId(turn));
        assert_eq!(text, *answer);
        assert!(!interrupted);
        let metrics = browser
            .wait_for(|m| matches!(m, ServerMessage::Metrics { .. }))
            .await;

        // Transcript, then the response's start, text and done, in that order.
        let received = &browser.received[first..];
        let final_at = position(
            received,
            |m| matches!(m, ServerMessage::TranscriptFinal { turn_id, text } if *turn_id == protocol::TurnId(turn) && text == question),
        );
        let started_at = position(
            received,
            |m| matches!(m, ServerMessage::ResponseStarted { response_id: r, turn_id } if *r == protocol::ResponseId(turn) && *turn_id == protocol::TurnId(turn)),
        );
        let text_at = position(received, |m| {
            matches!(m, ServerMessage::ResponseTextDelta { .. })
        });
        let done_at = position(received, |m| {
            matches!(m, ServerMessage::ResponseDone { .. })
        });
        assert!(final_at < started_at && started_at < text_at && text_at < done_at);
        let streamed: String = received
            .iter()
            .filter_map(|r| match r {
                Received::Message(ServerMessage::ResponseTextDelta { delta, .. }) => {
                    Some(delta.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(streamed, *answer);

        // The audio is exactly what the simulator synthesized, and all of it came before done.
        let audio = browser.audio_of(response_id);
        assert!(!audio.is_empty());
        assert_eq!(audio.len() % 2, 0);
        assert_eq!(audio.len() as u64, audio_samples * 2);
        let records = proxy.sim.records();
        if answer.len() > 60 {
            assert!(
                records.speech.len() > speech_requests_before + 1,
                "a long answer is synthesized sentence by sentence"
            );
        }
        assert_eq!(audio, synthesized_audio(&proxy, answer));
        let last_audio_at = received
            .iter()
            .rposition(|r| matches!(r, Received::Audio { .. }))
            .expect("audio received");
        assert!(last_audio_at < done_at);

        // The waterfall is complete.
        let ServerMessage::Metrics {
            turn_id, waterfall, ..
        } = metrics
        else {
            unreachable!()
        };
        assert_eq!(turn_id, protocol::TurnId(turn));
        for (step, value) in [
            ("commit", waterfall.commit_sent_ms),
            ("transcript", waterfall.transcript_final_ms),
            ("llm request", waterfall.llm_request_ms),
            ("first token", waterfall.llm_first_token_ms),
            ("first clause", waterfall.first_clause_ms),
            ("tts request", waterfall.tts_request_ms),
            ("tts first byte", waterfall.tts_first_byte_ms),
            ("first audio", waterfall.first_audio_sent_ms),
        ] {
            assert!(value.is_some(), "{step} missing from {waterfall:?}");
        }
    }

    // The history of each chat request carries the earlier turns.
    let records = proxy.sim.records();
    assert_eq!(records.chat.len(), 3);
    let last = &records.chat[2].body["messages"];
    let roles: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    assert_eq!(last[1]["content"], turns[0].0);
    assert_eq!(last[2]["content"], turns[0].1);
    assert_eq!(last[4]["content"], turns[1].1);
    assert_eq!(last[5]["content"], turns[2].0);
    proxy.stop().await;
}

#[tokio::test]
async fn the_upstream_session_is_configured_in_the_ga_transcription_shape() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("Hello.");
    proxy.sim.script_reply("Hi.");
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    let records = proxy.sim.records();
    let connection = &records.realtime[0];
    let query = connection.query.clone().unwrap_or_default();
    assert!(query.contains("intent=transcription"), "{query}");
    assert!(!query.contains("model="), "{query}");
    assert_eq!(connection.openai_beta, None);
    let update = connection
        .events
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update sent");
    assert_eq!(update["session"]["type"], "transcription");
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        serde_json::json!({"type": "audio/pcm", "rate": 24000})
    );
    assert!(update["session"]["audio"]["input"]["turn_detection"].is_null());
    assert!(
        connection
            .events
            .iter()
            .any(|e| e["type"] == "input_audio_buffer.commit")
    );
    assert_eq!(
        connection.audio,
        tone(0.5),
        "the audio reached the upstream unchanged"
    );
    // The simulator sprinkled events a client must tolerate, and the turn worked anyway.
    assert!(
        connection
            .sent_types
            .iter()
            .any(|t| t.ends_with("sim_future_event")),
        "{:?}",
        connection.sent_types
    );
    proxy.stop().await;
}

#[tokio::test]
async fn transcripts_are_ordered_by_turn_not_by_arrival() {
    let proxy = TestProxy::start(
        SimConfig {
            out_of_order: true,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("First part,");
    proxy.sim.script_transcript("and the second part.");
    proxy.sim.script_reply("Got both parts.");
    browser.say(&tone(0.5)).await;
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    let finals: Vec<u32> = browser
        .messages()
        .iter()
        .filter_map(|m| match m {
            ServerMessage::TranscriptFinal { turn_id, .. } => Some(turn_id.0),
            _ => None,
        })
        .collect();
    assert_eq!(finals, [1, 2]);
    let records = proxy.sim.records();
    assert_eq!(records.chat.len(), 1, "one answer for both parts");
    let messages = records.chat[0].body["messages"].as_array().unwrap().clone();
    // Two user turns in a row read as one message, in turn order.
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["content"], "First part,\nand the second part.");
    proxy.stop().await;
}

#[tokio::test]
async fn server_vad_ends_turns_when_configured() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.turn_detection = protocol::TurnDetection::ServerVad;
    })
    .await;
    let mut browser = proxy.connect().await;
    assert!(matches!(
        browser.received.first(),
        Some(Received::Message(ServerMessage::SessionReady {
            turn_detection: TurnDetection::ServerVad,
            ..
        }))
    ));
    proxy.sim.script_transcript("Is anybody there?");
    proxy.sim.script_reply("Yes, I am here.");
    // Audio only: the simulator's VAD must find the turn by itself.
    browser
        .send_audio(&[silence(0.3), tone(0.8), silence(1.0)].concat())
        .await;
    browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::SpeechStarted {
                    turn_id: protocol::TurnId(1)
                }
            )
        })
        .await;
    browser
        .wait_for(|m| {
            matches!(
                m,
                ServerMessage::SpeechStopped {
                    turn_id: protocol::TurnId(1)
                }
            )
        })
        .await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::TranscriptFinal { turn_id: protocol::TurnId(1), text } if text == "Is anybody there?"))
        .await;
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
    let records = proxy.sim.records();
    let update = records.realtime[0]
        .events
        .iter()
        .find(|e| e["type"] == "session.update")
        .unwrap()
        .clone();
    assert_eq!(
        update["session"]["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert!(
        !records.realtime[0]
            .events
            .iter()
            .any(|e| e["type"] == "input_audio_buffer.commit")
    );
    let _ = SimStage::Chat;
    proxy.stop().await;
}

#[tokio::test]
async fn in_the_server_side_modes_a_turn_ends_as_the_shipped_client_sends_it() {
    for mode in [
        protocol::TurnDetection::ServerVad,
        protocol::TurnDetection::SemanticVad,
    ] {
        let proxy = TestProxy::start(SimConfig::default(), |config| {
            config.turn_detection = mode;
        })
        .await;
        let mut browser = proxy.connect().await;
        proxy.sim.script_transcript("Is anybody there?");
        proxy.sim.script_reply("Yes, I am here.");
        // As the page sends it: speech_started, the voiced audio, speech_stopped, and no
        // silence after it (its VAD stops sending when the voice stops).
        browser.say(&tone(0.8)).await;
        browser
            .wait_for(|m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == "Yes, I am here."))
            .await;
        // The upstream ended the turn; the proxy only padded the silence its VAD needs.
        let records = proxy.sim.records();
        assert!(
            !records.realtime[0]
                .events
                .iter()
                .any(|e| e["type"] == "input_audio_buffer.commit"),
            "{mode:?}"
        );
        proxy.stop().await;
    }
}

#[tokio::test]
async fn without_a_key_the_proxy_runs_on_the_simulator_and_says_so() {
    let config = proxy::config::Config {
        client_dir: "/nonexistent-client-dir".into(),
        ..proxy::config::Config::default()
    };
    // The simulator the harness starts stays idle; the proxy starts its own.
    let idle = openai_sim::Simulator::start(SimConfig::default())
        .await
        .unwrap();
    let proxy = TestProxy::serve(idle, config).await;
    assert!(proxy.state.simulated());
    let mut browser = proxy.connect().await;
    assert!(matches!(
        browser.received.first(),
        Some(Received::Message(ServerMessage::SessionReady {
            simulated: true,
            protocol_version: protocol::PROTOCOL_VERSION,
            ..
        }))
    ));
    browser.say(&tone(1.0)).await;
    let final_text = browser
        .wait_for(|m| matches!(m, ServerMessage::TranscriptFinal { .. }))
        .await;
    let ServerMessage::TranscriptFinal { text, .. } = final_text else {
        unreachable!()
    };
    assert!(text.contains("1.0 seconds"), "{text}");
    let done = browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    let ServerMessage::ResponseDone { response_id, .. } = done else {
        unreachable!()
    };
    assert!(!browser.audio_of(response_id).is_empty());
    proxy.stop().await;
}
