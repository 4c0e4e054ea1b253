//! Headless Chromium driven through Debian's chromedriver (WebDriver, via fantoccini), with a
//! WAV file as the microphone.
//!
//! Every [`Chrome`] gets its own chromedriver on a free port, in its own process group, and a
//! fresh profile directory. Dropping it kills that process group and any process still
//! running with that profile (Chromium's helpers), by pid, so a failing test leaves nothing
//! behind.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::{BROWSER_DEADLINE, artifacts_dir};

/// The browser binary (Debian package `chromium`); `CHROMIUM` overrides.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver (Debian package `chromium-driver`, always the same version); `CHROMEDRIVER`
/// overrides.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The viewport of every page (and so of the screenshots).
const WINDOW_SIZE: &str = "--window-size=1000,1300";

/// A running headless Chromium session. See the module docs.
pub(crate) struct Chrome {
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
    /// chromedriver's log, with the browser's console (kept for failures).
    pub(crate) log: PathBuf,
}

impl std::fmt::Debug for Chrome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chrome")
            .field("driver", &self.driver.id())
            .field("profile", &self.profile)
            .finish()
    }
}

impl Chrome {
    /// Launches Chromium with `microphone` (a WAV file) as the only audio input. The file
    /// starts playing when the page opens the microphone, once (`%noloop`), then silence.
    pub(crate) async fn launch(microphone: &Path) -> Chrome {
        static LAUNCHES: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{}",
            std::process::id(),
            LAUNCHES.fetch_add(1, Ordering::Relaxed)
        );
        let profile = artifacts_dir().join("profiles").join(&name);
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("create the browser profile dir");
        let log = artifacts_dir().join(format!("chromedriver-{name}.log"));

        let port = free_port();
        let driver = Command::new(env_or("CHROMEDRIVER", CHROMEDRIVER))
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--enable-chrome-logs")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect(
                "chromedriver runs (apt-get install chromium-driver; scripts/install-tools.sh)",
            );
        // From here on, Drop cleans up even if connecting fails.
        let mut chrome = Chrome {
            client: None,
            driver,
            profile,
            log,
        };
        let microphone = microphone
            .canonicalize()
            .expect("the microphone WAV exists");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--mute-audio".to_owned(),
            "--use-fake-ui-for-media-stream".to_owned(),
            "--use-fake-device-for-media-stream".to_owned(),
            format!(
                "--use-file-for-fake-audio-capture={}%noloop",
                microphone.display()
            ),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
            WINDOW_SIZE.to_owned(),
            format!("--user-data-dir={}", chrome.profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": env_or("CHROMIUM", CHROMIUM),
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let url = format!("http://127.0.0.1:{port}");
        let give_up = tokio::time::Instant::now() + BROWSER_DEADLINE;
        let client = loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(client) => break client,
                // chromedriver is still starting up.
                Err(error) if tokio::time::Instant::now() < give_up => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!(
                    "no WebDriver session within {BROWSER_DEADLINE:?}: {error}; see {}",
                    chrome.log.display()
                ),
            }
        };
        chrome.client = Some(client);
        chrome
    }

    /// The WebDriver client.
    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("connected in launch")
    }

    /// Ends the session politely (chromedriver closes the browser); Drop kills whatever is
    /// left.
    pub(crate) async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // The driver and whatever it started in its process group...
        kill(&format!("-{}", self.driver.id()));
        // ...and any browser process that left that group, found by its unique profile.
        let profile = self.profile.to_string_lossy().into_owned();
        for pid in processes_mentioning(&profile) {
            kill(&pid.to_string());
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `kill -KILL` a pid (or `-pgid`); a process already gone is fine.
fn kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Pids whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}
