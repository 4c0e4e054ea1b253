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

/// Whether an upgrade with these headers may open a session. `allowed` holds full origins
/// (`https://app.example.com`), compared without case and trailing slash.
pub(crate) fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/')) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a.trim().trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    // `null` (sandboxed frames, files) and anything else without a host is never ours.
    let Some((_scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    authority.eq_ignore_ascii_case(host) || (is_loopback(authority) && is_loopback(host))
}

/// Whether `authority` (`host` or `host:port`) names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [IPv6]:port
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
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
        ];
        for (origin, host, expected) in cases {
            assert_eq!(
                origin_allowed(origin, host, &listed),
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
