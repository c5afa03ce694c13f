//! Outgoing HTTP(S): the client shared by the Pusher REST calls (publish
//! proxy, terminate connections), the webhook relay and the issuer key
//! fetches (`session::remote`, which applies its own time limit).
//!
//! Invariants: every call is bounded in time; retries are bounded and only
//! for failures where the request cannot have reached the server (the
//! connection could not be made), never once a request may have been sent:
//! a publish that timed out or lost its connection mid-way may have been
//! delivered, and sending it again would deliver it twice. REST requests are
//! signed with the real credentials here and nowhere else.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::pusher::rest;
use crate::secret::Secret;

/// Largest upstream answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// An HTTP(S) client with system roots plus `extra_roots`.
pub(crate) type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the client (aws-lc-rs rustls, HTTP/1.1 and HTTP/2).
pub(crate) fn https_client(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| format!("ca_file: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An upstream answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: http::StatusCode,
    /// Its `Content-Type`, when it sent a usable one.
    pub content_type: Option<http::HeaderValue>,
    /// Its body (capped).
    pub body: Bytes,
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer in time.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// Could not connect or the connection failed.
    #[error("the upstream is unreachable: {0}")]
    Unreachable(String),
}

/// One attempt's outcome: the answer, or the error and whether the request
/// certainly never reached the server.
enum Attempt {
    Answer(Answer),
    Failed { error: UpstreamError, not_sent: bool },
}

async fn attempt(client: &HttpsClient, req: http::Request<Full<Bytes>>, timeout: Duration) -> Attempt {
    let call = async {
        let resp = match client.request(req).await {
            Ok(r) => r,
            // `is_connect`: the TCP or TLS connection could not be set up,
            // so no byte of the request left this process.
            Err(e) => {
                return Attempt::Failed {
                    not_sent: e.is_connect(),
                    error: UpstreamError::Unreachable(e.to_string()),
                };
            }
        };
        let status = resp.status();
        let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Attempt::Answer(Answer { status, content_type, body })
    };
    // A timeout may strike after the request was sent: never "not sent".
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Attempt::Failed { error: UpstreamError::Timeout, not_sent: false })
}

/// Sends `method` `url` with `headers` and `body` (empty: none), each
/// attempt bounded by `timeout`. Retries (at most `retries` times, with a
/// short backoff) only when the connection could not be made: a request
/// that may have reached the server is never sent twice, whatever its
/// outcome (timeout, reset, 503).
pub(crate) async fn send(
    client: &HttpsClient,
    method: &http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
    retries: u32,
) -> Result<Answer, UpstreamError> {
    let mut attempts = 0;
    loop {
        let mut req = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.clone())).map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        match attempt(client, req, timeout).await {
            Attempt::Answer(a) => return Ok(a),
            Attempt::Failed { error, not_sent } => {
                if !not_sent || attempts >= retries {
                    return Err(error);
                }
            }
        }
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempts))).await;
    }
}

/// POSTs `body` to `url` with `headers`; see [`send`] for retries.
pub(crate) async fn post(
    client: &HttpsClient,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
    retries: u32,
) -> Result<Answer, UpstreamError> {
    send(client, &http::Method::POST, url, headers, body, timeout, retries).await
}

/// The Pusher REST API with the real credentials.
#[derive(Debug, Clone)]
pub struct PusherApi {
    client: HttpsClient,
    base: url::Url,
    key: String,
    secret: Secret,
    timeout: Duration,
    retries: u32,
}

impl PusherApi {
    /// A REST client for `base` (e.g. `https://api-mt1.pusher.com`) over
    /// `client`.
    pub fn new(
        client: HttpsClient,
        base: url::Url,
        key: String,
        secret: Secret,
        timeout: Duration,
        retries: u32,
    ) -> Self {
        Self { client, base, key, secret, timeout, retries }
    }

    /// Signs and POSTs `body` to `path` (e.g. `/apps/1001/events`).
    pub async fn post(&self, path: &str, body: Bytes) -> Result<Answer, UpstreamError> {
        self.send(&http::Method::POST, path, &[], body).await
    }

    /// Signs and sends a REST request: `extra` query parameters (such as
    /// `info`) are signed and sent beside the auth parameters; `body_md5`
    /// goes with a body only (never on a GET).
    pub async fn send(
        &self,
        method: &http::Method,
        path: &str,
        extra: &[(String, String)],
        body: Bytes,
    ) -> Result<Answer, UpstreamError> {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let query = rest::signed_query_with(method.as_str(), path, extra, &body, &self.key, &self.secret, ts);
        let base = self.base.as_str().trim_end_matches('/');
        let url = format!("{base}{path}?{query}");
        let library = concat!("channelgate ", env!("CARGO_PKG_VERSION"));
        let mut headers = vec![("x-pusher-library", library)];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        send(&self.client, method, &url, &headers, body, self.timeout, self.retries).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that reads each request whole, counts it, then
    /// either answers `answer` or (when `None`) drops the connection.
    async fn server(answer: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/apps/1/events", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    // Head, then the 2-byte body `{}`.
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") || !buf.ends_with(b"{}") {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    if let Some(answer) = answer {
                        let _ = tcp.write_all(answer.as_bytes()).await;
                    }
                    // Dropped: the connection closes (without an answer when `None`).
                });
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_request_that_reached_the_server_is_never_sent_twice() {
        let client = https_client(&[]).unwrap();
        let body = Bytes::from_static(b"{}");
        // The connection drops after the whole request arrived: maybe delivered.
        let (url, count) = server(None).await;
        let r = post(&client, &url, &[], body.clone(), Duration::from_secs(5), 2).await;
        assert!(matches!(r, Err(UpstreamError::Unreachable(_))), "{r:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "the request was sent again");
        // A 503 answer is an answer: passed back, not retried.
        let (url, count) =
            server(Some("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")).await;
        let r = post(&client, &url, &[], body.clone(), Duration::from_secs(5), 2).await;
        assert_eq!(r.map(|a| a.status.as_u16()).ok(), Some(503));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried() {
        let client = https_client(&[]).unwrap();
        // A port nobody listens on: every attempt is refused before sending.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/apps/1/events");
        let started = std::time::Instant::now();
        let r = post(&client, &url, &[], Bytes::from_static(b"{}"), Duration::from_secs(5), 2).await;
        assert!(matches!(r, Err(UpstreamError::Unreachable(_))), "{r:?}");
        // Two retries wait 100 ms and 200 ms before their attempts.
        assert!(started.elapsed() >= Duration::from_millis(300), "not retried: {:?}", started.elapsed());
        let started = std::time::Instant::now();
        let _ = post(&client, &url, &[], Bytes::from_static(b"{}"), Duration::from_secs(5), 0).await;
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
