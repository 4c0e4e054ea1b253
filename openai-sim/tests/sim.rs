//! The OpenAI simulator over real sockets: a tokio-tungstenite client for the Realtime
//! transcription WebSocket and reqwest for Chat Completions and Speech. Tests wait on
//! conditions (events, records) with generous deadlines; none sleeps or asserts timings.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use openai_sim::{Fault, Outcome, SimConfig, SimStage};
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A token every 100 s: a stream between two tokens stays there well past [`DEADLINE`].
const GLACIAL_TOKENS_PER_SECOND: f64 = 0.01;
/// Speech at a thousandth of playback speed: every chunk after the first is due well past
/// [`DEADLINE`].
const GLACIAL_REALTIME_FACTOR: f64 = 0.001;
/// A first byte of speech due well past [`DEADLINE`].
const GLACIAL_FIRST_BYTE_MS: u64 = 100_000;

/// The `data:` payloads of an SSE body in the default framing (`data: ...` and a blank line),
/// in order; anything framed otherwise is left out.
fn sse_payloads(body: &[u8]) -> Vec<String> {
    String::from_utf8(body.to_vec())
        .expect("SSE is UTF-8")
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

// --- Realtime ---

#[tokio::test]
async fn realtime_transcribes_a_committed_turn() {
    let sim = start(SimConfig::instant()).await;
    sim.script_transcript("Hello from the script.");
    let mut ws = transcription_session(&sim).await;
    let updated = configure(&mut ws, Value::Null).await;
    assert_eq!(updated["session"]["type"], "transcription");
    assert!(updated["session"]["audio"]["input"]["turn_detection"].is_null());
    assert_eq!(
        updated["session"]["audio"]["input"]["transcription"]["language"],
        "en"
    );

    append(&mut ws, &tone(1000, 0.3)).await;
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.commit", "event_id": "evt_commit"}),
    )
    .await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    let committed = &events[position(&events, "input_audio_buffer.committed")];
    let item_id = committed["item_id"]
        .as_str()
        .expect("an item id")
        .to_owned();
    assert!(committed["previous_item_id"].is_null());
    assert!(
        of_type(&events, "input_audio_buffer.speech_started").is_empty(),
        "no VAD events"
    );
    let deltas = of_type(&events, "conversation.item.input_audio_transcription.delta");
    assert!(
        position(&events, "conversation.item.input_audio_transcription.delta")
            > position(&events, "input_audio_buffer.committed")
    );
    assert!(deltas.len() >= 3);
    let text: String = deltas
        .iter()
        .map(|delta| delta["delta"].as_str().expect("a delta"))
        .collect();
    assert_eq!(text, "Hello from the script.");
    assert!(
        deltas
            .iter()
            .all(|delta| delta["item_id"] == item_id.as_str() && delta["obfuscation"].is_string())
    );
    let completed = events.last().expect("completed");
    assert_eq!(completed["transcript"], "Hello from the script.");
    assert_eq!(completed["item_id"], item_id.as_str());
    assert_eq!(completed["usage"]["type"], "tokens");
    assert_eq!(
        completed["usage"]["input_token_details"]["audio_tokens"],
        10
    );
    // Quirks: both item event names and an unknown event type.
    assert_eq!(of_type(&events, "conversation.item.added").len(), 1);
    assert_eq!(of_type(&events, "conversation.item.created").len(), 1);
    assert!(events.iter().any(|event| {
        event["type"]
            .as_str()
            .is_some_and(|kind| kind.contains("future"))
    }));

    // An unscripted turn says how long the user spoke, and chains to the previous item.
    append_and_commit(&mut ws, &tone(1200, 0.3)).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    let committed = &events[position(&events, "input_audio_buffer.committed")];
    assert_eq!(committed["previous_item_id"], item_id.as_str());
    assert_eq!(
        events.last().expect("completed")["transcript"],
        "You spoke for 1.2 seconds."
    );

    let records = wait(&sim, |records| {
        records.realtime_audio_bytes() == 2200 * BYTES_PER_MS
    })
    .await;
    let connection = &records.realtime[0];
    assert_eq!(records.realtime_connections(), 1);
    assert_eq!(connection.query.as_deref(), Some("intent=transcription"));
    assert_eq!(
        connection.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(connection.openai_beta.is_none());
    let appends: Vec<_> = connection
        .events_of_type("input_audio_buffer.append")
        .collect();
    assert_eq!(appends.len(), 55);
    assert_eq!(appends[0]["audio_bytes"], 40 * BYTES_PER_MS);
    assert!(appends[0].get("audio").is_none());
    assert_eq!(
        connection
            .events_of_type("input_audio_buffer.commit")
            .count(),
        2
    );
    assert!(!connection.closed);

    ws.close(None).await.expect("a clean close");
    wait(&sim, |records| records.realtime[0].closed).await;
}

#[tokio::test]
async fn realtime_rejects_the_beta_header_with_close_4000() {
    let sim = start(plain()).await;
    let auth = format!("Bearer {KEY}");
    let mut ws = connect_with_headers(
        &sim,
        "intent=transcription",
        &[("authorization", &auth), ("openai-beta", "realtime=v1")],
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "beta_api_shape_disabled");
    assert_eq!(
        error["error"]["message"],
        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
    );
    let frame = next_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::from(4000));
    let records = wait(&sim, |records| {
        records.realtime.first().is_some_and(|conn| conn.closed)
    })
    .await;
    assert_eq!(
        records.realtime[0].openai_beta.as_deref(),
        Some("realtime=v1")
    );
}

#[tokio::test]
async fn realtime_session_ends_at_its_maximum_duration_with_an_error_then_a_close() {
    // Both kinds of session: transcription, and conversation.
    for query in ["intent=transcription", "model=gpt-realtime"] {
        session_expires(query).await;
    }
}

async fn session_expires(query: &str) {
    let sim = start(SimConfig {
        realtime_session_max: std::time::Duration::from_millis(300),
        ..plain()
    })
    .await;
    let (mut ws, created) = session(&sim, query).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_at = created["session"]["expires_at"]
        .as_u64()
        .expect("expires_at");
    assert!((now..=now + 2).contains(&expires_at), "{created}");
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "session_expired");
    assert_eq!(
        error["error"]["message"],
        "Your session hit the maximum duration of 0.3 seconds."
    );
    let frame = next_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Normal);
    wait(&sim, |records| {
        records.realtime.first().is_some_and(|conn| conn.closed)
    })
    .await;
}

#[tokio::test]
async fn realtime_rejects_beta_and_invalid_events_but_stays_open() {
    let sim = start(plain()).await;
    let mut ws = transcription_session(&sim).await;
    let beta = json!({"type": "transcription_session.update", "event_id": "evt_beta",
        "session": {"input_audio_format": "pcm16"}});
    send(&mut ws, beta).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["error"]["code"], "beta_api_shape_disabled");
    assert_eq!(error["error"]["event_id"], "evt_beta");

    let bad_rate = json!({"type": "session.update", "event_id": "evt_rate", "session": {"type": "transcription",
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}});
    send(&mut ws, bad_rate).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "session.audio.input.format.rate");
    assert_eq!(error["error"]["event_id"], "evt_rate");

    let beta_fields = json!({"type": "session.update", "session": {"type": "transcription", "input_audio_format": "pcm16"}});
    send(&mut ws, beta_fields).await;
    assert_eq!(
        next_event(&mut ws).await["error"]["code"],
        "unknown_parameter"
    );

    send(&mut ws, json!({"type": "made.up", "event_id": "evt_x"})).await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["error"]["param"], "type");
    assert_eq!(error["error"]["event_id"], "evt_x");

    send(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": "%%% not base64"}),
    )
    .await;
    assert_eq!(next_event(&mut ws).await["error"]["param"], "audio");

    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.cleared"
    );
    configure(&mut ws, Value::Null).await;
}

#[tokio::test]
async fn realtime_model_url_opens_a_conversation_session() {
    let sim = start(plain()).await;
    let mut ws = connect(&sim, "model=gpt-realtime").await;
    let created = next_event(&mut ws).await;
    assert_eq!(created["session"]["type"], "realtime");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "transcription"}}),
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(
        error["error"]["message"],
        "Passing a transcription session update event to a realtime session is not allowed."
    );
}

#[tokio::test]
async fn realtime_commit_under_100_ms_is_an_error() {
    let sim = start(plain()).await;
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    append(&mut ws, &tone(50, 0.3)).await;
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.commit", "event_id": "evt_short"}),
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(error["error"]["event_id"], "evt_short");
    let message = error["error"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with(
            "Error committing input audio buffer: buffer too small. Expected at least 100ms"
        ),
        "{message}"
    );
    assert!(message.contains("50.00ms"), "{message}");
    // The buffer was kept: 50 + 60 ms commit fine.
    append_and_commit(&mut ws, &tone(60, 0.3)).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(
        events.last().expect("completed")["transcript"],
        "You spoke for 0.1 seconds."
    );
}

#[tokio::test]
async fn realtime_server_vad_finds_a_tone_burst_and_commits() {
    let sim = start(SimConfig::instant()).await;
    let mut ws = transcription_session(&sim).await;
    let detection = json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500});
    let updated = configure(&mut ws, detection).await;
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"],
        500
    );
    let audio = [silence(1000), tone(800, 0.25), silence(1000)].concat();
    append(&mut ws, &audio).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    let started = &events[position(&events, "input_audio_buffer.speech_started")];
    let stopped = &events[position(&events, "input_audio_buffer.speech_stopped")];
    let committed = &events[position(&events, "input_audio_buffer.committed")];
    assert!(
        position(&events, "input_audio_buffer.speech_stopped")
            < position(&events, "input_audio_buffer.committed")
    );
    let start_ms = started["audio_start_ms"].as_u64().expect("audio_start_ms");
    let end_ms = stopped["audio_end_ms"].as_u64().expect("audio_end_ms");
    assert!(
        (650..=750).contains(&start_ms),
        "speech starts 300 ms before the tone at 1000 ms: {start_ms}"
    );
    assert!(
        (1750..=1850).contains(&end_ms),
        "the tone ends at 1800 ms: {end_ms}"
    );
    assert_eq!(started["item_id"], stopped["item_id"]);
    assert_eq!(started["item_id"], committed["item_id"]);
    assert_eq!(
        events.last().expect("completed")["transcript"],
        "You spoke for 1.1 seconds."
    );
    assert_eq!(
        of_type(&events, "input_audio_buffer.speech_started").len(),
        1
    );
}

#[tokio::test]
async fn realtime_server_vad_hears_the_simulated_speech() {
    let sim = start(SimConfig::instant()).await;
    let speech = post(
        &sim,
        "/audio/speech",
        &speech_body("Hello there, how are you today?"),
    )
    .await;
    let (pcm, error) = read_body(speech).await;
    assert!(error.is_none());
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, json!({"type": "server_vad"})).await;
    append(&mut ws, &[silence(500), pcm.clone(), silence(800)].concat()).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(
        of_type(&events, "input_audio_buffer.speech_started").len(),
        1,
        "one turn: word gaps are short"
    );
    let stopped = &events[position(&events, "input_audio_buffer.speech_stopped")];
    let audio_ms = (500 + pcm.len() / BYTES_PER_MS) as u64;
    let end_ms = stopped["audio_end_ms"].as_u64().expect("audio_end_ms");
    assert!(
        end_ms <= audio_ms && end_ms + 400 >= audio_ms,
        "{end_ms} vs {audio_ms}"
    );
}

#[tokio::test]
async fn realtime_transcription_failed_fault_keeps_the_script() {
    let sim = start(plain()).await;
    sim.script_transcript("kept for the next turn");
    sim.inject(SimStage::Realtime, Fault::TranscriptionFailed);
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    append_and_commit(&mut ws, &tone(200, 0.3)).await;
    expect_failed_transcription(&mut ws).await;
    append_and_commit(&mut ws, &tone(200, 0.3)).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(
        events.last().expect("completed")["transcript"],
        "kept for the next turn"
    );
}

#[tokio::test]
async fn realtime_mid_stream_error_ends_the_turn_not_the_session() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Realtime, Fault::MidStreamError { after: 2 });
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    append_and_commit(&mut ws, &tone(200, 0.3)).await;
    let events = events_until(&mut ws, "error").await;
    let kinds: Vec<_> = events
        .iter()
        .map(|event| event["type"].as_str().expect("a type"))
        .collect();
    assert_eq!(
        kinds,
        [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "error"
        ]
    );
    assert_eq!(events[2]["error"]["type"], "server_error");
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.cleared"
    );
}

#[tokio::test]
async fn realtime_drop_fault_closes_abruptly_mid_utterance() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Realtime, Fault::Drop { after: 0 });
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(tone(40, 0.3))}),
    )
    .await;
    let end = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("the socket ends before the deadline");
    assert!(
        matches!(end, None | Some(Err(_))),
        "expected the connection to end without a close frame: {end:?}"
    );
    let records = wait(&sim, |records| records.realtime[0].closed).await;
    assert_eq!(records.realtime[0].faults, [Fault::Drop { after: 0 }]);
}

#[tokio::test]
async fn realtime_http_fault_refuses_the_upgrade() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Realtime, Fault::rate_limited());
    let refused = tokio_tungstenite::connect_async(ws_request(&sim, "intent=transcription")).await;
    let Err(tungstenite::Error::Http(response)) = refused else {
        panic!("expected an HTTP refusal")
    };
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after-ms"], "250");
    let body: Value =
        serde_json::from_slice(response.body().as_deref().expect("a body")).expect("JSON");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // The fault was used up: the next connection works.
    transcription_session(&sim).await;
    let records = sim.records();
    assert_eq!(records.realtime[0].rejected_status, Some(429));
    assert_eq!(records.realtime_connections(), 1);
}

#[tokio::test]
async fn realtime_needs_the_configured_key() {
    let sim = start(SimConfig {
        api_key: Some("sk-right".into()),
        ..plain()
    })
    .await;
    let missing = tokio_tungstenite::connect_async(ws_request_with_headers(
        &sim,
        "intent=transcription",
        &[],
    ))
    .await;
    let Err(tungstenite::Error::Http(response)) = missing else {
        panic!("expected 401")
    };
    assert_eq!(response.status(), 401);
    let wrong = tokio_tungstenite::connect_async(ws_request_with_headers(
        &sim,
        "intent=transcription",
        &[("authorization", "Bearer sk-wrong")],
    ))
    .await;
    let Err(tungstenite::Error::Http(response)) = wrong else {
        panic!("expected 401")
    };
    let body: Value =
        serde_json::from_slice(response.body().as_deref().expect("a body")).expect("JSON");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // Browser-style auth through the subprotocol works too.
    let protocols = "realtime, openai-insecure-api-key.sk-right";
    let (mut ws, response) = tokio_tungstenite::connect_async(ws_request_with_headers(
        &sim,
        "intent=transcription",
        &[("sec-websocket-protocol", protocols)],
    ))
    .await
    .expect("subprotocol auth");
    assert_eq!(response.headers()["sec-websocket-protocol"], "realtime");
    assert_eq!(next_event(&mut ws).await["type"], "session.created");
    let records = sim.records();
    assert_eq!(
        records
            .realtime
            .iter()
            .map(|conn| conn.rejected_status)
            .collect::<Vec<_>>(),
        [Some(401), Some(401), None]
    );
}

#[tokio::test]
async fn realtime_out_of_order_completes_the_second_turn_first() {
    let sim = start(SimConfig {
        out_of_order: true,
        ..plain()
    })
    .await;
    sim.script_transcript("first");
    sim.script_transcript("second");
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    for _ in 0..2 {
        append_and_commit(&mut ws, &tone(200, 0.3)).await;
    }
    let mut events = Vec::new();
    while of_type(
        &events,
        "conversation.item.input_audio_transcription.completed",
    )
    .len()
        < 2
    {
        events.push(next_event(&mut ws).await);
    }
    let committed = of_type(&events, "input_audio_buffer.committed");
    assert_eq!(committed[1]["previous_item_id"], committed[0]["item_id"]);
    let completed = of_type(
        &events,
        "conversation.item.input_audio_transcription.completed",
    );
    assert_eq!(completed[0]["transcript"], "second");
    assert_eq!(completed[0]["item_id"], committed[1]["item_id"]);
    assert_eq!(completed[1]["transcript"], "first");
}

#[tokio::test]
async fn realtime_items_committed_back_to_back_are_transcribed_concurrently() {
    // A second of audio costs a second of transcription: the long first piece (2 s) is still
    // being transcribed when the short last one (0.2 s), committed right after, is done,
    // unless a piece waits for the ones before it.
    let sim = start(SimConfig {
        stt_first_delta_ms: 0,
        stt_ms_per_audio_s: 1_000,
        ..plain()
    })
    .await;
    let transcripts = ["The first piece of", "the same utterance", "ends here."];
    for transcript in transcripts {
        sim.script_transcript(transcript);
    }
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    // The proxy's pieces at the user's short pauses: 2 s, then 1.5 s, then a short last one.
    for ms in [2_000, 1_500, 200] {
        append_and_commit(&mut ws, &tone(ms, 0.3)).await;
    }
    let mut events = Vec::new();
    while of_type(&events, COMPLETED).len() < transcripts.len() {
        events.push(next_event(&mut ws).await);
    }
    let committed: Vec<&str> = of_type(&events, "input_audio_buffer.committed")
        .iter()
        .map(|event| event["item_id"].as_str().expect("an item id"))
        .collect();
    assert_eq!(committed.len(), 3, "committed in commit order");
    for (index, item_id) in committed.iter().enumerate() {
        let of_item: Vec<&Value> = events
            .iter()
            .filter(|event| event["item_id"] == *item_id)
            .collect();
        let completed = of_item
            .iter()
            .position(|event| event["type"] == COMPLETED)
            .expect("completed");
        let deltas: String = of_item[..completed]
            .iter()
            .filter(|event| event["type"] == DELTA)
            .map(|event| event["delta"].as_str().expect("a delta"))
            .collect();
        assert_eq!(
            deltas, transcripts[index],
            "its own deltas, before its completed"
        );
        assert_eq!(of_item[completed]["transcript"], transcripts[index]);
        assert!(
            of_item[completed + 1..]
                .iter()
                .all(|event| event["type"] != DELTA),
            "no delta after its completed"
        );
        if index > 0 {
            assert_eq!(
                events[position_of(&events, "input_audio_buffer.committed", item_id)]["previous_item_id"],
                committed[index - 1]
            );
        }
    }
    let completed_order: Vec<&str> = of_type(&events, COMPLETED)
        .iter()
        .map(|event| event["item_id"].as_str().expect("an item id"))
        .collect();
    let done_at = |item_id: &str| completed_order.iter().position(|id| *id == item_id);
    assert!(
        done_at(committed[2]) < done_at(committed[0]),
        "the short last piece does not wait for the long first one: {completed_order:?}"
    );
}

/// `…input_audio_transcription.completed`.
const COMPLETED: &str = "conversation.item.input_audio_transcription.completed";
/// `…input_audio_transcription.delta`.
const DELTA: &str = "conversation.item.input_audio_transcription.delta";

/// Where the event of type `kind` about item `item_id` is.
fn position_of(events: &[Value], kind: &str, item_id: &str) -> usize {
    events
        .iter()
        .position(|event| event["type"] == kind && event["item_id"] == item_id)
        .unwrap_or_else(|| panic!("no {kind} for {item_id}"))
}

// --- Chat Completions ---

#[tokio::test]
async fn chat_streams_the_scripted_reply_with_usage_and_done() {
    let sim = start(SimConfig::instant()).await;
    sim.script_reply("Mars is cold. Bring a jacket!");
    let mut body = bare_chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/event-stream")
    );
    assert!(response.headers().contains_key("x-request-id"));
    let (bytes, error) = read_body(response).await;
    assert!(error.is_none());
    let payloads = sse_payloads(&bytes);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|payload| serde_json::from_str(payload).expect("chunks are JSON"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    assert!(chunks.iter().all(
        |chunk| chunk["object"] == "chat.completion.chunk" && chunk["model"] == "gpt-4.1-mini"
    ));
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"].get(0))
        .filter_map(|choice| choice["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Mars is cold. Bring a jacket!");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().expect("a total") > 0);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|chunk| chunk["usage"].is_null())
    );
    let records = wait(&sim, |records| {
        records
            .chat
            .first()
            .is_some_and(|chat| chat.outcome == Outcome::Completed)
    })
    .await;
    assert_eq!(
        records.chat[0].body["messages"][1]["content"],
        "What is up?"
    );
    assert_eq!(
        records.chat[0].reply.as_deref(),
        Some("Mars is cold. Bring a jacket!")
    );
}

#[tokio::test]
async fn chat_answers_without_streaming_and_echoes_when_unscripted() {
    let sim = start(SimConfig::instant()).await;
    let response = post(&sim, "/chat/completions", &bare_chat_body(false)).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.expect("JSON");
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "You said: What is up. That is interesting; tell me more."
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert!(
        completion["usage"]["prompt_tokens"]
            .as_u64()
            .expect("prompt tokens")
            > 0
    );
}

#[tokio::test]
async fn chat_answers_the_default_reply_when_unscripted() {
    let answer = "Sure, here is a short answer. It has three sentences of about the usual \
                  length. That is all for now.";
    let sim = start(SimConfig {
        default_reply: Some(answer.to_owned()),
        ..SimConfig::instant()
    })
    .await;
    sim.script_reply("Scripted first.");
    let mut contents = Vec::new();
    for _ in 0..3 {
        let completion: Value = post(&sim, "/chat/completions", &bare_chat_body(false))
            .await
            .json()
            .await
            .expect("JSON");
        contents.push(completion["choices"][0]["message"]["content"].clone());
    }
    assert_eq!(
        contents,
        [json!("Scripted first."), json!(answer), json!(answer)]
    );
}

#[tokio::test]
async fn chat_rejects_invalid_requests_with_the_parameter() {
    let sim = start(plain()).await;
    let mut body = bare_chat_body(true);
    body["messages"] = json!([]);
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "messages");
    assert_eq!(error["error"]["code"], "empty_array");
    let not_json = http()
        .post(format!("{}/chat/completions", sim.base_url()))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .expect("an answer");
    assert_eq!(not_json.status(), 400);
    let records = sim.records();
    assert!(
        records
            .chat
            .iter()
            .all(|chat| chat.outcome == Outcome::Rejected && chat.status == 400)
    );
    assert_eq!(records.chat[1].body, json!("{not json"));
}

#[tokio::test]
async fn chat_http_faults_answer_like_openai() {
    let sim = start(plain()).await;
    let cases = [
        (Fault::bad_request(), 400, "invalid_request_error", None),
        (
            Fault::unauthorized(),
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        (
            Fault::rate_limited(),
            429,
            "requests",
            Some("rate_limit_exceeded"),
        ),
        (
            Fault::insufficient_quota(),
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        (Fault::server_error(), 500, "server_error", None),
        (Fault::overloaded(), 503, "server_error", None),
    ];
    for (fault, status, kind, code) in cases {
        sim.inject(SimStage::Chat, fault.clone());
        let response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
        assert_eq!(response.status(), status, "{fault:?}");
        let retry_after = response.headers().get("retry-after-ms").cloned();
        assert_eq!(
            retry_after.is_some(),
            code == Some("rate_limit_exceeded"),
            "{fault:?}"
        );
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["type"], kind, "{fault:?}");
        assert_eq!(error["error"]["code"], json!(code), "{fault:?}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty())
        );
        assert!(
            error["error"]
                .as_object()
                .expect("an object")
                .contains_key("param")
        );
    }
    let response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
    assert_eq!(response.status(), 200, "faults are used up");
    let records = wait(&sim, |records| {
        records.chat.len() == 7 && records.chat[6].outcome.is_final()
    })
    .await;
    assert!(
        records.chat[..6]
            .iter()
            .all(|chat| chat.outcome == Outcome::Failed && chat.fault.is_some())
    );
}

#[tokio::test]
async fn chat_mid_stream_error_sends_an_error_payload_and_no_done() {
    let sim = start(plain()).await;
    sim.script_reply("One two three four five.");
    sim.inject(SimStage::Chat, Fault::MidStreamError { after: 2 });
    let response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
    assert_eq!(response.status(), 200);
    let (bytes, _) = read_body(response).await;
    let payloads = sse_payloads(&bytes);
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    let error: Value = serde_json::from_str(&payloads[2]).expect("JSON");
    assert_eq!(error["error"]["type"], "server_error");
    assert!(error["error"]["param"].is_null() && error["error"]["code"].is_null());
    let records = wait(&sim, |records| records.chat[0].outcome.is_final()).await;
    assert_eq!(records.chat[0].outcome, Outcome::Failed);
}

#[tokio::test]
async fn chat_drop_fault_cuts_the_stream_without_done() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Chat, Fault::Drop { after: 3 });
    let response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
    let (bytes, error) = read_body(response).await;
    assert!(error.is_some(), "the body breaks off");
    let payloads = sse_payloads(&bytes);
    assert_eq!(payloads.len(), 3);
    assert!(!payloads.iter().any(|payload| payload == "[DONE]"));
    let records = wait(&sim, |records| records.chat[0].outcome.is_final()).await;
    assert_eq!(records.chat[0].outcome, Outcome::Failed);
}

#[tokio::test]
async fn chat_client_that_leaves_is_recorded_when_it_leaves() {
    let sim = start(SimConfig {
        llm_tokens_per_second: GLACIAL_TOKENS_PER_SECOND,
        ..plain()
    })
    .await;
    sim.script_reply("This reply is long enough to still be streaming when the client leaves.");
    let mut response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
    response
        .chunk()
        .await
        .expect("a first chunk")
        .expect("not the end");
    let leaving_ms = sim.now_ms();
    drop(response);
    // The next token is due long after the deadline: only the closed connection can end it.
    let records = wait(&sim, |records| records.chat[0].outcome.is_final()).await;
    let record = &records.chat[0];
    assert_eq!(record.outcome, Outcome::ClientClosed);
    let ended_ms = record.ended_ms.expect("the end is recorded");
    assert!(ended_ms >= record.received_ms, "{record:?}");
    assert!(
        ended_ms >= leaving_ms,
        "seen after the client left: {record:?}"
    );
}

#[tokio::test]
async fn chat_and_speech_record_when_they_arrived_and_ended() {
    let sim = start(plain()).await;
    let before_ms = sim.now_ms();
    let (bytes, error) =
        read_body(post(&sim, "/chat/completions", &bare_chat_body(true)).await).await;
    assert!(error.is_none() && !bytes.is_empty());
    body_bytes(post(&sim, "/audio/speech", &speech_body("Timed.")).await).await;
    let rejected = post(&sim, "/audio/speech", &json!({"model": "gpt-4o-mini-tts"})).await;
    assert_eq!(rejected.status(), 400);
    let records = wait(&sim, |records| {
        records.chat.iter().all(|r| r.outcome.is_final())
            && records.speech.len() == 2
            && records.speech.iter().all(|r| r.outcome.is_final())
    })
    .await;
    let chat = &records.chat[0];
    let speech = &records.speech[0];
    let refused = &records.speech[1];
    assert_eq!(
        (chat.outcome, speech.outcome, refused.outcome),
        (Outcome::Completed, Outcome::Completed, Outcome::Rejected)
    );
    assert!(chat.received_ms >= before_ms);
    for (received_ms, ended_ms) in [
        (chat.received_ms, chat.ended_ms),
        (speech.received_ms, speech.ended_ms),
        (refused.received_ms, refused.ended_ms),
    ] {
        assert!(ended_ms.is_some_and(|ended_ms| ended_ms >= received_ms));
    }
    assert!(
        speech.received_ms >= chat.ended_ms.expect("ended"),
        "one after the other"
    );
    assert!(sim.now_ms() >= refused.ended_ms.expect("ended"));
}

#[tokio::test]
async fn chat_stall_holds_the_stream_until_the_client_gives_up() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Chat, Fault::Stall { after: 1 });
    let mut response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
    let first = response
        .chunk()
        .await
        .expect("a first chunk")
        .expect("not the end");
    assert!(String::from_utf8_lossy(&first).contains("assistant"));
    wait(&sim, |records| {
        records.chat[0].fault == Some(Fault::Stall { after: 1 })
    })
    .await;
    let next = tokio::time::timeout(Duration::from_millis(200), response.chunk()).await;
    assert!(next.is_err(), "nothing more arrives: {next:?}");
    drop(response);
    let records = wait(&sim, |records| records.chat[0].outcome.is_final()).await;
    assert_eq!(records.chat[0].outcome, Outcome::ClientClosed);
}

#[tokio::test]
async fn requests_need_the_configured_key() {
    let sim = start(SimConfig {
        api_key: Some("sk-right".into()),
        ..plain()
    })
    .await;
    let url = format!("{}/chat/completions", sim.base_url());
    let wrong = http()
        .post(&url)
        .bearer_auth("sk-wrong-123456")
        .json(&bare_chat_body(false))
        .send()
        .await
        .expect("an answer");
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "invalid_api_key");
    assert!(
        !error["error"]["message"]
            .as_str()
            .expect("a message")
            .contains("sk-wrong-123456"),
        "the key is masked"
    );
    let missing = http()
        .post(&url)
        .json(&bare_chat_body(false))
        .send()
        .await
        .expect("an answer");
    assert_eq!(missing.status(), 401);
    let speech = http()
        .post(format!("{}/audio/speech", sim.base_url()))
        .bearer_auth("sk-wrong")
        .json(&speech_body("Hi."))
        .send()
        .await
        .expect("an answer");
    assert_eq!(speech.status(), 401);
    let right = http()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&bare_chat_body(false))
        .send()
        .await
        .expect("an answer");
    assert_eq!(right.status(), 200);
    let records = sim.records();
    assert_eq!(
        records.chat[0].authorization.as_deref(),
        Some("Bearer sk-wrong-123456")
    );
    assert_eq!(records.chat[0].outcome, Outcome::Rejected);
    assert_eq!(records.chat[1].status, 401);
}

#[tokio::test]
async fn unknown_routes_answer_invalid_url() {
    let sim = start(plain()).await;
    let response = get(&sim, "/engines/nope").await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(
        error["error"]["message"],
        "Invalid URL (GET /v1/engines/nope)"
    );
    let response = get(&sim, "/chat/completions").await;
    assert_eq!(response.status(), 404, "a known path with the wrong method");
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(
        error["error"]["message"],
        "Invalid URL (GET /v1/chat/completions)"
    );
}

// --- Speech ---

#[tokio::test]
async fn speech_streams_deterministic_pcm_whose_length_follows_the_text() {
    let sim = start(SimConfig::instant()).await;
    let mut bodies = Vec::new();
    for input in [
        "Hello there.",
        "Hello there.",
        "Hello there. This sentence is quite a bit longer.",
    ] {
        let response = post(&sim, "/audio/speech", &speech_body(input)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        assert_eq!(response.headers()["transfer-encoding"], "chunked");
        assert!(response.headers().get("content-length").is_none());
        let (bytes, error) = read_body(response).await;
        assert!(error.is_none());
        bodies.push(bytes);
    }
    assert_eq!(bodies[0], bodies[1], "same text, same bytes");
    assert!(
        bodies[2].len() > bodies[0].len() * 2,
        "longer text, longer audio"
    );
    assert!(
        bodies[0].len() > 500 * BYTES_PER_MS,
        "about 65 ms per letter"
    );
    let records = wait(&sim, |records| {
        records.speech.len() == 3 && records.speech.iter().all(|s| s.outcome.is_final())
    })
    .await;
    for (record, body) in records.speech.iter().zip(&bodies) {
        assert_eq!(record.outcome, Outcome::Completed);
        assert_eq!(
            &record.sent, body,
            "the recorded bytes are the bytes received"
        );
        assert_eq!(record.synthesized.as_ref(), body.as_slice());
        assert_eq!(record.sent_chunks.iter().sum::<usize>(), body.len());
        assert!(
            record.sent_chunks[0] % 2 == 1,
            "with quirks a chunk ends mid-sample"
        );
    }
    // An audible signal, not silence: RMS well above the noise floor.
    let samples: Vec<f64> = bodies[0]
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])) / f64::from(i16::MAX))
        .collect();
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 0.05, "rms {rms}");
}

#[tokio::test]
async fn speech_without_quirks_keeps_whole_samples() {
    let sim = start(plain()).await;
    let response = post(
        &sim,
        "/audio/speech",
        &speech_body("Whole samples only, please."),
    )
    .await;
    let (bytes, _) = read_body(response).await;
    let records = wait(&sim, |records| {
        records.speech[0].outcome == Outcome::Completed
    })
    .await;
    assert!(
        records.speech[0]
            .sent_chunks
            .iter()
            .all(|size| size % 2 == 0)
    );
    assert_eq!(records.speech[0].sent, bytes);
}

#[tokio::test]
async fn speech_client_that_leaves_is_recorded() {
    let sim = start(SimConfig {
        tts_realtime_factor: GLACIAL_REALTIME_FACTOR,
        ..plain()
    })
    .await;
    let long = "This answer goes on and on for quite a while, sentence after sentence. ".repeat(5);
    let mut response = post(&sim, "/audio/speech", &speech_body(&long)).await;
    let first = response
        .chunk()
        .await
        .expect("a first chunk")
        .expect("not the end");
    assert!(!first.is_empty());
    drop(response);
    let records = wait(&sim, |records| records.speech[0].outcome.is_final()).await;
    let record = &records.speech[0];
    assert_eq!(record.outcome, Outcome::ClientClosed);
    assert!(record.sent.len() < record.synthesized.len());
    assert_eq!(&record.sent[..first.len()], first.as_ref());
    assert!(
        record
            .ended_ms
            .is_some_and(|ended_ms| ended_ms >= record.received_ms)
    );
}

#[tokio::test]
async fn speech_client_that_leaves_during_the_first_byte_wait_is_seen_at_once() {
    let sim = start(SimConfig {
        tts_first_byte_ms: GLACIAL_FIRST_BYTE_MS,
        ..plain()
    })
    .await;
    let url = format!("{}/audio/speech", sim.base_url());
    let client = tokio::spawn(async move {
        http()
            .post(url)
            .bearer_auth(KEY)
            .json(&speech_body("Never waited for."))
            .send()
            .await
    });
    wait(&sim, |records| !records.speech.is_empty()).await;
    let leaving_ms = sim.now_ms();
    client.abort();
    // The headers are due long after the deadline: only the closed connection can end it.
    let records = wait(&sim, |records| records.speech[0].outcome.is_final()).await;
    let record = &records.speech[0];
    assert_eq!(record.outcome, Outcome::ClientClosed);
    assert!(record.sent.is_empty());
    let ended_ms = record.ended_ms.expect("the end is recorded");
    assert!(
        ended_ms >= leaving_ms && leaving_ms >= record.received_ms,
        "{record:?}"
    );
}

#[tokio::test]
async fn speech_faults_cut_the_audio_where_asked() {
    let sim = start(SimConfig::instant()).await;
    for fault in [
        Fault::Drop { after: 1001 },
        Fault::MidStreamError { after: 5000 },
    ] {
        sim.inject(SimStage::Speech, fault.clone());
        let response = post(
            &sim,
            "/audio/speech",
            &speech_body("Cut me off in the middle, please."),
        )
        .await;
        assert_eq!(response.status(), 200);
        let (bytes, error) = read_body(response).await;
        assert!(error.is_some(), "{fault:?}: the body breaks off");
        let (Fault::Drop { after } | Fault::MidStreamError { after }) = fault else {
            unreachable!()
        };
        assert_eq!(bytes.len(), after, "{fault:?}");
    }
    sim.inject(SimStage::Speech, Fault::overloaded());
    let response = post(&sim, "/audio/speech", &speech_body("Hi.")).await;
    assert_eq!(response.status(), 503);
    let records = wait(&sim, |records| {
        records.speech.len() == 3 && records.speech.iter().all(|s| s.outcome.is_final())
    })
    .await;
    assert!(
        records
            .speech
            .iter()
            .all(|record| record.outcome == Outcome::Failed)
    );
    assert_eq!(records.speech[0].sent.len(), 1001);
}

#[tokio::test]
async fn speech_rejects_what_the_schema_forbids() {
    let sim = start(plain()).await;
    let mut unknown = speech_body("Hi.");
    unknown["sample_rate"] = json!(24000);
    let mut mp3 = speech_body("Hi.");
    mp3["response_format"] = json!("mp3");
    let cases = [
        (unknown, "sample_rate", "unknown_parameter"),
        (mp3, "response_format", "unsupported_value"),
        (speech_body(""), "input", "string_below_min_length"),
    ];
    for (body, param, code) in cases {
        let response = post(&sim, "/audio/speech", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("JSON");
        assert_eq!(error["error"]["param"], param);
        assert_eq!(error["error"]["code"], code);
    }
    let response = post(&sim, "/audio/speech", &{
        let mut body = speech_body("Hi.");
        body["response_format"] = json!("mp3");
        body
    })
    .await;
    let error: Value = response.json().await.expect("JSON");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("a message")
            .contains("'pcm'")
    );
}

#[tokio::test]
async fn speech_sse_sends_deltas_and_done() {
    let sim = start(SimConfig::instant()).await;
    let mut body = speech_body("Stream me as events.");
    body["stream_format"] = json!("sse");
    let response = post(&sim, "/audio/speech", &body).await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/event-stream")
    );
    let (bytes, error) = read_body(response).await;
    assert!(error.is_none());
    let events: Vec<Value> = sse_payloads(&bytes)
        .iter()
        .map(|p| serde_json::from_str(p).expect("JSON"))
        .collect();
    let done = events.last().expect("done");
    assert_eq!(done["type"], "speech.audio.done");
    assert!(done["usage"]["total_tokens"].as_u64().expect("a total") > 0);
    let audio: Vec<u8> = events[..events.len() - 1]
        .iter()
        .flat_map(|event| {
            assert_eq!(event["type"], "speech.audio.delta");
            BASE64
                .decode(event["audio"].as_str().expect("base64"))
                .expect("valid base64")
        })
        .collect();
    let records = wait(&sim, |records| {
        records.speech[0].outcome == Outcome::Completed
    })
    .await;
    assert_eq!(records.speech[0].synthesized.as_ref(), audio.as_slice());
    assert_eq!(records.speech[0].sent, audio);
}

#[tokio::test]
async fn speech_wav_has_a_riff_header() {
    let sim = start(plain()).await;
    let mut body = speech_body("Wave.");
    body["response_format"] = json!("wav");
    let response = post(&sim, "/audio/speech", &body).await;
    let (bytes, _) = read_body(response).await;
    assert_eq!(&bytes[..4], b"RIFF");
    let data_len = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) as usize;
    assert_eq!(data_len + 44, bytes.len());
}

#[tokio::test]
async fn shutdown_ends_streams_and_stops_listening() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Chat, Fault::Stall { after: 1 });
    let base = sim.base_url();
    let mut response = post(&sim, "/chat/completions", &bare_chat_body(true)).await;
    response.chunk().await.expect("a first chunk");
    let mut ws = transcription_session(&sim).await;
    tokio::time::timeout(DEADLINE, sim.shutdown())
        .await
        .expect("shutdown completes");
    let frame = next_close(&mut ws).await;
    assert_eq!(frame.code, CloseCode::Away);
    let rest = tokio::time::timeout(DEADLINE, response.chunk())
        .await
        .expect("the stalled body ends");
    assert!(
        rest.is_err(),
        "the stalled stream is cut, not completed: {rest:?}"
    );
    let after = http()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(KEY)
        .json(&bare_chat_body(false))
        .send()
        .await;
    assert!(after.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn a_client_that_gives_up_before_the_headers_is_recorded() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Speech, Fault::Stall { after: 0 });
    let request = http()
        .post(format!("{}/audio/speech", sim.base_url()))
        .bearer_auth(KEY)
        .timeout(Duration::from_millis(200))
        .json(&speech_body("Never answered."))
        .send()
        .await;
    assert!(request.is_err_and(|error| error.is_timeout()));
    let records = wait(&sim, |records| records.speech[0].outcome.is_final()).await;
    assert_eq!(records.speech[0].outcome, Outcome::ClientClosed);
    assert!(records.speech[0].sent.is_empty());
}

#[tokio::test]
async fn default_latencies_still_deliver_everything_in_order() {
    let sim = start(SimConfig::default()).await;
    sim.script_transcript("Paced words arrive one by one.");
    sim.script_reply("Paced reply. Two sentences.");
    let mut ws = transcription_session(&sim).await;
    configure(&mut ws, Value::Null).await;
    append_and_commit(&mut ws, &tone(300, 0.3)).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    assert_eq!(
        events.last().expect("completed")["transcript"],
        "Paced words arrive one by one."
    );
    let mut body = bare_chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let (bytes, error) = read_body(post(&sim, "/chat/completions", &body).await).await;
    assert!(error.is_none());
    assert_eq!(
        sse_payloads(&bytes).last().map(String::as_str),
        Some("[DONE]")
    );
    let (pcm, error) =
        read_body(post(&sim, "/audio/speech", &speech_body("Paced audio.")).await).await;
    assert!(error.is_none());
    let records = wait(&sim, |records| {
        records
            .speech
            .first()
            .is_some_and(|s| s.outcome == Outcome::Completed)
    })
    .await;
    assert_eq!(records.speech[0].sent, pcm);
    assert_eq!(records.realtime[0].sent_count("session.created"), 1);
    assert_eq!(
        records.realtime[0].sent_count("conversation.item.input_audio_transcription.completed"),
        1
    );
}
