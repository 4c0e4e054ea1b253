//! The limits a proxy on the internet needs, over real sockets against the simulator: upstream
//! cost of idle sessions, session timers, audio spend, protocol abuse, admission caps, host and
//! origin checks, HTTP timeouts and the page's headers. Timers are set short in the
//! configuration; every wait is for a condition, with the harness's generous deadline.

use std::time::{Duration, Instant};

use openai_sim::SimConfig;
use protocol::{ClientMessage, ErrorCode, ServerMessage};
use proxy::config::{Config, Secret};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};
use voice_agent_e2e::{Browser, DEADLINE, TEST_ACCESS_TOKEN, TestProxy, tone, wait_until};

/// Error events of one code the browser received.
fn errors_with(browser: &Browser, code: ErrorCode) -> usize {
    browser
        .messages()
        .iter()
        .filter(|m| matches!(m, ServerMessage::Error(e) if e.code == code))
        .count()
}

/// Opens `/ws` with these extra headers; `Ok(())` if upgraded, else the status, the
/// `Retry-After` header and the JSON body.
async fn handshake(
    proxy: &TestProxy,
    headers: &[(&str, String)],
) -> Result<(), (u16, Option<String>, Value)> {
    let mut request = format!("ws://{}/ws", proxy.addr())
        .into_client_request()
        .expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => {
            // Held open by leaking it into a task that reads until the test ends.
            tokio::spawn(async move {
                let mut socket = socket;
                while let Some(Ok(_)) = futures_util::StreamExt::next(&mut socket).await {}
            });
            Ok(())
        }
        Err(tungstenite::Error::Http(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.body().clone().unwrap_or_default();
            Err((
                response.status().as_u16(),
                retry_after,
                serde_json::from_slice(&body).expect("a JSON error body"),
            ))
        }
        Err(error) => panic!("the handshake failed otherwise: {error}"),
    }
}

#[tokio::test]
async fn an_idle_session_opens_no_upstream_socket_and_a_quiet_one_closes_its_own() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.transcriber_quiet_close = Duration::from_millis(500);
    })
    .await;
    let _idle = proxy.connect().await;
    let mut speaker = proxy.connect().await;
    proxy.sim.script_reply("Hello.");
    speaker.say(&tone(0.5)).await;
    speaker
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    // The speaker's transcription socket closes once nobody has spoken for the quiet period...
    let records = proxy
        .sim
        .wait_until(DEADLINE, |r| r.realtime.iter().all(|c| c.closed))
        .await
        .expect("the quiet transcription socket closes");
    // ...and all that while the idle session opened none.
    assert_eq!(records.realtime_connections(), 1);
    // Speaking again opens a fresh one, and the turn is answered.
    proxy.sim.script_reply("Again.");
    speaker.say(&tone(0.5)).await;
    speaker
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == "Again."))
        .await;
    assert_eq!(proxy.sim.records().realtime_connections(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_session_without_speech_is_closed_with_a_reason_the_page_can_show() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.session_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut browser = proxy.connect().await;
    assert_eq!(browser.wait_for_close().await, Some(1000));
    let reason = browser.close_reason.clone().unwrap_or_default();
    assert!(reason.contains("without speech"), "{reason:?}");
    proxy.wait_for_sessions(|n| n == 0).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_maximum_length() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_session_length = Duration::from_millis(500);
    })
    .await;
    let mut browser = proxy.connect().await;
    assert_eq!(browser.wait_for_close().await, Some(1000));
    let reason = browser.close_reason.clone().unwrap_or_default();
    assert!(reason.contains("maximum length"), "{reason:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_browser_that_answers_pings_stays_and_one_that_vanished_is_dropped() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.browser_ping_interval = Duration::from_millis(200);
    })
    .await;
    let mut present = proxy.connect().await;
    // A browser that stops reading answers no ping (as one whose network vanished).
    let _vanished = proxy.connect().await;
    proxy.wait_for_sessions(|n| n == 2).await;
    // The one that reads answers ping after ping and stays; the other is dropped meanwhile.
    tokio::join!(
        present.wait_for_pings(8),
        proxy.wait_for_sessions(|n| n == 1)
    );
    assert_eq!(proxy.state.live_sessions(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn audio_at_ten_times_real_time_gets_no_more_than_the_cap_upstream() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        // Out of the way: only the rate limit decides here.
        config.limits.max_utterance = Duration::from_secs(600);
    })
    .await;
    let began = Instant::now();
    let mut browser = proxy.connect().await;
    browser.send(ClientMessage::SpeechStarted).await;
    // 10× real time for 10 s: 200 ms of audio every 20 ms, until the proxy closes the socket.
    let frame = tone(0.2);
    let mut sent_ms = 0u64;
    while began.elapsed() < Duration::from_secs(10) {
        if browser.try_send_binary(frame.clone()).await.is_err() {
            break;
        }
        sent_ms += 200;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed_s = began.elapsed().as_secs_f64();
    // A sustained flood is closed as a policy violation, and the user was told once.
    assert_eq!(browser.wait_for_close().await, Some(1008));
    assert_eq!(errors_with(&browser, ErrorCode::AudioTooFast), 1);
    let records = proxy
        .sim
        .wait_until(DEADLINE, |r| r.realtime.iter().all(|c| c.closed))
        .await
        .expect("the transcription socket closes with the session");
    let upstream_ms = records.realtime_audio_bytes() as f64 / 48.0;
    // What the budget allows: its 3 s burst plus 1.5 s per second since the session began.
    let cap_ms = 3_000.0 + 1_500.0 * elapsed_s;
    assert!(
        upstream_ms <= cap_ms,
        "{upstream_ms} ms relayed, cap {cap_ms} ms"
    );
    assert!(sent_ms as f64 > 2.0 * upstream_ms, "the flood was real");
    proxy.stop().await;
}

#[tokio::test]
async fn an_utterance_longer_than_the_maximum_is_ended_and_answered() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_utterance = Duration::from_secs(1);
    })
    .await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_transcript("A very long question");
    proxy.sim.script_reply("A short answer.");
    browser.send(ClientMessage::SpeechStarted).await;
    browser.send_audio(&tone(1.5)).await;
    // No speech_stopped: the proxy ends the turn on its own, says so, and answers.
    browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::UtteranceTooLong))
        .await;
    browser
        .wait_for(
            |m| matches!(m, ServerMessage::ResponseDone { text, .. } if text == "A short answer."),
        )
        .await;
    proxy.stop().await;
}

#[tokio::test]
async fn repeated_protocol_errors_close_the_session_with_1008() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_protocol_errors = 5;
    })
    .await;
    let mut browser = proxy.connect().await;
    for _ in 0..50 {
        browser.send_text("{\"type\":\"nonsense\"}").await;
    }
    assert_eq!(browser.wait_for_close().await, Some(1008));
    let reported = errors_with(&browser, ErrorCode::InvalidMessage);
    assert!((1..=5).contains(&reported), "{reported}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_huge_message_type_is_not_echoed_back() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    let huge = "x".repeat(60_000);
    browser
        .send_text(&json!({ "type": huge }).to_string())
        .await;
    let message = browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::InvalidMessage))
        .await;
    let ServerMessage::Error(error) = message else {
        unreachable!()
    };
    assert!(error.message.len() < 400, "{} bytes", error.message.len());
    proxy.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_is_answered_with_close_1009() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    browser.send_text(&"x".repeat(1024 * 1024)).await;
    assert_eq!(browser.wait_for_close().await, Some(1009));
    proxy.stop().await;
}

#[tokio::test]
async fn over_the_caps_the_upgrade_is_refused_with_retry_after() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_sessions = Some(3);
        config.limits.max_sessions_per_address = 2;
    })
    .await;
    handshake(&proxy, &[]).await.expect("first");
    handshake(&proxy, &[]).await.expect("second");
    let (status, retry_after, body) = handshake(&proxy, &[])
        .await
        .expect_err("the address is at its cap");
    assert_eq!(status, 429);
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(body["error"]["code"], "too_many_requests");
    proxy.stop().await;

    // Behind a reverse proxy the address comes from the configured header.
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_sessions = Some(3);
        config.limits.max_sessions_per_address = 2;
        config.client_address_header = Some("X-Forwarded-For".into());
    })
    .await;
    let from = |ip: &str| vec![("x-forwarded-for", format!("203.0.113.9, {ip}"))];
    handshake(&proxy, &from("198.51.100.1")).await.expect("one");
    handshake(&proxy, &from("198.51.100.1")).await.expect("two");
    handshake(&proxy, &from("198.51.100.2"))
        .await
        .expect("three");
    proxy.wait_for_sessions(|n| n == 3).await;
    let (status, retry_after, body) = handshake(&proxy, &from("198.51.100.3"))
        .await
        .expect_err("the server is at its cap");
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    assert_eq!(body["error"]["code"], "server_busy");
    // Health still answers.
    let health = reqwest::get(format!("{}/healthz", proxy.http_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn an_address_opening_sessions_too_fast_is_slowed_down() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_sessions_per_address = 100;
        config.limits.sessions_per_address_per_minute = 1;
    })
    .await;
    let mut refused = None;
    for _ in 0..20 {
        if let Err(refusal) = handshake(&proxy, &[]).await {
            refused = Some(refusal);
            break;
        }
    }
    let (status, retry_after, body) = refused.expect("a burst beyond the rate is refused");
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "too_many_requests");
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    proxy.stop().await;
}

#[tokio::test]
async fn dns_rebinding_is_refused() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.public_hosts = vec!["voice.lan".into()];
    })
    .await;
    // The attacker's name, resolved to this server, with its own page as the origin.
    let evil = format!("evil.example:{}", proxy.addr().port());
    let (status, _, body) = handshake(
        &proxy,
        &[("host", evil.clone()), ("origin", format!("http://{evil}"))],
    )
    .await
    .expect_err("another name is refused");
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    // A page on the same host and port but another scheme is another origin.
    let public = format!("voice.lan:{}", proxy.addr().port());
    let (status, _, _) = handshake(
        &proxy,
        &[
            ("host", public.clone()),
            ("origin", format!("https://{public}")),
        ],
    )
    .await
    .expect_err("https is not this server's origin");
    assert_eq!(status, 403);
    // The proxy's own page, under its public name, is welcome.
    handshake(
        &proxy,
        &[
            ("host", public.clone()),
            ("origin", format!("http://{public}")),
        ],
    )
    .await
    .expect("its own page");
    proxy.stop().await;
}

#[tokio::test]
async fn the_api_is_off_unless_enabled_and_rate_limited_when_on() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/reply", proxy.http_url()))
        .json(&json!({"text": "Hello?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(proxy.sim.records().chat.is_empty());
    proxy.stop().await;

    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.enable_api = true;
        config.access_token = Some(Secret::new(TEST_ACCESS_TOKEN));
        config.limits.api_requests_per_address_per_minute = 2;
    })
    .await;
    let reply = || {
        reqwest::Client::new()
            .post(format!("{}/api/reply", proxy.http_url()))
            .bearer_auth(TEST_ACCESS_TOKEN)
            .json(&json!({"text": "Hello?"}))
            .send()
    };
    assert_eq!(reply().await.unwrap().status(), 200);
    assert_eq!(reply().await.unwrap().status(), 200);
    let refused = reply().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(proxy.sim.records().chat.len(), 2);
    proxy.stop().await;
}

#[test]
fn the_api_cannot_be_enabled_without_a_token() {
    use clap::Parser as _;
    let cli = proxy::config::Cli::try_parse_from(["proxy", "--enable-api"]).expect("flags parse");
    let cli = proxy::config::Cli {
        access_token: None,
        ..cli
    };
    assert!(matches!(
        Config::try_from(cli),
        Err(proxy::config::ConfigError::ApiWithoutToken)
    ));
}

#[tokio::test]
async fn slow_headers_a_stalled_body_and_idle_keep_alive_are_cut_off() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.enable_api = true;
        config.access_token = Some(Secret::new(TEST_ACCESS_TOKEN));
        config.limits.header_read_timeout = Duration::from_millis(300);
        config.limits.request_body_timeout = Duration::from_millis(300);
    })
    .await;
    // Headers that never end.
    let mut slow = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    tokio::time::timeout(DEADLINE, slow.read_to_end(&mut buffer))
        .await
        .expect("the proxy closes a connection whose headers never end")
        .ok();

    // A body that never arrives.
    let mut stalled = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let head = format!(
        "POST /api/reply HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TEST_ACCESS_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"text\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stalled.read_to_end(&mut answer))
        .await
        .expect("the proxy gives up on the body")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(proxy.sim.records().chat.is_empty());

    // A kept-alive connection that sits idle after its answer.
    let mut idle = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, idle.read_to_end(&mut seen))
        .await
        .expect("the proxy closes an idle kept-alive connection")
        .ok();
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    proxy.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_at_once() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_connections_per_address = 3;
    })
    .await;
    // Another loopback address holds its three (idle) connections...
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", proxy.addr()).await);
    }
    // ...and a fourth from it is closed without an answer.
    let mut fourth = connect_from("127.0.0.2", proxy.addr()).await;
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, fourth.read_to_end(&mut buffer))
        .await
        .expect("closed at once");
    assert!(read.is_err() || buffer.is_empty(), "{buffer:?}");
    // Meanwhile this address is served.
    let health = reqwest::get(format!("{}/healthz", proxy.http_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(held);
    proxy.stop().await;
}

async fn connect_from(source: &str, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{source}:0").parse().unwrap())
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

#[tokio::test]
async fn a_silent_upstream_is_reported_within_the_retry_budget() {
    // Accepts connections and never answers a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/v1", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.openai_base_url = silent_url;
        config.enable_api = true;
        config.access_token = Some(Secret::new(TEST_ACCESS_TOKEN));
        // Far beyond the test's deadline: only the response deadline and the retry budget can
        // end these waits in time.
        config.upstream_stall_timeout = Duration::from_secs(120);
        config.transcript_timeout = Duration::from_secs(120);
        config.limits.upstream_response_timeout = Duration::from_millis(300);
        config.limits.upstream_retry_budget = Duration::from_secs(1);
    })
    .await;
    let response = tokio::time::timeout(
        DEADLINE,
        reqwest::Client::new()
            .post(format!("{}/api/reply", proxy.http_url()))
            .bearer_auth(TEST_ACCESS_TOKEN)
            .json(&json!({"text": "Hello?"}))
            .send(),
    )
    .await
    .expect("the API answers within the budget")
    .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");

    let mut browser = proxy.connect().await;
    browser.say(&tone(0.3)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::UpstreamTimeout))
        .await;
    held.abort();
    proxy.stop().await;
}

#[tokio::test]
async fn the_page_has_its_security_headers_and_no_symlink_leads_out() {
    let base = std::env::temp_dir().join(format!("voice-page-{}", std::process::id()));
    let dir = base.join("dist");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>voice</title><script type=\"module\">start();</script>",
    )
    .unwrap();
    std::fs::write(base.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), dir.join("leak.txt")).unwrap();
    let client_dir = dir.clone();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_dir = client_dir;
    })
    .await;
    let page = reqwest::get(format!("{}/", proxy.http_url()))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let policy = header("content-security-policy");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(
        policy.contains("script-src 'self' 'wasm-unsafe-eval' 'sha256-"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let leak = reqwest::get(format!("{}/leak.txt", proxy.http_url()))
        .await
        .unwrap();
    assert_eq!(leak.status(), 404);
    assert_ne!(leak.text().await.unwrap(), "secret");
    proxy.stop().await;
    std::fs::remove_dir_all(&base).ok();
}

#[tokio::test]
async fn many_idle_sessions_hold_no_upstream_socket() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.max_sessions_per_address = 100;
        config.limits.sessions_per_address_per_minute = 6_000;
    })
    .await;
    let mut browsers = Vec::new();
    for _ in 0..20 {
        browsers.push(proxy.connect().await);
    }
    proxy.wait_for_sessions(|n| n == 20).await;
    // One of them speaks; its turn completing proves the others had time to connect if they
    // were going to.
    proxy.sim.script_reply("Only one.");
    browsers[0].say(&tone(0.5)).await;
    browsers[0]
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    wait_until(|| proxy.sim.records().realtime_connections() >= 1).await;
    assert_eq!(proxy.sim.records().realtime_connections(), 1);
    proxy.stop().await;
}
