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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod parse;

use jsonwebtoken::Algorithm;

use super::keys::{KeyFingerprint, VerifyKey};
use super::{AuthError, Claims, KeySet};
use parse::{Member, ParsedToken, Payload};
#[cfg(test)]
pub(super) use parse::{READ_CLAIMS, has_duplicates, read_claim};

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
    /// Each entry's identity ([`IssuerSettings::identity`]).
    identities: Vec<u64>,
}

impl IssuerSettings {
    /// What a verification depends on besides the keys — issuer, audience,
    /// algorithms, leeway, required claims — as a number: equal across
    /// reloads while those stay the same, so a cached session is reused
    /// only by an entry that would verify it the same way. (Keys are
    /// checked separately, by fingerprint.)
    pub fn identity(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: stable within this build, which is all a
        // process-local cache needs.
        let mut h = std::hash::DefaultHasher::new();
        self.issuer.hash(&mut h);
        self.audience.hash(&mut h);
        for alg in &self.algorithms {
            format!("{alg:?}").hash(&mut h);
        }
        self.leeway.hash(&mut h);
        self.required_claims.hash(&mut h);
        h.finish()
    }
}

impl Verifier {
    /// One issuer entry: used for every token. Several: the token's
    /// (unverified) `iss` picks the entry whose `issuer` equals it; no match
    /// → [`AuthError::UnknownIssuer`] (then the signature is verified with
    /// that entry's keys and `iss` re-checked by validation). No entry at
    /// all: every token is refused with [`AuthError::UnknownIssuer`].
    pub fn new(issuers: Vec<IssuerSettings>) -> Self {
        let identities = issuers.iter().map(IssuerSettings::identity).collect();
        Self { issuers, identities }
    }

    /// The configured issuer entries.
    pub fn issuers(&self) -> &[IssuerSettings] {
        &self.issuers
    }

    /// The identity of entry `index` (0 when there is none).
    pub fn identity(&self, index: usize) -> u64 {
        self.identities.get(index).copied().unwrap_or(0)
    }

    /// The entry with this identity, if one is configured.
    pub fn by_identity(&self, identity: u64) -> Option<&IssuerSettings> {
        let index = self.identities.iter().position(|id| *id == identity)?;
        self.issuers.get(index)
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
        let payload = Payload::parse(&parsed.payload).map_err(|e| (e, None))?;
        let (index, settings) = self.select_issuer(&payload).map_err(|e| (e, None))?;
        if !settings.algorithms.contains(&parsed.alg) {
            return Err((AuthError::AlgorithmNotAllowed, None));
        }
        let selected = settings.keys.select(parsed.alg, parsed.kid.as_deref()).map_err(|e| {
            let hint = match (&e, &settings.keys) {
                (AuthError::UnknownKid | AuthError::KeysUnavailable, KeySet::Remote(remote)) => {
                    Some(Refetch { keys: remote.clone(), kid: parsed.kid.clone() })
                }
                _ => None,
            };
            (e, hint)
        })?;
        let fingerprint = selected.fingerprint;
        verify_signature(parsed.alg, selected.key, parsed.signing_input.as_bytes(), parsed.signature)
            .map_err(|e| (e, None))?;
        check_claims(&payload, settings, now_unix).map_err(|e| (e, None))?;
        let exp = match payload.get("exp") {
            Some(Member::Number(n)) => super::number_seconds(n),
            _ => None,
        };
        let spans = payload.member_spans(&parsed.payload);
        Ok(Verified {
            claims: Claims::from_checked_json(parsed.payload, spans),
            issuer: index,
            key: fingerprint,
            exp,
        })
    }

    fn select_issuer(&self, payload: &Payload<'_>) -> Result<(usize, &IssuerSettings), AuthError> {
        match self.issuers.as_slice() {
            [only] => Ok((0, only)),
            several => {
                let iss = payload.string("iss");
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
    /// The key that verified it.
    pub key: KeyFingerprint,
    /// Its `exp` in whole unix seconds, when it is a non-negative number.
    pub exp: Option<u64>,
}

/// A remote key set worth refetching, and the `kid` that was missing.
#[derive(Debug, Clone)]
pub struct Refetch {
    /// The issuer's remote keys.
    pub keys: std::sync::Arc<dyn super::RemoteKeySet>,
    /// The token's `kid`.
    pub kid: Option<String>,
}

/// Verifies the signature: HS256 with RustCrypto's HMAC state prepared at
/// load, HS384/HS512 with aws-lc-rs's key (both compare in constant time),
/// public
/// keys with the key parsed once per algorithm ([`super::keys::PublicKey`]).
fn verify_signature(
    alg: Algorithm,
    key: VerifyKey<'_>,
    signing_input: &[u8],
    signature: Vec<u8>,
) -> Result<(), AuthError> {
    match key {
        // `verify_slice` compares in constant time (`subtle`).
        VerifyKey::Hs256(key) => {
            let mut mac = key.clone();
            hmac::Mac::update(&mut mac, signing_input);
            hmac::Mac::verify_slice(mac, &signature).map_err(|_| AuthError::InvalidSignature)
        }
        VerifyKey::Hmac(key) => {
            aws_lc_rs::hmac::verify(key, signing_input, &signature).map_err(|_| AuthError::InvalidSignature)
        }
        VerifyKey::Public(key) => key.verify(alg, signing_input, &signature),
    }
}

/// Claim checks, in order: types, required claims, `exp`, `nbf`/`iat`,
/// `iss`, `aud`.
fn check_claims(payload: &Payload<'_>, settings: &IssuerSettings, now_unix: u64) -> Result<(), AuthError> {
    for name in STRING_CLAIMS {
        if payload.get(name).is_some_and(|value| !matches!(value, Member::String(_))) {
            return Err(AuthError::InvalidClaims);
        }
    }
    for name in NUMERIC_CLAIMS {
        if payload.get(name).is_some_and(|value| !matches!(value, Member::Number(_))) {
            return Err(AuthError::InvalidClaims);
        }
    }
    for name in &settings.required_claims {
        if payload.get(name).is_none_or(|value| matches!(value, Member::Null)) {
            return Err(AuthError::MissingClaim(name.clone()));
        }
    }

    // Unix times compare as f64: exact for every integer up to 2^53 and
    // fractional times are allowed by RFC 7519 (NumericDate).
    let now = now_unix as f64;
    let leeway = settings.leeway.as_secs_f64();
    if payload.time("exp").is_some_and(|exp| now > exp + leeway) {
        return Err(AuthError::Expired);
    }
    if payload.time("nbf").is_some_and(|nbf| nbf > now + leeway) {
        return Err(AuthError::NotYetValid);
    }
    if payload.time("iat").is_some_and(|iat| iat > now + leeway) {
        return Err(AuthError::NotYetValid);
    }

    if let Some(expected) = &settings.issuer
        && payload.string("iss") != Some(expected.as_str())
    {
        return Err(AuthError::InvalidIssuer);
    }

    if !settings.audience.is_empty() && !audience_matches(payload.get("aud"), &settings.audience) {
        return Err(AuthError::InvalidAudience);
    }
    Ok(())
}

/// `aud` is a string or an array of strings holding one accepted audience.
fn audience_matches(aud: Option<&Member<'_>>, accepted: &[String]) -> bool {
    let accepts = |aud: &str| accepted.iter().any(|a| a == aud);
    match aud {
        Some(Member::String(aud)) => accepts(aud),
        Some(Member::Strings(items)) => items.iter().any(|aud| accepts(aud)),
        _ => false,
    }
}
