//! The page and its WebSocket over HTTPS and WSS, served by the proxy itself (`TLS_CERT`,
//! `TLS_KEY`) with a throwaway certificate. Chromium is told to accept that certificate's key
//! alone ([`Browser::launch_chromium_trusting`]); everything else about the page is as
//! deployed.

use base64::Engine as _;
use openai_sim::SimConfig;
use sha2::{Digest as _, Sha256};
use voice_agent_e2e::TestProxy;
use voice_agent_e2e::tls::{CertificateFiles, TestCertificate};

use super::browser::Browser;
use super::client_dist::client_dist;
use super::microphone::{Part, microphone};
use super::page::Page;
use super::{ONE_BROWSER_AT_A_TIME, speech_of};

#[tokio::test]
async fn over_https_a_chromium_turn_runs_end_to_end() {
    const QUESTION: &str = "What is the capital of France?";
    const ANSWER: &str = "Paris is the capital of France.";
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let certificate = TestCertificate::generate();
    let files = CertificateFiles::new("browser", &certificate);
    let tls = files.files.clone();
    let dist = client_dist();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_dir = dist;
        config.tls = Some(tls);
    })
    .await;
    proxy.sim.script_transcript(QUESTION);
    proxy.sim.script_reply(ANSWER);
    let mic = microphone(
        "https",
        &[Part::Quiet(1.5), Part::Speech(QUESTION), Part::Quiet(8.0)],
    );
    let spki_sha256 =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&certificate.spki_der));
    let browser = Browser::launch_chromium_trusting(&mic, &spki_sha256).await;
    let page = Page::open(&browser, &proxy.https_url()).await;
    let url = browser
        .client()
        .current_url()
        .await
        .expect("the page's URL");
    assert_eq!(url.scheme(), "https", "{url}");
    // The proxy listens only for TLS: the session's socket was `wss://`.
    let state = page.one_turn_heard(QUESTION, ANSWER).await;
    let records = proxy.sim.records();
    let synthesized: usize = speech_of(&records, ANSWER)
        .iter()
        .map(|s| s.sent.len())
        .sum::<usize>()
        / 2;
    assert!(synthesized > 0, "the answer was synthesized");
    assert_eq!(state.response(1)["playedSamples"], synthesized);
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    browser.close().await;
    proxy.stop().await;
}
