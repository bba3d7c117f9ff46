//! The server side of the WebSocket opening handshake (RFC 6455 §4.2) on a hyper
//! request: checks the upgrade headers, answers `101 Switching Protocols` with the
//! `Sec-WebSocket-Accept` digest, and hands back hyper's upgrade future.
//!
//! Written here rather than taken from fastwebsockets because its upgrade wraps the
//! connection in a reader with an 8 KiB buffer of its own, which a worker that reads all
//! its sockets into one shared buffer does not want per connection. Allocates the
//! response only; runs on the worker thread.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 §1.3, appended to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether a browser page from the request's `Origin` may open a WebSocket here
/// (cross-site WebSocket hijacking): no `Origin` (not a browser), a loopback origin, the
/// engine's own host (same origin, from `Host`), or one listed in `allowed` (`*` for any).
pub fn origin_allowed<B>(req: &Request<B>, allowed: &[String]) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = host_of(authority);
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        return true;
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|own| authority.eq_ignore_ascii_case(own))
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Why an upgrade request is refused, with the HTTP answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a GET.
    #[error("a WebSocket upgrade is a GET request")]
    NotGet,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported Sec-WebSocket-Version: use 13")]
    Version,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    #[error("missing or malformed Sec-WebSocket-Key")]
    Key,
    /// A browser page from another origin (see [`origin_allowed`]).
    #[error("this Origin may not open a WebSocket here (allowed_origins)")]
    Origin,
}

impl HandshakeError {
    /// The HTTP response for the refusal (426 with the supported version, else 400).
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(format!("{self}\n"))));
        *resp.status_mut() = match self {
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::Origin => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if *self == HandshakeError::Version {
            h.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        resp
    }
}

/// Whether the request's `Host` is one of `server_names` (case-insensitive, port
/// ignored) or a loopback host; any host passes when `server_names` is empty. A request
/// without a `Host` fails the check when names are configured (HTTP/1.1 requires one).
pub fn host_allowed<B>(req: &Request<B>, server_names: &[String]) -> bool {
    if server_names.is_empty() {
        return true;
    }
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    matches!(name, "127.0.0.1" | "::1" | "localhost")
        || server_names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether a header holds `token` in its comma-separated list (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether the request asks for a WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), header::CONNECTION, "upgrade")
        && has_token(req.headers(), header::UPGRADE, "websocket")
}

/// The `Sec-WebSocket-Accept` value for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Accepts an upgrade request: the `101` response to send, and the future that yields
/// the connection once hyper has sent it. `allowed_origins` as in [`origin_allowed`].
pub fn accept<B>(
    req: &mut Request<B>,
    allowed_origins: &[String],
) -> Result<(Response<Full<Bytes>>, OnUpgrade), HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if !origin_allowed(req, allowed_origins) {
        return Err(HandshakeError::Origin);
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Err(HandshakeError::Version);
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes())
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .is_ok_and(|raw| raw.len() == 16)
        })
        .ok_or(HandshakeError::Key)?;
    let accept = accept_key(key);
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok((resp, hyper::upgrade::on(req)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn origins_other_than_loopback_same_host_or_listed_are_refused() {
        let with = |origin: &str| request(&[("host", "md.example:8080"), ("origin", origin)]);
        let none: &[String] = &[];
        let listed = ["https://dash.example".to_owned()];
        assert!(
            origin_allowed(&request(&[("host", "x")]), none),
            "no Origin: not a browser"
        );
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "http://[::1]:9",
            "http://md.example:8080",
        ] {
            assert!(origin_allowed(&with(ok), none), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://md.example:9090",
            "null",
            "http://localhost.evil.example",
        ] {
            assert!(!origin_allowed(&with(bad), none), "{bad}");
        }
        assert!(origin_allowed(&with("https://dash.example"), &listed));
        assert!(origin_allowed(
            &with("https://evil.example"),
            &["*".to_owned()]
        ));
        let mut full = request(&GOOD);
        full.headers_mut().insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let refused = accept(&mut full, none).unwrap_err();
        assert_eq!(refused.response().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_good_request_is_switched_and_bad_ones_are_refused() {
        let mut req = request(&GOOD);
        assert!(is_upgrade_request(&req));
        let (resp, _) = accept(&mut req, &[]).unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut old = request(&[GOOD[0], GOOD[1], ("sec-websocket-version", "8"), GOOD[3]]);
        let err = accept(&mut old, &[]).unwrap_err();
        assert_eq!(err, HandshakeError::Version);
        assert_eq!(err.response().status(), StatusCode::UPGRADE_REQUIRED);
        let mut short = request(&[GOOD[0], GOOD[1], GOOD[2], ("sec-websocket-key", "c2hvcnQ=")]);
        assert_eq!(accept(&mut short, &[]).unwrap_err(), HandshakeError::Key);
        assert!(
            !is_upgrade_request(&request(&[GOOD[1]])),
            "no Connection: upgrade"
        );
    }
}
