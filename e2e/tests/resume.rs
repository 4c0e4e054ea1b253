//! Reconnect and resume: a socket cut mid-conversation (by a relay that resets its TCP
//! connections, as a dropped network does) is continued by a new socket presenting the resume
//! token of its `session_ready`, with the conversation's history; a forged, used or expired
//! token gets a fresh conversation; a second socket presenting a live session's token takes
//! it over.

use std::time::Duration;

use openai_sim::SimConfig;
use protocol::{ClientMessage, ResponseId, ServerMessage, TurnId};
use voice_agent_e2e::relay::CuttingRelay;
use voice_agent_e2e::{Browser, TestProxy, silence, tone, wait_until};

/// A three-sentence reply, each sentence synthesized on its own.
const LONG_REPLY: &str =
    "The first sentence is here. The second sentence follows it. And a third one ends it.";

/// The roles and contents of the chat request at `index`.
fn chat_messages(proxy: &TestProxy, index: usize) -> Vec<(String, String)> {
    proxy.sim.records().chat[index].messages()
}

/// Speaks a turn and waits for its answer's `response_done`.
async fn answered(browser: &mut Browser, response_id: ResponseId) {
    browser.say(&[tone(0.8), silence(0.2)].concat()).await;
    browser
        .wait_for(
            |m| matches!(m, ServerMessage::ResponseDone { response_id: id, .. } if *id == response_id),
        )
        .await;
}

#[tokio::test]
async fn a_cut_connection_resumes_with_its_history_and_what_was_heard_of_the_last_answer() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let relay = CuttingRelay::start(proxy.addr()).await;
    let mut browser = proxy.reconnect_at(relay.addr(), None).await;
    let (session_id, token, resumed) = browser.session_ready();
    let token = token.expect("session_ready carries a resume token");
    assert!(!resumed);

    proxy.sim.script_transcript("Hello there.");
    proxy.sim.script_reply("Hi! How can I help?");
    answered(&mut browser, ResponseId(1)).await;

    // The second answer has finished generating, but the page has played only its first
    // sentence when the network drops.
    proxy.sim.script_transcript("Tell me three things.");
    proxy.sim.script_reply(LONG_REPLY);
    answered(&mut browser, ResponseId(2)).await;
    let first_sentence_samples = proxy
        .sim
        .records()
        .speech
        .iter()
        .find(|r| {
            r.body["input"]
                .as_str()
                .is_some_and(|input| input == "The first sentence is here.")
        })
        .map(|r| r.sent.len() as u64 / 2)
        .expect("the first sentence was synthesized on its own");
    browser
        .send(ClientMessage::PlaybackProgress {
            response_id: ResponseId(2),
            played_samples: first_sentence_samples,
        })
        .await;
    browser.barrier().await;
    relay.cut();
    proxy.wait_for_sessions(|n| n == 0).await;

    let mut resumed_browser = proxy.reconnect_at(relay.addr(), Some(&token)).await;
    let (resumed_id, next_token, resumed) = resumed_browser.session_ready();
    assert!(resumed, "the conversation continues");
    assert_eq!(resumed_id, session_id, "under the same session id");
    let next_token = next_token.expect("a fresh ticket");
    assert_ne!(next_token, token, "tokens are single use");

    // Ids carry on, and the model hears the earlier turns: all of the first answer, and of
    // the second only what was played.
    proxy.sim.script_transcript("And a fourth?");
    proxy.sim.script_reply("There is no fourth.");
    answered(&mut resumed_browser, ResponseId(3)).await;
    assert!(resumed_browser.messages().iter().any(|m| matches!(
        m,
        ServerMessage::TranscriptFinal { turn_id, .. } if *turn_id == TurnId(3)
    )));
    let messages = chat_messages(&proxy, 2);
    let expected = [
        ("system", None),
        ("user", Some("Hello there.")),
        ("assistant", Some("Hi! How can I help?")),
        ("user", Some("Tell me three things.")),
        ("assistant", Some("The first sentence is here.")),
        ("user", Some("And a fourth?")),
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for ((role, content), (want_role, want_content)) in messages.iter().zip(expected) {
        assert_eq!(role, want_role, "{messages:#?}");
        if let Some(want) = want_content {
            assert_eq!(content, want, "{messages:#?}");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_forged_or_used_token_starts_a_fresh_conversation() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let relay = CuttingRelay::start(proxy.addr()).await;
    let mut browser = proxy.reconnect_at(relay.addr(), None).await;
    let token = browser.session_ready().1.expect("a token");
    proxy.sim.script_transcript("Remember the number seven.");
    proxy.sim.script_reply("Seven it is.");
    answered(&mut browser, ResponseId(1)).await;
    relay.cut();
    proxy.wait_for_sessions(|n| n == 0).await;

    let forged = proxy
        .reconnect_at(relay.addr(), Some("0123456789abcdef0123456789abcdef"))
        .await;
    assert!(!forged.session_ready().2, "a forged token resumes nothing");
    let malformed = proxy
        .reconnect_at(relay.addr(), Some("../../etc/passwd"))
        .await;
    assert!(!malformed.session_ready().2);
    drop((forged, malformed));

    let resumed = proxy.reconnect_at(relay.addr(), Some(&token)).await;
    assert!(resumed.session_ready().2, "the real token still works");
    relay.cut();
    proxy.wait_for_sessions(|n| n == 0).await;
    let mut replayed = proxy.reconnect_at(relay.addr(), Some(&token)).await;
    assert!(!replayed.session_ready().2, "a used token resumes nothing");

    // The fresh conversation knows nothing of the old one, and its ids start again.
    proxy.sim.script_transcript("Which number?");
    proxy.sim.script_reply("I don't know.");
    answered(&mut replayed, ResponseId(1)).await;
    let messages = chat_messages(&proxy, 1);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let metrics = reqwest::get(format!("{}/metrics", proxy.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"voice_session_resumes_total{outcome="resumed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"voice_session_resumes_total{outcome="restarted"} 3"#),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_conversation_past_its_grace_period_is_not_resumed() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.resume_grace = Duration::from_millis(300);
    })
    .await;
    let relay = CuttingRelay::start(proxy.addr()).await;
    let mut browser = proxy.reconnect_at(relay.addr(), None).await;
    let (_, token, _) = browser.session_ready();
    let token = token.expect("a token");
    assert_eq!(proxy.state.resumable_sessions(), Some(1));
    proxy.sim.script_transcript("Hello.");
    proxy.sim.script_reply("Hi.");
    answered(&mut browser, ResponseId(1)).await;
    relay.cut();
    proxy.wait_for_sessions(|n| n == 0).await;
    // Parked, then expired.
    wait_until(|| proxy.state.resumable_sessions() == Some(0)).await;
    let late = proxy.reconnect_at(relay.addr(), Some(&token)).await;
    assert!(!late.session_ready().2, "expired: a fresh conversation");
    proxy.stop().await;
}

#[tokio::test]
async fn a_reconnect_takes_over_a_session_whose_old_socket_still_looks_open() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut old = proxy.connect().await;
    let token = old.session_ready().1.expect("a token");
    proxy.sim.script_transcript("Hello.");
    proxy.sim.script_reply("Hi there.");
    answered(&mut old, ResponseId(1)).await;

    // The page lost its network but the proxy has not noticed: the old socket is open.
    let mut new = proxy.reconnect_at(proxy.addr(), Some(&token)).await;
    assert!(
        new.session_ready().2,
        "the reconnect continues the conversation"
    );
    assert_eq!(
        old.wait_for_close().await,
        Some(1000),
        "the stale socket is closed"
    );
    proxy.wait_for_sessions(|n| n == 1).await;
    proxy.sim.script_transcript("Again?");
    proxy.sim.script_reply("Again.");
    answered(&mut new, ResponseId(2)).await;
    let messages = chat_messages(&proxy, 1);
    assert_eq!(messages[1].1, "Hello.");
    assert_eq!(messages[2].1, "Hi there.");
    proxy.stop().await;
}

#[tokio::test]
async fn a_user_who_closes_the_page_leaves_nothing_to_resume() {
    let proxy = TestProxy::start(SimConfig::default(), |_| {}).await;
    let mut browser = proxy.connect().await;
    let token = browser.session_ready().1.expect("a token");
    browser.close().await;
    proxy.wait_for_sessions(|n| n == 0).await;
    wait_until(|| proxy.state.resumable_sessions() == Some(0)).await;
    let again = proxy.reconnect_at(proxy.addr(), Some(&token)).await;
    assert!(!again.session_ready().2);
    proxy.stop().await;
}

#[tokio::test]
async fn resume_off_gives_no_ticket() {
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.resume_grace = Duration::ZERO;
    })
    .await;
    let browser = proxy.connect().await;
    assert_eq!(browser.session_ready().1, None);
    proxy.stop().await;
}

#[tokio::test]
async fn a_proxy_whose_session_store_does_not_answer_refuses_to_start() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let config = proxy::config::Config {
        session_store: proxy::config::SessionStoreKind::parse(&format!(
            "redis://127.0.0.1:{closed_port}"
        ))
        .expect("a Redis URL"),
        ..proxy::config::Config::default()
    };
    let error = proxy::AppState::new(config)
        .await
        .expect_err("no Redis there");
    assert!(
        matches!(error, proxy::StartError::SessionStore(_)),
        "{error}"
    );
    assert!(error.to_string().contains("SESSION_STORE"), "{error}");
}
