//! File transcription (`POST /v1/audio/transcriptions`, docs/openai-wire.md §5) over real
//! sockets: JSON and streamed replies, whisper-1 ignoring `stream`, the checks the service
//! makes of the upload, its size limit, and faults.

#[allow(dead_code)]
mod support;

use openai_sim::{Fault, SimConfig, SimStage};
use serde_json::Value;
use support::{DEADLINE, KEY, http, parse_sse, plain, read_body, start, wait};

/// 16-bit mono 24 kHz WAV of `ms` milliseconds of silence.
fn wav(ms: usize) -> Vec<u8> {
    let data = ms * 48;
    let mut file = Vec::with_capacity(44 + data);
    file.extend_from_slice(b"RIFF");
    file.extend_from_slice(&(36 + data as u32).to_le_bytes());
    file.extend_from_slice(b"WAVEfmt ");
    file.extend_from_slice(&16u32.to_le_bytes());
    file.extend_from_slice(&1u16.to_le_bytes());
    file.extend_from_slice(&1u16.to_le_bytes());
    file.extend_from_slice(&24_000u32.to_le_bytes());
    file.extend_from_slice(&48_000u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&16u16.to_le_bytes());
    file.extend_from_slice(b"data");
    file.extend_from_slice(&(data as u32).to_le_bytes());
    file.resize(44 + data, 0);
    file
}

/// Uploads `file` as `name` with these text fields.
async fn upload(
    sim: &openai_sim::Simulator,
    name: &str,
    file: Vec<u8>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(file)
            .file_name(name.to_owned())
            .mime_str("audio/wav")
            .expect("a mime type"),
    );
    for (key, value) in fields {
        form = form.text((*key).to_owned(), (*value).to_owned());
    }
    http()
        .post(format!("{}/audio/transcriptions", sim.base_url()))
        .bearer_auth(KEY)
        .multipart(form)
        .timeout(DEADLINE)
        .send()
        .await
        .expect("the simulator answers")
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("an error body");
    (status, body["error"].clone())
}

#[tokio::test]
async fn a_wav_is_transcribed_as_json_and_recorded() {
    let sim = start(plain()).await;
    sim.script_transcript("What a lovely day.");
    let response = upload(
        &sim,
        "turn.wav",
        wav(1200),
        &[
            ("model", "gpt-4o-mini-transcribe"),
            ("language", "en"),
            ("prompt", "Weather."),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["text"], "What a lovely day.");
    assert_eq!(body["usage"]["type"], "duration");
    let records = wait(&sim, |r| r.transcription.len() == 1).await;
    let record = &records.transcription[0];
    assert_eq!(record.body["language"], "en");
    assert_eq!(record.body["prompt"], "Weather.");
    assert_eq!(record.file_name.as_deref(), Some("turn.wav"));
    assert_eq!(record.file.len(), 44 + 1200 * 48);
    assert!(!record.streamed);
    // Without a script, the transcript tells the file's length.
    let body: Value = upload(&sim, "turn.wav", wav(1200), &[("model", "whisper-1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["text"], "You spoke for 1.2 seconds.");
}

#[tokio::test]
async fn stream_true_streams_deltas_and_a_done_except_on_whisper() {
    let sim = start(plain()).await;
    sim.script_transcript("Streamed word by word.");
    let response = upload(
        &sim,
        "turn.wav",
        wav(500),
        &[("model", "gpt-4o-transcribe"), ("stream", "true")],
    )
    .await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (bytes, error) = read_body(response).await;
    assert!(error.is_none());
    let events: Vec<Value> = parse_sse(&bytes)
        .into_iter()
        .map(|event| serde_json::from_str(&event.data).expect("JSON events"))
        .collect();
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "transcript.text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Streamed word by word.");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "transcript.text.done");
    assert_eq!(last["text"], "Streamed word by word.");
    // whisper-1 ignores `stream`: plain JSON.
    sim.script_transcript("Whole.");
    let response = upload(
        &sim,
        "turn.wav",
        wav(500),
        &[("model", "whisper-1"), ("stream", "true")],
    )
    .await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(response.json::<Value>().await.unwrap()["text"], "Whole.");
}

#[tokio::test]
async fn a_longer_file_waits_longer_for_its_transcript() {
    let sim = start(SimConfig {
        stt_first_delta_ms: 20,
        stt_ms_per_audio_s: 100,
        ..plain()
    })
    .await;
    // `openai-processing-ms` reports the wait the simulator planned before its headers.
    let mut planned_ms = Vec::new();
    for ms in [500, 2_000] {
        let fields = [("model", "gpt-4o-transcribe"), ("stream", "true")];
        let response = upload(&sim, "turn.wav", wav(ms), &fields).await;
        assert_eq!(response.status(), 200);
        let header = response.headers()["openai-processing-ms"].to_str().unwrap();
        planned_ms.push(header.parse::<u64>().unwrap());
        read_body(response).await;
    }
    assert_eq!(planned_ms, [70, 220]);
}

#[tokio::test]
async fn uploads_are_checked_as_the_service_checks_them() {
    let sim = start(plain()).await;
    let model = [("model", "gpt-4o-mini-transcribe")];
    let (status, error) = error_of(upload(&sim, "turn.bin", wav(100), &model).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("unsupported_value"))
    );
    let (status, error) =
        error_of(upload(&sim, "turn.wav", b"junk".repeat(100), &model).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("invalid_value"))
    );
    let (status, error) = error_of(upload(&sim, "turn.wav", wav(100), &[]).await).await;
    assert_eq!((status, error["param"].as_str()), (400, Some("model")));
    let (status, error) =
        error_of(upload(&sim, "turn.wav", wav(100), &[("model", "no-such-model")]).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("model_not_found"))
    );
    // The whole request may be at most 26,214,400 bytes.
    let (status, error) =
        error_of(upload(&sim, "turn.wav", vec![0; 26_214_401], &model).await).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (413, Some("server_error"))
    );
    // No key, no service.
    let response = http()
        .post(format!("{}/audio/transcriptions", sim.base_url()))
        .multipart(reqwest::multipart::Form::new().text("model", "whisper-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn faults_of_the_transcription_stage_are_taken() {
    let sim = start(SimConfig {
        quirks: false,
        ..SimConfig::instant()
    })
    .await;
    sim.inject(SimStage::Transcription, Fault::rate_limited());
    let response = upload(&sim, "turn.wav", wav(300), &[("model", "whisper-1")]).await;
    assert_eq!(response.status(), 429);
    // A streamed transcript cut after its first delta.
    sim.script_transcript("Never finished, this one.");
    sim.inject(SimStage::Transcription, Fault::Drop { after: 1 });
    let response = upload(
        &sim,
        "turn.wav",
        wav(300),
        &[("model", "gpt-4o-mini-transcribe"), ("stream", "true")],
    )
    .await;
    let (bytes, error) = read_body(response).await;
    assert!(error.is_some(), "the body is cut");
    assert!(!String::from_utf8_lossy(&bytes).contains("transcript.text.done"));
}
