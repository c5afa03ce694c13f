//! Accepting connections: TCP → (rustls, with a handshake deadline) →
//! hyper-util's auto HTTP/1.1 + HTTP/2 connection, under a connection cap
//! and a per-address cap, with graceful shutdown.
//!
//! Invariants:
//! - the accept loop never fails because of one connection: errors are
//!   logged in the connection's own task; accept errors (EMFILE and
//!   friends) back off exponentially and are logged once per streak;
//! - a new connection must deliver its first complete request head within
//!   `http.header_read_timeout` of accept, whatever the protocol path (plain
//!   TCP that sends nothing, TLS that goes silent after the handshake, a
//!   partial HTTP/2 preface, an HTTP/2 connection that never opens a
//!   stream); later requests on a connection are bounded by hyper's own
//!   header timeout (HTTP/1.1) and keep-alive pings (HTTP/2);
//! - one client address holds at most `http.max_connections_per_ip`
//!   connections (trusted proxies exempt); beyond it a connection is closed
//!   at once.
//!
//! Shutdown stops accepting first, then lets open connections finish within
//! `shutdown_grace`; connections still open then are aborted (closed)
//! before this function returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::app::Runtime;
use crate::http::Listener;
use crate::http::limit::ConnectionCounts;
use crate::telemetry::ReasonLabels;

/// First wait after a failed accept; doubled on each failure in a row.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);
/// Longest wait after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

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
    let per_ip = Arc::new(ConnectionCounts::default());
    // Tells the connections still open after the drain deadline to close.
    // (Not a JoinSet: a finished task's memory stays allocated until its
    // handle is joined, which after a flood of short connections held
    // megabytes for nothing.)
    let (close, closing) = tokio::sync::watch::channel(false);
    let mut backoff = Duration::ZERO;
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
                    // EMFILE/ENFILE (out of file descriptors), ENOBUFS, …:
                    // retrying at once would spin and log without end. Back
                    // off exponentially; one warning per streak.
                    backoff = if backoff.is_zero() { ACCEPT_BACKOFF_START } else { (backoff * 2).min(ACCEPT_BACKOFF_MAX) };
                    if backoff == ACCEPT_BACKOFF_START {
                        tracing::warn!(error = %e, listener = ?role, "accept failed; backing off until accepting works again");
                    } else {
                        tracing::debug!(error = %e, retry_in = ?backoff, "accept failed again");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        if !backoff.is_zero() {
            tracing::info!(listener = ?role, "accepting connections again");
            backoff = Duration::ZERO;
        }
        let accepted = Instant::now();
        let gateway = runtime.gateway();
        let exempt = gateway.limits.is_trusted(peer.ip());
        let max_per_ip = if exempt { 0 } else { gateway.http.max_connections_per_ip };
        drop(gateway);
        let Some(ip_slot) = per_ip.try_open(peer.ip(), max_per_ip) else {
            tracing::debug!(%peer, max = max_per_ip, "connection refused: too many from this address");
            runtime.metrics.connections_closed.get_or_create(&ReasonLabels { reason: "per_ip" }).inc();
            drop(stream);
            continue;
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
        let first_head_by = accepted + settings.header_read_timeout;
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let _slots = (permit, ip_slot);
            let metrics_rt = rt.clone();
            // Set when hyper hands the first request to the service, that
            // is, once a complete request head has arrived.
            let seen_request = Arc::new(AtomicBool::new(false));
            let seen = seen_request.clone();
            let service = tower::ServiceBuilder::new()
                .map_request(move |req| {
                    seen.store(true, Ordering::Relaxed);
                    req
                })
                .service(crate::http::service(rt, peer, role));
            let service = TowerToHyperService::new(service);
            let serve = async move {
                match acceptor {
                    Some(acceptor) => {
                        let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                        {
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
            };
            // From accept to the first complete request head, on every path.
            let no_request_in_time = async {
                tokio::time::sleep_until(first_head_by).await;
                if seen_request.load(Ordering::Relaxed) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = serve => {}
                () = no_request_in_time => {
                    tracing::debug!(%peer, "closed: no complete request within header_read_timeout of accept");
                    metrics_rt.metrics.connections_closed.get_or_create(&ReasonLabels { reason: "no_request" }).inc();
                }
                _ = closing.wait_for(|closed| *closed) => {}
            }
        });
    }
    drop(listener);
    let grace = runtime.gateway().http.shutdown_grace;
    tracing::info!(listener = ?role, open = graceful.count(), "listener closed; draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = ?role, "all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(listener = ?role, "drain deadline passed; closing the connections still open"),
    }
    let _ = close.send(true);
    // Every connection holds a slot: all slots back means all closed.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
}

fn log_conn_error(peer: SocketAddr, what: &str, e: &(dyn std::error::Error + 'static)) {
    tracing::debug!(%peer, error = %e, "{what} ended with an error");
}
