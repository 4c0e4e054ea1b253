//! The whole product in real browsers: the client served by a real proxy in front of the
//! simulator, opened through WebDriver in headless Chromium (chromedriver), Firefox ESR
//! (geckodriver) and WebKitGTK (WebKitWebDriver on Xvfb), with a WAV file as the microphone
//! (see [`browser`] for how each engine gets it).
//!
//! In every engine:
//! * one full turn: the page renders, Start runs an AudioContext (at the engine's default
//!   rate) with both worklets built from the compiled DSP Module, the level meter moves with
//!   the voice, both sides of the conversation are shown, and the playback worklet played
//!   exactly the samples the simulator synthesized, without underruns; a screenshot is kept
//!   as `target/e2e-browser/screenshots/ENGINE-one-turn.png` (a CI artifact);
//! * barge-in: speaking over the answer stops it, the proxy closes the answer's upstream
//!   requests, and the page marks the answer interrupted where it was cut
//!   (`screenshots/ENGINE-after-barge-in.png`);
//! * pitch: a 1 kHz tone at the microphone reaches the proxy as 1 kHz at 24 kHz, with the
//!   AudioContext at the engine's default rate and at the other common one (44.1/48 kHz).
//!
//! Firefox runs on laptop speakers, the others on headphones (`Engine::room` says why): the
//! answer's echo reaches Firefox's microphone, so there the one-turn test (exactly one
//! utterance) and the barge-in test (the answers after the cut play to their end) also show
//! that the answer does not barge in on itself.
//!
//! In Chromium only (the path it covers is the page's and the proxy's own, not the engine's):
//! * without an API key the page announces the simulator; a screenshot of it after a turn is
//!   kept as `target/e2e-browser/screenshots/after-turn.png` (the proxy holds an access token,
//!   which the page takes from its link); Stop then Start opens a new
//!   session, and when the browser then says it cancels no echo, the page advises headphones;
//! * the bundle deployed apart from the proxy: `dist/` with a `config.json` served by Python's
//!   `http.server` on another origin runs a turn against the proxy it names, which lists that
//!   origin in `ALLOWED_ORIGINS`; a proxy that does not is refused, and the page says why;
//! * one turn over HTTPS against the proxy serving TLS itself ([`tls`]);
//! * a dropped socket: the page, loaded through a relay that then resets its connections,
//!   reconnects by itself, resumes the conversation with its token and answers the next turn
//!   with the first one in the model's history ([`reconnect`]).
//!
//! Also here, ignored (a benchmark: it prints figures and gates nothing): the cost of one
//! capture and one playback `process()` call in Chromium ([`dsp_bench`]).
//!
//! Not verifiable here: Apple Safari (WebKitGTK shares its engine, not its media stack), and
//! the AudioContext's `state` itself (the page does not expose it; a capture worklet that
//! reports levels is the evidence that the context runs).
//!
//! The client is built once per run with trunk ([`client_dist`]). The tests run one at a time
//! (each holds [`ONE_BROWSER_AT_A_TIME`]): real-time audio in several browsers at once on a
//! small machine would underrun for reasons that are not the product's. Every wait is for a
//! condition, with a generous deadline.

mod browser;
mod client_dist;
mod dsp_bench;
mod host;
mod microphone;
mod page;
mod reconnect;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use openai_sim::{Outcome, Records, SimConfig, SpeechRecord};
use serde_json::json;
use voice_agent_e2e::TestProxy;

use browser::{Browser, Engine};
use client_dist::client_dist;
use microphone::{FILE_RATE_HZ, Part, microphone};
use page::Page;

/// How long any awaited browser condition may take. Far above what a step needs (building
/// the client is not inside it).
pub(crate) const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// The wire's sample rate.
const WIRE_RATE_HZ: f64 = 24_000.0;

/// Held by each test for its whole run.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The repository root: the parent of this package's manifest dir, without `..` (chromedriver
/// cannot find its port file under a profile path that has one).
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("browser-tests/ sits in the repository root")
}

/// Where the browser tests keep their files: `target/e2e-browser/`.
pub(crate) fn artifacts_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("e2e-browser");
    std::fs::create_dir_all(&dir).expect("create target/e2e-browser");
    dir
}

/// A proxy on the simulator that serves the built client.
async fn proxy_serving_the_client(sim: SimConfig) -> TestProxy {
    let dist = client_dist();
    TestProxy::start(sim, move |config| config.client_dir = dist).await
}

/// The Speech requests whose input is part of `reply`, i.e. those of one response.
fn speech_of<'a>(records: &'a Records, reply: &str) -> Vec<&'a SpeechRecord> {
    records
        .speech
        .iter()
        .filter(|speech| {
            speech.body["input"]
                .as_str()
                .is_some_and(|input| reply.contains(input.trim()))
        })
        .collect()
}

#[tokio::test]
async fn one_turn_shows_both_sides_and_plays_exactly_what_was_synthesized() {
    one_turn_case(Engine::Chromium).await;
}

#[tokio::test]
async fn in_firefox_one_turn_shows_both_sides_and_plays_exactly_what_was_synthesized() {
    one_turn_case(Engine::Firefox).await;
}

#[tokio::test]
async fn in_webkit_one_turn_shows_both_sides_and_plays_exactly_what_was_synthesized() {
    one_turn_case(Engine::WebKit).await;
}

/// One whole turn in `engine`: the page renders, Start runs an AudioContext at the engine's
/// default rate with both worklets built from the compiled DSP Module, the level meter
/// moves with the voice, the session is established, and the turn completes with exactly the
/// synthesized samples played. Ends with a screenshot `screenshots/ENGINE-one-turn.png`.
async fn one_turn_case(engine: Engine) {
    const QUESTION: &str = "What is the capital of France?";
    const ANSWER: &str = "Paris is the capital of France. It sits on the river Seine.";
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let proxy = proxy_serving_the_client(SimConfig::default()).await;
    proxy.sim.script_transcript(QUESTION);
    proxy.sim.script_reply(ANSWER);
    let mic = microphone(
        "one-turn",
        &[Part::Quiet(1.5), Part::Speech(QUESTION), Part::Quiet(8.0)],
    );
    let browser = Browser::launch(engine, &mic).await;
    let page = Page::open(&browser, &proxy.http_url()).await;
    let state = page.start_talking().await;
    // The page has no handle on the AudioContext's state; the capture worklet reporting
    // levels (below) is the proof that it runs: a suspended context processes nothing.
    assert_eq!(
        state.probe("sampleRate").as_f64(),
        Some(engine.default_sample_rate()),
        "{engine:?}'s default AudioContext rate"
    );
    assert_eq!(
        (state.probe("captureVia"), state.probe("playbackVia")),
        (&json!("module"), &json!("module")),
        "{engine:?}: both worklets got the compiled WebAssembly.Module"
    );
    page.wait_for("the level meter to show the voice", |s| {
        s.mic_level_db.is_some_and(|db| db > -40.0)
    })
    .await;

    let state = page
        .wait_for("the answer to play to its end", |s| {
            s.response(1)["phase"] == "drained"
        })
        .await;
    let user = state.users.first().expect("the user's turn is shown");
    assert_eq!((user.text.as_str(), user.r#final), (QUESTION, true));
    let answer = state.answer(1).expect("the answer is shown");
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.heard.as_deref(), Some(ANSWER));
    assert!(!answer.marked);

    // Exactly what the simulator synthesized, all received and all played.
    let records = proxy.sim.records();
    let speech = speech_of(&records, ANSWER);
    assert!(!speech.is_empty(), "the answer was synthesized");
    let synthesized: usize = speech.iter().map(|s| s.sent.len()).sum::<usize>() / 2;
    let response = state.response(1);
    assert_eq!(response["receivedSamples"], synthesized, "{response}");
    assert_eq!(response["playedSamples"], synthesized, "{response}");
    assert_eq!(response["droppedFrames"], 0, "{response}");
    assert_eq!(state.probe("underruns"), 0, "no underrun while playing");
    assert_eq!(state.probe("unknownFrames"), 0);

    let state = page
        .wait_for("the turn's waterfall, and the page listening again", |s| {
            s.waterfalls == 1 && s.pipeline.as_deref() == Some("listening")
        })
        .await;
    // This proxy holds a key (for the scripted simulator), so it does not announce a simulator.
    assert_eq!(state.probe("simulated"), false);
    assert!(!state.simulator_banner);
    // All three say they cancel echo on the microphone (WebKitGTK too, though here it lets
    // the echo through), so the page does not advise headphones.
    assert_eq!(state.probe("echoCancellation"), true);
    assert!(!state.echo_note);
    assert_eq!(state.connection.as_deref(), Some("connected"));
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    let vad: Vec<&str> = state
        .probe("vad")
        .as_array()
        .expect("vad events")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    let turns: Vec<&str> = vad
        .iter()
        .copied()
        .filter(|event| matches!(*event, "speech_started" | "speech_stopped"))
        .collect();
    assert_eq!(
        turns,
        ["speech_started", "speech_stopped"],
        "one utterance, one turn: {vad:?}"
    );
    // Short pauses between words may come and go inside it; its end is a pause, then the stop.
    assert_eq!(
        vad[vad.len() - 2..],
        ["speech_paused", "speech_stopped"],
        "{vad:?}"
    );
    page.screenshot(
        &artifacts_dir()
            .join("screenshots")
            .join(format!("{}-one-turn.png", engine.name())),
    )
    .await;
    browser.close().await;
    proxy.stop().await;
}

/// One spoken turn in Chromium against a proxy configured by `configure`, with the page's
/// default settings: the user's words are shown as said and the answer plays to its end.
/// Returns what the simulator recorded.
async fn a_chromium_turn_with(
    name: &str,
    question: &str,
    answer: &str,
    configure: impl FnOnce(&mut proxy::config::Config),
) -> Records {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let dist = client_dist();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_dir = dist;
        configure(config);
    })
    .await;
    proxy.sim.script_transcript(question);
    proxy.sim.script_reply(answer);
    let mic = microphone(
        name,
        &[Part::Quiet(1.5), Part::Speech(question), Part::Quiet(8.0)],
    );
    let browser = Browser::launch(Engine::Chromium, &mic).await;
    let page = Page::open(&browser, &proxy.http_url()).await;
    page.one_turn_heard(question, answer).await;
    let records = proxy.sim.records();
    browser.close().await;
    proxy.stop().await;
    records
}

#[tokio::test]
async fn in_server_vad_mode_a_turn_ends_with_the_default_client_settings() {
    // The upstream's VAD ends the turn; the page keeps its default VAD settings, so it sends
    // audio only while it hears speech.
    let records = a_chromium_turn_with(
        "server-vad",
        "How long is the river Nile?",
        "The Nile is about six and a half thousand kilometres long.",
        |config| config.turn_detection = protocol::TurnDetection::ServerVad,
    )
    .await;
    // The upstream ended the turn itself: the proxy never committed.
    let commits: usize = records
        .realtime
        .iter()
        .map(|c| c.events_of_type("input_audio_buffer.commit").count())
        .sum();
    assert_eq!(commits, 0);
}

#[tokio::test]
async fn with_file_transcription_a_turn_runs_end_to_end() {
    let records = a_chromium_turn_with(
        "file-stt",
        "Which planet is the largest?",
        "Jupiter is the largest planet.",
        |config| config.stt_mode = proxy::config::SttMode::File,
    )
    .await;
    assert!(
        records.realtime.is_empty(),
        "no Realtime socket in file mode"
    );
    assert_eq!(records.transcription.len(), 1);
}

#[tokio::test]
async fn speech_to_speech_a_turn_runs_end_to_end_with_the_page_unchanged() {
    let records = a_chromium_turn_with(
        "speech-to-speech",
        "What is the capital of France?",
        "Paris is the capital of France.",
        |config| config.pipeline = proxy::config::PipelineKind::SpeechToSpeech,
    )
    .await;
    assert!(
        records.chat.is_empty() && records.speech.is_empty(),
        "one Realtime conversation does it all"
    );
    let session = records.realtime.first().expect("a Realtime session");
    assert!(
        session
            .query
            .as_deref()
            .unwrap_or_default()
            .contains("model="),
        "{:?}",
        session.query
    );
    assert_eq!(session.events_of_type("response.create").count(), 1);
}

#[tokio::test]
async fn without_a_key_the_page_announces_the_simulator_and_a_turn_is_kept_as_a_screenshot() {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let dist = client_dist();
    // No key: the proxy answers from its own built-in simulator, as `cargo run -p proxy` does
    // on a machine without one. It transcribes by duration and echoes the question.
    // It also holds an access token, as a proxy on the internet would: the page is opened
    // with it in its link and passes it on.
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.openai_api_key = None;
        config.client_dir = dist;
        config.access_token = Some(proxy::config::Secret::new("link-token"));
    })
    .await;
    let mic = microphone(
        "simulator",
        &[
            Part::Quiet(1.5),
            Part::Speech("How far away is the moon?"),
            Part::Quiet(8.0),
        ],
    );
    let browser = Browser::launch(Engine::Chromium, &mic).await;
    let page = Page::open(&browser, &format!("{}/?token=link-token", proxy.http_url())).await;
    page.start_talking().await;

    let state = page
        .wait_for("a whole turn with its waterfall", |s| {
            s.response(1)["phase"] == "drained"
                && s.waterfalls == 1
                && s.pipeline.as_deref() == Some("listening")
        })
        .await;
    assert!(state.simulator_banner, "the simulator is announced");
    assert_eq!(state.probe("simulated"), true);
    assert!(
        state
            .users
            .first()
            .is_some_and(|user| user.r#final && !user.text.is_empty())
    );
    assert!(
        state
            .answer(1)
            .is_some_and(|answer| answer.status == "complete")
    );
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    page.screenshot(&artifacts_dir().join("screenshots").join("after-turn.png"))
        .await;

    // Stop ends the session; Start opens a new one (a new AudioContext, the same compiled DSP).
    page.press_start_stop().await;
    page.wait_for("the session to stop", |s| {
        s.connection.as_deref() == Some("offline") && s.pipeline.as_deref() == Some("idle")
    })
    .await;
    // This time the browser says it cancels no echo (as some do, whatever the page asks):
    // the page advises headphones.
    page.run_script(
        "const settings = MediaStreamTrack.prototype.getSettings;
         MediaStreamTrack.prototype.getSettings = function () {
             return { ...settings.call(this), echoCancellation: false };
         };",
    )
    .await;
    page.press_start_stop().await;
    let state = page
        .wait_for("a new session, with the headphones advice", |s| {
            s.connection.as_deref() == Some("connected")
                && s.probe("playbackVia") == "module"
                && s.echo_note
        })
        .await;
    assert_eq!(state.probe("echoCancellation"), false);
    assert!(state.errors.is_empty(), "{:?}", state.errors);

    // A link with the wrong token: no session, and the page says what to check.
    let page = Page::open(&browser, &format!("{}/?token=stale", proxy.http_url())).await;
    page.press_start_stop().await;
    let state = page
        .wait_for("the refusal shown", |s| !s.errors.is_empty())
        .await;
    assert!(
        state.errors.iter().any(|error| error.contains("?token=")),
        "{:?}",
        state.errors
    );
    // The first page's session ended with it, and this one never began.
    proxy.wait_for_sessions(|live| live == 0).await;
    browser.close().await;
    proxy.stop().await;
}

#[tokio::test]
async fn speaking_over_the_answer_stops_it_cancels_it_upstream_and_marks_it_interrupted() {
    barge_in_case(Engine::Chromium).await;
}

/// On laptop speakers (see `Engine::room`): the story's echo reaches the microphone too, so
/// this also shows that neither the story nor the short answer after the cut barges in on
/// itself while the echo canceller re-converges.
#[tokio::test]
async fn in_firefox_speaking_over_the_answer_stops_it_cancels_it_upstream_and_marks_it_interrupted()
{
    barge_in_case(Engine::Firefox).await;
}

#[tokio::test]
async fn in_webkit_speaking_over_the_answer_stops_it_cancels_it_upstream_and_marks_it_interrupted()
{
    barge_in_case(Engine::WebKit).await;
}

/// The user cuts into a long story in `engine`.
async fn barge_in_case(engine: Engine) {
    const STORY: &str = "Once upon a time there was a lighthouse keeper. Every night she climbed \
        the tower and lit the lamp. Ships passed safely through the storms. One winter the lamp \
        went out. She carried a lantern up the stairs and held it until dawn. The sailors never \
        forgot her. They built a statue by the harbour. It still stands there today.";
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    // Slow enough that the story is still being written and spoken when the user cuts in.
    let proxy = proxy_serving_the_client(SimConfig {
        llm_tokens_per_second: 5.0,
        tts_realtime_factor: 1.0,
        ..SimConfig::default()
    })
    .await;
    proxy.sim.script_transcript("Tell me a story.");
    proxy.sim.script_reply(STORY);
    proxy.sim.script_transcript("Stop, that is enough.");
    proxy.sim.script_reply("Okay.");
    let mic = microphone(
        "barge-in",
        &[
            Part::Quiet(1.5),
            Part::Speech("Tell me a story."),
            // The story starts playing about four seconds after the turn ends (its first
            // sentence is written slowly), and lasts far longer than this pause.
            Part::Quiet(9.0),
            Part::Speech("Stop, that is enough."),
            Part::Quiet(6.0),
        ],
    );
    let browser = Browser::launch(engine, &mic).await;
    let page = Page::open(&browser, &proxy.http_url()).await;
    page.start_talking().await;

    page.wait_for("the story to be cut", |s| {
        s.response(1)["phase"] == "cancelled"
    })
    .await;
    // The phase turns `cancelled` as the user starts speaking; the playback worklet plays on
    // until the clear reaches it (a few render quanta), and its `cleared` reply carries the
    // final count. The worklet answers in order, so once it reports progress of the next
    // answer, the story's count is final.
    let state = page
        .wait_for("the next answer to play (the story's count final)", |s| {
            s.response(2)["playedSamples"]
                .as_u64()
                .is_some_and(|played| played > 0)
        })
        .await;
    let played = state.response(1)["playedSamples"]
        .as_u64()
        .expect("played samples");
    assert!(played > 0, "the story was playing when the user cut in");

    // The proxy closed the story's LLM stream and its speech requests.
    let records = proxy
        .sim
        .wait_until(BROWSER_DEADLINE, |r| {
            r.chat.first().is_some_and(|chat| chat.outcome.is_final())
                && speech_of(r, STORY).iter().all(|s| s.outcome.is_final())
        })
        .await
        .expect("the story's upstream requests end");
    assert_eq!(
        records.chat[0].outcome,
        Outcome::ClientClosed,
        "the LLM stream was cancelled, not finished"
    );
    let story_speech = speech_of(&records, STORY);
    assert!(
        story_speech
            .iter()
            .any(|s| s.outcome == Outcome::ClientClosed),
        "a speech request was cut: {:?}",
        story_speech.iter().map(|s| s.outcome).collect::<Vec<_>>()
    );
    let synthesized: usize = story_speech.iter().map(|s| s.sent.len()).sum::<usize>() / 2;
    assert!(
        (played as usize) < synthesized || synthesized == 0,
        "playback stopped before the end of what was sent ({played} of {synthesized})"
    );

    // The page marks the story interrupted where it was cut, and answers the new turn.
    let state = page
        .wait_for(
            "the story marked interrupted and the next answer played",
            |s| {
                s.answer(1)
                    .is_some_and(|a| a.status == "interrupted" && a.marked && a.unheard.is_some())
                    && s.response(2)["phase"] == "drained"
            },
        )
        .await;
    let story = state.answer(1).expect("the story is shown");
    let heard = story.heard.as_deref().unwrap_or_default();
    assert!(
        STORY.starts_with(heard.trim_end()),
        "the heard part {heard:?} begins the story"
    );
    assert_eq!(
        state.response(1)["playedSamples"],
        played,
        "no more played after the cut"
    );
    assert_eq!(state.answer(2).map(|a| a.status.as_str()), Some("complete"));
    assert!(state.errors.is_empty(), "{:?}", state.errors);

    page.screenshot(
        &artifacts_dir()
            .join("screenshots")
            .join(format!("{}-after-barge-in.png", engine.name())),
    )
    .await;
    browser.close().await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_1khz_tone_reaches_the_proxy_as_1khz_at_24khz_from_a_44_1khz_context() {
    tone_pitch_case(Engine::Chromium, None, 44_100.0).await;
}

#[tokio::test]
async fn a_1khz_tone_reaches_the_proxy_as_1khz_at_24khz_from_a_48khz_context() {
    tone_pitch_case(Engine::Chromium, Some(48_000), 48_000.0).await;
}

#[tokio::test]
async fn in_firefox_a_1khz_tone_reaches_the_proxy_as_1khz_at_24khz_from_its_default_48khz_context()
{
    tone_pitch_case(Engine::Firefox, None, 48_000.0).await;
}

/// A rate other than the audio device's: Firefox ESR 140 refused to connect the microphone
/// to such a context (NotSupportedError, `docs/browsers.md` §1.6).
#[tokio::test]
async fn in_firefox_a_1khz_tone_reaches_the_proxy_as_1khz_at_24khz_from_a_44_1khz_context() {
    tone_pitch_case(Engine::Firefox, Some(44_100), 44_100.0).await;
}

#[tokio::test]
async fn in_webkit_a_1khz_tone_reaches_the_proxy_as_1khz_at_24khz_from_its_default_44_1khz_context()
{
    tone_pitch_case(Engine::WebKit, None, 44_100.0).await;
}

#[tokio::test]
async fn in_webkit_a_1khz_tone_reaches_the_proxy_as_1khz_at_24khz_from_a_48khz_context() {
    tone_pitch_case(Engine::WebKit, Some(48_000), 48_000.0).await;
}

/// Plays a 1 kHz tone into a context at `asked_rate` (the browser default if `None`) in
/// `engine` and measures what the proxy relayed upstream.
async fn tone_pitch_case(engine: Engine, asked_rate: Option<u32>, expected_rate: f64) {
    const TONE_HZ: f64 = 1_000.0;
    const TONE_SECONDS: f64 = 1.5;
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let proxy = proxy_serving_the_client(SimConfig::default()).await;
    proxy.sim.script_transcript("Beep.");
    proxy.sim.script_reply("That was a tone.");
    // Chromium plays the file from the moment the page opens the microphone, before the
    // capture worklet runs: the quiet before the tone must outlast that start-up even on a
    // busy machine (1.5 s once lost half the tone in CI).
    let mic = microphone(
        &format!("tone-{}-{}", engine.name(), asked_rate.unwrap_or(0)),
        &[
            Part::Quiet(4.0),
            Part::Tone {
                hz: TONE_HZ,
                seconds: TONE_SECONDS,
                peak_dbfs: -6.0,
            },
            Part::Quiet(4.0),
        ],
    );
    let browser = Browser::launch(engine, &mic).await;
    let url = match asked_rate {
        Some(rate) => format!("{}/?sampleRate={rate}", proxy.http_url()),
        None => proxy.http_url(),
    };
    let page = Page::open(&browser, &url).await;
    page.start_talking().await;

    let state = page
        .wait_for("the tone's turn to end", |s| {
            s.probe("vad")
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["event"] == "speech_stopped"))
        })
        .await;
    assert_eq!(
        state.probe("sampleRate").as_f64(),
        Some(expected_rate),
        "{engine:?}: the AudioContext's rate"
    );
    let sent_bytes = state.probe("sentBytes").as_u64().expect("sent bytes") as usize;
    let records = proxy
        .sim
        .wait_until(BROWSER_DEADLINE, |r| r.realtime_audio_bytes() >= sent_bytes)
        .await
        .expect("the proxy relays all the audio the page sent");
    let audio: Vec<i16> = records
        .realtime
        .iter()
        .flat_map(|connection| connection.audio.chunks_exact(2))
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();

    let tone = loudest_stretch(&audio);
    let seconds = tone.len() as f64 / WIRE_RATE_HZ;
    assert!(
        (seconds - TONE_SECONDS).abs() < 0.15,
        "the tone lasts {seconds:.3} s at 24 kHz, not {TONE_SECONDS} s; the page's VAD events: {}",
        state.probe("vad")
    );
    let frequency = zero_crossing_frequency(tone, WIRE_RATE_HZ);
    eprintln!(
        "{engine:?}, context {expected_rate} Hz: the tone arrived at {frequency:.2} Hz, {seconds:.3} s long"
    );
    // Chromium reads the file itself. Firefox and WebKitGTK get the tone from PulseAudio at
    // 48 kHz and resample it to the context's rate themselves; at 44.1 kHz that path measured
    // anywhere from 998 to 1013 Hz across runs here (presumably the engines' drift-correcting
    // capture resamplers; at 48 kHz it is 1000.0 Hz every time). A rate mistake in the page
    // is at least 8.8% (44.1 against 48 kHz), so 2% still catches every one.
    let tolerance_hz = match engine {
        Engine::Chromium => 5.0,
        Engine::Firefox | Engine::WebKit => 20.0,
    };
    assert!(
        (frequency - TONE_HZ).abs() < tolerance_hz,
        "{engine:?}: the tone arrived at {frequency:.1} Hz (context {expected_rate} Hz, file {FILE_RATE_HZ} Hz)"
    );
    browser.close().await;
    proxy.stop().await;
}

/// The longest run of 10 ms blocks louder than half the loudest block's RMS, trimmed by
/// 50 ms at each end (onsets and fades).
fn loudest_stretch(samples: &[i16]) -> &[i16] {
    const BLOCK: usize = 240;
    const TRIM: usize = 1_200;
    let rms: Vec<f64> = samples
        .chunks(BLOCK)
        .map(|block| {
            (block.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / block.len() as f64).sqrt()
        })
        .collect();
    let threshold = rms.iter().copied().fold(0.0, f64::max) / 2.0;
    let (mut best, mut run_start) = ((0, 0), None);
    for (index, level) in rms.iter().chain([&0.0]).enumerate() {
        match (run_start, *level >= threshold) {
            (None, true) => run_start = Some(index),
            (Some(start), false) => {
                if index - start > best.1 - best.0 {
                    best = (start, index);
                }
                run_start = None;
            }
            _ => {}
        }
    }
    let (start, end) = (best.0 * BLOCK, (best.1 * BLOCK).min(samples.len()));
    assert!(end - start > 2 * TRIM + BLOCK, "no tone found in the audio");
    &samples[start + TRIM..end - TRIM]
}

/// Frequency from rising zero crossings, located between samples by linear interpolation.
fn zero_crossing_frequency(samples: &[i16], rate: f64) -> f64 {
    let crossings: Vec<f64> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0] < 0 && pair[1] >= 0)
        .map(|(index, pair)| {
            let (a, b) = (f64::from(pair[0]), f64::from(pair[1]));
            index as f64 + a / (a - b)
        })
        .collect();
    assert!(crossings.len() > 10, "too few zero crossings to measure");
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    (crossings.len() - 1) as f64 * rate / (last - first)
}

/// A copy of the built client in `target/e2e-browser/NAME-dist/` with a `config.json` naming
/// `proxy_url`, as an operator deploys the bundle apart from the proxy.
fn bundle_pointing_at(name: &str, proxy_url: &str) -> PathBuf {
    let dir = artifacts_dir().join(format!("{name}-dist"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&client_dist(), &dir);
    std::fs::write(
        dir.join("config.json"),
        json!({ "proxy_url": proxy_url }).to_string(),
    )
    .expect("write config.json");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the bundle copy");
    for entry in std::fs::read_dir(from).expect("read the bundle") {
        let entry = entry.expect("a bundle entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a bundle file");
        }
    }
}

/// Python's `http.server` serving `dir` on `127.0.0.1:port`: a plain static server with
/// nothing of the proxy's, once it answers.
async fn static_server(dir: &Path, port: u16) -> host::Spawned {
    let server = host::Spawned::new(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir),
        &dir.with_extension("log"),
        "python3",
    );
    let give_up = tokio::time::Instant::now() + BROWSER_DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the static server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// The proxy's host name in the cross-origin test: Chromium resolves it to 127.0.0.1, and the
/// proxy serves it as a public host.
const PROXY_HOST: &str = "voice-api.test";

#[tokio::test]
async fn a_bundle_on_another_origin_talks_to_the_proxy_its_config_names_if_allowed() {
    const QUESTION: &str = "Where is the bundle served from?";
    const ANSWER: &str = "From a static server on another origin.";
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let static_port = host::free_port();
    let page_origin = format!("http://127.0.0.1:{static_port}");
    // The proxy serves no page at all. It is reached by a public name, so only its
    // ALLOWED_ORIGINS lets a page of another origin in; it holds a token, which the page takes
    // from its link and passes on.
    let allowed = page_origin.clone();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_dir = PathBuf::from("/nonexistent");
        config.public_hosts = vec![PROXY_HOST.to_owned()];
        config.allowed_origins = vec![allowed];
        config.access_token = Some(proxy::config::Secret::new("bundle-token"));
    })
    .await;
    proxy.sim.script_transcript(QUESTION);
    proxy.sim.script_reply(ANSWER);
    let proxy_url = |proxy: &TestProxy| format!("http://{PROXY_HOST}:{}", proxy.addr().port());
    let dist = bundle_pointing_at("other-origin", &proxy_url(&proxy));
    let _server = static_server(&dist, static_port).await;
    let mic = microphone(
        "other-origin",
        &[Part::Quiet(1.5), Part::Speech(QUESTION), Part::Quiet(8.0)],
    );
    let browser = Browser::launch_chromium_resolving(&mic, PROXY_HOST).await;
    let page = Page::open(&browser, &format!("{page_origin}/?token=bundle-token")).await;
    let state = page.one_turn_heard(QUESTION, ANSWER).await;
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    page.press_start_stop().await;
    proxy.wait_for_sessions(|live| live == 0).await;
    browser.close().await;
    proxy.stop().await;

    // The same bundle pointed at a proxy that does not list its origin: refused, and the
    // page says why.
    let strict = TestProxy::start(SimConfig::default(), |config| {
        config.client_dir = PathBuf::from("/nonexistent");
        config.public_hosts = vec![PROXY_HOST.to_owned()];
    })
    .await;
    std::fs::write(
        dist.join("config.json"),
        json!({ "proxy_url": proxy_url(&strict) }).to_string(),
    )
    .expect("rewrite config.json");
    let browser = Browser::launch_chromium_resolving(&mic, PROXY_HOST).await;
    let page = Page::open(&browser, &format!("{page_origin}/")).await;
    page.press_start_stop().await;
    let state = page
        .wait_for("the refusal shown", |s| !s.errors.is_empty())
        .await;
    assert!(
        state
            .errors
            .iter()
            .any(|error| error.contains("ALLOWED_ORIGINS") && error.contains(&page_origin)),
        "{:?}",
        state.errors
    );
    assert_eq!(strict.state.live_sessions(), 0, "no session began");
    browser.close().await;
    strict.stop().await;
}
