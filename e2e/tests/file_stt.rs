//! File transcription (`STT_MODE=file`): each turn is uploaded as a WAV to
//! `POST /v1/audio/transcriptions` and its transcript feeds the same turn pipeline. A whole
//! conversation, the plain-JSON path of whisper-1, and every fault class of the upload.

use std::time::Duration;

use openai_sim::{Fault, SimConfig, SimStage};
use protocol::{ErrorCode, ServerMessage, Stage, TurnId};
use proxy::config::SttMode;
use voice_agent_e2e::{Browser, TestProxy, tone};

async fn file_proxy(configure: impl FnOnce(&mut proxy::config::Config)) -> TestProxy {
    TestProxy::start(SimConfig::default(), |config| {
        config.stt_mode = SttMode::File;
        configure(config);
    })
    .await
}

/// One turn that is answered with `reply`.
async fn answered(proxy: &TestProxy, browser: &mut Browser, reply: &str) {
    proxy.sim.script_reply(reply);
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == reply))
        .await;
}

#[tokio::test]
async fn a_conversation_runs_on_file_transcription() {
    let proxy = file_proxy(|_| {}).await;
    let mut browser = proxy.connect().await;
    for (question, reply) in [
        ("What is the time?", "Noon."),
        ("And the date?", "The first."),
    ] {
        proxy.sim.script_transcript(question);
        answered(&proxy, &mut browser, reply).await;
        assert!(
            browser.messages().iter().any(
                |m| matches!(m, ServerMessage::TranscriptFinal { text, .. } if text == question)
            )
        );
    }
    let records = proxy.sim.records();
    assert!(
        records.realtime.is_empty(),
        "no Realtime socket in file mode"
    );
    assert_eq!(records.transcription.len(), 2);
    let upload = &records.transcription[0];
    assert_eq!(upload.body["model"], "gpt-4o-mini-transcribe");
    assert_eq!(upload.body["stream"], "true");
    assert!(upload.streamed);
    assert_eq!(upload.file_name.as_deref(), Some("turn.wav"));
    // The turn's audio, whole, behind a 44-byte WAV header.
    assert_eq!(&upload.file[..4], b"RIFF");
    assert_eq!(&upload.file[44..], &tone(0.5)[..]);
    // Streamed deltas reached the page before the final transcript.
    assert!(
        browser
            .messages()
            .iter()
            .any(|m| matches!(m, ServerMessage::TranscriptDelta { .. }))
    );
    // The second request remembers the first exchange.
    let chat = &records.chat[1].body["messages"];
    assert_eq!(chat[1]["content"], "What is the time?");
    assert_eq!(chat[2]["content"], "Noon.");
    proxy.stop().await;
}

#[tokio::test]
async fn whisper_is_asked_for_plain_json() {
    let proxy = file_proxy(|config| config.stt_model = "whisper-1".into()).await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("Plain and simple.");
    answered(&proxy, &mut browser, "Indeed.").await;
    let records = proxy.sim.records();
    assert!(records.transcription[0].body.get("stream").is_none());
    assert!(!records.transcription[0].streamed);
    proxy.stop().await;
}

/// A turn whose upload takes `fault`: the browser gets an `stt` error with `code` and the
/// turn's id, then the next turn works.
async fn fault_case(fault: Fault, times: usize, code: ErrorCode) {
    let proxy = file_proxy(|config| {
        config.limits.upstream_response_timeout = Duration::from_millis(500);
        config.limits.upstream_retry_budget = Duration::from_secs(2);
        config.upstream_stall_timeout = Duration::from_millis(500);
    })
    .await;
    let mut browser = proxy.connect().await;
    for _ in 0..times {
        proxy.sim.inject(SimStage::Transcription, fault.clone());
    }
    browser.say(&tone(0.5)).await;
    let message = browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.stage == Stage::Stt))
        .await;
    let ServerMessage::Error(event) = message else {
        unreachable!()
    };
    assert_eq!(
        (event.code, event.turn_id),
        (code, Some(TurnId(1))),
        "{fault:?}: {event:?}"
    );
    answered(&proxy, &mut browser, "Back again.").await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_auth_failure_is_reported_with_its_turn() {
    fault_case(Fault::unauthorized(), 1, ErrorCode::UpstreamAuth).await;
}

#[tokio::test]
async fn a_bad_request_is_reported_with_its_turn() {
    fault_case(Fault::bad_request(), 1, ErrorCode::UpstreamBadRequest).await;
}

#[tokio::test]
async fn a_persistent_server_error_is_reported_after_the_retries() {
    fault_case(Fault::server_error(), 3, ErrorCode::UpstreamUnavailable).await;
}

#[tokio::test]
async fn a_stream_cut_short_is_reported() {
    fault_case(Fault::Drop { after: 1 }, 1, ErrorCode::StreamInterrupted).await;
}

#[tokio::test]
async fn an_error_mid_stream_is_reported() {
    fault_case(
        Fault::MidStreamError { after: 1 },
        1,
        ErrorCode::StreamInterrupted,
    )
    .await;
}

#[tokio::test]
async fn a_silent_upstream_is_reported_as_a_timeout() {
    fault_case(Fault::Stall { after: 0 }, 3, ErrorCode::UpstreamTimeout).await;
}

#[tokio::test]
async fn rate_limits_and_overloads_are_retried_unseen() {
    let proxy = file_proxy(|_| {}).await;
    proxy
        .sim
        .inject(SimStage::Transcription, Fault::rate_limited());
    proxy
        .sim
        .inject(SimStage::Transcription, Fault::overloaded());
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("Third time lucky.");
    answered(&proxy, &mut browser, "It worked.").await;
    assert_eq!(proxy.sim.records().transcription.len(), 3);
    assert!(browser.errors().is_empty(), "{:?}", browser.errors());
    proxy.stop().await;
}
