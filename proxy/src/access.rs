//! Who may use the proxy: which web pages may open a voice session, and the optional access
//! token.
//!
//! ## Origins
//!
//! A browser lets any page open a WebSocket to any server, sending the page's `Origin`. Without
//! a check, a page on any site the user visits could open `/ws` on the user's own proxy (even
//! one on `localhost`) and talk to OpenAI on the operator's key. So an upgrade is accepted only
//! from:
//!
//! * the proxy's own pages (the `Origin`'s host and port are the request's `Host`);
//! * origins the operator lists (`ALLOWED_ORIGINS`, for a client served elsewhere or a reverse
//!   proxy that rewrites `Host`);
//! * a loopback page when the proxy itself is reached on loopback (`trunk serve` on another
//!   port during development; a remote site cannot have a loopback origin);
//! * clients that send no `Origin` at all: not web pages, so not this attack.
//!
//! ## Hosts
//!
//! DNS rebinding lets a remote page reach a server on the user's own machine or network under
//! the attacker's host name, so its requests are same-origin to the browser. `/ws` and `/api/*`
//! therefore answer only a `Host` that is a loopback name or one of `PUBLIC_HOSTS`; the Origin
//! check then compares scheme, host and port.
//!
//! ## Access token
//!
//! The origin check keeps other sites' pages out, not other programs. A proxy reachable from
//! the internet sets `ACCESS_TOKEN`: then `/ws` and `/api/*` need it, as `?token=` (the page
//! passes on the one in its own URL, since a browser cannot set headers on a WebSocket) or as
//! `Authorization: Bearer`. The page itself and `/healthz` stay open.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

/// The token of an `Authorization: Bearer <token>` header (scheme in any case).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether a request presenting `bearer` (its `Authorization: Bearer` value) or `query_token`
/// (its `?token=`) may pass when the proxy expects `expected` (`None`: no token required).
pub(crate) fn token_allowed(
    expected: Option<&str>,
    bearer: Option<&str>,
    query_token: Option<&str>,
) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    [bearer, query_token]
        .into_iter()
        .flatten()
        .any(|presented| same_secret(presented.as_bytes(), expected.as_bytes()))
}

/// Compares in time independent of where the inputs differ, so response times do not reveal
/// how much of a guessed token was right.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// The scheme this server is reached by directly: `https` when it serves TLS itself
/// (`TLS_CERT`), else `http` (behind a TLS proxy, the public origin is listed in
/// `ALLOWED_ORIGINS`).
pub(crate) fn own_scheme(serves_tls: bool) -> &'static str {
    if serves_tls { "https" } else { "http" }
}

/// A web origin or a `Host` taken apart: scheme (lowercase), host (lowercase, IPv6 without
/// brackets) and port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` → (host, port), with `default` when no port is given.
fn split_authority(authority: &str, default: u16) -> Option<(String, u16)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None,
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// An origin such as `https://voice.example.com` (a trailing slash tolerated).
fn parse_origin(origin: &str) -> Option<Place> {
    let origin = origin.trim().trim_end_matches('/');
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = split_authority(authority, default_port(&scheme)?)?;
    Some(Place { scheme, host, port })
}

/// Whether an upgrade with these headers may open a session on a server reached by
/// `own_scheme` ([`own_scheme`]). `allowed` holds full origins (`https://app.example.com`).
/// Scheme, host and port are all compared: a page of `http://evil.example:8000` that DNS
/// rebinding pointed at this server matches its `Host` only by name, and that name is refused
/// by [`host_allowed`] first.
pub(crate) fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    allowed: &[String],
    own_scheme: &str,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    // `null` (sandboxed frames, files) and anything else without a host is never ours.
    let Some(origin) = parse_origin(origin) else {
        return false;
    };
    if allowed
        .iter()
        .filter_map(|a| parse_origin(a))
        .any(|a| a == origin)
    {
        return true;
    }
    let Some(own_port) = default_port(own_scheme) else {
        return false;
    };
    let Some((host, port)) = host.and_then(|h| split_authority(h, own_port)) else {
        return false;
    };
    let same_origin = origin.scheme == own_scheme && origin.host == host && origin.port == port;
    same_origin || (is_loopback_host(&origin.host) && is_loopback_host(&host))
}

/// Whether the `Host` a request names is one this server, reached by `own_scheme` (whose
/// default port a `Host` without one means), answers `/ws` and `/api/*` for: a loopback name,
/// or one of `public_hosts` (`name` for any port, `name:port` for one).
pub(crate) fn host_allowed(host: Option<&str>, public_hosts: &[String], own_scheme: &str) -> bool {
    let Some(own_port) = default_port(own_scheme) else {
        return false;
    };
    let Some((name, port)) = host.and_then(|h| split_authority(h, own_port)) else {
        return false;
    };
    is_loopback_host(&name)
        || public_hosts.iter().any(|listed| {
            let listed = listed.trim();
            let any_port =
                !listed.contains(':') || (listed.starts_with('[') && listed.ends_with(']'));
            match split_authority(listed, own_port) {
                Some((listed_name, listed_port)) => {
                    listed_name == name && (any_port || listed_port == port)
                }
                None => false,
            }
        })
}

/// Where a plain-HTTP request for `host` is redirected on this server's HTTPS port: the
/// same name with `https_port` (left out when it is HTTPS's default), if that is a host this
/// server answers ([`host_allowed`]); `None` for any other, so the redirect never sends a
/// browser to a name of someone else's.
pub(crate) fn https_authority(
    host: &str,
    https_port: u16,
    public_hosts: &[String],
) -> Option<String> {
    let (name, _) = split_authority(host, 0)?;
    let name = if name.contains(':') {
        format!("[{name}]")
    } else {
        name
    };
    let authority = if Some(https_port) == default_port("https") {
        name
    } else {
        format!("{name}:{https_port}")
    };
    host_allowed(Some(&authority), public_hosts, "https").then_some(authority)
}

/// Whether `authority` (`host` or `host:port`) names this machine.
#[cfg(test)]
fn is_loopback(authority: &str) -> bool {
    split_authority(authority, 0).is_some_and(|(host, _)| is_loopback_host(&host))
}

/// Whether a host name (lowercase, no brackets) names this machine.
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_by_origin_host_and_allowlist() {
        let listed = vec!["https://voice.example.com/".to_owned()];
        let cases = [
            // (origin, host, allowed?)
            (None, Some("voice.internal:8000"), true),
            (Some("http://127.0.0.1:8000"), Some("127.0.0.1:8000"), true),
            (
                Some("https://Voice.Example.com"),
                Some("voice.example.com"),
                true,
            ),
            (
                Some("https://voice.example.com"),
                Some("10.0.0.5:8000"),
                true,
            ),
            (Some("http://localhost:8080"), Some("127.0.0.1:8000"), true),
            (Some("http://[::1]:8080"), Some("localhost:8000"), true),
            (Some("https://evil.example"), Some("127.0.0.1:8000"), false),
            (
                Some("https://evil.example"),
                Some("voice.example.com"),
                false,
            ),
            (
                Some("http://127.0.0.1:8080"),
                Some("voice.example.com"),
                false,
            ),
            (
                Some("https://voice.example.com.evil.example"),
                Some("x"),
                false,
            ),
            (Some("null"), Some("127.0.0.1:8000"), false),
            (Some("http://127.0.0.1:8000"), None, false),
            // Same host and port, another scheme: not this server's page.
            (Some("https://10.0.0.5:8000"), Some("10.0.0.5:8000"), false),
            (Some("http://10.0.0.5:8000"), Some("10.0.0.5:8000"), true),
            // Default ports are the same origin written two ways.
            (Some("http://voice.lan"), Some("voice.lan:80"), true),
            (Some("http://voice.lan:8000"), Some("voice.lan"), false),
            // Listed origins match with their scheme and port too.
            (Some("http://voice.example.com"), Some("x"), false),
            (Some("https://voice.example.com:444"), Some("x"), false),
        ];
        for (origin, host, expected) in cases {
            assert_eq!(
                origin_allowed(origin, host, &listed, "http"),
                expected,
                "origin {origin:?}, host {host:?}"
            );
        }
    }

    #[test]
    fn the_token_is_needed_only_when_set_and_may_come_either_way() {
        assert!(token_allowed(None, None, None));
        assert!(!token_allowed(Some("t0k"), None, None));
        assert!(token_allowed(Some("t0k"), Some("t0k"), None));
        assert!(token_allowed(Some("t0k"), None, Some("t0k")));
        assert!(token_allowed(Some("t0k"), Some("wrong"), Some("t0k")));
        assert!(!token_allowed(Some("t0k"), Some("t0"), Some("t0kk")));
        assert!(!token_allowed(Some("t0k"), Some(""), None));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "bearer sk-1".parse().expect("valid header"));
        assert_eq!(bearer(&headers), Some("sk-1"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().expect("valid header"));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn only_loopback_and_public_hosts_are_answered() {
        let public = vec!["voice.example.com".to_owned(), "10.0.0.5:8000".to_owned()];
        for (host, expected) in [
            (Some("127.0.0.1:8000"), true),
            (Some("localhost:8000"), true),
            (Some("[::1]:8000"), true),
            (Some("Voice.Example.com"), true),
            (Some("voice.example.com:8443"), true),
            (Some("10.0.0.5:8000"), true),
            (Some("10.0.0.5:9000"), false),
            // DNS rebinding: a name of the attacker's that resolves here.
            (Some("evil.example:8000"), false),
            (Some("localhost.evil.example"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(host_allowed(host, &public, "http"), expected, "{host:?}");
        }
    }

    #[test]
    fn redirects_keep_the_name_take_the_https_port_and_only_for_hosts_served() {
        let public = vec!["voice.example.com".to_owned()];
        for (host, port, expected) in [
            ("voice.example.com", 443, Some("voice.example.com")),
            ("Voice.Example.com:80", 443, Some("voice.example.com")),
            (
                "voice.example.com:8080",
                8443,
                Some("voice.example.com:8443"),
            ),
            ("127.0.0.1:8080", 8443, Some("127.0.0.1:8443")),
            ("[::1]:8080", 443, Some("[::1]")),
            ("evil.example", 443, None),
            ("voice.example.com@evil.example", 443, None),
            ("", 443, None),
        ] {
            assert_eq!(
                https_authority(host, port, &public).as_deref(),
                expected,
                "{host}"
            );
        }
    }

    #[test]
    fn serving_tls_its_own_pages_are_https_and_a_bare_host_means_port_443() {
        let https = own_scheme(true);
        let host = Some("voice.example.com");
        assert!(origin_allowed(
            Some("https://voice.example.com"),
            host,
            &[],
            https
        ));
        assert!(origin_allowed(
            Some("https://voice.example.com:443"),
            host,
            &[],
            https
        ));
        assert!(!origin_allowed(
            Some("http://voice.example.com"),
            host,
            &[],
            https
        ));
        assert!(!origin_allowed(
            Some("https://voice.example.com"),
            host,
            &[],
            own_scheme(false)
        ));
        let public = vec!["voice.example.com:443".to_owned()];
        assert!(host_allowed(host, &public, https));
        assert!(!host_allowed(host, &public, "http"));
        assert!(!host_allowed(
            Some("voice.example.com:8443"),
            &public,
            https
        ));
    }

    #[test]
    fn loopback_names() {
        for yes in [
            "localhost",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8080",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "example.com",
            "10.0.0.1:80",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
