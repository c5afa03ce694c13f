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

/// What a fake upstream received.
#[derive(Debug, Clone)]
struct Received {
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
    _stop: oneshot::Sender<()>,
}

impl Fake {
    async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(200u16));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (g, st) = (got.clone(), status.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) =
                    tokio::select! { r = listener.accept() => r.unwrap(), _ = &mut stopped => return };
                let (g, st) = (g.clone(), st.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (g, st) = (g.clone(), st.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                g.lock().unwrap().push(Received {
                                    path: parts.uri.path().to_owned(),
                                    query: parts.uri.query().unwrap_or("").to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
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
        Fake { addr, got, status, _stop: stop }
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
        std::fs::write(dir.path().join("local.secret"), LOCAL_SECRET).unwrap();
        let extra = format!(
            "admin:\n  listen: 127.0.0.1:0\n  token: {{ file: admin.token }}\npublish:\n  clients:\n    - key: {LOCAL_KEY}\n      secret: {{ file: local.secret }}\n  timeout: 2s\n  retries: 1\nwebhooks:\n  forward_to: {hooks}/hooks\n  max_age: 300s\n{revocation}"
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
