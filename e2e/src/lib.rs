//! Shared harness of the end-to-end tests in `tests/`: a real proxy on `127.0.0.1:0` in front
//! of a real simulator, and a WebSocket client that plays the browser.
//!
//! Everything waits for a condition with a generous deadline ([`DEADLINE`]), never for a fixed
//! time, so the tests hold on slow or busy machines.
//!
//! [`tls`] makes throwaway certificates for a proxy that serves HTTPS itself; [`relay`] is a
//! TCP relay a test can cut, as a dropped network would.

pub mod relay;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use openai_sim::{SimConfig, Simulator};
use protocol::{ClientMessage, ErrorEvent, ResponseId, ServerMessage};
use proxy::config::{Config, Secret};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// How long any awaited condition may take before the test fails. Far above what any step
/// needs, so only a real hang trips it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The API key the tests give the proxy; the simulator insists on it.
pub const TEST_API_KEY: &str = "sk-test-e2e-5f1d9a7c3b2e4d6f8a0b1c2d3e4f5a6b";

/// The access token of tests that set one (`/api/*` needs one to be enabled).
pub const TEST_ACCESS_TOKEN: &str = "test-access-token-0123456789";

/// PCM16 sample rate of the wire.
pub const RATE_HZ: usize = 24_000;

/// A proxy serving on a loopback port, backed by a simulator.
#[derive(Debug)]
pub struct TestProxy {
    /// The simulator behind it.
    pub sim: Simulator,
    /// The proxy's state (to check live sessions).
    pub state: proxy::AppState,
    addr: std::net::SocketAddr,
    redirect_addr: Option<std::net::SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), proxy::StartError>>>,
}

impl TestProxy {
    /// Starts a simulator with `sim_config` (the test key required) and a proxy in front of it
    /// with the default configuration changed by `configure`.
    pub async fn start(sim_config: SimConfig, configure: impl FnOnce(&mut Config)) -> TestProxy {
        let sim = Simulator::start(SimConfig {
            api_key: Some(TEST_API_KEY.into()),
            ..sim_config
        })
        .await
        .expect("simulator starts");
        let mut config = Config {
            openai_api_key: Some(Secret::new(TEST_API_KEY)),
            openai_base_url: sim.base_url(),
            client_dir: "/nonexistent-client-dir".into(),
            upstream_stall_timeout: Duration::from_secs(2),
            transcript_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        configure(&mut config);
        Self::serve(sim, config).await
    }

    /// Serves `config` (which should point at `sim`). With `http_redirect_addr` set (to
    /// anything), the redirect listener gets a free loopback port instead
    /// ([`TestProxy::redirect_url`]).
    pub async fn serve(sim: Simulator, config: Config) -> TestProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let redirect = match config.http_redirect_addr {
            Some(_) => Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port for the redirect"),
            ),
            None => None,
        };
        let redirect_addr = redirect
            .as_ref()
            .map(|r| r.local_addr().expect("bound address"));
        let state = proxy::AppState::new(config)
            .await
            .expect("proxy state builds");
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stop.await;
        };
        let server = match redirect {
            Some(redirect) => tokio::spawn(proxy::serve_redirecting(
                listener,
                redirect,
                state.clone(),
                stopped,
            )),
            None => tokio::spawn(proxy::serve(listener, state.clone(), stopped)),
        };
        TestProxy {
            sim,
            state,
            addr,
            redirect_addr,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT`, for a proxy serving TLS.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT` of the plain-HTTP redirect listener, if there is one.
    pub fn redirect_url(&self) -> Option<String> {
        self.redirect_addr.map(|addr| format!("http://{addr}"))
    }

    /// The proxy's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Connects a browser over `wss://` with `tls` (see [`tls::client_config`]), and reads its
    /// `session_ready`.
    pub async fn connect_tls(&self, tls: Arc<rustls::ClientConfig>) -> Browser {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the proxy");
        self.connect_over(stream, Some(tls)).await
    }

    /// Connects a browser and reads its `session_ready`.
    pub async fn connect(&self) -> Browser {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the proxy");
        self.connect_over(stream, None).await
    }

    /// Connects a browser whose socket receives into a buffer of about `bytes` (so one that
    /// stops reading stalls the proxy's sends quickly), and reads its `session_ready`.
    pub async fn connect_with_receive_buffer(&self, bytes: u32) -> Browser {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .set_recv_buffer_size(bytes)
            .expect("set the receive buffer size");
        let stream = socket
            .connect(self.addr)
            .await
            .expect("connect to the proxy");
        self.connect_over(stream, None).await
    }

    async fn connect_over(
        &self,
        stream: tokio::net::TcpStream,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Browser {
        self.connect_through(stream, &self.addr.to_string(), tls, &[])
            .await
            .expect("the proxy accepts the WebSocket")
    }

    /// Connects a browser over `stream` to whatever is at `authority` (`host:port`, the URL's
    /// and the `Host` header's: the proxy itself, or a reverse proxy in front of it), over TLS
    /// with `tls`, sending `headers` with the handshake, and reads its `session_ready`. The
    /// handshake's error if it is refused.
    pub async fn connect_through(
        &self,
        stream: tokio::net::TcpStream,
        authority: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        headers: &[(&str, &str)],
    ) -> Result<Browser, tokio_tungstenite::tungstenite::Error> {
        self.connect_resuming(stream, authority, tls, headers, None)
            .await
    }

    /// Connects a browser to `addr` (the proxy, or a relay in front of it) presenting
    /// `resume` as its resume token, and reads its `session_ready`.
    pub async fn reconnect_at(&self, addr: std::net::SocketAddr, resume: Option<&str>) -> Browser {
        let stream = TcpStream::connect(addr).await.expect("connect");
        self.connect_resuming(stream, &addr.to_string(), None, &[], resume)
            .await
            .expect("the proxy accepts the WebSocket")
    }

    /// As [`TestProxy::connect_through`], presenting `resume` as the resume token.
    pub async fn connect_resuming(
        &self,
        stream: tokio::net::TcpStream,
        authority: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        headers: &[(&str, &str)],
        resume: Option<&str>,
    ) -> Result<Browser, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        // No Nagle delay, as a browser's socket.
        stream.set_nodelay(true).expect("disable Nagle");
        let params: Vec<String> = self
            .state
            .config()
            .access_token
            .as_ref()
            .map(|token| format!("token={}", token.expose()))
            .into_iter()
            .chain(resume.map(|token| format!("{}={token}", protocol::RESUME_QUERY_PARAM)))
            .collect();
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        };
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let connector = tls.map_or(Connector::Plain, Connector::Rustls);
        let mut request = format!("{scheme}://{authority}/ws{query}").into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("a valid header name"),
                value.parse().expect("a valid header value"),
            );
        }
        let (socket, _) =
            tokio_tungstenite::client_async_tls_with_config(request, stream, None, Some(connector))
                .await?;
        let mut browser = Browser {
            socket,
            received: Vec::new(),
            closed: None,
            close_reason: None,
            pings: 0,
        };
        browser
            .wait_for(|m| matches!(m, ServerMessage::SessionReady { .. }))
            .await;
        Ok(browser)
    }

    /// Opens `/ws` + `query` (not the configured token: the caller's query says what to send)
    /// as a page of `origin` would (no `Origin`: as a program would), and drops the socket.
    /// `Ok(())` if upgraded, `Err((status, JSON body))` if refused.
    pub async fn try_open_ws(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<(), (u16, serde_json::Value)> {
        use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
        let mut request = format!("ws://{}/ws{query}", self.addr)
            .into_client_request()
            .expect("a request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("a header value"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => Ok(()),
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                Err((
                    response.status().as_u16(),
                    serde_json::from_slice(&body).expect("a JSON error body"),
                ))
            }
            Err(error) => panic!("the handshake failed otherwise: {error}"),
        }
    }

    /// Waits until `pred` holds for the proxy's live session count.
    pub async fn wait_for_sessions(&self, pred: impl Fn(usize) -> bool) {
        wait_until(|| pred(self.state.live_sessions())).await;
    }

    /// Stops the proxy gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(DEADLINE, server)
                .await
                .expect("the proxy stops in time")
                .expect("the server task does not panic")
                .expect("the server ends cleanly");
        }
    }
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Something the browser received.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A JSON message.
    Message(ServerMessage),
    /// An audio frame.
    Audio {
        /// Its response.
        response_id: ResponseId,
        /// Its PCM16 bytes.
        pcm: Vec<u8>,
    },
}

/// A WebSocket client playing the browser; it keeps everything it received, in order.
#[derive(Debug)]
pub struct Browser {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Everything received so far.
    pub received: Vec<Received>,
    /// The close code, once the proxy closed the socket.
    pub closed: Option<u16>,
    /// The close frame's reason, once the proxy closed the socket.
    pub close_reason: Option<String>,
    /// Pings received from the proxy (each answered with a pong by the WebSocket layer).
    pub pings: usize,
}

impl Browser {
    /// Sends a control message.
    pub async fn send(&mut self, message: ClientMessage) {
        self.socket
            .send(Message::text(message.to_json()))
            .await
            .expect("send to the proxy");
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .expect("send to the proxy");
    }

    /// Sends audio in 20 ms frames (the last may be shorter).
    pub async fn send_audio(&mut self, pcm: &[u8]) {
        for frame in pcm.chunks(RATE_HZ / 50 * 2) {
            self.send_binary(frame.to_vec()).await;
        }
    }

    /// Sends one binary frame as is.
    pub async fn send_binary(&mut self, frame: Vec<u8>) {
        self.try_send_binary(frame)
            .await
            .expect("send to the proxy");
    }

    /// Sends one binary frame; an error once the proxy has closed the socket.
    pub async fn try_send_binary(
        &mut self,
        frame: Vec<u8>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.socket.send(Message::binary(frame)).await
    }

    /// Reads (answering pings) until `n` pings have arrived from the proxy.
    pub async fn wait_for_pings(&mut self, n: usize) {
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while self.pings < n {
            tokio::time::timeout_at(give_up, self.next_frame())
                .await
                .expect("the proxy pings in time")
                .expect("the socket stays open");
        }
    }

    /// One user turn as the client's VAD reports it: speech start, audio, speech stop.
    pub async fn say(&mut self, pcm: &[u8]) {
        self.send(ClientMessage::SpeechStarted).await;
        self.send_audio(pcm).await;
        self.send(ClientMessage::SpeechStopped).await;
    }

    /// Reads frames until one is a message matching `pred`, and returns it.
    pub async fn wait_for(&mut self, pred: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        match self
            .wait_for_frame(|r| matches!(r, Received::Message(m) if pred(m)))
            .await
        {
            Received::Message(message) => message,
            Received::Audio { .. } => unreachable!("the predicate matches messages only"),
        }
    }

    /// Reads frames until one matches `pred`, and returns it.
    pub async fn wait_for_frame(&mut self, pred: impl Fn(&Received) -> bool) -> Received {
        let give_up = tokio::time::Instant::now() + DEADLINE;
        loop {
            let received = match tokio::time::timeout_at(give_up, self.next()).await {
                Ok(Some(received)) => received,
                Ok(None) => panic!(
                    "socket closed ({:?}) before a matching frame; received: {:#?}",
                    self.closed,
                    self.messages()
                ),
                Err(_) => panic!(
                    "no matching frame within {DEADLINE:?}; received: {:#?}",
                    self.messages()
                ),
            };
            if pred(&received) {
                return received;
            }
        }
    }

    /// The first `session_ready`'s session id, resume token (if any) and `resumed`.
    pub fn session_ready(&self) -> (String, Option<String>, bool) {
        self.received
            .iter()
            .find_map(|r| match r {
                Received::Message(ServerMessage::SessionReady {
                    session_id,
                    resume,
                    resumed,
                    ..
                }) => Some((
                    session_id.clone(),
                    resume.as_ref().map(|ticket| ticket.token.clone()),
                    *resumed,
                )),
                _ => None,
            })
            .expect("session_ready was read on connect")
    }

    /// Waits until the proxy has handled everything sent so far: it answers a message of an
    /// unknown type with an error, in order, after what came before it.
    pub async fn barrier(&mut self) {
        let before = self.errors().len();
        self.send_text(r#"{"type":"test_barrier"}"#).await;
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while self.errors().len() == before {
            match tokio::time::timeout_at(give_up, self.next()).await {
                Ok(Some(_)) => {}
                other => panic!("no answer to the barrier: {other:?}"),
            }
        }
    }

    /// Closes the socket as a browser closing its tab does (close 1000), and reads until the
    /// proxy has answered the close.
    pub async fn close(&mut self) {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        self.socket
            .close(Some(frame))
            .await
            .expect("send the close frame to the proxy");
        self.wait_for_close().await;
    }

    /// Reads until the proxy closes the socket; returns the close code.
    pub async fn wait_for_close(&mut self) -> Option<u16> {
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while tokio::time::timeout_at(give_up, self.next())
            .await
            .expect("the proxy closes the socket in time")
            .is_some()
        {}
        self.closed
    }

    /// The next frame (also recorded in `received`), or `None` once the socket closed.
    async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(received) = self.next_frame().await? {
                return Some(received);
            }
        }
    }

    /// The next frame: `Some(None)` for a ping (counted in `pings`, answered by the WebSocket
    /// layer), `None` once the socket closed.
    async fn next_frame(&mut self) -> Option<Option<Received>> {
        loop {
            let Some(Ok(frame)) = self.socket.next().await else {
                return None;
            };
            if let Message::Ping(_) = frame {
                self.pings += 1;
                return Some(None);
            }
            let received = match frame {
                Message::Text(text) => Received::Message(
                    ServerMessage::from_json(&text).expect("the proxy sends valid messages"),
                ),
                Message::Binary(frame) => {
                    let (response_id, pcm) =
                        protocol::decode_audio_frame(&frame).expect("valid audio frame");
                    Received::Audio {
                        response_id,
                        pcm: pcm.to_vec(),
                    }
                }
                Message::Close(frame) => {
                    self.closed = Some(frame.as_ref().map_or(1005, |f| u16::from(f.code)));
                    self.close_reason = frame.map(|f| f.reason.to_string());
                    return None;
                }
                _ => continue,
            };
            self.received.push(received.clone());
            return Some(Some(received));
        }
    }

    /// The JSON messages received so far.
    pub fn messages(&self) -> Vec<&ServerMessage> {
        self.received
            .iter()
            .filter_map(|r| match r {
                Received::Message(m) => Some(m),
                Received::Audio { .. } => None,
            })
            .collect()
    }

    /// The error events received so far, oldest first.
    pub fn errors(&self) -> Vec<ErrorEvent> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Error(event) => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// Reads frames until an error event matches `pred`, and returns it.
    pub async fn wait_for_error(&mut self, pred: impl Fn(&ErrorEvent) -> bool) -> ErrorEvent {
        match self
            .wait_for(|m| matches!(m, ServerMessage::Error(e) if pred(e)))
            .await
        {
            ServerMessage::Error(event) => event,
            _ => unreachable!("the predicate matches errors only"),
        }
    }

    /// The `response_done` of `response_id`, if it arrived.
    pub fn response_done(&self, response_id: ResponseId) -> Option<ResponseDone> {
        self.messages().into_iter().find_map(|m| match m {
            ServerMessage::ResponseDone {
                response_id: id,
                text,
                interrupted,
                audio_samples,
            } if *id == response_id => Some(ResponseDone {
                text: text.clone(),
                interrupted: *interrupted,
                audio_samples: *audio_samples,
            }),
            _ => None,
        })
    }

    /// Speaks one short turn (0.8 s of voice, then quiet), waits for `question` as its final
    /// transcript and for the first answer to end, and checks that the answer was `answer`,
    /// whole, with every sample of its audio received. Returns its `response_done`.
    pub async fn one_turn_answered(&mut self, question: &str, answer: &str) -> ResponseDone {
        self.say(&[tone(0.8), silence(0.2)].concat()).await;
        self.wait_for(
            |m| matches!(m, ServerMessage::TranscriptFinal { text, .. } if text == question),
        )
        .await;
        self.wait_for(|m| matches!(m, ServerMessage::ResponseDone { .. }))
            .await;
        let done = self
            .response_done(ResponseId(1))
            .expect("the answer finished");
        assert_eq!(done.text, answer);
        assert!(!done.interrupted, "the answer played to its end");
        assert!(done.audio_samples > 0, "the answer was spoken");
        assert_eq!(
            self.audio_of(ResponseId(1)).len() as u64,
            done.audio_samples * 2,
            "all of its audio arrived"
        );
        done
    }

    /// All audio bytes received for a response, in order.
    pub fn audio_of(&self, response_id: ResponseId) -> Vec<u8> {
        self.received
            .iter()
            .filter_map(|r| match r {
                Received::Audio {
                    response_id: id,
                    pcm,
                } if *id == response_id => Some(pcm.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }
}

/// What a `response_done` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseDone {
    /// The response's text.
    pub text: String,
    /// Whether it was cut short.
    pub interrupted: bool,
    /// 24 kHz samples of audio sent for it.
    pub audio_samples: u64,
}

/// `seconds` of a 220 Hz tone at about -12 dBFS: audible "speech" for the simulator's VAD and
/// duration-based transcripts.
pub fn tone(seconds: f64) -> Vec<u8> {
    let samples = (seconds * RATE_HZ as f64).round() as usize;
    (0..samples)
        .flat_map(|n| {
            let t = n as f64 / RATE_HZ as f64;
            let value = (8_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16;
            value.to_le_bytes()
        })
        .collect()
}

/// `seconds` of digital silence.
pub fn silence(seconds: f64) -> Vec<u8> {
    vec![0; (seconds * RATE_HZ as f64).round() as usize * 2]
}
