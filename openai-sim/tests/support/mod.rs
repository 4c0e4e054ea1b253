//! Helpers the integration tests share: a simulator on loopback, HTTP and WebSocket clients,
//! a spec-following SSE parser and test audio. Every wait has a generous deadline.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use openai_sim::{Records, SimConfig, Simulator};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound on any single wait: only a broken simulator reaches it.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);
/// Bearer token the tests send (any token passes unless a key is configured).
pub(crate) const KEY: &str = "sk-test-key-0123456789";
/// PCM16 bytes per millisecond at 24 kHz mono.
pub(crate) const BYTES_PER_MS: usize = 48;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config)
        .await
        .expect("the simulator starts")
}

/// Quirk-free, delay-free: exact event sequences.
pub(crate) fn plain() -> SimConfig {
    SimConfig {
        quirks: false,
        ..SimConfig::instant()
    }
}

pub(crate) async fn wait(sim: &Simulator, condition: impl Fn(&Records) -> bool) -> Records {
    sim.wait_until(DEADLINE, condition)
        .await
        .unwrap_or_else(|records| panic!("{records:#?}"))
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// The chat request the proxy sends (`proxy/src/upstream/chat.rs`).
pub(crate) fn chat_body() -> Value {
    let mut body = bare_chat_body(true);
    body["stream_options"] = json!({ "include_usage": true });
    body["max_completion_tokens"] = json!(400);
    body
}

/// The proxy's model and messages, streamed or not, with no other options.
pub(crate) fn bare_chat_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4.1-mini",
        "messages": [
            { "role": "system", "content": "You are a concise voice assistant." },
            { "role": "user", "content": "What is up?" },
        ],
        "stream": stream,
    })
}

/// The speech request the proxy sends (`proxy/src/upstream/speech.rs`).
pub(crate) fn speech_body(input: &str) -> Value {
    json!({ "model": "gpt-4o-mini-tts", "input": input, "voice": "coral", "response_format": "pcm" })
}

/// POSTs JSON under `/v1` with the test key.
pub(crate) async fn post(sim: &Simulator, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", sim.base_url()))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("the simulator answers")
}

/// GETs a path under `/v1` with the test key.
pub(crate) async fn get(sim: &Simulator, path: &str) -> reqwest::Response {
    http()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("the simulator answers")
}

/// Reads a whole body, which must end cleanly.
pub(crate) async fn body_bytes(response: reqwest::Response) -> Vec<u8> {
    match read_body(response).await {
        (bytes, None) => bytes,
        (_, Some(error)) => panic!("a complete body: {error}"),
    }
}

/// Reads a body to its end, each chunk within the deadline; returns the bytes and, if the
/// body broke off, the error.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut bytes = Vec::new();
    loop {
        match tokio::time::timeout(DEADLINE, response.chunk())
            .await
            .expect("the body progresses")
        {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => return (bytes, None),
            Err(error) => return (bytes, Some(error)),
        }
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Parses an SSE body as the spec says: LF, CRLF or CR line ends, `:` comments ignored,
/// `event:` and `data:` fields, dispatch on a blank line.
pub(crate) fn parse_sse(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8(body.to_vec()).expect("SSE is UTF-8");
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut event = None;
    let mut data: Vec<String> = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(SseEvent {
                    event: event.take(),
                    data: data.join("\n"),
                });
            }
            event = None;
            data.clear();
        } else if line.starts_with(':') {
        } else {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
    }
    events
}

/// The text of a chat SSE stream's content deltas.
pub(crate) fn chat_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|event| event.data != "[DONE]")
        .filter_map(|event| serde_json::from_str::<Value>(&event.data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// A Realtime upgrade request with the test key.
pub(crate) fn ws_request(sim: &Simulator, query: &str) -> tungstenite::handshake::client::Request {
    ws_request_with_headers(sim, query, &[("authorization", &format!("Bearer {KEY}"))])
}

/// A Realtime upgrade request with exactly these headers (no key unless among them).
pub(crate) fn ws_request_with_headers(
    sim: &Simulator,
    query: &str,
    headers: &[(&str, &str)],
) -> tungstenite::handshake::client::Request {
    let mut request = format!("{}?{query}", sim.realtime_url())
        .into_client_request()
        .expect("a valid URL");
    for (name, value) in headers {
        let name =
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a valid name");
        request
            .headers_mut()
            .insert(name, value.parse().expect("a valid header value"));
    }
    request
}

/// Opens a Realtime WebSocket with the test key.
pub(crate) async fn connect(sim: &Simulator, query: &str) -> Ws {
    connect_with_headers(sim, query, &[("authorization", &format!("Bearer {KEY}"))]).await
}

/// Opens a Realtime WebSocket with exactly these headers.
pub(crate) async fn connect_with_headers(
    sim: &Simulator,
    query: &str,
    headers: &[(&str, &str)],
) -> Ws {
    let (ws, _) = tokio::time::timeout(
        DEADLINE,
        tokio_tungstenite::connect_async(ws_request_with_headers(sim, query, headers)),
    )
    .await
    .expect("an upgrade before the deadline")
    .expect("the upgrade succeeds");
    ws
}

/// A Realtime session opened with `query` and the test key, past its `session.created`,
/// which comes with it.
pub(crate) async fn session(sim: &Simulator, query: &str) -> (Ws, Value) {
    let mut ws = connect(sim, query).await;
    let created = next_event(&mut ws).await;
    assert_eq!(created["type"], "session.created", "{created}");
    (ws, created)
}

/// A transcription session with the test key, past its `session.created`.
pub(crate) async fn transcription_session(sim: &Simulator) -> Ws {
    session(sim, "intent=transcription").await.0
}

/// The next server event; panics on a close.
pub(crate) async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("an event before the deadline")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("events are JSON"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// The close frame the server sends next.
pub(crate) async fn next_close(ws: &mut Ws) -> tungstenite::protocol::CloseFrame {
    let close = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("a close before the deadline");
    let Some(Ok(Message::Close(Some(frame)))) = close else {
        panic!("expected a close frame: {close:?}")
    };
    frame
}

/// Events up to and including the first of type `kind`.
pub(crate) async fn events_until(ws: &mut Ws, kind: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = next_event(ws).await;
        let done = event["type"] == kind;
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The events of type `kind`, in order.
pub(crate) fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["type"] == kind)
        .collect()
}

/// Where the first event of type `kind` is; panics if there is none.
pub(crate) fn position(events: &[Value], kind: &str) -> usize {
    events
        .iter()
        .position(|event| event["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

pub(crate) async fn send(ws: &mut Ws, event: Value) {
    ws.send(Message::text(event.to_string()))
        .await
        .expect("the socket accepts a frame");
}

/// The GA transcription `session.update` the proxy sends, with client commits.
pub(crate) fn session_update(model: &str, turn_detection: Value) -> Value {
    json!({
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": { "input": {
                "format": { "type": "audio/pcm", "rate": 24000 },
                "transcription": { "model": model, "language": "en" },
                "turn_detection": turn_detection,
            }},
        },
    })
}

/// Sends a `session.update` that must be accepted; returns the `session.updated`.
pub(crate) async fn update_session(ws: &mut Ws, update: Value) -> Value {
    send(ws, update).await;
    let updated = next_event(ws).await;
    assert_eq!(updated["type"], "session.updated", "{updated}");
    updated
}

/// Sends the proxy's `session.update` (`gpt-4o-mini-transcribe`, English, client commits
/// unless `turn_detection` says otherwise); returns the `session.updated`.
pub(crate) async fn configure(ws: &mut Ws, turn_detection: Value) -> Value {
    update_session(ws, session_update("gpt-4o-mini-transcribe", turn_detection)).await
}

/// Reads the events of a committed turn up to its input transcription's `…failed`, which
/// must say the audio was unintelligible and name the committed item; returns them.
pub(crate) async fn expect_failed_transcription(ws: &mut Ws) -> Vec<Value> {
    let events = events_until(ws, "conversation.item.input_audio_transcription.failed").await;
    let failed = events.last().expect("failed");
    assert_eq!(failed["error"]["code"], "audio_unintelligible");
    assert_eq!(
        failed["item_id"],
        events[position(&events, "input_audio_buffer.committed")]["item_id"]
    );
    events
}

/// `ms` of a 200 Hz tone at `amplitude` (fraction of full scale), PCM16 LE mono 24 kHz.
pub(crate) fn tone(ms: usize, amplitude: f64) -> Vec<u8> {
    (0..ms * 24)
        .flat_map(|n| {
            let phase = std::f64::consts::TAU * 200.0 * n as f64 / 24_000.0;
            ((amplitude * phase.sin() * f64::from(i16::MAX)) as i16).to_le_bytes()
        })
        .collect()
}

/// `ms` of silence, PCM16 LE mono 24 kHz.
pub(crate) fn silence(ms: usize) -> Vec<u8> {
    vec![0; ms * BYTES_PER_MS]
}

/// Appends audio in 40 ms pieces, as a client streaming a microphone would.
pub(crate) async fn append(ws: &mut Ws, pcm: &[u8]) {
    for piece in pcm.chunks(40 * BYTES_PER_MS) {
        let event = json!({"type": "input_audio_buffer.append", "audio": BASE64.encode(piece)});
        send(ws, event).await;
    }
}

/// Appends `pcm` in 40 ms pieces and commits it.
pub(crate) async fn append_and_commit(ws: &mut Ws, pcm: &[u8]) {
    append(ws, pcm).await;
    send(ws, json!({"type": "input_audio_buffer.commit"})).await;
}
