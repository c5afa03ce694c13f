//! Telling a listener's open connections to finish and then to close.
//!
//! Every connection task checks the drain state each time it wakes, so the
//! check is an atomic load and a waker registration in the connection's own
//! [`AtomicWaker`]: no shared lock, no shared waiter list. (hyper-util's
//! `GracefulShutdown` and a `watch` channel each took a shared `Notify`'s
//! mutex on every wake of every connection, ~1,000 instructions a request
//! between them; see BENCHMARKS.md, round 7.) The set of connections is
//! locked only when a connection opens or ends, and once when the state
//! changes.
//!
//! Invariant: a connection registers its waker before it reads the state,
//! and the state is written before the registered wakers are woken, so a
//! connection never sleeps through a change.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;

// The state: 0 (serving, the default), then DRAINING, then CLOSING.
const DRAINING: u8 = 1;
const CLOSING: u8 = 2;

/// The drain state of one listener and the wakers of its open connections.
#[derive(Default)]
pub(crate) struct Drain {
    state: AtomicU8,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl Drain {
    /// Registers a new connection; it is forgotten when the returned
    /// handle drops.
    pub(crate) fn open(self: &Arc<Self>) -> Conn {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, waker.clone());
        Conn { drain: self.clone(), id, waker, retire: Arc::new(AtomicBool::new(false)) }
    }

    /// Connections open now.
    pub(crate) fn count(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Asks every open connection to finish its requests in progress and
    /// close (HTTP/1.1: after the current response; HTTP/2: GOAWAY).
    pub(crate) fn drain(&self) {
        self.set(DRAINING);
    }

    /// Tells every connection still open to close now.
    pub(crate) fn close(&self) {
        self.set(CLOSING);
    }

    fn set(&self, state: u8) {
        self.state.fetch_max(state, Ordering::AcqRel);
        // Clone the wakers out: waking runs no code of ours, but the set's
        // lock is not held across anything but the copy.
        let wakers: Vec<Arc<AtomicWaker>> =
            self.open.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for w in wakers {
            w.wake();
        }
    }
}

/// One connection's place in its listener's [`Drain`].
pub(crate) struct Conn {
    drain: Arc<Drain>,
    id: u64,
    waker: Arc<AtomicWaker>,
    retire: Arc<AtomicBool>,
}

/// Asks one connection to finish gracefully, as a drain does (an HTTP/2
/// connection idle too long: GOAWAY, then closed once no stream is open).
pub(crate) struct Retire {
    waker: Arc<AtomicWaker>,
    retire: Arc<AtomicBool>,
}

impl Retire {
    pub(crate) fn retire(&self) {
        self.retire.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl Conn {
    /// Registers the current task, then reads the state.
    fn state(&self, cx: &Context<'_>) -> u8 {
        self.waker.register(cx.waker());
        self.drain.state.load(Ordering::Acquire)
    }

    /// A handle that asks this connection alone to finish gracefully.
    pub(crate) fn retirer(&self) -> Retire {
        Retire { waker: self.waker.clone(), retire: self.retire.clone() }
    }

    /// Resolves when the listener closes its connections (for the steps
    /// before [`Conn::serve`], such as the TLS handshake).
    pub(crate) async fn closed(&self) {
        std::future::poll_fn(|cx| if self.state(cx) == CLOSING { Poll::Ready(()) } else { Poll::Pending })
            .await;
    }

    /// Serves `conn` until it ends; when the listener drains, asks it to
    /// finish gracefully, and when the listener closes, drops it (which
    /// closes the socket).
    pub(crate) fn serve<C: GracefulConnection>(self, conn: C) -> Serve<C> {
        Serve { conn, handle: self, asked: false }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.drain.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// How a connection served by [`Conn::serve`] ended.
pub(crate) enum Ended<E> {
    /// The connection finished by itself (the client closed, an error, or
    /// a graceful shutdown completed).
    Done(Result<(), E>),
    /// The listener closed it at the end of the drain grace.
    Closed,
}

pin_project_lite::pin_project! {
    /// The future of [`Conn::serve`].
    pub(crate) struct Serve<C> {
        #[pin]
        conn: C,
        handle: Conn,
        asked: bool,
    }
}

impl<C: GracefulConnection> Future for Serve<C> {
    type Output = Ended<C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let state = this.handle.state(cx);
        if state >= CLOSING {
            return Poll::Ready(Ended::Closed);
        }
        if !*this.asked && (state == DRAINING || this.handle.retire.load(Ordering::Acquire)) {
            *this.asked = true;
            this.conn.as_mut().graceful_shutdown();
        }
        this.conn.poll(cx).map(Ended::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    type Served = tokio::task::JoinHandle<Ended<Box<dyn std::error::Error + Send + Sync>>>;

    /// A real hyper HTTP/1.1 + HTTP/2 connection over an in-memory pipe,
    /// served under `handle`; returns the client's end.
    fn serve(handle: Conn) -> (DuplexStream, Served) {
        let (client, server) = tokio::io::duplex(4096);
        let service = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        });
        let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(server), service).into_owned();
        (client, tokio::spawn(handle.serve(conn)))
    }

    async fn ended(served: Served) -> Ended<Box<dyn std::error::Error + Send + Sync>> {
        match tokio::time::timeout(Duration::from_secs(5), served).await {
            Ok(Ok(ended)) => ended,
            Ok(Err(e)) => panic!("the connection task failed: {e}"),
            Err(_) => panic!("the connection did not end within 5 s"),
        }
    }

    async fn read_to_end(client: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got))
            .await
            .expect("the server did not close its end")
            .expect("read");
        String::from_utf8_lossy(&got).into_owned()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn draining_closes_an_idle_keep_alive_connection_and_forgets_it() {
        let drain = Arc::new(Drain::default());
        let (mut client, served) = serve(drain.open());
        client.write_all(GET).await.unwrap();
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        assert_eq!(drain.count(), 1);

        drain.drain();
        assert!(matches!(ended(served).await, Ended::Done(Ok(()))));
        assert_eq!(read_to_end(&mut client).await, "", "closed without another byte");
        assert_eq!(drain.count(), 0);
    }

    #[tokio::test]
    async fn a_request_in_progress_when_draining_starts_is_answered_then_the_connection_ends() {
        let drain = Arc::new(Drain::default());
        let (mut client, served) = serve(drain.open());
        // Half a head: hyper is reading a request.
        client.write_all(&GET[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain.drain();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(&GET[10..]).await.unwrap();
        let answer = read_to_end(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
        assert!(matches!(ended(served).await, Ended::Done(Ok(()))));
    }

    #[tokio::test]
    async fn closing_ends_a_connection_that_never_finishes_its_request() {
        let drain = Arc::new(Drain::default());
        let (mut client, served) = serve(drain.open());
        client.write_all(&GET[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain.drain();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!served.is_finished(), "a request in progress is waited for");
        drain.close();
        assert!(matches!(ended(served).await, Ended::Closed));
        assert_eq!(read_to_end(&mut client).await, "");
        assert_eq!(drain.count(), 0);
    }

    #[tokio::test]
    async fn a_connection_first_polled_after_draining_started_still_drains() {
        let drain = Arc::new(Drain::default());
        // Registered while serving, polled for the first time after the
        // wake-up went out (its waker was still empty then).
        let handle = drain.open();
        drain.drain();
        let (mut client, served) = serve(handle);
        // (hyper-util ends a connection asked to shut down before it knows
        // the protocol with an error, logged at debug.)
        assert!(matches!(ended(served).await, Ended::Done(_)), "ended by the drain, not closed");
        assert_eq!(read_to_end(&mut client).await, "");
    }

    #[tokio::test]
    async fn retiring_one_connection_ends_it_gracefully_and_leaves_the_others() {
        let drain = Arc::new(Drain::default());
        let (mut idle, idle_served) = {
            let handle = drain.open();
            let retire = handle.retirer();
            let (client, served) = serve(handle);
            tokio::task::yield_now().await;
            (client, (served, retire))
        };
        let (mut other, other_served) = serve(drain.open());
        for c in [&mut idle, &mut other] {
            c.write_all(GET).await.unwrap();
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        }
        let (served, retire) = idle_served;
        retire.retire();
        assert!(matches!(ended(served).await, Ended::Done(Ok(()))));
        assert_eq!(read_to_end(&mut idle).await, "");
        // The other connection still serves.
        other.write_all(GET).await.unwrap();
        let mut buf = [0u8; 256];
        let n = other.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        assert!(!other_served.is_finished());
        assert_eq!(drain.count(), 1);
    }

    #[tokio::test]
    async fn the_state_only_moves_forward() {
        let drain = Arc::new(Drain::default());
        let handle = drain.open();
        drain.close();
        drain.drain();
        let (_client, served) = serve(handle);
        assert!(matches!(ended(served).await, Ended::Closed), "draining after closing does not reopen");
    }
}
