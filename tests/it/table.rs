//! The status/reason table, in process: one row per reason an outside
//! client can meet, each request sent through the service hyper is given
//! (`tower::ServiceExt::oneshot`, no socket), each answer checked for its
//! status, reason code, the headers its status calls for, and the absence of
//! a signature. A last check says where every other reason is tested.

use std::collections::BTreeSet;

use channelgate::http::Listener;
use channelgate::reason::Reason;
use serde_json::json;

use crate::support::*;

const SOCKET: &str = "1234.5678";
const ADMIN_TOKEN: &str = "table-admin-token-0123456789";

/// One request and what it must get.
struct Row {
    what: &'static str,
    listener: Listener,
    req: http::Request<String>,
    status: u16,
    reason: &'static str,
    /// A header the answer must carry.
    header: Option<&'static str>,
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// A channel auth request for `channel`, with `token` (if any) as a bearer.
fn auth(token: Option<&str>, fields: &[(&str, &str)]) -> http::Request<String> {
    let mut req = request("POST", "/pusher/auth").header("content-type", "application/x-www-form-urlencoded");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(form(fields)).unwrap()
}

fn channel(token: Option<&str>, channel: &str) -> http::Request<String> {
    auth(token, &[("socket_id", SOCKET), ("channel_name", channel)])
}

fn admin(method: &str, path: &str, token: Option<&str>, body: &str) -> http::Request<String> {
    let mut req = request(method, path).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(body.to_owned()).unwrap()
}

fn row(what: &'static str, req: http::Request<String>, status: u16, reason: &'static str) -> Row {
    Row { what, listener: Listener::Public, req, status, reason, header: None }
}

/// Sends every row to `runtime` and checks it; returns the reasons met.
async fn run(
    runtime: &std::sync::Arc<channelgate::app::Runtime>,
    rows: Vec<Row>,
    met: &mut BTreeSet<String>,
) {
    for r in rows {
        let (status, headers, body) = call(runtime, r.listener, r.req).await;
        assert_eq!((status, body["reason"].as_str()), (r.status, Some(r.reason)), "{}: {body}", r.what);
        assert!(body.get("auth").is_none(), "{}: a refusal carried a signature: {body}", r.what);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{}: no message: {body}", r.what);
        if let Some(h) = r.header {
            assert!(headers.contains_key(h), "{}: no `{h}` header: {headers:?}", r.what);
        }
        met.insert(r.reason.to_owned());
    }
}

fn hs(claims: serde_json::Value) -> String {
    sign_token(&claims, JWT_SECRET)
}

#[tokio::test]
async fn every_reason_a_client_can_meet_has_its_status() {
    let mut met = BTreeSet::new();
    let alice = token("alice", json!({}));
    let t0 = now();

    // The default gateway (HS256 issuer, master key, `user:` block).
    let extra_rules = "  - name: broken
    channel: private-broken-{x}
    allow: token.missing_claim == x
  - name: no-id
    channel: presence-noid-{x}
    allow: true
    presence:
      user_id: token.missing_claim
  - name: big
    channel: presence-big-{x}
    allow: true
    presence:
      user_id: token.sub
      user_info: { pad: token.pad }
";
    let policy = POLICY.replace("user:\n", &format!("{extra_rules}user:\n"));
    let extra =
        format!("admin:\n  listen: 127.0.0.1:0\n  token: {{ value: {ADMIN_TOKEN} }}\nmode: development\n");
    let gw = Gateway::with(Setup { policy, extra_config: extra, ..Setup::default() }).await;
    let mut batch: Vec<(String, String)> = vec![("socket_id".into(), SOCKET.into())];
    batch.extend((0..51).map(|i| (format!("channel_name[{i}]"), format!("private-user-alice-{i}"))));
    let batch: Vec<(&str, &str)> = batch.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let big_pad = "x".repeat(2000);
    let rows = vec![
        row("no token", channel(None, "private-user-alice"), 401, "token_missing"),
        row("not a JWT", channel(Some("a.b"), "private-user-alice"), 401, "token_malformed"),
        row(
            "alg none",
            channel(
                Some(&format!("{}.{}.", b64url(r#"{"alg":"none"}"#), b64url("{}"))),
                "private-user-alice",
            ),
            401,
            "algorithm_not_allowed",
        ),
        row(
            "another key",
            channel(
                Some(&sign_token(
                    &json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": t0 + 60}),
                    "another-secret-0123456789abcdef-0123456789",
                )),
                "private-user-alice",
            ),
            401,
            "invalid_signature",
        ),
        row(
            "expired",
            channel(
                Some(&hs(json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": t0 - 600}))),
                "private-user-alice",
            ),
            401,
            "token_expired",
        ),
        row(
            "not yet valid",
            channel(
                Some(&hs(
                    json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": t0 + 600, "nbf": t0 + 300}),
                )),
                "private-user-alice",
            ),
            401,
            "token_not_yet_valid",
        ),
        row(
            "another issuer",
            channel(
                Some(&hs(
                    json!({"sub": "alice", "iss": "https://evil.test", "aud": AUDIENCE, "exp": t0 + 60}),
                )),
                "private-user-alice",
            ),
            401,
            "invalid_issuer",
        ),
        row(
            "another audience",
            channel(
                Some(&hs(json!({"sub": "alice", "iss": ISSUER, "aud": "other", "exp": t0 + 60}))),
                "private-user-alice",
            ),
            401,
            "invalid_audience",
        ),
        row(
            "no exp",
            channel(Some(&hs(json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE}))), "private-user-alice"),
            401,
            "missing_claim",
        ),
        row(
            "numeric sub",
            channel(
                Some(&hs(json!({"sub": 7, "iss": ISSUER, "aud": AUDIENCE, "exp": t0 + 60}))),
                "private-user-alice",
            ),
            401,
            "invalid_claims",
        ),
        row("someone else's channel", channel(Some(&alice), "private-user-bob"), 403, "rule_denied"),
        row("no rule", channel(Some(&alice), "private-nothing"), 403, "no_rule_matched"),
        row("an expression error", channel(Some(&alice), "private-broken-1"), 403, "rule_error"),
        row("no user id", channel(Some(&alice), "presence-noid-1"), 403, "invalid_user_id"),
        row(
            "presence data over the limit",
            channel(Some(&token("alice", json!({"pad": big_pad}))), "presence-big-1"),
            403,
            "presence_data_too_large",
        ),
        row(
            "a cookie session without Origin",
            request("POST", "/pusher/auth")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", format!("session={alice}"))
                .body(form(&[("socket_id", SOCKET), ("channel_name", "private-user-alice")]))
                .unwrap(),
            403,
            "csrf",
        ),
        row(
            "a preflight from another origin",
            request("OPTIONS", "/pusher/auth")
                .header("origin", "https://evil.test")
                .header("access-control-request-method", "POST")
                .body(String::new())
                .unwrap(),
            403,
            "cors_refused",
        ),
        row(
            "no socket_id",
            auth(Some(&alice), &[("channel_name", "private-user-alice")]),
            400,
            "missing_field",
        ),
        row(
            "bad socket_id",
            channel(Some(&alice), "private-user-alice")
                .map(|_| form(&[("socket_id", "1"), ("channel_name", "private-user-alice")])),
            400,
            "invalid_socket_id",
        ),
        row("bad channel", channel(Some(&alice), "private-user:alice"), 400, "invalid_channel_name"),
        row("public channel", channel(Some(&alice), "chat"), 400, "public_channel"),
        row(
            "socket_id twice",
            auth(
                Some(&alice),
                &[("socket_id", SOCKET), ("socket_id", SOCKET), ("channel_name", "private-user-alice")],
            ),
            400,
            "duplicate_field",
        ),
        row(
            "one channel and a batch",
            auth(
                Some(&alice),
                &[
                    ("socket_id", SOCKET),
                    ("channel_name", "private-user-alice"),
                    ("channel_name[0]", "private-user-alice"),
                ],
            ),
            400,
            "invalid_field",
        ),
        row("51 channels", auth(Some(&alice), &batch), 400, "batch_too_large"),
        row(
            "a JSON array",
            request("POST", "/pusher/auth")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {alice}"))
                .body("[1]".into())
                .unwrap(),
            400,
            "invalid_body",
        ),
        row(
            "text/plain",
            request("POST", "/pusher/auth").header("content-type", "text/plain").body("x".into()).unwrap(),
            415,
            "unsupported_media_type",
        ),
        row(
            "a body over 8 KiB",
            auth(Some(&alice), &[("socket_id", SOCKET), ("pad", &"x".repeat(9000))]),
            413,
            "body_too_large",
        ),
        row("no such path", request("GET", "/nope").body(String::new()).unwrap(), 404, "not_found"),
        Row {
            header: Some("allow"),
            ..row(
                "GET on the auth path",
                request("GET", "/pusher/auth").body(String::new()).unwrap(),
                405,
                "method_not_allowed",
            )
        },
        // The admin listener.
        Row {
            listener: Listener::Admin,
            header: Some("www-authenticate"),
            ..row(
                "a wrong admin token",
                admin("GET", "/admin/revocations", Some("wrong"), ""),
                401,
                "admin_token",
            )
        },
        Row {
            listener: Listener::Admin,
            ..row(
                "a bad ttl",
                admin("POST", "/admin/revocations", Some(ADMIN_TOKEN), r#"{"sub": "x", "ttl": "soon"}"#),
                400,
                "invalid_ttl",
            )
        },
        Row {
            listener: Listener::Admin,
            ..row(
                "lifting nothing",
                admin("DELETE", "/admin/revocations/sub/nobody", Some(ADMIN_TOKEN), ""),
                404,
                "not_revoked",
            )
        },
        Row {
            listener: Listener::Admin,
            ..row(
                "a user id that is not one",
                admin("POST", "/admin/users/a%20b/terminate", Some(ADMIN_TOKEN), ""),
                400,
                "invalid_user_id",
            )
        },
    ];
    run(&gw.runtime, rows, &mut met).await;
    // The 401s of a session name the error (RFC 6750); token_missing does not.
    let (_, h, _) = call(&gw.runtime, Listener::Public, channel(Some("a.b"), "private-user-alice")).await;
    assert!(h["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#), "{h:?}");
    // Development mode names the deciding rule in 403s.
    let (_, _, b) = call(&gw.runtime, Listener::Public, channel(Some(&alice), "private-user-bob")).await;
    assert_eq!(b["rule"], "own", "{b}");
    // A revoked user.
    let (s, _, _) = call(
        &gw.runtime,
        Listener::Admin,
        admin("POST", "/admin/revocations", Some(ADMIN_TOKEN), r#"{"sub": "alice"}"#),
    )
    .await;
    assert_eq!(s, 201);
    run(
        &gw.runtime,
        vec![row("a revoked user", channel(Some(&alice), "private-user-alice"), 403, "user_revoked")],
        &mut met,
    )
    .await;
    gw.stop().await;

    // No master key and no `user:` block.
    let no_user = POLICY.split("user:\n").next().unwrap().to_owned();
    let gw = Gateway::with(Setup { master_key: false, policy: no_user, ..Setup::default() }).await;
    let rows = vec![
        row(
            "an encrypted channel without a master key",
            channel(Some(&alice), "private-encrypted-team-x"),
            403,
            "encryption_not_configured",
        ),
        row(
            "sign-in without a user block",
            request("POST", "/pusher/user-auth")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", format!("Bearer {alice}"))
                .body(form(&[("socket_id", SOCKET)]))
                .unwrap(),
            403,
            "signin_disabled",
        ),
    ];
    run(&gw.runtime, rows, &mut met).await;
    // No admin token: the admin API is off.
    let off = Row {
        listener: Listener::Admin,
        ..row(
            "the admin API without a token",
            admin("GET", "/admin/revocations", Some(ADMIN_TOKEN), ""),
            404,
            "admin_api_disabled",
        )
    };
    run(&gw.runtime, vec![off], &mut met).await;
    gw.stop().await;

    // A per-user limit of one request a minute.
    let gw = Gateway::with(Setup {
        rate_limit: "rate_limit:\n  per_user: 1/m\n  per_user_burst: 1\n".into(),
        ..Setup::default()
    })
    .await;
    let (s, _, _) = call(&gw.runtime, Listener::Public, channel(Some(&alice), "private-user-alice")).await;
    assert_eq!(s, 200);
    let limited = Row {
        header: Some("retry-after"),
        ..row("over the per-user limit", channel(Some(&alice), "private-user-alice"), 429, "rate_limited")
    };
    run(&gw.runtime, vec![limited], &mut met).await;
    gw.stop().await;

    // Issuer keys that cannot be fetched (nothing listens there).
    let gw = Gateway::with(Setup::default()).await;
    drop(gw);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "algorithms: [HS256]\n    secret: { file: jwt.secret }",
        "algorithms: [ES256]\n    jwks_url: http://127.0.0.1:9/jwks",
    );
    std::fs::write(&config, text).unwrap();
    let app = channelgate::app::App::load(&config).unwrap();
    let es256 = crate::issuer::mint(&crate::issuer::signing_key("k1"), ISSUER, "alice");
    let unavailable = Row {
        header: Some("retry-after"),
        ..row(
            "issuer keys never fetched",
            channel(Some(&es256), "private-user-alice"),
            503,
            "jwks_unavailable",
        )
    };
    run(&app.runtime, vec![unavailable], &mut met).await;

    // Revocations in a Redis that cannot be reached, failing closed.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &Setup {
            extra_config: "revocation:\n  store: redis\n  redis_url: { value: \"redis://127.0.0.1:9/\" }\nmode: development\n".into(),
            ..Setup::default()
        },
    );
    let app = channelgate::app::App::load(&config).unwrap();
    let unavailable = Row {
        header: Some("retry-after"),
        ..row(
            "revocations cannot be checked",
            channel(Some(&alice), "private-user-alice"),
            503,
            "revocation_unavailable",
        )
    };
    run(&app.runtime, vec![unavailable], &mut met).await;

    // The Pusher REST API: not configured, refusing connections, or never
    // answering; the publish proxy's own refusals.
    let rows = vec![Row {
        listener: Listener::Admin,
        ..row(
            "terminate without pusher.api_url",
            admin("POST", "/admin/users/bob/terminate", Some(ADMIN_TOKEN), ""),
            503,
            "no_api_url",
        )
    }];
    let gw = Gateway::with(Setup {
        extra_config: format!(
            "admin:\n  listen: 127.0.0.1:0\n  token: {{ value: {ADMIN_TOKEN} }}\nmode: development\n"
        ),
        ..Setup::default()
    })
    .await;
    run(&gw.runtime, rows, &mut met).await;
    gw.stop().await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for (api, what, status, reason) in [
        (
            "127.0.0.1:9".to_owned(),
            "terminate, the REST API refusing connections",
            502,
            "upstream_unreachable",
        ),
        (
            silent.local_addr().unwrap().to_string(),
            "terminate, the REST API never answering",
            504,
            "upstream_timeout",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            "admin:\n  listen: 127.0.0.1:0\n  token: {{ value: {ADMIN_TOKEN} }}\nmode: development\npublish:\n  timeout: 300ms\n  retries: 0\n  clients:\n    - key: local\n      secret: {{ value: local-secret-0123456789 }}\n"
        );
        let config = write_config(dir.path(), &Setup { extra_config: extra, ..Setup::default() });
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "  secret: { file: pusher.secret }\n",
            &format!("  secret: {{ file: pusher.secret }}\n  api_url: http://{api}\n"),
        );
        std::fs::write(&config, text).unwrap();
        let app = channelgate::app::App::load(&config).unwrap();
        let mut rows = vec![Row {
            listener: Listener::Admin,
            ..row(what, admin("POST", "/admin/users/bob/terminate", Some(ADMIN_TOKEN), ""), status, reason)
        }];
        if reason == "upstream_unreachable" {
            rows.push(Row {
                listener: Listener::Admin,
                ..row(
                    "an unsigned publish",
                    admin("POST", "/apps/1001/events", None, "{}"),
                    401,
                    "missing_auth_param",
                )
            });
            rows.push(Row {
                listener: Listener::Admin,
                ..row(
                    "a REST path the proxy does not serve",
                    admin("POST", "/apps/1001/nope", None, "{}"),
                    404,
                    "unknown_endpoint",
                )
            });
        }
        run(&app.runtime, rows, &mut met).await;
    }
    drop(silent);

    // Every other reason, and where it is tested.
    let elsewhere: &[(&str, &str)] = &[
        ("request_timeout", "hardening::slow_clients_are_cut_off (a body that never arrives, over a socket)"),
        ("unknown_kid", "jwks.rs (remote keys), session unit tests (JWKS files)"),
        ("unknown_issuer", "http_api::several_issuers_each_with_their_own_checks"),
        ("internal", "a handler panic: never in a test (the catch-panic layer is the last line of defence)"),
        ("unknown_key", "admin.rs (publish proxy)"),
        ("stale_timestamp", "admin.rs (publish proxy)"),
        ("body_md5_mismatch", "admin.rs (publish proxy)"),
        ("app_id_mismatch", "admin.rs (publish proxy)"),
        ("unknown_parameter", "admin.rs (publish proxy), publish unit tests"),
        ("duplicate_parameter", "publish unit tests"),
        ("invalid_parameter", "publish unit tests"),
        ("invalid_event_name", "admin.rs (publish proxy)"),
        ("invalid_data", "admin.rs (publish proxy)"),
        ("payload_too_large", "admin.rs (publish proxy)"),
        ("too_many_channels", "admin.rs (publish proxy)"),
        ("encrypted_multiple_channels", "admin.rs (publish proxy)"),
        ("undecryptable_payload", "admin.rs (publish proxy), e2e sdk suite"),
        ("rng_unavailable", "not reachable: the system RNG does not fail here"),
        ("invalid_webhook_key", "admin.rs (webhook relay)"),
        ("invalid_webhook_signature", "admin.rs (webhook relay)"),
        ("stale_webhook", "admin.rs (webhook relay)"),
    ];
    let all: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    let named: BTreeSet<String> =
        met.iter().cloned().chain(elsewhere.iter().map(|(r, _)| (*r).to_owned())).collect();
    let untested: Vec<&String> = all.difference(&named).collect();
    assert!(untested.is_empty(), "reasons with no row and no test named: {untested:?}");
    let stale: Vec<&String> = named.difference(&all).collect();
    assert!(stale.is_empty(), "rows for reasons that do not exist: {stale:?}");
}

fn b64url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
