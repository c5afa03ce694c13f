//! Microbenchmarks of the request hot path (criterion):
//!
//! - `parse/*`: decoding an auth request body (form as pusher-js sends it,
//!   a batch of ten channels, JSON);
//! - `policy/*`: deciding one channel with the example policies in
//!   `policies/` (pattern match, CEL, presence data), and converting a
//!   claim set to CEL (done once per verified token);
//! - `sign/*`: the Pusher signature and the response body;
//! - `verify/*`: session tokens, HS256/RS256/ES256 (aws-lc-rs), uncached
//!   (every call verifies) and through the verified-token cache (a hit);
//! - `handle/*`: one whole request through `channelgate::http::handle`,
//!   in process (no socket, no hyper), audit log on.
//!
//! `cargo bench --bench hot_path` (all), `cargo bench --bench hot_path -- verify`
//! (a group). Numbers are per call on one core.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use channelgate::app::App;
use channelgate::http::request::{parse_form, parse_json};
use channelgate::policy::TokenValue;
use channelgate::policy::{Policy, Request};
use channelgate::pusher::{ChannelName, MasterKey, Signer, SocketId};
use channelgate::secret::Secret;
use channelgate::session::{
    Authenticator, CacheSettings, Claims, IssuerSettings, KeySet, Now, TokenCache, Verifier,
};

const HS_SECRET: &[u8] = b"benchmark-jwt-secret-0123456789abcdef";
const ISSUER: &str = "https://auth.bench.example";
const AUDIENCE: &str = "bench";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An identity provider's claim set, as the load benchmark's tokens carry.
fn claims(i: u64) -> serde_json::Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("user-{i:07}"), "name": format!("User {i}"),
        "email": format!("user-{i:07}@example.com"), "org": "acme", "team": "acme",
        "roles": ["member", "admin"], "rooms": ["42", "7"], "tenant": "acme", "picture": "https://x/y.png",
        "friends": ["user-0000001", "user-0000002"],
        "docs": ["100000", "100101", "100202", "100303", "100404", "100505", "100606"],
        "iat": now, "exp": now + 3600,
    })
}

fn token(alg: Algorithm, key: &EncodingKey, i: u64) -> String {
    let mut header = Header::new(alg);
    header.kid = Some("bench-1".into());
    jsonwebtoken::encode(&header, &claims(i), key).unwrap()
}

fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap(),
        _ => unreachable!(),
    }
}

fn verifier(alg: Algorithm) -> Verifier {
    let keys = match alg {
        Algorithm::HS256 => KeySet::from_secret(Secret::new(HS_SECRET.to_vec())),
        Algorithm::RS256 => KeySet::from_pem(RSA_PUBLIC_PEM.as_bytes()).unwrap(),
        Algorithm::ES256 => KeySet::from_pem(EC_PUBLIC_PEM.as_bytes()).unwrap(),
        _ => unreachable!(),
    };
    Verifier::new(vec![IssuerSettings {
        issuer: Some(ISSUER.into()),
        audience: vec![AUDIENCE.into()],
        algorithms: vec![alg],
        leeway: IssuerSettings::DEFAULT_LEEWAY,
        required_claims: IssuerSettings::default_required_claims(),
        keys,
    }])
}

/// What the gateway derives from verified claims (`app::claims_to_cel`):
/// the members the token check located (or the payload split into members),
/// converted when a policy reads them.
fn to_cel(claims: &Claims) -> TokenValue {
    claims
        .member_spans()
        .and_then(|spans| {
            TokenValue::from_located_members(
                claims.json(),
                spans.iter().map(|s| (s.name.clone(), s.value.clone())),
            )
        })
        .or_else(|| TokenValue::from_json_text(claims.json()))
        .unwrap()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let single = b"socket_id=123456.7654321&channel_name=private-user-user-0000042";
    g.bench_function("form_single", |b| {
        b.iter(|| {
            let f = parse_form(black_box(single)).unwrap();
            black_box((f.required("socket_id").unwrap().len(), f.one("channel_name").unwrap()));
        })
    });
    let mut batch = String::from("socket_id=123456.7654321");
    for i in 0..10 {
        batch.push_str(&format!("&channel_name%5B{i}%5D=private-doc-{}", 100_000 + i * 101));
    }
    g.bench_function("form_batch10", |b| {
        b.iter(|| {
            let f = parse_form(black_box(batch.as_bytes())).unwrap();
            black_box(f.batch_channels(50).unwrap().len());
        })
    });
    let json = br#"{"socket_id":"123456.7654321","channel_name":"private-user-user-0000042"}"#;
    g.bench_function("json_single", |b| b.iter(|| black_box(parse_json(black_box(json)).unwrap())));
    g.bench_function("protocol_ids", |b| {
        b.iter(|| {
            black_box(SocketId::parse(black_box("123456.7654321")).unwrap());
            black_box(ChannelName::parse(black_box("private-user-user-0000042")).unwrap());
        })
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy");
    let claims = Claims::new(claims(42).as_object().unwrap().clone());
    let token = to_cel(&claims);
    let socket = SocketId::parse("123456.7654321").unwrap();
    g.bench_function("claims_to_cel", |b| b.iter(|| black_box(to_cel(black_box(&claims)))));
    let cases: &[(&str, &str, &str)] = &[
        ("examples/quickstart/policies", "quickstart/own_channel", "private-user-user-0000042"),
        ("examples/quickstart/policies", "quickstart/presence_room", "presence-room-42"),
        ("examples/quickstart/policies", "quickstart/denied", "private-user-user-0000043"),
        ("policies/notifications", "notifications/own_channel", "private-user-user-0000042"),
        ("policies/notifications", "notifications/org_audit", "private-org-acme-audit"),
        ("policies/chat", "chat/tenant_room", "presence-t-acme-room-42"),
        ("policies/teams", "teams/encrypted_team", "private-encrypted-team-acme"),
        ("policies/teams", "teams/no_rule", "private-nothing-here"),
        ("bench/configs/policies", "bench/doc_channel", "private-doc-100606"),
    ];
    for (dir, name, channel) in cases {
        let policy = Policy::load(&repo(dir), 1024).unwrap();
        let channel = ChannelName::parse(channel).unwrap();
        let request = Request { token: &token, socket_id: &socket, origin: None };
        g.bench_function(*name, |b| b.iter(|| black_box(policy.authorize_channel(&request, &channel, None))));
    }
    g.finish();
}

fn sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("sign");
    let signer = Signer::new(
        "bench-app-key",
        Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()),
        Some(MasterKey::from_bytes([7; 32])),
    );
    let socket = SocketId::parse("123456.7654321").unwrap();
    let private = ChannelName::parse("private-user-user-0000042").unwrap();
    let presence = ChannelName::parse("presence-room-42").unwrap();
    let encrypted = ChannelName::parse("private-encrypted-team-acme").unwrap();
    let data = r#"{"user_id":"user-0000042","user_info":{"name":"User 42"}}"#;
    g.bench_function("hmac_only", |b| {
        b.iter(|| black_box(signer.hmac_hex(black_box(b"123456.7654321:private-user-user-0000042"))))
    });
    g.bench_function("private", |b| {
        b.iter(|| black_box(signer.authorize_channel(&socket, &private, None).unwrap().to_json()))
    });
    g.bench_function("presence", |b| {
        b.iter(|| black_box(signer.authorize_channel(&socket, &presence, Some(data)).unwrap().to_json()))
    });
    g.bench_function("encrypted", |b| {
        b.iter(|| black_box(signer.authorize_channel(&socket, &encrypted, None).unwrap().to_json()))
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (alg, name) in [(Algorithm::HS256, "hs256"), (Algorithm::RS256, "rs256"), (Algorithm::ES256, "es256")]
    {
        let key = encoding_key(alg);
        let token = token(alg, &key, 42);
        let v = verifier(alg);
        let t = now();
        g.bench_function(format!("{name}/uncached"), |b| {
            b.iter(|| black_box(v.verify_at(black_box(&token), t).unwrap()))
        });
        // A miss: verification plus the claims' CEL value, no cache.
        let uncached = Authenticator::new(
            verifier(alg),
            Arc::new(TokenCache::new(CacheSettings { capacity: 0, ..CacheSettings::default() })),
            to_cel,
        );
        g.bench_function(format!("{name}/authenticate_uncached"), |b| {
            b.iter(|| {
                black_box(rt.block_on(uncached.authenticate(black_box(&token), Now::system())).unwrap())
            })
        });
        let cached =
            Authenticator::new(verifier(alg), Arc::new(TokenCache::new(CacheSettings::default())), to_cel);
        rt.block_on(cached.authenticate(&token, Now::system())).unwrap();
        g.bench_function(format!("{name}/authenticate_cached"), |b| {
            b.iter(|| black_box(rt.block_on(cached.authenticate(black_box(&token), Now::system())).unwrap()))
        });
    }
    g.finish();
}

/// A gateway from `bench/configs/hs256.yaml` in a temporary folder (audit
/// to a file there, no listener: requests go straight to the handler).
fn handle(c: &mut Criterion) {
    let mut g = c.benchmark_group("handle");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("secrets")).unwrap();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::write(root.join("secrets/pusher"), "0123456789abcdef0123456789abcdef").unwrap();
    std::fs::write(root.join("secrets/jwt"), HS_SECRET).unwrap();
    std::fs::copy(repo("bench/configs/policies/bench.yaml"), root.join("policies/bench.yaml")).unwrap();
    let config = std::fs::read_to_string(repo("bench/configs/hs256.yaml"))
        .unwrap()
        .replace("@PORT@", "0")
        .replace("@ADMIN_PORT@", "0");
    std::fs::write(root.join("channelgate.yaml"), config).unwrap();
    let app = App::load(&root.join("channelgate.yaml")).unwrap();
    let runtime = app.runtime.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let key = encoding_key(Algorithm::HS256);
    let hit = token(Algorithm::HS256, &key, 42);
    let request = |token: &str, body: Bytes| {
        http::Request::post("/pusher/auth")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", body.len())
            .body(Full::new(body))
            .unwrap()
    };
    let run = |req| {
        let resp = rt.block_on(channelgate::http::handle(runtime.clone(), peer, req)).unwrap();
        assert_eq!(resp.status(), 200);
        resp
    };
    let own = Bytes::from_static(b"socket_id=123456.7654321&channel_name=private-user-user-0000042");
    g.bench_function("hs256_cached_token", |b| b.iter(|| black_box(run(request(&hit, own.clone())))));
    // Fresh tokens, minted outside the timing: every request verifies.
    let mut i = 1_000_000;
    g.bench_function("hs256_new_token", |b| {
        b.iter_batched(
            || {
                i += 1;
                (
                    token(Algorithm::HS256, &key, i),
                    format!("socket_id=123456.7654321&channel_name=private-user-user-{i:07}"),
                )
            },
            |(token, body)| black_box(run(request(&token, Bytes::from(body)))),
            criterion::BatchSize::SmallInput,
        )
    });
    let presence = Bytes::from_static(b"socket_id=123456.7654321&channel_name=presence-room-42");
    g.bench_function("presence_cached_token", |b| b.iter(|| black_box(run(request(&hit, presence.clone())))));
    g.finish();
    drop(dir);
}

criterion_group!(benches, parse, policy, sign, verify, handle);
criterion_main!(benches);

// Benchmark-only key pairs, generated with `openssl genpkey` for these
// benchmarks. They protect nothing: never use them anywhere else.

/// RSA 2048 private key (PKCS#8).
const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC0ioxnGyuqUvUs
2UrI/ubM961ys8E9R1dKbAFs7ApeJoV5B7TTU2SY8kPShgaIGPD1SxWZU5jZWPgv
5PBxRcEKA3hPjFp6MQp6IbapG/CQ+ZpAy716P/sOJcR38Xl244/vhuXN2jjylR3c
XuYLrr0jwVTTYz48HqDkZrRVf5MvyiVfuXp3BJWJA1dqBbiinMm9LALFGHvLfcUo
93MkW6XmoWC6CI9IVSOmW3csOdjOOuUU0bLKt0cabstkS7kagdhIDjgrjpCsL7JP
225fOPMRHDdg9nYSPa3zGjmLyVnDlQKYRxUwPZ7tFC4ZSn+SidRdyPyTrOnQtjZp
YyqlDR1FAgMBAAECggEAV5fK0/F6R3pVSquoHYmSiAp4xChTTnxQ7SImtOZ2h0Rw
SI7FHCyfJ5eO8VKmU5yqN5B0y72j8Hu6el48i/B4XnfdhNbHRPaLK0M1IKoWFviK
7voKlYf6MdyADGODd3uj52YPE8dXDtbrNHJ0cWGXkYPouGCznq6LiBUOVFb/ndTG
fnfT7W6uJQKYzsv24WnFPi9jyalxzV2z5DbhLyLjnjakX+PogUOe/m04tXlWCHZB
zdReZECAO9EbPE8IPWzaWOiwsp6a2n8UO/HJ0oERvjTbq8uZb6jvrJnzu+pxFbVr
HAUi+XEteJ2sqrKJFvwmvnDwfkrVpnvjzxdXEltEdwKBgQD36rQdxGieVIjAdoul
8akgHmIbkAOf7dE1SKkAVDjHvzo11c9jfJtGy/pAPjSPyeE19u48P53pGwBs0DTA
2kVghyr35eZfE3ibrxmPWZ/qeCYOloEQjA4w3NQJUZ/wwvKJJ5TscFk4Ly7JUl1G
IT79iOaO8tcW2d1wZiUR0eAh2wKBgQC6bXp4wABlTLLu9KFH6y9XQcCA66L1dEOA
/HWVCNcYjGc5I0k9+2mKtt054xMd/CXZKNAHmtolLpJ7kUgfNgXC/3URzE6PWApa
IACYjza8B0MfKx5+fB1OavzmTmB9CWPsCp/2qIzwFLDcf9tprl/2tJ4pok5UtO9v
bRpCgBe3XwKBgQCsAKV4ZZVkDChYx6Z5umFpjErq7o7lPZ1Bh6jhNo2yYAUl5rKd
Ro2An/J+8emLvTfINgrxt/16BibUV9vR1V3+66ivF00ut5adBO4J29esWDGnO1pO
Pa12zy85S+1YoBifedvD8uqjpXCjcsaN6nEGfB3iHa+HBh6xZdzgMSl8swKBgQCE
xQdeC8+8VT1x9QMPxy02BXvl1Ot/x8dzi1jqRRt7PjMdfEXjQLRPuCAh49hvmG4U
FH7ji6Mkq+Bi5Hrqz3yW/XwQquKgL+Ffgj8qZ4RhsQJapkjXZ+kvOf7Wvqb1JcTm
DEMUVcHaEcJLpztKLoflmYiyugbzSNDlGFyFU9iQHQKBgA3xxvH7XAxzIUCQMqNd
ZtCJtFxcal/+ji68uosCW+qZgVTCP0ncBXNF6AeyWK4we73vNTlDZLFECzr0A9hH
IumAkzu27cLe9sjUCCLK2jfLRy1/Q15/mS6JetDU875ulByG7zqWCzAhrUh4SZDj
zux4DgjxKD8keVW3sp1dnOZf
-----END PRIVATE KEY-----
";

/// Its public half.
const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtIqMZxsrqlL1LNlKyP7m
zPetcrPBPUdXSmwBbOwKXiaFeQe001NkmPJD0oYGiBjw9UsVmVOY2Vj4L+TwcUXB
CgN4T4xaejEKeiG2qRvwkPmaQMu9ej/7DiXEd/F5duOP74blzdo48pUd3F7mC669
I8FU02M+PB6g5Ga0VX+TL8olX7l6dwSViQNXagW4opzJvSwCxRh7y33FKPdzJFul
5qFgugiPSFUjplt3LDnYzjrlFNGyyrdHGm7LZEu5GoHYSA44K46QrC+yT9tuXzjz
ERw3YPZ2Ej2t8xo5i8lZw5UCmEcVMD2e7RQuGUp/konUXcj8k6zp0LY2aWMqpQ0d
RQIDAQAB
-----END PUBLIC KEY-----
";

/// EC P-256 private key (PKCS#8).
const EC_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgycvYmWT55fEJkxjb
NCEC7n27uWBzwgQf/fSo/W2UASShRANCAAQgA7JThdIfF0UEN6z8xXYeGWX7mzuP
K/uSTxWxwdOBXjAARRuAZPU2PgY20GxeM+Oa2AeVC0yzJ6LdB7Sfm6iK
-----END PRIVATE KEY-----
";

/// Its public half.
const EC_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIAOyU4XSHxdFBDes/MV2Hhll+5s7
jyv7kk8VscHTgV4wAEUbgGT1Nj4GNtBsXjPjmtgHlQtMsyei3Qe0n5uoig==
-----END PUBLIC KEY-----
";
