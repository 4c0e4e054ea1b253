//! Realtime conversation sessions (speech to speech, docs/openai-wire.md §6) over a real
//! socket: configuration, committed turns and their transcription, responses with their
//! audio and transcript, cancels, barge-in, truncation, items, and faults. Every wait has a
//! generous deadline; no test sleeps or asserts timings.

#[allow(dead_code)]
mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use openai_sim::{Fault, Records, SimConfig, SimStage, Simulator};
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A reply that takes several seconds to speak: at real-time pacing it is still streaming
/// when the test reacts to its first audio.
const LONG_REPLY: &str = "Well, that is a long story, and I will tell it slowly from the very \
    beginning, with every detail you could possibly wish for, and then some more details after \
    that, until the very end.";

/// Exact event sequences, with audio streamed at playback speed (one second per second).
fn paced() -> SimConfig {
    SimConfig {
        tts_realtime_factor: 1.0,
        ..plain()
    }
}

/// A conversation session (`?model=gpt-realtime`), past its `session.created`.
async fn conversation_session(sim: &Simulator) -> (Ws, Value) {
    session(sim, "model=gpt-realtime").await
}

/// A conversation session whose client commits turns and asks for responses itself
/// (`turn_detection: null`).
async fn manual_session(sim: &Simulator) -> Ws {
    let (mut ws, _) = conversation_session(sim).await;
    configure_input(&mut ws, json!({"turn_detection": null})).await;
    ws
}

/// A simulator at playback speed and a session that asked it for [`LONG_REPLY`], which is
/// still streaming when the test reacts.
async fn long_response() -> (Simulator, Ws) {
    let sim = start(paced()).await;
    sim.script_reply(LONG_REPLY);
    let mut ws = manual_session(&sim).await;
    create_response(&mut ws).await;
    (sim, ws)
}

/// A simulator with `fault` queued for the Realtime stage, and a conversation session on it.
async fn faulty_session(fault: Fault) -> (Simulator, Ws) {
    let sim = start(plain()).await;
    sim.inject(SimStage::Realtime, fault);
    let (ws, _) = conversation_session(&sim).await;
    (sim, ws)
}

/// Asks for a response with the session's settings.
async fn create_response(ws: &mut Ws) {
    send(ws, json!({"type": "response.create"})).await;
}

/// Asks for a response with the session's settings; its events up to `response.done`.
async fn respond(ws: &mut Ws) -> Vec<Value> {
    create_response(ws).await;
    events_until(ws, "response.done").await
}

/// The `response` of the `response.done` that ends `events`.
fn done_response(events: &[Value]) -> &Value {
    let done = events.last().expect("response.done");
    assert_eq!(done["type"], "response.done", "{done}");
    &done["response"]
}

/// The records once the first response of the first connection has `status`.
async fn first_response_ended(sim: &Simulator, status: &str) -> Records {
    wait(sim, |records| {
        records.realtime[0]
            .responses
            .first()
            .is_some_and(|response| response.status == status)
    })
    .await
}

/// Sends `event`; the events up to the `error` that refuses it (a response's events may
/// come first).
async fn until_refused(ws: &mut Ws, event: Value) -> Vec<Value> {
    send(ws, event).await;
    events_until(ws, "error").await
}

/// Truncates content 0 of `item_id` at `audio_end_ms`; returns the answer.
async fn truncate(ws: &mut Ws, item_id: &str, audio_end_ms: u64) -> Value {
    let truncate = json!({"type": "conversation.item.truncate", "item_id": item_id,
        "content_index": 0, "audio_end_ms": audio_end_ms});
    send(ws, truncate).await;
    next_event(ws).await
}

/// Sends a realtime `session.update` with this `audio.input`; returns the `session.updated`.
async fn configure_input(ws: &mut Ws, input: Value) -> Value {
    let update = json!({"type": "session.update",
        "session": {"type": "realtime", "audio": {"input": input}}});
    update_session(ws, update).await
}

/// The speech the simulator synthesizes for `text` with the default voice (what a response
/// speaking `text` sends).
async fn speech_of(sim: &Simulator, text: &str) -> Vec<u8> {
    let body = json!({"model": "gpt-4o-mini-tts", "input": text, "voice": "marin", "response_format": "pcm"});
    body_bytes(post(sim, "/audio/speech", &body).await).await
}

/// The types of `events`, in order.
fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["type"].as_str().expect("a type"))
        .collect()
}

/// The concatenated `delta`s of the events of type `kind`.
fn deltas(events: &[Value], kind: &str) -> String {
    of_type(events, kind)
        .iter()
        .map(|event| event["delta"].as_str().expect("a delta"))
        .collect()
}

/// The decoded audio of a response's `response.output_audio.delta`s.
fn audio_of(events: &[Value]) -> Vec<u8> {
    of_type(events, "response.output_audio.delta")
        .iter()
        .flat_map(|event| {
            BASE64
                .decode(event["delta"].as_str().expect("a delta"))
                .expect("base64 audio")
        })
        .collect()
}

/// Whether an event belongs to the user's input transcription (unordered with responses).
fn is_input_transcription(event: &Value) -> bool {
    event["type"]
        .as_str()
        .is_some_and(|kind| kind.starts_with("conversation.item.input_audio_transcription."))
}

/// Reads until the socket ends; panics on a close frame.
async fn expect_abrupt_end(ws: &mut Ws) {
    loop {
        let next = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("the socket ends before the deadline");
        match next {
            None | Some(Err(_)) => return,
            Some(Ok(Message::Close(frame))) => panic!("expected no close frame: {frame:?}"),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_committed_turn_and_a_response_follow_the_ga_sequence() {
    let sim = start(plain()).await;
    sim.script_transcript("What is the weather like?");
    sim.script_reply("It is sunny and warm today.");
    let (mut ws, created) = conversation_session(&sim).await;
    assert_eq!(created["session"]["type"], "realtime");
    assert_eq!(
        created["session"]["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    let updated = configure_input(
        &mut ws,
        json!({
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": null,
        }),
    )
    .await;
    assert!(updated["session"]["audio"]["input"]["turn_detection"].is_null());
    assert_eq!(
        updated["session"]["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    assert_eq!(updated["session"]["audio"]["output"]["voice"], "marin");

    // One second of synthesized speech, committed by the client.
    let mut speech = speech_of(&sim, "Tell me about the weather, please, in some detail.").await;
    speech.truncate(1000 * BYTES_PER_MS);
    assert_eq!(speech.len(), 1000 * BYTES_PER_MS);
    append_and_commit(&mut ws, &speech).await;
    let mut events = events_until(&mut ws, "conversation.item.done").await;
    assert_eq!(
        kinds(&events),
        [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done"
        ]
    );
    let user_item_id = events[0]["item_id"].clone();
    assert!(events[0]["previous_item_id"].is_null());
    let user_item = &events[1]["item"];
    assert_eq!(user_item["id"], user_item_id);
    assert_eq!(user_item["role"], "user");
    assert_eq!(
        user_item["content"],
        json!([{"type": "input_audio", "transcript": null}])
    );

    // The commit started no response: the client asks for one.
    let mut turn = respond(&mut ws).await;
    let mut input_transcription: Vec<Value> = turn
        .iter()
        .filter(|event| is_input_transcription(event))
        .cloned()
        .collect();
    turn.retain(|event| !is_input_transcription(event));
    while !input_transcription
        .iter()
        .any(|event| event["type"] == "conversation.item.input_audio_transcription.completed")
    {
        input_transcription.push(next_event(&mut ws).await);
    }
    let order: Vec<&str> = kinds(&turn)
        .into_iter()
        .filter(|kind| {
            *kind != "response.output_audio.delta"
                && *kind != "response.output_audio_transcript.delta"
        })
        .collect();
    assert_eq!(
        order,
        [
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            "response.content_part.added",
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
            "response.done",
        ]
    );
    let created = &turn[0]["response"];
    assert_eq!(created["object"], "realtime.response");
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["output_modalities"], json!(["audio"]));
    assert_eq!(created["audio"]["output"]["voice"], "marin");
    let response_id = created["id"].as_str().expect("an id").to_owned();
    assert!(response_id.starts_with("resp_"));
    assert!(
        created["conversation_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("conv_"))
    );
    let limits = &turn[1]["rate_limits"];
    assert!(limits.as_array().is_some_and(|limits| !limits.is_empty()));
    let added = &turn[position(&turn, "response.output_item.added")];
    assert_eq!(added["response_id"], response_id.as_str());
    assert_eq!(added["output_index"], 0);
    assert_eq!(added["item"]["role"], "assistant");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["object"], "realtime.item");
    let item_id = added["item"]["id"].clone();
    let conversation_added = &turn[position(&turn, "conversation.item.added")];
    assert_eq!(conversation_added["item"]["id"], item_id);
    assert_eq!(conversation_added["previous_item_id"], user_item_id);
    let part = &turn[position(&turn, "response.content_part.added")];
    assert_eq!(
        part["part"],
        json!({"type": "output_audio", "transcript": ""})
    );

    // The audio is the synthesized reply, whole, in ~100 ms deltas; the transcript leads it.
    let audio = audio_of(&turn);
    assert_eq!(audio, speech_of(&sim, "It is sunny and warm today.").await);
    for delta in of_type(&turn, "response.output_audio.delta") {
        assert_eq!(delta["item_id"], item_id);
        assert_eq!(delta["response_id"], response_id.as_str());
        assert_eq!(delta["content_index"], 0);
        let bytes = BASE64.decode(delta["delta"].as_str().unwrap()).unwrap();
        assert!(
            bytes.len() <= 4800 && bytes.len() % 2 == 0,
            "{}",
            bytes.len()
        );
    }
    assert!(
        position(&turn, "response.output_audio_transcript.delta")
            < position(&turn, "response.output_audio.delta")
    );
    let transcript = deltas(&turn, "response.output_audio_transcript.delta");
    assert_eq!(transcript, "It is sunny and warm today.");
    let transcript_done = &turn[position(&turn, "response.output_audio_transcript.done")];
    assert_eq!(transcript_done["transcript"], transcript.as_str());
    let item_done = &turn[position(&turn, "response.output_item.done")];
    assert_eq!(item_done["item"]["status"], "completed");
    let done = done_response(&turn);
    assert_eq!(done["id"], response_id.as_str());
    assert_eq!(done["status"], "completed");
    assert!(done["status_details"].is_null());
    assert_eq!(
        done["output"][0]["content"],
        json!([{"type": "output_audio", "transcript": "It is sunny and warm today."}])
    );
    let usage = &done["usage"];
    for key in ["total_tokens", "input_tokens", "output_tokens"] {
        assert!(usage[key].as_u64().is_some_and(|n| n > 0), "{usage}");
    }
    assert!(usage["input_token_details"]["audio_tokens"].as_u64() > Some(0));
    assert!(usage["output_token_details"]["audio_tokens"].as_u64() > Some(0));
    assert!(usage["output_token_details"]["text_tokens"].as_u64() > Some(0));

    // The user's audio was transcribed, in the background.
    let completed = input_transcription
        .iter()
        .find(|event| event["type"] == "conversation.item.input_audio_transcription.completed")
        .expect("completed");
    assert_eq!(completed["item_id"], user_item_id);
    assert_eq!(completed["content_index"], 0);
    assert_eq!(completed["transcript"], "What is the weather like?");
    assert_eq!(completed["usage"]["type"], "tokens");
    events.clear();

    let records = first_response_ended(&sim, "completed").await;
    let record = &records.realtime[0];
    let response = &record.responses[0];
    assert_eq!(response.id, response_id);
    assert_eq!(response.item_id, item_id.as_str().unwrap());
    assert_eq!(response.reply, "It is sunny and warm today.");
    assert_eq!(response.audio_ms_sent, (audio.len() / BYTES_PER_MS) as u64);
    assert_eq!(response.transcript_sent, "It is sunny and warm today.");
    assert!(response.status_reason.is_none());
    let conversation = &record.conversation;
    assert_eq!(conversation.len(), 2);
    assert_eq!(conversation[0].role, "user");
    assert_eq!(
        conversation[0].text.as_deref(),
        Some("What is the weather like?")
    );
    assert_eq!(conversation[0].audio_ms, Some(1000));
    assert_eq!(conversation[1].role, "assistant");
    assert_eq!(
        conversation[1].text.as_deref(),
        Some("It is sunny and warm today.")
    );
    assert_eq!(record.sent_count("response.done"), 1);
    assert_eq!(record.events_of_type("response.create").count(), 1);
}

#[tokio::test]
async fn a_cancel_stops_the_response_and_a_second_one_is_refused() {
    let (sim, mut ws) = long_response().await;
    let started = events_until(&mut ws, "response.output_audio.delta").await;
    let response_id = started[0]["response"]["id"].clone();
    let cancelling_ms = sim.now_ms();
    send(&mut ws, json!({"type": "response.cancel"})).await;
    let rest = events_until(&mut ws, "response.done").await;
    let events = [started, rest].concat();
    let done = done_response(&events);
    assert_eq!(done["id"], response_id);
    assert_eq!(done["status"], "cancelled");
    assert_eq!(
        done["status_details"],
        json!({"type": "cancelled", "reason": "client_cancelled"})
    );
    // The trailing events carry what was sent before the cancel.
    for kind in [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
    ] {
        assert_eq!(of_type(&events, kind).len(), 1, "{kind}");
    }
    let sent = deltas(&events, "response.output_audio_transcript.delta");
    let transcript_done = &events[position(&events, "response.output_audio_transcript.done")];
    assert_eq!(transcript_done["transcript"], sent.as_str());
    assert!(sent.len() < LONG_REPLY.len(), "cut short: {sent}");
    let item_done = &events[position(&events, "response.output_item.done")];
    assert_eq!(item_done["item"]["status"], "incomplete");
    sim.set_config(|config| config.tts_realtime_factor = 0.0);
    let full = speech_of(&sim, LONG_REPLY).await;
    assert!(audio_of(&events).len() < full.len());

    // Nothing is active any more: a cancel is a harmless error.
    send(
        &mut ws,
        json!({"type": "response.cancel", "event_id": "evt_cancel"}),
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "response_cancel_not_active");
    assert_eq!(error["error"]["event_id"], "evt_cancel");
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "input_audio_buffer.cleared"
    );
    let records = first_response_ended(&sim, "cancelled").await;
    let response = &records.realtime[0].responses[0];
    assert_eq!(response.status_reason.as_deref(), Some("client_cancelled"));
    assert_eq!(response.transcript_sent, sent);
    assert!(response.audio_ms_sent < (full.len() / BYTES_PER_MS) as u64);
    assert!(response.started_ms <= cancelling_ms, "{response:?}");
    assert!(
        response
            .ended_ms
            .is_some_and(|ended_ms| ended_ms >= cancelling_ms),
        "it stopped once the cancel came: {response:?}"
    );
}

#[tokio::test]
async fn a_second_response_create_while_one_runs_is_an_error() {
    let (sim, mut ws) = long_response().await;
    let created = events_until(&mut ws, "response.created").await;
    let response_id = created[0]["response"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let events = until_refused(
        &mut ws,
        json!({"type": "response.create", "event_id": "evt_second"}),
    )
    .await;
    assert!(
        of_type(&events, "response.created").is_empty(),
        "{events:?}"
    );
    let error = &events.last().expect("an error")["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "conversation_already_has_active_response");
    assert_eq!(error["event_id"], "evt_second");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains(&response_id)),
        "{error}"
    );
    // A cancel naming another response finds nothing; naming this one stops it.
    let events = until_refused(
        &mut ws,
        json!({"type": "response.cancel", "response_id": "resp_other"}),
    )
    .await;
    assert_eq!(
        events.last().expect("an error")["error"]["code"],
        "response_cancel_not_active"
    );
    send(
        &mut ws,
        json!({"type": "response.cancel", "response_id": response_id}),
    )
    .await;
    let events = events_until(&mut ws, "response.done").await;
    assert_eq!(done_response(&events)["status"], "cancelled");
    let records = sim.records();
    assert_eq!(records.realtime[0].responses.len(), 1);
}

#[tokio::test]
async fn truncate_cuts_an_assistant_item_within_its_audio() {
    let sim = start(plain()).await;
    sim.script_reply("Here is a reply that lasts a couple of seconds.");
    let mut ws = manual_session(&sim).await;
    let events = respond(&mut ws).await;
    let item_id = events[position(&events, "response.output_item.added")]["item"]["id"]
        .as_str()
        .expect("an item id")
        .to_owned();
    let audio_ms = (audio_of(&events).len() / BYTES_PER_MS) as u64;
    assert!(audio_ms > 1000, "{audio_ms}");

    // Past the audio: the service's error, without a code.
    send(
        &mut ws,
        json!({"type": "conversation.item.truncate", "event_id": "evt_far", "item_id": item_id,
            "content_index": 0, "audio_end_ms": audio_ms + 1000}),
    )
    .await;
    let error = next_event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["code"].is_null());
    assert_eq!(error["error"]["event_id"], "evt_far");
    assert_eq!(
        error["error"]["message"],
        format!(
            "Audio content of {audio_ms}ms is already shorter than {}ms",
            audio_ms + 1000
        )
    );
    // An unknown item.
    let unknown = truncate(&mut ws, "item_nope", 0).await;
    assert_eq!(unknown["error"]["code"], "item_not_found");

    let truncated = truncate(&mut ws, &item_id, 500).await;
    assert_eq!(
        truncated,
        json!({"type": "conversation.item.truncated", "event_id": truncated["event_id"],
            "item_id": item_id, "content_index": 0, "audio_end_ms": 500})
    );
    let records = wait(&sim, |records| !records.realtime[0].truncations.is_empty()).await;
    let record = &records.realtime[0];
    assert_eq!(record.truncations.len(), 1);
    assert_eq!(record.truncations[0].item_id, item_id);
    assert_eq!(record.truncations[0].audio_end_ms, 500);
    assert_eq!(record.truncations[0].content_index, 0);
    let item = record
        .conversation
        .iter()
        .find(|item| item.id == item_id)
        .expect("the item");
    assert_eq!(item.text, None, "the unheard transcript is dropped");
    assert_eq!(item.audio_ms, Some(500));
    // The item is 500 ms long now.
    assert_eq!(
        truncate(&mut ws, &item_id, 600).await["error"]["message"],
        "Audio content of 500ms is already shorter than 600ms"
    );
    assert_eq!(
        record.events_of_type("conversation.item.truncate").count(),
        3
    );
}

#[tokio::test]
async fn server_vad_answers_a_turn_and_speech_interrupts_the_response() {
    let sim = start(plain()).await;
    sim.script_reply("Hello to you.");
    // The default session detects turns itself (server VAD, 200 ms of silence).
    let (mut ws, _) = conversation_session(&sim).await;
    append(
        &mut ws,
        &[silence(500), tone(800, 0.25), silence(600)].concat(),
    )
    .await;
    let events = events_until(&mut ws, "response.done").await;
    let order: Vec<&str> = kinds(&events)
        .into_iter()
        .take_while(|kind| *kind != "response.created")
        .collect();
    assert_eq!(
        order,
        [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
        ]
    );
    assert_eq!(events[0]["item_id"], events[2]["item_id"]);
    let done = done_response(&events);
    assert_eq!(done["status"], "completed");
    assert_eq!(
        deltas(&events, "response.output_audio_transcript.delta"),
        "Hello to you."
    );

    // A long answer at playback speed, interrupted by the user's speech.
    sim.set_config(|config| config.tts_realtime_factor = 1.0);
    sim.script_reply(LONG_REPLY);
    append(&mut ws, &[tone(800, 0.25), silence(600)].concat()).await;
    events_until(&mut ws, "response.output_audio.delta").await;
    sim.set_config(|config| config.tts_realtime_factor = 0.0);
    sim.script_reply("Go ahead.");
    append(&mut ws, &tone(400, 0.25)).await;
    let events = events_until(&mut ws, "response.done").await;
    assert!(
        position(&events, "input_audio_buffer.speech_started") < events.len() - 1,
        "{:?}",
        kinds(&events)
    );
    let done = done_response(&events);
    assert_eq!(done["status"], "cancelled");
    assert_eq!(
        done["status_details"],
        json!({"type": "cancelled", "reason": "turn_detected"})
    );
    // The interrupting turn gets its own answer once it ends.
    append(&mut ws, &silence(600)).await;
    let events = events_until(&mut ws, "response.done").await;
    assert!(
        position(&events, "input_audio_buffer.speech_stopped")
            < position(&events, "response.created")
    );
    let done = done_response(&events);
    assert_eq!(done["status"], "completed");
    let records = sim.records();
    let statuses: Vec<(&str, Option<&str>)> = records.realtime[0]
        .responses
        .iter()
        .map(|response| (response.status.as_str(), response.status_reason.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("completed", None),
            ("cancelled", Some("turn_detected")),
            ("completed", None)
        ]
    );
    assert_eq!(
        records.realtime[0]
            .events_of_type("response.create")
            .count(),
        0
    );
}

#[tokio::test]
async fn beta_fields_and_model_changes_are_refused() {
    let sim = start(plain()).await;
    let (mut ws, _) = conversation_session(&sim).await;
    for (field, value) in [
        ("voice", json!("alloy")),
        ("modalities", json!(["audio", "text"])),
        ("input_audio_format", json!("pcm16")),
        ("turn_detection", Value::Null),
        ("temperature", json!(0.8)),
    ] {
        let mut update = json!({"type": "session.update", "event_id": "evt_beta", "session": {"type": "realtime"}});
        update["session"][field] = value;
        send(&mut ws, update).await;
        let error = next_event(&mut ws).await;
        assert_eq!(error["type"], "error", "{field}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["code"], "unknown_parameter");
        assert_eq!(error["error"]["param"], format!("session.{field}"));
        assert_eq!(
            error["error"]["message"],
            format!("Unknown parameter: 'session.{field}'.")
        );
        assert_eq!(error["error"]["event_id"], "evt_beta");
    }
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime"}}),
    )
    .await;
    assert_eq!(next_event(&mut ws).await["error"]["param"], "session.model");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-nope"}}}}}),
    )
    .await;
    assert_eq!(
        next_event(&mut ws).await["error"]["code"],
        "model_not_found"
    );
    // The session is unchanged and still takes a valid update.
    let updated = update_session(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief.",
            "output_modalities": ["audio"], "audio": {"output": {"voice": "cedar", "speed": 1.1}},
            "tools": [], "tool_choice": "auto", "max_output_tokens": "inf"}}),
    )
    .await;
    assert_eq!(updated["session"]["instructions"], "Be brief.");
    assert_eq!(updated["session"]["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
}

#[tokio::test]
async fn created_items_feed_the_echo_and_can_be_deleted() {
    let sim = start(plain()).await;
    let (mut ws, _) = conversation_session(&sim).await;
    send(
        &mut ws,
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What time is it?"}]}}),
    )
    .await;
    let events = events_until(&mut ws, "conversation.item.done").await;
    assert_eq!(
        kinds(&events),
        ["conversation.item.added", "conversation.item.done"]
    );
    let item_id = events[0]["item"]["id"].as_str().expect("an id").to_owned();
    assert_eq!(events[0]["item"]["content"][0]["text"], "What time is it?");
    // A system message put first.
    send(
        &mut ws,
        json!({"type": "conversation.item.create", "previous_item_id": "root", "item": {"id": "sys_1",
            "type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be nice."}]}}),
    )
    .await;
    let events = events_until(&mut ws, "conversation.item.done").await;
    assert_eq!(events[0]["item"]["id"], "sys_1");
    assert!(events[0]["previous_item_id"].is_null());
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": "sys_1"}),
    )
    .await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "conversation.item.deleted"
    );
    // Text output this time.
    send(
        &mut ws,
        json!({"type": "response.create", "response": {"output_modalities": ["text"], "metadata": {"turn": "1"}}}),
    )
    .await;
    let events = events_until(&mut ws, "response.done").await;
    let reply = "You said: What time is it. That is interesting; tell me more.";
    assert_eq!(deltas(&events, "response.output_text.delta"), reply);
    assert_eq!(
        events[position(&events, "response.output_text.done")]["text"],
        reply
    );
    assert!(of_type(&events, "response.output_audio.delta").is_empty());
    let done = done_response(&events);
    assert_eq!(
        done["output"][0]["content"],
        json!([{"type": "output_text", "text": reply}])
    );
    assert_eq!(done["metadata"], json!({"turn": "1"}));
    // A text item has no audio to truncate.
    let assistant_id = done["output"][0]["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        truncate(&mut ws, &assistant_id, 0).await["error"]["message"],
        "Only model output audio messages can be truncated"
    );
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": item_id}),
    )
    .await;
    let deleted = next_event(&mut ws).await;
    assert_eq!(deleted["type"], "conversation.item.deleted");
    assert_eq!(deleted["item_id"], item_id.as_str());
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": item_id}),
    )
    .await;
    assert_eq!(next_event(&mut ws).await["error"]["code"], "item_not_found");
    let records = wait(&sim, |records| records.realtime[0].conversation.len() == 1).await;
    let remaining = &records.realtime[0].conversation[0];
    assert_eq!(remaining.role, "assistant");
    assert_eq!(remaining.text.as_deref(), Some(reply));
}

#[tokio::test]
async fn a_mid_stream_error_fails_the_response_not_the_session() {
    let (sim, mut ws) = faulty_session(Fault::MidStreamError { after: 3 }).await;
    let events = respond(&mut ws).await;
    assert_eq!(
        kinds(&events),
        [
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "error",
            "response.done"
        ]
    );
    assert_eq!(events[3]["error"]["type"], "server_error");
    let done = &events[4]["response"];
    assert_eq!(done["status"], "failed");
    assert_eq!(done["status_details"]["type"], "failed");
    assert_eq!(done["status_details"]["error"]["type"], "server_error");
    // The session goes on, and the next response works.
    let events = respond(&mut ws).await;
    assert_eq!(done_response(&events)["status"], "completed");
    let records = sim.records();
    let record = &records.realtime[0];
    assert_eq!(record.faults, [Fault::MidStreamError { after: 3 }]);
    assert_eq!(record.responses[0].status, "failed");
    assert_eq!(
        record.responses[0].fault,
        Some(Fault::MidStreamError { after: 3 })
    );
    assert_eq!(record.responses[1].status, "completed");
}

#[tokio::test]
async fn a_drop_fault_ends_the_socket_without_a_close_frame() {
    let (sim, mut ws) = faulty_session(Fault::Drop { after: 5 }).await;
    create_response(&mut ws).await;
    expect_abrupt_end(&mut ws).await;
    let records = wait(&sim, |records| {
        records.realtime[0].closed
            && records.realtime[0]
                .responses
                .first()
                .is_some_and(|response| response.ended_ms.is_some())
    })
    .await;
    let record = &records.realtime[0];
    assert_eq!(record.sent_count("response.done"), 0);
    assert_eq!(
        record.responses[0].status, "in_progress",
        "no status, but an end"
    );

    // Input audio: the connection drops once this much was appended.
    sim.inject(SimStage::Realtime, Fault::DropAfterAudio { bytes: 4_800 });
    let (mut ws, _) = conversation_session(&sim).await;
    append(&mut ws, &tone(200, 0.25)).await;
    expect_abrupt_end(&mut ws).await;
    let records = wait(&sim, |records| {
        records.realtime.get(1).is_some_and(|record| record.closed)
    })
    .await;
    assert_eq!(
        records.realtime[1].faults,
        [Fault::DropAfterAudio { bytes: 4_800 }]
    );
}

#[tokio::test]
async fn a_failed_input_transcription_does_not_stop_the_conversation() {
    let (_sim, mut ws) = faulty_session(Fault::TranscriptionFailed).await;
    configure_input(
        &mut ws,
        json!({"transcription": {"model": "whisper-1"}, "turn_detection": null}),
    )
    .await;
    append_and_commit(&mut ws, &tone(300, 0.25)).await;
    expect_failed_transcription(&mut ws).await;
    let events = respond(&mut ws).await;
    assert_eq!(done_response(&events)["status"], "completed");
}

#[tokio::test]
async fn a_stall_fault_silences_the_socket_but_the_session_keeps_reading() {
    let (sim, mut ws) = faulty_session(Fault::Stall { after: 2 }).await;
    create_response(&mut ws).await;
    let events = events_until(&mut ws, "rate_limits.updated").await;
    assert_eq!(kinds(&events), ["response.created", "rate_limits.updated"]);
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    let records = wait(&sim, |records| {
        records.realtime[0]
            .events_of_type("input_audio_buffer.clear")
            .count()
            == 1
    })
    .await;
    let record = &records.realtime[0];
    assert_eq!(record.sent_count("input_audio_buffer.cleared"), 0);
    assert_eq!(record.sent_count("response.output_item.added"), 0);
    assert!(!record.closed);
}
