//! The page reconnects by itself when its socket drops, and the conversation goes on. The page
//! is loaded through a relay in front of the proxy ([`CuttingRelay`]), so its WebSocket runs
//! through it too; cutting the relay resets every connection through it as a dropped network
//! would (no close frame: the page sees 1006), while new connections still get through.
//!
//! * With resume on (the default) the new socket continues the conversation: the view keeps
//!   its bubbles, ids carry on, and the model hears the first turn when answering the next.
//! * With resume off the new socket gets a fresh conversation: the page says so, its view
//!   starts afresh, and the new conversation's answers play although their ids start from 1
//!   again.

use std::time::Duration;

use openai_sim::SimConfig;
use voice_agent_e2e::TestProxy;
use voice_agent_e2e::relay::CuttingRelay;

use super::browser::{Browser, Engine};
use super::client_dist::client_dist;
use super::microphone::{Part, microphone};
use super::page::{Page, PageState};
use super::{ONE_BROWSER_AT_A_TIME, artifacts_dir};

const QUESTION_1: &str = "Please remember that my name is Ada.";
const ANSWER_1: &str = "Nice to meet you, Ada. I will remember your name.";
const QUESTION_2: &str = "What is my name?";
const ANSWER_2: &str = "Your name is Ada.";

/// Quiet between the two utterances, seconds. Between them the first answer is transcribed,
/// written, synthesized and played (about 5 s here), the relay is cut and the page reconnects
/// (under a second); the rest is margin for a slow machine, because the second utterance must
/// begin only after the page reconnected (a turn spoken while it is away is lost, by design).
const GAP_S: f64 = 14.0;

/// The VAD events of the page so far, by name.
fn vad_events(state: &PageState) -> Vec<String> {
    state
        .probe("vad")
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|event| event["event"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A proxy configured by `configure` serving the client, scripted with both turns, a relay in
/// front of it, and Chromium with both utterances as its microphone.
async fn through_a_relay(
    name: &str,
    configure: impl FnOnce(&mut proxy::config::Config),
) -> (TestProxy, CuttingRelay, Browser) {
    let dist = client_dist();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_dir = dist;
        configure(config);
    })
    .await;
    proxy.sim.script_transcript(QUESTION_1);
    proxy.sim.script_reply(ANSWER_1);
    proxy.sim.script_transcript(QUESTION_2);
    proxy.sim.script_reply(ANSWER_2);
    let relay = CuttingRelay::start(proxy.addr()).await;
    let mic = microphone(
        name,
        &[
            Part::Quiet(1.5),
            Part::Speech(QUESTION_1),
            Part::Quiet(GAP_S),
            Part::Speech(QUESTION_2),
            Part::Quiet(8.0),
        ],
    );
    let browser = Browser::launch(Engine::Chromium, &mic).await;
    (proxy, relay, browser)
}

/// Talks until the first answer has played to its end, then cuts the relay.
async fn first_turn_then_cut(page: &Page<'_>, relay: &CuttingRelay) {
    page.start_talking().await;
    // Played to its end: the page reported all of it played (it does so as the answer
    // drains, before the probe says `drained`), so a resumed conversation keeps it whole.
    let state = page
        .wait_for("the first answer played and its turn over", |s| {
            s.response(1)["phase"] == "drained" && s.waterfalls == 1
        })
        .await;
    assert_eq!(state.probe("resumed"), false, "Start got a fresh session");
    assert_eq!(state.probe("reconnectAttempts"), 0);
    relay.cut();
}

/// Runs the first turn, cuts the relay, and waits for the page to be connected again,
/// `resumed` or not, before its second utterance.
async fn reconnected_after_the_first_turn(
    page: &Page<'_>,
    relay: &CuttingRelay,
    resumed: bool,
) -> PageState {
    first_turn_then_cut(page, relay).await;
    let state = page
        .wait_for(
            "the page to reconnect (resumed or afresh, as expected)",
            |s| {
                s.probe("reconnects") == 1
                    && s.probe("resumed") == resumed
                    && s.connection.as_deref() == Some("connected")
            },
        )
        .await;
    reconnected_before_the_second_utterance(&state);
    state
}

/// Checks that the page made reconnect attempts (it does only while it shows
/// "Reconnecting…") and that the second utterance had not begun yet.
fn reconnected_before_the_second_utterance(state: &PageState) {
    assert!(
        state
            .probe("reconnectAttempts")
            .as_u64()
            .is_some_and(|attempts| attempts >= 1),
        "{:?}",
        state.probe
    );
    let vad = vad_events(state);
    assert_eq!(
        vad.iter()
            .filter(|event| *event == "speech_started")
            .count(),
        1,
        "the second utterance began before the page reconnected (lengthen GAP_S): {vad:?}"
    );
}

#[tokio::test]
async fn a_dropped_socket_reconnects_by_itself_and_the_conversation_goes_on() {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let (proxy, relay, browser) = through_a_relay("reconnect", |_| {}).await;
    let page = Page::open(&browser, &format!("http://{}/", relay.addr())).await;
    let state = reconnected_after_the_first_turn(&page, &relay, true).await;
    // The view keeps its bubbles.
    assert_eq!(state.users.len(), 1, "{:?}", state.users);
    assert_eq!(state.users[0].text, QUESTION_1);
    assert_eq!(
        state.answer(1).and_then(|a| a.heard.as_deref()),
        Some(ANSWER_1)
    );
    assert!(state.errors.is_empty(), "{:?}", state.errors);

    // The second turn, on the new socket: ids carry on (its answer is response 2).
    let state = page
        .wait_for("the second answer to play to its end", |s| {
            s.response(2)["phase"] == "drained"
        })
        .await;
    let users: Vec<(&str, bool)> = state
        .users
        .iter()
        .map(|user| (user.text.as_str(), user.r#final))
        .collect();
    assert_eq!(users, [(QUESTION_1, true), (QUESTION_2, true)]);
    assert_eq!(
        state.answer(2).and_then(|a| a.heard.as_deref()),
        Some(ANSWER_2)
    );
    assert_eq!(state.answer(2).map(|a| a.status.as_str()), Some("complete"));
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    assert_eq!(state.probe("reconnects"), 1, "one drop, one reconnect");

    // The model heard the first turn when it answered the second.
    let records = proxy.sim.records();
    assert_eq!(records.chat.len(), 2, "one chat request per turn");
    let messages = records.chat[1].messages();
    let turns: Vec<(&str, &str)> = messages
        .iter()
        .map(|(role, content)| (role.as_str(), content.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            ("system", turns[0].1),
            ("user", QUESTION_1),
            ("assistant", ANSWER_1),
            ("user", QUESTION_2)
        ],
        "{messages:#?}"
    );

    page.screenshot(
        &artifacts_dir()
            .join("screenshots")
            .join("chromium-after-reconnect.png"),
    )
    .await;
    browser.close().await;
    proxy.stop().await;
}

#[tokio::test]
async fn without_resume_a_dropped_socket_reconnects_to_a_fresh_conversation_and_says_so() {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    // A proxy that keeps no conversation after a drop: its sessions carry no ticket.
    let (proxy, relay, browser) = through_a_relay("reconnect-fresh", |config| {
        config.resume_grace = Duration::ZERO;
    })
    .await;
    let page = Page::open(&browser, &format!("http://{}/", relay.addr())).await;
    let state = reconnected_after_the_first_turn(&page, &relay, false).await;
    assert!(
        state.errors.iter().any(|error| error.contains(
            "The connection dropped and the conversation restarted: earlier turns are forgotten."
        )),
        "{:?}",
        state.errors
    );
    assert!(
        state.users.is_empty() && state.answers.is_empty(),
        "{state:#?}"
    );

    // The new conversation numbers its answers from 1 again, and the page plays them (the
    // playback worklet still holds the old response 1 as played).
    let state = page
        .wait_for(
            "the fresh conversation's first answer to play to its end",
            |s| s.response(1)["phase"] == "drained",
        )
        .await;
    let users: Vec<(&str, bool)> = state
        .users
        .iter()
        .map(|user| (user.text.as_str(), user.r#final))
        .collect();
    assert_eq!(users, [(QUESTION_2, true)]);
    assert_eq!(
        state.answer(1).and_then(|a| a.heard.as_deref()),
        Some(ANSWER_2)
    );
    let records = proxy.sim.records();
    let roles: Vec<String> = records.chat[1]
        .messages()
        .into_iter()
        .map(|(role, _)| role)
        .collect();
    assert_eq!(roles, ["system", "user"], "the model starts afresh");
    browser.close().await;
    proxy.stop().await;
}
