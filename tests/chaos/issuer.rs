//! An OpenID Provider that the suite controls: HTTPS on 127.0.0.1 with a
//! certificate from its own CA (the gateway trusts it through `ca_file`),
//! OIDC discovery and a JWKS of ES256 keys with `Cache-Control: max-age=3600`
//! (as real IdPs answer). It can go down (the listener and every open
//! connection closed: the port refuses), come back on the same port,
//! rotate or replace keys, answer slowly or with a 5 MiB JWKS.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

use crate::load::{Session, claims};

/// An ES256 signing key and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    encoding: jsonwebtoken::EncodingKey,
    pub jwk: serde_json::Value,
}

impl SigningKey {
    /// A new P-256 key named `kid`.
    pub fn generate(kid: &str) -> anyhow::Result<SigningKey> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let point = kp.public_key_raw();
        anyhow::ensure!(point.len() == 65, "unexpected EC point length");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Ok(SigningKey {
            kid: kid.to_owned(),
            encoding: jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes())?,
            jwk: json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                        "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
        })
    }

    /// A session token of user `n` for `issuer`, signed with this key.
    pub fn mint(&self, issuer: &str, n: usize) -> anyhow::Result<Session> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let (claims, session) = claims(issuer, n, &format!("es-{}", self.kid));
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok(Session { token, ..session })
    }
}

/// What the issuer answers.
struct State {
    keys: Vec<serde_json::Value>,
    delay: Duration,
    /// The 5 MiB document, while the issuer answers hugely.
    huge: Option<Bytes>,
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Issuer {
    /// The issuer identifier, `https://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    pub ca_pem: String,
    port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
    jwks_requests: Arc<AtomicU64>,
    running: Option<Running>,
}

impl Issuer {
    /// A new issuer on a free port, down until [`Issuer::up`].
    pub async fn new() -> anyhow::Result<Issuer> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "chaos issuer CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?
            .signed_by(&leaf_key, &ca, &ca_key)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Reserve a port: bound and released; `up` binds it again.
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
        Ok(Issuer {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: ca.pem(),
            port,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            state: Arc::new(Mutex::new(State { keys: Vec::new(), delay: Duration::ZERO, huge: None })),
            jwks_requests: Arc::new(AtomicU64::new(0)),
            running: None,
        })
    }

    /// Publishes exactly these keys.
    pub fn set_keys(&self, keys: &[&SigningKey]) {
        self.state.lock().unwrap().keys = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// The JWKS becomes a 5 MiB document (the real keys first, then padding).
    pub fn set_huge(&self, huge: bool) {
        let mut s = self.state.lock().unwrap();
        s.huge = huge.then(|| Bytes::from(huge_jwks(s.keys.clone())));
    }

    /// JWKS requests answered or begun so far.
    pub fn jwks_requests(&self) -> u64 {
        self.jwks_requests.load(Ordering::SeqCst)
    }

    /// Listens again on its port.
    pub async fn up(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        // The port was ours a moment ago; retry briefly if the kernel still
        // holds it.
        let mut last = None;
        let mut listener = None;
        for _ in 0..40 {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let listener = listener
            .ok_or_else(|| anyhow!("cannot listen on 127.0.0.1:{} again: {last:?}", self.port))
            .context("issuer up")?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(
            listener,
            stopped,
            self.acceptor.clone(),
            self.state.clone(),
            self.jwks_requests.clone(),
            self.url.clone(),
        ));
        self.running = Some(Running { stop, task });
        Ok(())
    }

    /// Stops listening and closes every open connection; returns once the
    /// port refuses connections.
    pub async fn down(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
    jwks_requests: Arc<AtomicU64>,
    url: String,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            _ = &mut stopped => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (acceptor, state, jwks_requests, url) =
            (acceptor.clone(), state.clone(), jwks_requests.clone(), url.clone());
        conns.spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (state, jwks_requests, url) = (state.clone(), jwks_requests.clone(), url.clone());
                async move { Ok::<_, Infallible>(answer(req.uri().path(), &state, &jwks_requests, &url).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
    // Down: the listener and every connection (the gateway's pooled ones
    // included) close now.
    drop(listener);
    conns.shutdown().await;
}

async fn answer(
    path: &str,
    state: &Mutex<State>,
    jwks_requests: &AtomicU64,
    url: &str,
) -> hyper::Response<Full<Bytes>> {
    let (keys, delay, huge) = {
        let s = state.lock().unwrap();
        (s.keys.clone(), s.delay, s.huge.clone())
    };
    if path == "/keys" {
        jwks_requests.fetch_add(1, Ordering::SeqCst);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = match (path, huge) {
        ("/.well-known/openid-configuration", _) => Bytes::from(
            json!({
                "issuer": url,
                "jwks_uri": format!("{url}/keys"),
                "id_token_signing_alg_values_supported": ["ES256"],
            })
            .to_string(),
        ),
        ("/keys", Some(huge)) => huge,
        ("/keys", None) => Bytes::from(json!({ "keys": keys }).to_string()),
        _ => {
            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"not found")));
            *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
            return resp;
        }
    };
    let mut resp = hyper::Response::new(Full::new(body));
    resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert("cache-control", hyper::header::HeaderValue::from_static("public, max-age=3600"));
    resp
}

/// A 5 MiB JWKS: the real keys, then RSA-looking padding keys.
fn huge_jwks(mut keys: Vec<serde_json::Value>) -> String {
    const SIZE: usize = 5 * 1024 * 1024;
    let modulus = "q".repeat(342);
    let mut i = 0;
    let mut size = 0;
    while size < SIZE {
        let k = json!({"kty": "RSA", "kid": format!("pad-{i}"), "use": "sig", "alg": "RS256", "n": modulus, "e": "AQAB"});
        size += k.to_string().len() + 1;
        keys.push(k);
        i += 1;
    }
    json!({ "keys": keys }).to_string()
}
