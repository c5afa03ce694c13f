//! Accepting connections: TCP → (rustls, with a handshake deadline) →
//! hyper-util's auto HTTP/1.1 + HTTP/2 connection, under a connection cap
//! and a per-address cap, with graceful shutdown (`drain.rs`).
//!
//! Invariants:
//! - the accept loop never fails because of one connection: errors are
//!   logged in the connection's own task; accept errors (EMFILE and
//!   friends) back off exponentially and are logged once per streak;
//! - a new connection must deliver its first complete request head within
//!   `http.header_read_timeout` of accept, whatever the protocol path (plain
//!   TCP that sends nothing, TLS that goes silent after the handshake, a
//!   partial HTTP/2 preface, an HTTP/2 connection that never opens a
//!   stream); on HTTP/1.1 each later head must arrive within
//!   `http.keep_alive_timeout` of the previous response (the connection's
//!   [`Activity`] watchdog, one timer per connection rather than hyper's per
//!   request); an HTTP/2 connection is sent GOAWAY when no stream has been
//!   in progress for `http.keep_alive_timeout` (and cut if still open a
//!   header timeout later); a dead HTTP/2 peer is found by keep-alive pings;
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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::app::Runtime;
use crate::http::Listener;
use crate::http::drain::{Drain, Ended};
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
        // Each head's deadline is the connection's watchdog (below), not a
        // timer hyper allocates, arms and cancels for every request.
        .header_read_timeout(None)
        .max_buf_size(settings.max_header_bytes.max(8 * 1024))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    // Tells open connections to finish, then (after the grace) to close.
    // (Not a JoinSet: a finished task's memory stays allocated until its
    // handle is joined, which after a flood of short connections held
    // megabytes for nothing.)
    let drain = Arc::new(Drain::default());
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let per_ip = Arc::new(ConnectionCounts::default());
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
        let handle = drain.open();
        let acceptor = match role {
            Listener::Public => runtime.tls().map(TlsAcceptor::from),
            Listener::Admin => None,
        };
        let handshake_timeout = settings.tls_handshake_timeout;
        let header_read_timeout = settings.header_read_timeout;
        let keep_alive_timeout = settings.keep_alive_timeout;
        let first_head_by = accepted + header_read_timeout;
        tokio::spawn(async move {
            let _slots = (permit, ip_slot);
            let metrics_rt = rt.clone();
            let activity = Arc::new(Activity::new(accepted));
            let service = Track { inner: crate::http::service(rt, peer, role), activity: activity.clone() };
            let service = TowerToHyperService::new(service);
            let retire = handle.retirer();
            let serve = async move {
                match acceptor {
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                        let tls = tokio::select! {
                            r = handshake => match r {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(e)) => return log_conn_error(peer, "tls handshake", &e),
                                Err(_) => return tracing::debug!(%peer, "tls handshake timed out"),
                            },
                            () = handle.closed() => return tracing::debug!(%peer, "closed during the tls handshake at the end of the drain grace"),
                        };
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        ended(peer, handle.serve(conn.into_owned()).await);
                    }
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        ended(peer, handle.serve(conn.into_owned()).await);
                    }
                }
            };
            // The connection first: its wake-ups are the common case, and
            // it registers the task for the drain before the watchdog runs.
            tokio::pin!(serve);
            tokio::select! {
                biased;
                () = &mut serve => {}
                idle = activity.watch(first_head_by, header_read_timeout, keep_alive_timeout) => {
                    let reason = match idle {
                        Idle::NoRequest => {
                            tracing::debug!(%peer, "closed: no complete request within header_read_timeout of accept");
                            "no_request"
                        }
                        Idle::NextRequest => {
                            tracing::debug!(%peer, "closed: no complete request within keep_alive_timeout of the last response");
                            "idle"
                        }
                        Idle::NoStream => {
                            tracing::debug!(%peer, "closing: HTTP/2 without a stream for keep_alive_timeout (GOAWAY)");
                            "idle"
                        }
                    };
                    metrics_rt.metrics.connections_closed.get_or_create(&ReasonLabels { reason }).inc();
                    if idle == Idle::NoStream {
                        // hyper sends GOAWAY, so the client opens its next
                        // stream elsewhere, and closes once none is open; a
                        // peer that keeps it open is cut after the header timeout.
                        retire.retire();
                        if tokio::time::timeout(header_read_timeout, &mut serve).await.is_err() {
                            tracing::debug!(%peer, "closed: HTTP/2 connection still open after GOAWAY");
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let grace = runtime.gateway().http.shutdown_grace;
    tracing::info!(listener = ?role, open = drain.count(), "listener closed; draining connections");
    drain.drain();
    // Every connection holds a slot: all slots back means all closed.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(grace, slots.acquire_many(all)).await {
        Ok(_) => tracing::info!(listener = ?role, "all connections closed"),
        Err(_) => {
            tracing::warn!(listener = ?role, open = drain.count(), "drain deadline passed; closing the connections still open");
            drain.close();
            let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
        }
    }
}

fn ended(peer: SocketAddr, ended: Ended<Box<dyn std::error::Error + Send + Sync>>) {
    match ended {
        Ended::Done(Ok(())) => {}
        Ended::Done(Err(e)) => log_conn_error(peer, "connection", e.as_ref()),
        Ended::Closed => tracing::debug!(%peer, "closed at the end of the drain grace"),
    }
}

fn log_conn_error(peer: SocketAddr, what: &str, e: &(dyn std::error::Error + 'static)) {
    tracing::debug!(%peer, error = %e, "{what} ended with an error");
}

/// What a connection's watchdog reads, written by its service: requests in
/// progress, when the last response was handed to hyper, and whether the
/// connection speaks HTTP/2. (An HTTP/1.1 connection's requests run in its
/// own task, one at a time; HTTP/2 streams run in tasks of their own, hence
/// the atomics.)
struct Activity {
    /// Accept.
    origin: Instant,
    /// Requests whose response has not been handed to hyper yet.
    busy: AtomicU32,
    /// Nanoseconds from `origin` to the last response (0: none yet).
    answered: AtomicU64,
    /// The first request came over HTTP/2.
    h2: AtomicBool,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// No complete request head within the timeout of accept.
    NoRequest,
    /// HTTP/1.1: no complete next head within the keep-alive timeout of
    /// the last response (an idle keep-alive connection, or slow headers).
    NextRequest,
    /// HTTP/2: no stream in progress and none opened within the keep-alive
    /// timeout of the last response (the connection is sent GOAWAY).
    NoStream,
}

impl Activity {
    fn new(origin: Instant) -> Self {
        Self { origin, busy: AtomicU32::new(0), answered: AtomicU64::new(0), h2: AtomicBool::new(false) }
    }

    /// A complete request head reached the service.
    fn request(&self, version: hyper::Version) {
        if version == hyper::Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
    }

    /// The service handed a response to hyper, which writes it at once
    /// (answers are small): the wait for the next head starts. (The
    /// request stops counting as in progress when its [`InFlight`] drops.)
    fn responded(&self) {
        let since = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
        self.answered.store(since, Ordering::Release);
    }

    /// Resolves when the connection has waited too long for a request
    /// head: `first_head_by` for the first, `keep_alive` after the last
    /// response for each later one on HTTP/1.1 (on HTTP/2: for the next
    /// stream, when none is in progress). One timer for the
    /// connection's life, looked at only when it fires: a request in
    /// progress then defers it by `recheck` (its body and its work have
    /// deadlines of their own), so a connection that goes quiet after a
    /// request that ran across a check is closed up to `recheck` late.
    async fn watch(&self, first_head_by: Instant, recheck: Duration, keep_alive: Duration) -> Idle {
        let sleep = tokio::time::sleep_until(first_head_by);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = Instant::now();
            if self.busy.load(Ordering::Acquire) > 0 {
                sleep.as_mut().reset(now + recheck);
                continue;
            }
            let answered = self.answered.load(Ordering::Acquire);
            if answered == 0 {
                return Idle::NoRequest;
            }
            let next_head_by = self.origin + Duration::from_nanos(answered) + keep_alive;
            if next_head_by <= now {
                // (Streams are bounded by their own deadlines; a dead
                // HTTP/2 peer by hyper's keep-alive pings.)
                return if self.h2.load(Ordering::Relaxed) { Idle::NoStream } else { Idle::NextRequest };
            }
            sleep.as_mut().reset(next_head_by);
        }
    }
}

/// The service of one connection, telling its [`Activity`] when a request
/// starts and when its response is handed to hyper.
#[derive(Clone)]
struct Track<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> tower::Service<hyper::Request<B>> for Track<S>
where
    S: tower::Service<hyper::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        self.activity.request(req.version());
        Tracked { inner: self.inner.call(req), in_flight: Some(InFlight(self.activity.clone())) }
    }
}

pin_project_lite::pin_project! {
    /// A request's future; marks the response on completion.
    struct Tracked<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

/// A request in progress; dropped when its response is handed to hyper,
/// or when hyper drops the request (an HTTP/2 stream the client reset), so
/// an abandoned stream does not keep its connection busy for ever.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(in_flight) = this.in_flight.take() {
            in_flight.0.responded();
        }
        std::task::Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;

    use tower::Service;

    /// A service whose answer never comes.
    fn never() -> impl tower::Service<hyper::Request<()>, Response = (), Error = Infallible, Future: Unpin> {
        tower::service_fn(|_req: hyper::Request<()>| std::future::pending::<Result<(), Infallible>>())
    }

    #[test]
    fn a_request_dropped_before_its_answer_no_longer_counts_as_in_progress() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let mut track = Track { inner: never(), activity: activity.clone() };
        let first = track.call(hyper::Request::new(()));
        let second = track.call(hyper::Request::new(()));
        assert_eq!(activity.busy.load(Ordering::Acquire), 2);
        // hyper drops a stream's future when the client resets it.
        drop(first);
        assert_eq!(activity.busy.load(Ordering::Acquire), 1);
        drop(second);
        assert_eq!(activity.busy.load(Ordering::Acquire), 0);
        assert_eq!(activity.answered.load(Ordering::Acquire), 0, "no answer was recorded");
    }

    #[tokio::test]
    async fn an_answered_request_records_its_answer_and_stops_counting() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let inner = tower::service_fn(|_req: hyper::Request<()>| async { Ok::<_, Infallible>(()) });
        let mut track = Track { inner, activity: activity.clone() };
        let fut = track.call(hyper::Request::new(()));
        assert_eq!(activity.busy.load(Ordering::Acquire), 1);
        fut.await.unwrap();
        assert_eq!(activity.busy.load(Ordering::Acquire), 0);
        assert!(activity.answered.load(Ordering::Acquire) > 0);
    }
}
