//! The repository's nginx configuration (`deploy/nginx/voice-agent.conf`) in front of the
//! proxy, run by Debian's nginx: TLS terminated there, a whole turn over `wss://` through it
//! (the WebSocket upgrade), the client's own address reaching the proxy's per-address caps in
//! `X-Forwarded-For` (a forged entry changes nothing), a session outliving nginx's idle
//! timeout while the proxy's pings flow, and `/metrics` kept internal; and scale-out: two
//! proxies behind it sharing a Redis session store, one drained mid-conversation, the
//! conversation going on on the other with its history.
//!
//! The test swaps only the host name, port, certificate paths and upstream address (and, for
//! the idle case, the timeouts) in the file, each of which must appear exactly once.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use openai_sim::SimConfig;
use protocol::{ResponseId, ServerMessage};
use voice_agent_e2e::tls::{CertificateFiles, TestCertificate, client_config};
use voice_agent_e2e::{DEADLINE, TestProxy, silence, tone};

/// The configuration under test.
const SITE: &str = include_str!("../../deploy/nginx/voice-agent.conf");

/// nginx's idle timeouts in the idle case, in seconds: short, so the test shows in seconds that
/// pings keep a quiet session open past them.
const SHORT_TIMEOUT_S: u64 = 2;

/// The browser ping interval in the idle case: well under [`SHORT_TIMEOUT_S`].
const FAST_PING: Duration = Duration::from_millis(500);

/// A running nginx; dropping it stops it.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// Serves the site on loopback `port` in front of `upstream`, with `certificate`'s files;
    /// `short_timeouts` swaps the idle timeouts for [`SHORT_TIMEOUT_S`].
    async fn start(
        name: &str,
        port: u16,
        upstream: SocketAddr,
        files: &CertificateFiles,
        short_timeouts: bool,
    ) -> Nginx {
        Self::start_balancing(name, port, &[upstream], files, short_timeouts).await
    }

    /// As [`Nginx::start`], balancing over every proxy of `upstreams`.
    async fn start_balancing(
        name: &str,
        port: u16,
        upstreams: &[SocketAddr],
        files: &CertificateFiles,
        short_timeouts: bool,
    ) -> Nginx {
        let mut site = SITE.to_owned();
        let mut swap = |from: &str, to: &str| {
            assert_eq!(
                site.matches(from).count(),
                1,
                "deploy/nginx/voice-agent.conf has `{from}` once"
            );
            site = site.replace(from, to);
        };
        swap("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"));
        swap("server_name voice.example.com;", "server_name localhost;");
        swap(
            "/etc/letsencrypt/live/voice.example.com/fullchain.pem",
            &files.files.cert.to_string_lossy(),
        );
        swap(
            "/etc/letsencrypt/live/voice.example.com/privkey.pem",
            &files.files.key.to_string_lossy(),
        );
        let servers: Vec<String> = upstreams
            .iter()
            .map(|upstream| format!("server {upstream};"))
            .collect();
        swap("server 127.0.0.1:8000;", &servers.join("\n    "));
        if short_timeouts {
            swap(
                "proxy_read_timeout 120s;",
                &format!("proxy_read_timeout {SHORT_TIMEOUT_S}s;"),
            );
            swap(
                "proxy_send_timeout 120s;",
                &format!("proxy_send_timeout {SHORT_TIMEOUT_S}s;"),
            );
        }
        let dir = std::env::temp_dir().join(format!("voice-nginx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create nginx's directory");
        // Its workers may run as `nobody`: their temporary files go where anyone may write.
        for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let path = dir.join(temp);
            std::fs::create_dir_all(&path).expect("create a temp dir");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .expect("open the temp dir to nginx's workers");
        }
        std::fs::write(dir.join("site.conf"), site).expect("write the site");
        let d = dir.display();
        let main = format!(
            "daemon off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write nginx.conf");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("create the log");
        let child = Command::new("nginx")
            // Its own process group, so dropping it stops the workers with the master.
            .process_group(0)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("nginx runs (scripts/install-tools.sh installs Debian's nginx)");
        let mut nginx = Nginx { child, dir, port };
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                matches!(nginx.child.try_wait(), Ok(None)) && tokio::time::Instant::now() < give_up,
                "nginx did not listen; see {}",
                nginx.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// `localhost:PORT`, as a browser names it (the certificate's name).
    fn authority(&self) -> String {
        format!("localhost:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The whole group, and TERM: a killed master would leave its workers running, or
        // unreaped; on TERM it stops them and waits for them.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A TCP connection to `nginx` from the loopback address `from` (a client address of its own).
async fn connection_from(from: Ipv4Addr, nginx: &Nginx) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket
        .connect(nginx.addr())
        .await
        .expect("connect to nginx")
}

fn tls_for(certificate: &TestCertificate) -> Arc<rustls::ClientConfig> {
    client_config(&[certificate])
}

#[tokio::test]
async fn a_whole_turn_runs_through_nginx_over_wss() {
    let certificate = TestCertificate::generate();
    let files = CertificateFiles::new("nginx-turn", &certificate);
    // Set up as the README says: the page's https:// origin named, since the proxy behind
    // nginx speaks plain HTTP.
    let port = free_port();
    let page_origin = format!("https://localhost:{port}");
    let allowed = page_origin.clone();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.client_address_header = Some("X-Forwarded-For".into());
        config.allowed_origins = vec![allowed];
    })
    .await;
    let nginx = Nginx::start("turn", port, proxy.addr(), &files, false).await;
    let question = "What is the capital of France?";
    let answer = "Paris is the capital of France. It sits on the Seine.";
    proxy.sim.script_transcript(question);
    proxy.sim.script_reply(answer);
    let stream = connection_from(Ipv4Addr::LOCALHOST, &nginx).await;
    let mut browser = proxy
        .connect_through(
            stream,
            &nginx.authority(),
            Some(tls_for(&certificate)),
            &[("Origin", &page_origin)],
        )
        .await
        .expect("nginx upgrades the page's socket and the proxy takes it");
    // Every sample of the answer came through nginx.
    browser.one_turn_answered(question, answer).await;

    // The page's other paths go through it too, but not the metrics.
    let https = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(certificate.cert_pem.as_bytes()).expect("PEM"),
        ])
        .resolve("localhost", nginx.addr())
        .build()
        .expect("an HTTPS client");
    let health = https
        .get(format!("https://{}/healthz", nginx.authority()))
        .send()
        .await
        .expect("nginx answers");
    assert_eq!(health.status(), 200);
    let metrics = https
        .get(format!("https://{}/metrics", nginx.authority()))
        .send()
        .await
        .expect("nginx answers");
    assert_eq!(metrics.status(), 404, "/metrics stays internal");
    browser.close().await;
    proxy.stop().await;
}

#[tokio::test]
async fn the_client_address_reaches_the_proxy_and_a_forged_one_does_not() {
    let certificate = TestCertificate::generate();
    let files = CertificateFiles::new("nginx-address", &certificate);
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.client_address_header = Some("X-Forwarded-For".into());
        config.limits.max_sessions_per_address = 1;
    })
    .await;
    let nginx = Nginx::start("address", free_port(), proxy.addr(), &files, false).await;
    let tls = tls_for(&certificate);
    let first_client = Ipv4Addr::new(127, 0, 0, 2);
    let _first = proxy
        .connect_through(
            connection_from(first_client, &nginx).await,
            &nginx.authority(),
            Some(tls.clone()),
            &[],
        )
        .await
        .expect("a first session");
    // The same client again, even claiming another address: over its cap of one.
    let again = proxy
        .connect_through(
            connection_from(first_client, &nginx).await,
            &nginx.authority(),
            Some(tls.clone()),
            &[("X-Forwarded-For", "203.0.113.9")],
        )
        .await;
    match again {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429, "the same client is over its cap")
        }
        other => panic!("the second session of one client was not refused: {other:?}"),
    }
    // Another client: nginx connects to the proxy from the same address as for the first, so
    // only the header tells them apart.
    let _second = proxy
        .connect_through(
            connection_from(Ipv4Addr::new(127, 0, 0, 3), &nginx).await,
            &nginx.authority(),
            Some(tls),
            &[],
        )
        .await
        .expect("another client's session");
    assert_eq!(proxy.state.live_sessions(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_quiet_session_outlives_the_idle_timeout_while_pings_flow() {
    let certificate = TestCertificate::generate();
    let files = CertificateFiles::new("nginx-idle", &certificate);
    let proxy = TestProxy::start(SimConfig::default(), |config| {
        config.limits.browser_ping_interval = FAST_PING;
    })
    .await;
    let nginx = Nginx::start("idle", free_port(), proxy.addr(), &files, true).await;
    proxy.sim.script_transcript("Still there?");
    let stream = connection_from(Ipv4Addr::LOCALHOST, &nginx).await;
    let mut browser = proxy
        .connect_through(stream, &nginx.authority(), Some(tls_for(&certificate)), &[])
        .await
        .expect("a session through nginx");
    // Pings over three times nginx's idle timeout: nothing but them crossed the socket.
    let pings = (3 * SHORT_TIMEOUT_S * 1000 / FAST_PING.as_millis() as u64) as usize;
    browser.wait_for_pings(pings).await;
    browser.say(&[tone(0.8), silence(0.2)].concat()).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;
    assert!(
        browser.response_done(ResponseId(1)).is_some(),
        "the session still answers"
    );
    assert_eq!(proxy.state.live_sessions(), 1);
    proxy.stop().await;
}

/// A throwaway Redis on a loopback port (Debian's `redis-server`, nothing saved to disk);
/// dropping it stops it.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/install-tools.sh installs Debian's redis-server)");
        let mut redis = Redis { child, port };
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                matches!(redis.child.try_wait(), Ok(None)) && tokio::time::Instant::now() < give_up,
                "redis-server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page's session socket through `nginx`, presenting `resume` (the proxy only lends its
/// access-token setting: nginx picks the proxy).
async fn wss_session(
    settings: &TestProxy,
    nginx: &Nginx,
    tls: &Arc<rustls::ClientConfig>,
    origin: &str,
    resume: Option<&str>,
) -> voice_agent_e2e::Browser {
    settings
        .connect_resuming(
            connection_from(Ipv4Addr::LOCALHOST, nginx).await,
            &nginx.authority(),
            Some(tls.clone()),
            &[("Origin", origin)],
            resume,
        )
        .await
        .expect("nginx upgrades the socket and a proxy takes it")
}

#[tokio::test]
async fn a_drained_proxy_s_conversation_goes_on_on_another_behind_nginx() {
    let redis = Redis::start().await;
    let certificate = TestCertificate::generate();
    let files = CertificateFiles::new("nginx-scale", &certificate);
    let port = free_port();
    let page_origin = format!("https://localhost:{port}");
    let start_proxy = || {
        let (store, origin) = (redis.url(), page_origin.clone());
        TestProxy::start(SimConfig::default(), move |config| {
            config.session_store =
                proxy::config::SessionStoreKind::parse(&store).expect("a Redis URL");
            config.client_address_header = Some("X-Forwarded-For".into());
            config.allowed_origins = vec![origin];
        })
    };
    let proxies = [start_proxy().await, start_proxy().await];
    let nginx = Nginx::start_balancing(
        "scale",
        port,
        &[proxies[0].addr(), proxies[1].addr()],
        &files,
        false,
    )
    .await;
    let tls = tls_for(&certificate);
    let mut browser = wss_session(&proxies[0], &nginx, &tls, &page_origin, None).await;
    let (session_id, token, _) = browser.session_ready();
    let holder = proxies
        .iter()
        .position(|proxy| proxy.state.live_sessions() == 1)
        .expect("one proxy holds the session");
    proxies[holder].sim.script_transcript("My name is Ada.");
    proxies[holder].sim.script_reply("Nice to meet you, Ada.");
    browser.say(&[tone(0.8), silence(0.2)].concat()).await;
    browser
        .wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
        .await;

    // A rolling deploy drains the holder: it stops accepting, parks the conversation in
    // Redis and tells the page to reconnect.
    let [first, second] = proxies;
    let (drained, other) = if holder == 0 {
        (first, second)
    } else {
        (second, first)
    };
    other.sim.script_transcript("What is my name?");
    other.sim.script_reply("Your name is Ada.");
    let stopping = tokio::spawn(drained.stop());
    assert_eq!(
        browser.wait_for_close().await,
        Some(1012),
        "service restart"
    );
    stopping.await.expect("the drained proxy stops");

    // The page reconnects through nginx, which now has only the other proxy to offer.
    let mut resumed = wss_session(&other, &nginx, &tls, &page_origin, token.as_deref()).await;
    let (resumed_id, _, was_resumed) = resumed.session_ready();
    assert!(was_resumed, "the conversation resumes on the other proxy");
    assert_eq!(resumed_id, session_id);
    assert_eq!(other.state.live_sessions(), 1);
    resumed.say(&[tone(0.8), silence(0.2)].concat()).await;
    resumed
        .wait_for(
            |m| matches!(m, ServerMessage::ResponseDone { response_id, .. } if *response_id == ResponseId(2)),
        )
        .await;
    let records = other.sim.records();
    let messages = records.chat.last().expect("a chat request").body["messages"].clone();
    let contents: Vec<&str> = messages
        .as_array()
        .expect("messages")
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        contents,
        [
            "My name is Ada.",
            "Nice to meet you, Ada.",
            "What is my name?"
        ],
        "the other proxy's model hears the turn the drained one answered"
    );
    resumed.close().await;
    other.stop().await;
}
