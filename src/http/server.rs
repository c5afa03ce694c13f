//! Accepting connections: TCP → (rustls, with a handshake deadline) →
//! hyper-util's auto HTTP/1.1 + HTTP/2 connection, under a connection cap,
//! with graceful shutdown.
//!
//! The accept loop never fails because of one connection: errors are
//! logged in the connection's own task. Shutdown stops accepting first, then
//! lets open connections finish within a deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::app::Runtime;
use crate::http::Listener;

/// Serves `role` on `listener` until `shutdown` resolves, then drains open
/// connections for at most the configured `shutdown_grace`.
///
/// The public listener uses the runtime's current TLS configuration for
/// each new connection, so a certificate reload applies to new connections
/// and never drops open ones. The admin listener is plain HTTP (loopback).
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    role: Listener,
    shutdown: impl Future<Output = ()>,
) {
    let settings = runtime.gateway().http.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(8 * 1024))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    tokio::pin!(shutdown);

    loop {
        // Wait for a free slot before accepting: past the cap, new
        // connections queue in the kernel's backlog instead of eating memory.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let rt = runtime.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = match role {
            Listener::Public => runtime.tls().map(TlsAcceptor::from),
            Listener::Admin => None,
        };
        let handshake_timeout = settings.tls_handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let service = TowerToHyperService::new(crate::http::service(rt, peer, role));
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return log_conn_error(peer, "tls handshake", &e),
                        Err(_) => return tracing::debug!(%peer, "tls handshake timed out"),
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        log_conn_error(peer, "connection", e.as_ref());
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        log_conn_error(peer, "connection", e.as_ref());
                    }
                }
            }
        });
    }
    drop(listener);
    let grace = runtime.gateway().http.shutdown_grace;
    tracing::info!(listener = ?role, open = graceful.count(), "listener closed; draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = ?role, "all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(listener = ?role, "drain deadline passed; closing remaining connections"),
    }
}

fn log_conn_error(peer: SocketAddr, what: &str, e: &(dyn std::error::Error + 'static)) {
    tracing::debug!(%peer, error = %e, "{what} ended with an error");
}
