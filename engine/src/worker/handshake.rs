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

use crate::protocol::version::{self, Version};

/// The GUID of RFC 6455 §1.3, appended to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether a browser page from the request's `Origin` may open a WebSocket here
/// (cross-site WebSocket hijacking): no `Origin` (not a browser), a loopback origin, the
/// engine's own origin (same scheme, host and port as the request's `Host`; `tls` says
/// whether this connection is `https`), or one listed in `allowed` (`*` for any). Two
/// `Origin` headers, or one that is not `http(s)://host[:port]`, are refused.
pub fn origin_allowed<B>(req: &Request<B>, allowed: &[String], tls: bool) -> bool {
    let mut origins = req.headers().get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return true;
    };
    if origins.next().is_some() {
        return false;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let (https, authority) = if let Some(a) = origin.strip_prefix("http://") {
        (false, a)
    } else if let Some(a) = origin.strip_prefix("https://") {
        (true, a)
    } else {
        return false;
    };
    let Some(from) = Authority::parse(authority) else {
        return false;
    };
    if from.host.is_loopback() {
        return true;
    }
    let Some(own) = single_host(req.headers()).ok().flatten() else {
        return false;
    };
    let default_port = if https { 443 } else { 80 };
    https == tls
        && from.host.same(&own.host)
        && from.port.unwrap_or(default_port) == own.port.unwrap_or(default_port)
}

/// A host as written in `Host`, a request target or an `Origin`.
#[derive(Debug, PartialEq, Eq)]
enum Host<'a> {
    /// A DNS name or an IPv4 literal (letters, digits, `-` and `.`).
    Name(&'a str),
    /// A bracketed IPv6 literal.
    V6(std::net::Ipv6Addr),
}

impl Host<'_> {
    /// `localhost`, or a loopback IP literal (127.0.0.0/8, `[::1]`): names a rebinding
    /// page cannot take, since its own DNS name is what the browser puts in `Host`.
    fn is_loopback(&self) -> bool {
        match self {
            Host::Name(n) => {
                n.eq_ignore_ascii_case("localhost")
                    || n.parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::V6(ip) => ip.is_loopback(),
        }
    }

    fn same(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::V6(a), Host::V6(b)) => a == b,
            _ => false,
        }
    }

    /// Whether it is one of `names` (case-insensitive; an IPv6 name with or without
    /// brackets).
    fn named(&self, names: &[String]) -> bool {
        names.iter().any(|n| match self {
            Host::Name(h) => n.eq_ignore_ascii_case(h),
            Host::V6(ip) => n
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|n| n == *ip),
        })
    }
}

/// `host[:port]`, parsed strictly: a name of letters, digits, `-` and `.`, or an IPv6
/// literal in brackets, then nothing or `:` and a port number.
#[derive(Debug, PartialEq, Eq)]
struct Authority<'a> {
    host: Host<'a>,
    port: Option<u16>,
}

impl<'a> Authority<'a> {
    fn parse(s: &'a str) -> Option<Authority<'a>> {
        let (host, rest) = match s.strip_prefix('[') {
            Some(v6) => {
                let (inner, rest) = v6.split_once(']')?;
                (Host::V6(inner.parse().ok()?), rest)
            }
            None => {
                let end = s.find(':').unwrap_or(s.len());
                let name = &s[..end];
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !valid {
                    return None;
                }
                (Host::Name(name), &s[end..])
            }
        };
        let port = match rest {
            "" => None,
            _ => {
                let digits = rest.strip_prefix(':')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(digits.parse().ok()?)
            }
        };
        Some(Authority { host, port })
    }
}

/// The request's one `Host`, parsed; `Ok(None)` without one, `Err` for two or a
/// malformed one.
fn single_host(headers: &HeaderMap) -> Result<Option<Authority<'_>>, HostRefusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return Ok(None);
    };
    if hosts.next().is_some() {
        return Err(HostRefusal::Malformed);
    }
    let host = host.to_str().map_err(|_| HostRefusal::Malformed)?;
    Authority::parse(host)
        .map(Some)
        .ok_or(HostRefusal::Malformed)
}

/// Why a request is refused for the host it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    /// Two `Host` headers, or a `Host` or request target that is not `host[:port]`:
    /// `400` (RFC 9112 §3.2).
    #[error("malformed or repeated Host header, or a malformed request target")]
    Malformed,
    /// A host this engine does not answer to: `421` (DNS rebinding).
    #[error("this engine does not serve that host name (set server_names to the names it serves)")]
    Misdirected,
}

/// Checks the host a request names, in `Host` and in an absolute-form target
/// (`GET http://host/path`), which must each pass. With `server_names`, a host passes
/// when it is listed or loopback; without, when `loopback_only` (the engine listens on
/// a loopback address) it passes only when loopback, else any host passes. A request
/// naming no host fails whenever hosts are checked (HTTP/1.1 requires `Host`).
pub fn check_host<B>(
    req: &Request<B>,
    server_names: &[String],
    loopback_only: bool,
) -> Result<(), HostRefusal> {
    let host = single_host(req.headers())?;
    let target = match req.uri().authority() {
        Some(a) => Some(Authority::parse(a.as_str()).ok_or(HostRefusal::Malformed)?),
        None => None,
    };
    if server_names.is_empty() && !loopback_only {
        return Ok(());
    }
    let passes = |a: &Authority<'_>| a.host.is_loopback() || a.host.named(server_names);
    let named: Vec<&Authority<'_>> = host.iter().chain(target.iter()).collect();
    if !named.is_empty() && named.into_iter().all(passes) {
        Ok(())
    } else {
        Err(HostRefusal::Misdirected)
    }
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
    /// Not HTTP/1.1: the upgrade mechanism RFC 6455 uses is HTTP/1.1's.
    #[error("a WebSocket upgrade needs HTTP/1.1")]
    HttpVersion,
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

/// Accepts an upgrade request: the `101` response to send, the future that yields the
/// connection once hyper has sent it, and the protocol version chosen: the first of
/// `subprotocols` that the client offered in `Sec-WebSocket-Protocol`, answered in the
/// response, else version 1 with no subprotocol answered. `allowed_origins` and `tls` as
/// in [`origin_allowed`].
pub fn accept<B>(
    req: &mut Request<B>,
    allowed_origins: &[String],
    tls: bool,
    subprotocols: &[(&'static str, Version)],
) -> Result<(Response<Full<Bytes>>, OnUpgrade, Version), HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if req.version() != hyper::Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    if !origin_allowed(req, allowed_origins, tls) {
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
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>();
    let version = match version::choose(offered.iter().copied(), subprotocols) {
        Some((name, version)) => {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(name),
            );
            version
        }
        None => Version::V1,
    };
    Ok((resp, hyper::upgrade::on(req), version))
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
            origin_allowed(&request(&[("host", "x")]), none, false),
            "no Origin: not a browser"
        );
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "http://[::1]:9",
            "http://md.example:8080",
        ] {
            assert!(origin_allowed(&with(ok), none, false), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "http://md.example:9090",
            "null",
            "http://localhost.evil.example",
            "http://[::1]evil.example",
            "http://localhost:abc",
            "http://[md.example]",
            // Same host and port, another scheme: another origin.
            "https://md.example:8080",
        ] {
            assert!(!origin_allowed(&with(bad), none, false), "{bad}");
        }
        assert!(origin_allowed(
            &with("https://dash.example"),
            &listed,
            false
        ));
        assert!(origin_allowed(
            &with("https://evil.example"),
            &["*".to_owned()],
            false
        ));
        let twice = request(&[
            ("host", "md.example:8080"),
            ("origin", "http://localhost"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!origin_allowed(&twice, none, false), "two Origins");
        let tls = request(&[("host", "md.example"), ("origin", "https://md.example:443")]);
        assert!(origin_allowed(&tls, none, true), "same origin over TLS");
        assert!(
            !origin_allowed(&tls, none, false),
            "https page, http engine"
        );
        let mut full = request(&GOOD);
        full.headers_mut().insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let refused = accept(&mut full, none, false, &[]).unwrap_err();
        assert_eq!(refused.response().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_subprotocol_is_answered_only_when_offered_and_accepted() {
        let v2 = [(version::SUBPROTOCOL_V2, Version::V2)];
        let answered = |offers: &[&'static str], accepted: &[(&'static str, Version)]| {
            let mut req = request(&GOOD);
            for offer in offers {
                req.headers_mut().append(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(offer),
                );
            }
            let (resp, _, version) = accept(&mut req, &[], false, accepted).unwrap();
            let header = resp
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.to_str().unwrap().to_owned());
            (header, version)
        };
        assert_eq!(answered(&[], &v2), (None, Version::V1));
        assert_eq!(
            answered(&["chat, tickwire.v2"], &v2),
            (Some("tickwire.v2".to_owned()), Version::V2)
        );
        assert_eq!(
            answered(&["tickwire.v2.bin", " tickwire.v2 "], &v2),
            (Some("tickwire.v2".to_owned()), Version::V2)
        );
        assert_eq!(answered(&["tickwire.v2.bin"], &v2), (None, Version::V1));
        assert_eq!(answered(&["tickwire.v2"], &[]), (None, Version::V1));
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
        let (resp, _, _) = accept(&mut req, &[], false, &[]).unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut old = request(&[GOOD[0], GOOD[1], ("sec-websocket-version", "8"), GOOD[3]]);
        let err = accept(&mut old, &[], false, &[]).unwrap_err();
        assert_eq!(err, HandshakeError::Version);
        assert_eq!(err.response().status(), StatusCode::UPGRADE_REQUIRED);
        let mut short = request(&[GOOD[0], GOOD[1], GOOD[2], ("sec-websocket-key", "c2hvcnQ=")]);
        assert_eq!(
            accept(&mut short, &[], false, &[]).unwrap_err(),
            HandshakeError::Key
        );
        let mut http10 = request(&GOOD);
        *http10.version_mut() = hyper::Version::HTTP_10;
        let err = accept(&mut http10, &[], false, &[]).unwrap_err();
        assert_eq!(err.response().status(), StatusCode::BAD_REQUEST);
        assert!(
            !is_upgrade_request(&request(&[GOOD[1]])),
            "no Connection: upgrade"
        );
    }

    #[test]
    fn hosts_are_parsed_strictly_and_checked_in_host_and_an_absolute_target() {
        use HostRefusal::{Malformed, Misdirected};
        let names = ["md.example".to_owned()];
        let check = |target: &str, hosts: &[&str], names: &[String], loopback_only: bool| {
            let mut b = Request::builder().method("GET").uri(target);
            for h in hosts {
                b = b.header("host", *h);
            }
            check_host(&b.body(()).unwrap(), names, loopback_only)
        };
        let none: &[String] = &[];
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [String],
            bool,
            Result<(), HostRefusal>,
        );
        let cases: &[Case<'_>] = &[
            // Loopback listen, no names: loopback host names only.
            ("/", &["localhost:8080"], none, true, Ok(())),
            ("/", &["127.0.0.1"], none, true, Ok(())),
            ("/", &["[::1]:8080"], none, true, Ok(())),
            ("/", &["LOCALHOST"], none, true, Ok(())),
            ("/", &["evil.example:8080"], none, true, Err(Misdirected)),
            (
                "/",
                &["localhost.evil.example"],
                none,
                true,
                Err(Misdirected),
            ),
            ("/", &[], none, true, Err(Misdirected)),
            // Another listen address, no names: anything well formed.
            ("/", &["evil.example"], none, false, Ok(())),
            ("/", &[], none, false, Ok(())),
            // Names configured.
            ("/", &["MD.example:1"], &names, false, Ok(())),
            ("/", &["evil.example"], &names, false, Err(Misdirected)),
            ("/", &["[::1]"], &names, false, Ok(())),
            (
                "http://evil.example/stats",
                &["md.example"],
                &names,
                false,
                Err(Misdirected),
            ),
            (
                "http://evil.example/stats",
                &["localhost"],
                none,
                true,
                Err(Misdirected),
            ),
            (
                "http://md.example/stats",
                &["md.example"],
                &names,
                false,
                Ok(()),
            ),
            // Malformed or repeated, whatever the names.
            (
                "/",
                &["md.example", "evil.example"],
                &names,
                false,
                Err(Malformed),
            ),
            ("/", &["a", "b"], none, false, Err(Malformed)),
            ("/", &["[md.example]"], &names, false, Err(Malformed)),
            ("/", &["[::1]evil.example"], none, true, Err(Malformed)),
            ("/", &["localhost:abc"], none, true, Err(Malformed)),
            ("/", &["localhost:99999"], none, true, Err(Malformed)),
            ("/", &["user@localhost"], none, true, Err(Malformed)),
        ];
        for (target, hosts, names, loopback_only, want) in cases {
            assert_eq!(
                check(target, hosts, names, *loopback_only),
                *want,
                "{target} {hosts:?} {names:?} {loopback_only}"
            );
        }
    }
}
