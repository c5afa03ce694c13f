//! Remote keys against a real JWKS server on loopback (HTTPS with a private
//! CA, and OIDC discovery): first fetch and readiness, the verified-token
//! cache, key rotation, garbage answers, the issuer going down, and a flood
//! of bogus kids that must not turn into a flood of fetches.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use channelgate::app::{App, Gateway as AppGateway};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::sync::oneshot;

use crate::support::{APP_KEY, Gateway, Setup, eventually, expected_auth, now, write_config};

/// What the fake issuer serves.
#[derive(Clone)]
enum Answer {
    Jwks { body: String, cache_control: &'static str },
    Garbage,
    Error(u16),
}

struct Issuer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    jwks_hits: Arc<AtomicUsize>,
    ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Issuer {
    fn set(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }
    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
    /// Stops the server: connections are refused from now on.
    fn go_down(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An HTTPS issuer on 127.0.0.1 with a certificate from its own CA.
async fn start_issuer() -> Issuer {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://localhost:{port}");
    let answer = Arc::new(Mutex::new(Answer::Error(503)));
    let jwks_hits = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let (a, h, issuer_url) = (answer.clone(), jwks_hits.clone(), url.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                _ = &mut stopped => return,
            };
            let (acceptor, a, h, issuer_url) = (acceptor.clone(), a.clone(), h.clone(), issuer_url.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (a, h, issuer_url) = (a.clone(), h.clone(), issuer_url.clone());
                    async move {
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        if req.uri().path() == "/.well-known/openid-configuration" {
                            let doc = json!({"issuer": issuer_url, "jwks_uri": format!("{issuer_url}/keys")});
                            *resp.body_mut() = Full::new(Bytes::from(doc.to_string()));
                            return Ok::<_, Infallible>(resp);
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let answer = a.lock().unwrap().clone();
                        match answer {
                            Answer::Jwks { body, cache_control } => {
                                resp.headers_mut().insert("cache-control", cache_control.parse().unwrap());
                                *resp.body_mut() = Full::new(Bytes::from(body));
                            }
                            Answer::Garbage => {
                                *resp.body_mut() = Full::new(Bytes::from_static(b"<html>oops</html>"))
                            }
                            Answer::Error(code) => {
                                *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap()
                            }
                        }
                        Ok(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Issuer { url, answer, jwks_hits, ca_pem: ca.pem(), stop: Some(stop) }
}

/// An ES256 signing key with its JWK.
struct SigningKey {
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

fn signing_key(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = kp.public_key_raw();
    assert_eq!(point.len(), 65);
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    SigningKey {
        kid: kid.to_owned(),
        encoding: jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    }
}

fn jwks(keys: &[&SigningKey], cache_control: &'static str) -> Answer {
    let keys: Vec<&serde_json::Value> = keys.iter().map(|k| &k.jwk).collect();
    Answer::Jwks { body: json!({ "keys": keys }).to_string(), cache_control }
}

fn mint(key: &SigningKey, iss: &str, sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    let claims = json!({"sub": sub, "iss": iss, "aud": "it-app", "exp": now() + 600, "iat": now()});
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

/// A gateway whose single issuer is `issuer`, through discovery.
struct Running {
    gw: Arc<AppGateway>,
    addr: std::net::SocketAddr,
    _server: Gateway,
}

async fn start_gateway(issuer: &Issuer, refetch_interval: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("ca.pem"), &issuer.ca_pem).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let jwt = format!(
        "  jwt:\n    algorithms: [ES256]\n    discovery: true\n    issuer: {}\n    audience: it-app\n    ca_file: ca.pem\n    refetch_interval: {refetch_interval}\n    refresh_min: 1s\n",
        issuer.url
    );
    let start = text.find("  jwt:\n").unwrap();
    let end = text.find("cors:").unwrap();
    let text = format!("{}{}{}", &text[..start], jwt, &text[end..]);
    std::fs::write(&config, text).unwrap();
    let app = match App::load(&config) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    let gw = app.gateway();
    let server = Gateway::serve(dir, app).await;
    Running { gw, addr: server.addr, _server: server }
}

async fn ask(addr: std::net::SocketAddr, token: &str, sub: &str) -> (u16, serde_json::Value) {
    let channel = format!("private-user-{sub}");
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/pusher/auth"))
        .bearer_auth(token)
        .form(&[("socket_id", "1234.5678"), ("channel_name", channel.as_str())])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new().get(format!("http://{addr}/readyz")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn unreachable_issuer_means_not_ready_and_503() {
    let issuer = start_issuer().await; // answers 503 to the JWKS request
    let k1 = signing_key("k1");
    let run = start_gateway(&issuer, "30s").await;
    eventually("a first failed fetch", || async { issuer.hits() >= 1 }).await;
    let (status, body) = readyz(run.addr).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["issuers"][0]["loaded"], false);
    assert!(body["issuers"][0]["last_error"].as_str().unwrap().contains("503"), "{body}");
    let (status, body) = ask(run.addr, &mint(&k1, &issuer.url, "alice"), "alice").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("jwks_unavailable")), "{body}");
    assert!(body.get("auth").is_none());
}

#[tokio::test]
async fn discovery_cache_rotation_garbage_and_downtime() {
    let mut issuer = start_issuer().await;
    let (k1, k2) = (signing_key("k1"), signing_key("k2"));
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let run = start_gateway(&issuer, "1s").await;
    let addr = run.addr;
    eventually("ready after the first fetch", || async { readyz(addr).await.0 == 200 }).await;

    // A page joining ten channels: one verification, nine cache hits.
    let t1 = mint(&k1, &issuer.url, "alice");
    let (hits_before, misses_before) = run.gw.sessions.stats();
    for _ in 0..10 {
        let (status, body) = ask(addr, &t1, "alice").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["auth"], expected_auth("1234.5678:private-user-alice"));
    }
    let (hits, misses) = run.gw.sessions.stats();
    assert_eq!((hits - hits_before, misses - misses_before), (9, 1));
    assert!(body_has_key(&run, "k1"));

    // Rotation: the issuer now publishes only k2. A k2 token triggers one refetch.
    issuer.set(jwks(&[&k2], "max-age=3600"));
    // Refetches are at most one per refetch_interval (1s here).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fetches = issuer.hits();
    let t2 = mint(&k2, &issuer.url, "bob");
    let (status, body) = ask(addr, &t2, "bob").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issuer.hits(), fetches + 1);
    // k1 left the key set: its cached session is dropped, and it is refused.
    let (status, body) = ask(addr, &t1, "alice").await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("unknown_kid")), "{body}");

    // Bogus kids: many requests, at most one more fetch (refetch_interval 1s,
    // plus the negative cache).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = issuer.hits();
    for i in 0..40 {
        let bogus = SigningKey { kid: format!("bogus-{}", i % 4), ..signing_key("x") };
        let (status, body) = ask(addr, &mint(&bogus, &issuer.url, "eve"), "eve").await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("unknown_kid")), "{body}");
    }
    assert!(issuer.hits() - before <= 1, "{} fetches for bogus kids", issuer.hits() - before);

    // Garbage from the issuer: the last good keys keep serving, and readiness says stale.
    issuer.set(Answer::Garbage);
    run.gw.refresh_keys_once().await;
    let (status, body) = ask(addr, &t2, "bob").await;
    assert_eq!(status, 200, "{body}");
    let (status, ready) = readyz(addr).await;
    assert_eq!(status, 200, "stale keys keep the gateway ready: {ready}");
    assert_eq!(ready["issuers"][0]["stale"], true, "{ready}");
    assert!(ready["issuers"][0]["last_error"].is_string(), "{ready}");

    // The issuer goes down altogether: still served from the last good keys.
    issuer.go_down();
    run.gw.refresh_keys_once().await;
    let t3 = mint(&k2, &issuer.url, "carol");
    let (status, body) = ask(addr, &t3, "carol").await;
    assert_eq!(status, 200, "{body}");
    let (_, ready) = readyz(addr).await;
    assert_eq!(ready["issuers"][0]["keys"], 1);
    assert!(!ready.to_string().contains(k2.jwk["x"].as_str().unwrap()), "readiness shows key material");
    let _ = APP_KEY;
}

fn body_has_key(run: &Running, kid: &str) -> bool {
    run.gw.remote_issuers().any(|(_, r)| r.has_kid(kid))
}

#[tokio::test]
async fn a_token_is_never_served_from_cache_past_exp() {
    let issuer = start_issuer().await;
    let k1 = signing_key("k1");
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let run = start_gateway(&issuer, "30s").await;
    let addr = run.addr;
    eventually("ready", || async { readyz(addr).await.0 == 200 }).await;
    // exp two seconds ahead; the leeway (30s default) would still accept it
    // on a fresh verification, but the cache must not serve it past exp.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = json!({"sub": "alice", "iss": issuer.url, "aud": "it-app", "exp": now() + 2});
    let t = jsonwebtoken::encode(&header, &claims, &k1.encoding).unwrap();
    assert_eq!(ask(addr, &t, "alice").await.0, 200);
    assert_eq!(ask(addr, &t, "alice").await.0, 200);
    let (hits, _) = run.gw.sessions.stats();
    assert_eq!(hits, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, misses_before) = run.gw.sessions.stats();
    assert_eq!(ask(addr, &t, "alice").await.0, 200, "within leeway, fresh verification still accepts");
    let (_, misses) = run.gw.sessions.stats();
    assert_eq!(misses, misses_before + 1, "past exp the cache was not used");
}
