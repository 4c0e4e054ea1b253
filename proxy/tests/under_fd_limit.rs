//! The proxy binary under a small open-file limit (set with `prlimit`, as an operator's
//! default of 1,024 or a container's would be): floods of sessions and slowloris connections
//! beyond its caps must leave `/healthz` and a good client working. It runs on its built-in
//! simulator, so the test needs no key.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::{self, Message};

/// Longest any awaited condition may take: only a hang trips it.
const DEADLINE: Duration = Duration::from_secs(60);

/// The proxy binary running under `prlimit`, with what its log said at start.
struct RunningProxy {
    child: Child,
    addr: SocketAddr,
    /// The start-up log lines (up to "voice agent proxy listening").
    startup_log: String,
}

/// Starts the proxy with an open-file limit of `soft`:`hard` and these extra settings.
async fn start_proxy(soft: u64, hard: u64, settings: &[(&str, &str)]) -> RunningProxy {
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
async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("an address"))?;
    socket.connect(to).await
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a voice session from `source`; `Err` with the HTTP status (0: the connection was
/// closed or reset) when refused.
async fn open_session(source: &str, to: SocketAddr) -> Result<Socket, u16> {
    let stream = connect_from(source, to).await.map_err(|_| 0u16)?;
    match tokio_tungstenite::client_async(format!("ws://{to}/ws"), stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// `/healthz` answers 200 from 127.0.0.1.
async fn healthy(to: SocketAddr) -> bool {
    let Ok(Ok(response)) =
        tokio::time::timeout(DEADLINE, reqwest::get(format!("http://{to}/healthz"))).await
    else {
        return false;
    };
    response.status() == 200
}

/// Waits until `/healthz` answers 200 (refused or reset attempts are tried again).
async fn wait_until_healthy(to: SocketAddr) {
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
async fn healthy_once(to: SocketAddr) -> bool {
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
async fn a_good_session_works_soon(to: SocketAddr) {
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
fn tone() -> Vec<u8> {
    (0..12_000)
        .flat_map(|n| {
            let t = f64::from(n) / 24_000.0;
            ((8_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}

/// One whole turn on a fresh session from 127.0.0.1: it is answered with audio.
async fn a_good_session_works(to: SocketAddr) {
    let socket = open_session("127.0.0.1", to)
        .await
        .expect("a good client gets a session");
    a_turn_is_answered(socket).await;
}

/// One whole turn on `socket`: it is answered with audio.
async fn a_turn_is_answered(mut socket: Socket) {
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

#[tokio::test]
async fn the_open_file_limit_is_raised_and_the_caps_follow_it() {
    let proxy = start_proxy(256, 1024, &[]).await;
    assert!(
        proxy.startup_log.contains("open_files=1024"),
        "{}",
        proxy.startup_log
    );
    // (1024 - 64 headroom): a third for connections, the rest for sessions at 3 each.
    assert!(
        proxy.startup_log.contains("max_sessions=213")
            && proxy.startup_log.contains("max_connections=320"),
        "{}",
        proxy.startup_log
    );
    drop(proxy.child);
}

#[tokio::test]
async fn a_flood_of_sessions_beyond_the_caps_leaves_health_and_a_good_session_working() {
    let proxy = start_proxy(256, 256, &[]).await;
    let to = proxy.addr;

    // One address opens session after session: it gets its few, the rest are refused.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match open_session("127.0.0.2", to).await {
            Ok(socket) => held.push(socket),
            Err(status) => {
                assert!(matches!(status, 0 | 429 | 503), "{status}");
                refused += 1;
            }
        }
    }
    assert!(held.len() <= 8, "{} sessions for one address", held.len());
    assert!(refused >= 292);
    assert!(healthy(to).await);
    a_good_session_works(to).await;

    // Many addresses at once fill the server's own cap (derived from the 256 descriptors)...
    let mut crowd = Vec::new();
    let mut busy = 0;
    for host in 3..=60 {
        for _ in 0..8 {
            match open_session(&format!("127.0.0.{host}"), to).await {
                Ok(socket) => crowd.push(socket),
                Err(503) => busy += 1,
                Err(status) => assert!(matches!(status, 0 | 429), "{status}"),
            }
        }
    }
    assert!(busy > 0, "the global cap refused some");
    // ...and the proxy still has descriptors to spare: health answers...
    assert!(healthy(to).await);
    // ...and once the crowd leaves, a good session is served at once.
    drop(crowd);
    drop(held);
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let body: serde_json::Value = reqwest::get(format!("http://{to}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["sessions"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < give_up, "sessions end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a_good_session_works(to).await;
}

#[tokio::test]
async fn two_thousand_slowloris_connections_do_not_stop_a_normal_client_under_1024_files() {
    slowloris(1024, 1024).await;
}

#[tokio::test]
async fn two_thousand_slowloris_connections_do_not_stop_a_normal_client() {
    // The common default: a soft limit of 1,024 under a higher hard one, which the proxy
    // raises itself to.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read the limit");
    slowloris(1024, hard).await;
}

/// 2,000 slowloris connections, half from the good client's own address, against a proxy
/// under an open-file limit of `soft`:`hard`, while a good client is served.
async fn slowloris(soft: u64, hard: u64) {
    // The two slowloris tests hold 2,000 sockets each themselves.
    rlimit::increase_nofile_limit(8_192).expect("raise the test's own open-file limit");
    let proxy = start_proxy(soft, hard, &[("HEADER_READ_TIMEOUT_MS", "2000")]).await;
    let to = proxy.addr;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut attackers = Vec::new();
    for n in 0..2_000u32 {
        // Half from the good client's own address (behind the same NAT, say), half from a
        // few others.
        let source = if n % 2 == 0 {
            "127.0.0.1".to_owned()
        } else {
            format!("127.0.1.{}", 1 + n % 4)
        };
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            // Connect, trickle one header line a second, never end the headers; when cut
            // off, come back.
            while !stop.is_cancelled() {
                if let Ok(mut stream) = connect_from(&source, to).await
                    && stream.write_all(b"GET / HTTP/1.1\r\n").await.is_ok()
                {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        if stream.write_all(b"X-Slow: yes\r\n").await.is_err() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // While they trickle, a normal client is served (it tries again when refused, as the page
    // does).
    wait_until_healthy(to).await;
    a_good_session_works_soon(to).await;
    wait_until_healthy(to).await;
    stop.cancel();
    for attacker in attackers {
        let _ = attacker.await;
    }
}
