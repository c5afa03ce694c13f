//! Session tokens: `session::extract_token` (header, cookie and form
//! sources) and `session::Verifier::verify_at` (JWT structure, `alg`
//! allow-list and key family, signature, claim checks).
//!
//! The first input byte picks a mode, the rest is split at NUL bytes:
//! - 0: `TOKEN`, verified by one HS issuer (HS256/HS384/HS512, fixed
//!   secret, `iss` and `aud` checked);
//! - 1: `TOKEN`, verified by two issuers picked by `iss`: an RSA PEM key
//!   (RS256, PS256) and an EC P-256 PEM key (ES256);
//! - 2: `HEADER_JSON \0 PAYLOAD_JSON \0 NOW`: the target signs the token
//!   itself with the HS secret (HMAC of the header's `alg` when it is an HS
//!   one) so the fuzzer reaches the claim checks past the signature;
//! - 3: `AUTHORIZATION \0 COOKIE \0 X_SESSION \0 FORM_BODY \0 ORDER`: a
//!   request whose token is extracted (sources in the order ORDER's bytes
//!   pick) and then verified as in mode 0.
//!
//! Properties: never panics; no error message contains the token; a
//! verified token passed every documented check (types, required claims,
//! `exp`/`nbf`/`iat` with leeway, `iss`, `aud`), and its claims are its
//! payload (and the members the check located are the payload's); an extracted token is non-empty, taken from the source that
//! says so, and a bearer token has no space or tab.
#![no_main]

mod common;

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use channelgate::http::request::parse_form;
use channelgate::secret::Secret;
use channelgate::session::{
    AuthError, IssuerSettings, KeySet, TokenOrigin, TokenSource, Verifier, extract_token,
};
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, COOKIE, HeaderName, HeaderValue};
use http::HeaderMap;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const HS_ISSUER: &str = "https://issuer.fuzz.example";
const AUDIENCE: &str = "fuzz-app";
const LEEWAY: Duration = Duration::from_secs(30);

fn hs_settings() -> IssuerSettings {
    IssuerSettings {
        issuer: Some(HS_ISSUER.to_owned()),
        audience: vec![AUDIENCE.to_owned(), "other-app".to_owned()],
        algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        leeway: LEEWAY,
        required_claims: vec!["sub".to_owned(), "exp".to_owned()],
        keys: KeySet::from_secret(Secret::new(common::HS_SECRET)),
    }
}

static HS: LazyLock<Verifier> = LazyLock::new(|| Verifier::new(vec![hs_settings()]));

static PEM: LazyLock<Verifier> = LazyLock::new(|| {
    let rsa = KeySet::from_pem(common::RSA_PUBLIC_PEM.as_bytes()).expect("rsa key");
    let ec = KeySet::from_pem(common::EC_P256_PUBLIC_PEM.as_bytes()).expect("ec key");
    Verifier::new(vec![
        IssuerSettings {
            issuer: Some("rsa-issuer".to_owned()),
            audience: vec![],
            algorithms: vec![Algorithm::RS256, Algorithm::PS256],
            leeway: LEEWAY,
            required_claims: IssuerSettings::default_required_claims(),
            keys: rsa,
        },
        IssuerSettings {
            issuer: Some("ec-issuer".to_owned()),
            audience: vec![AUDIENCE.to_owned()],
            algorithms: vec![Algorithm::ES256],
            leeway: LEEWAY,
            required_claims: vec!["sub".to_owned(), "exp".to_owned(), "tenant".to_owned()],
            keys: ec,
        },
    ])
});

/// Claim names as `Claims`' `Debug` is documented to print them.
struct Names<'a>(&'a Map<String, Value>);

impl std::fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Checks a verification result against the documented rules.
fn check(verifier: &Verifier, token: &str, now: u64, result: &Result<channelgate::session::Claims, AuthError>) {
    match result {
        Ok(claims) => {
            let map = claims.as_map();
            let iss = map.get("iss").and_then(Value::as_str);
            let settings = match verifier.issuers() {
                [only] => only,
                several => several
                    .iter()
                    .find(|s| s.issuer.as_deref() == iss)
                    .expect("several issuers: iss picked one"),
            };
            if let Some(expected) = &settings.issuer {
                assert_eq!(iss, Some(expected.as_str()));
            }
            for name in &settings.required_claims {
                assert!(map.get(name).is_some_and(|v| !v.is_null()), "required claim {name} absent");
            }
            for name in ["sub", "iss", "jti", "sid"] {
                assert!(map.get(name).is_none_or(Value::is_string), "{name} is not a string");
            }
            let leeway = settings.leeway.as_secs_f64();
            let now = now as f64;
            let time = |name: &str| map.get(name).map(|v| v.as_f64().expect("numeric claim"));
            assert!(time("exp").is_none_or(|exp| now <= exp + leeway), "expired token accepted");
            assert!(time("nbf").is_none_or(|nbf| nbf <= now + leeway), "future nbf accepted");
            assert!(time("iat").is_none_or(|iat| iat <= now + leeway), "future iat accepted");
            if !settings.audience.is_empty() {
                let ok = |a: &str| settings.audience.iter().any(|x| x == a);
                let aud_ok = match map.get("aud") {
                    Some(Value::String(a)) => ok(a),
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(ok),
                    _ => false,
                };
                assert!(aud_ok, "audience not accepted but token verified");
            }
            // Debug prints names only.
            assert_eq!(format!("{claims:?}"), format!("Claims({:?})", Names(map)));
            // The members the check located are the payload's, name and value.
            if let Some(spans) = claims.member_spans() {
                assert_eq!(spans.len(), map.len(), "a located member per claim");
                for (span, (name, value)) in spans.iter().zip(map) {
                    assert_eq!(&claims.json()[span.name.clone()], name, "located name");
                    let text = &claims.json()[span.value.clone()];
                    let located: Value = serde_json::from_str(text).expect("a located value is JSON");
                    assert_eq!(&located, value, "located value of {name}");
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            if token.len() >= 60 {
                assert!(!msg.contains(token), "error message contains the token");
            }
            assert!(!e.reason().as_str().is_empty());
        }
    }
}

fn verify(verifier: &Verifier, token: &str, now: u64) {
    let result = verifier.verify_at(token, now);
    check(verifier, token, now, &result);
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Mode 2: sign `header.payload` with the HS secret, verify, and compare.
fn signed(parts: &[&[u8]]) {
    let (header, payload) = (parts[0], parts[1]);
    let now = match parts[2] {
        [] => common::NOW,
        digits => common::text(digits).trim().parse().unwrap_or(common::NOW),
    };
    let alg = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = mac(alg.as_deref(), input.as_bytes());
    let token = format!("{input}.{}", b64(&signature));
    let result = HS.verify_at(&token, now);
    check(&HS, &token, now, &result);
    if let Ok(claims) = &result {
        let payload: Map<String, Value> = serde_json::from_slice(payload).expect("verified payload is an object");
        assert_eq!(claims.as_map(), &payload, "claims differ from the payload");
        assert!(matches!(alg.as_deref(), Some("HS256" | "HS384" | "HS512")), "alg {alg:?} accepted");
    }
}

fn mac(alg: Option<&str>, input: &[u8]) -> Vec<u8> {
    macro_rules! sign {
        ($digest:ty) => {{
            let mut m = Hmac::<$digest>::new_from_slice(common::HS_SECRET).expect("any key size");
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Some("HS384") => sign!(sha2::Sha384),
        Some("HS512") => sign!(sha2::Sha512),
        _ => sign!(sha2::Sha256),
    }
}

/// Mode 3: extraction from a fuzzed request, then verification.
fn extracted(parts: &[&[u8]]) {
    let x_session = HeaderName::from_static("x-session");
    let mut headers = HeaderMap::new();
    // Each header part may carry several values, one per line.
    for (name, part) in [(AUTHORIZATION, parts[0]), (COOKIE, parts[1]), (x_session.clone(), parts[2])] {
        if part.is_empty() {
            continue;
        }
        for line in part.split(|&b| b == b'\n') {
            if let Ok(v) = HeaderValue::from_bytes(line) {
                headers.append(name.clone(), v);
            }
        }
    }
    let form = parse_form(parts[3]).map(|f| f.pairs).unwrap_or_default();
    let all = [
        TokenSource::Header(AUTHORIZATION),
        TokenSource::Cookie("session".to_owned()),
        TokenSource::Header(x_session.clone()),
        TokenSource::Form("token".to_owned()),
    ];
    let sources: Vec<TokenSource> = if parts[4].is_empty() {
        all.to_vec()
    } else {
        parts[4].iter().take(8).map(|b| all[usize::from(*b) % all.len()].clone()).collect()
    };
    match extract_token(&sources, &headers, &form) {
        Ok((token, origin)) => {
            assert!(!token.is_empty());
            let inside = |hay: &[u8]| hay.windows(token.len()).any(|w| w == token.as_bytes());
            match origin {
                TokenOrigin::Header => {
                    let a = headers.get_all(AUTHORIZATION).iter().any(|v| inside(v.as_bytes()));
                    let x = headers.get_all(&x_session).iter().any(|v| inside(v.as_bytes()));
                    assert!(a || x, "header token not from a header");
                    if a && !x {
                        assert!(!token.contains([' ', '\t']), "bearer token with a space");
                    }
                }
                TokenOrigin::Cookie => {
                    assert!(headers.get_all(COOKIE).iter().any(|v| inside(v.as_bytes())));
                    assert!(!token.contains(';'));
                }
                TokenOrigin::Form => {
                    assert!(form.iter().any(|(k, v)| k == "token" && v == token));
                }
            }
            verify(&HS, token, common::NOW);
        }
        Err(e) => assert!(matches!(e, AuthError::MissingToken | AuthError::Malformed), "{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => verify(&HS, &common::text(rest), common::NOW),
        1 => verify(&PEM, &common::text(rest), common::NOW),
        2 => signed(&common::fields(rest, 3)),
        _ => extracted(&common::fields(rest, 5)),
    }
});
