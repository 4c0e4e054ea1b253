//! TCP connections as the simulator sees them: the count of connections accepted, which
//! tells a client that reused a warm keep-alive connection from one that opened a new one,
//! and the setup cost of a new connection (`SimConfig::handshake_ms`).

#[allow(dead_code)]
mod support;

use openai_sim::{Outcome, SimConfig};
use serde_json::Value;
use support::*;

/// A connection setup that outlasts [`DEADLINE`]: only a connection that is not delayed, or
/// one set up concurrently, is answered in time.
const ENDLESS_HANDSHAKE_MS: u64 = 3_600_000;

/// A short but real setup cost.
const SHORT_HANDSHAKE_MS: u64 = 50;

/// A streamed chat completion on `client`, read to its end; returns its text.
async fn chat_on(client: &reqwest::Client, sim: &openai_sim::Simulator) -> String {
    let response = client
        .post(format!("{}/chat/completions", sim.base_url()))
        .bearer_auth(KEY)
        .json(&bare_chat_body(true))
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(response.status(), 200);
    chat_text(&parse_sse(&body_bytes(response).await))
}

#[tokio::test]
async fn sequential_requests_on_one_client_share_a_connection() {
    let sim = start(plain()).await;
    let client = http();
    sim.script_reply("One.");
    sim.script_reply("Two.");
    assert_eq!(chat_on(&client, &sim).await, "One.");
    assert_eq!(chat_on(&client, &sim).await, "Two.");
    let records = wait(&sim, |records| records.chat.len() == 2).await;
    assert_eq!(
        records.connections_accepted, 1,
        "the second request reused it"
    );
}

#[tokio::test]
async fn two_clients_open_two_connections() {
    let sim = start(plain()).await;
    chat_on(&http(), &sim).await;
    chat_on(&http(), &sim).await;
    let records = wait(&sim, |records| records.chat.len() == 2).await;
    assert_eq!(records.connections_accepted, 2);
    // A WebSocket is a connection too; a reset starts the count again.
    sim.reset();
    let _ws = transcription_session(&sim).await;
    let records = wait(&sim, |records| records.realtime_connections() == 1).await;
    assert_eq!(records.connections_accepted, 1);
}

#[tokio::test]
async fn a_handshake_still_serves_every_request() {
    let sim = start(SimConfig {
        handshake_ms: SHORT_HANDSHAKE_MS,
        ..plain()
    })
    .await;
    sim.script_reply("Over a slow link.");
    sim.script_transcript("Still heard.");
    let client = http();
    assert_eq!(chat_on(&client, &sim).await, "Over a slow link.");
    let speech = client
        .post(format!("{}/audio/speech", sim.base_url()))
        .bearer_auth(KEY)
        .json(&speech_body("Spoken over it."))
        .send()
        .await
        .expect("the simulator answers");
    let pcm = body_bytes(speech).await;
    let models = get(&sim, "/models").await;
    assert_eq!(models.status(), 200);
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
        "Still heard."
    );
    let records = wait(&sim, |records| {
        records
            .speech
            .first()
            .is_some_and(|speech| speech.outcome.is_final())
    })
    .await;
    assert_eq!(records.chat[0].outcome, Outcome::Completed);
    assert_eq!(records.speech[0].outcome, Outcome::Completed);
    assert_eq!(records.speech[0].sent, pcm);
    // One client for chat and speech, one for the models, one WebSocket.
    assert_eq!(records.connections_accepted, 3);
}

#[tokio::test]
async fn a_connection_in_its_handshake_delays_only_itself() {
    let sim = start(SimConfig {
        handshake_ms: ENDLESS_HANDSHAKE_MS,
        ..plain()
    })
    .await;
    let url = format!("{}/chat/completions", sim.base_url());
    let stuck = tokio::spawn(async move {
        http()
            .post(url)
            .bearer_auth(KEY)
            .json(&bare_chat_body(false))
            .send()
            .await
    });
    wait(&sim, |records| records.connections_accepted == 1).await;
    // Connections accepted from now on have no setup cost; the stuck one keeps its own.
    sim.set_config(|config| config.handshake_ms = 0);
    sim.script_reply("Not held up.");
    assert_eq!(chat_on(&http(), &sim).await, "Not held up.");
    let records = sim.records();
    assert_eq!(records.connections_accepted, 2);
    assert_eq!(
        records.chat.len(),
        1,
        "the first connection's request is still unread: {records:#?}"
    );
    assert_eq!(records.chat[0].reply.as_deref(), Some("Not held up."));
    stuck.abort();
}
