//! A real HTTPS issuer on loopback that tests control: it serves an OIDC
//! discovery document and a JWKS (certificate from its own CA), and can go
//! down (listener closed and every open connection dropped, so pooled
//! keep-alive connections die too), come back on the same port, rotate
//! keys, answer with errors or garbage, slowly, or hugely.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::sync::watch;

use crate::support::now;

/// What the issuer's JWKS endpoint answers.
#[derive(Clone)]
pub enum Answer {
    Jwks { body: String, cache_control: &'static str },
    Garbage,
    Error(u16),
}

/// Shared by the issuer's connections.
struct State {
    answer: Mutex<Answer>,
    /// The `issuer` the discovery document names (the URL by default).
    discovery_issuer: Mutex<Option<String>>,
    /// Added before every answer.
    delay: Mutex<Duration>,
    jwks_hits: AtomicUsize,
}

pub struct Issuer {
    pub url: String,
    pub ca_pem: String,
    port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    /// `Some` while up: sending `true` stops the listener and every connection.
    up: Option<watch::Sender<bool>>,
}

impl Issuer {
    /// An issuer that is up, answering 503 until told otherwise.
    pub async fn start() -> Self {
        let mut issuer = Self::start_down().await;
        issuer.come_up().await;
        issuer
    }

    /// An issuer whose port refuses connections until [`Issuer::come_up`].
    pub async fn start_down() -> Self {
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
        // Reserve a free port, then let it go: it refuses until come_up.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Issuer {
            url: format!("https://localhost:{port}"),
            ca_pem: ca.pem(),
            port,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            state: Arc::new(State {
                answer: Mutex::new(Answer::Error(503)),
                discovery_issuer: Mutex::new(None),
                delay: Mutex::new(Duration::ZERO),
                jwks_hits: AtomicUsize::new(0),
            }),
            up: None,
        }
    }

    pub fn set(&self, a: Answer) {
        *self.state.answer.lock().unwrap() = a;
    }

    /// Makes the discovery document name `issuer` instead of the URL.
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.state.discovery_issuer.lock().unwrap() = Some(issuer.to_owned());
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// JWKS requests served so far.
    pub fn hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and drops every open connection.
    pub fn go_down(&mut self) {
        if let Some(up) = self.up.take() {
            let _ = up.send(true);
        }
    }

    /// Listens again on the same port.
    pub async fn come_up(&mut self) {
        assert!(self.up.is_none(), "already up");
        let listener = loop {
            // The port was just released by this process; retry briefly
            // should the kernel still hold it.
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("issuer cannot listen again: {e}"),
            }
        };
        let (up, down) = watch::channel(false);
        self.up = Some(up);
        let (acceptor, state, url) = (self.acceptor.clone(), self.state.clone(), self.url.clone());
        tokio::spawn(async move {
            let mut stop = down.clone();
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = stop.changed() => return,
                };
                let (acceptor, state, url, mut stop) =
                    (acceptor.clone(), state.clone(), url.clone(), down.clone());
                tokio::spawn(async move {
                    let serve = async {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let svc = hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let (state, url) = (state.clone(), url.clone());
                                async move { Ok::<_, Infallible>(answer(&state, &url, req.uri().path()).await) }
                            },
                        );
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), svc)
                            .await;
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.go_down();
    }
}

async fn answer(state: &State, url: &str, path: &str) -> hyper::Response<Full<Bytes>> {
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    if path == "/.well-known/openid-configuration" {
        let issuer = state.discovery_issuer.lock().unwrap().clone().unwrap_or_else(|| url.to_owned());
        let doc = json!({"issuer": issuer, "jwks_uri": format!("{url}/keys")});
        *resp.body_mut() = Full::new(Bytes::from(doc.to_string()));
        return resp;
    }
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let answer = state.answer.lock().unwrap().clone();
    match answer {
        Answer::Jwks { body, cache_control } => {
            resp.headers_mut().insert("cache-control", cache_control.parse().unwrap());
            *resp.body_mut() = Full::new(Bytes::from(body));
        }
        Answer::Garbage => *resp.body_mut() = Full::new(Bytes::from_static(b"<html>oops</html>")),
        Answer::Error(code) => *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap(),
    }
    resp
}

/// An ES256 signing key with its JWK.
pub struct SigningKey {
    pub kid: String,
    pub encoding: jsonwebtoken::EncodingKey,
    pub jwk: serde_json::Value,
}

pub fn signing_key(kid: &str) -> SigningKey {
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

pub fn jwks(keys: &[&SigningKey], cache_control: &'static str) -> Answer {
    let keys: Vec<&serde_json::Value> = keys.iter().map(|k| &k.jwk).collect();
    Answer::Jwks { body: json!({ "keys": keys }).to_string(), cache_control }
}

/// A session token of `sub` signed by `key` (with its `kid` in the header).
pub fn mint(key: &SigningKey, iss: &str, sub: &str) -> String {
    mint_with(key, Some(&key.kid), iss, sub)
}

/// A session token of `sub` signed by `key`, with `kid` (or none).
pub fn mint_with(key: &SigningKey, kid: Option<&str>, iss: &str, sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    let claims = json!({"sub": sub, "iss": iss, "aud": "it-app", "exp": now() + 600, "iat": now()});
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

/// The `session.jwt` block of a config that fetches from `issuer` by
/// discovery (the CA written next to the config as `ca.pem`).
pub fn jwt_block(issuer: &str, refetch_interval: &str) -> String {
    format!(
        "  jwt:\n    algorithms: [ES256]\n    discovery: true\n    issuer: {issuer}\n    audience: it-app\n    ca_file: ca.pem\n    refetch_interval: {refetch_interval}\n    refresh_min: 1s\n"
    )
}

/// Replaces the `session.jwt` block of the config at `config`.
pub fn use_jwt_block(config: &std::path::Path, block: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let start = text.find("  jwt:\n").unwrap();
    let end = text.find("cors:").unwrap();
    std::fs::write(config, format!("{}{}{}", &text[..start], block, &text[end..])).unwrap();
}
