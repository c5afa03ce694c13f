//! Verification keys of one issuer: an HMAC shared secret, one PEM public
//! key, or a JWKS document.
//!
//! Invariants:
//! - A [`KeySet`] is built once, when the configuration is loaded;
//!   verification never does I/O and never takes a key from the token itself.
//! - Every key is bound to the algorithms of its family (and, for EC keys, of
//!   its curve; for a JWK with an `alg`, to that one algorithm). A token whose
//!   `alg` is outside that set is refused with
//!   [`AuthError::AlgorithmNotAllowed`] before any cryptography, which rules
//!   out HS/RS confusion (an RSA public key used as an HMAC secret).
//! - JWKS documents yield public keys only: `oct` (symmetric) keys,
//!   encryption keys and unsupported key types are skipped.
//! - RSA keys shorter than 2048 bits are refused (the crypto backend could
//!   never verify with them).
//! - `Debug` output and [`KeyError`] messages hold no key material.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use sha2::{Digest, Sha256};

use super::AuthError;
use crate::secret::Secret;

/// HMAC algorithms (the only ones a shared secret verifies).
const HMAC_ALGORITHMS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
/// RSA algorithms (PKCS#1 v1.5 and PSS).
const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// EC P-256.
const P256_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256];
/// EC P-384.
const P384_ALGORITHMS: &[Algorithm] = &[Algorithm::ES384];
/// Ed25519.
const ED25519_ALGORITHMS: &[Algorithm] = &[Algorithm::EdDSA];

/// Smallest RSA modulus accepted, in bits (the backend refuses smaller ones).
const MIN_RSA_BITS: usize = 2048;
/// Longest `kid` looked up in a JWKS; longer ones are unknown without lookup.
const MAX_KID_LEN: usize = 256;

/// An algorithm by its JOSE name. `Ed25519` (RFC 9864's fully-specified
/// name) and `EdDSA` are the same algorithm here: EdDSA keys are Ed25519
/// keys only (Ed448 is not supported), so both names verify exactly the same
/// signatures.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "Ed25519" => Some(Algorithm::EdDSA),
        other => other.parse().ok(),
    }
}

/// The identity of one verification key: SHA-256 of its public material
/// (for an HMAC secret, of an HMAC of a fixed label keyed by the secret, so
/// the secret cannot be recovered from it). A cached session remembers the
/// fingerprint of the key that verified it and is dropped when no key with
/// that fingerprint is left in its issuer's set: a rotation that removes or
/// replaces a key (even under the same `kid`) revokes the sessions it
/// signed. `Debug` shows a short prefix only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint([u8; 32]);

impl KeyFingerprint {
    fn of(kind: &str, parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        for part in parts {
            // Length-prefixed, so part boundaries cannot shift.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Self(h.finalize().into())
    }

    fn of_decoding_key(key: &DecodingKey) -> Self {
        match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => Self::of("der", &[der]),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                // Leading zero bytes do not change the key.
                let trim = |b: &[u8]| -> Vec<u8> { b.iter().skip_while(|&&x| x == 0).copied().collect() };
                Self::of("rsa", &[&trim(n), &trim(e)])
            }
        }
    }
}

#[cfg(test)]
impl KeyFingerprint {
    /// A fingerprint no key has, for unit tests.
    pub(super) fn unused() -> Self {
        Self([0; 32])
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({})", hex::encode(&self.0[..4]))
    }
}

/// Keys of one issuer. Built once at config load; verification never does
/// I/O.
///
/// `Debug` shows the kind of key set and the algorithms it verifies, never
/// key material.
#[derive(Clone)]
pub enum KeySet {
    /// HMAC shared secret (HS256/384/512 only).
    Secret(Box<HmacKeys>),
    /// One PEM public key (RSA → RS*/PS*, EC P-256/P-384 → ES256/ES384,
    /// Ed25519 → EdDSA). The token's `kid` is ignored.
    Pem(PemKey),
    /// A JWKS document: keys selected by `kid`; a token without `kid` is
    /// accepted only when the set holds exactly one usable key.
    Jwks(JwksKeys),
    /// Keys fetched from the issuer (JWKS URL or OIDC discovery) by the
    /// runtime and refreshed in the background; RSA, EC and Ed25519 only.
    Remote(std::sync::Arc<dyn RemoteKeySet>),
}

/// A key set that something outside `session` fetches and keeps fresh
/// (`crate::jwks`): verification only reads what is loaded; an unknown
/// `kid` may ask for one refetch, whose I/O is the implementor's.
pub trait RemoteKeySet: Send + Sync + fmt::Debug {
    /// The key for `alg` and `kid`, with its fingerprint;
    /// [`AuthError::KeysUnavailable`] before keys were ever loaded,
    /// [`AuthError::UnknownKid`] or [`AuthError::AlgorithmNotAllowed`] as
    /// [`JwksKeys`] selects.
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<(PublicKey, KeyFingerprint), AuthError>;

    /// Whether the loaded set holds the key with this fingerprint.
    fn holds(&self, fingerprint: &KeyFingerprint) -> bool;

    /// Whether the last fetch failed: a `kid` the loaded set lacks may
    /// exist at the issuer (the answer is then "retry later", not "refused").
    fn is_stale(&self) -> bool;

    /// Called when a token names a `kid` the set lacks: may refetch (at
    /// most once per interval, shared by concurrent callers); resolves to
    /// whether the kid is known now.
    fn refetch_for_unknown_kid<'a>(
        &'a self,
        kid: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// An HMAC shared secret, keyed once for each HS algorithm (the key
/// schedule is not repeated for every token). HS256, the common one, is
/// RustCrypto's `hmac`/`sha2` with its inner and outer states kept: a
/// verification clones 200 bytes of state, where aws-lc-rs copies its whole
/// `HMAC_CTX` (measured: 489 against 606 ns for a 550-byte signing input).
#[derive(Clone)]
pub struct HmacKeys {
    secret: Secret,
    hs256: crate::pusher::HmacSha256,
    hs384: aws_lc_rs::hmac::Key,
    hs512: aws_lc_rs::hmac::Key,
    fingerprint: KeyFingerprint,
}

impl HmacKeys {
    fn new(secret: Secret) -> Self {
        let key = |alg| aws_lc_rs::hmac::Key::new(alg, secret.expose());
        let check = aws_lc_rs::hmac::sign(&key(aws_lc_rs::hmac::HMAC_SHA256), b"channelgate key fingerprint");
        Self {
            fingerprint: KeyFingerprint::of("hmac", &[check.as_ref()]),
            hs256: crate::pusher::hmac_sha256(secret.expose()),
            hs384: key(aws_lc_rs::hmac::HMAC_SHA384),
            hs512: key(aws_lc_rs::hmac::HMAC_SHA512),
            secret,
        }
    }

    /// The shared secret (to mint development tokens).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

/// The key that verifies one token.
pub(super) enum VerifyKey<'a> {
    /// The HS256 key, already keyed.
    Hs256(&'a crate::pusher::HmacSha256),
    /// An HS384 or HS512 key, already keyed.
    Hmac(&'a aws_lc_rs::hmac::Key),
    /// A public key.
    Public(Cow<'a, PublicKey>),
}

/// A public key, parsed by aws-lc-rs once per algorithm it verifies (on
/// first use), not once per token: parsing is a large part of an RS256
/// verification (the modulus, its Montgomery context) and of an ES256 one
/// (the point's validation). Clones share the parsed keys.
#[derive(Clone)]
pub struct PublicKey(Arc<PublicInner>);

struct PublicInner {
    key: DecodingKey,
    /// One slot per algorithm ([`alg_slot`]); `None` when the key cannot be
    /// parsed for that algorithm (every verification then fails).
    parsed: [OnceLock<Option<aws_lc_rs::signature::ParsedPublicKey>>; PUBLIC_ALGORITHMS],
}

/// Number of public-key algorithms ([`alg_slot`]).
const PUBLIC_ALGORITHMS: usize = 9;

/// The parameters aws-lc-rs verifies `alg` with, and the slot of its parsed
/// key (the same ones jsonwebtoken's aws-lc-rs backend uses: RSA moduli of
/// 2048 to 8192 bits, fixed-size ECDSA signatures as JWS has them).
fn alg_slot(alg: Algorithm) -> Option<(usize, &'static dyn aws_lc_rs::signature::VerificationAlgorithm)> {
    use aws_lc_rs::signature as sig;
    Some(match alg {
        Algorithm::RS256 => (0, &sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => (1, &sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => (2, &sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => (3, &sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => (4, &sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => (5, &sig::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => (6, &sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => (7, &sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => (8, &sig::ED25519),
        _ => return None,
    })
}

/// The RSA parameters of an RSA algorithm.
fn rsa_parameters(alg: Algorithm) -> Option<&'static aws_lc_rs::signature::RsaParameters> {
    use aws_lc_rs::signature as sig;
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl PublicKey {
    fn new(key: DecodingKey) -> Self {
        Self(Arc::new(PublicInner { key, parsed: Default::default() }))
    }

    /// Verifies `signature` of `message` with `alg` (a public-key
    /// algorithm of this key's family, checked by the caller).
    pub(super) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), AuthError> {
        let (slot, verification) = alg_slot(alg).ok_or(AuthError::InvalidSignature)?;
        let parsed = self.0.parsed[slot].get_or_init(|| self.parse(alg, verification));
        match parsed {
            Some(key) => key.verify_sig(message, signature).map_err(|_| AuthError::InvalidSignature),
            None => Err(AuthError::InvalidSignature),
        }
    }

    fn parse(
        &self,
        alg: Algorithm,
        verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    ) -> Option<aws_lc_rs::signature::ParsedPublicKey> {
        match self.0.key.kind() {
            // PKCS#1 or SPKI DER for RSA, the uncompressed point for EC, the
            // 32 raw bytes for Ed25519: what jsonwebtoken hands aws-lc-rs.
            DecodingKeyKind::SecretOrDer(bytes) => {
                aws_lc_rs::signature::ParsedPublicKey::new(verification, bytes).ok()
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                let components = aws_lc_rs::signature::RsaPublicKeyComponents { n, e };
                components.to_parsed_public_key(rsa_parameters(alg)?).ok()
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

/// A key chosen for a token, with its fingerprint.
pub(super) struct Selected<'a> {
    pub(super) key: VerifyKey<'a>,
    pub(super) fingerprint: KeyFingerprint,
}

/// One public key loaded from PEM, with the algorithms it verifies.
#[derive(Clone)]
pub struct PemKey {
    key: PublicKey,
    algorithms: &'static [Algorithm],
    fingerprint: KeyFingerprint,
}

impl PemKey {
    fn new(key: DecodingKey, algorithms: &'static [Algorithm]) -> Self {
        Self { fingerprint: KeyFingerprint::of_decoding_key(&key), key: PublicKey::new(key), algorithms }
    }
}

/// The usable signing keys of a JWKS document.
#[derive(Clone)]
pub struct JwksKeys {
    keys: Vec<JwksKey>,
}

/// One usable JWKS key.
#[derive(Clone)]
pub struct JwksKey {
    kid: Option<String>,
    key: PublicKey,
    algorithms: Vec<Algorithm>,
    fingerprint: KeyFingerprint,
}

impl JwksKey {
    /// The verification key (clones share its parsed forms).
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Its fingerprint.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }
}

/// Why a key could not be loaded. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not one PEM `PUBLIC KEY` / `RSA PUBLIC KEY` block of a supported key.
    #[error("not a pem public key (expected one `PUBLIC KEY` or `RSA PUBLIC KEY` block)")]
    InvalidPem,
    /// A PEM private key was given where a public key is expected.
    #[error("a private key was given where a public key is expected")]
    PrivateKey,
    /// A well-formed key of a type or curve that cannot verify JWTs here.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(&'static str),
    /// An RSA key shorter than 2048 bits.
    #[error("rsa key is shorter than 2048 bits")]
    WeakRsaKey,
    /// The JWKS document cannot be read; the text says where, never what.
    #[error("invalid jwks document: {0}")]
    InvalidJwks(String),
    /// The JWKS document holds no key usable to verify signatures.
    #[error("the jwks document holds no usable signature key")]
    NoUsableKeys,
}

impl KeySet {
    /// An HMAC shared secret (verifies HS256, HS384, HS512).
    pub fn from_secret(secret: Secret) -> Self {
        Self::Secret(Box::new(HmacKeys::new(secret)))
    }

    /// One PEM public key: `PUBLIC KEY` (SPKI: RSA, EC P-256/P-384,
    /// Ed25519) or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|_| KeyError::InvalidPem)?;
        let labels: Vec<&str> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
            .collect();
        let label = match labels.as_slice() {
            [label] => *label,
            _ => return Err(KeyError::InvalidPem),
        };
        match label {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
            other if other.contains("PRIVATE KEY") => return Err(KeyError::PrivateKey),
            _ => return Err(KeyError::InvalidPem),
        }

        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            check_rsa_key(&key)?;
            return Ok(Self::Pem(PemKey::new(key, RSA_ALGORITHMS)));
        }
        if label == "RSA PUBLIC KEY" {
            return Err(KeyError::InvalidPem);
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            let algorithms = match key.try_get_as_bytes() {
                Ok(point) => ec_point_algorithms(point)?,
                Err(_) => return Err(KeyError::InvalidPem),
            };
            return Ok(Self::Pem(PemKey::new(key, algorithms)));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return match key.try_get_as_bytes() {
                Ok(raw) if raw.len() == 32 => Ok(Self::Pem(PemKey::new(key, ED25519_ALGORITHMS))),
                _ => Err(KeyError::UnsupportedKey("edwards curve other than ed25519")),
            };
        }
        Err(KeyError::UnsupportedKey("key type other than rsa, ec or ed25519"))
    }

    /// A JWKS document (`{"keys": [...]}`). Keys whose `use` is not `sig`,
    /// whose `key_ops` lack `verify`, whose `alg` is not a signature
    /// algorithm of their type, and keys of unsupported types (`oct`, curves
    /// other than P-256, P-384, Ed25519) are skipped; an error if none is
    /// left. A supported key with broken parameters is an error.
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, KeyError> {
        JwksKeys::from_json(json).map(Self::Jwks)
    }

    /// Algorithms this key set can verify (for config validation: configured
    /// algorithms must be a subset). Remote key sets are not known before
    /// they are fetched: any asymmetric algorithm is accepted.
    pub fn supports(&self, alg: Algorithm) -> bool {
        match self {
            Self::Secret(_) => HMAC_ALGORITHMS.contains(&alg),
            Self::Pem(pem) => pem.algorithms.contains(&alg),
            Self::Jwks(jwks) => jwks.keys.iter().any(|key| key.algorithms.contains(&alg)),
            Self::Remote(_) => !HMAC_ALGORITHMS.contains(&alg),
        }
    }
}

impl JwksKeys {
    /// Parses a JWKS document; see [`KeySet::from_jwks_json`].
    pub fn from_json(json: &[u8]) -> Result<Self, KeyError> {
        let mut doc: serde_json::Value = serde_json::from_slice(json).map_err(|err| {
            KeyError::InvalidJwks(format!(
                "not a jwks document (line {}, column {})",
                err.line(),
                err.column()
            ))
        })?;
        // RFC 9864's `Ed25519` is what jsonwebtoken calls `EdDSA` (Ed25519
        // keys only here); without this the key would be skipped as one of
        // an unknown algorithm.
        if let Some(keys) = doc.get_mut("keys").and_then(serde_json::Value::as_array_mut) {
            for key in keys {
                if let Some(alg) = key.get_mut("alg")
                    && alg.as_str() == Some("Ed25519")
                {
                    *alg = serde_json::Value::String("EdDSA".to_owned());
                }
            }
        }
        let set: JwkSet = serde_json::from_value(doc).map_err(|_| {
            KeyError::InvalidJwks("not a jwks document (`keys` is not a list of keys)".into())
        })?;
        let mut keys = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            match jwks_key(jwk, index)? {
                Some(key) => keys.push(key),
                None => tracing::debug!(index, "jwks key skipped: not a usable signature key"),
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoUsableKeys);
        }
        Ok(JwksKeys { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key (never true for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether the set holds the key with this fingerprint.
    pub fn holds(&self, fingerprint: &KeyFingerprint) -> bool {
        self.keys.iter().any(|k| k.fingerprint == *fingerprint)
    }
}

impl KeySet {
    /// The key that verifies a token signed with `alg` and carrying `kid`.
    ///
    /// `alg` outside the key's family → [`AuthError::AlgorithmNotAllowed`];
    /// for a JWKS, no key with that `kid` (or no `kid` and more than one key)
    /// → [`AuthError::UnknownKid`].
    pub(super) fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<Selected<'_>, AuthError> {
        match self {
            Self::Secret(keys) => {
                // An empty secret cannot verify anything.
                if keys.secret.expose().is_empty() {
                    return Err(AuthError::InvalidSignature);
                }
                let key = match alg {
                    Algorithm::HS256 => VerifyKey::Hs256(&keys.hs256),
                    Algorithm::HS384 => VerifyKey::Hmac(&keys.hs384),
                    Algorithm::HS512 => VerifyKey::Hmac(&keys.hs512),
                    _ => return Err(AuthError::AlgorithmNotAllowed),
                };
                Ok(Selected { key, fingerprint: keys.fingerprint })
            }
            Self::Pem(pem) => {
                if pem.algorithms.contains(&alg) {
                    Ok(Selected {
                        key: VerifyKey::Public(Cow::Borrowed(&pem.key)),
                        fingerprint: pem.fingerprint,
                    })
                } else {
                    Err(AuthError::AlgorithmNotAllowed)
                }
            }
            Self::Jwks(jwks) => jwks.select(alg, kid).map(|k| Selected {
                key: VerifyKey::Public(Cow::Borrowed(&k.key)),
                fingerprint: k.fingerprint,
            }),
            Self::Remote(remote) => {
                if HMAC_ALGORITHMS.contains(&alg) {
                    return Err(AuthError::AlgorithmNotAllowed);
                }
                remote.select(alg, kid).map(|(key, fingerprint)| Selected {
                    key: VerifyKey::Public(Cow::Owned(key)),
                    fingerprint,
                })
            }
        }
    }

    /// Whether the key with this fingerprint is (still) in the set: a
    /// cached session verified by a key that left is not used again.
    pub fn holds(&self, fingerprint: &KeyFingerprint) -> bool {
        match self {
            Self::Secret(keys) => keys.fingerprint == *fingerprint,
            Self::Pem(pem) => pem.fingerprint == *fingerprint,
            Self::Jwks(jwks) => jwks.holds(fingerprint),
            Self::Remote(remote) => remote.holds(fingerprint),
        }
    }
}

impl JwksKeys {
    /// The key for `alg` and `kid`: by `kid` when given (refused when the
    /// key does not verify `alg`), else the only key of the set.
    pub fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&JwksKey, AuthError> {
        match kid {
            Some(kid) => {
                if kid.len() > MAX_KID_LEN {
                    return Err(AuthError::UnknownKid);
                }
                let mut kid_found = false;
                for key in self.keys.iter().filter(|key| key.kid.as_deref() == Some(kid)) {
                    if key.algorithms.contains(&alg) {
                        return Ok(key);
                    }
                    kid_found = true;
                }
                Err(if kid_found { AuthError::AlgorithmNotAllowed } else { AuthError::UnknownKid })
            }
            None => match self.keys.as_slice() {
                [only] if only.algorithms.contains(&alg) => Ok(only),
                [_] => Err(AuthError::AlgorithmNotAllowed),
                _ => Err(AuthError::UnknownKid),
            },
        }
    }
}

/// The usable key of one JWK, `None` when it is to be skipped.
fn jwks_key(jwk: &Jwk, index: usize) -> Result<Option<JwksKey>, KeyError> {
    let common = &jwk.common;
    if common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Ok(None);
    }
    if common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Ok(None);
    }
    let broken = |what: &str| KeyError::InvalidJwks(format!("key #{index}: invalid {what}"));

    let (key, family): (DecodingKey, &'static [Algorithm]) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let key = DecodingKey::from_rsa_components(&params.n, &params.e)
                .map_err(|_| broken("rsa parameters"))?;
            match check_rsa_key(&key) {
                Ok(()) => {}
                Err(KeyError::WeakRsaKey) => return Ok(None),
                Err(_) => return Err(broken("rsa parameters")),
            }
            (key, RSA_ALGORITHMS)
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (family, len) = match params.curve {
                EllipticCurve::P256 => (P256_ALGORITHMS, 32),
                EllipticCurve::P384 => (P384_ALGORITHMS, 48),
                _ => return Ok(None),
            };
            let key =
                DecodingKey::from_ec_components(&params.x, &params.y).map_err(|_| broken("ec parameters"))?;
            match key.try_get_as_bytes() {
                Ok(point) if point.len() == 1 + 2 * len => {}
                _ => return Err(broken("ec parameters")),
            }
            (key, family)
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Ok(None);
            }
            let key = DecodingKey::from_ed_components(&params.x).map_err(|_| broken("okp parameters"))?;
            match key.try_get_as_bytes() {
                Ok(raw) if raw.len() == 32 => {}
                _ => return Err(broken("okp parameters")),
            }
            (key, ED25519_ALGORITHMS)
        }
        // Symmetric (`oct`) keys never come from a JWKS here; other key
        // types are not supported.
        _ => return Ok(None),
    };

    let algorithms = match common.key_algorithm {
        None => family.to_vec(),
        Some(declared) => match Algorithm::try_from(declared) {
            Ok(alg) if family.contains(&alg) => vec![alg],
            // An encryption algorithm, or one of another key type.
            _ => return Ok(None),
        },
    };
    let fingerprint = KeyFingerprint::of_decoding_key(&key);
    Ok(Some(JwksKey { kid: common.key_id.clone(), key: PublicKey::new(key), algorithms, fingerprint }))
}

/// The algorithms of an uncompressed EC public point, by its size.
fn ec_point_algorithms(point: &[u8]) -> Result<&'static [Algorithm], KeyError> {
    match (point.first(), point.len()) {
        (Some(4), 65) => Ok(P256_ALGORITHMS),
        (Some(4), 97) => Ok(P384_ALGORITHMS),
        _ => Err(KeyError::UnsupportedKey("ec curve other than p-256 or p-384")),
    }
}

/// Checks that an RSA key parses and is at least 2048 bits long.
fn check_rsa_key(key: &DecodingKey) -> Result<(), KeyError> {
    let modulus: Cow<'_, [u8]> = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => Cow::Borrowed(n.as_slice()),
        DecodingKeyKind::SecretOrDer(der) => {
            let components =
                jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key;
            let (n, _e) = components(der).map_err(|_| KeyError::InvalidPem)?;
            Cow::Owned(n)
        }
    };
    if modulus_bits(&modulus) < MIN_RSA_BITS {
        return Err(KeyError::WeakRsaKey);
    }
    Ok(())
}

/// Bit length of a big-endian unsigned integer.
fn modulus_bits(n: &[u8]) -> usize {
    match n.iter().position(|&byte| byte != 0) {
        Some(first) => (n.len() - first - 1) * 8 + (8 - n[first].leading_zeros() as usize),
        None => 0,
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("KeySet::Secret([redacted])"),
            Self::Pem(pem) => pem.fmt(f),
            Self::Jwks(jwks) => jwks.fmt(f),
            Self::Remote(remote) => remote.fmt(f),
        }
    }
}

impl fmt::Debug for PemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemKey").field("algorithms", &self.algorithms).finish_non_exhaustive()
    }
}

impl fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKeys").field("keys", &self.keys).finish()
    }
}

impl fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}
