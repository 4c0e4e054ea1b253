//! Faults and quirks over real sockets: error bodies that are not OpenAI's JSON, 429s without
//! retry hints, a Realtime session refused after the upgrade, SSE framing variants, unknown
//! paths with large bodies.

#[allow(dead_code)]
mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use openai_sim::{Fault, Outcome, SimConfig, SimStage, SseStyle};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

#[tokio::test]
async fn error_bodies_that_are_not_json_keep_their_status_and_content_type() {
    let sim = start(plain()).await;
    let cases = [
        (
            Fault::bad_gateway_html(),
            502,
            Some("text/html"),
            "<title>502 Bad Gateway</title>",
        ),
        (Fault::empty_body(502), 502, None, ""),
        (
            Fault::upstream_reset_text(),
            503,
            Some("text/plain"),
            "upstream connect error",
        ),
        (
            Fault::plain_text(500, "Internal Server Error"),
            500,
            Some("text/plain"),
            "Internal Server Error",
        ),
    ];
    for (stage, path, body) in [
        (SimStage::Chat, "/chat/completions", chat_body()),
        (SimStage::Speech, "/audio/speech", speech_body("Hi.")),
    ] {
        for (fault, status, content_type, text) in &cases {
            sim.inject(stage, fault.clone());
            let response = post(&sim, path, &body).await;
            assert_eq!(response.status(), *status, "{fault:?}");
            let got_type = response
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            match content_type {
                Some(expected) => assert!(
                    got_type
                        .as_deref()
                        .is_some_and(|got| got.starts_with(expected)),
                    "{fault:?}: {got_type:?}"
                ),
                None => assert_eq!(got_type, None, "{fault:?}"),
            }
            assert!(
                response.headers().get("x-request-id").is_none(),
                "not from OpenAI"
            );
            let bytes = body_bytes(response).await;
            let got = String::from_utf8(bytes).expect("text");
            if text.is_empty() {
                assert!(got.is_empty(), "{got}");
            } else {
                assert!(got.contains(text), "{got}");
            }
            assert!(
                serde_json::from_str::<Value>(&got).is_err(),
                "not JSON: {got}"
            );
        }
    }
    let records = sim.records();
    assert_eq!(records.chat.len() + records.speech.len(), 2 * cases.len());
    for (index, (_, status, _, _)) in cases.iter().enumerate() {
        assert_eq!(records.chat[index].status, *status);
        assert_eq!(records.chat[index].outcome, Outcome::Failed);
        assert_eq!(records.speech[index].status, *status);
    }
}

#[tokio::test]
async fn a_429_can_come_without_any_retry_hint() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Chat, Fault::rate_limited_without_retry_headers());
    sim.inject(SimStage::Chat, Fault::rate_limited());
    let bare = post(&sim, "/chat/completions", &chat_body()).await;
    let hinted = post(&sim, "/chat/completions", &chat_body()).await;
    assert_eq!(bare.status(), 429);
    assert_eq!(hinted.status(), 429);
    for header in [
        "retry-after",
        "retry-after-ms",
        "x-ratelimit-reset-requests",
    ] {
        assert!(bare.headers().get(header).is_none(), "{header}");
        assert!(hinted.headers().get(header).is_some(), "{header}");
    }
    let error: Value = bare.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert_eq!(error["error"]["type"], "requests");
}

#[tokio::test]
async fn realtime_error_after_upgrade_sends_one_error_then_closes() {
    let sim = start(plain()).await;
    sim.inject(
        SimStage::Realtime,
        Fault::error_after_upgrade(
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ),
    );
    sim.inject(
        SimStage::Realtime,
        Fault::ErrorAfterUpgrade {
            error_type: "server_error".into(),
            code: None,
            message: "The server had an error.".into(),
            close_code: 1011,
        },
    );
    for (code, close_code) in [(json!("invalid_api_key"), 4000), (Value::Null, 1011)] {
        let mut ws = connect(&sim, "intent=transcription").await;
        let error = next_event(&mut ws).await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["code"], code);
        assert_eq!(u16::from(next_close(&mut ws).await.code), close_code);
    }
    let mut ws = connect(&sim, "intent=transcription").await;
    assert_eq!(
        next_event(&mut ws).await["type"],
        "session.created",
        "faults used up"
    );
    let records = wait(&sim, |records| {
        records.realtime.len() == 3 && records.realtime[1].closed
    })
    .await;
    assert!(records.realtime[0].accepted());
    assert_eq!(records.realtime[0].sent_types, ["error"]);
    assert_eq!(records.realtime[0].faults.len(), 1);
}

#[tokio::test]
async fn realtime_raw_http_fault_refuses_the_upgrade_with_its_body() {
    let sim = start(plain()).await;
    sim.inject(SimStage::Realtime, Fault::bad_gateway_html());
    let refused = tokio_tungstenite::connect_async(ws_request(&sim, "intent=transcription"))
        .await
        .expect_err("the upgrade is refused");
    let tungstenite::Error::Http(response) = refused else {
        panic!("an HTTP refusal: {refused:?}")
    };
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "text/html");
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).expect("text");
    assert!(body.contains("502 Bad Gateway"), "{body}");
    assert_eq!(sim.records().realtime[0].rejected_status, Some(502));
}

#[tokio::test]
async fn chat_sse_style_adds_comments_event_lines_and_crlf_without_changing_the_stream() {
    let sim = start(SimConfig {
        sse_style: SseStyle::all(),
        ..plain()
    })
    .await;
    sim.script_reply("Framed differently, said the same.");
    let styled = body_bytes(post(&sim, "/chat/completions", &chat_body()).await).await;
    sim.set_config(|config| config.sse_style = SseStyle::default());
    sim.script_reply("Framed differently, said the same.");
    let default = body_bytes(post(&sim, "/chat/completions", &chat_body()).await).await;
    let text = String::from_utf8(styled.clone()).expect("UTF-8");
    assert!(text.starts_with(": keep-alive\r\n\r\n"), "{text}");
    assert!(text.contains("event: message\r\ndata: "), "{text}");
    assert!(
        text.match_indices('\n')
            .all(|(at, _)| at > 0 && text.as_bytes()[at - 1] == b'\r'),
        "every line ends with CRLF"
    );
    let plain_text = String::from_utf8(default.clone()).expect("UTF-8");
    assert!(!plain_text.contains(": keep-alive") && !plain_text.contains("event:"));
    assert!(!plain_text.contains('\r'));
    let (styled, default) = (parse_sse(&styled), parse_sse(&default));
    assert_eq!(styled.len(), default.len());
    assert_eq!(chat_text(&styled), "Framed differently, said the same.");
    assert_eq!(chat_text(&styled), chat_text(&default));
    assert_eq!(
        styled.last().map(|event| event.data.as_str()),
        Some("[DONE]")
    );
    assert!(
        styled
            .iter()
            .all(|event| event.event.as_deref() == Some("message"))
    );
    assert!(default.iter().all(|event| event.event.is_none()));
}

#[tokio::test]
async fn sse_style_names_a_mid_stream_error_and_frames_speech_events() {
    let sim = start(SimConfig {
        sse_style: SseStyle {
            event_lines: true,
            ..SseStyle::default()
        },
        ..plain()
    })
    .await;
    sim.inject(SimStage::Chat, Fault::MidStreamError { after: 2 });
    let events = parse_sse(&body_bytes(post(&sim, "/chat/completions", &chat_body()).await).await);
    let last = events.last().expect("events");
    assert_eq!(last.event.as_deref(), Some("error"));
    let error: Value = serde_json::from_str(&last.data).expect("JSON");
    assert_eq!(error["error"]["type"], "server_error");
    sim.set_config(|config| config.sse_style = SseStyle::all());
    let mut body = speech_body("Events in a different frame.");
    body["stream_format"] = json!("sse");
    let events = parse_sse(&body_bytes(post(&sim, "/audio/speech", &body).await).await);
    let mut audio = Vec::new();
    for event in &events {
        let payload: Value = serde_json::from_str(&event.data).expect("JSON");
        if payload["type"] == "speech.audio.delta" {
            let delta = payload["audio"].as_str().expect("base64");
            audio.extend(BASE64.decode(delta).expect("valid base64"));
        }
    }
    let last: Value = serde_json::from_str(&events.last().expect("events").data).expect("JSON");
    assert_eq!(last["type"], "speech.audio.done");
    let records = wait(&sim, |records| {
        records
            .speech
            .first()
            .is_some_and(|speech| speech.outcome.is_final())
    })
    .await;
    assert_eq!(audio, records.speech[0].synthesized);
}

#[tokio::test]
async fn unknown_paths_read_a_large_body_before_answering_404() {
    let sim = start(plain()).await;
    // As the Node SDK does: send the whole request, then read the answer. Larger than any
    // socket buffer, so a server that answers without reading the body closes the connection
    // on unread data (a reset) and the client's write fails with a broken pipe.
    let body = vec![b'x'; 16 * 1024 * 1024];
    let head = format!(
        "POST /v1/no/such/path HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        sim.addr(),
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let mut answer = Vec::new();
        let mut buffer = [0_u8; 4096];
        // Read until the JSON body is complete (the connection may stay open).
        loop {
            let read = stream.read(&mut buffer).await?;
            answer.extend_from_slice(&buffer[..read]);
            if read == 0 || complete_response(&answer) {
                return std::io::Result::Ok(answer);
            }
        }
    };
    let answer = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("an answer before the deadline")
        .expect("the whole request is sent and the answer read");
    let text = String::from_utf8(answer).expect("a text answer");
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    let (_, json) = text.split_once("\r\n\r\n").expect("a head and a body");
    let error: Value = serde_json::from_str(json).expect("the full JSON body");
    assert_eq!(
        error["error"]["message"],
        "Invalid URL (POST /v1/no/such/path)"
    );
}

/// Whether `answer` holds a whole response with a `content-length` body.
fn complete_response(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|length| body.len() >= length)
}

#[tokio::test]
async fn a_long_chat_history_above_two_mebibytes_is_accepted() {
    let sim = start(plain()).await;
    let mut body = chat_body();
    body["messages"][0]["content"] = json!("Context. ".repeat(400_000));
    let response = post(&sim, "/chat/completions", &body).await;
    assert_eq!(response.status(), 200);
    let events = parse_sse(&body_bytes(response).await);
    assert_eq!(
        events.last().map(|event| event.data.as_str()),
        Some("[DONE]")
    );
}

#[tokio::test]
async fn profiles_answer_errors_in_their_servers_body_shapes() {
    for (profile, check) in [
        ("openai", "error.message"),
        ("speaches", "detail"),
        ("kokoro", "detail"),
    ] {
        let config = SimConfig::instant().profile(profile).expect("a profile");
        let sim = start(config).await;
        sim.inject(SimStage::Speech, Fault::unauthorized());
        let response = post(&sim, "/audio/speech", &speech_body("Hi.")).await;
        assert_eq!(response.status(), 401, "{profile}");
        let body: Value = response.json().await.unwrap();
        let found = match check {
            "detail" => body["detail"].as_str(),
            _ => body["error"]["message"].as_str(),
        };
        assert!(found.is_some_and(|m| !m.is_empty()), "{profile}: {body}");
        // A validation error takes the same shape.
        let bad = post(&sim, "/audio/speech", &json!({"model": "gpt-4o-mini-tts"})).await;
        let body: Value = bad.json().await.unwrap();
        assert_eq!(
            body.get("detail").is_some(),
            check == "detail",
            "{profile}: {body}"
        );
    }
}

#[tokio::test]
async fn a_localai_profile_answers_pcm_requests_with_wav() {
    let sim = start(SimConfig::instant().profile("localai").unwrap()).await;
    let response = post(&sim, "/audio/speech", &speech_body("Hello there.")).await;
    let bytes = body_bytes(response).await;
    assert_eq!(&bytes[..4], b"RIFF");
    assert!(SimConfig::default().profile("nonsense").is_none());
}
