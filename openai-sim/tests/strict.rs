//! Where OpenAI is strict, the simulator is too: unknown models, arguments and voices get the
//! service's errors, `GET /v1/models` lists what is served, and everything the proxy sends
//! is accepted.

#[allow(dead_code)]
mod support;

use openai_sim::{Fault, Outcome, SimConfig, SimStage};
use serde_json::{Value, json};
use support::*;

/// Models the proxy uses by default and its tests, the browser tests and common clients pick.
const REQUIRED_MODELS: &[&str] = &[
    "gpt-4o-mini-transcribe",
    "gpt-4o-transcribe",
    "whisper-1",
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-nano",
    "gpt-5-mini",
    "gpt-4o-mini-tts",
    "tts-1",
    "tts-1-hd",
    "gpt-realtime",
];

fn not_found_message(model: &str) -> String {
    format!("The model `{model}` does not exist or you do not have access to it.")
}

#[tokio::test]
async fn models_are_listed_in_openai_list_shape_and_retrieved_one_by_one() {
    let sim = start(SimConfig {
        extra_models: vec!["ft:gpt-4.1-mini:acme::abc123".into()],
        ..plain()
    })
    .await;
    let response = get(&sim, "/models").await;
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.expect("JSON");
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().expect("a data array");
    for model in data {
        let fields: Vec<&str> = model
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, ["id", "object", "created", "owned_by"], "{model}");
        assert_eq!(model["object"], "model");
        assert!(
            model["created"].is_u64() && model["owned_by"].is_string(),
            "{model}"
        );
    }
    let ids: Vec<&str> = data
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    for required in REQUIRED_MODELS
        .iter()
        .chain(&["ft:gpt-4.1-mini:acme::abc123"])
    {
        assert!(ids.contains(required), "{required} is listed: {ids:?}");
    }
    let one: Value = get(&sim, "/models/gpt-4.1-mini")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(one["id"], "gpt-4.1-mini");
    assert_eq!(one["object"], "model");
    let missing = get(&sim, "/models/gpt-nope").await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.expect("JSON");
    assert_eq!(error["error"]["message"], not_found_message("gpt-nope"));
    assert_eq!(error["error"]["code"], "model_not_found");
    let anonymous = http()
        .get(format!("{}/models", sim.base_url()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn chat_refuses_an_unknown_model_with_404_model_not_found_and_takes_no_fault() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Chat, Fault::server_error());
    let mut body = chat_body();
    body["model"] = json!("gpt-nope");
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(
        error,
        json!({"error": {
            "message": not_found_message("gpt-nope"),
            "type": "invalid_request_error",
            "param": null,
            "code": "model_not_found",
        }})
    );
    let response = post(&sim, "/chat/completions", &chat_body()).await;
    assert_eq!(response.status(), 500, "the valid request takes the fault");
    let records = sim.records();
    assert_eq!(records.chat[0].status, 404);
    assert_eq!(records.chat[0].outcome, Outcome::Rejected);
    assert!(records.chat[0].fault.is_none());
}

#[tokio::test]
async fn chat_refuses_unrecognized_arguments_and_models_of_other_apis() {
    let sim = start(plain()).await;
    let mut body = chat_body();
    body["foo"] = json!(1);
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(
        error,
        json!({"error": {
            "message": "Unrecognized request argument supplied: foo",
            "type": "invalid_request_error",
            "param": null,
            "code": null,
        }})
    );
    let mut body = chat_body();
    body["model"] = json!("tts-1");
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("JSON");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("This is not a chat model")),
        "{error}"
    );
    // Fields real clients send are all known.
    let mut body = chat_body();
    for (field, value) in [
        ("temperature", json!(0.7)),
        ("top_p", json!(1)),
        ("user", json!("u-1")),
        ("seed", json!(3)),
        ("stop", json!(["\n\n"])),
        ("presence_penalty", json!(0)),
        ("frequency_penalty", json!(0)),
        ("n", json!(1)),
        ("store", json!(false)),
        ("metadata", json!({"k": "v"})),
        ("parallel_tool_calls", json!(true)),
        ("service_tier", json!("auto")),
    ] {
        body[field] = value;
    }
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn speech_refuses_unknown_models_and_voices() {
    let sim = start(plain()).await;
    let mut body = speech_body("Hi.");
    body["model"] = json!("tts-nope");
    let response = post(&sim, "/audio/speech", &body).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["message"], not_found_message("tts-nope"));
    assert_eq!(error["error"]["code"], "model_not_found");
    let mut body = speech_body("Hi.");
    body["voice"] = json!("robot");
    let response = post(&sim, "/audio/speech", &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["param"], "voice");
    assert_eq!(error["error"]["code"], "invalid_value");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("Invalid value: 'robot'.")
                && message.contains("'coral'")),
        "{error}"
    );
    let mut body = speech_body("Hi.");
    body["voice"] = json!({"id": "voice_1234"});
    assert_eq!(post(&sim, "/audio/speech", &body).await.status(), 200);
    for (model, voice) in [
        ("tts-1", "alloy"),
        ("tts-1-hd", "nova"),
        ("gpt-4o-mini-tts", "marin"),
    ] {
        let mut body = speech_body("Hi.");
        body["model"] = json!(model);
        body["voice"] = json!(voice);
        assert_eq!(
            post(&sim, "/audio/speech", &body).await.status(),
            200,
            "{model}"
        );
    }
}

#[tokio::test]
async fn realtime_refuses_an_unknown_transcription_model_and_stays_open() {
    let sim = start(plain()).await;
    let mut ws = transcription_session(&sim).await;
    let mut update = session_update("gpt-nope", Value::Null);
    update["event_id"] = json!("evt_model");
    send(&mut ws, update).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(error["error"]["message"], not_found_message("gpt-nope"));
    assert_eq!(error["error"]["event_id"], "evt_model");
    assert_eq!(
        error["error"]["param"],
        "session.audio.input.transcription.model"
    );
    for model in ["gpt-4o-transcribe", "whisper-1", "gpt-4o-mini-transcribe"] {
        send(&mut ws, session_update(model, Value::Null)).await;
        let updated = next_event(&mut ws).await;
        assert_eq!(updated["type"], "session.updated", "{updated}");
        assert_eq!(
            updated["session"]["audio"]["input"]["transcription"]["model"],
            model
        );
    }
}

#[tokio::test]
async fn realtime_model_urls_nobody_serves_are_refused_after_the_upgrade() {
    let sim = start(plain()).await;
    for (query, code, message) in [
        (
            "model=gpt-nope",
            "model_not_found",
            not_found_message("gpt-nope"),
        ),
        (
            "model=whisper-1",
            "invalid_value",
            "Model \"whisper-1\" is not supported in realtime mode.".to_owned(),
        ),
    ] {
        let mut ws = connect(&sim, query).await;
        let error = next_event(&mut ws).await;
        assert_eq!(error["type"], "error", "{query}: {error}");
        assert_eq!(error["error"]["code"], code, "{query}");
        assert_eq!(error["error"]["message"], message, "{query}");
        assert_eq!(u16::from(next_close(&mut ws).await.code), 4000, "{query}");
    }
    let mut ws = connect(&sim, "model=gpt-realtime").await;
    assert_eq!(next_event(&mut ws).await["type"], "session.created");
}

/// The exact requests of `proxy/src/upstream/{chat,speech,realtime}.rs`, for each of the
/// proxy's turn-detection modes, all succeed.
#[tokio::test]
async fn everything_the_proxy_sends_is_accepted() {
    let sim = start(plain()).await;
    let response = http()
        .post(format!("{}/chat/completions", sim.base_url()))
        .bearer_auth(KEY)
        .header("accept", "text/event-stream")
        .json(&chat_body())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let events = parse_sse(&body_bytes(response).await);
    assert_eq!(
        events.last().map(|event| event.data.as_str()),
        Some("[DONE]")
    );
    for instructions in [None, Some("Speak warmly and briskly.")] {
        let mut body = speech_body("Sure, here's the answer.");
        if let Some(instructions) = instructions {
            body["instructions"] = json!(instructions);
        }
        let response = http()
            .post(format!("{}/audio/speech", sim.base_url()))
            .bearer_auth(KEY)
            .header("accept", "application/octet-stream")
            .json(&body)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 200, "{body}");
        assert!(!body_bytes(response).await.is_empty());
    }
    for turn_detection in [
        Value::Null,
        json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}),
        json!({"type": "semantic_vad", "eagerness": "auto"}),
    ] {
        let mut ws = transcription_session(&sim).await;
        send(
            &mut ws,
            session_update("gpt-4o-mini-transcribe", turn_detection.clone()),
        )
        .await;
        let updated = next_event(&mut ws).await;
        assert_eq!(
            updated["type"], "session.updated",
            "{turn_detection}: {updated}"
        );
    }
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    sim.script_transcript("Accepted.");
    append_and_commit(&mut ws, &tone(500, 0.3)).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(events.last().expect("completed")["transcript"], "Accepted.");
    let records = wait(&sim, |records| records.chat.len() == 1).await;
    assert!(records.speech.iter().all(|speech| speech.status == 200));
}
