//! Benchmark: what a session costs the proxy, and how fast it admits them.
//!
//! Starts the proxy binary given on the command line (a release build, see `scripts/footprint.sh`)
//! in front of a simulator in this process, then reads the proxy's resident memory and open
//! file descriptors from `/proc` while it holds N idle sessions, and again while M of them
//! speak (audio streamed at real time). Also prints the rate at which it completed the N
//! handshakes. Linux only; prints figures and asserts nothing.
//!
//! ```text
//! cargo run --release -p voice-agent-e2e --example footprint -- target/release/proxy [IDLE] [SPEAKING]
//! ```

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use openai_sim::{SimConfig, Simulator};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type Socket = WebSocketStream<TcpStream>;

/// Handshakes in flight at once while opening the idle sessions.
const HANDSHAKE_CONCURRENCY: usize = 16;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("usage: footprint PATH-TO-PROXY [IDLE] [SPEAKING]");
    let binary = std::fs::canonicalize(&binary).expect("the proxy binary exists");
    let binary = binary.display().to_string();
    let idle: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let speaking: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50);
    // The client sockets of this process.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    assert!(
        limit as usize > idle + 256,
        "this process may open {limit} files; raise the hard limit for {idle} sessions"
    );

    let sim = Simulator::start(SimConfig {
        recording: false,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let mut proxy = tokio::process::Command::new(&binary)
        .current_dir(std::env::temp_dir())
        .env("OPENAI_API_KEY", "sk-footprint")
        .env("OPENAI_BASE_URL", sim.base_url())
        .env_remove("ACCESS_TOKEN")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("CLIENT_DIR", "/nonexistent-client-dir")
        .env("MAX_SESSIONS", (idle + speaking + 100).to_string())
        .env("MAX_SESSIONS_PER_ADDRESS", "1000000")
        .env("SESSIONS_PER_ADDRESS_PER_MINUTE", "100000000")
        // Unread sockets answer no ping: keep the proxy from dropping them mid-measurement.
        .env("BROWSER_PING_INTERVAL_MS", "600000")
        .env("RUST_LOG", "warn,proxy=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy binary runs");
    let pid = proxy.id().expect("a pid");
    let mut lines = tokio::io::BufReader::new(proxy.stdout.take().expect("stdout")).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines
            .next_line()
            .await
            .expect("read the log")
            .expect("the proxy logs its address");
        if let Some(at) = line.find(" url=http://") {
            let rest = &line[at + " url=http://".len()..];
            break rest.split(['/', ' ']).next().unwrap().parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    wait_healthy(addr).await;

    let base = Reading::of(pid);
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(idle);
    let mut opened = 0usize;
    while opened < idle {
        let batch = HANDSHAKE_CONCURRENCY.min(idle - opened);
        let handshakes = (0..batch).map(|n| open_session(addr, opened + n));
        for socket in futures_util::future::join_all(handshakes).await {
            sessions.push(socket);
        }
        opened += batch;
    }
    let handshake_s = started.elapsed().as_secs_f64();
    // Let every session settle (its task started, its session_ready written).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_idle = Reading::of(pid);

    // Some of them speak at real time, together, for a few seconds.
    let speech = tone_20ms();
    let speakers: Vec<Socket> = sessions.drain(..speaking.min(idle)).collect();
    let talking = tokio::spawn(async move {
        let mut speakers = speakers;
        for socket in &mut speakers {
            let _ = socket
                .send(Message::text(r#"{"type":"speech_started"}"#))
                .await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..250 {
            tick.tick().await;
            for socket in &mut speakers {
                let _ = socket.send(Message::binary(speech.clone())).await;
            }
        }
        speakers
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let with_speaking = Reading::of(pid);
    let speakers = talking.await.expect("the speakers finish");

    let idle_kib = with_idle.rss_kib.saturating_sub(base.rss_kib) as f64 / idle as f64;
    let idle_fds = with_idle.fds.saturating_sub(base.fds) as f64 / idle as f64;
    let speaking_kib =
        with_speaking.rss_kib.saturating_sub(with_idle.rss_kib) as f64 / speaking as f64;
    let speaking_fds = with_speaking.fds.saturating_sub(with_idle.fds) as f64 / speaking as f64;
    println!("proxy {binary}: {idle} idle sessions, {speaking} of them speaking at real time");
    println!(
        "{:<44} {:>12}",
        "resident memory at start (KiB)", base.rss_kib
    );
    println!(
        "{:<44} {:>12}",
        format!("with {idle} idle sessions (KiB)"),
        with_idle.rss_kib
    );
    println!("{:<44} {:>12.1}", "per idle session (KiB)", idle_kib);
    println!(
        "{:<44} {:>12.2}",
        "file descriptors per idle session", idle_fds
    );
    println!(
        "{:<44} {:>12.1}",
        "per speaking session, beyond idle (KiB)", speaking_kib
    );
    println!(
        "{:<44} {:>12.2}",
        "file descriptors per speaking session",
        speaking_fds + idle_fds
    );
    println!(
        "{:<44} {:>12.0}",
        format!("handshakes per second ({HANDSHAKE_CONCURRENCY} at a time)"),
        idle as f64 / handshake_s
    );
    drop((sessions, speakers));
    let _ = proxy.kill().await;
}

/// The proxy's resident memory and open descriptors, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: u64,
    fds: u64,
}

impl Reading {
    fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("/proc fd")
            .count() as u64;
        Self { rss_kib, fds }
    }
}

async fn wait_healthy(addr: std::net::SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the proxy never listened");
}

/// A session from one of many loopback addresses (one address's ports would run out).
async fn open_session(addr: std::net::SocketAddr, n: usize) -> Socket {
    let source = std::net::Ipv4Addr::new(127, 1, (n / 200 % 250) as u8, (1 + n % 200) as u8);
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind((source, 0).into())
        .expect("bind a loopback source");
    let stream = socket.connect(addr).await.expect("connect");
    let (mut socket, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .expect("a session");
    // Its session_ready.
    let _ = socket.next().await;
    socket
}

/// 20 ms of a 220 Hz tone, PCM16 LE 24 kHz.
fn tone_20ms() -> Vec<u8> {
    (0..480)
        .flat_map(|n| {
            let t = f64::from(n) / 24_000.0;
            ((8_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16).to_le_bytes()
        })
        .collect()
}
