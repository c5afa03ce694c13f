//! Verification key loading: `KeySet::from_pem` and
//! `KeySet::from_jwks_json` (what `public_key: {file}` and `jwks_file:`
//! read at config load), then key selection and verification with the
//! loaded set.
//!
//! The first input byte picks PEM (even) or JWKS (odd); the rest is the
//! document, then optionally `\0 TOKEN`.
//!
//! Properties: never panics; errors never contain the document; a loaded
//! key set verifies at least one algorithm and never an HMAC one (public
//! keys only, so no HS/RS confusion); verifying any token with it (every
//! supported algorithm allowed) returns an error rather than panicking,
//! and never accepts the fixed unsigned/HS-signed tokens.
#![no_main]

mod common;

use std::time::Duration;

use channelgate::session::{IssuerSettings, KeySet, Verifier};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `{"alg":"HS256","typ":"JWT"}.{"sub":"a","exp":1700003600}.` signed with
/// an empty and with a guessable key: never valid for a public key set.
const FORGED: [&str; 2] = [
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhIiwiZXhwIjoxNzAwMDAzNjAwfQ.",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjoxNzAwMDAzNjAwfQ.",
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let parts = common::fields(rest, 2);
    let document = parts[0];
    let result = if mode % 2 == 0 { KeySet::from_pem(document) } else { KeySet::from_jwks_json(document) };
    let keys = match result {
        Ok(keys) => keys,
        Err(e) => {
            let msg = e.to_string();
            // Key material (base64, JSON) has characters no fixed message has.
            if document.len() >= 24 && document.iter().any(|b| b"\"{=+/".contains(b)) {
                assert!(!msg.as_bytes().windows(document.len()).any(|w| w == document), "error echoes the key");
            }
            return;
        }
    };
    let algorithms: Vec<Algorithm> = ALL.into_iter().filter(|a| keys.supports(*a)).collect();
    assert!(!algorithms.is_empty(), "a loaded key set verifies nothing");
    assert!(
        !algorithms.iter().any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)),
        "a public key set verifies an HMAC algorithm"
    );
    let _ = format!("{keys:?}");
    let verifier = Verifier::new(vec![IssuerSettings {
        issuer: None,
        audience: vec![],
        algorithms,
        leeway: Duration::from_secs(30),
        required_claims: vec![],
        keys,
    }]);
    for token in FORGED {
        assert!(verifier.verify_at(token, common::NOW).is_err(), "forged token accepted");
    }
    let _ = verifier.verify_at(&common::text(parts[1]), common::NOW);
});
