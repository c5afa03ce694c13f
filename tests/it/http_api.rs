//! The auth endpoints, called in process through the service hyper is
//! given (`tower::ServiceExt::oneshot`; a chunked body over a real socket):
//! allowed, denied, and every 4xx row of the status table (DESIGN §1, §10).
//! Every refusal is checked for its reason code and for the absence of a
//! signature. `table.rs` holds one row per reason.

use serde_json::json;

use crate::support::*;

const SOCKET: &str = "1234.5678";

fn assert_refused(status: u16, body: &serde_json::Value, want_status: u16, want_reason: &str) {
    assert_eq!(status, want_status, "body: {body}");
    assert_eq!(body["reason"], want_reason, "body: {body}");
    assert!(body.get("auth").is_none(), "a refusal carried a signature: {body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "no error message: {body}");
}

#[tokio::test]
async fn private_channel_is_signed_for_its_owner() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    let (status, headers, body) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "private-user-alice")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "auth": expected_auth("1234.5678:private-user-alice") }));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    gw.stop().await;
}

#[tokio::test]
async fn other_users_channel_is_403() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    for channel in ["private-user-bob", "private-user-alice-admin"] {
        let (s, _, b) =
            post_form(&gw, "/pusher/auth", Some(&t), &[("socket_id", SOCKET), ("channel_name", channel)])
                .await;
        assert_refused(s, &b, 403, "rule_denied");
        // Production mode never names the rule.
        assert!(b.get("rule").is_none(), "{b}");
    }
    let (s, _, b) =
        post_form(&gw, "/pusher/auth", Some(&t), &[("socket_id", SOCKET), ("channel_name", "private-admin")])
            .await;
    assert_refused(s, &b, 403, "no_rule_matched");
    gw.stop().await;
}

#[tokio::test]
async fn presence_returns_signed_channel_data() {
    let gw = Gateway::start().await;
    let t = token("u1", json!({"rooms": ["42"], "name": "Zoë", "email": "secret@example.com"}));
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "presence-room-42")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let data = b["channel_data"].as_str().unwrap();
    assert_eq!(data, r#"{"user_id":"u1","user_info":{"name":"Zoë"}}"#);
    assert_eq!(b["auth"], expected_auth(&format!("1234.5678:presence-room-42:{data}")));
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "presence-room-7")],
    )
    .await;
    assert_refused(s, &b, 403, "rule_denied");
    gw.stop().await;
}

#[tokio::test]
async fn presence_data_over_the_member_limit_is_403() {
    let gw = Gateway::with(Setup {
        extra_config: "presence:\n  max_member_bytes: 64\n".into(),
        ..Setup::default()
    })
    .await;
    let t = token("u1", json!({"rooms": ["1"], "name": "n".repeat(100)}));
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "presence-room-1")],
    )
    .await;
    assert_refused(s, &b, 403, "presence_data_too_large");
    gw.stop().await;
}

#[tokio::test]
async fn encrypted_channel_gets_shared_secret() {
    let gw = Gateway::start().await;
    let t = token("u1", json!({"team": "acme"}));
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "private-encrypted-team-acme")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["auth"], expected_auth("1234.5678:private-encrypted-team-acme"));
    // shared_secret = base64(sha256(channel || master key)), computed here.
    use base64::Engine;
    use sha2::Digest;
    let master = base64::engine::general_purpose::STANDARD.decode(MASTER_KEY_B64).unwrap();
    let mut h = sha2::Sha256::new();
    h.update(b"private-encrypted-team-acme");
    h.update(&master);
    assert_eq!(b["shared_secret"], base64::engine::general_purpose::STANDARD.encode(h.finalize()));
    gw.stop().await;
}

#[tokio::test]
async fn encrypted_channel_without_master_key_is_refused() {
    let gw = Gateway::with(Setup { master_key: false, ..Setup::default() }).await;
    let t = token("u1", json!({"team": "acme"}));
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "private-encrypted-team-acme")],
    )
    .await;
    assert_refused(s, &b, 403, "encryption_not_configured");
    assert!(b.get("shared_secret").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn user_auth_signs_user_data() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({"name": "Alice"}));
    let (s, _, b) = post_form(&gw, "/pusher/user-auth", Some(&t), &[("socket_id", SOCKET)]).await;
    assert_eq!(s, 200, "{b}");
    let data = b["user_data"].as_str().unwrap();
    assert_eq!(data, r#"{"id":"alice","user_info":{"name":"Alice"}}"#);
    assert_eq!(b["auth"], expected_auth(&format!("1234.5678::user::{data}")));
    gw.stop().await;
}

#[tokio::test]
async fn signin_without_user_block_is_403() {
    let policy = "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: user == token.sub\n";
    let gw = Gateway::with(Setup { policy: policy.into(), ..Setup::default() }).await;
    let t = token("alice", json!({}));
    let (s, _, b) = post_form(&gw, "/pusher/user-auth", Some(&t), &[("socket_id", SOCKET)]).await;
    assert_refused(s, &b, 403, "signin_disabled");
    gw.stop().await;
}

#[tokio::test]
async fn pusher_js_params_and_extra_fields_are_accepted() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    // Token in the body (pusher-js `params`), extra params after it.
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        None,
        &[
            ("socket_id", SOCKET),
            ("channel_name", "private-user-alice"),
            ("token", &t),
            ("extra", "[object Object]"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    gw.stop().await;
}

#[tokio::test]
async fn cookie_and_json_body() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    let req = request("POST", "/pusher/auth")
        .header("cookie", format!("theme=dark; session={t}"))
        .header("origin", "https://app.example.com")
        .header("content-type", "application/json")
        .body(json!({"socket_id": SOCKET, "channel_name": "private-user-alice"}).to_string())
        .unwrap();
    let (s, _, b) = gw.call(req).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["auth"], expected_auth("1234.5678:private-user-alice"));
    gw.stop().await;
}

#[tokio::test]
async fn batch_auth_answers_each_channel() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({"rooms": ["1"], "name": "A"}));
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[
            ("socket_id", SOCKET),
            ("channel_name[0]", "private-user-alice"),
            ("channel_name[1]", "private-user-bob"),
            ("channel_name[2]", "presence-room-1"),
            ("channel_name[3]", "public-x"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["private-user-alice"]["auth"], expected_auth("1234.5678:private-user-alice"));
    assert_eq!(b["private-user-bob"]["status"], 403);
    assert_eq!(b["private-user-bob"]["reason"], "rule_denied");
    assert!(b["private-user-bob"].get("auth").is_none());
    assert!(b["presence-room-1"]["channel_data"].is_string());
    assert_eq!(b["public-x"]["status"], 400);
    // A bad session fails the whole batch.
    let (s, _, b) = post_form(
        &gw,
        "/pusher/auth",
        Some("x.y.z"),
        &[("socket_id", SOCKET), ("channel_name[0]", "private-user-alice")],
    )
    .await;
    assert_refused(s, &b, 401, "token_malformed");
    gw.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("channel_name", "private-user-alice")], "missing_field"),
        (&[("socket_id", SOCKET)], "missing_field"),
        (&[("socket_id", "1234"), ("channel_name", "private-user-alice")], "invalid_socket_id"),
        (&[("socket_id", "1234.5678\n"), ("channel_name", "private-user-alice")], "invalid_socket_id"),
        (&[("socket_id", "١٢٣.٤٥٦"), ("channel_name", "private-user-alice")], "invalid_socket_id"),
        (
            &[("socket_id", "1.2:private-user-bob"), ("channel_name", "private-user-alice")],
            "invalid_socket_id",
        ),
        (&[("socket_id", SOCKET), ("channel_name", "private-user-alice:x")], "invalid_channel_name"),
        (&[("socket_id", SOCKET), ("channel_name", "#server-to-user-alice")], "invalid_channel_name"),
        (&[("socket_id", SOCKET), ("channel_name", "private-user-al\0ice")], "invalid_channel_name"),
        (&[("socket_id", SOCKET), ("channel_name", "")], "invalid_channel_name"),
        (&[("socket_id", SOCKET), ("channel_name", "my-public-channel")], "public_channel"),
        (
            &[("socket_id", SOCKET), ("socket_id", SOCKET), ("channel_name", "private-user-alice")],
            "duplicate_field",
        ),
        (
            &[
                ("socket_id", SOCKET),
                ("channel_name", "private-user-alice"),
                ("channel_name", "private-user-bob"),
            ],
            "duplicate_field",
        ),
    ];
    for (form, reason) in cases {
        let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&t), form).await;
        assert_refused(s, &b, 400, reason);
    }
    let long = format!("private-{}", "x".repeat(193));
    let (s, _, b) =
        post_form(&gw, "/pusher/auth", Some(&t), &[("socket_id", SOCKET), ("channel_name", &long)]).await;
    assert_refused(s, &b, 400, "invalid_channel_name");
    let ok = format!("private-user-{}", "x".repeat(187));
    assert_eq!(ok.len(), 200);
    let (s, _, b) =
        post_form(&gw, "/pusher/auth", Some(&t), &[("socket_id", SOCKET), ("channel_name", &ok)]).await;
    assert_refused(s, &b, 403, "rule_denied");
    gw.stop().await;
}

#[tokio::test]
async fn bad_input_comes_before_the_session() {
    let gw = Gateway::start().await;
    // No token and a bad socket id: the 400 wins, so a client knows to fix the request.
    let (s, _, b) =
        post_form(&gw, "/pusher/auth", None, &[("socket_id", "x"), ("channel_name", "private-user-a")]).await;
    assert_refused(s, &b, 400, "invalid_socket_id");
    gw.stop().await;
}

#[tokio::test]
async fn session_problems_are_401_with_www_authenticate() {
    let gw = Gateway::start().await;
    let form = [("socket_id", SOCKET), ("channel_name", "private-user-alice")];
    let (s, h, b) = post_form(&gw, "/pusher/auth", None, &form).await;
    assert_refused(s, &b, 401, "token_missing");
    assert_eq!(h["www-authenticate"], "Bearer realm=\"channelgate\"");

    let expired =
        sign_token(&json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() - 60}), JWT_SECRET);
    let (s, h, b) = post_form(&gw, "/pusher/auth", Some(&expired), &form).await;
    assert_refused(s, &b, 401, "token_expired");
    assert!(h["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));

    let forged = sign_token(
        &json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}),
        "not-the-secret-not-the-secret-not-the-secret",
    );
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&forged), &form).await;
    assert_refused(s, &b, 401, "invalid_signature");

    let wrong_aud =
        sign_token(&json!({"sub": "alice", "iss": ISSUER, "aud": "other", "exp": now() + 60}), JWT_SECRET);
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&wrong_aud), &form).await;
    assert_refused(s, &b, 401, "invalid_audience");

    let wrong_iss = sign_token(
        &json!({"sub": "alice", "iss": "https://evil", "aud": AUDIENCE, "exp": now() + 60}),
        JWT_SECRET,
    );
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&wrong_iss), &form).await;
    assert_refused(s, &b, 401, "invalid_issuer");

    let numeric_sub =
        sign_token(&json!({"sub": 42, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}), JWT_SECRET);
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&numeric_sub), &form).await;
    assert_refused(s, &b, 401, "invalid_claims");

    let none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(
            format!(r#"{{"sub":"alice","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}}}"#, now() + 60)
                .as_bytes()
        )
    );
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&none), &form).await;
    assert_refused(s, &b, 401, "algorithm_not_allowed");
    gw.stop().await;
}

fn base64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn content_type_must_be_form_or_json() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    for ct in [None, Some("text/plain"), Some("multipart/form-data; boundary=x"), Some("application/xml")] {
        let mut req = request("POST", "/pusher/auth").header("authorization", format!("Bearer {t}"));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (s, _, b) =
            gw.call(req.body("socket_id=1.2&channel_name=private-user-alice".into()).unwrap()).await;
        assert_refused(s, &b, 415, "unsupported_media_type");
    }
    // JSON that is not an object.
    let req = request("POST", "/pusher/auth")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/json")
        .body("[1,2]".into())
        .unwrap();
    let (s, _, b) = gw.call(req).await;
    assert_refused(s, &b, 400, "invalid_body");
    gw.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    let big = format!("socket_id=1.2&channel_name=private-user-alice&pad={}", "x".repeat(9000));
    let req = request("POST", "/pusher/auth")
        .header("authorization", format!("Bearer {t}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .unwrap();
    let (s, _, b) = gw.call(req).await;
    assert_refused(s, &b, 413, "body_too_large");
    // Without Content-Length (chunked, over a real socket), the limit holds
    // while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b'x'; 1000])).collect();
    let resp = client()
        .post(gw.url("/pusher/auth"))
        .bearer_auth(&t)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    let (s, _, b) = split(resp).await;
    assert_refused(s, &b, 413, "body_too_large");
    gw.stop().await;
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_and_unknown_path_404() {
    let gw = Gateway::start().await;
    let (s, h, b) = gw.call(request("GET", "/pusher/auth").body(String::new()).unwrap()).await;
    assert_refused(s, &b, 405, "method_not_allowed");
    assert_eq!(h["allow"], "POST, OPTIONS");
    let (s, _, _) = gw.call(request("PUT", "/pusher/user-auth").body(String::new()).unwrap()).await;
    assert_eq!(s, 405);
    let (s, _, b) = gw.call(request("GET", "/nope").body(String::new()).unwrap()).await;
    assert_refused(s, &b, 404, "not_found");
    gw.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = Gateway::start().await;
    let (s, _, _) = gw.call(request("GET", "/healthz").body(String::new()).unwrap()).await;
    assert_eq!(s, 200);
    let (s, _, b) = gw.call(request("GET", "/readyz").body(String::new()).unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(b["status"], "ready");
    gw.stop().await;
}

#[tokio::test]
async fn configured_paths_are_used() {
    let extra = "http:\n  auth_path: /broadcasting/auth\n  user_auth_path: /broadcasting/user-auth\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let t = token("alice", json!({}));
    let (s, _, _) = post_form(
        &gw,
        "/broadcasting/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "private-user-alice")],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = post_form(
        &gw,
        "/pusher/auth",
        Some(&t),
        &[("socket_id", SOCKET), ("channel_name", "private-user-alice")],
    )
    .await;
    assert_eq!(s, 404);
    gw.stop().await;
}

#[tokio::test]
async fn several_issuers_each_with_their_own_checks() {
    // A second HS issuer with its own secret, audience and required claims;
    // the token's `iss` picks the entry.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("other.secret"), "other-issuer-secret-0123456789abcdef!!").unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "  jwt:\n    algorithms: [HS256]\n    secret: { file: jwt.secret }\n    issuer: https://issuer.test\n    audience: it-app\n    leeway: 5s\n",
        "  jwt:\n    - algorithms: [HS256]\n      secret: { file: jwt.secret }\n      issuer: https://issuer.test\n      audience: it-app\n      leeway: 5s\n    - algorithms: [HS384]\n      secret: { file: other.secret }\n      issuer: https://other.test\n      audience: [mobile]\n      required_claims: [sub, exp, tenant]\n",
    );
    assert!(text.contains("https://other.test"), "the config template changed:\n{text}");
    std::fs::write(&config, text).unwrap();
    let app = channelgate::app::App::load(&config).unwrap();
    let gw = Gateway::serve(dir, app).await;
    let addr = gw.addr;
    let sign = |claims: serde_json::Value, alg, secret: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let other = "other-issuer-secret-0123456789abcdef!!";
    let hs384 = jsonwebtoken::Algorithm::HS384;
    let cases = [
        (token("alice", json!({})), 200, None),
        (
            sign(
                json!({"sub": "alice", "iss": "https://other.test", "aud": "mobile", "exp": now() + 60, "tenant": "t"}),
                hs384,
                other,
            ),
            200,
            None,
        ),
        (
            sign(
                json!({"sub": "alice", "iss": "https://other.test", "aud": "mobile", "exp": now() + 60}),
                hs384,
                other,
            ),
            401,
            Some("missing_claim"),
        ),
        (
            sign(
                json!({"sub": "alice", "iss": "https://other.test", "aud": "it-app", "exp": now() + 60, "tenant": "t"}),
                hs384,
                other,
            ),
            401,
            Some("invalid_audience"),
        ),
        // The other issuer's algorithm with the first issuer's name.
        (
            sign(
                json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60}),
                hs384,
                JWT_SECRET,
            ),
            401,
            Some("algorithm_not_allowed"),
        ),
        (
            sign(
                json!({"sub": "alice", "iss": "https://nobody.test", "aud": AUDIENCE, "exp": now() + 60}),
                jsonwebtoken::Algorithm::HS256,
                JWT_SECRET,
            ),
            401,
            Some("unknown_issuer"),
        ),
        (
            sign(
                json!({"sub": "alice", "aud": AUDIENCE, "exp": now() + 60}),
                jsonwebtoken::Algorithm::HS256,
                JWT_SECRET,
            ),
            401,
            Some("unknown_issuer"),
        ),
    ];
    for (t, status, reason) in cases {
        let resp = client()
            .post(format!("http://{addr}/pusher/auth"))
            .bearer_auth(&t)
            .form(&[("socket_id", SOCKET), ("channel_name", "private-user-alice")])
            .send()
            .await
            .unwrap();
        let (s, _, b) = split(resp).await;
        assert_eq!(s, status, "{b}");
        if let Some(r) = reason {
            assert_refused(s, &b, status, r);
        }
    }
    gw.stop().await;
}
