//! The seed's sequential design, as a baseline in the same run: one simulated browser whose
//! "server" waits for each stage to finish before starting the next. The utterance streams to
//! Realtime transcription as the user speaks (as the seed did); at the end of the turn the
//! whole transcript is awaited, then one non-streamed Chat Completions request, then the whole
//! answer as one Speech request, whose first byte is the first audio. It talks to the upstream
//! (the simulator) directly: the seed's own server added nothing on loopback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::report::{Tally, TurnFigures};
use crate::speaker::{Captured, Utterance};

/// The seed's models and voice (its README).
const STT_MODEL: &str = "gpt-4o-mini-transcribe";
const LLM_MODEL: &str = "gpt-4.1-mini";
const TTS_MODEL: &str = "gpt-4o-mini-tts";
const TTS_VOICE: &str = "alloy";

/// PCM16 bytes per second at 24 kHz: the answer's playing time.
const BYTES_PER_SECOND: f64 = 48_000.0;

/// What every sequential browser of a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The upstream's base URL, e.g. `http://127.0.0.1:8001/v1`.
    pub base_url: String,
    /// Its API key, if it needs one.
    pub api_key: Option<String>,
    /// A turn's utterance, as the page sends it.
    pub utterance: Arc<Utterance>,
    /// Pause after an answer has played before the next turn, in seconds.
    pub think_s: f64,
}

/// Runs one sequential browser from `start` until `end`, adding its turns to `tally`.
pub async fn run(plan: Arc<Plan>, start: Instant, end: Instant, tally: Arc<Mutex<Tally>>) {
    tokio::time::sleep_until(start.into()).await;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("a plain HTTP client builds");
    let realtime_url = format!(
        "{}/realtime?intent=transcription",
        plan.base_url.replacen("http", "ws", 1)
    );
    let Ok(mut request) = realtime_url.as_str().into_client_request() else {
        lock(&tally).counts.sessions_failed += 1;
        return;
    };
    if let Some(key) = &plan.api_key
        && let Ok(value) = format!("Bearer {key}").parse()
    {
        request.headers_mut().insert("authorization", value);
    }
    let Ok((socket, _)) = tokio_tungstenite::connect_async(request).await else {
        lock(&tally).counts.sessions_failed += 1;
        return;
    };
    lock(&tally).counts.sessions_ready += 1;
    let (mut sink, mut stream) = socket.split();
    let update = json!({
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24_000},
                "transcription": {"model": STT_MODEL},
                "turn_detection": null
            }}
        }
    });
    if sink.send(Message::text(update.to_string())).await.is_err() {
        lock(&tally).add_error("socket_closed");
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while Instant::now() < end {
        lock(&tally).counts.turns += 1;
        // Real time from the turn's first tick: the ticks missed while the answer played must
        // not burst out at once.
        ticks.reset_immediately();
        let mut voice_ended_at = None;
        for (n, tick) in plan.utterance.ticks.iter().enumerate() {
            ticks.tick().await;
            if n == plan.utterance.last_voiced_tick {
                voice_ended_at = Some(Instant::now());
            }
            for item in tick {
                let event = match item {
                    Captured::Frame(pcm) => json!({
                        "type": "input_audio_buffer.append",
                        "audio": base64::engine::general_purpose::STANDARD.encode(pcm),
                    }),
                    Captured::SpeechStopped => json!({"type": "input_audio_buffer.commit"}),
                    _ => continue,
                };
                if sink.send(Message::text(event.to_string())).await.is_err() {
                    lock(&tally).add_error("socket_closed");
                    return;
                }
            }
        }
        let Some(transcript) = completed_transcript(&mut stream).await else {
            lock(&tally).add_error("transcription");
            return;
        };
        let Some(answer) = whole_answer(&http, &plan, &transcript).await else {
            lock(&tally).add_error("chat");
            continue;
        };
        lock(&tally).counts.answers += 1;
        let Some((first_byte_at, audio_bytes)) = speech(&http, &plan, &answer).await else {
            lock(&tally).add_error("speech");
            continue;
        };
        let figures = TurnFigures {
            speech_end_to_first_audio_ms: voice_ended_at
                .map(|at| (first_byte_at - at).as_secs_f64() * 1000.0),
            complete: true,
            ..TurnFigures::default()
        };
        lock(&tally).add_turn(&figures);
        // The answer plays, then the user thinks.
        let playing = Duration::from_secs_f64(audio_bytes as f64 / BYTES_PER_SECOND);
        tokio::time::sleep_until((first_byte_at + playing).into()).await;
        tokio::time::sleep(Duration::from_secs_f64(plan.think_s)).await;
    }
    let _ = sink.close().await;
}

/// Reads transcription events until a turn's final transcript.
async fn completed_transcript<S>(stream: &mut S) -> Option<String>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let wait = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match event["type"].as_str() {
                Some("conversation.item.input_audio_transcription.completed") => {
                    return event["transcript"].as_str().map(str::to_owned);
                }
                Some("error" | "conversation.item.input_audio_transcription.failed") => {
                    return None;
                }
                _ => {}
            }
        }
        None
    });
    wait.await.ok().flatten()
}

/// One Chat Completions request, waited for in full.
async fn whole_answer(http: &reqwest::Client, plan: &Plan, transcript: &str) -> Option<String> {
    let body = json!({
        "model": LLM_MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful voice assistant."},
            {"role": "user", "content": transcript}
        ],
    });
    let reply: Value = authorized(
        http.post(format!("{}/chat/completions", plan.base_url)),
        plan,
    )
    .json(&body)
    .send()
    .await
    .ok()?
    .error_for_status()
    .ok()?
    .json()
    .await
    .ok()?;
    reply["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
}

/// The whole answer as one Speech request: when its first audio byte arrived, and its length.
async fn speech(http: &reqwest::Client, plan: &Plan, text: &str) -> Option<(Instant, usize)> {
    let body = json!({
        "model": TTS_MODEL,
        "voice": TTS_VOICE,
        "input": text,
        "response_format": "pcm",
    });
    let response = authorized(http.post(format!("{}/audio/speech", plan.base_url)), plan)
        .json(&body)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let mut body = response.bytes_stream();
    let mut first_byte_at = None;
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.ok()?;
        if !chunk.is_empty() && first_byte_at.is_none() {
            first_byte_at = Some(Instant::now());
        }
        bytes += chunk.len();
    }
    first_byte_at.map(|at| (at, bytes))
}

fn authorized(request: reqwest::RequestBuilder, plan: &Plan) -> reqwest::RequestBuilder {
    match &plan.api_key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
