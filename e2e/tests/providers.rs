//! Speech servers other than OpenAI's: PCM at another rate, and WAV (with its rate in the
//! header), both made into the 24 kHz PCM the browser plays.

use openai_sim::SimConfig;
use protocol::{ResponseId, ServerMessage};
use proxy::config::TtsFormat;
use voice_agent_e2e::{TestProxy, tone};

/// One turn against a speech server sending at `rate_hz` in `format`; checks the browser got
/// as much 24 kHz audio as the server sent at its rate, and returns the formats requested.
async fn turn_at(rate_hz: u32, format: TtsFormat) -> Vec<String> {
    let proxy = TestProxy::start(
        SimConfig {
            speech_sample_rate_hz: rate_hz,
            ..SimConfig::default()
        },
        |config| {
            config.tts_response_format = format;
            config.tts_sample_rate = rate_hz;
        },
    )
    .await;
    let mut browser = proxy.connect().await;
    proxy
        .sim
        .script_reply("One sentence here. And a second one.");
    browser.say(&tone(0.5)).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    let records = proxy.sim.records();
    let header = if format == TtsFormat::Wav { 44 } else { 0 };
    let sent_samples: usize = records
        .speech
        .iter()
        .map(|speech| (speech.sent.len() - header) / 2)
        .sum();
    let expected = sent_samples as f64 * 24_000.0 / f64::from(rate_hz);
    let received = browser.audio_of(ResponseId(1)).len() / 2;
    // The resampler holds back a few samples of each request's end (its filter's delay).
    let slack = 64.0 * records.speech.len() as f64;
    assert!(
        (received as f64 - expected).abs() <= slack,
        "{rate_hz} Hz {format:?}: received {received} samples at 24 kHz, expected {expected}"
    );
    let formats = records
        .speech
        .iter()
        .map(|speech| speech.body["response_format"].as_str().unwrap().to_owned())
        .collect();
    proxy.stop().await;
    formats
}

#[tokio::test]
async fn pcm_at_another_rate_is_resampled_to_24khz() {
    let formats = turn_at(16_000, TtsFormat::Pcm).await;
    assert!(formats.iter().all(|f| f == "pcm"), "{formats:?}");
}

#[tokio::test]
async fn a_streamed_wav_is_read_by_its_header_and_resampled() {
    let formats = turn_at(22_050, TtsFormat::Wav).await;
    assert!(formats.iter().all(|f| f == "wav"), "{formats:?}");
}

#[tokio::test]
async fn wav_at_24khz_passes_through() {
    turn_at(24_000, TtsFormat::Wav).await;
}

#[tokio::test]
async fn a_chat_stream_that_ends_without_done_after_its_finish_reason_is_whole() {
    let proxy = TestProxy::start(
        SimConfig {
            chat_done_marker: false,
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let mut browser = proxy.connect().await;
    proxy.sim.script_reply("Complete without the marker.");
    browser.say(&tone(0.5)).await;
    let done = browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    assert!(
        matches!(done, ServerMessage::ResponseDone { interrupted: false, ref text, .. } if text == "Complete without the marker."),
        "{done:?}"
    );
    assert!(browser.errors().is_empty(), "{:?}", browser.errors());
    proxy.stop().await;
}

/// The proxy's settings for a server of `profile` (the README's providers table): file
/// transcription where the server has no GA Realtime endpoint, WAV where its PCM rate is not
/// known to be 24 kHz.
fn settings_for(profile: &str, config: &mut proxy::config::Config) {
    use proxy::config::SttMode;
    match profile {
        "speaches" | "vllm" => {
            config.stt_mode = SttMode::File;
            config.tts_response_format = TtsFormat::Wav;
        }
        // It sends WAV even for `pcm`; the proxy recognises that by itself.
        "localai" => config.stt_mode = SttMode::File,
        "ollama" => config.stt_mode = SttMode::File,
        _ => {}
    }
}

#[tokio::test]
async fn a_conversation_runs_against_every_provider_profile() {
    for &profile in openai_sim::PROFILES {
        let sim = SimConfig::default()
            .profile(profile)
            .expect("a known profile");
        let wav = sim.speech_wav_for_pcm;
        let rate_hz = sim.speech_sample_rate_hz;
        let proxy = TestProxy::start(sim, |config| settings_for(profile, config)).await;
        let mut browser = proxy.connect().await;
        proxy.sim.script_transcript("Hello there.");
        proxy.sim.script_reply("Hello to you.");
        browser.say(&tone(0.5)).await;
        let done = browser
            .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
            .await;
        assert!(
            matches!(done, ServerMessage::ResponseDone { interrupted: false, ref text, .. } if text == "Hello to you."),
            "{profile}: {done:?}"
        );
        let errors = browser.errors();
        assert!(errors.is_empty(), "{profile}: {errors:?}");
        // As much 24 kHz audio as the server sent at its own rate.
        let records = proxy.sim.records();
        let header = if wav || profile_asks_wav(profile) {
            44
        } else {
            0
        };
        let sent: usize = records
            .speech
            .iter()
            .map(|s| (s.sent.len() - header) / 2)
            .sum();
        let expected = sent as f64 * 24_000.0 / f64::from(rate_hz);
        let received = browser.audio_of(ResponseId(1)).len() / 2;
        assert!(
            (received as f64 - expected).abs() <= 64.0 * records.speech.len() as f64,
            "{profile}: {received} samples, expected {expected}"
        );
        proxy.stop().await;
    }
}

fn profile_asks_wav(profile: &str) -> bool {
    matches!(profile, "speaches" | "vllm")
}

#[tokio::test]
async fn fastapi_error_bodies_are_classified_by_status() {
    use openai_sim::{Fault, SimStage};
    let sim = SimConfig::default().profile("kokoro").expect("a profile");
    let proxy = TestProxy::start(sim, |_| {}).await;
    let mut browser = proxy.connect().await;
    proxy.sim.inject(SimStage::Speech, Fault::unauthorized());
    proxy.sim.script_reply("Okay.");
    browser.say(&tone(0.5)).await;
    let error = browser
        .wait_for(|m| matches!(m, ServerMessage::Error(e) if e.stage == protocol::Stage::Tts))
        .await;
    assert!(
        matches!(error, ServerMessage::Error(ref e) if e.code == protocol::ErrorCode::UpstreamAuth),
        "{error:?}"
    );
    proxy.stop().await;
}
