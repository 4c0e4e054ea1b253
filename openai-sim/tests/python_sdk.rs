//! OpenAI's own Python SDK against the real `openai-sim` binary: starts it on a free loopback
//! port with the control surface, then runs `tests/python/sdk_check.py` (chat and speech
//! streaming, Realtime transcription, models, errors), which must pass.
//!
//! Needs `python3` with `openai[realtime]`; if they are missing the test fails and says to run
//! `scripts/install-tools.sh`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long the binary may take to print its address.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long the whole SDK script may take on a slow, busy machine.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(300);
/// The script, beside this test.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_check.py");
/// What to do when the Python side is missing.
const INSTALL_HINT: &str = "run scripts/install-tools.sh (it installs the pinned openai[realtime])";

/// Fails with the install hint unless `python3` can import the SDK and its realtime extra.
async fn require_python_sdk() {
    let probe = Command::new("python3")
        .args(["-c", "import openai, websockets; print(openai.__version__)"])
        .output()
        .await
        .unwrap_or_else(|error| panic!("python3 is not available ({error}): {INSTALL_HINT}"));
    assert!(
        probe.status.success(),
        "the openai Python package (with its realtime extra) is missing: {INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

#[tokio::test]
async fn openais_python_sdk_parses_everything_the_simulator_sends() {
    require_python_sdk().await;
    let mut sim = Command::new(env!("CARGO_BIN_EXE_openai-sim"))
        .args(["--host", "127.0.0.1", "--port", "0", "--control"])
        .args(["--llm-first-token-ms", "0", "--llm-tokens-per-second", "0"])
        .args(["--tts-first-byte-ms", "0", "--tts-realtime-factor", "0"])
        .args(["--stt-first-delta-ms", "0", "--stt-delta-interval-ms", "0"])
        // A key in the environment would make every SDK request a 401.
        .env_remove("SIM_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the openai-sim binary starts");
    let stdout = sim.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_DEADLINE, lines.next_line())
        .await
        .expect("the binary prints its address in time")
        .expect("stdout is readable")
        .expect("the binary prints a line");
    let base_url = first
        .strip_prefix("OPENAI_BASE_URL=")
        .unwrap_or_else(|| panic!("first line names the base URL: {first:?}"))
        .to_owned();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
    // It answers before the SDK starts.
    let models = reqwest::Client::new()
        .get(format!("{base_url}/models"))
        .bearer_auth("sk-probe")
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(models.status(), 200);

    let script = Command::new("python3")
        .arg(SCRIPT)
        .arg(&base_url)
        // Loopback only: never through a proxy from the environment.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("OPENAI_BASE_URL")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_DEADLINE, script)
        .await
        .expect("the SDK script finishes in time")
        .expect("python3 runs the script");
    let _ = sim.start_kill();
    assert!(
        output.status.success(),
        "sdk_check.py failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!report.contains("skip"), "every check ran:\n{report}");
}
