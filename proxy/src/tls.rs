//! HTTPS and WSS served by the proxy itself (`TLS_CERT`, `TLS_KEY`), and the plain-HTTP
//! redirect to them (`HTTP_REDIRECT_ADDR`).
//!
//! * **The certificate** is read at start, and a file that cannot be read or parsed, or a key
//!   that does not fit the certificate, refuses to start ([`TlsError`] names the file). A
//!   background task then checks both files' modification times (and sizes) every
//!   `TLS_RELOAD_INTERVAL_S` and loads them again when either changed: a renewal is served
//!   without a restart. A reload that fails (a half-written file, a new key beside the old
//!   certificate) keeps the certificate in use, warns once for that state of the files, and
//!   is tried again at every check until it succeeds. New connections get the current
//!   certificate ([`CurrentCertificate`], rustls' `ResolvesServerCert`); connections already
//!   open keep theirs.
//! * **The handshake** has the header read timeout as its deadline, so a client that connects
//!   and says nothing cannot hold a connection. The connection holds its place in the accept
//!   loop's gate from the start, so the caps and the eviction of silent connections apply to
//!   it as to a plain one.
//! * **Plain HTTP on the TLS port** (someone typed `http://`) gets a short `400` saying the
//!   port speaks HTTPS, instead of a TLS alert the browser shows as a broken page: the first
//!   byte of a TLS connection is always a handshake record's type (22).
//! * **ALPN** offers `http/1.1` only: the server speaks HTTP/1.1 (hyper's `http1` builder),
//!   which is also what a WebSocket upgrade needs.
//! * **The redirect listener** answers every request with `308 Permanent Redirect` to the same
//!   path and query on `https://`, with the `Host`'s name and the TLS port (left out when it
//!   is 443). It redirects only to hosts the proxy answers (loopback names and
//!   `PUBLIC_HOSTS`), so it is no open redirect for another site's name.
//!
//! The crypto is rustls' aws-lc-rs provider, given explicitly: reqwest already builds it
//! into the proxy, and enabling a second provider (ring) in the one rustls crate would leave
//! rustls unable to pick a process default, which the upstream WebSocket client relies on.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorCode, ErrorEvent, Stage};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::access::https_authority;
use crate::config::{Config, TlsFiles};
use crate::limits::truncate_for_log;

/// The first byte of every TLS connection: the content type of a handshake record (22), which
/// carries the ClientHello. An HTTP request starts with a method's letter instead.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The only application protocol offered: the server speaks HTTP/1.1, and so does a WebSocket
/// upgrade.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Most bytes of a plain-HTTP request read before it is answered: a browser's request head is
/// well under this; a longer one is answered all the same.
const PLAIN_HTTP_HEAD_MAX_BYTES: usize = 16 * 1024;

/// After the `400` to a plain-HTTP request, how long the client may take to close first. A
/// socket closed with unread bytes makes the kernel reset the connection, and a reset can
/// destroy the answer before the client reads it; a client reads a short answer at once.
const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(1);

/// The body of that `400`: what to do, nothing about the server.
const PLAIN_HTTP_BODY: &str = "This port speaks HTTPS: open it with https:// instead of http://.\n";

/// Longest piece of a client's `Host` quoted in a log line.
const MAX_LOGGED_HOST_CHARS: usize = 100;

/// Why the TLS certificate or key cannot be used. At start the proxy refuses to start with
/// it; at a reload it is logged and the certificate in use is kept.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {setting} {}: {source}", .path.display())]
    Read {
        /// `TLS_CERT` or `TLS_KEY`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{setting} {} is not valid PEM: {source}", .path.display())]
    Pem {
        /// `TLS_CERT` or `TLS_KEY`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error(
        "TLS_CERT {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks, the \
         server's own first)",
        .path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "TLS_KEY {} holds no private key (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA \
         PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)",
        .path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind rustls cannot sign with, or does not belong to the certificate.
    #[error(
        "TLS_KEY {} cannot be used with TLS_CERT {}: {source}",
        .key.display(),
        .cert.display()
    )]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// rustls refused the server configuration itself (not expected with its own provider).
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The crypto provider of every TLS server configuration (see the module docs).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads and checks the certificate chain and key of `files`.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(&files.cert, "TLS_CERT")?;
    let key_pem = read(&files.key, "TLS_KEY")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("TLS_CERT", &files.cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: files.key.clone(),
            });
        }
        Err(source) => return Err(pem_error("TLS_KEY", &files.key)(source)),
    };
    // Also checks that the key is the certificate's.
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

fn pem_error(setting: &'static str, path: &Path) -> impl FnOnce(pem::Error) -> TlsError {
    let path = path.to_owned();
    move |source| TlsError::Pem {
        setting,
        path,
        source,
    }
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_owned(),
        source,
    })
}

/// What a file looked like when last read: its modification time and size (the size catches
/// a rewrite within the file system's timestamp resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Both files' stamps (through symlinks, as certbot's `live/` links are), or `None` if either
/// cannot be read now.
fn stamps(files: &TlsFiles) -> Option<[FileStamp; 2]> {
    let stamp = |path: &Path| {
        std::fs::metadata(path).ok().map(|metadata| FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    };
    Some([stamp(&files.cert)?, stamp(&files.key)?])
}

/// The certificate new connections get: rustls asks at every handshake, a reload swaps it.
#[derive(Debug)]
struct CurrentCertificate {
    key: RwLock<Arc<CertifiedKey>>,
}

impl CurrentCertificate {
    fn get(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole `Arc`: the swap below cannot half-happen.
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, key: CertifiedKey) {
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The TLS side of a server: its rustls configuration and what reloads its certificate.
#[derive(Debug)]
pub(crate) struct ServerTls {
    config: Arc<ServerConfig>,
    reloader: Reloader,
}

impl ServerTls {
    /// The TLS of `config`: `None` when it serves plain HTTP, an error when its files cannot
    /// be used.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Self>, TlsError> {
        config.tls.as_ref().map(Self::load).transpose()
    }

    /// Loads `files` and builds the server configuration around them.
    fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = provider();
        // Stamped before reading: a change while reading is seen at the next check.
        let loaded = stamps(files);
        let key = load(files, &provider)?;
        let current = Arc::new(CurrentCertificate {
            key: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        tracing::info!(cert = %files.cert.display(), "TLS certificate loaded");
        Ok(Self {
            config: Arc::new(config),
            reloader: Reloader {
                files: files.clone(),
                provider,
                current,
                loaded,
                warned: None,
            },
        })
    }

    /// What accepts connections, with `deadline` for the handshake.
    pub(crate) fn handshaker(&self, deadline: Duration) -> Handshaker {
        Handshaker {
            acceptor: TlsAcceptor::from(self.config.clone()),
            deadline,
        }
    }

    /// Starts checking the files every `interval` until `shutdown`; dropping the handle stops
    /// it too, so it ends with the server.
    pub(crate) fn spawn_reloader(
        self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> AbortOnDropHandle<()> {
        AbortOnDropHandle::new(tokio::spawn(self.reloader.run(interval, shutdown)))
    }
}

/// Loads the files again when they change.
#[derive(Debug)]
struct Reloader {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCertificate>,
    /// The files' stamps when the certificate in use was read.
    loaded: Option<[FileStamp; 2]>,
    /// The files' stamps at the last failure that was warned about.
    warned: Option<Option<[FileStamp; 2]>>,
}

/// What one check did.
#[derive(Debug)]
enum Check {
    /// The files are as they were loaded.
    Unchanged,
    /// New files are in use.
    Reloaded,
    /// They changed but cannot be used; the certificate in use stays. `repeated` when the
    /// files are as they were at the last failure warned about.
    Failed { error: TlsError, repeated: bool },
}

impl Reloader {
    async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut reloader = self;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            // Reading files blocks; on a slow disk it must not hold up a runtime thread.
            let checked = tokio::task::spawn_blocking(move || {
                let check = reloader.check();
                (reloader, check)
            })
            .await;
            let check;
            (reloader, check) = match checked {
                Ok(checked) => checked,
                Err(error) => {
                    tracing::error!(%error, "the TLS certificate check failed; no more reloads");
                    return;
                }
            };
            match check {
                Check::Unchanged => {}
                Check::Reloaded => {
                    tracing::info!(
                        cert = %reloader.files.cert.display(),
                        "TLS certificate reloaded"
                    );
                }
                Check::Failed { error, repeated } => {
                    if repeated {
                        tracing::debug!(%error, "TLS files still unusable");
                    } else {
                        tracing::warn!(
                            %error,
                            "TLS files changed but cannot be used; keeping the certificate in \
                             use and trying again at the next check"
                        );
                    }
                }
            }
        }
    }

    /// Loads the files if they changed since the certificate in use was read (or cannot be
    /// looked at now), and swaps them in if they can be used.
    fn check(&mut self) -> Check {
        let now = stamps(&self.files);
        if now.is_some() && now == self.loaded {
            return Check::Unchanged;
        }
        match load(&self.files, &self.provider) {
            Ok(key) => {
                self.current.replace(key);
                self.loaded = now;
                self.warned = None;
                Check::Reloaded
            }
            Err(error) => {
                let repeated = self.warned == Some(now);
                self.warned = Some(now);
                Check::Failed { error, repeated }
            }
        }
    }
}

/// Accepts TLS connections, refusing plain HTTP; cheap to clone, one per connection.
#[derive(Clone)]
pub(crate) struct Handshaker {
    acceptor: TlsAcceptor,
    deadline: Duration,
}

impl std::fmt::Debug for Handshaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshaker")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Handshaker {
    /// The TLS stream of a new connection once its handshake is done; `None` when it closed,
    /// spoke plain HTTP (answered with a `400`), failed its handshake or missed the deadline.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(self.deadline, self.handshake(stream)).await {
            Ok(Ok(stream)) => stream,
            // Clients' failures (an untrusted certificate, a scanner) are not the server's.
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "no TLS handshake within the header read timeout");
                None
            }
        }
    }

    async fn handshake(&self, stream: TcpStream) -> io::Result<Option<TlsStream<TcpStream>>> {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            refuse_plain_http(stream).await;
            return Ok(None);
        }
        self.acceptor.accept(stream).await.map(Some)
    }
}

/// Answers a plain-HTTP request on the TLS port with a `400` and closes the connection.
async fn refuse_plain_http(mut stream: TcpStream) {
    // The request head is read first, so the close below leaves nothing unread (see
    // `PLAIN_HTTP_LINGER`).
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < PLAIN_HTTP_HEAD_MAX_BYTES {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    if stream.write_all(response.as_bytes()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    tracing::debug!("answered a plain-HTTP request on the TLS port");
    let _ = tokio::time::timeout(PLAIN_HTTP_LINGER, async {
        while let Ok(1..) = stream.read(&mut buffer).await {}
    })
    .await;
}

/// The plain-HTTP redirect listener's router: every request gets a `308` to the same path and
/// query over HTTPS on `https_port`, if its `Host` is one this server answers.
pub(crate) fn redirect_app(public_hosts: Vec<String>, https_port: u16) -> Router {
    let public_hosts = Arc::new(public_hosts);
    Router::new().fallback(move |request: Request| {
        let public_hosts = public_hosts.clone();
        async move { redirect(&request, &public_hosts, https_port) }
    })
}

fn redirect(request: &Request, public_hosts: &[String], https_port: u16) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let Some(authority) = host.and_then(|h| https_authority(h, https_port, public_hosts)) else {
        tracing::warn!(
            host = host
                .map(|h| truncate_for_log(h, MAX_LOGGED_HOST_CHARS))
                .as_deref(),
            "refused to redirect to a host this server is not configured as (PUBLIC_HOSTS)"
        );
        return refusal(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "This server does not answer to that host name; its operator can add it to \
             PUBLIC_HOSTS.",
        );
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    match HeaderValue::from_str(&format!("https://{authority}{path}")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidMessage,
            "This address cannot be redirected to HTTPS.",
        ),
    }
}

/// A refusal in the JSON shape of the proxy's other refusals.
fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let event = ErrorEvent::new(Stage::Proxy, code, message, false);
    (status, axum::Json(serde_json::json!({ "error": event }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn certificate() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                .expect("a certificate");
        (cert.pem(), signing_key.serialize_pem())
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("proxy-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            Self(dir)
        }

        fn files(&self) -> TlsFiles {
            TlsFiles {
                cert: self.0.join("cert.pem"),
                key: self.0.join("key.pem"),
            }
        }

        fn write(&self, (cert, key): &(String, String)) {
            let files = self.files();
            std::fs::write(files.cert, cert).expect("write the certificate");
            std::fs::write(files.key, key).expect("write the key");
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load_error(files: &TlsFiles) -> String {
        ServerTls::load(files)
            .err()
            .map(|error| error.to_string())
            .expect("refused")
    }

    #[test]
    fn unusable_files_are_refused_naming_the_file() {
        let dir = Dir::new("refused");
        let files = dir.files();
        let message = load_error(&files);
        assert!(message.starts_with("cannot read TLS_CERT "), "{message}");
        assert!(
            message.contains(&files.cert.display().to_string()),
            "{message}"
        );

        let first = certificate();
        dir.write(&(first.0.clone(), "not a key".to_owned()));
        let message = load_error(&files);
        assert!(message.starts_with("TLS_KEY "), "{message}");
        assert!(message.contains("holds no private key"), "{message}");

        dir.write(&(first.1.clone(), first.1.clone()));
        let message = load_error(&files);
        assert!(message.contains("holds no certificate"), "{message}");

        let half = first.0[..first.0.len() / 2].to_owned();
        dir.write(&(half, first.1.clone()));
        let message = load_error(&files);
        assert!(message.contains("is not valid PEM"), "{message}");

        // Another certificate's key.
        dir.write(&(first.0.clone(), certificate().1));
        let message = load_error(&files);
        assert!(
            message.contains("cannot be used with TLS_CERT"),
            "{message}"
        );

        dir.write(&first);
        assert!(ServerTls::load(&files).is_ok());
    }

    #[test]
    fn a_reload_swaps_in_changed_files_and_keeps_the_old_when_they_are_unusable() {
        let dir = Dir::new("reload");
        let first = certificate();
        dir.write(&first);
        let tls = ServerTls::load(&dir.files()).expect("loads");
        let mut reloader = tls.reloader;
        let in_use = |reloader: &Reloader| reloader.current.get().cert[0].to_vec();
        let original = in_use(&reloader);
        assert!(matches!(reloader.check(), Check::Unchanged));

        // A renewal caught half-written: the new key beside the old certificate.
        let second = certificate();
        std::fs::write(dir.files().key, &second.1).expect("write the key");
        assert!(matches!(
            reloader.check(),
            Check::Failed {
                error: TlsError::Unusable { .. },
                repeated: false
            }
        ));
        assert_eq!(in_use(&reloader), original, "the old certificate stays");
        // Tried again at the next check, without another warning.
        assert!(matches!(
            reloader.check(),
            Check::Failed { repeated: true, .. }
        ));

        dir.write(&second);
        assert!(matches!(reloader.check(), Check::Reloaded));
        let renewed = in_use(&reloader);
        assert_ne!(renewed, original);
        let expected = CertificateDer::from_pem_slice(second.0.as_bytes()).expect("PEM");
        assert_eq!(renewed, expected.to_vec());
        assert!(matches!(reloader.check(), Check::Unchanged));
    }
}
