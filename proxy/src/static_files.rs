//! The built client, served from `CLIENT_DIR`: never a file reached through a symlink that
//! leads out of the directory, and every response with the headers a page holding a token in
//! its URL needs (a Content-Security-Policy that allows only this origin's scripts and the
//! page's own inline loader, no framing, no MIME sniffing, no referrer).

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::Digest as _;
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

/// The client directory, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct ClientFiles {
    /// The directory as configured (what [`ServeDir`] serves).
    dir: PathBuf,
    /// Its canonical path: every file served must lie under it once symlinks are resolved.
    root: PathBuf,
}

impl ClientFiles {
    /// The client in `dir`, if the directory exists.
    pub(crate) fn open(dir: &Path) -> Option<Self> {
        let root = std::fs::canonicalize(dir).ok()?;
        root.is_dir().then(|| Self {
            dir: dir.to_owned(),
            root,
        })
    }
}

/// Serves one request for a file of the client.
pub(crate) async fn serve(State(files): State<ClientFiles>, request: Request) -> Response {
    if !stays_inside(&files.root, request.uri().path()).await {
        return StatusCode::NOT_FOUND.into_response();
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|host| is_plain_authority(host))
        .map(str::to_owned);
    let served = ServeDir::new(&files.dir)
        .append_index_html_on_directories(true)
        .oneshot(request)
        .await;
    let mut response = match served {
        Ok(response) => response.map(Body::new),
        Err(infallible) => match infallible {},
    };
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let inline_hashes = if is_html {
        inline_script_hashes(&files.dir.join("index.html")).await
    } else {
        Vec::new()
    };
    add_security_headers(
        response.headers_mut(),
        &content_security_policy(&inline_hashes, host.as_deref()),
    );
    response
}

/// Whether the file `path` (a URL path) names, if it exists, lies under `root` once every
/// symlink is resolved. Paths that do not exist pass: the file server answers 404 for them.
async fn stays_inside(root: &Path, url_path: &str) -> bool {
    let mut candidate = root.to_owned();
    for segment in url_path.split('/').filter(|s| !s.is_empty()) {
        let Ok(decoded) = percent_encoding::percent_decode_str(segment).decode_utf8() else {
            return false;
        };
        let segment_path = Path::new(decoded.as_ref());
        // One normal component per segment: no `..`, no absolute path, no separator inside.
        let mut components = segment_path.components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => candidate.push(segment_path),
            _ => return false,
        }
    }
    match tokio::fs::canonicalize(&candidate).await {
        Ok(real) => real.starts_with(root),
        Err(_) => true,
    }
}

/// `host` or `host:port` made of the characters a host name, an IPv4 or an `[IPv6]` literal
/// uses, so it can go into a header value as it is.
fn is_plain_authority(authority: &str) -> bool {
    !authority.is_empty()
        && authority.len() <= 255
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// `sha256-…` of each inline `<script>` of the page (trunk's loader), so the policy can allow
/// exactly those and no injected one.
async fn inline_script_hashes(index: &Path) -> Vec<String> {
    let Ok(html) = tokio::fs::read_to_string(index).await else {
        return Vec::new();
    };
    let mut hashes = Vec::new();
    let mut rest = html.as_str();
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body_and_more = &after[tag_end + 1..];
        let Some(close) = body_and_more.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            let digest = sha2::Sha256::digest(&body_and_more.as_bytes()[..close]);
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body_and_more[close..];
    }
    hashes
}

/// The page's policy: scripts, styles, worklets and connections of this origin only (the
/// WebSocket named explicitly for browsers that do not count `ws:` as `'self'`), WebAssembly
/// compilation, the listed inline scripts, and no framing at all.
fn content_security_policy(inline_hashes: &[String], host: Option<&str>) -> String {
    let sockets = host
        .map(|host| format!(" ws://{host} wss://{host}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; \
         connect-src 'self'{sockets}; img-src 'self' data:; media-src 'self' blob:; \
         object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes = inline_hashes
            .iter()
            .map(|h| format!(" {h}"))
            .collect::<String>(),
    )
}

fn add_security_headers(headers: &mut HeaderMap, policy: &str) {
    if let Ok(value) = HeaderValue::from_str(policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page's URL may carry the access token: never send it anywhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // For browsers older than `frame-ancestors`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn symlinks_out_of_the_directory_are_not_followed() {
        let base = std::env::temp_dir().join(format!("static-files-{}", std::process::id()));
        let root = base.join("dist");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(base.join("secret.txt"), "secret").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("secret.txt"), root.join("leak.txt")).unwrap();
            std::os::unix::fs::symlink(root.join("index.html"), root.join("sub/inner.html"))
                .unwrap();
        }
        let root = std::fs::canonicalize(&root).unwrap();
        assert!(stays_inside(&root, "/index.html").await);
        assert!(stays_inside(&root, "/").await);
        assert!(stays_inside(&root, "/missing.js").await);
        assert!(!stays_inside(&root, "/../secret.txt").await);
        assert!(!stays_inside(&root, "/%2e%2e/secret.txt").await);
        assert!(!stays_inside(&root, "/sub%2f..%2f..%2fsecret.txt").await);
        #[cfg(unix)]
        {
            assert!(!stays_inside(&root, "/leak.txt").await);
            assert!(stays_inside(&root, "/sub/inner.html").await);
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn inline_scripts_are_hashed_and_external_ones_are_not() {
        let base = std::env::temp_dir().join(format!("static-hash-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let index = base.join("index.html");
        std::fs::write(
            &index,
            "<script src=\"/a.js\"></script><script type=\"module\">init();</script>",
        )
        .unwrap();
        let hashes = inline_script_hashes(&index).await;
        let expected =
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"init();"));
        assert_eq!(hashes, vec![format!("'sha256-{expected}'")]);
        let policy = content_security_policy(&hashes, Some("127.0.0.1:8000"));
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(policy.contains(&hashes[0]), "{policy}");
        assert!(policy.contains("ws://127.0.0.1:8000"), "{policy}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn only_plain_authorities_go_into_the_policy() {
        assert!(is_plain_authority("voice.example.com:8443"));
        assert!(is_plain_authority("[::1]:8000"));
        assert!(!is_plain_authority("evil; script-src *"));
        assert!(!is_plain_authority(""));
    }
}
