//! The three browser engines, each driven through its own WebDriver (via fantoccini), with a
//! WAV file as the microphone:
//!
//! * [`Engine::Chromium`]: Debian's headless Chromium through its chromedriver. Chromium plays
//!   the WAV itself (`--use-file-for-fake-audio-capture`) from the moment the page opens the
//!   microphone.
//! * [`Engine::Firefox`]: Debian's Firefox ESR, headless, through geckodriver (built from
//!   crates.io by `scripts/install-tools.sh`). Audio goes through a private PulseAudio daemon
//!   ([`PulseAudio`]): without an audio server its AudioContext never runs. The microphone is
//!   the daemon's virtual source, fed by `paplay` ([`Browser::feed_microphone`]).
//! * [`Engine::WebKit`]: Debian's WebKitGTK (MiniBrowser) through WebKitWebDriver, on a private
//!   Xvfb display ([`Xvfb`]) and the same kind of PulseAudio microphone.
//!
//! Every [`Browser`] gets its own driver on a free port, in its own process group, its own
//! scratch directory, and (Firefox, WebKit) its own PulseAudio and Xvfb. Every process it
//! starts carries the marker variable [`MARKER_VAR`] naming that directory; dropping the
//! browser kills the driver's process group, its helpers, and then any process still carrying
//! the marker (browser helpers that left the group), so a failing test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use proxy::wav::Wav;
use serde_json::{Value, json};

use super::host::{PulseAudio, Room, Spawned, Xvfb, free_port, kill, processes_marked};
use super::{BROWSER_DEADLINE, artifacts_dir};

/// Debian package `chromium`; `CHROMIUM` overrides.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver (Debian package `chromium-driver`, always the same version); `CHROMEDRIVER`
/// overrides.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian package `firefox-esr`; `FIREFOX` overrides.
const FIREFOX: &str = "/usr/bin/firefox-esr";
/// `cargo install geckodriver` (scripts/install-tools.sh); `GECKODRIVER` overrides.
const GECKODRIVER: &str = "geckodriver";
/// WebKitGTK's test browser (Debian package `webkit2gtk-driver` pulls it in); `MINIBROWSER`
/// overrides.
const MINIBROWSER: &str = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
/// Debian package `webkit2gtk-driver`; `WEBKITWEBDRIVER` overrides.
const WEBKITWEBDRIVER: &str = "WebKitWebDriver";
/// The viewport of every page (and so of the screenshots).
const WINDOW: (u32, u32) = (1000, 1300);
/// Every process a launch starts has this variable, set to the launch's directory.
const MARKER_VAR: &str = "VOICE_AGENT_E2E_BROWSER";
/// Digital silence played into a PulseAudio microphone before the WAV: WebKitGTK delivers
/// exact silence for the first 0.15 to 1.8 s of a PulseAudio source (`docs/browsers.md` §2.2),
/// and the WAV's own quiet lead-in is meant for the VAD, not for that.
const PULSE_LEAD_IN_SECONDS: f64 = 2.5;

/// A browser engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Headless Chromium.
    Chromium,
    /// Headless Firefox ESR.
    Firefox,
    /// WebKitGTK's MiniBrowser on Xvfb.
    WebKit,
}

impl Engine {
    /// A short lowercase name, for files.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox",
            Engine::WebKit => "webkit",
        }
    }

    /// The AudioContext rate a page gets by default here: Chromium headless uses 44.1 kHz,
    /// Firefox the rate of the PulseAudio sink (pinned to 48 kHz by [`PulseAudio`]), WebKitGTK
    /// always 44.1 kHz.
    pub(crate) fn default_sample_rate(self) -> f64 {
        match self {
            Engine::Chromium | Engine::WebKit => 44_100.0,
            Engine::Firefox => 48_000.0,
        }
    }

    /// The room its PulseAudio microphone is in (Chromium reads the WAV itself: no echo).
    ///
    /// Firefox gets laptop speakers: its echo canceller needs an echo path to lock onto. With
    /// none at all (headphones here) Firefox ESR 153 muted the microphone to the meter's floor
    /// for as long as the answer played, so the user could not be heard over it; with one it
    /// removes the echo (the meter stays at its floor while the answer plays) and passes the
    /// user's voice (−18 to −24 dBFS). WebKitGTK gets headphones: though its track reports
    /// echo cancellation on, its capture lets the echo through here (on speakers the answer
    /// reached the page at −33 dBFS and barged in on itself), where Safari would cancel it
    /// with the system's voice processing.
    fn room(self) -> Room {
        match self {
            Engine::Chromium | Engine::WebKit => Room::Headphones,
            Engine::Firefox => Room::LaptopSpeakers,
        }
    }
}

/// A running browser session. See the module docs.
pub(crate) struct Browser {
    engine: Engine,
    client: Option<Client>,
    /// The microphone WAV (Firefox, WebKit: played by [`Browser::feed_microphone`]).
    microphone: PathBuf,
    /// `paplay`, once the microphone is fed.
    feed: Mutex<Option<Spawned>>,
    driver: Option<Spawned>,
    pulse: Option<PulseAudio>,
    display: Option<Xvfb>,
    /// This launch's scratch directory (profile, PulseAudio files); also the marker value.
    dir: PathBuf,
    /// The driver's log (with the browser's console where the engine sends it there).
    pub(crate) log: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("engine", &self.engine)
            .field("driver", &self.driver.as_ref().map(Spawned::id))
            .field("pulse", &self.pulse.as_ref().map(PulseAudio::id))
            .field("display", &self.display.as_ref().map(Xvfb::id))
            .field("dir", &self.dir)
            .finish()
    }
}

impl Browser {
    /// Launches `engine` with `microphone` (a WAV file) as the only audio input.
    pub(crate) async fn launch(engine: Engine, microphone: &Path) -> Browser {
        Self::launch_with(engine, microphone, &[]).await
    }

    /// Launches Chromium as [`Browser::launch`] does, also accepting HTTPS certificates whose
    /// SubjectPublicKeyInfo has this SHA-256 (base64): a test certificate no CA signed. Only
    /// that key is accepted; every other certificate error stays an error.
    pub(crate) async fn launch_chromium_trusting(
        microphone: &Path,
        spki_sha256_base64: &str,
    ) -> Browser {
        let trust = format!("--ignore-certificate-errors-spki-list={spki_sha256_base64}");
        Self::launch_with(Engine::Chromium, microphone, &[trust]).await
    }

    /// Launches Chromium as [`Browser::launch`] does, resolving `host` to 127.0.0.1: a name
    /// that is not a loopback name to the proxy (so its same-machine allowances do not apply),
    /// while the page itself stays on a loopback origin (a secure context, for the microphone).
    pub(crate) async fn launch_chromium_resolving(microphone: &Path, host: &str) -> Browser {
        let rule = format!("--host-resolver-rules=MAP {host} 127.0.0.1");
        Self::launch_with(Engine::Chromium, microphone, &[rule]).await
    }

    async fn launch_with(
        engine: Engine,
        microphone: &Path,
        extra_chromium_args: &[String],
    ) -> Browser {
        static LAUNCHES: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{}-{}",
            engine.name(),
            std::process::id(),
            LAUNCHES.fetch_add(1, Ordering::Relaxed)
        );
        let dir = artifacts_dir().join("runs").join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the browser run dir");
        let log = artifacts_dir().join(format!("driver-{name}.log"));
        let _ = std::fs::remove_file(&log);
        let microphone = microphone
            .canonicalize()
            .expect("the microphone WAV exists");
        // From here on, Drop cleans up whatever was started, even if a step fails.
        let mut browser = Browser {
            engine,
            client: None,
            microphone,
            feed: Mutex::new(None),
            driver: None,
            pulse: None,
            display: None,
            dir,
            log,
        };
        let port = free_port();
        let marker = browser.dir.to_string_lossy().into_owned();
        let capabilities = match engine {
            Engine::Chromium => {
                browser.driver = Some(Spawned::new(
                    Command::new(env_or("CHROMEDRIVER", CHROMEDRIVER))
                        .arg(format!("--port={port}"))
                        .arg(format!("--log-path={}", browser.log.display()))
                        .arg("--enable-chrome-logs")
                        .env(MARKER_VAR, &marker),
                    &browser.dir.join("driver-output.log"),
                    "chromedriver (apt-get install chromium-driver)",
                ));
                browser.chromium_capabilities(extra_chromium_args)
            }
            Engine::Firefox => {
                let pulse = PulseAudio::start(&browser.dir.join("pulse"), engine.room());
                let profiles = browser.dir.join("profiles");
                std::fs::create_dir_all(&profiles).expect("create the profile root");
                browser.driver = Some(Spawned::new(
                    Command::new(env_or("GECKODRIVER", GECKODRIVER))
                        .arg(format!("--port={port}"))
                        .arg("--profile-root")
                        .arg(&profiles)
                        .env(MARKER_VAR, &marker)
                        .env("PULSE_SERVER", pulse.server())
                        .env("MOZ_HEADLESS", "1"),
                    &browser.log,
                    "geckodriver (cargo install geckodriver; scripts/install-tools.sh)",
                ));
                browser.pulse = Some(pulse);
                firefox_capabilities()
            }
            Engine::WebKit => {
                let pulse = PulseAudio::start(&browser.dir.join("pulse"), engine.room());
                let display = Xvfb::start(&browser.dir);
                browser.driver = Some(Spawned::new(
                    Command::new(env_or("WEBKITWEBDRIVER", WEBKITWEBDRIVER))
                        .arg(format!("--port={port}"))
                        .env(MARKER_VAR, &marker)
                        .env("PULSE_SERVER", pulse.server())
                        .env("DISPLAY", &display.display),
                    &browser.log,
                    "WebKitWebDriver (apt-get install webkit2gtk-driver)",
                ));
                browser.pulse = Some(pulse);
                browser.display = Some(display);
                webkit_capabilities()
            }
        };
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
                // The driver is still starting up.
                Err(error) if tokio::time::Instant::now() < give_up => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!(
                    "no {engine:?} WebDriver session within {BROWSER_DEADLINE:?}: {error}; see {}",
                    browser.log.display()
                ),
            }
        };
        if engine != Engine::Chromium {
            client
                .set_window_size(WINDOW.0, WINDOW.1)
                .await
                .expect("size the window");
        }
        browser.client = Some(client);
        browser
    }

    fn chromium_capabilities(&self, extra_args: &[String]) -> Value {
        let mut args = vec![
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
                self.microphone.display()
            ),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", self.dir.join("profile").display()),
        ];
        // Honoured only with a `--user-data-dir`, which every launch has.
        args.extend_from_slice(extra_args);
        json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": env_or("CHROMIUM", CHROMIUM),
                "args": args,
            },
        })
    }

    /// The WebDriver client.
    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("connected in launch")
    }

    /// Starts the microphone WAV, once the page has opened the microphone. Chromium started
    /// it by itself when the page opened the microphone; for Firefox and WebKit `paplay` now
    /// plays it (after [`PULSE_LEAD_IN_SECONDS`] of silence) into the virtual microphone.
    pub(crate) fn feed_microphone(&self) {
        let Some(pulse) = &self.pulse else {
            return;
        };
        let mut feed = self.feed.lock().expect("the feed lock");
        assert!(feed.is_none(), "the microphone is fed once");
        let wav = Wav::parse(&std::fs::read(&self.microphone).expect("read the microphone WAV"))
            .expect("the microphone is 16-bit PCM");
        let lead_in = (PULSE_LEAD_IN_SECONDS * f64::from(wav.sample_rate_hz)) as usize
            * usize::from(wav.channels);
        let pcm: Vec<u8> = std::iter::repeat_n(0i16, lead_in)
            .chain(wav.samples.iter().copied())
            .flat_map(i16::to_le_bytes)
            .collect();
        assert_eq!(wav.channels, 1, "the microphone WAVs are mono");
        let padded = self.dir.join("microphone.wav");
        std::fs::write(&padded, Wav::encode_mono(wav.sample_rate_hz, &pcm))
            .expect("write the padded microphone WAV");
        *feed = Some(pulse.play_into_microphone(&padded));
    }

    /// Ends the session politely (the driver closes the browser); Drop kills whatever is
    /// left.
    pub(crate) async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
    }
}

fn firefox_capabilities() -> Value {
    json!({
        "browserName": "firefox",
        "moz:firefoxOptions": {
            "binary": env_or("FIREFOX", FIREFOX),
            "args": ["-headless"],
            "prefs": {
                // The real (PulseAudio) microphone, not Firefox's fake tone.
                "media.navigator.streams.fake": false,
                // Without this getUserMedia waits for a permission prompt forever.
                "media.navigator.permission.disabled": true,
                // The page's console in the driver log.
                "devtools.console.stdout.content": true,
            },
            "log": { "level": "info" },
        },
    })
}

fn webkit_capabilities() -> Value {
    json!({
        "browserName": "MiniBrowser",
        "webkitgtk:browserOptions": {
            "binary": env_or("MINIBROWSER", MINIBROWSER),
            // In automation mode the microphone permission is granted; the microphone is the
            // PulseAudio default source (no mock capture devices).
            "args": ["--automation"],
        },
    })
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and whatever it started in its process group, the microphone feed...
        self.driver.take();
        self.feed.get_mut().map(Option::take).ok();
        // ...any browser process that left that group, found by its marker...
        let marker = format!("{MARKER_VAR}={}", self.dir.to_string_lossy());
        for pid in processes_marked(&marker) {
            kill(&pid.to_string());
        }
        // ...then the audio server and the display they used.
        self.pulse.take();
        self.display.take();
        let _ = std::fs::remove_dir_all(self.dir.join("profile"));
        let _ = std::fs::remove_dir_all(self.dir.join("profiles"));
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}
