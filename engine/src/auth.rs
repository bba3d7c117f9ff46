//! Client tokens: HS256 JWTs checked at the WebSocket upgrade (`docs/security.md`).
//!
//! Contract:
//! - With a secret configured, every `GET /ws` upgrade must carry a token, as
//!   `Authorization: Bearer <jwt>` or `?token=<jwt>` on the URL (the header wins when both
//!   are there). A missing, malformed, badly signed, not-yet-valid or expired token is
//!   answered `401` with a one-line reason; nothing else is answered differently.
//! - Claims: `exp` (required, seconds since the Unix epoch, no leeway): the connection is
//!   closed with `1008` when it passes (the worker's liveness sweep, `worker::liveness`);
//!   `nbf` (optional, checked); `symbols` (optional): exact symbols (`sim:BTC-USD`) or a
//!   whole venue (`sim:*`); without it every symbol is allowed. A token with an `aud`
//!   claim is refused: this engine names no audience, and RFC 7519 §4.1.3 says a
//!   recipient that is not in `aud` must reject the token.
//! - Checking a token allocates (the claims, the scope) and takes a few microseconds of
//!   HMAC; it runs once per upgrade on the worker that accepted it, never on the data
//!   path. [`Scope::allows`] is called once per symbol per subscribe.

use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

/// Why an upgrade's token was refused (the reason is the body of the `401`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Neither `Authorization: Bearer` nor `?token=`.
    #[error("missing token: send Authorization: Bearer <jwt> or /ws?token=<jwt>")]
    Missing,
    /// Not a JWT, not JSON, a claim of the wrong type, or a bad `symbols` entry.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not match the engine's secret.
    #[error("bad token signature")]
    BadSignature,
    /// Signed with another algorithm than HS256.
    #[error("token algorithm is not HS256")]
    Algorithm,
    /// No `exp` claim.
    #[error("token has no exp claim")]
    NoExpiry,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is still to come.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// An `aud` claim (this engine is in no audience).
    #[error("token has an aud claim; this engine accepts none")]
    Audience,
}

/// Which symbols a token allows: exact names and whole venues.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    exact: Vec<String>,
    /// Venue prefixes including the colon (`sim:`).
    venues: Vec<String>,
}

impl Scope {
    /// A scope from the `symbols` claim: `venue:NATIVE` or `venue:*` each.
    pub fn parse(entries: &[String]) -> Result<Scope, AuthError> {
        let mut scope = Scope::default();
        for (i, entry) in entries.iter().enumerate() {
            let Some((venue, native)) = entry.split_once(':') else {
                return Err(AuthError::Malformed(format!(
                    "symbols[{i}] = {entry:?}: use venue:SYMBOL or venue:*"
                )));
            };
            if venue.is_empty() || native.is_empty() {
                return Err(AuthError::Malformed(format!(
                    "symbols[{i}] = {entry:?}: use venue:SYMBOL or venue:*"
                )));
            }
            if native == "*" {
                scope.venues.push(format!("{venue}:"));
            } else {
                scope.exact.push(entry.clone());
            }
        }
        Ok(scope)
    }

    /// Whether `symbol` (as the engine names it, `venue:NATIVE`) is allowed.
    pub fn allows(&self, symbol: &str) -> bool {
        self.exact.iter().any(|s| s == symbol)
            || self.venues.iter().any(|v| symbol.starts_with(v.as_str()))
    }
}

/// What an accepted token grants its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `exp`: when the connection is closed, seconds since the Unix epoch.
    pub expires_at_s: u64,
    /// `symbols`; `None` allows every symbol.
    pub scope: Option<Scope>,
}

impl Grant {
    /// Whether the grant allows subscribing to `symbol`.
    pub fn allows(&self, symbol: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.allows(symbol))
    }
}

#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing `exp` is reported as such (the crate parses the
    // claims before it checks the required ones); `verify` requires it.
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    symbols: Option<Vec<String>>,
    // Read here only so that a wrong type is malformed: the crate checks `nbf` itself but
    // skips one it cannot read as a number.
    #[serde(default)]
    #[allow(dead_code)]
    nbf: Option<u64>,
}

/// Checks tokens against the engine's secret.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator(HS256)")
    }
}

impl Authenticator {
    /// An authenticator for HS256 tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Authenticator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks one token.
    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Algorithm
                }
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::MissingRequiredClaim(_) => AuthError::NoExpiry,
                ErrorKind::InvalidAudience => AuthError::Audience,
                ErrorKind::Json(e) => AuthError::Malformed(format!("header or claims: {e}")),
                ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                    AuthError::Malformed("not a JWT (header.claims.signature, base64url)".into())
                }
                other => AuthError::Malformed(format!("{other:?}")),
            },
        )?;
        let scope = data
            .claims
            .symbols
            .as_deref()
            .map(Scope::parse)
            .transpose()?;
        let expires_at_s = data.claims.exp.ok_or(AuthError::NoExpiry)?;
        // RFC 7519 §4.1.4: valid only *before* `exp`; the crate lets `exp == now` pass.
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if expires_at_s <= now_s {
            return Err(AuthError::Expired);
        }
        Ok(Grant {
            expires_at_s,
            scope,
        })
    }

    /// Checks the token of an upgrade request (see the module doc for where it is).
    pub fn check<B>(&self, req: &hyper::Request<B>) -> Result<Grant, AuthError> {
        let token = token_of(req).ok_or(AuthError::Missing)?;
        self.verify(token)
    }
}

/// The request's token: `Authorization: Bearer`, else `?token=` (taken as is: a JWT is
/// base64url and dots, which need no percent-encoding).
pub fn token_of<B>(req: &hyper::Request<B>) -> Option<&str> {
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    bearer.or_else(|| {
        req.uri()
            .query()?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .filter(|t| !t.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(secret: &[u8], claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn tokens_are_refused_for_each_documented_reason() {
        let auth = Authenticator::new(b"s3cret");
        let exp = now_s() + 60;
        let good = auth.verify(&token(b"s3cret", json!({ "exp": exp })));
        assert_eq!(
            good,
            Ok(Grant {
                expires_at_s: exp,
                scope: None
            })
        );
        let cases = [
            (
                token(b"other", json!({ "exp": exp })),
                AuthError::BadSignature,
            ),
            (
                token(b"s3cret", json!({ "exp": now_s() - 1 })),
                AuthError::Expired,
            ),
            (
                token(b"s3cret", json!({ "exp": now_s() })),
                AuthError::Expired,
            ),
            (token(b"s3cret", json!({ "sub": "x" })), AuthError::NoExpiry),
            (
                token(b"s3cret", json!({ "exp": exp, "nbf": exp })),
                AuthError::NotYetValid,
            ),
            (
                token(b"s3cret", json!({ "exp": exp, "aud": "x" })),
                AuthError::Audience,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(auth.verify(&t), Err(want.clone()), "{want}");
        }
        for bad in ["", "abc", "a.b.c"] {
            assert!(
                matches!(auth.verify(bad), Err(AuthError::Malformed(_))),
                "{bad:?}"
            );
        }
        for wrong_type in [
            json!({ "exp": exp, "symbols": "sim:*" }),
            json!({ "exp": exp, "nbf": "soon" }),
        ] {
            assert!(
                matches!(
                    auth.verify(&token(b"s3cret", wrong_type.clone())),
                    Err(AuthError::Malformed(_))
                ),
                "{wrong_type}"
            );
        }
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({ "exp": exp }),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(auth.verify(&hs512), Err(AuthError::Algorithm));
        // An unsigned token (`alg: none`, RFC 7519 §6) is never accepted.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjk5OTk5OTk5OTl9.";
        assert!(matches!(auth.verify(none), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn scope_allows_exact_symbols_and_whole_venues_only() {
        let scope = Scope::parse(&["sim:BTC-USD".into(), "kraken:*".into()]).unwrap();
        assert!(scope.allows("sim:BTC-USD"));
        assert!(scope.allows("kraken:BTC/USD"));
        assert!(!scope.allows("sim:ETH-USD"));
        assert!(!scope.allows("sim:BTC-USDT"));
        assert!(!scope.allows("krakenx:BTC/USD"));
        for bad in ["*", "sim", ":BTC", "sim:"] {
            assert!(Scope::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(!Scope::parse(&[]).unwrap().allows("sim:BTC-USD"));
    }

    #[test]
    fn the_header_wins_over_the_query() {
        let req = hyper::Request::builder()
            .uri("/ws?x=1&token=fromquery")
            .header("authorization", "Bearer fromheader")
            .body(())
            .unwrap();
        assert_eq!(token_of(&req), Some("fromheader"));
        let req = hyper::Request::builder()
            .uri("/ws?x=1&token=fromquery")
            .body(())
            .unwrap();
        assert_eq!(token_of(&req), Some("fromquery"));
        let req = hyper::Request::builder()
            .uri("/ws")
            .header("authorization", "Basic abc")
            .body(())
            .unwrap();
        assert_eq!(token_of(&req), None);
    }
}
