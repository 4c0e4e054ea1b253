//! The voice agent page as a test sees it: the Start button, what the page shows (found by
//! `data-testid`) and the test probe `window.__voiceTest()`.

use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use serde::Deserialize;
use serde_json::Value;

use super::BROWSER_DEADLINE;
use super::browser::Browser;

/// Reads everything a test checks in one round trip.
const SNAPSHOT_JS: &str = r#"
const text = (el) => el ? el.textContent : null;
const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
return JSON.stringify({
  probe: window.__voiceTest ? JSON.parse(window.__voiceTest()) : null,
  connection: document.querySelector('[data-testid="connection"]')?.dataset.state ?? null,
  pipeline: document.querySelector('[data-testid="pipeline"]')?.dataset.state ?? null,
  simulatorBanner: all('simulator-banner').length > 0,
  echoNote: all('echo-note').length > 0,
  users: all('user-text').map((el) => ({ text: el.textContent, final: el.dataset.final === 'true' })),
  answers: all('assistant-text').map((el) => ({
    responseId: Number(el.dataset.responseId),
    status: el.dataset.status,
    heard: text(el.querySelector('.heard')),
    unheard: text(el.querySelector('.unheard')),
    marked: el.querySelector('[data-testid="interrupted-marker"]') !== null,
  })),
  micLevelDb: Number(document.querySelector('[data-testid="mic-level"]')?.getAttribute('aria-valuenow') ?? NaN),
  waterfalls: all('waterfall').length,
  errors: all('error').map((el) => el.textContent),
});
"#;

/// What the page shows and counts at one moment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageState {
    /// `window.__voiceTest()`, once a session started.
    pub(crate) probe: Option<Value>,
    /// `data-state` of the connection badge.
    pub(crate) connection: Option<String>,
    /// `data-state` of the pipeline badge.
    pub(crate) pipeline: Option<String>,
    /// The simulator banner is shown.
    pub(crate) simulator_banner: bool,
    /// The "headphones recommended" note is shown.
    pub(crate) echo_note: bool,
    /// The user's turns.
    pub(crate) users: Vec<UserLine>,
    /// The assistant's answers.
    pub(crate) answers: Vec<AnswerLine>,
    /// The microphone level meter's value, dBFS (clamped to the meter's floor, −60).
    pub(crate) mic_level_db: Option<f64>,
    /// Latency waterfalls shown.
    pub(crate) waterfalls: usize,
    /// Errors listed.
    pub(crate) errors: Vec<String>,
}

/// One user bubble.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UserLine {
    /// Its words.
    pub(crate) text: String,
    /// The transcript is final.
    pub(crate) r#final: bool,
}

/// One assistant bubble.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnswerLine {
    /// Its response id.
    pub(crate) response_id: u32,
    /// `streaming`, `complete` or `interrupted`.
    pub(crate) status: String,
    /// The text the user heard (all of it unless interrupted).
    pub(crate) heard: Option<String>,
    /// The text after the cut, if interrupted.
    pub(crate) unheard: Option<String>,
    /// The interrupted marker is shown.
    pub(crate) marked: bool,
}

impl PageState {
    /// A probe field, e.g. `probe("sampleRate")`.
    pub(crate) fn probe(&self, key: &str) -> &Value {
        self.probe
            .as_ref()
            .map_or(&Value::Null, |probe| &probe[key])
    }

    /// The probe's record of one response.
    pub(crate) fn response(&self, response_id: u32) -> &Value {
        &self.probe("responses")[response_id.to_string()]
    }

    /// The answer bubble of one response.
    pub(crate) fn answer(&self, response_id: u32) -> Option<&AnswerLine> {
        self.answers
            .iter()
            .find(|answer| answer.response_id == response_id)
    }
}

/// The page open in a browser.
#[derive(Debug)]
pub(crate) struct Page<'a> {
    browser: &'a Browser,
}

impl<'a> Page<'a> {
    /// Opens `url` and waits for the app to render.
    pub(crate) async fn open(browser: &'a Browser, url: &str) -> Page<'a> {
        browser.client().goto(url).await.expect("the page loads");
        let page = Page { browser };
        page.start_button().await;
        page
    }

    async fn start_button(&self) -> fantoccini::elements::Element {
        let client = self.browser.client();
        let give_up = tokio::time::Instant::now() + BROWSER_DEADLINE;
        loop {
            if let Ok(button) = client
                .find(Locator::Css("[data-testid='start-stop']"))
                .await
            {
                return button;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "the app did not render within {BROWSER_DEADLINE:?}; see {}",
                self.browser.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page (a function body).
    pub(crate) async fn run_script(&self, script: &str) {
        self.browser
            .client()
            .execute(script, Vec::new())
            .await
            .expect("the script runs");
    }

    /// Presses the Start/Stop button (a real click, so a user gesture).
    pub(crate) async fn press_start_stop(&self) {
        self.start_button()
            .await
            .click()
            .await
            .expect("click Start");
    }

    /// Presses Start, waits for the session and both worklets, then starts the microphone
    /// WAV ([`Browser::feed_microphone`]). Returns the state at that moment.
    pub(crate) async fn start_talking(&self) -> PageState {
        self.press_start_stop().await;
        let state = self
            .wait_for("the session and both worklets ready", |s| {
                s.connection.as_deref() == Some("connected")
                    && !s.probe("captureVia").is_null()
                    && !s.probe("playbackVia").is_null()
            })
            .await;
        self.browser.feed_microphone();
        state
    }

    /// Speaks (see [`Page::start_talking`]) and waits for the first answer to play to its
    /// end; checks that the page shows `question` as the user's final words and that `answer`
    /// was heard whole. Returns the state then.
    pub(crate) async fn one_turn_heard(&self, question: &str, answer: &str) -> PageState {
        self.start_talking().await;
        let state = self
            .wait_for("the answer to play to its end", |s| {
                s.response(1)["phase"] == "drained"
            })
            .await;
        let user = state.users.first().expect("the user's turn is shown");
        assert_eq!((user.text.as_str(), user.r#final), (question, true));
        assert_eq!(
            state.answer(1).and_then(|a| a.heard.as_deref()),
            Some(answer)
        );
        state
    }

    /// What the page shows now.
    pub(crate) async fn state(&self) -> PageState {
        let json = self
            .browser
            .client()
            .execute(SNAPSHOT_JS, Vec::new())
            .await
            .expect("the snapshot script runs");
        let text = json.as_str().expect("the snapshot is a JSON string");
        serde_json::from_str(text).expect("the snapshot parses")
    }

    /// Polls the page until `condition` holds; fails after [`BROWSER_DEADLINE`] with the
    /// last state.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        condition: impl Fn(&PageState) -> bool,
    ) -> PageState {
        let give_up = tokio::time::Instant::now() + BROWSER_DEADLINE;
        loop {
            let state = self.state().await;
            if condition(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "waited {BROWSER_DEADLINE:?} for {what}; the page shows {state:#?}\n\
                 browser log: {}",
                self.browser.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self
            .browser
            .client()
            .screenshot()
            .await
            .expect("take a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}
