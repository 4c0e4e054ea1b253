//! The HTTP control surface under `/_sim/` over real HTTP on loopback: off unless asked for,
//! then scripts, faults, records, configuration and reset, as a test in another language
//! would drive the binary.

#[allow(dead_code)]
mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use openai_sim::{SimConfig, Simulator};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

fn controlled() -> SimConfig {
    SimConfig {
        control: true,
        ..plain()
    }
}

async fn control(
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http().request(method, format!("{}{path}", sim.control_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    tokio::time::timeout(DEADLINE, request.send())
        .await
        .expect("an answer before the deadline")
        .expect("the simulator answers")
}

async fn control_json(
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let response = control(sim, method, path, body).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn control_paths_answer_like_unknown_paths_unless_enabled() {
    let sim = start(plain()).await;
    for (method, path) in [
        (Method::POST, "/replies"),
        (Method::POST, "/transcripts"),
        (Method::POST, "/faults"),
        (Method::GET, "/faults"),
        (Method::GET, "/records"),
        (Method::GET, "/config"),
        (Method::PATCH, "/config"),
        (Method::POST, "/reset"),
    ] {
        let body = (method != Method::GET).then(|| json!({"text": "x"}));
        let response = control(&sim, method.clone(), path, body).await;
        assert_eq!(response.status(), 404, "{method} {path}");
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(
            error["error"]["message"],
            format!("Invalid URL ({method} /_sim{path})")
        );
    }
    sim.set_config(|config| config.control = true);
    let config = control_json(&sim, Method::GET, "/config", None).await;
    assert_eq!(config["control"], true);
}

#[tokio::test]
async fn control_scripts_replies_and_transcripts() {
    let sim = start(controlled()).await;
    let queued = control_json(
        &sim,
        Method::POST,
        "/replies",
        Some(json!({"text": "Scripted over HTTP."})),
    )
    .await;
    assert_eq!(queued, json!({"queued": 1}));
    let queued = control_json(
        &sim,
        Method::POST,
        "/transcripts",
        Some(json!({"texts": ["First turn.", "Second turn."]})),
    )
    .await;
    assert_eq!(queued, json!({"queued": 2}));
    let bad = control(&sim, Method::POST, "/replies", Some(json!({"texts": [1]}))).await;
    assert_eq!(bad.status(), 400);
    let events = parse_sse(&body_bytes(post(&sim, "/chat/completions", &chat_body()).await).await);
    assert_eq!(chat_text(&events), "Scripted over HTTP.");
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    for expected in ["First turn.", "Second turn."] {
        append_and_commit(&mut ws, &tone(300, 0.3)).await;
        let events = events_until(
            &mut ws,
            "conversation.item.input_audio_transcription.completed",
        )
        .await;
        assert_eq!(events.last().expect("completed")["transcript"], expected);
    }
}

#[tokio::test]
async fn control_queues_faults_in_json_form_or_by_preset() {
    let sim = start(controlled()).await;
    let queued = control_json(
        &sim,
        Method::POST,
        "/faults",
        Some(json!({
            "stage": "chat",
            "fault": {"kind": "http", "status": 418, "error_type": "teapot", "message": "No coffee."},
        })),
    )
    .await;
    assert_eq!(queued["queued"], 1);
    assert_eq!(queued["fault"]["kind"], "http");
    control_json(
        &sim,
        Method::POST,
        "/faults",
        Some(json!({"stage": "speech", "preset": "bad_gateway_html"})),
    )
    .await;
    control_json(
        &sim,
        Method::POST,
        "/faults",
        Some(json!({"stage": "realtime", "fault": {"kind": "transcription_failed"}})),
    )
    .await;
    let pending = control_json(&sim, Method::GET, "/faults", None).await;
    assert_eq!(pending["chat"][0]["status"], 418);
    assert_eq!(pending["speech"][0]["status"], 502);
    assert_eq!(pending["realtime"][0]["kind"], "transcription_failed");
    for bad in [
        json!({"stage": "chat", "preset": "no_such_preset"}),
        json!({"stage": "moon", "preset": "server_error"}),
        json!({"stage": "chat"}),
        json!({"stage": "chat", "fault": {"kind": "nope"}}),
    ] {
        let response = control(&sim, Method::POST, "/faults", Some(bad.clone())).await;
        assert_eq!(response.status(), 400, "{bad}");
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let chat = post(&sim, "/chat/completions", &chat_body()).await;
    assert_eq!(chat.status(), 418);
    let error: Value = chat.json().await.expect("JSON");
    assert_eq!(error["error"]["message"], "No coffee.");
    let speech = post(&sim, "/audio/speech", &speech_body("Hi.")).await;
    assert_eq!(speech.status(), 502);
    let pending = control_json(&sim, Method::GET, "/faults", None).await;
    assert_eq!(pending["chat"], json!([]));
    assert_eq!(pending["speech"], json!([]));
    assert_eq!(pending["realtime"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn control_serves_the_records_as_json() {
    let sim = start(controlled()).await;
    let events = parse_sse(&body_bytes(post(&sim, "/chat/completions", &chat_body()).await).await);
    assert!(!events.is_empty());
    let pcm = body_bytes(post(&sim, "/audio/speech", &speech_body("Recorded speech.")).await).await;
    let rust = wait(&sim, |records| {
        records.chat.len() == 1
            && records.speech.len() == 1
            && records.chat[0].outcome.is_final()
            && records.speech[0].outcome.is_final()
    })
    .await;
    let records = control_json(&sim, Method::GET, "/records", None).await;
    let chat = &records["chat"][0];
    assert_eq!(chat["body"]["model"], "gpt-4.1-mini");
    assert_eq!(chat["body"]["stream_options"]["include_usage"], true);
    assert_eq!(chat["status"], 200);
    assert_eq!(chat["outcome"], "completed");
    assert_eq!(chat["reply"], json!(rust.chat[0].reply));
    // The same moments (serde_json's default float parsing may differ in the last bit).
    let same_ms = |json: &Value, ms: Option<f64>| match (json.as_f64(), ms) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => json.is_null(),
        _ => false,
    };
    assert!(
        same_ms(&chat["received_ms"], Some(rust.chat[0].received_ms)),
        "{chat}"
    );
    assert!(same_ms(&chat["ended_ms"], rust.chat[0].ended_ms), "{chat}");
    assert!(chat["ended_ms"].as_f64() <= records["now_ms"].as_f64());
    // The chat and speech requests, and this one: each on a connection of its own.
    assert_eq!(records["connections_accepted"], 3);
    let speech = &records["speech"][0];
    assert_eq!(speech["outcome"], "completed");
    let sent = BASE64
        .decode(speech["sent"].as_str().expect("base64 bytes"))
        .expect("valid base64");
    assert_eq!(sent, pcm);
    assert_eq!(records["realtime"], json!([]));
    let light = control_json(&sim, Method::GET, "/records?audio=false", None).await;
    assert!(light["speech"][0].get("sent").is_none());
    assert!(light["speech"][0].get("synthesized").is_none());
    assert_eq!(light["speech"][0]["sent_chunks"], speech["sent_chunks"]);
}

#[tokio::test]
async fn control_patches_the_configuration_at_run_time() {
    let sim = start(SimConfig {
        quirks: true,
        ..controlled()
    })
    .await;
    let config = control_json(&sim, Method::GET, "/config", None).await;
    assert_eq!(config["quirks"], true);
    assert_eq!(config["api_key_set"], false);
    assert!(config.get("api_key").is_none());
    let patched = control_json(
        &sim,
        Method::PATCH,
        "/config",
        Some(json!({
            "quirks": false,
            "llm_first_token_ms": 5,
            "realtime_session_max_ms": 60000,
            "sse_style": {"crlf": true},
            "api_key": "sk-patched",
        })),
    )
    .await;
    assert_eq!(patched["quirks"], false);
    assert_eq!(
        patched["sse_style"],
        json!({"keep_alive_comments": false, "event_lines": false, "crlf": true})
    );
    assert_eq!(patched["api_key_set"], true);
    assert!(patched.get("api_key").is_none(), "the key never leaves");
    let config = sim.config();
    assert!(!config.quirks);
    assert_eq!(config.llm_first_token_ms, 5);
    assert_eq!(config.realtime_session_max.as_millis(), 60_000);
    assert_eq!(config.api_key.as_deref(), Some("sk-patched"));
    let refused = post(&sim, "/chat/completions", &chat_body()).await;
    assert_eq!(refused.status(), 401, "the patched key is required");
    // A merge keeps what the patch leaves out, the key included; POST works like PATCH.
    control_json(
        &sim,
        Method::POST,
        "/config",
        Some(json!({"sse_style": {"event_lines": true}})),
    )
    .await;
    let config = sim.config();
    assert!(config.sse_style.crlf && config.sse_style.event_lines);
    assert_eq!(config.api_key.as_deref(), Some("sk-patched"));
    for bad in [
        json!({"no_such_field": 1}),
        json!({"quirks": "yes"}),
        json!({"sse_style": {"colour": true}}),
        json!([1, 2]),
    ] {
        let response = control(&sim, Method::PATCH, "/config", Some(bad.clone())).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(sim.config(), config, "a refused patch changes nothing");
}

#[tokio::test]
async fn control_reset_forgets_scripts_faults_records_and_config_changes() {
    let sim = start(controlled()).await;
    post(&sim, "/chat/completions", &chat_body()).await;
    control_json(
        &sim,
        Method::POST,
        "/replies",
        Some(json!({"text": "Forgotten."})),
    )
    .await;
    control_json(
        &sim,
        Method::POST,
        "/faults",
        Some(json!({"stage": "chat", "preset": "server_error"})),
    )
    .await;
    control_json(&sim, Method::PATCH, "/config", Some(json!({"seed": 42}))).await;
    let reset = control_json(&sim, Method::POST, "/reset", None).await;
    assert_eq!(reset, json!({"reset": true}));
    let mut records = control_json(&sim, Method::GET, "/records", None).await;
    let now_ms = records
        .as_object_mut()
        .and_then(|records| records.remove("now_ms"));
    assert!(now_ms.is_some_and(|ms| ms.as_f64().is_some_and(|ms| ms > 0.0)));
    let empty = json!({"realtime": [], "chat": [], "speech": [], "transcription": []});
    let mut no_records = empty.clone();
    // Only the connection that asked for them since the reset.
    no_records["connections_accepted"] = json!(1);
    assert_eq!(records, no_records);
    let pending = control_json(&sim, Method::GET, "/faults", None).await;
    assert_eq!(pending, empty);
    assert_eq!(
        sim.config(),
        controlled(),
        "the starting configuration is back"
    );
    let response = post(&sim, "/chat/completions", &chat_body()).await;
    assert_eq!(response.status(), 200, "no fault left");
    let events = parse_sse(&body_bytes(response).await);
    assert_ne!(chat_text(&events), "Forgotten.", "no script left");
    assert_eq!(sim.records().chat.len(), 1);
}
