//! What the tests of the proxy binary share: starting it (on its built-in simulator, under
//! an open-file limit set with `prlimit`), opening sessions, and one answered turn.

#![allow(dead_code, reason = "each test binary uses its own part of these")]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::{self, Message};

/// Longest any awaited condition may take: only a hang trips it.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// The proxy binary running under `prlimit`, with what its log said at start.
pub(crate) struct RunningProxy {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// The start-up log lines (up to "voice agent proxy listening").
    pub(crate) startup_log: String,
}

/// Starts the proxy with an open-file limit of `soft`:`hard` and these extra settings.
pub(crate) async fn start_proxy(soft: u64, hard: u64, settings: &[(&str, &str)]) -> RunningProxy {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_proxy"))
        // No `.env` of the developer's, no key: the built-in simulator.
        .current_dir(std::env::temp_dir())
        .env_remove("OPENAI_API_KEY")
        .env_remove("ACCESS_TOKEN")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("CLIENT_DIR", "/nonexistent-client-dir")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (name, value) in settings {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("prlimit runs the proxy");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut startup_log = String::new();
    let addr = tokio::time::timeout(DEADLINE, async {
        let mut addr = None;
        while let Some(line) = lines.next_line().await.expect("read the log") {
            startup_log.push_str(&line);
            startup_log.push('\n');
            if let Some(at) = line.find(" url=http://") {
                let rest = &line[at + " url=http://".len()..];
                let found = rest.split(['/', ' ']).next().expect("an address");
                addr = Some(found.parse::<SocketAddr>().expect("a socket address"));
            }
            if line.contains("voice agent proxy listening")
                && let Some(addr) = addr
            {
                return addr;
            }
        }
        panic!("the proxy ended before listening:\n{startup_log}");
    })
    .await
    .expect("the proxy starts in time");
    // Keep draining the log so the proxy never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    RunningProxy {
        child,
        addr,
        startup_log,
    }
}

/// A TCP connection to `to` from the loopback address `source` (127.0.0.0/8 is all loopback,
/// so each test "client address" can be its own).
pub(crate) async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("an address"))?;
    socket.connect(to).await
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a voice session from `source`; `Err` with the HTTP status (0: the connection was
/// closed or reset) when refused.
pub(crate) async fn open_session(source: &str, to: SocketAddr) -> Result<Socket, u16> {
    let stream = connect_from(source, to).await.map_err(|_| 0u16)?;
    match tokio_tungstenite::client_async(format!("ws://{to}/ws"), stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// `/healthz` answers 200 from 127.0.0.1.
pub(crate) async fn healthy(to: SocketAddr) -> bool {
    let Ok(Ok(response)) =
        tokio::time::timeout(DEADLINE, reqwest::get(format!("http://{to}/healthz"))).await
    else {
        return false;
    };
    response.status() == 200
}

/// Waits until `/healthz` answers 200 (refused or reset attempts are tried again).
pub(crate) async fn wait_until_healthy(to: SocketAddr) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !healthy_once(to).await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "/healthz never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `/healthz` attempt on a fresh connection.
pub(crate) async fn healthy_once(to: SocketAddr) -> bool {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    client
        .get(format!("http://{to}/healthz"))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
}

/// [`a_good_session_works`], after as many refused attempts to open it as the deadline allows.
pub(crate) async fn a_good_session_works_soon(to: SocketAddr) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        match open_session("127.0.0.1", to).await {
            Ok(socket) => return a_turn_is_answered(socket).await,
            Err(_) => {
                assert!(tokio::time::Instant::now() < give_up, "no session opened");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Half a second of a 220 Hz tone, PCM16 LE 24 kHz.
pub(crate) fn tone() -> Vec<u8> {
    (0..12_000)
        .flat_map(|n| {
            let t = f64::from(n) / 24_000.0;
            ((8_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}

/// One whole turn on a fresh session from 127.0.0.1: it is answered with audio.
pub(crate) async fn a_good_session_works(to: SocketAddr) {
    let socket = open_session("127.0.0.1", to)
        .await
        .expect("a good client gets a session");
    a_turn_is_answered(socket).await;
}

/// One whole turn on `socket`: it is answered with audio.
pub(crate) async fn a_turn_is_answered(mut socket: Socket) {
    socket
        .send(Message::text(r#"{"type":"speech_started"}"#))
        .await
        .unwrap();
    for frame in tone().chunks(960) {
        socket.send(Message::binary(frame.to_vec())).await.unwrap();
    }
    socket
        .send(Message::text(r#"{"type":"speech_stopped"}"#))
        .await
        .unwrap();
    let mut audio_frames = 0;
    tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(frame)) = socket.next().await {
            match frame {
                Message::Binary(_) => audio_frames += 1,
                Message::Text(text) if text.contains("\"response_done\"") => return,
                _ => {}
            }
        }
        panic!("the session closed before its answer");
    })
    .await
    .expect("the turn is answered in time");
    assert!(audio_frames > 0, "the answer was spoken");
}
