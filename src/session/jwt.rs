//! JWT verification: one or several issuers, each with its keys, algorithm
//! allow-list and claim checks.
//!
//! Order of checks (the first failure is reported):
//! 1. structure: at most 8 KiB, three base64url parts, header and payload
//!    JSON objects without duplicated members → [`AuthError::Malformed`];
//! 2. `alg`: `none` in any casing or unknown → [`AuthError::AlgorithmNotAllowed`];
//! 3. issuer entry: with several issuers, the (unverified) `iss` picks the
//!    entry → [`AuthError::UnknownIssuer`];
//! 4. `alg` on the entry's allow-list and of the key's family, key by `kid`;
//! 5. signature (jsonwebtoken's aws-lc-rs backend, called directly so no
//!    process-wide crypto provider is needed);
//! 6. claim types, required claims, `exp`, `nbf`/`iat`, `iss`, `aud` —
//!    checked here against an explicit clock, with the entry's leeway.
//!
//! Invariants: no I/O; header parameters naming keys (`jku`, `x5u`, `jwk`,
//! `x5c`) are never used; no token, claim value or key appears in an error.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{AuthError, Claims, KeySet};

/// Largest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Claims that must be strings when present (they are used as identities).
const STRING_CLAIMS: [&str; 4] = ["sub", "iss", "jti", "sid"];
/// Claims that must be numbers (unix seconds) when present.
const NUMERIC_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

/// Checks for one issuer (already validated by config).
#[derive(Clone, Debug)]
pub struct IssuerSettings {
    /// Expected `iss`; `None` = not checked (single-issuer mode only).
    pub issuer: Option<String>,
    /// Accepted audiences; empty = `aud` not checked (and a token carrying
    /// `aud` is accepted).
    pub audience: Vec<String>,
    /// Algorithm allow-list, non-empty.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30s).
    pub leeway: Duration,
    /// Claims that must be present (default `["sub", "exp"]`); any claim
    /// name may be listed.
    pub required_claims: Vec<String>,
    /// Verification keys.
    pub keys: KeySet,
}

impl IssuerSettings {
    /// The default leeway on `exp`, `nbf` and `iat`.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

    /// The default required claims: `sub` and `exp`.
    pub fn default_required_claims() -> Vec<String> {
        vec!["sub".to_owned(), "exp".to_owned()]
    }
}

/// Verifies tokens against one or several issuers.
#[derive(Clone, Debug)]
pub struct Verifier {
    issuers: Vec<IssuerSettings>,
}

impl Verifier {
    /// One issuer entry: used for every token. Several: the token's
    /// (unverified) `iss` picks the entry whose `issuer` equals it; no match
    /// → [`AuthError::UnknownIssuer`] (then the signature is verified with
    /// that entry's keys and `iss` re-checked by validation). No entry at
    /// all: every token is refused with [`AuthError::UnknownIssuer`].
    pub fn new(issuers: Vec<IssuerSettings>) -> Self {
        Self { issuers }
    }

    /// The configured issuer entries.
    pub fn issuers(&self) -> &[IssuerSettings] {
        &self.issuers
    }

    /// Verify signature and claims at the current system time.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        // A clock before 1970 reads as 0: tokens then look not yet valid.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
        self.verify_at(token, now)
    }

    /// Same with an explicit "now" in unix seconds.
    pub fn verify_at(&self, token: &str, now_unix: u64) -> Result<Claims, AuthError> {
        self.verify_detailed(token, now_unix).map(|v| v.claims).map_err(|(e, _)| e)
    }

    /// Verifies and tells which issuer entry and `kid` verified the token.
    /// On [`AuthError::UnknownKid`] or [`AuthError::KeysUnavailable`] from a
    /// remote key set, the error comes with that key set and the token's
    /// `kid`, so the caller may refetch and try once more.
    pub fn verify_detailed(
        &self,
        token: &str,
        now_unix: u64,
    ) -> Result<Verified, (AuthError, Option<Refetch>)> {
        let parsed = ParsedToken::parse(token).map_err(|e| (e, None))?;
        let (index, settings) = self.select_issuer(&parsed.claims).map_err(|e| (e, None))?;
        if !settings.algorithms.contains(&parsed.alg) {
            return Err((AuthError::AlgorithmNotAllowed, None));
        }
        let key = settings.keys.select(parsed.alg, parsed.kid.as_deref()).map_err(|e| {
            let hint = match (&e, &settings.keys) {
                (AuthError::UnknownKid | AuthError::KeysUnavailable, KeySet::Remote(remote)) => {
                    Some(Refetch { keys: remote.clone(), kid: parsed.kid.clone() })
                }
                _ => None,
            };
            (e, hint)
        })?;
        verify_signature(parsed.alg, &key, parsed.signing_input.as_bytes(), parsed.signature)
            .map_err(|e| (e, None))?;
        check_claims(&parsed.claims, settings, now_unix).map_err(|e| (e, None))?;
        Ok(Verified { claims: Claims::new(parsed.claims), issuer: index, kid: parsed.kid })
    }

    fn select_issuer(&self, claims: &Map<String, Value>) -> Result<(usize, &IssuerSettings), AuthError> {
        match self.issuers.as_slice() {
            [only] => Ok((0, only)),
            several => {
                let iss = claims.get("iss").and_then(Value::as_str);
                iss.and_then(|iss| {
                    several.iter().enumerate().find(|(_, entry)| entry.issuer.as_deref() == Some(iss))
                })
                .ok_or(AuthError::UnknownIssuer)
            }
        }
    }
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// Index of the issuer entry that verified it.
    pub issuer: usize,
    /// Its `kid`, if any.
    pub kid: Option<String>,
}

/// A remote key set worth refetching, and the `kid` that was missing.
#[derive(Debug, Clone)]
pub struct Refetch {
    /// The issuer's remote keys.
    pub keys: std::sync::Arc<super::remote::RemoteKeys>,
    /// The token's `kid`.
    pub kid: Option<String>,
}

/// A structurally valid token, not yet verified.
struct ParsedToken<'a> {
    alg: Algorithm,
    kid: Option<String>,
    /// `header.payload`, the signed bytes.
    signing_input: &'a str,
    signature: Vec<u8>,
    claims: Map<String, Value>,
}

impl<'a> ParsedToken<'a> {
    fn parse(token: &'a str) -> Result<Self, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(AuthError::Malformed)?;
        if payload.contains('.') {
            return Err(AuthError::Malformed);
        }

        let header = decode_object(header)?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg,
            _ => return Err(AuthError::Malformed),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let alg = Algorithm::from_str(alg).map_err(|_| AuthError::AlgorithmNotAllowed)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(AuthError::Malformed),
        };
        // No JWS extension is understood, so a critical one cannot be honored
        // (RFC 7515 §4.1.11); an unencoded payload (RFC 7797) is not a JWT.
        if header.contains_key("crit") {
            return Err(AuthError::Malformed);
        }
        if header.get("b64").is_some_and(|b64| *b64 != Value::Bool(true)) {
            return Err(AuthError::Malformed);
        }

        let claims = decode_object(payload)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| AuthError::Malformed)?;
        Ok(Self { alg, kid, signing_input, signature, claims })
    }
}

/// Decodes one base64url part holding a JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice::<UniqueObject>(&bytes).map(|object| object.0).map_err(|_| AuthError::Malformed)
}

/// A JSON object whose top-level members are all distinct (a duplicated
/// `alg`, `iss` or `sub` would let two parsers read different values).
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.insert(name, value).is_some() {
                        return Err(de::Error::custom("duplicated member"));
                    }
                }
                Ok(UniqueObject(map))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Verifies the signature with the aws-lc-rs backend.
fn verify_signature(
    alg: Algorithm,
    key: &DecodingKey,
    signing_input: &[u8],
    signature: Vec<u8>,
) -> Result<(), AuthError> {
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let verifier = (provider.verifier_factory)(&alg, key).map_err(|_| AuthError::InvalidSignature)?;
    verifier.verify(signing_input, &signature).map_err(|_| AuthError::InvalidSignature)
}

/// Claim checks, in order: types, required claims, `exp`, `nbf`/`iat`,
/// `iss`, `aud`.
fn check_claims(
    claims: &Map<String, Value>,
    settings: &IssuerSettings,
    now_unix: u64,
) -> Result<(), AuthError> {
    for name in STRING_CLAIMS {
        if claims.get(name).is_some_and(|value| !value.is_string()) {
            return Err(AuthError::InvalidClaims);
        }
    }
    for name in NUMERIC_CLAIMS {
        if claims.get(name).is_some_and(|value| !value.is_number()) {
            return Err(AuthError::InvalidClaims);
        }
    }
    for name in &settings.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(AuthError::MissingClaim(name.clone()));
        }
    }

    // Unix times compare as f64: exact for every integer up to 2^53 and
    // fractional times are allowed by RFC 7519 (NumericDate).
    let now = now_unix as f64;
    let leeway = settings.leeway.as_secs_f64();
    let time = |name: &str| claims.get(name).and_then(Value::as_f64);
    if time("exp").is_some_and(|exp| now > exp + leeway) {
        return Err(AuthError::Expired);
    }
    if time("nbf").is_some_and(|nbf| nbf > now + leeway) {
        return Err(AuthError::NotYetValid);
    }
    if time("iat").is_some_and(|iat| iat > now + leeway) {
        return Err(AuthError::NotYetValid);
    }

    if let Some(expected) = &settings.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(expected.as_str())
    {
        return Err(AuthError::InvalidIssuer);
    }

    if !settings.audience.is_empty() && !audience_matches(claims.get("aud"), &settings.audience) {
        return Err(AuthError::InvalidAudience);
    }
    Ok(())
}

/// `aud` is a string or an array of strings holding one accepted audience.
fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    let accepts = |aud: &str| accepted.iter().any(|a| a == aud);
    match aud {
        Some(Value::String(aud)) => accepts(aud),
        Some(Value::Array(items)) => {
            items.iter().all(Value::is_string) && items.iter().filter_map(Value::as_str).any(accepts)
        }
        _ => false,
    }
}
