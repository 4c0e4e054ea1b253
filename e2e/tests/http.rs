//! The HTTP surface: health, one-shot endpoints, error bodies.

use openai_sim::{Fault, SimConfig, SimStage};
use proxy::config::{Config, Secret};
use serde_json::{Value, json};
use voice_agent_e2e::{TEST_ACCESS_TOKEN, TestProxy};

/// The one-shot API on, with the access token it needs.
fn with_api(config: &mut Config) {
    config.enable_api = true;
    config.access_token = Some(Secret::new(TEST_ACCESS_TOKEN));
}

async fn post(proxy: &TestProxy, path: &str, body: Value) -> (u16, bytes::Bytes) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", proxy.http_url()))
        .bearer_auth(TEST_ACCESS_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the proxy answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body"))
}

#[tokio::test]
async fn health_reports_ok() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let body: Value = reqwest::get(format!("{}/healthz", proxy.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["simulated"], false);
    proxy.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_json_error() {
    let proxy = TestProxy::start(SimConfig::default(), with_api).await;
    for (path, body) in [
        ("/api/speech", json!({"text": "   "})),
        ("/api/speech", json!({"words": "hi"})),
        ("/api/reply", json!({"text": "x".repeat(5000)})),
    ] {
        let (status, bytes) = post(&proxy, path, body).await;
        assert_eq!(status, 400, "{path}");
        let error: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error["error"]["stage"], "proxy");
        assert_eq!(error["error"]["code"], "invalid_message");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_a_502_naming_the_stage() {
    let proxy = TestProxy::start(SimConfig::default(), with_api).await;
    proxy.sim.inject(SimStage::Speech, Fault::unauthorized());
    let (status, bytes) = post(&proxy, "/api/speech", json!({"text": "Hello."})).await;
    assert_eq!(status, 502);
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["stage"], "tts");
    assert_eq!(error["error"]["code"], "upstream_auth");
    assert_eq!(error["error"]["retryable"], false);

    proxy
        .sim
        .inject(SimStage::Chat, Fault::insufficient_quota());
    let (status, bytes) = post(&proxy, "/api/reply", json!({"text": "Hello."})).await;
    assert_eq!(status, 502);
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["stage"], "llm");
    assert_eq!(error["error"]["code"], "insufficient_quota");
    proxy.stop().await;
}

#[tokio::test]
async fn one_shot_endpoints_answer() {
    let proxy = TestProxy::start(SimConfig::default(), with_api).await;
    proxy.sim.script_reply("Forty-two.");
    let (status, bytes) = post(&proxy, "/api/reply", json!({"text": "The answer?"})).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["text"], "Forty-two.");

    let (status, audio) = post(&proxy, "/api/speech", json!({"text": "Hello there."})).await;
    assert_eq!(status, 200);
    assert!(!audio.is_empty());
    assert_eq!(audio.len() % 2, 0);
    let sent = &proxy.sim.records().speech[0].sent;
    assert_eq!(&audio[..], &sent[..sent.len() - sent.len() % 2]);
    proxy.stop().await;
}

#[tokio::test]
async fn a_plain_get_on_the_socket_endpoint_is_refused() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let response = reqwest::get(format!("{}/ws", proxy.http_url()))
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    proxy.stop().await;
}

#[tokio::test]
async fn the_built_client_is_served_at_the_root() {
    let dir = std::env::temp_dir().join(format!("voice-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>voice</title>",
    )
    .unwrap();
    let client_dir = dir.clone();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_dir = client_dir;
    })
    .await;
    let page = reqwest::get(format!("{}/", proxy.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<title>voice</title>"));
    proxy.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn only_the_proxys_own_and_listed_origins_may_open_a_session() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.allowed_origins = vec!["https://voice.example.com".into()];
    })
    .await;
    // A page of any other site (cross-site WebSocket hijacking of the operator's key).
    let (status, body) = proxy
        .try_open_ws("", Some("https://evil.example"))
        .await
        .expect_err("another site's page is refused");
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(proxy.state.live_sessions(), 0);
    // The proxy's own pages, and the listed origin.
    proxy
        .try_open_ws("", Some(&proxy.http_url()))
        .await
        .expect("its own page opens a session");
    proxy
        .try_open_ws("", Some("https://voice.example.com"))
        .await
        .expect("a listed origin opens a session");
    proxy.stop().await;
}

#[tokio::test]
async fn with_an_access_token_sessions_and_the_api_need_it() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.enable_api = true;
        config.access_token = Some(Secret::new("let-me-in-0123456789"));
    })
    .await;
    for query in ["", "?token=wrong", "?token="] {
        let (status, body) = proxy
            .try_open_ws(query, None)
            .await
            .expect_err("no session without the token");
        assert_eq!(status, 401, "{query}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    proxy
        .try_open_ws("?token=let-me-in-0123456789", Some(&proxy.http_url()))
        .await
        .expect("the page's link carries the token");

    let reply = |token: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(format!("{}/api/reply", proxy.http_url()))
            .json(&json!({"text": "Hello?"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(reply(None).await.unwrap().status(), 401);
    assert_eq!(reply(Some("wrong")).await.unwrap().status(), 401);
    assert_eq!(
        reply(Some("let-me-in-0123456789")).await.unwrap().status(),
        200
    );
    // Health stays open (for load balancers).
    let health = reqwest::get(format!("{}/healthz", proxy.http_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    proxy.stop().await;
}
