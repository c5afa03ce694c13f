//! Session tokens (JWT): where a token is found in a request (`extract`),
//! the keys that verify it (`keys`) and the verification itself (`jwt`).
//!
//! Invariants:
//! - A token, a secret or a claim value never appears in a log line, an error
//!   message or `Debug` output. [`AuthError`] messages are fixed text (a
//!   claim *name* from the configuration at most); [`Claims`] `Debug` prints
//!   claim names only; [`KeySet`] `Debug` prints no key material.
//! - Verification never does I/O: keys are loaded when the configuration is
//!   loaded, or fetched by `crate::jwks` in the background (and, for an
//!   unknown `kid`, by one rate-limited single-flight refetch outside `jwt`); header
//!   parameters that point at keys (`jku`, `x5u`, `jwk`, `x5c`) are ignored.
//! - A verified token is cached (`cache`) under a hash of the token, never
//!   past its `exp`, and re-verified when the key that verified it left the
//!   issuer's keys or the issuer's checks changed.
//! - `alg: none` (any casing), an algorithm not on the issuer's allow-list and
//!   an algorithm outside the key's family (HS/RS confusion) are refused
//!   before any cryptography runs.
//! - This module depends on no other channelgate module but
//!   [`crate::secret`] and [`crate::reason`], does no I/O and reads no clock
//!   (the caller passes [`Now`]); remote key sets are behind
//!   [`RemoteKeySet`], implemented by `crate::jwks`. `src/tidy.rs` checks
//!   that it names neither tokio nor hyper nor the server's modules.

mod cache;
mod extract;
mod jwt;
mod keys;

#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::reason::Reason;

pub use cache::{Authenticator, CacheSettings, Now, Session, TokenCache};
pub use extract::{TokenOrigin, TokenSource, extract_token};
pub use jwt::{IssuerSettings, Verified, Verifier};
pub use keys::{
    HmacKeys, JwksKey, JwksKeys, KeyError, KeyFingerprint, KeySet, PemKey, PublicKey, RemoteKeySet,
    parse_algorithm,
};

/// Verified claims of a session token: the payload's JSON text (a JSON
/// object whose members are all distinct), and the map of its members,
/// built on first use. The request path reads the text once, into the
/// policy's value ([`Claims::json`]); the map is for tools and tests.
///
/// `Debug` prints the claim names only, never their values.
#[derive(Clone)]
pub struct Claims {
    json: Box<str>,
    /// Where the members are in `json`, found by the check that read it.
    spans: Option<Box<[MemberSpan]>>,
    map: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>>,
}

/// Where one member of a claims object is in its JSON text: the name
/// (between its quotes, without escapes) and the value's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpan {
    /// The member's name.
    pub name: std::ops::Range<usize>,
    /// The member's value, as JSON text.
    pub value: std::ops::Range<usize>,
}

impl Claims {
    /// Wraps a claims object.
    pub fn new(map: serde_json::Map<String, serde_json::Value>) -> Self {
        let json = serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned()).into_boxed_str();
        Self { json, spans: None, map: std::sync::OnceLock::from(map) }
    }

    /// Claims from a payload already checked to be a JSON object, with its
    /// members' positions when the check found them.
    pub(crate) fn from_checked_json(json: String, spans: Option<Box<[MemberSpan]>>) -> Self {
        Self { json: json.into_boxed_str(), spans, map: std::sync::OnceLock::new() }
    }

    /// The payload's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Where each member is in [`Claims::json`], in payload order, when the
    /// verification found it (member names without escapes).
    pub fn member_spans(&self) -> Option<&[MemberSpan]> {
        self.spans.as_deref()
    }

    /// All claims, in the order of the token's payload.
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        // The text was checked when the token was parsed: this cannot fail.
        self.map.get_or_init(|| serde_json::from_str(&self.json).unwrap_or_default())
    }

    /// The `sub` claim, when it is a string.
    pub fn sub(&self) -> Option<&str> {
        self.as_map().get("sub").and_then(serde_json::Value::as_str)
    }

    /// The `exp` claim in unix seconds, when it is a non-negative number (a
    /// fractional `exp` is rounded down).
    pub fn exp(&self) -> Option<u64> {
        self.as_map().get("exp").and_then(unix_seconds)
    }
}

/// A NumericDate in whole unix seconds, when it is a non-negative number (a
/// fractional value is rounded down).
fn unix_seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => number_seconds(n),
        _ => None,
    }
}

fn number_seconds(n: &serde_json::Number) -> Option<u64> {
    if let Some(secs) = n.as_u64() {
        return Some(secs);
    }
    let secs = n.as_f64()?;
    // `as` saturates at u64::MAX for huge values; the range check keeps
    // negative numbers out.
    (secs.is_finite() && secs >= 0.0).then(|| secs.floor() as u64)
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.as_map() == other.as_map()
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Claims").field(&ClaimNames(self.as_map())).finish()
    }
}

/// Formats the keys of a claims map as a set of names.
struct ClaimNames<'a>(&'a serde_json::Map<String, serde_json::Value>);

impl fmt::Debug for ClaimNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Why a token was refused.
///
/// Each variant has a stable reason code ([`AuthError::reason`]) for the
/// `reason` field of a 401 body, and a message for a person (`Display`) that
/// never contains the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in any configured source.
    #[error("no session token in the request")]
    MissingToken,
    /// Not a compact JWS (three base64url parts, JSON object header and
    /// payload), a duplicated token source, or larger than 8 KiB.
    #[error("the session token is malformed")]
    Malformed,
    /// `alg` is `none`, unknown, not on the issuer's allow-list, or not of
    /// the key's family.
    #[error("the session token's signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The token's `kid` names no key of the issuer's key set.
    #[error("the session token's key id is not known")]
    UnknownKid,
    /// The signature does not verify.
    #[error("the session token's signature is invalid")]
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("the session token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the session token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the session token's issuer is not accepted")]
    InvalidIssuer,
    /// Several issuers are configured and the token's `iss` matches none.
    #[error("the session token's issuer is not configured")]
    UnknownIssuer,
    /// `aud` holds none of the configured audiences.
    #[error("the session token's audience is not accepted")]
    InvalidAudience,
    /// A required claim is absent; the field is the claim *name*.
    #[error("token is missing required claim `{0}`")]
    MissingClaim(String),
    /// A registered claim has the wrong JSON type (`sub`, `iss`, `jti`, `sid`
    /// must be strings; `exp`, `nbf`, `iat` numbers).
    #[error("the session token has a claim of the wrong type")]
    InvalidClaims,
    /// The issuer's keys could not be fetched yet (and none are cached):
    /// the token cannot be checked now. Not the client's fault: 503.
    #[error("the session token's issuer keys are unavailable; retry later")]
    KeysUnavailable,
}

impl AuthError {
    /// The stable reason code (`token_expired`, `unknown_kid`, ...).
    pub fn reason(&self) -> Reason {
        match self {
            Self::MissingToken => Reason::TokenMissing,
            Self::Malformed => Reason::TokenMalformed,
            Self::AlgorithmNotAllowed => Reason::AlgorithmNotAllowed,
            Self::UnknownKid => Reason::UnknownKid,
            Self::InvalidSignature => Reason::InvalidSignature,
            Self::Expired => Reason::TokenExpired,
            Self::NotYetValid => Reason::TokenNotYetValid,
            Self::InvalidIssuer => Reason::InvalidIssuer,
            Self::UnknownIssuer => Reason::UnknownIssuer,
            Self::InvalidAudience => Reason::InvalidAudience,
            Self::MissingClaim(_) => Reason::MissingClaim,
            Self::InvalidClaims => Reason::InvalidClaims,
            Self::KeysUnavailable => Reason::JwksUnavailable,
        }
    }
}
