//! The helper processes a browser needs on a headless Linux box, each owned by a guard that
//! kills it (its whole process group) when dropped:
//!
//! * [`PulseAudio`]: a private PulseAudio daemon (no D-Bus, no systemd, anonymous socket in
//!   the run's own directory) with a null sink as the speakers and a virtual microphone fed
//!   by `paplay`, in a [`Room`] where the speakers may also leak into the microphone. Firefox needs an audio server or its AudioContext never leaves `suspended`;
//!   Firefox and WebKitGTK both take a WAV microphone only this way (neither has Chromium's
//!   `--use-file-for-fake-audio-capture`). See `docs/browsers.md` §1.2.
//! * [`Xvfb`]: a virtual X display (WebKitGTK's MiniBrowser cannot run without a display).
//!
//! Each launch gets its own daemon and display, so tests share nothing and a failing test
//! leaves nothing behind.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::BROWSER_DEADLINE;

/// A child process in its own process group; dropping it kills the group.
#[derive(Debug)]
pub(crate) struct Spawned {
    child: Child,
}

impl Spawned {
    /// Spawns `command` in a new process group, stdin closed, stdout and stderr appended to
    /// `log`.
    pub(crate) fn new(command: &mut Command, log: &Path, what: &str) -> Spawned {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open a log file");
        let err = out.try_clone().expect("clone the log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{what} runs (scripts/install-tools.sh installs it): {error}")
            });
        Spawned { child }
    }

    /// The process id (and process group id).
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        kill(&format!("-{}", self.child.id()));
        let _ = self.child.wait();
    }
}

/// How the speakers reach the microphone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// Only the user's voice reaches the microphone, as with headphones.
    Headphones,
    /// The speakers also reach the microphone, [`SPEAKER_ECHO_DB`] down and about
    /// [`SPEAKER_ECHO_DELAY_MS`] late, as on a laptop without headphones: what a browser's echo
    /// canceller is built for, and what the VAD's echo guard must not mistake for the user.
    LaptopSpeakers,
}

/// Level of the speakers' echo in the microphone relative to what is played, dB: a laptop's
/// speakers couple into its microphone at roughly −10 to −30 dB.
const SPEAKER_ECHO_DB: f64 = -20.0;

/// Delay of that echo, ms: output buffering plus the way through the air.
const SPEAKER_ECHO_DELAY_MS: u32 = 20;

/// The daemon's script lines that make a [`Room::LaptopSpeakers`]: a loopback from the
/// speakers' monitor into the microphone feed, attenuated by the monitor's volume (PulseAudio
/// volumes are cubic: linear gain = (volume / 65536)³).
fn laptop_speakers_script() -> String {
    let volume = (65_536.0 * 10f64.powf(SPEAKER_ECHO_DB / 60.0)).round();
    format!(
        "load-module module-loopback source=out.monitor sink=micsink \
         latency_msec={SPEAKER_ECHO_DELAY_MS} source_dont_move=true sink_dont_move=true\n\
         set-source-volume out.monitor {volume}\n"
    )
}

/// A private PulseAudio daemon. See the module docs.
#[derive(Debug)]
pub(crate) struct PulseAudio {
    daemon: Spawned,
    socket: PathBuf,
    dir: PathBuf,
}

/// The daemon's configuration: speakers `out` (a null sink at 48 kHz, so Firefox's default
/// AudioContext rate is 48 kHz every run) and the microphone `virtmic`, a remap of the
/// monitor of the null sink `micsink` that `paplay` plays into. WebKit ignores `*.monitor`
/// sources, hence the remap.
const PULSE_SCRIPT: &str = "\
load-module module-null-sink sink_name=out rate=48000 sink_properties=device.description=NullOut
load-module module-null-sink sink_name=micsink rate=48000 sink_properties=device.description=MicFeed
load-module module-remap-source master=micsink.monitor source_name=virtmic source_properties=device.description=VirtualMic
load-module module-native-protocol-unix socket=SOCKET auth-anonymous=1
set-default-sink out
set-default-source virtmic
";

impl PulseAudio {
    /// Starts a daemon for `room` whose files live in `dir`, and waits for its socket.
    pub(crate) fn start(dir: &Path, room: Room) -> PulseAudio {
        let config = dir.join("config");
        std::fs::create_dir_all(config.join("pulse")).expect("create the PulseAudio dir");
        std::fs::create_dir_all(dir.join("runtime")).expect("create the PulseAudio dir");
        std::fs::write(
            config.join("pulse").join("daemon.conf"),
            "default-sample-rate = 48000\nalternate-sample-rate = 48000\n",
        )
        .expect("write daemon.conf");
        let socket = dir.join("native");
        let script = dir.join("ci.pa");
        let mut lines = PULSE_SCRIPT.replace("SOCKET", &socket.to_string_lossy());
        if room == Room::LaptopSpeakers {
            lines.push_str(&laptop_speakers_script());
        }
        std::fs::write(&script, lines).expect("write the PulseAudio script");
        let mut daemon = Spawned::new(
            Command::new("pulseaudio")
                .args(["-n", "--daemonize=no", "--exit-idle-time=-1"])
                .args(["--use-pid-file=no", "-F"])
                .arg(&script)
                .env("HOME", dir)
                .env("XDG_RUNTIME_DIR", dir.join("runtime"))
                .env("XDG_CONFIG_HOME", &config),
            &dir.join("pulseaudio.log"),
            "pulseaudio (apt-get install pulseaudio pulseaudio-utils)",
        );
        let give_up = Instant::now() + BROWSER_DEADLINE;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                daemon.running() && Instant::now() < give_up,
                "PulseAudio did not open {}; see {}",
                socket.display(),
                dir.join("pulseaudio.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PulseAudio {
            daemon,
            socket,
            dir: dir.to_owned(),
        }
    }

    /// `PULSE_SERVER` for clients of this daemon.
    pub(crate) fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Plays `wav` into the virtual microphone, once, starting now.
    pub(crate) fn play_into_microphone(&self, wav: &Path) -> Spawned {
        Spawned::new(
            Command::new("paplay")
                .arg("--device=micsink")
                .arg(wav)
                .env("PULSE_SERVER", self.server()),
            &self.dir.join("paplay.log"),
            "paplay (apt-get install pulseaudio-utils)",
        )
    }

    /// The daemon's pid (for the Debug output of its owner).
    pub(crate) fn id(&self) -> u32 {
        self.daemon.id()
    }
}

/// A virtual X display. See the module docs.
#[derive(Debug)]
pub(crate) struct Xvfb {
    server: Spawned,
    /// `DISPLAY` for its clients, e.g. `:3`.
    pub(crate) display: String,
}

impl Xvfb {
    /// Starts Xvfb on the first free display number, which it reports on stdout.
    pub(crate) fn start(dir: &Path) -> Xvfb {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x1400x24"])
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("xvfb.log")).expect("create the Xvfb log file"))
            .process_group(0)
            .spawn()
            .expect("Xvfb runs (apt-get install xvfb xauth)");
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let server = Spawned { child };
        // Read the display number on a thread, so a silent Xvfb cannot hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let number = rx
            .recv_timeout(BROWSER_DEADLINE)
            .ok()
            .and_then(|line| line.trim().parse::<u32>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "Xvfb reported no display; see {}",
                    dir.join("xvfb.log").display()
                )
            });
        Xvfb {
            server,
            display: format!(":{number}"),
        }
    }

    /// The server's pid.
    pub(crate) fn id(&self) -> u32 {
        self.server.id()
    }
}

/// `kill -KILL` a pid (or `-pgid`); a process already gone is fine.
pub(crate) fn kill(target: &str) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Pids (other than this one) whose environment contains `needle`: every process a launch
/// started inherits its marker variable, even those that left its process group.
pub(crate) fn processes_marked(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|environ| {
                    environ
                        .split(|&byte| byte == 0)
                        .any(|entry| String::from_utf8_lossy(entry).contains(needle))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}
