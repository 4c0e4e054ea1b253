//! A benchmark, not a test: what one `process()` call of each worklet costs in headless
//! Chromium, as a share of the render quantum. It prints figures and asserts only that it got
//! them, so it is `#[ignore]`d and never gates anything:
//!
//! ```sh
//! cargo test -p browser-tests --features browsers --test browser -- --ignored --nocapture dsp_cost
//! ```
//!
//! The page is `browser-tests/dsp-bench/` served next to the built client's own `audio.wasm`
//! and `worklets.js` (the release bundle [`client_dist`] builds). Inside the
//! AudioWorkletGlobalScope it calls the real capture and playback processors' `process()` on a
//! speech-like signal, tens of thousands of times per rate after a warm-up, and the bare wasm
//! calls for comparison (see `bench-worklet.js`). `DSP_BENCH_QUANTA` sets the calls timed per
//! figure (default 40 000, ~107 s of audio at 48 kHz); `DSP_BENCH_WASM=FILE` runs another
//! build of `audio.wasm` (e.g. one of `scripts/build-audio-wasm.sh OUT` at another opt-level)
//! with the bundle's `worklets.js`.

use std::path::PathBuf;
use std::time::Duration;

use openai_sim::SimConfig;
use serde_json::Value;
use voice_agent_e2e::TestProxy;

use super::browser::{Browser, Engine};
use super::microphone::{Part, microphone};
use super::{ONE_BROWSER_AT_A_TIME, artifacts_dir, client_dist, workspace_root};

/// How long the benchmark may take: a few seconds of timed loops per rate, far below this.
const BENCH_DEADLINE: Duration = Duration::from_secs(300);

/// Calls timed per figure unless `DSP_BENCH_QUANTA` says otherwise: enough for a stable mean
/// with a millisecond clock (`Date.now()` where the worklet scope has no `performance`).
const DEFAULT_QUANTA: u32 = 40_000;

#[tokio::test]
#[ignore = "a benchmark: prints the worklets' cost per render quantum; run with --ignored"]
async fn dsp_cost_of_one_render_quantum_in_chromium() {
    let _one_at_a_time = ONE_BROWSER_AT_A_TIME.lock().await;
    let quanta: u32 = std::env::var("DSP_BENCH_QUANTA")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_QUANTA);
    let site = bench_site();
    let proxy = TestProxy::start(SimConfig::default(), {
        let site = site.clone();
        move |config| config.client_dir = site
    })
    .await;
    let mic = microphone("dsp-bench", &[Part::Quiet(1.0)]);
    let browser = Browser::launch(Engine::Chromium, &mic).await;
    browser
        .client()
        .goto(&format!("{}/?quanta={quanta}", proxy.http_url()))
        .await
        .expect("the bench page loads");

    let give_up = tokio::time::Instant::now() + BENCH_DEADLINE;
    let report: Value = loop {
        let value = browser
            .client()
            .execute(
                "return window.__dspBench ? JSON.stringify(window.__dspBench) : null;",
                Vec::new(),
            )
            .await
            .expect("the poll script runs");
        if let Some(text) = value.as_str() {
            break serde_json::from_str(text).expect("the report is JSON");
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "no benchmark result within {BENCH_DEADLINE:?}; see {}",
            browser.log.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    browser.close().await;
    proxy.stop().await;

    let failed = report["error"].is_string()
        || report["results"]
            .as_array()
            .is_none_or(|results| results.iter().any(|r| r["error"].is_string()));
    assert!(!failed, "the bench failed: {report:#}");
    println!("{}", table(&report));
    let path = artifacts_dir().join("dsp-bench.json");
    std::fs::write(&path, format!("{report:#}")).expect("write the report");
    println!("(raw figures in {})", path.display());
}

/// `target/e2e-browser/dsp-bench/`: the bench page, and the built client's DSP next to it.
fn bench_site() -> PathBuf {
    let site = artifacts_dir().join("dsp-bench");
    std::fs::create_dir_all(&site).expect("create the bench site");
    let page = workspace_root().join("browser-tests").join("dsp-bench");
    for file in ["index.html", "bench.js", "bench-worklet.js"] {
        std::fs::copy(page.join(file), site.join(file)).expect("copy the bench page");
    }
    let dist = client_dist();
    let wasm = std::env::var_os("DSP_BENCH_WASM").map_or(dist.join("audio.wasm"), PathBuf::from);
    std::fs::copy(wasm, site.join("audio.wasm")).expect("copy audio.wasm");
    std::fs::copy(dist.join("worklets.js"), site.join("worklets.js")).expect("copy worklets.js");
    site
}

/// The figures as a markdown table.
fn table(report: &Value) -> String {
    let mut out = format!(
        "DSP cost per render quantum, {} calls each after a warm-up ({} bytes of audio.wasm)\n{}\n\n\
         | context rate | quantum | capture `process()` | playback `process()` | wasm only: `cap_process` / `play_render` | clock |\n\
         |---|---|---|---|---|---|\n",
        report["quanta"],
        report["wasmBytes"],
        report["userAgent"].as_str().unwrap_or("?")
    );
    for result in report["results"].as_array().into_iter().flatten() {
        let quantum_ms = result["quantumMs"].as_f64().unwrap_or(f64::NAN);
        let cost = |figure: &Value| {
            let mean_us = figure["meanUs"].as_f64().unwrap_or(f64::NAN);
            format!(
                "{mean_us:.2} µs ({:.2} %; best round {:.2} µs)",
                mean_us / (quantum_ms * 10.0),
                figure["bestRoundUs"].as_f64().unwrap_or(f64::NAN)
            )
        };
        let bare = |figure: &Value| format!("{:.2}", figure["meanUs"].as_f64().unwrap_or(f64::NAN));
        out.push_str(&format!(
            "| {} Hz | {quantum_ms:.3} ms | {} | {} | {} / {} µs | {} |\n",
            result["sampleRate"],
            cost(&result["captureProcess"]),
            cost(&result["playbackProcess"]),
            bare(&result["wasmOnly"]["capture"]),
            bare(&result["wasmOnly"]["playback"]),
            result["clock"].as_str().unwrap_or("?"),
        ));
    }
    out
}
