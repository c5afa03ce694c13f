//! Test helpers: a stand-in for the app's HTTP endpoints on a loopback port
//! (a real hyper server; the handler is the test's), and real PostgreSQL
//! and redis-server processes on free loopback ports, each stopped by PID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A request the app received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: http::Method,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

type Handler =
    Arc<dyn Fn(Received) -> Pin<Box<dyn Future<Output = http::Response<Full<Bytes>>> + Send>> + Send + Sync>;

/// The app's endpoints: every request goes to the handler.
pub(crate) struct App {
    pub(crate) url: http::Uri,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    pub(crate) async fn start<F, Fut>(handler: F) -> App
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap()).parse().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let (handler, log) = (handler.clone(), log.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                let r = Received { method: parts.method, headers: parts.headers, body };
                                log.lock().unwrap().push(r.clone());
                                Ok::<_, Infallible>(handler(r).await)
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        App { url, received, task }
    }

    /// What it received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response with `status`, `body` and extra headers.
pub(crate) fn respond(status: u16, body: &str, headers: &[(&str, &str)]) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::builder().status(status).header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// An HTTP client for the tests (plain HTTP on loopback).
pub(crate) fn client() -> crate::upstream::HttpsClient {
    crate::upstream::https_client(&[]).unwrap()
}

mod servers;
pub(crate) use servers::{PgServer, RedisServer};
