//! Audit events: one JSON line per decision, and one per request to the
//! publish proxy, to stdout, stderr or a file.
//!
//! Invariants:
//! - a decision event carries the request id, client address, user (`sub`),
//!   channel, rule, decision, reason code, latency and shadow-rule outcomes —
//!   never a token, a secret or the claim set;
//! - a publish-proxy event (`"event":"rest"`) carries the local key, the
//!   endpoint, forwarded or refused with the reason, and the statuses — never
//!   a signature, a secret or event data;
//! - writing never blocks a request: events go through a bounded queue to a
//!   writer thread; when the queue is full the event is dropped and counted
//!   (`channelgate_audit_dropped_total`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::AuditTo;

/// Queue length between requests and the writer thread.
const QUEUE: usize = 16 * 1024;

/// One audit event.
#[derive(Debug, Serialize)]
pub(crate) struct Event<'a> {
    /// RFC 3339 time.
    pub ts: String,
    /// Always `"decision"`.
    pub event: &'static str,
    /// The request id (also in the `X-Request-Id` response header).
    pub request_id: &'a str,
    /// `channel` or `signin`.
    pub kind: &'static str,
    /// Client address (after trusted proxies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<std::net::IpAddr>,
    /// Verified `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// The channel (channel decisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'a str>,
    /// The deciding rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Reason code (empty on allow).
    pub reason: &'a str,
    /// Details of a refusal, for operators (expression errors name the
    /// expression and the CEL error, never claim values).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub detail: &'a str,
    /// Time spent on the request so far, in microseconds.
    pub latency_us: u64,
    /// What shadow rules would have decided.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub shadow: &'a [ShadowOutcome<'a>],
}

/// A shadow rule's outcome, as logged.
#[derive(Debug, Serialize)]
pub(crate) struct ShadowOutcome<'a> {
    /// The shadow rule.
    pub rule: &'a str,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Deny reason code (empty on allow).
    pub reason: &'a str,
}

/// One request to the publish proxy (the REST API an official server SDK
/// calls on the admin listener), as logged.
#[derive(Debug, Serialize)]
pub(crate) struct RestEvent<'a> {
    /// RFC 3339 time.
    pub ts: String,
    /// Always `"rest"`.
    pub event: &'static str,
    /// The request id (also in the `X-Request-Id` response header).
    pub request_id: &'a str,
    /// Peer address on the admin listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<std::net::IpAddr>,
    /// The local `auth_key`, once its signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// `events`, `batch_events`, `channels`, `channel`, `channel_users`,
    /// `terminate_user_connections`, or `unknown`.
    pub endpoint: &'static str,
    /// `forward` (sent to the Pusher API, or attempted: see `reason`) or
    /// `refuse` (answered by channelgate, nothing sent).
    pub decision: &'static str,
    /// Reason code: empty when forwarded and answered; the refusal's, or
    /// `upstream_timeout` / `upstream_unreachable`.
    pub reason: &'a str,
    /// The status answered to the SDK.
    pub status: u16,
    /// The Pusher API's status, when forwarded and answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Time spent on the request, in microseconds.
    pub latency_us: u64,
}

/// The audit sink.
#[derive(Debug, Clone)]
pub struct Audit {
    writer: Option<Arc<Writer>>,
    dropped: Arc<AtomicU64>,
}

/// The queue to the writer thread. When the last [`Audit`] goes, the queue
/// is closed and the writer, woken at once, writes what is left (waited for
/// a bounded time, so a stuck destination cannot hold up shutdown).
#[derive(Debug)]
struct Writer {
    tx: Option<SyncSender<String>>,
    thread: std::thread::Thread,
    done: std::sync::Mutex<Receiver<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.thread.unpark();
        if let Ok(done) = self.done.lock() {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}

impl Audit {
    /// A sink that writes nowhere (audit disabled).
    pub fn disabled() -> Self {
        Self { writer: None, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Starts the writer thread for `to`.
    pub fn start(to: &AuditTo) -> std::io::Result<Self> {
        let writer: Box<dyn Write + Send> = match to {
            AuditTo::Stdout => Box::new(std::io::stdout()),
            AuditTo::Stderr => Box::new(std::io::stderr()),
            AuditTo::File(path) => {
                Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let (done_tx, done) = sync_channel::<()>(1);
        let handle = std::thread::Builder::new().name("channelgate-audit".into()).spawn(move || {
            write_loop(rx, writer);
            let _ = done_tx.send(());
        })?;
        let writer =
            Writer { tx: Some(tx), thread: handle.thread().clone(), done: std::sync::Mutex::new(done) };
        Ok(Self { writer: Some(Arc::new(writer)), dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// Whether events are recorded.
    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Records an event ([`Event`] or [`RestEvent`]; never blocks).
    pub fn record<E: Serialize>(&self, event: &E) {
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else { return };
        // One allocation for a typical line (serde_json starts at 128 bytes).
        let mut buf = Vec::with_capacity(384);
        if serde_json::to_writer(&mut buf, event).is_err() {
            return;
        }
        // serde_json writes valid UTF-8 only.
        let Ok(line) = String::from_utf8(buf) else { return };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Now as RFC 3339 with milliseconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// How long the writer lets events gather after writing a batch. Waking a
/// blocked writer costs the request that sends the event a futex call (and,
/// on a busy core, a context switch), so under load the writer wakes up at
/// most once per interval instead of once per event (10-15% of the CPU time
/// of a request before).
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

fn write_loop(rx: Receiver<String>, writer: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, writer);
    // Blocks only when the queue is empty: an event after a quiet spell is
    // written (and flushed) at once.
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        loop {
            // Flush when the queue is empty: batches under load, prompt when idle.
            while let Ok(more) = rx.try_recv() {
                let _ = out.write_all(more.as_bytes());
                let _ = out.write_all(b"\n");
            }
            let _ = out.flush();
            // While the writer is parked nobody waits on the queue, so
            // sending an event is a plain enqueue. Closing the queue unparks
            // it. Nothing came in meanwhile: block.
            std::thread::park_timeout(BATCH_INTERVAL);
            match rx.try_recv() {
                Ok(more) => {
                    let _ = out.write_all(more.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Err(_) => break,
            }
        }
    }
    let _ = out.flush();
}
