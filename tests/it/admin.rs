//! The admin API (revocations, terminate), the publish proxy and the webhook
//! relay, against fake upstreams on loopback that record what they receive;
//! and revocations shared by two replicas through a real Redis.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use channelgate::pusher::{MasterKey, rest};
use channelgate::secret::Secret;
use crypto_secretbox::aead::{Aead, KeyInit};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::*;

const ADMIN_TOKEN: &str = "it-admin-token-0123456789abcdef";
const LOCAL_KEY: &str = "local-app";
const LOCAL_SECRET: &str = "local-publish-secret-0123456789";
/// A client as the SDK e2e suite and README configure one: its own numeric
/// app id and a local master key.
const SDK_KEY: &str = "sdk-local";
const SDK_SECRET: &str = "sdk-local-secret-0123456789abcdef";
const SDK_MASTER_B64: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const SDK_CLIENT: &str = "    - key: sdk-local\n      secret: { file: sdk.secret }\n      app_id: \"424242\"\n      encryption_master_key: { file: sdk.master }\n";

/// What a fake upstream received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A loopback HTTP server that records requests and answers `status`.
struct Fake {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
    answer: Arc<Mutex<Bytes>>,
    _stop: oneshot::Sender<()>,
}

impl Fake {
    async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(200u16));
        let answer = Arc::new(Mutex::new(Bytes::from_static(b"{}")));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (g, st, an) = (got.clone(), status.clone(), answer.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) =
                    tokio::select! { r = listener.accept() => r.unwrap(), _ = &mut stopped => return };
                let (g, st, an) = (g.clone(), st.clone(), an.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (g, st, an) = (g.clone(), st.clone(), an.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                g.lock().unwrap().push(Received {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_owned(),
                                    query: parts.uri.query().unwrap_or("").to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                let answer = an.lock().unwrap().clone();
                                let mut resp = hyper::Response::new(Full::new(answer));
                                *resp.status_mut() =
                                    hyper::StatusCode::from_u16(*st.lock().unwrap()).unwrap();
                                Ok::<_, Infallible>(resp)
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Fake { addr, got, status, answer, _stop: stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// A gateway with the admin listener, the admin API, publishing and webhooks.
struct Admin(AdminGateway);

impl std::ops::Deref for Admin {
    type Target = AdminGateway;
    fn deref(&self) -> &AdminGateway {
        &self.0
    }
}

impl Admin {
    async fn start(api: &str, hooks: &str, revocation: &str) -> Admin {
        Self::start_with(api, hooks, revocation, "", "").await
    }

    /// `clients`: more `publish.clients` entries; `webhooks`: more
    /// `webhooks:` lines. The SDK client's secret and local master key are
    /// in `sdk.secret` and `sdk.master`.
    async fn start_with(api: &str, hooks: &str, revocation: &str, clients: &str, webhooks: &str) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
        std::fs::write(dir.path().join("local.secret"), LOCAL_SECRET).unwrap();
        std::fs::write(dir.path().join("sdk.secret"), SDK_SECRET).unwrap();
        std::fs::write(dir.path().join("sdk.master"), SDK_MASTER_B64).unwrap();
        let extra = format!(
            "admin:\n  listen: 127.0.0.1:0\n  token: {{ file: admin.token }}\npublish:\n  clients:\n    - key: {LOCAL_KEY}\n      secret: {{ file: local.secret }}\n{clients}  timeout: 2s\n  retries: 1\nwebhooks:\n  forward_to: {hooks}/hooks\n  max_age: 300s\n{webhooks}{revocation}"
        );
        let config = write_config(dir.path(), &Setup { extra_config: extra, ..Setup::default() });
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "  secret: { file: pusher.secret }\n",
            &format!("  secret: {{ file: pusher.secret }}\n  api_url: {api}\n"),
        );
        std::fs::write(&config, text).unwrap();
        Admin(AdminGateway::run(dir, &config).await)
    }

    async fn admin_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req =
            client().request(method, format!("http://{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (s, _, b) = split(req.send().await.unwrap()).await;
        (s, b)
    }

    async fn auth(&self, t: &str, channel: &str) -> (u16, Value) {
        let resp = client()
            .post(format!("http://{}/pusher/auth", self.addr))
            .bearer_auth(t)
            .form(&[("socket_id", "1234.5678"), ("channel_name", channel)])
            .send()
            .await
            .unwrap();
        let (s, _, b) = split(resp).await;
        (s, b)
    }

    async fn stop(self) {
        let _ = self.0.stop().await;
    }
}

#[tokio::test]
async fn admin_api_needs_the_token() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start(&api.url(), &hooks.url(), "").await;
    for auth in [None, Some("Bearer wrong-token-wrong-token-wrong"), Some("Basic abc"), Some(ADMIN_TOKEN)] {
        let mut req = client().get(format!("http://{}/admin/revocations", gw.admin));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    assert_eq!(gw.admin_call(reqwest::Method::GET, "/admin/revocations", None).await, (200, json!([])));
    // Health and metrics need no token; the admin API is not on the public listener.
    assert_eq!(client().get(format!("http://{}/healthz", gw.admin)).send().await.unwrap().status(), 200);
    let public = client()
        .get(format!("http://{}/admin/revocations", gw.addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn revocations_by_sub_jti_and_sid() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start(&api.url(), &hooks.url(), "").await;
    let alice = token("alice", json!({"jti": "tok-1", "sid": "sess-1"}));
    assert_eq!(gw.auth(&alice, "private-user-alice").await.0, 200);

    for (kind, value) in [("sub", "alice"), ("jti", "tok-1"), ("sid", "sess-1")] {
        let (s, b) = gw
            .admin_call(reqwest::Method::POST, "/admin/revocations", Some(json!({kind: value, "ttl": "1h"})))
            .await;
        assert_eq!(s, 201, "{b}");
        assert_eq!((b["kind"].as_str(), b["value"].as_str()), (Some(kind), Some(value)));
        let (s, b) = gw.auth(&alice, "private-user-alice").await;
        assert_eq!((s, b["reason"].as_str()), (403, Some("user_revoked")), "{kind}: {b}");
        assert!(b.get("auth").is_none());
        // Sign-in is refused too.
        let resp = client()
            .post(format!("http://{}/pusher/user-auth", gw.addr))
            .bearer_auth(&alice)
            .form(&[("socket_id", "1234.5678")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        let (_, list) = gw.admin_call(reqwest::Method::GET, "/admin/revocations", None).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert!(list[0]["expires_at"].as_str().unwrap().ends_with('Z'));
        let (s, _) =
            gw.admin_call(reqwest::Method::DELETE, &format!("/admin/revocations/{kind}/{value}"), None).await;
        assert_eq!(s, 200);
        assert_eq!(gw.auth(&alice, "private-user-alice").await.0, 200);
    }
    // Others are unaffected; bad requests are 400.
    let (s, _) = gw
        .admin_call(reqwest::Method::POST, "/admin/revocations", Some(json!({"sub": "a", "jti": "b"})))
        .await;
    assert_eq!(s, 400);
    let (s, _) = gw
        .admin_call(reqwest::Method::POST, "/admin/revocations", Some(json!({"sub": "a", "ttl": "soon"})))
        .await;
    assert_eq!(s, 400);
    let (s, _) = gw.admin_call(reqwest::Method::DELETE, "/admin/revocations/sub/nobody", None).await;
    assert_eq!(s, 404);
    gw.stop().await;
}

#[tokio::test]
async fn terminate_calls_the_rest_api_and_revokes() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start(&api.url(), &hooks.url(), "").await;
    let (s, b) = gw
        .admin_call(reqwest::Method::POST, "/admin/users/alice/terminate", Some(json!({"ttl": "2h"})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["terminated"], true);
    assert!(b["revoked_until"].is_string());
    let got = api.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/apps/1001/users/alice/terminate_connections");
    assert_eq!(&got[0].body[..], b"{}");
    // Signed with the real secret, as the REST vectors sign.
    let lookup = |k: &str| (k == APP_KEY).then(|| Secret::new(APP_SECRET));
    let ts = now();
    assert_eq!(
        rest::verify("POST", &got[0].path, &got[0].query, &got[0].body, lookup, ts, 60).as_deref(),
        Ok(APP_KEY)
    );
    assert_eq!(gw.auth(&token("alice", json!({})), "private-user-alice").await.1["reason"], "user_revoked");
    let (s, _) = gw.admin_call(reqwest::Method::DELETE, "/admin/users/alice/terminate", None).await;
    assert_eq!(s, 200);
    assert_eq!(gw.auth(&token("alice", json!({})), "private-user-alice").await.0, 200);

    // The API failing: still revoked, and the caller learns it did not terminate.
    *api.status.lock().unwrap() = 500;
    let (s, b) = gw.admin_call(reqwest::Method::POST, "/admin/users/bob/terminate", None).await;
    assert_eq!((s, &b["terminated"]), (502, &json!(false)), "{b}");
    assert_eq!(gw.auth(&token("bob", json!({})), "private-user-bob").await.1["reason"], "user_revoked");
    let (s, _) = gw.admin_call(reqwest::Method::POST, "/admin/users/a%20b/terminate", None).await;
    assert_eq!(s, 400);
    gw.stop().await;
}

/// Signs a REST request with the local credential, as an official SDK would.
fn local_query(path: &str, body: &str) -> String {
    rest::signed_query("POST", path, body.as_bytes(), LOCAL_KEY, &Secret::new(LOCAL_SECRET), now())
}

async fn publish(gw: &Admin, path: &str, body: &str, query: Option<String>) -> (u16, Value) {
    let query = query.unwrap_or_else(|| local_query(path, body));
    let resp = client()
        .post(format!("http://{}{path}?{query}", gw.admin))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let (s, _, b) = split(resp).await;
    (s, b)
}

#[tokio::test]
async fn publish_proxy_resigns_and_encrypts() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start(&api.url(), &hooks.url(), "").await;
    let lookup = |k: &str| (k == APP_KEY).then(|| Secret::new(APP_SECRET));

    // A plain event: forwarded byte for byte, re-signed with the real key.
    let body =
        r#"{"name":"my-event","data":"{\"message\":\"hello\"}","channels":["my-channel","private-a"]}"#;
    let (s, b) = publish(&gw, "/apps/1001/events", body, None).await;
    assert_eq!(s, 200, "{b}");
    let got = api.received();
    assert_eq!((got[0].path.as_str(), &got[0].body[..]), ("/apps/1001/events", body.as_bytes()));
    assert_eq!(
        rest::verify("POST", &got[0].path, &got[0].query, &got[0].body, lookup, now(), 60).as_deref(),
        Ok(APP_KEY)
    );
    assert!(!got[0].query.contains(LOCAL_KEY));

    // An encrypted channel: the data is sealed with the channel's shared secret.
    let plaintext = r#"{"secret":"plan"}"#;
    let body =
        json!({"name": "ev", "data": plaintext, "channels": ["private-encrypted-team-acme"]}).to_string();
    let (s, _) = publish(&gw, "/apps/1001/events", &body, None).await;
    assert_eq!(s, 200);
    let got = api.received();
    let sent: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_ne!(sent["data"], plaintext);
    let sealed: Value = serde_json::from_str(sent["data"].as_str().unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce: [u8; 24] = b64.decode(sealed["nonce"].as_str().unwrap()).unwrap().try_into().unwrap();
    let ciphertext = b64.decode(sealed["ciphertext"].as_str().unwrap()).unwrap();
    let key =
        MasterKey::from_base64(MASTER_KEY_B64).unwrap().shared_secret_bytes("private-encrypted-team-acme");
    let opened = crypto_secretbox::XSalsa20Poly1305::new((&key).into())
        .decrypt((&nonce).into(), ciphertext.as_slice())
        .unwrap();
    assert_eq!(opened, plaintext.as_bytes());
    assert_eq!(
        rest::verify("POST", &got[1].path, &got[1].query, &got[1].body, lookup, now(), 60).as_deref(),
        Ok(APP_KEY)
    );

    // Batches.
    let batch = json!({"batch": [{"channel": "private-encrypted-x", "name": "a", "data": "1"}, {"channel": "c", "name": "b", "data": "2"}]}).to_string();
    assert_eq!(publish(&gw, "/apps/1001/batch_events", &batch, None).await.0, 200);
    let sent: Value = serde_json::from_slice(&api.received()[2].body).unwrap();
    assert_ne!(sent["batch"][0]["data"], "1");
    assert_eq!(sent["batch"][1]["data"], "2");

    // Refusals, none forwarded.
    let before = api.received().len();
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    for (path, body, query, status, reason) in [
        (
            "/apps/1001/events",
            json!({"name": "e", "data": "x", "channels": ["c"]}).to_string(),
            Some("auth_key=local-app&auth_timestamp=1&auth_version=1.0&auth_signature=00".to_owned()),
            401,
            "stale_timestamp",
        ),
        (
            "/apps/1001/events",
            json!({"name": "e", "data": "x", "channels": many}).to_string(),
            None,
            400,
            "too_many_channels",
        ),
        (
            "/apps/1001/events",
            json!({"name": "e".repeat(201), "data": "x", "channels": ["c"]}).to_string(),
            None,
            400,
            "invalid_event_name",
        ),
        (
            "/apps/1001/events",
            json!({"name": "e", "data": "x".repeat(10 * 1024 + 1), "channels": ["c"]}).to_string(),
            None,
            413,
            "payload_too_large",
        ),
        (
            "/apps/1001/events",
            json!({"name": "e", "data": "x", "channels": ["private-encrypted-a", "b"]}).to_string(),
            None,
            400,
            "encrypted_multiple_channels",
        ),
        (
            "/apps/1001/events",
            json!({"name": "e", "data": "x", "channels": ["bad:channel"]}).to_string(),
            None,
            400,
            "invalid_channel_name",
        ),
        (
            "/apps/1001/events",
            json!({"name": "e", "data": {"not": "a string"}, "channels": ["c"]}).to_string(),
            None,
            400,
            "invalid_data",
        ),
    ] {
        let (s, b) = publish(&gw, path, &body, query).await;
        assert_eq!((s, b["reason"].as_str()), (status, Some(reason)), "{body:.80}: {b}");
    }
    // Signed with the wrong secret, or for another body.
    let body = json!({"name": "e", "data": "x", "channels": ["c"]}).to_string();
    let forged = rest::signed_query(
        "POST",
        "/apps/1001/events",
        body.as_bytes(),
        LOCAL_KEY,
        &Secret::new("nope"),
        now(),
    );
    assert_eq!(publish(&gw, "/apps/1001/events", &body, Some(forged)).await.1["reason"], "invalid_signature");
    let other = local_query("/apps/1001/events", "{}");
    assert_eq!(publish(&gw, "/apps/1001/events", &body, Some(other)).await.1["reason"], "body_md5_mismatch");
    let real = rest::signed_query(
        "POST",
        "/apps/1001/events",
        body.as_bytes(),
        APP_KEY,
        &Secret::new(APP_SECRET),
        now(),
    );
    assert_eq!(
        publish(&gw, "/apps/1001/events", &body, Some(real)).await.1["reason"],
        "unknown_key",
        "the real key is not a publish credential"
    );
    assert_eq!(api.received().len(), before, "a refused event was forwarded");

    // Upstream errors come back with their status.
    *api.status.lock().unwrap() = 400;
    assert_eq!(publish(&gw, "/apps/1001/events", &body, None).await.0, 400);
    gw.stop().await;
}

#[tokio::test]
async fn webhooks_are_verified_before_forwarding() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start(&api.url(), &hooks.url(), "").await;
    let sign = |body: &str| {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let body = format!(
        r#"{{"time_ms":{},"events":[{{"name":"channel_occupied","channel":"private-foo"}}]}}"#,
        now() * 1000
    );
    let send = |key: &str, sig: String, body: String| {
        client()
            .post(format!("http://{}/pusher/webhooks", gw.addr))
            .header("content-type", "application/json")
            .header("x-pusher-key", key.to_owned())
            .header("x-pusher-signature", sig)
            .body(body)
            .send()
    };
    let resp = send(APP_KEY, sign(&body), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = hooks.received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].path.as_str(), &got[0].body[..]), ("/hooks", body.as_bytes()));
    assert_eq!(got[0].headers["x-pusher-signature"], sign(&body).as_str());

    let stale = r#"{"time_ms":1700000000000,"events":[]}"#.to_owned();
    for (key, sig, body, reason) in [
        (APP_KEY, "0".repeat(64), body.clone(), "invalid_webhook_signature"),
        (APP_KEY, sign(&body).to_uppercase(), body.clone(), "invalid_webhook_signature"),
        ("other-key", sign(&body), body.clone(), "invalid_webhook_key"),
        (APP_KEY, sign(&stale), stale.clone(), "stale_webhook"),
        (APP_KEY, sign(&body), format!("{body} "), "invalid_webhook_signature"),
    ] {
        let resp = send(key, sig, body).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.json::<Value>().await.unwrap()["reason"], reason);
    }
    assert_eq!(hooks.received().len(), 1, "a forged webhook was forwarded");
    gw.stop().await;
}

/// A redis-server on a free loopback port, stopped by PID on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(port: Option<u16>) -> RedisServer {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        });
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs Debian's redis-server)");
        // Owned by the guard from here on, so it is stopped on any exit.
        let server = RedisServer { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(server);
        panic!("redis-server did not start");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_replicas_share_revocations_through_redis() {
    let redis = RedisServer::start(None);
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let a = replica_with_url(redis.port, &api, &hooks).await;
    let b = replica_with_url(redis.port, &api, &hooks).await;
    let alice = token("alice", json!({}));
    eventually("both replicas in sync", || async {
        a.auth(&alice, "private-user-alice").await.0 == 200
            && b.auth(&alice, "private-user-alice").await.0 == 200
    })
    .await;

    let (s, _) =
        a.admin_call(reqwest::Method::POST, "/admin/revocations", Some(json!({"sub": "alice"}))).await;
    assert_eq!(s, 201);
    eventually("replica B refuses", || async { b.auth(&alice, "private-user-alice").await.0 == 403 }).await;
    let (_, list) = b.admin_call(reqwest::Method::GET, "/admin/revocations", None).await;
    assert_eq!(list[0]["value"], "alice");
    let (s, _) = b.admin_call(reqwest::Method::DELETE, "/admin/revocations/sub/alice", None).await;
    assert_eq!(s, 200);
    eventually("replica A allows again", || async { a.auth(&alice, "private-user-alice").await.0 == 200 })
        .await;

    // Redis goes away: with the default `on_store_error: deny`, replicas
    // refuse (503) rather than risk letting a revoked user back in.
    let port = redis.port;
    drop(redis);
    eventually("503 while the store is down", || async {
        let (s, body) = b.auth(&alice, "private-user-alice").await;
        s == 503 && body["reason"] == "revocation_unavailable"
    })
    .await;
    let ready = client().get(format!("http://{}/readyz", b.admin)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let (s, _) = a.admin_call(reqwest::Method::POST, "/admin/revocations", Some(json!({"sub": "bob"}))).await;
    assert_eq!(s, 503, "a revocation that cannot be shared is refused");
    // It comes back: replicas resync.
    let _redis = RedisServer::start(Some(port));
    eventually("back in sync", || async { b.auth(&alice, "private-user-alice").await.0 == 200 }).await;
    a.stop().await;
    b.stop().await;
}

async fn replica_with_url(redis_port: u16, api: &Fake, hooks: &Fake) -> Admin {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    std::fs::write(dir.path().join("local.secret"), LOCAL_SECRET).unwrap();
    std::fs::write(dir.path().join("redis.url"), format!("redis://127.0.0.1:{redis_port}/0")).unwrap();
    let extra = format!(
        "admin:\n  listen: 127.0.0.1:0\n  token: {{ file: admin.token }}\nwebhooks:\n  forward_to: {}/hooks\nrevocation:\n  store: redis\n  redis_url: {{ file: redis.url }}\n  key_prefix: \"it{redis_port}:\"\n",
        hooks.url()
    );
    let config = write_config(dir.path(), &Setup { extra_config: extra, ..Setup::default() });
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "  secret: { file: pusher.secret }\n",
        &format!("  secret: {{ file: pusher.secret }}\n  api_url: {}\n", api.url()),
    );
    std::fs::write(&config, text).unwrap();
    Admin(AdminGateway::run(dir, &config).await)
}

/// A REST query signed as an official SDK signs it: pusher-http-node
/// (`body_md5` only with a body, `auth_signature` last) or
/// pusher-http-python 3.3 (`body_md5` always, even of an empty GET body;
/// `auth_signature` sorted in; nothing percent-encoded).
fn sdk_query(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
    key: &str,
    secret: &str,
    python: bool,
) -> String {
    let extra: Vec<(String, String)> =
        extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    if !python {
        return rest::signed_query_with(
            method,
            path,
            &extra,
            body.as_bytes(),
            key,
            &Secret::new(secret),
            now(),
        );
    }
    let mut params = extra;
    params.push(("auth_key".into(), key.into()));
    params.push(("auth_timestamp".into(), now().to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    params.push(("body_md5".into(), rest::body_md5(body.as_bytes())));
    params.sort();
    let canonical = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let signature = {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{method}\n{path}\n{canonical}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    params.push(("auth_signature".into(), signature));
    params.sort();
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

async fn rest_call(gw: &Admin, method: &str, path: &str, query: &str, body: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method, format!("http://{}{path}?{query}", gw.admin));
    if !body.is_empty() {
        req = req.header("content-type", "application/json").body(body.to_owned());
    }
    let (s, _, b) = split(req.send().await.unwrap()).await;
    (s, b)
}

/// The audit log's publish-proxy lines.
fn rest_audit(gw: &Admin) -> Vec<Value> {
    std::fs::read_to_string(gw.dir.path().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "rest")
        .collect()
}

/// Query parameters of a call, and a (key, secret) credential.
type Params = Vec<(&'static str, &'static str)>;
type Credential = (&'static str, &'static str);

fn real_lookup(k: &str) -> Option<Secret> {
    (k == APP_KEY).then(|| Secret::new(APP_SECRET))
}

#[tokio::test]
async fn publish_proxy_serves_every_rest_endpoint_the_sdks_call() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start_with(&api.url(), &hooks.url(), "", SDK_CLIENT, "").await;
    let answer = r#"{"channels":{"presence-room-1":{"user_count":2}}}"#;
    *api.answer.lock().unwrap() = Bytes::from_static(answer.as_bytes());

    // (method, path the SDK calls, its query parameters, body, client, Python-style?,
    //  path forwarded, parameters forwarded)
    let sdk = (SDK_KEY, SDK_SECRET);
    let local = (LOCAL_KEY, LOCAL_SECRET);
    #[expect(clippy::type_complexity, reason = "a table of cases, read row by row")]
    let calls: Vec<(&str, &str, Params, &str, Credential, bool, &str, &str)> = vec![
        (
            "GET",
            "/apps/1001/channels",
            vec![("filter_by_prefix", "presence-"), ("info", "user_count")],
            "",
            local,
            false,
            "/apps/1001/channels",
            "filter_by_prefix=presence-&info=user_count",
        ),
        (
            "GET",
            "/apps/424242/channels",
            vec![("info", "user_count,subscription_count")],
            "",
            sdk,
            true,
            "/apps/1001/channels",
            "info=user_count,subscription_count",
        ),
        (
            "GET",
            "/apps/424242/channels/presence-room-1",
            vec![("info", "user_count")],
            "",
            sdk,
            true,
            "/apps/1001/channels/presence-room-1",
            "info=user_count",
        ),
        (
            "GET",
            "/apps/424242/channels/presence-room-1/users",
            vec![],
            "",
            sdk,
            false,
            "/apps/1001/channels/presence-room-1/users",
            "",
        ),
        // pusher-http-python 3.3 leaves out the /apps/{id} prefix.
        (
            "POST",
            "/users/alice/terminate_connections",
            vec![],
            "{}",
            sdk,
            true,
            "/apps/1001/users/alice/terminate_connections",
            "",
        ),
        (
            "POST",
            "/apps/424242/users/bob/terminate_connections",
            vec![],
            "{}",
            sdk,
            false,
            "/apps/1001/users/bob/terminate_connections",
            "",
        ),
        (
            "POST",
            "/apps/424242/events",
            vec![],
            r##"{"name":"e","data":"x","channels":["#server-to-user-alice"]}"##,
            sdk,
            false,
            "/apps/1001/events",
            "",
        ),
    ];
    for (i, (method, path, extra, body, (key, secret), python, forwarded, params)) in
        calls.into_iter().enumerate()
    {
        let query = sdk_query(method, path, &extra, body, key, secret, python);
        let (s, b) = rest_call(&gw, method, path, &query, body).await;
        assert_eq!((s, b.to_string()), (200, answer.to_owned()), "{method} {path}");
        let got = api.received();
        assert_eq!(got.len(), i + 1, "{method} {path} was not forwarded once");
        let r = &got[i];
        assert_eq!((r.method.as_str(), r.path.as_str()), (method, forwarded));
        assert_eq!(&r.body[..], body.as_bytes(), "{method} {path}: the body changed");
        assert_eq!(
            rest::verify(method, &r.path, &r.query, &r.body, real_lookup, now(), 60).as_deref(),
            Ok(APP_KEY),
            "{method} {path}: not re-signed with the real credential: {}",
            r.query
        );
        assert_eq!(r.query.contains("body_md5"), method == "POST", "{method} {path}: {}", r.query);
        let kept: Vec<&str> =
            r.query.split('&').filter(|p| !p.starts_with("auth_") && !p.starts_with("body_md5")).collect();
        let mut expected: Vec<&str> = params.split('&').filter(|p| !p.is_empty()).collect();
        expected.sort_unstable();
        assert_eq!(kept, expected, "{method} {path}: query parameters");
    }

    // The API's answer comes back as it is, error statuses included.
    *api.status.lock().unwrap() = 404;
    *api.answer.lock().unwrap() = Bytes::from_static(br#"{"error":"unknown channel"}"#);
    let path = "/apps/1001/channels/presence-gone";
    let (s, b) =
        rest_call(&gw, "GET", path, &sdk_query("GET", path, &[], "", LOCAL_KEY, LOCAL_SECRET, false), "")
            .await;
    assert_eq!((s, b), (404, json!({"error": "unknown channel"})));
    *api.status.lock().unwrap() = 200;

    // Refusals: a clear 4xx with a reason, nothing forwarded, an audit line each.
    let before = api.received().len();
    let real = (APP_KEY, APP_SECRET);
    let ev = r#"{"name":"e","data":"x","channels":["c"]}"#;
    let refusals: Vec<(&str, &str, Params, &str, Credential, u16, &str)> = vec![
        ("GET", "/apps/1001/channels", vec![], "", sdk, 403, "app_id_mismatch"),
        ("POST", "/apps/424242/events", vec![], ev, local, 403, "app_id_mismatch"),
        ("GET", "/apps/1001/channels", vec![], "", real, 401, "unknown_key"),
        ("GET", "/apps/1001/channels", vec![("foo", "bar")], "", local, 400, "unknown_parameter"),
        (
            "GET",
            "/apps/1001/channels/presence-a/users",
            vec![("info", "user_count")],
            "",
            local,
            400,
            "unknown_parameter",
        ),
        ("GET", "/apps/1001/channels/bad:name", vec![], "", local, 400, "invalid_channel_name"),
        ("POST", "/users/bad%20id/terminate_connections", vec![], "{}", sdk, 400, "invalid_user_id"),
        ("POST", "/users/alice/terminate_connections", vec![], r#"{"x":1}"#, sdk, 400, "invalid_body"),
        ("GET", "/apps/1001/webhooks", vec![], "", local, 404, "unknown_endpoint"),
        ("GET", "/users/alice", vec![], "", local, 404, "unknown_endpoint"),
        ("POST", "/apps/1001/channels", vec![], "{}", local, 405, "method_not_allowed"),
        ("GET", "/apps/1001/events", vec![], "", local, 405, "method_not_allowed"),
    ];
    let count = refusals.len();
    for (method, path, extra, body, (key, secret), status, reason) in refusals {
        let query = sdk_query(method, path, &extra, body, key, secret, false);
        let (s, b) = rest_call(&gw, method, path, &query, body).await;
        assert_eq!((s, b["reason"].as_str()), (status, Some(reason)), "{method} {path}: {b}");
    }
    // Signed for the Python SDK's path, sent to another user's.
    let query = sdk_query("POST", "/users/alice/terminate_connections", &[], "{}", SDK_KEY, SDK_SECRET, true);
    let (s, b) = rest_call(&gw, "POST", "/users/mallory/terminate_connections", &query, "{}").await;
    assert_eq!((s, b["reason"].as_str()), (401, Some("invalid_signature")));
    assert_eq!(api.received().len(), before, "a refused request was forwarded");

    let gw_dir = gw.dir.path().to_owned();
    eventually("the audit lines of the publish proxy", || {
        let n = rest_audit(&gw).len();
        async move { n >= 9 + count }
    })
    .await;
    let lines = rest_audit(&gw);
    let mismatch = lines.iter().find(|l| l["reason"] == "app_id_mismatch").unwrap();
    assert_eq!(
        (&mismatch["decision"], &mismatch["key"], &mismatch["endpoint"], &mismatch["status"]),
        (&json!("refuse"), &json!(SDK_KEY), &json!("channels"), &json!(403))
    );
    let forwarded = lines.iter().find(|l| l["endpoint"] == "terminate_user_connections").unwrap();
    assert_eq!((&forwarded["decision"], &forwarded["upstream_status"]), (&json!("forward"), &json!(200)));
    assert!(lines.iter().any(|l| l["reason"] == "unknown_endpoint" && l["endpoint"] == "unknown"));
    let text = std::fs::read_to_string(gw_dir.join("audit.log")).unwrap();
    for secret in [SDK_SECRET, LOCAL_SECRET, APP_SECRET, "auth_signature"] {
        assert!(!text.contains(secret), "the audit log holds {secret}");
    }
    gw.stop().await;
}

/// Seals `plaintext` for `channel` as the official SDKs do with master key
/// `master_b64`; `python` uses pusher-http-python's spacing.
fn sdk_seal(master_b64: &str, channel: &str, plaintext: &[u8], python: bool) -> String {
    let key = MasterKey::from_base64(master_b64).unwrap().shared_secret_bytes(channel);
    let nonce = [9u8; 24];
    let ciphertext =
        crypto_secretbox::XSalsa20Poly1305::new((&key).into()).encrypt((&nonce).into(), plaintext).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (nonce, ciphertext) = (b64.encode(nonce), b64.encode(ciphertext));
    if python {
        format!(r#"{{"nonce": "{nonce}", "ciphertext": "{ciphertext}"}}"#)
    } else {
        format!(r#"{{"nonce":"{nonce}","ciphertext":"{ciphertext}"}}"#)
    }
}

/// Opens a forwarded `data` with the real master key.
fn open_real(channel: &str, data: &Value) -> Vec<u8> {
    let sealed: Value = serde_json::from_str(data.as_str().unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let nonce: [u8; 24] = b64.decode(sealed["nonce"].as_str().unwrap()).unwrap().try_into().unwrap();
    let ciphertext = b64.decode(sealed["ciphertext"].as_str().unwrap()).unwrap();
    let key = MasterKey::from_base64(MASTER_KEY_B64).unwrap().shared_secret_bytes(channel);
    crypto_secretbox::XSalsa20Poly1305::new((&key).into())
        .decrypt((&nonce).into(), ciphertext.as_slice())
        .unwrap_or_else(|_| panic!("the forwarded payload does not open with the real key for {channel}"))
}

#[tokio::test]
async fn sdk_sealed_payloads_are_opened_with_the_local_key_and_resealed() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start_with(&api.url(), &hooks.url(), "", SDK_CLIENT, "").await;
    let post = |path: &'static str, body: String, key: &'static str, secret: &'static str| {
        let query = sdk_query("POST", path, &[], &body, key, secret, false);
        let gw = &gw;
        async move { rest_call(gw, "POST", path, &query, &body).await }
    };
    let team = "private-encrypted-team-acme";
    // What pusher-http-node seals: JSON.stringify(data), so a string keeps its quotes.
    for (i, (plaintext, python)) in [
        (&br#"{"launch":"friday","n":[1,2]}"#[..], false),
        (&b"\"quoted text\""[..], false),
        ("caf\u{e9} \u{1f600}".as_bytes(), true),
    ]
    .into_iter()
    .enumerate()
    {
        let data = sdk_seal(SDK_MASTER_B64, team, plaintext, python);
        let body = json!({"name": "plan", "channels": [team], "data": data}).to_string();
        let (s, b) = post("/apps/424242/events", body, SDK_KEY, SDK_SECRET).await;
        assert_eq!(s, 200, "{b}");
        let sent: Value = serde_json::from_slice(&api.received()[i].body).unwrap();
        assert_ne!(sent["data"].as_str(), Some(data.as_str()), "forwarded sealed with the local key");
        assert_eq!(open_real(team, &sent["data"]), plaintext, "the plaintext changed on the way");
    }
    // trigger_batch: each event opened with its own channel's key.
    let other = "private-encrypted-team-globex";
    let batch = json!({"batch": [
        {"channel": team, "name": "a", "data": sdk_seal(SDK_MASTER_B64, team, b"1", false)},
        {"channel": "private-plain", "name": "b", "data": "2"},
        {"channel": other, "name": "c", "data": sdk_seal(SDK_MASTER_B64, other, b"3", true)},
    ]})
    .to_string();
    assert_eq!(post("/apps/424242/batch_events", batch, SDK_KEY, SDK_SECRET).await.0, 200);
    let sent: Value = serde_json::from_slice(&api.received()[3].body).unwrap();
    assert_eq!(open_real(team, &sent["batch"][0]["data"]), b"1");
    assert_eq!(sent["batch"][1]["data"], "2");
    assert_eq!(open_real(other, &sent["batch"][2]["data"]), b"3");
    // Plaintext, from an SDK that can send it, is still sealed by channelgate.
    let body = json!({"name": "p", "channels": [team], "data": "plain"}).to_string();
    assert_eq!(post("/apps/424242/events", body, SDK_KEY, SDK_SECRET).await.0, 200);
    let sent: Value = serde_json::from_slice(&api.received()[4].body).unwrap();
    assert_eq!(open_real(team, &sent["data"]), b"plain");

    // Payloads that do not open: 400, never forwarded.
    let before = api.received().len();
    let mut altered = sdk_seal(SDK_MASTER_B64, team, b"{\"a\":1}", false);
    altered.replace_range(altered.len() - 6..altered.len() - 5, "A");
    let cases = [
        ("sealed with the real master key", sdk_seal(MASTER_KEY_B64, team, b"x", false), SDK_KEY, SDK_SECRET),
        ("sealed for another channel", sdk_seal(SDK_MASTER_B64, other, b"x", false), SDK_KEY, SDK_SECRET),
        ("altered", altered, SDK_KEY, SDK_SECRET),
        ("not base64", r#"{"nonce":"***","ciphertext":"***"}"#.to_owned(), SDK_KEY, SDK_SECRET),
        (
            "sent by a client without a local master key",
            sdk_seal(SDK_MASTER_B64, team, b"x", false),
            LOCAL_KEY,
            LOCAL_SECRET,
        ),
    ];
    for (what, data, key, secret) in cases {
        let path = if key == SDK_KEY { "/apps/424242/events" } else { "/apps/1001/events" };
        let body = json!({"name": "plan", "channels": [team], "data": data}).to_string();
        let (s, b) = post(path, body, key, secret).await;
        assert_eq!((s, b["reason"].as_str()), (400, Some("undecryptable_payload")), "{what}: {b}");
    }
    let batch = json!({"batch": [
        {"channel": team, "name": "a", "data": sdk_seal(SDK_MASTER_B64, team, b"1", false)},
        {"channel": other, "name": "c", "data": sdk_seal(SDK_MASTER_B64, team, b"3", false)},
    ]})
    .to_string();
    let (s, b) = post("/apps/424242/batch_events", batch, SDK_KEY, SDK_SECRET).await;
    assert_eq!((s, b["reason"].as_str()), (400, Some("undecryptable_payload")), "{b}");
    assert_eq!(api.received().len(), before, "an unopened payload was forwarded");
    gw.stop().await;
}

#[tokio::test]
async fn webhooks_are_resigned_with_the_local_credential() {
    let (api, hooks) = (Fake::start().await, Fake::start().await);
    let gw = Admin::start_with(&api.url(), &hooks.url(), "", SDK_CLIENT, "  sign_with: sdk-local\n").await;
    let hmac_hex = |secret: &str, body: &str| {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    // A client event on an encrypted channel: its data stays ciphertext.
    let sealed = sdk_seal(MASTER_KEY_B64, "private-encrypted-x", b"{\"typing\":true}", false);
    let body = json!({"time_ms": now() * 1000, "events": [
        {"name": "client_event", "channel": "private-encrypted-x", "event": "client-typing", "data": sealed, "socket_id": "1.2"}
    ]})
    .to_string();
    let send = |key: &str, sig: String| {
        client()
            .post(format!("http://{}/pusher/webhooks", gw.addr))
            .header("content-type", "application/json")
            .header("x-pusher-key", key.to_owned())
            .header("x-pusher-signature", sig)
            .body(body.clone())
            .send()
    };
    assert_eq!(send(APP_KEY, hmac_hex(APP_SECRET, &body)).await.unwrap().status(), 200);
    let got = hooks.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], body.as_bytes(), "the body changed on the way");
    assert_eq!(got[0].headers["x-pusher-key"], SDK_KEY);
    assert_eq!(got[0].headers["x-pusher-signature"], hmac_hex(SDK_SECRET, &body).as_str());
    assert_eq!(got[0].headers["content-type"], "application/json");
    // Still verified with the real secret first: a webhook signed with the local one is forged.
    let resp = send(SDK_KEY, hmac_hex(SDK_SECRET, &body)).await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = send(APP_KEY, hmac_hex(SDK_SECRET, &body)).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(hooks.received().len(), 1, "a forged webhook was forwarded");
    gw.stop().await;
}
