//! Throwaway certificates for the TLS tests, the files the proxy reads them from, and client
//! configurations that trust nothing else.

use std::path::PathBuf;
use std::sync::Arc;

use proxy::config::TlsFiles;
use rcgen::PublicKeyData as _;
use rustls::pki_types::CertificateDer;

/// A self-signed certificate for `localhost` and `127.0.0.1`, with its key.
#[derive(Debug)]
pub struct TestCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER: what a server presents.
    pub der: CertificateDer<'static>,
    /// Its SubjectPublicKeyInfo, DER (what Chromium's SPKI allowlist hashes).
    pub spki_der: Vec<u8>,
}

impl TestCertificate {
    /// A new certificate with a new key.
    pub fn generate() -> Self {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("rcgen makes a certificate");
        Self {
            cert_pem: cert.pem(),
            key_pem: signing_key.serialize_pem(),
            der: cert.der().clone(),
            spki_der: signing_key.subject_public_key_info(),
        }
    }
}

/// A rustls client configuration whose only roots are `trusted`.
pub fn client_config(trusted: &[&TestCertificate]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in trusted {
        roots
            .add(certificate.der.clone())
            .expect("the test certificate is a valid root");
    }
    // The provider the proxy uses, named, since the workspace's rustls may have more than one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A certificate's PEM files in a scratch directory of their own, removed on drop.
#[derive(Debug)]
pub struct CertificateFiles {
    dir: PathBuf,
    /// The two files, as the proxy's configuration names them.
    pub files: TlsFiles,
}

impl CertificateFiles {
    /// Writes `certificate` into a new directory named after `name` and this process.
    pub fn new(name: &str, certificate: &TestCertificate) -> Self {
        let dir = std::env::temp_dir().join(format!("voice-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let files = TlsFiles {
            cert: dir.join("fullchain.pem"),
            key: dir.join("privkey.pem"),
        };
        let written = Self { dir, files };
        written.replace_with(certificate);
        written
    }

    /// Rewrites both files in place with `certificate`, as a renewal does: the key first, so
    /// for a moment the files do not fit together.
    pub fn replace_with(&self, certificate: &TestCertificate) {
        std::fs::write(&self.files.key, &certificate.key_pem).expect("write the key");
        std::fs::write(&self.files.cert, &certificate.cert_pem).expect("write the certificate");
    }
}

impl Drop for CertificateFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
