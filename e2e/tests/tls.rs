//! The proxy serving HTTPS and WSS itself (`TLS_CERT`, `TLS_KEY`): a whole turn over
//! `wss://`, `/healthz` over HTTPS, plain HTTP on the TLS port, silent handshakes under the
//! connection caps, a renewed certificate served without a restart, and the plain-HTTP
//! redirect listener. Every client trusts the test certificate alone.

use std::time::Duration;

use openai_sim::SimConfig;
use proxy::config::Config;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use voice_agent_e2e::tls::{CertificateFiles, TestCertificate, client_config};
use voice_agent_e2e::{DEADLINE, TestProxy};

/// A proxy serving TLS from `certificate`'s files, changed further by `configure`. The files
/// live as long as the second value.
async fn tls_proxy(
    name: &str,
    certificate: &TestCertificate,
    configure: impl FnOnce(&mut Config),
) -> (TestProxy, CertificateFiles) {
    let files = CertificateFiles::new(name, certificate);
    let tls = files.files.clone();
    let proxy = TestProxy::start(SimConfig::default(), move |config| {
        config.tls = Some(tls);
        configure(config);
    })
    .await;
    (proxy, files)
}

/// An HTTPS client whose only root is `certificate`; it follows no redirect.
fn https_client(certificate: &TestCertificate) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(certificate.cert_pem.as_bytes()).expect("PEM");
    reqwest::Client::builder()
        .tls_certs_only([root])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTPS client")
}

async fn healthz_over_https(proxy: &TestProxy, certificate: &TestCertificate) -> Value {
    let response = https_client(certificate)
        .get(format!("{}/healthz", proxy.https_url()))
        .send()
        .await
        .expect("the proxy answers over HTTPS");
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON body")
}

/// One raw request on a new plain TCP connection; the whole answer, read until the proxy
/// closes the connection.
async fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers and closes in time")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A TLS handshake on a new connection: the certificate the proxy presented, or `None` if
/// the handshake failed.
async fn presented_certificate(
    addr: std::net::SocketAddr,
    trusted: &[&TestCertificate],
) -> Option<CertificateDer<'static>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(client_config(trusted));
    let name = ServerName::try_from("localhost").expect("a valid name");
    let stream = tokio::time::timeout(DEADLINE, connector.connect(name, stream))
        .await
        .expect("the handshake ends in time")
        .ok()?;
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
}

#[tokio::test]
async fn a_whole_turn_runs_over_wss() {
    let certificate = TestCertificate::generate();
    let (proxy, _files) = tls_proxy("turn", &certificate, |_| {}).await;
    let question = "What is the capital of France?";
    let answer = "Paris is the capital of France. It sits on the Seine.";
    proxy.sim.script_transcript(question);
    proxy.sim.script_reply(answer);
    let mut browser = proxy.connect_tls(client_config(&[&certificate])).await;
    // Every sample of the answer came over the TLS socket.
    browser.one_turn_answered(question, answer).await;
    proxy.stop().await;
}

#[tokio::test]
async fn health_answers_over_https() {
    let certificate = TestCertificate::generate();
    let (proxy, _files) = tls_proxy("health", &certificate, |_| {}).await;
    let body = healthz_over_https(&proxy, &certificate).await;
    assert_eq!(body["status"], "ok");
    // A client that does not trust the certificate gets no answer at all.
    let stranger = TestCertificate::generate();
    assert!(
        https_client(&stranger)
            .get(format!("{}/healthz", proxy.https_url()))
            .send()
            .await
            .is_err()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_400_saying_so_and_the_server_keeps_serving() {
    let certificate = TestCertificate::generate();
    let (proxy, _files) = tls_proxy("plain", &certificate, |_| {}).await;
    let answer = raw_request(
        proxy.addr(),
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    assert!(
        body.contains("HTTPS") && body.contains("https://"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "{body}");
    let body = healthz_over_https(&proxy, &certificate).await;
    assert_eq!(body["status"], "ok");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_never_starts_its_handshake_is_closed() {
    let certificate = TestCertificate::generate();
    let (proxy, _files) = tls_proxy("silent", &certificate, |config| {
        config.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut byte))
        .await
        .expect("the proxy closes the connection in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn connections_waiting_for_their_handshake_count_against_the_caps_and_make_room() {
    let certificate = TestCertificate::generate();
    // Long enough that only the connection cap can close the silent connections in time.
    let (proxy, _files) = tls_proxy("caps", &certificate, |config| {
        config.limits.max_connections_per_address = 2;
        config.limits.header_read_timeout = Duration::from_secs(120);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(proxy.addr()).await.expect("connect"));
    }
    // The address is full of connections that sent nothing; once they have waited a while,
    // the oldest makes room for a client that handshakes.
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let client = https_client(&certificate);
    loop {
        let answered = client
            .get(format!("{}/healthz", proxy.https_url()))
            .send()
            .await;
        if answered.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "no room made within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, silent[0].read(&mut byte))
        .await
        .expect("the oldest silent connection is closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let first = TestCertificate::generate();
    let second = TestCertificate::generate();
    let (proxy, files) = tls_proxy("renewal", &first, |config| {
        config.tls_reload_interval = Duration::from_millis(100);
        // The connection opened before the renewal must outlive the wait for it.
        config.limits.header_read_timeout = Duration::from_secs(120);
    })
    .await;
    let both = [&first, &second];
    assert_eq!(
        presented_certificate(proxy.addr(), &both).await,
        Some(first.der.clone())
    );
    // A connection from before the renewal, its handshake done.
    let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a valid name");
    let mut before = tokio_rustls::TlsConnector::from(client_config(&[&first]))
        .connect(name, stream)
        .await
        .expect("the handshake succeeds");

    files.replace_with(&second);
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while presented_certificate(proxy.addr(), &both).await != Some(second.der.clone()) {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the renewed certificate was not served within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A client trusting only the new certificate gets through now.
    assert_eq!(healthz_over_https(&proxy, &second).await["status"], "ok");

    // The connection from before is untouched: it still serves a request.
    before
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send on the old connection");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, before.read_to_end(&mut answer))
        .await
        .expect("the old connection answers in time")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn the_redirect_listener_sends_plain_http_to_the_same_address_over_https() {
    let certificate = TestCertificate::generate();
    let (proxy, _files) = tls_proxy("redirect", &certificate, |config| {
        // The harness gives the redirect listener a free port of its own.
        config.http_redirect_addr = Some(([127, 0, 0, 1], 0).into());
        config.public_hosts = vec!["voice.example.com".to_owned()];
    })
    .await;
    let redirect = proxy.redirect_url().expect("a redirect listener");
    let tls_port = proxy.addr().port();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let redirected = |host: &str| {
        plain
            .get(format!("{redirect}/some/path?token=abc&x=1"))
            .header(reqwest::header::HOST, host)
            .send()
    };
    let response = redirected("voice.example.com:8080")
        .await
        .expect("the redirect listener answers");
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()[reqwest::header::LOCATION],
        format!("https://voice.example.com:{tls_port}/some/path?token=abc&x=1").as_str()
    );
    // A name this proxy does not serve is not redirected anywhere.
    let response = redirected("evil.example").await.expect("an answer");
    assert_eq!(response.status(), 403);
    assert!(response.headers().get(reqwest::header::LOCATION).is_none());

    // A client trusting the certificate follows it to the page over HTTPS.
    let root = reqwest::Certificate::from_pem(certificate.cert_pem.as_bytes()).expect("PEM");
    let follower = reqwest::Client::builder()
        .tls_certs_only([root])
        .build()
        .expect("an HTTPS client");
    let response = follower
        .get(format!("{redirect}/healthz"))
        .send()
        .await
        .expect("the redirect is followed");
    assert_eq!(response.url().scheme(), "https");
    assert_eq!(response.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn unusable_certificate_files_refuse_to_start_naming_the_file() {
    let certificate = TestCertificate::generate();
    let files = CertificateFiles::new("refused", &certificate);
    std::fs::write(&files.files.key, "not a key").expect("spoil the key");
    let config = Config {
        tls: Some(files.files.clone()),
        ..Config::default()
    };
    let state = proxy::AppState::new(config)
        .await
        .expect("the state builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let error = proxy::serve(listener, state, std::future::pending())
        .await
        .expect_err("refused to start");
    let message = error.to_string();
    assert!(
        message.contains(&files.files.key.display().to_string()) && message.contains("TLS_KEY"),
        "{message}"
    );
}
