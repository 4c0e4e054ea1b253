//! The `transcribe` example, run as a user would, against the simulator.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use openai_sim::{SimConfig, Simulator};
use proxy::wav::Wav;
use tokio::io::AsyncWriteExt;

const KEY: &str = "sk-test-example";

/// The example binary, which `cargo test` builds next to the test binaries.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let target = deps.parent().and_then(|d| d.parent()).expect("target dir");
    target.join("examples").join("transcribe")
}

/// One second of a 220 Hz tone as PCM16 LE at 24 kHz.
fn tone_pcm() -> Vec<u8> {
    (0..24_000)
        .flat_map(|n| {
            let t = f64::from(n) / 24_000.0;
            ((8_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}

async fn run_example(sim: &Simulator, args: &[&str], stdin: Option<Vec<u8>>) -> (String, String) {
    let mut child = tokio::process::Command::new(example_binary())
        .args(args)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", sim.base_url())
        .env_remove("STT_BASE_URL")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example runs");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(&bytes).await.expect("write stdin");
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the example finishes")
        .expect("the example's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

#[tokio::test]
async fn a_wav_file_is_transcribed_with_partials_and_a_final() {
    let sim = Simulator::start(SimConfig {
        api_key: Some(KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.script_transcript("The quick brown fox jumps over the lazy dog.");
    let dir = std::env::temp_dir().join(format!("transcribe-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("speech.wav");
    std::fs::write(&wav, Wav::encode_mono(24_000, &tone_pcm())).unwrap();

    let (stdout, stderr) = run_example(&sim, &[wav.to_str().unwrap()], None).await;
    assert_eq!(
        stdout.trim(),
        "The quick brown fox jumps over the lazy dog."
    );
    // The partial text streamed first, on stderr.
    assert!(stderr.contains("The quick"), "{stderr}");
    let records = sim.records();
    assert_eq!(records.realtime[0].audio, tone_pcm());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn raw_pcm_on_stdin_is_transcribed() {
    let sim = Simulator::start(SimConfig {
        api_key: Some(KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (stdout, _) = run_example(&sim, &["-"], Some(tone_pcm())).await;
    // Unscripted, the simulator says how long the audio was.
    assert!(stdout.contains("1.0 seconds"), "{stdout}");
}

#[tokio::test]
async fn a_wav_file_is_transcribed_whole_with_file_mode() {
    let sim = Simulator::start(SimConfig {
        api_key: Some(KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.script_transcript("Uploaded in one piece.");
    let dir = std::env::temp_dir().join(format!("transcribe-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("speech.wav");
    std::fs::write(&wav, Wav::encode_mono(24_000, &tone_pcm())).unwrap();

    let (stdout, stderr) = run_example(&sim, &["--file", wav.to_str().unwrap()], None).await;
    assert_eq!(stdout.trim(), "Uploaded in one piece.");
    assert!(
        stderr.contains("Uploaded"),
        "the deltas stream first: {stderr}"
    );
    let records = sim.records();
    assert!(records.realtime.is_empty());
    assert_eq!(&records.transcription[0].file[44..], &tone_pcm()[..]);
    std::fs::remove_dir_all(&dir).ok();
}
