//! Where the page finds the proxy: its own host, or the URL an operator wrote into
//! `config.json` beside `index.html`, so the static bundle can be served from anywhere (a CDN,
//! another host) and pointed at the proxy without a rebuild.
//!
//! ```json
//! { "proxy_url": "https://voice-api.example.com" }
//! ```
//!
//! No `config.json` (a 404) means the page's own host. The page's `?token=` goes to whichever
//! proxy it talks to. A reconnect after a dropped socket adds the resume token to the same
//! URL ([`SessionTarget::resuming`]).

use serde::Deserialize;

/// The name of the file, relative to the page.
pub const CONFIG_FILE: &str = "config.json";

/// Path of the session endpoint under the proxy's URL.
const SESSION_PATH: &str = "/ws";

/// What `config.json` may say. Unknown fields are refused, so a misspelt one is reported
/// instead of silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// The proxy's base URL (`https://host[:port][/prefix]`; `http`, `ws` and `wss` work
    /// too). Absent: the page's own host.
    pub proxy_url: Option<String>,
}

/// Why `config.json` cannot be used; shown to the user (the operator will read it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not the JSON object described above.
    #[error("{CONFIG_FILE} is not valid: {0}")]
    Invalid(String),
    /// `proxy_url` is not an absolute http(s) or ws(s) URL.
    #[error("{CONFIG_FILE}: proxy_url {0:?} is not an http(s):// or ws(s):// URL with a host")]
    BadProxyUrl(String),
    /// An https page may not open an unencrypted socket (the browser blocks mixed content).
    #[error(
        "{CONFIG_FILE}: this page is served over https, so proxy_url {0:?} must be https:// or wss://"
    )]
    MixedContent(String),
}

impl BundleConfig {
    /// Reads the text of `config.json`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|error| ConfigError::Invalid(error.to_string()))
    }
}

/// The parts of the page's own URL that decide the session URL (`window.location`'s
/// `protocol`, `host` and `origin`, and its `?token=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLocation {
    /// `"https:"` or `"http:"`.
    pub protocol: String,
    /// `host[:port]`.
    pub host: String,
    /// `scheme://host[:port]`.
    pub origin: String,
    /// The page's `?token=` parameter, decoded.
    pub token: Option<String>,
}

/// The socket to open, and the proxy's origin when it is not the page's own (which the
/// proxy must allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTarget {
    /// The `ws(s)://…/ws?token=…` URL.
    pub url: String,
    /// The proxy's origin (`https://host[:port]`), when it differs from the page's.
    pub foreign_proxy: Option<String>,
    /// The page's origin.
    pub page_origin: String,
}

impl SessionTarget {
    /// The socket URL of a reconnect: [`SessionTarget::url`] plus
    /// `resume=TOKEN` ([`protocol::RESUME_QUERY_PARAM`]) when there is a token to present,
    /// keeping the access token.
    pub fn resuming(&self, token: Option<&str>) -> String {
        match token.filter(|token| !token.is_empty()) {
            Some(token) => {
                let separator = if self.url.contains('?') { '&' } else { '?' };
                format!(
                    "{}{separator}{}={}",
                    self.url,
                    protocol::RESUME_QUERY_PARAM,
                    encode_query_value(token)
                )
            }
            None => self.url.clone(),
        }
    }
}

/// The session socket's URL for a page at `page` with `config`.
pub fn session_target(
    page: &PageLocation,
    config: &BundleConfig,
) -> Result<SessionTarget, ConfigError> {
    let token = token_query(page.token.as_deref());
    let https_page = page.protocol == "https:";
    let Some(proxy_url) = config.proxy_url.as_deref().map(str::trim) else {
        let scheme = if https_page { "wss" } else { "ws" };
        return Ok(SessionTarget {
            url: format!("{scheme}://{}{SESSION_PATH}{token}", page.host),
            foreign_proxy: None,
            page_origin: page.origin.clone(),
        });
    };
    let bad = || ConfigError::BadProxyUrl(proxy_url.to_owned());
    let (scheme, rest) = proxy_url.split_once("://").ok_or_else(bad)?;
    let (socket_scheme, http_scheme) = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => ("wss", "https"),
        "http" | "ws" => ("ws", "http"),
        _ => return Err(bad()),
    };
    if https_page && socket_scheme == "ws" {
        return Err(ConfigError::MixedContent(proxy_url.to_owned()));
    }
    // No query or fragment: the path is a prefix the session path goes under.
    if rest.contains(['?', '#']) {
        return Err(bad());
    }
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains('@') {
        return Err(bad());
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    let origin = format!("{http_scheme}://{}", host.to_ascii_lowercase());
    Ok(SessionTarget {
        url: format!("{socket_scheme}://{host}{prefix}{SESSION_PATH}{token}"),
        foreign_proxy: (origin != page.origin.to_ascii_lowercase()).then_some(origin),
        page_origin: page.origin.clone(),
    })
}

/// `?token=…` for the session URL (a proxy with an access token was opened by a link that
/// carries it), percent-encoded; empty without one.
fn token_query(token: Option<&str>) -> String {
    token
        .filter(|token| !token.is_empty())
        .map(|token| format!("?token={}", encode_query_value(token)))
        .unwrap_or_default()
}

/// Percent-encodes everything but RFC 3986's unreserved characters (as
/// `encodeURIComponent` does, and more strictly).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(origin: &str, token: Option<&str>) -> PageLocation {
        let (scheme, host) = origin.split_once("://").unwrap();
        PageLocation {
            protocol: format!("{scheme}:"),
            host: host.to_owned(),
            origin: origin.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    fn with_proxy(url: &str) -> BundleConfig {
        BundleConfig {
            proxy_url: Some(url.to_owned()),
        }
    }

    #[test]
    fn without_a_proxy_url_the_page_talks_to_its_own_host() {
        let target = session_target(
            &page("http://127.0.0.1:8000", None),
            &BundleConfig::default(),
        );
        assert_eq!(
            target.unwrap(),
            SessionTarget {
                url: "ws://127.0.0.1:8000/ws".into(),
                foreign_proxy: None,
                page_origin: "http://127.0.0.1:8000".into(),
            }
        );
        let secure = session_target(
            &page("https://voice.example.com", Some("t0k")),
            &BundleConfig::default(),
        );
        assert_eq!(secure.unwrap().url, "wss://voice.example.com/ws?token=t0k");
    }

    #[test]
    fn a_proxy_url_is_used_with_the_page_token_and_marked_foreign() {
        let target = session_target(
            &page("https://cdn.example.net", Some("a b&c")),
            &with_proxy("https://Voice-API.example.com/agent/"),
        )
        .unwrap();
        assert_eq!(
            target.url,
            "wss://Voice-API.example.com/agent/ws?token=a%20b%26c"
        );
        assert_eq!(
            target.foreign_proxy.as_deref(),
            Some("https://voice-api.example.com")
        );
        let plain = session_target(
            &page("http://localhost:9000", None),
            &with_proxy("http://127.0.0.1:8000"),
        )
        .unwrap();
        assert_eq!(plain.url, "ws://127.0.0.1:8000/ws");
        assert_eq!(
            plain.foreign_proxy.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        let own = session_target(
            &page("https://voice.example.com", None),
            &with_proxy("wss://voice.example.com"),
        )
        .unwrap();
        assert_eq!(
            own.foreign_proxy, None,
            "the page's own origin is not foreign"
        );
    }

    #[test]
    fn a_reconnect_presents_its_resume_token_beside_the_access_token() {
        let own = session_target(
            &page("http://127.0.0.1:8000", None),
            &BundleConfig::default(),
        )
        .unwrap();
        assert_eq!(
            own.resuming(Some("0a1b")),
            "ws://127.0.0.1:8000/ws?resume=0a1b"
        );
        assert_eq!(own.resuming(None), "ws://127.0.0.1:8000/ws");
        assert_eq!(own.resuming(Some("")), "ws://127.0.0.1:8000/ws");
        let with_token = session_target(
            &page("https://cdn.example.net", Some("t0k")),
            &with_proxy("https://voice.example.com/agent"),
        )
        .unwrap();
        assert_eq!(
            with_token.resuming(Some("a/b+c")),
            "wss://voice.example.com/agent/ws?token=t0k&resume=a%2Fb%2Bc"
        );
    }

    #[test]
    fn unusable_proxy_urls_are_refused_with_the_reason() {
        let http_page = page("http://localhost:9000", None);
        for url in [
            "voice.example.com",
            "ftp://voice.example.com",
            "https://",
            "https://u@h",
            "https://h/?x=1",
        ] {
            assert_eq!(
                session_target(&http_page, &with_proxy(url)),
                Err(ConfigError::BadProxyUrl(url.to_owned())),
                "{url}"
            );
        }
        assert_eq!(
            session_target(
                &page("https://cdn.example.net", None),
                &with_proxy("http://voice.example.com")
            ),
            Err(ConfigError::MixedContent("http://voice.example.com".into()))
        );
    }

    #[test]
    fn config_files_are_read_strictly() {
        assert_eq!(BundleConfig::parse("{}").unwrap(), BundleConfig::default());
        assert_eq!(
            BundleConfig::parse(r#"{"proxy_url":"https://a.example"}"#).unwrap(),
            with_proxy("https://a.example")
        );
        assert!(matches!(
            BundleConfig::parse(r#"{"proxy_ur1":"x"}"#),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            BundleConfig::parse("not json"),
            Err(ConfigError::Invalid(_))
        ));
    }
}
