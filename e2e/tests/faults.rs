//! Every injected upstream fault reaches the browser as the right error event, and the session
//! goes on.

use openai_sim::{Fault, Outcome, SimConfig, SimStage};
use protocol::{ClientMessage, ErrorCode, ErrorEvent, ServerMessage, Stage};
use voice_agent_e2e::{Browser, TestProxy, tone};

/// Says something and waits for the error event of `stage`. Nothing is scripted: a faulted
/// request may leave a scripted line for the next one.
async fn turn_with_error(_proxy: &TestProxy, browser: &mut Browser, stage: Stage) -> ErrorEvent {
    browser.say(&tone(0.5)).await;
    browser.wait_for_error(|e| e.stage == stage).await
}

/// The error events the browser got so far (of `stage` only, if given).
fn errors_seen(browser: &Browser, stage: Option<Stage>) -> Vec<ErrorEvent> {
    browser
        .errors()
        .into_iter()
        .filter(|e| stage.is_none_or(|stage| e.stage == stage))
        .collect()
}

/// A normal turn works afterwards: the session survived.
async fn session_goes_on(proxy: &TestProxy, browser: &mut Browser) {
    proxy.sim.script_transcript("Are you still there?");
    proxy.sim.script_reply("Yes, still here.");
    browser.say(&tone(0.5)).await;
    let done = browser
        .wait_for(
            |m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == "Yes, still here."),
        )
        .await;
    let ServerMessage::ResponseDone {
        response_id,
        interrupted,
        ..
    } = done
    else {
        unreachable!()
    };
    assert!(!interrupted);
    assert!(!browser.audio_of(response_id).is_empty());
}

struct Case {
    stage: SimStage,
    fault: Fault,
    times: usize,
    expected_stage: Stage,
    code: ErrorCode,
    retryable: bool,
}

async fn check(case: Case) {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    for _ in 0..case.times {
        proxy.sim.inject(case.stage, case.fault.clone());
    }
    if case.stage == SimStage::Speech {
        // One sentence, so one Speech request takes every injected fault (sentences are
        // synthesized in parallel and would share them out).
        proxy.sim.script_reply("Okay.");
    }
    let event = turn_with_error(&proxy, &mut browser, case.expected_stage).await;
    assert_eq!(
        (event.code, event.retryable),
        (case.code, case.retryable),
        "{:?} {:?}: {event:?}",
        case.stage,
        case.fault
    );
    assert!(event.turn_id.is_some(), "{event:?}");
    session_goes_on(&proxy, &mut browser).await;
    proxy.stop().await;
}

#[tokio::test]
async fn llm_auth_failure_is_reported_and_not_retried() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::unauthorized(),
        times: 1,
        expected_stage: Stage::Llm,
        code: ErrorCode::UpstreamAuth,
        retryable: false,
    })
    .await;
}

#[tokio::test]
async fn llm_bad_request_is_reported() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::bad_request(),
        times: 1,
        expected_stage: Stage::Llm,
        code: ErrorCode::UpstreamBadRequest,
        retryable: false,
    })
    .await;
}

#[tokio::test]
async fn llm_quota_exhaustion_is_not_retried() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    proxy
        .sim
        .inject(SimStage::Chat, Fault::insufficient_quota());
    let event = turn_with_error(&proxy, &mut browser, Stage::Llm).await;
    assert_eq!(event.code, ErrorCode::InsufficientQuota);
    assert!(!event.retryable);
    assert_eq!(
        proxy.sim.records().chat.len(),
        1,
        "no retry after insufficient_quota"
    );
    session_goes_on(&proxy, &mut browser).await;
    proxy.stop().await;
}

#[tokio::test]
async fn llm_rate_limit_and_server_errors_are_retried_before_anything_is_sent() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    proxy.sim.inject(SimStage::Chat, Fault::rate_limited());
    proxy.sim.inject(SimStage::Chat, Fault::server_error());
    proxy.sim.script_transcript("Hello.");
    proxy.sim.script_reply("Hello to you.");
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(
            |m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == "Hello to you."),
        )
        .await;
    assert!(errors_seen(&browser, None).is_empty());
    assert_eq!(
        proxy.sim.records().chat.len(),
        3,
        "two retries, then success"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn llm_persistent_overload_gives_up_after_the_retries() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::overloaded(),
        times: 3,
        expected_stage: Stage::Llm,
        code: ErrorCode::UpstreamUnavailable,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn llm_persistent_rate_limit_is_reported_as_retryable() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::rate_limited(),
        times: 3,
        expected_stage: Stage::Llm,
        code: ErrorCode::RateLimited,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn llm_error_mid_stream_is_an_interruption() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::MidStreamError { after: 3 },
        times: 1,
        expected_stage: Stage::Llm,
        code: ErrorCode::StreamInterrupted,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn llm_stream_without_done_is_a_failure() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::Drop { after: 3 },
        times: 1,
        expected_stage: Stage::Llm,
        code: ErrorCode::StreamInterrupted,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn llm_stall_times_out() {
    check(Case {
        stage: SimStage::Chat,
        fault: Fault::Stall { after: 2 },
        times: 1,
        expected_stage: Stage::Llm,
        code: ErrorCode::UpstreamTimeout,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn tts_auth_failure_is_reported() {
    check(Case {
        stage: SimStage::Speech,
        fault: Fault::unauthorized(),
        times: 1,
        expected_stage: Stage::Tts,
        code: ErrorCode::UpstreamAuth,
        retryable: false,
    })
    .await;
}

#[tokio::test]
async fn tts_quota_exhaustion_is_reported() {
    check(Case {
        stage: SimStage::Speech,
        fault: Fault::insufficient_quota(),
        times: 1,
        expected_stage: Stage::Tts,
        code: ErrorCode::InsufficientQuota,
        retryable: false,
    })
    .await;
}

#[tokio::test]
async fn tts_persistent_server_error_is_reported() {
    check(Case {
        stage: SimStage::Speech,
        fault: Fault::server_error(),
        times: 3,
        expected_stage: Stage::Tts,
        code: ErrorCode::UpstreamUnavailable,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn tts_body_cut_short_is_an_interruption() {
    check(Case {
        stage: SimStage::Speech,
        fault: Fault::Drop { after: 1001 },
        times: 1,
        expected_stage: Stage::Tts,
        code: ErrorCode::StreamInterrupted,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn tts_stall_times_out() {
    check(Case {
        stage: SimStage::Speech,
        fault: Fault::Stall { after: 100 },
        times: 1,
        expected_stage: Stage::Tts,
        code: ErrorCode::UpstreamTimeout,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn stt_transcription_failure_is_reported() {
    check(Case {
        stage: SimStage::Realtime,
        fault: Fault::TranscriptionFailed,
        times: 1,
        expected_stage: Stage::Stt,
        code: ErrorCode::TranscriptionFailed,
        retryable: true,
    })
    .await;
}

#[tokio::test]
async fn stt_auth_failure_at_connect_is_reported() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    proxy.sim.inject(SimStage::Realtime, Fault::unauthorized());
    let mut browser = proxy.connect().await;
    // The transcription socket opens at the first speech.
    browser.send(ClientMessage::SpeechStarted).await;
    browser.send_audio(&tone(0.2)).await;
    let error = browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.stage == Stage::Stt))
        .await;
    assert!(matches!(
        error,
        ServerMessage::Error(ErrorEvent {
            code: ErrorCode::UpstreamAuth,
            retryable: false,
            ..
        })
    ));
    assert_eq!(proxy.sim.records().realtime.len(), 1, "no retry after 401");
    // Speaking again reconnects.
    session_goes_on(&proxy, &mut browser).await;
    proxy.stop().await;
}

#[tokio::test]
async fn stt_rate_limit_and_overload_at_connect_are_retried_unseen() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    proxy.sim.inject(SimStage::Realtime, Fault::rate_limited());
    proxy.sim.inject(SimStage::Realtime, Fault::overloaded());
    let mut browser = proxy.connect().await;
    session_goes_on(&proxy, &mut browser).await;
    let statuses: Vec<_> = proxy
        .sim
        .records()
        .realtime
        .iter()
        .map(|c| c.rejected_status)
        .collect();
    assert_eq!(statuses, [Some(429), Some(503), None]);
    assert!(
        errors_seen(&browser, None).is_empty(),
        "retries are not the user's business"
    );
    proxy.stop().await;
}

/// One turn whose answer is awaited; the browser saw no speech-recognition error.
async fn turn_is_answered_unseen(proxy: &TestProxy, browser: &mut Browser, reply: &str) {
    proxy.sim.script_reply(reply);
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == reply))
        .await;
    let errors = errors_seen(browser, Some(Stage::Stt));
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn stt_connection_drop_mid_turn_is_retried_on_a_fresh_session_unseen() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::Drop { after: 1 });
    let mut browser = proxy.connect().await;
    turn_is_answered_unseen(&proxy, &mut browser, "Answered anyway.").await;
    let records = proxy.sim.records();
    assert_eq!(records.realtime.len(), 2, "a fresh transcription session");
    // The turn's audio went to the fresh session again, whole.
    assert_eq!(records.realtime[1].audio, tone(0.5));
    proxy.stop().await;
}

#[tokio::test]
async fn audio_not_yet_committed_when_the_socket_drops_is_replayed_to_the_next() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    // The connection drops a fifth of a second into the utterance.
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::DropAfterAudio { bytes: 9_600 });
    let mut browser = proxy.connect().await;
    turn_is_answered_unseen(&proxy, &mut browser, "Heard all of it.").await;
    let records = proxy.sim.records();
    assert_eq!(records.realtime.len(), 2);
    // The fresh session heard the whole utterance, in order: what the dropped one had, then
    // the rest.
    assert_eq!(records.realtime[1].audio, tone(0.5));
    proxy.stop().await;
}

#[tokio::test]
async fn a_turn_lost_twice_is_reported_with_its_turn_id() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::Drop { after: 1 });
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::Drop { after: 1 });
    let mut browser = proxy.connect().await;
    let event = turn_with_error(&proxy, &mut browser, Stage::Stt).await;
    assert_eq!(
        (event.code, event.retryable, event.turn_id),
        (ErrorCode::SessionLost, true, Some(protocol::TurnId(1)))
    );
    session_goes_on(&proxy, &mut browser).await;
    assert_eq!(errors_seen(&browser, Some(Stage::Stt)).len(), 1);
    proxy.stop().await;
}
#[tokio::test]
async fn stt_error_event_mid_turn_is_retried_on_a_fresh_session_after_the_timeout() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    // The upstream reports an error in the middle of a turn and never transcribes it.
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::MidStreamError { after: 1 });
    let mut browser = proxy.connect().await;
    turn_is_answered_unseen(&proxy, &mut browser, "Answered after all.").await;
    // A transcription session that lost a turn is not trusted with it again.
    assert_eq!(proxy.sim.records().realtime.len(), 2);
    proxy.stop().await;
}
#[tokio::test]
async fn a_hung_transcription_session_is_replaced_and_its_turn_retried() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    // From the first turn on, the upstream takes audio and commits but never says anything
    // again, its socket left open: every later turn on it would time out too.
    proxy
        .sim
        .inject(SimStage::Realtime, Fault::Stall { after: 0 });
    let mut browser = proxy.connect().await;
    turn_is_answered_unseen(&proxy, &mut browser, "Here after a wait.").await;
    let records = proxy
        .sim
        .wait_until(voice_agent_e2e::DEADLINE, |r| {
            r.realtime.first().is_some_and(|c| c.closed)
        })
        .await
        .expect("the hung transcription socket is closed");
    assert_eq!(records.realtime.len(), 2, "the turn got a fresh one");
    session_goes_on(&proxy, &mut browser).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_turn_that_hangs_twice_is_reported_as_timed_out() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    for _ in 0..2 {
        proxy
            .sim
            .inject(SimStage::Realtime, Fault::Stall { after: 0 });
    }
    let mut browser = proxy.connect().await;
    let event = turn_with_error(&proxy, &mut browser, Stage::Stt).await;
    assert_eq!(
        (event.code, event.retryable, event.turn_id),
        (ErrorCode::UpstreamTimeout, true, Some(protocol::TurnId(1)))
    );
    session_goes_on(&proxy, &mut browser).await;
    proxy.stop().await;
}
#[tokio::test]
async fn a_too_short_turn_is_reported_and_the_session_goes_on() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    // 40 ms: under the 100 ms the upstream needs.
    browser.say(&tone(0.04)).await;
    let error = browser
        .wait_for(|m| matches!(m, ServerMessage::Error(_)))
        .await;
    assert!(matches!(
        error,
        ServerMessage::Error(ErrorEvent {
            stage: Stage::Stt,
            code: ErrorCode::AudioTooShort,
            ..
        })
    ));
    session_goes_on(&proxy, &mut browser).await;
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_browser_messages_are_rejected_and_never_forwarded() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    for bad in [
        "not json",
        r#"{"type":"session.update","session":{"type":"realtime"}}"#,
        r#"{"type":"cancel"}"#,
    ] {
        browser.send_text(bad).await;
        let error = browser
            .wait_for(|m| matches!(m, ServerMessage::Error(_)))
            .await;
        assert!(
            matches!(
                error,
                ServerMessage::Error(ErrorEvent {
                    stage: Stage::Proxy,
                    code: ErrorCode::InvalidMessage,
                    retryable: false,
                    ..
                })
            ),
            "{bad}: {error:?}"
        );
    }
    browser.send_binary(vec![1, 2, 3]).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::InvalidMessage))
        .await;
    // A cancel for a response that never existed is ignored.
    browser
        .send(ClientMessage::Cancel {
            response_id: protocol::ResponseId(99),
            played_samples: 0,
        })
        .await;
    session_goes_on(&proxy, &mut browser).await;
    let records = proxy.sim.records();
    assert!(
        records.realtime[0]
            .events
            .iter()
            .all(|e| e["type"] != "session.update" || e["session"]["type"] == "transcription"),
        "a browser-sent session.update reached the upstream"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_oversized_message_closes_the_session_with_1009_and_others_go_on() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut other = proxy.connect().await;
    let mut flooder = proxy.connect().await;
    flooder
        .send_binary(vec![0; proxy::http::MAX_WS_MESSAGE_BYTES + 2])
        .await;
    assert_eq!(flooder.wait_for_close().await, Some(1009));
    proxy.wait_for_sessions(|live| live == 1).await;
    session_goes_on(&proxy, &mut other).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_browser_that_stops_reading_is_cut_off_and_its_answer_cancelled_upstream() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.browser_send_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    // Far more audio than the socket buffers hold.
    let story = "This sentence only fills the socket with audio that nobody reads. ".repeat(80);
    proxy.sim.script_transcript("Tell me everything.");
    proxy.sim.script_reply(story.trim_end());
    let mut stuck = proxy.connect_with_receive_buffer(4_096).await;
    stuck.say(&tone(0.5)).await;
    // It never reads again: the proxy gives up on it and ends the session...
    proxy.wait_for_sessions(|live| live == 0).await;
    // ...closing the answer's speech requests instead of holding them.
    let records = proxy
        .sim
        .wait_until(voice_agent_e2e::DEADLINE, |r| {
            !r.speech.is_empty() && r.speech.iter().all(|s| s.outcome.is_final())
        })
        .await
        .expect("every speech request ends");
    assert!(
        records
            .speech
            .iter()
            .any(|s| s.outcome == Outcome::ClientClosed),
        "{:?}",
        records.speech.iter().map(|s| s.outcome).collect::<Vec<_>>()
    );
    // Meanwhile a browser that reads is served as usual.
    let mut healthy = proxy.connect().await;
    session_goes_on(&proxy, &mut healthy).await;
    drop(stuck);
    proxy.stop().await;
}

#[tokio::test]
async fn a_transcription_session_that_expires_while_idle_is_replaced_without_a_word() {
    let proxy = TestProxy::start(
        SimConfig {
            realtime_session_max: std::time::Duration::from_secs(5),
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let mut browser = proxy.connect().await;
    // A first turn opens the transcription session...
    session_goes_on(&proxy, &mut browser).await;
    // ...and the upstream ends it (after its maximum duration)...
    proxy
        .sim
        .wait_until(voice_agent_e2e::DEADLINE, |r| {
            r.realtime.first().is_some_and(|c| c.closed)
        })
        .await
        .expect("the upstream session expires");
    // ...and the next turn simply works, on a fresh one, with nothing said about it.
    session_goes_on(&proxy, &mut browser).await;
    assert_eq!(proxy.sim.records().realtime.len(), 2);
    let errors = errors_seen(&browser, None);
    assert!(errors.is_empty(), "{errors:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_dead_transcription_socket_is_found_by_its_unanswered_pings() {
    // Only the keepalive can notice here: turns may wait ten minutes for their transcript.
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.transcript_timeout = std::time::Duration::from_secs(600);
    })
    .await;
    let mut browser = proxy.connect().await;
    session_goes_on(&proxy, &mut browser).await;
    // A live socket answers its pings and is kept while idle, well past the stall timeout.
    let records = proxy
        .sim
        .wait_until(voice_agent_e2e::DEADLINE, |r| {
            r.realtime.first().is_some_and(|c| c.pings >= 6)
        })
        .await
        .expect("the proxy pings an idle transcription socket");
    assert_eq!(records.realtime.len(), 1);
    assert!(!records.realtime[0].closed);

    // From the next turn on the connection is dead without being closed: the pings find it,
    // and the turn goes to a fresh session.
    proxy.sim.inject(SimStage::Realtime, Fault::Freeze);
    turn_is_answered_unseen(&proxy, &mut browser, "Still here.").await;
    assert_eq!(proxy.sim.records().realtime.len(), 2, "a fresh session");
    proxy.stop().await;
}
