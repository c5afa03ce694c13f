//! Unit tests of token verification and key loading. Tokens are minted with
//! `jsonwebtoken::encode` and the test-only keys of [`super::test_keys`];
//! hostile tokens are assembled by hand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::test_keys::*;
use super::*;
use crate::secret::Secret;

const NOW: u64 = 1_700_000_000;
const HMAC_SECRET: &[u8] = b"test-only-hmac-secret-0123456789abcdef";

// ---- helpers ---------------------------------------------------------------

fn settings(keys: KeySet, algorithms: &[Algorithm]) -> IssuerSettings {
    IssuerSettings {
        issuer: None,
        audience: Vec::new(),
        algorithms: algorithms.to_vec(),
        leeway: IssuerSettings::DEFAULT_LEEWAY,
        required_claims: IssuerSettings::default_required_claims(),
        keys,
    }
}

fn hmac_settings() -> IssuerSettings {
    settings(KeySet::from_secret(Secret::new(HMAC_SECRET)), &[Algorithm::HS256])
}

fn verifier(settings: IssuerSettings) -> Verifier {
    Verifier::new(vec![settings])
}

fn hmac_verifier(adjust: impl FnOnce(&mut IssuerSettings)) -> Verifier {
    let mut s = hmac_settings();
    adjust(&mut s);
    verifier(s)
}

fn base_claims() -> Value {
    json!({ "sub": "user-42", "exp": NOW + 600, "iat": NOW, "name": "Ada" })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    if let Some(map) = claims.as_object_mut() {
        map.remove(name);
    }
    claims
}

fn mint(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn mint_kid(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hmac_key() -> EncodingKey {
    EncodingKey::from_secret(HMAC_SECRET).unwrap()
}

fn hs256(claims: &Value) -> String {
    mint(Algorithm::HS256, &hmac_key(), claims)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap()
}

fn rsa2_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA2_PRIVATE_PEM.as_bytes()).unwrap()
}

fn ec256_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_P256_PRIVATE_PEM.as_bytes()).unwrap()
}

fn ec384_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_P384_PRIVATE_PEM.as_bytes()).unwrap()
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(ED25519_PRIVATE_PEM.as_bytes()).unwrap()
}

fn pem(public: &str) -> KeySet {
    KeySet::from_pem(public.as_bytes()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token assembled by hand: raw header JSON, raw payload JSON, raw
/// signature part.
fn raw_token(header: &str, payload: &str, signature: &str) -> String {
    format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), signature)
}

/// A JWK of the public half of `key`, with `kid`, and `alg` unless `None`.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str, declared_alg: bool) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    if !declared_alg {
        jwk.common.key_algorithm = None;
    }
    jwk
}

fn jwks(keys: Vec<Jwk>) -> KeySet {
    KeySet::from_jwks_json(&serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap()
}

fn full_jwks() -> KeySet {
    jwks(vec![
        jwk(&rsa_key(), Algorithm::RS256, "rsa-1", false),
        jwk(&rsa2_key(), Algorithm::RS256, "rsa-2", true),
        jwk(&ec256_key(), Algorithm::ES256, "ec-1", false),
        jwk(&ed_key(), Algorithm::EdDSA, "ed-1", false),
    ])
}

const ALL_ASYMMETRIC: &[Algorithm] = &[
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

// ---- valid tokens ----------------------------------------------------------

#[test]
fn valid_hmac_token_each_algorithm() {
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let v = hmac_verifier(|s| s.algorithms = vec![alg]);
        let token = mint(alg, &hmac_key(), &base_claims());
        let claims = v.verify_at(&token, NOW).unwrap();
        assert_eq!(claims.sub(), Some("user-42"), "{alg:?}");
        assert_eq!(claims.exp(), Some(NOW + 600));
        assert_eq!(claims.as_map().get("name"), Some(&json!("Ada")));
    }
}

/// HS256 is checked with a prepared RustCrypto HMAC state (the key
/// normalized to one block at load), the others with aws-lc-rs: secrets
/// shorter than, as long as and longer than SHA-256's 64-byte block (a
/// longer one is hashed first) verify what jsonwebtoken signs, and a
/// signature one byte short, one byte long or with a bit flipped does not.
#[test]
fn hmac_secrets_of_every_length_verify_and_near_misses_do_not() {
    for len in [1, 31, 63, 64, 65, 100, 128, 200] {
        let secret: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let v = verifier(settings(KeySet::from_secret(Secret::new(secret.clone())), &[alg]));
            let token = mint(alg, &EncodingKey::from_secret(&secret).unwrap(), &base_claims());
            assert!(v.verify_at(&token, NOW).is_ok(), "{alg:?}, {len}-byte secret");
            let (input, signature) = token.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let mut flipped = signature.clone();
            flipped[len % signature.len()] ^= 0x10;
            let short = &signature[..signature.len() - 1];
            let long = [signature.as_slice(), &[0]].concat();
            for bad in [flipped.as_slice(), short, &long] {
                let forged = format!("{input}.{}", b64(bad));
                assert_eq!(v.verify_at(&forged, NOW), Err(AuthError::InvalidSignature), "{alg:?}, {len}");
            }
            let other: Vec<u8> = secret.iter().map(|b| b ^ 1).collect();
            let wrong = mint(alg, &EncodingKey::from_secret(&other).unwrap(), &base_claims());
            assert_eq!(v.verify_at(&wrong, NOW), Err(AuthError::InvalidSignature), "{alg:?}, {len}");
        }
    }
}

#[test]
fn valid_rsa_token_each_algorithm_spki_and_pkcs1() {
    for public in [RSA_PUBLIC_PEM, RSA_PUBLIC_PKCS1_PEM] {
        let v = verifier(settings(pem(public), ALL_ASYMMETRIC));
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let token = mint(alg, &rsa_key(), &base_claims());
            assert_eq!(v.verify_at(&token, NOW).unwrap().sub(), Some("user-42"), "{alg:?}");
        }
    }
}

#[test]
fn valid_ec_and_eddsa_tokens() {
    let cases = [
        (Algorithm::ES256, ec256_key(), EC_P256_PUBLIC_PEM),
        (Algorithm::ES384, ec384_key(), EC_P384_PUBLIC_PEM),
        (Algorithm::EdDSA, ed_key(), ED25519_PUBLIC_PEM),
    ];
    for (alg, key, public) in cases {
        let v = verifier(settings(pem(public), &[alg]));
        let token = mint(alg, &key, &base_claims());
        assert_eq!(v.verify_at(&token, NOW).unwrap().sub(), Some("user-42"), "{alg:?}");
    }
}

#[test]
fn verify_uses_the_system_clock() {
    let now = jsonwebtoken::get_current_timestamp();
    let token = hs256(&json!({ "sub": "u", "exp": now + 600 }));
    assert!(hmac_verifier(|_| {}).verify(&token).is_ok());
    let old = hs256(&json!({ "sub": "u", "exp": now - 600 }));
    assert_eq!(hmac_verifier(|_| {}).verify(&old), Err(AuthError::Expired));
}

#[test]
fn the_check_locates_every_member_for_the_session() {
    // Payloads as an issuer may write them: spaces and newlines anywhere
    // JSON allows, escapes in values, nested values, non-ASCII text.
    let payloads = [
        r#"{"sub":"u","exp":1700000600}"#,
        "{ \"sub\" : \"u\" ,\n\t\"exp\" :1700000600 , \"x\": [1, {\"a\": \"}\"}],\"y\":\"a\\\"b\\\\\"  }  ",
        r#"{"sub":"\u00e9\n","exp":1700000600,"n":null,"t":true,"f":-1.5e3,"o":{},"l":[]}"#,
        r#"{"sub":"ünï","exp":1700000600,"emoji":"😀"}"#,
    ];
    for payload in payloads {
        let token = raw_token(r#"{"alg":"HS256"}"#, payload, "");
        let (signing_input, _) = token.rsplit_once('.').unwrap();
        let token = format!("{signing_input}.{}", b64(&hs256_mac(signing_input.as_bytes())));
        let claims = hmac_verifier(|_| {}).verify_at(&token, NOW).unwrap();
        let spans = claims.member_spans().expect("located");
        let map = claims.as_map();
        assert_eq!(spans.len(), map.len(), "{payload}");
        for (span, (name, value)) in spans.iter().zip(map) {
            assert_eq!(&claims.json()[span.name.clone()], name, "{payload}");
            let text = &claims.json()[span.value.clone()];
            assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), value, "{payload}: {text}");
        }
    }
    // A name with an escape is decoded, not located: the session splits the
    // text itself.
    let escaped = r#"{"s\u0075b":"u","exp":1700000600}"#;
    let token = raw_token(r#"{"alg":"HS256"}"#, escaped, "");
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    let token = format!("{signing_input}.{}", b64(&hs256_mac(signing_input.as_bytes())));
    let claims = hmac_verifier(|_| {}).verify_at(&token, NOW).unwrap();
    assert_eq!(claims.sub(), Some("u"));
    assert!(claims.member_spans().is_none());
}

fn hs256_mac(input: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn the_read_claims_are_looked_up_by_position() {
    for (i, name) in jwt::READ_CLAIMS.iter().enumerate() {
        assert_eq!(jwt::read_claim(name), Some(i), "{name}");
    }
    for other in ["name", "su", "subs", "Sub", ""] {
        assert_eq!(jwt::read_claim(other), None, "{other}");
    }
}

#[test]
fn duplicate_names_are_found_short_long_and_many() {
    let dup = |names: &[&str]| jwt::has_duplicates(names.iter().copied());
    assert!(!dup(&["sub", "iss", "aud", "exp", "iat", "nbf", "jti", "sid", "name", "email"]));
    assert!(dup(&["sub", "iss", "aud", "exp", "iat", "sub"]));
    assert!(dup(&["", "a", ""]));
    assert!(!dup(&["", "a", "\0"]));
    assert!(!dup(&["abcdefg", "abcdefgh", "abcdefgi"]), "same first seven bytes");
    assert!(dup(&["abcdefgh", "x", "abcdefgh"]));
    assert!(!dup(&["a\0", "a"]), "a NUL is not padding");
    let long_a = "n".repeat(300);
    let long_b = format!("{}m", "n".repeat(299));
    assert!(!dup(&[long_a.as_str(), long_b.as_str()]), "lengths past 255 compare in full");
    assert!(dup(&[long_a.as_str(), "x", long_a.as_str()]));
    let many: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    assert!(!jwt::has_duplicates(many.iter().map(String::as_str)));
    let mut repeated = many.clone();
    repeated.push("c7".to_owned());
    assert!(jwt::has_duplicates(repeated.iter().map(String::as_str)));
}

#[test]
fn claims_keep_payload_order() {
    let token = hs256(&json!({ "z": 1, "sub": "u", "a": 2, "exp": NOW + 1 }));
    let claims = hmac_verifier(|_| {}).verify_at(&token, NOW).unwrap();
    let names: Vec<&str> = claims.as_map().keys().map(String::as_str).collect();
    assert_eq!(names, ["z", "sub", "a", "exp"]);
}

// ---- algorithm attacks -----------------------------------------------------

#[test]
fn alg_none_in_any_casing_is_refused() {
    let v = hmac_verifier(|_| {});
    let payload = base_claims().to_string();
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{none}","typ":"JWT"}}"#);
        for signature in ["", "c2ln"] {
            let token = raw_token(&header, &payload, signature);
            assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed), "{none}");
        }
    }
}

#[test]
fn unknown_alg_strings_are_refused() {
    let v = hmac_verifier(|_| {});
    let payload = base_claims().to_string();
    for alg in ["hs256", "HS1024", "RSA-OAEP", "ES512", "", "HS256 "] {
        let token = raw_token(&format!(r#"{{"alg":"{alg}"}}"#), &payload, "c2ln");
        assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed), "{alg:?}");
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let forged =
        mint(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()).unwrap(), &base_claims());
    // Even with HS256 on the allow-list, an RSA key never verifies HMAC.
    for algorithms in [&[Algorithm::RS256, Algorithm::HS256][..], &[Algorithm::RS256][..]] {
        let v = verifier(settings(pem(RSA_PUBLIC_PEM), algorithms));
        assert_eq!(v.verify_at(&forged, NOW), Err(AuthError::AlgorithmNotAllowed));
    }
    // Same against a JWKS holding that RSA key.
    let v = verifier(settings(full_jwks(), &[Algorithm::RS256, Algorithm::HS256]));
    let forged = mint_kid(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()).unwrap(),
        &base_claims(),
    );
    assert_eq!(v.verify_at(&forged, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn alg_not_in_allow_list_is_refused() {
    let v = hmac_verifier(|s| s.algorithms = vec![Algorithm::HS256]);
    let token = mint(Algorithm::HS512, &hmac_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));

    let v = verifier(settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256]));
    let token = mint(Algorithm::PS256, &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn key_family_and_curve_mismatch_is_refused() {
    // RS256 token against an EC key.
    let v = verifier(settings(pem(EC_P256_PUBLIC_PEM), ALL_ASYMMETRIC));
    let token = mint(Algorithm::RS256, &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
    // ES384 token against a P-256 key.
    let token = mint(Algorithm::ES384, &ec384_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
    // HS256 token against an Ed25519 key.
    let v = verifier(settings(pem(ED25519_PUBLIC_PEM), &[Algorithm::EdDSA, Algorithm::HS256]));
    assert_eq!(v.verify_at(&hs256(&base_claims()), NOW), Err(AuthError::AlgorithmNotAllowed));
    // RS256 token against a shared secret.
    let v = hmac_verifier(|s| s.algorithms = vec![Algorithm::HS256, Algorithm::RS256]);
    let token = mint(Algorithm::RS256, &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn wrong_key_or_tampered_token_is_an_invalid_signature() {
    let v = hmac_verifier(|_| {});
    let other = mint(Algorithm::HS256, &EncodingKey::from_secret(b"another-secret").unwrap(), &base_claims());
    assert_eq!(v.verify_at(&other, NOW), Err(AuthError::InvalidSignature));

    let v = verifier(settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256]));
    let token = mint(Algorithm::RS256, &rsa2_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidSignature));
    let v2 = verifier(settings(pem(RSA2_PUBLIC_PEM), &[Algorithm::RS256]));
    assert!(v2.verify_at(&token, NOW).is_ok());

    // Swap the payload of a valid token.
    let good = mint(Algorithm::RS256, &rsa_key(), &base_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let evil_payload = b64(with(base_claims(), "sub", json!("admin")).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
    assert_eq!(v.verify_at(&tampered, NOW), Err(AuthError::InvalidSignature));

    // Empty signature.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(v.verify_at(&stripped, NOW), Err(AuthError::InvalidSignature));
}

/// A freshly generated key of `alg`'s family, not one the tests configure.
fn another_key(alg: Algorithm) -> EncodingKey {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
    match alg {
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            EncodingKey::from_ec_der(pair.to_pkcs8v1().unwrap().as_ref())
        }
        Algorithm::EdDSA => {
            let pair = Ed25519KeyPair::generate().unwrap();
            EncodingKey::from_ed_der(pair.to_pkcs8().unwrap().as_ref())
        }
        _ => rsa2_key(),
    }
}

#[test]
fn a_public_key_parsed_once_keeps_verifying_and_refusing() {
    // Public keys are parsed by aws-lc-rs on their first use for an
    // algorithm and kept: every later token is still checked in full, and
    // a key that verified one algorithm does not verify another family.
    let rsa_jwks = || jwks(vec![jwk(&rsa_key(), Algorithm::RS256, "r", false)]);
    let cases: Vec<(Algorithm, EncodingKey, KeySet, KeySet)> = vec![
        (Algorithm::RS256, rsa_key(), pem(RSA_PUBLIC_PEM), rsa_jwks()),
        (Algorithm::RS512, rsa_key(), pem(RSA_PUBLIC_PKCS1_PEM), rsa_jwks()),
        (Algorithm::PS256, rsa_key(), pem(RSA_PUBLIC_PEM), rsa_jwks()),
        (Algorithm::PS384, rsa_key(), pem(RSA_PUBLIC_PKCS1_PEM), rsa_jwks()),
        (
            Algorithm::ES256,
            ec256_key(),
            pem(EC_P256_PUBLIC_PEM),
            jwks(vec![jwk(&ec256_key(), Algorithm::ES256, "e", false)]),
        ),
        (
            Algorithm::EdDSA,
            ed_key(),
            pem(ED25519_PUBLIC_PEM),
            jwks(vec![jwk(&ed_key(), Algorithm::EdDSA, "d", false)]),
        ),
    ];
    for (alg, key, from_pem, from_jwks) in cases {
        for keys in [from_pem, from_jwks] {
            let v = verifier(settings(keys, ALL_ASYMMETRIC));
            for round in 0..3 {
                let claims = with(base_claims(), "sub", json!(format!("user-{round}")));
                let token = mint(alg, &key, &claims);
                let verified = v.verify_at(&token, NOW).unwrap();
                assert_eq!(verified.sub(), Some(format!("user-{round}").as_str()), "{alg:?}");
                // The same signature over another payload, and a flipped
                // signature bit, are refused by the key parsed before.
                let parts: Vec<&str> = token.split('.').collect();
                let evil = b64(with(claims.clone(), "sub", json!("admin")).to_string().as_bytes());
                let swapped = format!("{}.{evil}.{}", parts[0], parts[2]);
                assert_eq!(v.verify_at(&swapped, NOW), Err(AuthError::InvalidSignature), "{alg:?}");
                let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
                signature[round] ^= 1;
                let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&signature));
                assert_eq!(v.verify_at(&flipped, NOW), Err(AuthError::InvalidSignature), "{alg:?}");
            }
            // Another key of the same family is refused after this one was parsed.
            let token = mint(alg, &another_key(alg), &base_claims());
            assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidSignature), "{alg:?}");
        }
    }
}

#[test]
fn key_carrying_header_parameters_are_ignored() {
    // The attacker signs with their own key and points at it in every way
    // the header allows; the configured key still decides.
    let attacker_jwk = jwk(&rsa2_key(), Algorithm::RS256, "rsa-1", true);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    header.jwk = Some(attacker_jwk);
    header.jku = Some("https://attacker.example/jwks.json".to_owned());
    header.x5u = Some("https://attacker.example/cert.pem".to_owned());
    header.x5c = Some(vec!["MIIB".to_owned()]);
    let token = encode(&header, &base_claims(), &rsa2_key()).unwrap();

    let v = verifier(settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256]));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidSignature));
    let v = verifier(settings(full_jwks(), &[Algorithm::RS256]));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidSignature));
}

// ---- time claims -----------------------------------------------------------

#[test]
fn expiry_honours_the_leeway() {
    let v = hmac_verifier(|_| {});
    let at = |exp: Value| v.verify_at(&hs256(&with(base_claims(), "exp", exp)), NOW);
    assert!(at(json!(NOW)).is_ok());
    assert!(at(json!(NOW - 30)).is_ok(), "within the 30s leeway");
    assert_eq!(at(json!(NOW - 31)), Err(AuthError::Expired));
    assert_eq!(at(json!(0)), Err(AuthError::Expired));
    assert_eq!(at(json!(-5)), Err(AuthError::Expired));
    assert!(at(json!(NOW as f64 - 29.5)).is_ok(), "fractional exp");
    assert_eq!(at(json!(NOW as f64 - 30.5)), Err(AuthError::Expired));

    let strict = hmac_verifier(|s| s.leeway = Duration::ZERO);
    let token = hs256(&with(base_claims(), "exp", json!(NOW - 1)));
    assert_eq!(strict.verify_at(&token, NOW), Err(AuthError::Expired));
}

#[test]
fn nbf_in_the_future_is_not_yet_valid() {
    let v = hmac_verifier(|_| {});
    let at = |nbf: u64| v.verify_at(&hs256(&with(base_claims(), "nbf", json!(nbf))), NOW);
    assert!(at(NOW - 100).is_ok());
    assert!(at(NOW + 30).is_ok(), "within the leeway");
    assert_eq!(at(NOW + 31), Err(AuthError::NotYetValid));
}

#[test]
fn iat_in_the_future_is_not_yet_valid() {
    let v = hmac_verifier(|_| {});
    let at = |iat: u64| v.verify_at(&hs256(&with(base_claims(), "iat", json!(iat))), NOW);
    assert!(at(NOW - 100_000).is_ok());
    assert!(at(NOW + 30).is_ok(), "within the leeway");
    assert_eq!(at(NOW + 31), Err(AuthError::NotYetValid));
    assert_eq!(at(NOW + 3600), Err(AuthError::NotYetValid));
}

#[test]
fn exp_is_only_checked_when_present_unless_required() {
    let token = hs256(&without(base_claims(), "exp"));
    let v = hmac_verifier(|_| {});
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::MissingClaim("exp".into())));
    let v = hmac_verifier(|s| s.required_claims = vec!["sub".into()]);
    let claims = v.verify_at(&token, NOW).unwrap();
    assert_eq!(claims.exp(), None);
}

#[test]
fn claims_exp_accessor() {
    let c = |exp: Value| Claims::new(json!({ "exp": exp }).as_object().unwrap().clone()).exp();
    assert_eq!(c(json!(12)), Some(12));
    assert_eq!(c(json!(12.9)), Some(12));
    assert_eq!(c(json!(-1)), None);
    assert_eq!(c(json!("12")), None);
}

// ---- issuer, audience, required claims, claim types ------------------------

#[test]
fn issuer_is_checked_when_configured() {
    let v = hmac_verifier(|s| s.issuer = Some("https://auth.example".into()));
    let ok = hs256(&with(base_claims(), "iss", json!("https://auth.example")));
    assert!(v.verify_at(&ok, NOW).is_ok());
    let wrong = hs256(&with(base_claims(), "iss", json!("https://evil.example")));
    assert_eq!(v.verify_at(&wrong, NOW), Err(AuthError::InvalidIssuer));
    let prefix = hs256(&with(base_claims(), "iss", json!("https://auth.example.evil")));
    assert_eq!(v.verify_at(&prefix, NOW), Err(AuthError::InvalidIssuer));
    assert_eq!(v.verify_at(&hs256(&base_claims()), NOW), Err(AuthError::InvalidIssuer));

    // Not configured: any iss (or none) passes.
    assert!(hmac_verifier(|_| {}).verify_at(&wrong, NOW).is_ok());
}

#[test]
fn audience_string_or_array() {
    let v = hmac_verifier(|s| s.audience = vec!["app".into(), "app2".into()]);
    let at = |aud: Value| v.verify_at(&hs256(&with(base_claims(), "aud", aud)), NOW);
    assert!(at(json!("app")).is_ok());
    assert!(at(json!("app2")).is_ok());
    assert!(at(json!(["other", "app"])).is_ok());
    assert_eq!(at(json!("other")), Err(AuthError::InvalidAudience));
    assert_eq!(at(json!(["other", "third"])), Err(AuthError::InvalidAudience));
    assert_eq!(at(json!([])), Err(AuthError::InvalidAudience));
    assert_eq!(at(json!(["app", 7])), Err(AuthError::InvalidAudience));
    assert_eq!(at(json!(7)), Err(AuthError::InvalidAudience));
    assert_eq!(at(json!("APP")), Err(AuthError::InvalidAudience));
    assert_eq!(v.verify_at(&hs256(&base_claims()), NOW), Err(AuthError::InvalidAudience));

    // Not configured: a token carrying aud is accepted.
    let token = hs256(&with(base_claims(), "aud", json!("whatever")));
    assert!(hmac_verifier(|_| {}).verify_at(&token, NOW).is_ok());
}

#[test]
fn missing_required_claim_names_the_claim() {
    let v = hmac_verifier(|_| {});
    let err = v.verify_at(&hs256(&without(base_claims(), "sub")), NOW).unwrap_err();
    assert_eq!(err, AuthError::MissingClaim("sub".into()));
    assert_eq!(err.reason(), "missing_claim");
    assert_eq!(err.to_string(), "token is missing required claim `sub`");

    let v = hmac_verifier(|s| s.required_claims.push("tenant".into()));
    assert_eq!(v.verify_at(&hs256(&base_claims()), NOW), Err(AuthError::MissingClaim("tenant".into())));
    let null_tenant = hs256(&with(base_claims(), "tenant", Value::Null));
    assert_eq!(v.verify_at(&null_tenant, NOW), Err(AuthError::MissingClaim("tenant".into())));
    assert!(v.verify_at(&hs256(&with(base_claims(), "tenant", json!("t1"))), NOW).is_ok());
}

#[test]
fn identity_claims_must_be_strings() {
    let v = hmac_verifier(|_| {});
    for bad in [json!(42), json!(["a"]), json!({ "id": "a" }), json!(true), Value::Null] {
        let token = hs256(&with(base_claims(), "sub", bad.clone()));
        assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidClaims), "sub {bad}");
    }
    for name in ["iss", "jti", "sid"] {
        let token = hs256(&with(base_claims(), name, json!(1)));
        assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidClaims), "{name}");
    }
    for name in ["exp", "nbf", "iat"] {
        let token = hs256(&with(base_claims(), name, json!("1700000000")));
        assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidClaims), "{name}");
    }
    // Claim types are checked before required claims and expiry.
    let token = hs256(&json!({ "sub": 1, "exp": 1 }));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidClaims));
}

#[test]
fn check_order_signature_before_claims() {
    // An expired token with a bad signature reports the signature.
    let v = hmac_verifier(|_| {});
    let token = mint(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"other").unwrap(),
        &with(base_claims(), "exp", json!(1)),
    );
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidSignature));
    // Required claims before expiry, expiry before issuer and audience.
    let v = hmac_verifier(|s| {
        s.issuer = Some("https://a".into());
        s.audience = vec!["x".into()];
    });
    let token = hs256(&json!({ "exp": 1 }));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::MissingClaim("sub".into())));
    let token = hs256(&json!({ "sub": "u", "exp": 1 }));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::Expired));
    let token = hs256(&json!({ "sub": "u", "exp": NOW + 5, "iss": "https://b" }));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidIssuer));
}

// ---- malformed tokens ------------------------------------------------------

#[test]
fn malformed_structure() {
    let v = hmac_verifier(|_| {});
    let good = hs256(&base_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let payload = base_claims().to_string();
    let cases = [
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{}.{}.{}", "!!!", parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], "***", parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "not base64!"),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        raw_token("not json", &payload, "c2ln"),
        raw_token(r#"["alg","HS256"]"#, &payload, "c2ln"),
        raw_token(r#"{"typ":"JWT"}"#, &payload, "c2ln"),
        raw_token(r#"{"alg":256}"#, &payload, "c2ln"),
        raw_token(r#"{"alg":"HS256","kid":7}"#, &payload, "c2ln"),
        raw_token(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, &payload, "c2ln"),
        raw_token(r#"{"alg":"HS256","b64":false}"#, &payload, "c2ln"),
        raw_token(r#"{"alg":"HS256","alg":"none"}"#, &payload, "c2ln"),
        raw_token(r#"{"alg":"HS256"}"#, "[1,2,3]", "c2ln"),
        raw_token(r#"{"alg":"HS256"}"#, r#""a string""#, "c2ln"),
        raw_token(r#"{"alg":"HS256"}"#, "not json", "c2ln"),
        raw_token(r#"{"alg":"HS256"}"#, "", "c2ln"),
        raw_token(r#"{"alg":"HS256"}"#, r#"{"sub":"a","sub":"b"}"#, "c2ln"),
    ];
    for token in &cases {
        assert_eq!(v.verify_at(token, NOW), Err(AuthError::Malformed), "{token}");
    }
}

#[test]
fn oversized_token_is_malformed_before_crypto() {
    let v = hmac_verifier(|_| {});
    let big = hs256(&with(base_claims(), "pad", json!("x".repeat(9000))));
    assert!(big.len() > 8192);
    assert_eq!(v.verify_at(&big, NOW), Err(AuthError::Malformed));

    // Just under the limit is fine.
    let mut pad = 6300;
    let token = loop {
        let t = hs256(&with(base_claims(), "pad", json!("x".repeat(pad))));
        if t.len() > 8192 {
            pad -= 1;
            continue;
        }
        break t;
    };
    assert!(token.len() <= 8192 && token.len() > 8000, "{}", token.len());
    assert!(v.verify_at(&token, NOW).is_ok());
}

// ---- JWKS ------------------------------------------------------------------

#[test]
fn jwks_selects_the_key_by_kid() {
    let v = verifier(settings(full_jwks(), ALL_ASYMMETRIC));
    let cases = [
        (Algorithm::RS256, "rsa-1", rsa_key()),
        (Algorithm::PS256, "rsa-1", rsa_key()),
        (Algorithm::RS256, "rsa-2", rsa2_key()),
        (Algorithm::ES256, "ec-1", ec256_key()),
        (Algorithm::EdDSA, "ed-1", ed_key()),
    ];
    for (alg, kid, key) in cases {
        let token = mint_kid(alg, Some(kid), &key, &base_claims());
        assert!(v.verify_at(&token, NOW).is_ok(), "{alg:?} {kid}");
    }
    // Signed by rsa-2 but naming rsa-1.
    let token = mint_kid(Algorithm::RS256, Some("rsa-1"), &rsa2_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::InvalidSignature));
}

#[test]
fn jwks_unknown_or_missing_kid() {
    let v = verifier(settings(full_jwks(), ALL_ASYMMETRIC));
    let token = mint_kid(Algorithm::RS256, Some("rsa-3"), &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownKid));
    let long_kid = "k".repeat(257);
    let token = mint_kid(Algorithm::RS256, Some(&long_kid), &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownKid));
    // No kid and several keys: ambiguous.
    let token = mint_kid(Algorithm::RS256, None, &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownKid));

    // No kid and exactly one key: that key.
    let single = jwks(vec![jwk(&rsa_key(), Algorithm::RS256, "only", false)]);
    let v = verifier(settings(single, &[Algorithm::RS256]));
    assert!(v.verify_at(&token, NOW).is_ok());
    let token = mint_kid(Algorithm::RS256, Some("other"), &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownKid));
}

#[test]
fn jwks_key_is_bound_to_its_algorithms() {
    let v = verifier(settings(full_jwks(), ALL_ASYMMETRIC));
    // rsa-2 declares alg RS256: PS256 with it is refused.
    let token = mint_kid(Algorithm::PS256, Some("rsa-2"), &rsa2_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
    // The EC kid with an RSA algorithm.
    let token = mint_kid(Algorithm::RS256, Some("ec-1"), &rsa_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn jwks_loading_skips_unusable_keys() {
    let rsa = jwk(&rsa_key(), Algorithm::RS256, "rsa-1", true);
    let mut doc = serde_json::to_value(JwkSet { keys: vec![rsa] }).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    let mut enc = keys[0].clone();
    enc["kid"] = json!("enc-1");
    enc["use"] = json!("enc");
    keys.push(enc);
    let mut oaep = keys[0].clone();
    oaep["kid"] = json!("oaep-1");
    oaep["alg"] = json!("RSA-OAEP");
    keys.push(oaep);
    let mut sign_only = keys[0].clone();
    sign_only["kid"] = json!("sign-only");
    sign_only["key_ops"] = json!(["sign"]);
    keys.push(sign_only);
    keys.push(json!({ "kty": "oct", "kid": "hmac", "k": b64(HMAC_SECRET) }));
    keys.push(json!({ "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" }));
    keys.push(json!({ "kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64(&[1; 32]) }));
    keys.push(json!({ "kty": "foo", "kid": "foo" }));

    let set = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
    assert!(set.supports(Algorithm::RS256));
    assert!(!set.supports(Algorithm::PS256));
    assert!(!set.supports(Algorithm::HS256), "oct keys are never loaded from a JWKS");
    let v = verifier(settings(set, &[Algorithm::RS256, Algorithm::HS256]));
    for kid in ["enc-1", "oaep-1", "sign-only", "p521", "foo"] {
        let token = mint_kid(Algorithm::RS256, Some(kid), &rsa_key(), &base_claims());
        assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownKid), "{kid}");
    }
    let token = mint_kid(Algorithm::HS256, Some("hmac"), &hmac_key(), &base_claims());
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownKid));
    let token = mint_kid(Algorithm::RS256, Some("rsa-1"), &rsa_key(), &base_claims());
    assert!(v.verify_at(&token, NOW).is_ok());
}

#[test]
fn jwks_loading_errors() {
    assert!(matches!(KeySet::from_jwks_json(br#"{"keys": []}"#), Err(KeyError::NoUsableKeys)));
    let only_enc = json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] });
    assert!(matches!(KeySet::from_jwks_json(only_enc.to_string().as_bytes()), Err(KeyError::NoUsableKeys)));
    // The parse error says where, never what.
    let err = KeySet::from_jwks_json(br#"{"keys": "super-secret-value"}"#).unwrap_err();
    assert!(matches!(err, KeyError::InvalidJwks(_)));
    assert!(!err.to_string().contains("super-secret-value"), "{err}");
    assert!(KeySet::from_jwks_json(b"not json").is_err());
    // A supported key type with broken parameters is an error, not a skip.
    let broken = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA" }] });
    assert!(matches!(KeySet::from_jwks_json(broken.to_string().as_bytes()), Err(KeyError::InvalidJwks(_))));
}

// ---- PEM -------------------------------------------------------------------

#[test]
fn pem_family_detection_and_supports() {
    let rsa = pem(RSA_PUBLIC_PEM);
    assert!(rsa.supports(Algorithm::RS256) && rsa.supports(Algorithm::PS512));
    assert!(!rsa.supports(Algorithm::HS256) && !rsa.supports(Algorithm::ES256));
    assert!(pem(RSA_PUBLIC_PKCS1_PEM).supports(Algorithm::RS384));
    let p256 = pem(EC_P256_PUBLIC_PEM);
    assert!(p256.supports(Algorithm::ES256) && !p256.supports(Algorithm::ES384));
    let p384 = pem(EC_P384_PUBLIC_PEM);
    assert!(p384.supports(Algorithm::ES384) && !p384.supports(Algorithm::ES256));
    let ed = pem(ED25519_PUBLIC_PEM);
    assert!(ed.supports(Algorithm::EdDSA) && !ed.supports(Algorithm::RS256));
    let secret = KeySet::from_secret(Secret::new("s"));
    assert!(secret.supports(Algorithm::HS512) && !secret.supports(Algorithm::RS256));
}

#[test]
fn pem_loading_errors() {
    let load = |text: &str| KeySet::from_pem(text.as_bytes()).unwrap_err();
    assert!(matches!(load(RSA_PRIVATE_PEM), KeyError::PrivateKey));
    assert!(matches!(load(EC_P256_PRIVATE_PEM), KeyError::PrivateKey));
    assert!(matches!(load(ED25519_PRIVATE_PEM), KeyError::PrivateKey));
    assert!(matches!(load(RSA1024_PUBLIC_PEM), KeyError::WeakRsaKey));
    assert!(matches!(load(EC_P521_PUBLIC_PEM), KeyError::UnsupportedKey(_)));
    assert!(matches!(load("not a pem"), KeyError::InvalidPem));
    assert!(matches!(load(""), KeyError::InvalidPem));
    let two = format!("{RSA_PUBLIC_PEM}\n{EC_P256_PUBLIC_PEM}");
    assert!(matches!(load(&two), KeyError::InvalidPem));
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    assert!(matches!(load(cert), KeyError::InvalidPem));
    let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert!(KeySet::from_pem(garbage.as_bytes()).is_err());
    // An EC key labelled as PKCS#1 RSA.
    let mislabelled = EC_P256_PUBLIC_PEM.replace("PUBLIC KEY", "RSA PUBLIC KEY");
    assert!(KeySet::from_pem(mislabelled.as_bytes()).is_err());
    // No message carries key material.
    let body_line = RSA_PRIVATE_PEM.lines().nth(1).unwrap();
    assert!(!load(RSA_PRIVATE_PEM).to_string().contains(body_line));
}

// ---- several issuers -------------------------------------------------------

fn two_issuers() -> Verifier {
    let mut a = hmac_settings();
    a.issuer = Some("https://a.example".into());
    let mut b = settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256]);
    b.issuer = Some("https://b.example".into());
    b.audience = vec!["app-b".into()];
    Verifier::new(vec![a, b])
}

#[test]
fn several_issuers_route_by_iss() {
    let v = two_issuers();
    let a = hs256(&with(base_claims(), "iss", json!("https://a.example")));
    assert!(v.verify_at(&a, NOW).is_ok());
    let b_claims = with(with(base_claims(), "iss", json!("https://b.example")), "aud", json!("app-b"));
    let b = mint(Algorithm::RS256, &rsa_key(), &b_claims);
    assert!(v.verify_at(&b, NOW).is_ok());
    // Entry b's own checks apply to its tokens.
    let b_wrong_aud = mint(Algorithm::RS256, &rsa_key(), &with(b_claims.clone(), "aud", json!("x")));
    assert_eq!(v.verify_at(&b_wrong_aud, NOW), Err(AuthError::InvalidAudience));
    // Naming issuer a but signed the way b signs: a's allow-list refuses.
    let cross = mint(Algorithm::RS256, &rsa_key(), &with(base_claims(), "iss", json!("https://a.example")));
    assert_eq!(v.verify_at(&cross, NOW), Err(AuthError::AlgorithmNotAllowed));
    // Naming issuer b but HMAC-signed with a's secret.
    let cross = hs256(&b_claims);
    assert_eq!(v.verify_at(&cross, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn several_issuers_unknown_iss() {
    let v = two_issuers();
    for iss in [json!("https://c.example"), json!(["https://a.example"]), json!(1)] {
        let token = hs256(&with(base_claims(), "iss", iss));
        assert_eq!(v.verify_at(&token, NOW), Err(AuthError::UnknownIssuer));
    }
    assert_eq!(v.verify_at(&hs256(&base_claims()), NOW), Err(AuthError::UnknownIssuer));
    assert_eq!(
        Verifier::new(Vec::new()).verify_at(&hs256(&base_claims()), NOW),
        Err(AuthError::UnknownIssuer)
    );
}

// ---- nothing leaks ---------------------------------------------------------

fn all_errors() -> Vec<AuthError> {
    vec![
        AuthError::MissingToken,
        AuthError::Malformed,
        AuthError::AlgorithmNotAllowed,
        AuthError::UnknownKid,
        AuthError::InvalidSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::InvalidIssuer,
        AuthError::UnknownIssuer,
        AuthError::InvalidAudience,
        AuthError::MissingClaim("sub".into()),
        AuthError::InvalidClaims,
    ]
}

#[test]
fn reason_codes_are_stable() {
    let reasons: Vec<&str> = all_errors().iter().map(|e| e.reason().as_str()).collect();
    assert_eq!(
        reasons,
        [
            "token_missing",
            "token_malformed",
            "algorithm_not_allowed",
            "unknown_kid",
            "invalid_signature",
            "token_expired",
            "token_not_yet_valid",
            "invalid_issuer",
            "unknown_issuer",
            "invalid_audience",
            "missing_claim",
            "invalid_claims",
        ]
    );
}

#[test]
fn errors_never_contain_the_token_or_claim_values() {
    let v = hmac_verifier(|s| {
        s.issuer = Some("https://auth.example".into());
        s.audience = vec!["app".into()];
    });
    let secret_sub = "sub-value-7f3a";
    let claims = json!({
        "sub": secret_sub, "exp": NOW + 60, "iss": "https://auth.example", "aud": "other-aud-9c1"
    });
    let tokens = [
        hs256(&claims),
        hs256(&with(claims.clone(), "exp", json!(1))),
        hs256(&with(claims.clone(), "iss", json!("iss-value-55e1"))),
        hs256(&with(claims.clone(), "sub", json!(["arr-value-0b2"]))),
        mint(Algorithm::HS256, &EncodingKey::from_secret(b"k").unwrap(), &claims),
        raw_token(r#"{"alg":"nOnE"}"#, &claims.to_string(), ""),
    ];
    for token in &tokens {
        let err = v.verify_at(token, NOW).unwrap_err();
        let shown = format!("{err} {err:?}");
        for part in token.split('.').filter(|p| !p.is_empty()) {
            assert!(!shown.contains(part), "{shown}");
        }
        for value in [secret_sub, "other-aud-9c1", "iss-value-55e1", "arr-value-0b2"] {
            assert!(!shown.contains(value), "{shown}");
        }
    }
    for err in all_errors() {
        assert!(!err.to_string().is_empty());
        assert!(!err.to_string().contains("eyJ"));
    }
}

#[test]
fn claims_debug_shows_names_only() {
    let token = hs256(&json!({ "sub": "sub-value-7f3a", "exp": NOW + 9, "email": "ada@example.com" }));
    let claims = hmac_verifier(|_| {}).verify_at(&token, NOW).unwrap();
    let shown = format!("{claims:?} {claims:#?}");
    assert!(shown.contains("sub") && shown.contains("email"), "{shown}");
    assert!(!shown.contains("sub-value-7f3a") && !shown.contains("ada@example.com"), "{shown}");
    assert!(!shown.contains(&(NOW + 9).to_string()), "{shown}");
}

#[test]
fn key_set_and_verifier_debug_show_no_key_material() {
    let secret = "hmac-secret-value-d41d";
    let v = Verifier::new(vec![settings(KeySet::from_secret(Secret::new(secret)), &[Algorithm::HS256])]);
    let shown = format!("{v:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(!shown.contains(&format!("{:?}", secret.as_bytes())), "{shown}");

    let rsa_body = RSA_PUBLIC_PEM.lines().nth(1).unwrap();
    for set in [pem(RSA_PUBLIC_PEM), full_jwks()] {
        let shown = format!("{set:?}");
        assert!(!shown.contains(rsa_body), "{shown}");
        assert!(!shown.contains("SecretOrDer") && !shown.contains("Modulus"), "{shown}");
    }
    assert!(format!("{:?}", full_jwks()).contains("rsa-2"));
}

#[test]
fn hmac_sessions_are_cached_on_second_use_public_key_sessions_at_once() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({ "sub": "user-42", "exp": now + 600 });
    let cases = [
        (
            hmac_settings(),
            mint(Algorithm::HS256, &EncodingKey::from_secret(HMAC_SECRET).unwrap(), &claims),
            2,
        ),
        (settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256]), mint(Algorithm::RS256, &rsa_key(), &claims), 1),
    ];
    for (settings, token, misses) in cases {
        let auth = authenticator(verifier(settings), new_cache());
        for _ in 0..4 {
            let session = block_on(auth.authenticate(&token, Now::system())).unwrap();
            assert_eq!(session.derived.as_deref(), Some("user-42"));
        }
        assert_eq!(auth.stats(), (4 - misses, misses), "{token:.20}");
    }
}

/// Runs a future that never waits (verification with static keys does no
/// I/O): `session` needs no async runtime, not even in its tests.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a session future waited with static keys"),
    }
}

fn new_cache() -> std::sync::Arc<TokenCache<Option<String>>> {
    std::sync::Arc::new(TokenCache::new(CacheSettings::default()))
}

fn authenticator(
    verifier: Verifier,
    cache: std::sync::Arc<TokenCache<Option<String>>>,
) -> Authenticator<Option<String>> {
    Authenticator::new(verifier, cache, |c: &Claims| c.sub().map(str::to_owned))
}

/// The clock at `NOW`.
fn at_now() -> Now {
    Now { unix: NOW, instant: std::time::Instant::now(), wall: UNIX_EPOCH + Duration::from_secs(NOW) }
}

#[test]
fn a_cached_session_is_never_used_past_exp() {
    let auth = authenticator(verifier(settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256])), new_cache());
    // `exp` two seconds ahead; the leeway (30 s) would still accept it on
    // a fresh verification, but the cache must not serve it past `exp`.
    let token = mint(Algorithm::RS256, &rsa_key(), &json!({ "sub": "u", "exp": NOW + 2 }));
    let t0 = at_now();
    block_on(auth.authenticate(&token, t0)).unwrap();
    block_on(auth.authenticate(&token, t0.after(Duration::from_secs(1)))).unwrap();
    assert_eq!(auth.stats(), (1, 1));
    let late = t0.after(Duration::from_secs(3));
    assert!(
        block_on(auth.authenticate(&token, late)).is_ok(),
        "within the leeway a fresh verification accepts"
    );
    assert_eq!(auth.stats(), (1, 2), "past exp the cache was not used");
}

#[test]
fn the_cache_outlives_a_reload_but_not_a_change_of_checks() {
    let cache = new_cache();
    let rsa = || settings(pem(RSA_PUBLIC_PEM), &[Algorithm::RS256]);
    let token = mint(Algorithm::RS256, &rsa_key(), &json!({ "sub": "u", "exp": NOW + 600, "aud": "a" }));
    let before = authenticator(verifier(rsa()), cache.clone());
    block_on(before.authenticate(&token, at_now())).unwrap();
    // A reload with the same checks: a new authenticator, the same cache.
    let same = authenticator(verifier(rsa()), cache.clone());
    block_on(same.authenticate(&token, at_now())).unwrap();
    assert_eq!(same.stats(), (1, 1), "the session verified before the reload is reused");
    // A reload that adds an audience check must verify again (and refuse).
    let mut stricter = rsa();
    stricter.audience = vec!["b".to_owned()];
    let stricter = authenticator(verifier(stricter), cache.clone());
    assert_eq!(block_on(stricter.authenticate(&token, at_now())).unwrap_err(), AuthError::InvalidAudience);
    assert_eq!(cache.stats(), (1, 2));
}

#[test]
fn invalid_utf8_anywhere_in_a_correctly_signed_token_is_malformed() {
    use hmac::Mac as _;
    let sign = |header: &[u8], payload: &[u8]| {
        let input = format!("{}.{}", b64(header), b64(payload));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let payload = serde_json::to_vec(&base_claims()).unwrap();
    // In a member the parser skips (`typ`), and in a claim.
    let header = [&br#"{"alg":"HS256","typ":""#[..], &[0xfb, 0xfb], br#""}"#].concat();
    let bad_claim = [&br#"{"sub":"user-42","exp":1700000600,"x":""#[..], &[0xfb], br#""}"#].concat();
    let v = hmac_verifier(|_| {});
    assert_eq!(v.verify_at(&sign(&header, &payload), NOW).unwrap_err(), AuthError::Malformed);
    assert_eq!(v.verify_at(&sign(br#"{"alg":"HS256"}"#, &bad_claim), NOW).unwrap_err(), AuthError::Malformed);
    assert!(v.verify_at(&sign(br#"{"alg":"HS256","typ":"JWT"}"#, &payload), NOW).is_ok());
}

#[test]
fn a_required_claim_written_as_null_with_spaces_is_missing() {
    use hmac::Mac as _;
    let payload = format!(r#"{{ "sub" : "user-42" , "exp" : {} , "tenant" :  null }}"#, NOW + 600);
    let input = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(payload.as_bytes()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET).unwrap();
    mac.update(input.as_bytes());
    let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
    let v = hmac_verifier(|s| s.required_claims.push("tenant".into()));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::MissingClaim("tenant".into())));
    let v = hmac_verifier(|_| {});
    assert!(v.verify_at(&token, NOW).is_ok());
}

// ---- RFC 9864 names, fingerprints, hostile payloads --------------------------

/// A token whose header is `header` (raw JSON), signed with `key` as `alg`.
fn signed_raw(header: &str, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).unwrap();
    format!("{signing_input}.{signature}")
}

#[test]
fn ed25519_is_the_rfc_9864_name_of_eddsa() {
    assert_eq!(parse_algorithm("Ed25519"), Some(Algorithm::EdDSA));
    assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
    assert_eq!(parse_algorithm("Ed448"), None);
    assert_eq!(parse_algorithm("none"), None);
    let token = signed_raw(r#"{"alg":"Ed25519","typ":"JWT"}"#, &base_claims(), &ed_key(), Algorithm::EdDSA);
    // With a PEM key and with a JWKS whose key says `"alg": "Ed25519"`.
    let v = verifier(settings(pem(ED25519_PUBLIC_PEM), &[Algorithm::EdDSA]));
    assert_eq!(v.verify_at(&token, NOW).unwrap().sub(), Some("user-42"));
    let mut key = serde_json::to_value(jwk(&ed_key(), Algorithm::EdDSA, "ed-9864", true)).unwrap();
    assert_eq!(key["alg"], "EdDSA");
    key["alg"] = json!("Ed25519");
    let set = KeySet::from_jwks_json(json!({ "keys": [key] }).to_string().as_bytes()).unwrap();
    assert!(set.supports(Algorithm::EdDSA), "a JWK with alg Ed25519 is not skipped");
    let token =
        signed_raw(r#"{"alg":"Ed25519","kid":"ed-9864"}"#, &base_claims(), &ed_key(), Algorithm::EdDSA);
    assert!(verifier(settings(set, &[Algorithm::EdDSA])).verify_at(&token, NOW).is_ok());
    // Still bound to the key family: an RSA key does not verify `Ed25519`.
    let v = verifier(settings(pem(RSA_PUBLIC_PEM), ALL_ASYMMETRIC));
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn each_key_has_a_fingerprint_that_another_key_under_its_kid_does_not_share() {
    let claims = base_claims();
    let old = jwks(vec![jwk(&rsa_key(), Algorithm::RS256, "k", true)]);
    let new = jwks(vec![jwk(&rsa2_key(), Algorithm::RS256, "k", true)]);
    let token = mint_kid(Algorithm::RS256, Some("k"), &rsa_key(), &claims);
    let verified = verifier(settings(old.clone(), &[Algorithm::RS256])).verify_detailed(&token, NOW).unwrap();
    assert!(old.holds(&verified.key));
    assert!(!new.holds(&verified.key), "the same kid with another key is another key");
    // The same key in the same form is the same key (a refetched JWKS).
    let again = jwks(vec![jwk(&rsa_key(), Algorithm::RS256, "k", true)]);
    assert!(again.holds(&verified.key));
    // HMAC: bound to the secret, which the fingerprint does not reveal.
    let hs = hmac_verifier(|_| {}).verify_detailed(&hs256(&claims), NOW).unwrap();
    assert!(KeySet::from_secret(Secret::new(HMAC_SECRET)).holds(&hs.key));
    assert!(!KeySet::from_secret(Secret::new("another-secret-0123456789abcdef!!")).holds(&hs.key));
    let shown = format!("{:?}", hs.key);
    assert!(shown.len() < 30 && !shown.contains(&hex::encode(HMAC_SECRET)), "{shown}");
}

#[test]
fn duplicates_are_found_among_many_members_and_many_members_are_fine() {
    let v = hmac_verifier(|_| {});
    let mut members: Vec<String> = (0..500).map(|i| format!("\"c{i}\":{i}")).collect();
    members.push(format!("\"sub\":\"u\",\"exp\":{}", NOW + 600));
    let payload = format!("{{{}}}", members.join(","));
    let header = r#"{"alg":"HS256"}"#;
    let sign = |payload: &str| {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &hmac_key(), Algorithm::HS256).unwrap();
        format!("{input}.{sig}")
    };
    let token = sign(&payload);
    assert!(token.len() < 8192, "{}", token.len());
    assert!(v.verify_at(&token, NOW).is_ok());
    // A repeat of the first member at the very end.
    let repeated = format!("{{{},\"c0\":1}}", members.join(","));
    assert_eq!(v.verify_at(&sign(&repeated), NOW), Err(AuthError::Malformed));
    // And in the header, past a few members.
    let many: Vec<String> = (0..40).map(|i| format!("\"h{i}\":1")).collect();
    let header = format!(r#"{{"alg":"HS256",{},"h7":2}}"#, many.join(","));
    let token = raw_token(&header, &base_claims().to_string(), "c2ln");
    assert_eq!(v.verify_at(&token, NOW), Err(AuthError::Malformed));
}

#[test]
fn a_colliding_token_never_gets_the_cached_session() {
    let cache = TokenCache::where_every_token_collides(CacheSettings::default());
    let auth = Authenticator::new(hmac_verifier(|_| {}), std::sync::Arc::new(cache), |c: &Claims| {
        c.sub().map(str::to_owned)
    });
    let now = Now::system();
    let mint_for = |sub: &str, key: &[u8]| {
        let claims = json!({ "sub": sub, "exp": now.unix + 600 });
        mint(Algorithm::HS256, &EncodingKey::from_secret(key).unwrap(), &claims)
    };
    let alice = mint_for("alice", HMAC_SECRET);
    for _ in 0..3 {
        assert_eq!(block_on(auth.authenticate(&alice, now)).unwrap().derived.as_deref(), Some("alice"));
    }
    assert_eq!(auth.stats(), (1, 2), "cached on its second use, a hit on its third");
    // Same hash, but a forged token: refused, not served alice's session.
    let forged = mint_for("alice", b"not-the-secret");
    assert_eq!(block_on(auth.authenticate(&forged, now)).unwrap_err(), AuthError::InvalidSignature);
    let mut tampered = alice.clone();
    tampered.push('A');
    assert!(block_on(auth.authenticate(&tampered, now)).is_err());
    // Same hash, a valid token of someone else: their own session.
    let bob = mint_for("bob", HMAC_SECRET);
    assert_eq!(block_on(auth.authenticate(&bob, now)).unwrap().derived.as_deref(), Some("bob"));
    assert_eq!(block_on(auth.authenticate(&alice, now)).unwrap().derived.as_deref(), Some("alice"));
    assert_eq!(auth.stats().0, 1, "no colliding token was a hit");
}
