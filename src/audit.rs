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
//!   (`channelgate_audit_dropped_total`). The queue is bounded in bytes and
//!   its memory follows what it holds (a list of blocks, not a preallocated
//!   ring of slots, which was 512 KiB resident from start-up on); under load
//!   the writer is woken once [`WAKE_AT`] bytes wait, so the backlog stays
//!   about one write's worth;
//! - a decision line is written by hand (one per channel decision, so a
//!   batch writes ten): the same bytes serde_json writes for [`Event`], which
//!   a test holds, without its machinery; the time of day is formatted once
//!   per second.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::AuditTo;

/// Bytes of strings (their allocations, not only their text) the queue
/// between requests and the writer thread holds at most: about 20,000
/// decision lines.
const QUEUE_BYTES: usize = 8 << 20;

/// One audit event.
#[derive(Debug, Serialize)]
pub(crate) struct Event<'a> {
    /// RFC 3339 time.
    pub ts: &'a str,
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
    tx: Option<Queue>,
    done: std::sync::Mutex<Receiver<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(queue) = self.tx.take() {
            let thread = queue.writer.clone();
            drop(queue);
            thread.unpark();
        }
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
        Self::start_writer(writer, QUEUE_BYTES)
    }

    /// Starts the writer thread for `writer`, with room for `bound` bytes of
    /// queued messages.
    fn start_writer(writer: Box<dyn Write + Send>, bound: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::<String>();
        let pending = Arc::new(AtomicUsize::new(0));
        let taken = pending.clone();
        let (done_tx, done) = sync_channel::<()>(1);
        let handle = std::thread::Builder::new().name("channelgate-audit".into()).spawn(move || {
            write_loop(&rx, &taken, writer);
            let _ = done_tx.send(());
        })?;
        let tx = Queue { tx, pending, bound, writer: handle.thread().clone() };
        let writer = Writer { tx: Some(tx), done: std::sync::Mutex::new(done) };
        Ok(Self { writer: Some(Arc::new(writer)), dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// Whether events are recorded.
    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Records an event ([`Event`] or [`RestEvent`]; never blocks).
    pub fn record<E: Line>(&self, event: &E) {
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else { return };
        // One allocation for a typical line.
        let mut line = String::with_capacity(384);
        if !event.write_line(&mut line) {
            return;
        }
        if !tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the lines of several events ([`Line::write_line`], joined
    /// by newlines) as one message: a batch's ten decisions cost the queue
    /// one operation. `count` events are dropped if the queue is full.
    pub fn record_lines(&self, text: String, count: u64) {
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else { return };
        if count == 0 {
            return;
        }
        if !tx.try_send(text) {
            self.dropped.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The sending end of the queue: an unbounded channel (its blocks are
/// allocated as messages come and freed as the writer takes them) held to
/// `bound` bytes by a count of the bytes not yet taken. A message counts
/// its string's capacity: the bound is on memory held.
#[derive(Debug)]
struct Queue {
    tx: Sender<String>,
    pending: Arc<AtomicUsize>,
    bound: usize,
    writer: std::thread::Thread,
}

/// Queued bytes at which the writer is woken before its interval ends: one
/// buffer's worth, which it would write at once anyway. Under load the
/// backlog (and the memory it holds) stays near this rather than an
/// interval's worth (10 ms of a batch load was 400 messages in 1.6 MB of
/// strings).
const WAKE_AT: usize = 64 * 1024;

impl Queue {
    /// Queues `message`, unless `bound` messages are waiting or the writer
    /// is gone; false if it was not queued.
    fn try_send(&self, message: String) -> bool {
        let len = message.capacity();
        let waiting = self.pending.fetch_add(len, Ordering::Relaxed);
        if waiting + len > self.bound {
            self.pending.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        if self.tx.send(message).is_err() {
            self.pending.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        if waiting < WAKE_AT && waiting + len >= WAKE_AT {
            self.writer.unpark();
        }
        true
    }
}

/// An audit event as one JSON line (without the newline).
pub trait Line {
    /// Appends the line to `out`; false if it cannot be written.
    fn write_line(&self, out: &mut String) -> bool;
}

impl Line for Event<'_> {
    fn write_line(&self, out: &mut String) -> bool {
        self.write_head(out);
        self.write_tail(out);
        true
    }
}

impl Event<'_> {
    /// The members up to `user`: the same for every decision of a request
    /// (a batch writes them once and copies them).
    pub(crate) fn write_head(&self, out: &mut String) {
        // The members in the order, and with the omissions, of the serde
        // derive (`an_event_line_is_what_serde_writes` holds it).
        out.push_str("{\"ts\":");
        json_str(out, self.ts);
        out.push_str(",\"event\":");
        static_str(out, self.event);
        out.push_str(",\"request_id\":");
        json_str(out, self.request_id);
        out.push_str(",\"kind\":");
        static_str(out, self.kind);
        match self.client {
            None => {}
            // An address's text needs no escapes.
            Some(std::net::IpAddr::V4(v4)) => {
                out.push_str(",\"client\":\"");
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    out.push_str(itoa::Buffer::new().format(octet));
                }
                out.push('"');
            }
            Some(client) => {
                use std::fmt::Write as _;
                let _ = write!(out, ",\"client\":\"{client}\"");
            }
        }
        if let Some(user) = self.user {
            out.push_str(",\"user\":");
            json_str(out, user);
        }
    }

    /// The members after `user`, and the end of the line.
    pub(crate) fn write_tail(&self, out: &mut String) {
        for (name, value) in [(",\"channel\":", self.channel), (",\"rule\":", self.rule)] {
            if let Some(value) = value {
                out.push_str(name);
                json_str(out, value);
            }
        }
        out.push_str(",\"decision\":");
        static_str(out, self.decision);
        out.push_str(",\"reason\":");
        json_str(out, self.reason);
        if !self.detail.is_empty() {
            out.push_str(",\"detail\":");
            json_str(out, self.detail);
        }
        out.push_str(",\"latency_us\":");
        out.push_str(itoa::Buffer::new().format(self.latency_us));
        if !self.shadow.is_empty() {
            out.push_str(",\"shadow\":[");
            for (i, s) in self.shadow.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"rule\":");
                json_str(out, s.rule);
                out.push_str(",\"decision\":");
                json_str(out, s.decision);
                out.push_str(",\"reason\":");
                json_str(out, s.reason);
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
    }
}

impl Line for RestEvent<'_> {
    fn write_line(&self, out: &mut String) -> bool {
        match serde_json::to_string(self) {
            Ok(line) => {
                out.push_str(&line);
                true
            }
            Err(_) => false,
        }
    }
}

/// Appends `s` as a JSON string. `JSON.stringify`'s escapes (the Pusher
/// answers' writer) are serde_json's: `"`, `\\`, `\b \t \n \f \r`, the
/// other control characters as `\u00xx` (the event test compares with serde).
fn json_str(out: &mut String, s: &str) {
    crate::pusher::js_json::write_str(out, s);
}

/// Appends one of the code's own words (`decision`, `channel`, `allow`)
/// as a JSON string: they need no escape (the test of the event line
/// compares with serde), so none is looked for.
fn static_str(out: &mut String, s: &'static str) {
    debug_assert!(!crate::scan::needs_json_escape(s.as_bytes()), "{s}");
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// Now as RFC 3339 with milliseconds (`2026-11-28T17:12:10.123Z`).
pub(crate) fn now_rfc3339() -> String {
    Timestamp::now().as_str().to_owned()
}

/// A time as RFC 3339 with milliseconds, read and formatted without an
/// allocation: every decision's audit line has one. The date and time of
/// day are formatted once per second on each thread.
pub(crate) enum Timestamp {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    Short([u8; 24]),
    /// Before 1970 or after 9999: humantime's text.
    Long(String),
}

impl Timestamp {
    /// Now.
    pub(crate) fn now() -> Self {
        Self::at(SystemTime::now())
    }

    /// The time `now` (a request's own reading of the clock: its decisions
    /// are stamped with the time they were made at, without reading the
    /// clock again).
    pub(crate) fn at(now: SystemTime) -> Self {
        thread_local! {
            /// The second last formatted, and its `YYYY-MM-DDTHH:MM:SS.`.
            static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
        }
        let Ok(since) = now.duration_since(UNIX_EPOCH) else {
            return Self::Long(humantime::format_rfc3339_millis(now).to_string());
        };
        let secs = since.as_secs();
        let prefix = SECOND.with(|cached| {
            let (second, prefix) = cached.get();
            if second == secs {
                return Some(prefix);
            }
            let prefix = second_prefix(secs)?;
            cached.set((secs, prefix));
            Some(prefix)
        });
        match prefix {
            Some(prefix) => Self::Short(with_millis(&prefix, since.subsec_millis())),
            None => Self::Long(humantime::format_rfc3339_millis(now).to_string()),
        }
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            // ASCII digits and separators.
            Self::Short(text) => std::str::from_utf8(text).unwrap_or_default(),
            Self::Long(text) => text,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a unix time, for years up to 9999.
fn second_prefix(secs: u64) -> Option<[u8; 20]> {
    let days = i64::try_from(secs / 86_400).ok()?;
    let time = secs % 86_400;
    // Days to a civil date (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            // A decimal digit.
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, month.unsigned_abs());
    put(8, 2, day.unsigned_abs());
    put(11, 2, time / 3600);
    put(14, 2, time % 3600 / 60);
    put(17, 2, time % 60);
    Some(out)
}

fn with_millis(prefix: &[u8; 20], millis: u32) -> [u8; 24] {
    let mut out = [b'Z'; 24];
    out[..20].copy_from_slice(prefix);
    for (at, digit) in [(20, millis / 100), (21, millis / 10), (22, millis)] {
        // A decimal digit.
        out[at] = b'0' + (digit % 10) as u8;
    }
    out
}

/// How long the writer lets events gather after writing a batch. Waking a
/// blocked writer costs the request that sends the event a futex call (and,
/// on a busy core, a context switch), so under load the writer wakes up at
/// most once per interval instead of once per event (10-15% of the CPU time
/// of a request before), or when [`WAKE_AT`] messages wait.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

fn write_loop(rx: &Receiver<String>, pending: &AtomicUsize, writer: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, writer);
    // Blocks only when the queue is empty: an event after a quiet spell is
    // written (and flushed) at once.
    while let Ok(line) = rx.recv() {
        pending.fetch_sub(line.capacity(), Ordering::Relaxed);
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        loop {
            // Flush when the queue is empty: batches under load, prompt when idle.
            let mut taken = 0;
            while let Ok(more) = rx.try_recv() {
                taken += more.capacity();
                let _ = out.write_all(more.as_bytes());
                let _ = out.write_all(b"\n");
            }
            pending.fetch_sub(taken, Ordering::Relaxed);
            let _ = out.flush();
            // While the writer is parked nobody waits on the queue, so
            // sending an event is a plain enqueue. Closing the queue unparks
            // it. Nothing came in meanwhile: block.
            std::thread::park_timeout(BATCH_INTERVAL);
            match rx.try_recv() {
                Ok(more) => {
                    pending.fetch_sub(more.capacity(), Ordering::Relaxed);
                    let _ = out.write_all(more.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Err(_) => break,
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_is_what_serde_writes() {
        let shadow = [
            ShadowOutcome { rule: "s1", decision: "allow", reason: "" },
            ShadowOutcome { rule: "s\"2", decision: "deny", reason: "rule_denied" },
        ];
        let odd: String = (0u8..0x20).map(char::from).chain("\"\\/\u{7f}é😀 \u{2028}".chars()).collect();
        let clients = [
            None,
            Some("127.0.0.1".parse().unwrap()),
            Some("10.200.0.255".parse().unwrap()),
            Some("2001:db8::1".parse().unwrap()),
            Some("::ffff:192.0.2.1".parse().unwrap()),
        ];
        let strings = [None, Some(""), Some("private-user-u1"), Some(odd.as_str())];
        let mut lines = 0;
        for client in clients {
            for text in strings {
                for shadow in [&shadow[..0], &shadow[..]] {
                    let ts = now_rfc3339();
                    let event = Event {
                        ts: &ts,
                        event: "decision",
                        request_id: text.unwrap_or("cg-1-a"),
                        kind: "channel",
                        client,
                        user: text,
                        channel: text,
                        rule: text,
                        decision: "deny",
                        reason: text.unwrap_or(""),
                        detail: text.unwrap_or(""),
                        latency_us: lines * 977 + u64::from(text.is_some()) * u64::MAX / 2,
                        shadow,
                    };
                    let mut line = String::new();
                    assert!(event.write_line(&mut line));
                    assert_eq!(line, serde_json::to_string(&event).unwrap());
                    lines += 1;
                }
            }
        }
    }

    #[test]
    fn timestamps_are_humantime_s() {
        let mut secs: u64 = 0;
        // From 1970 to 9999, in uneven steps; leap days and year ends too.
        let mut samples =
            vec![951_782_399, 951_782_400, 951_868_800, 1_704_067_199, 4_107_542_400, 253_402_300_799];
        while secs < 253_402_300_799 {
            samples.push(secs);
            secs += 7_919_993;
        }
        for (i, secs) in samples.into_iter().enumerate() {
            let millis = (i as u32 * 37) % 1000;
            let time = UNIX_EPOCH + std::time::Duration::new(secs, millis * 1_000_000 + 999);
            let ours =
                second_prefix(secs).map(|p| String::from_utf8_lossy(&with_millis(&p, millis)).into_owned());
            assert_eq!(ours, Some(humantime::format_rfc3339_millis(time).to_string()), "{secs}");
        }
        assert_eq!(second_prefix(253_402_300_800), None, "year 10000 goes to humantime");
        let now = now_rfc3339();
        assert_eq!(now.len(), 24, "{now}");
        assert!(humantime::parse_rfc3339(&now).is_ok(), "{now}");
    }

    /// A destination that holds every write until it is opened, and says
    /// when the writer first reached it.
    #[derive(Clone, Default)]
    struct Gate {
        state: Arc<(std::sync::Mutex<(bool, bool)>, std::sync::Condvar)>,
        written: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl Gate {
        fn wait_entered(&self) {
            let (lock, cv) = &*self.state;
            let guard = lock.lock().unwrap();
            let (guard, timeout) = cv
                .wait_timeout_while(guard, std::time::Duration::from_secs(10), |(entered, _)| !*entered)
                .unwrap();
            assert!(!timeout.timed_out() && guard.0, "the writer never wrote");
        }

        fn open(&self) {
            let (lock, cv) = &*self.state;
            lock.lock().unwrap().1 = true;
            cv.notify_all();
        }

        fn lines(&self) -> Vec<String> {
            let written = self.written.lock().unwrap();
            String::from_utf8(written.clone()).unwrap().lines().map(str::to_owned).collect()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.state;
            let mut guard = lock.lock().unwrap();
            guard.0 = true;
            cv.notify_all();
            let _guard = cv.wait_while(guard, |(_, open)| !*open).unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_takes_events_again_once_drained() {
        let gate = Gate::default();
        // Room for four of the eight-byte messages below.
        let audit = Audit::start_writer(Box::new(gate.clone()), 35).unwrap();
        audit.record_lines("first".into(), 1);
        // The writer holds "first" in a write that does not return.
        gate.wait_entered();
        // Strings allocated to their length (`format!` may allocate more).
        let message = |s: String| String::from(s.as_str());
        for i in 0..4 {
            audit.record_lines(message(format!("queued {i}")), 1);
        }
        assert_eq!(audit.dropped(), 0, "four fit");
        audit.record_lines("a batch\nof\nthree".into(), 3);
        audit.record_lines("one more".into(), 1);
        assert_eq!(audit.dropped(), 4, "the queue is full: each event of the messages counted");

        // The destination comes back: everything queued is written, in order.
        gate.open();
        let expected = ["first", "queued 0", "queued 1", "queued 2", "queued 3"];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while gate.lines() != expected {
            assert!(std::time::Instant::now() < deadline, "not drained: {:?}", gate.lines());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // A short line in a large allocation counts the allocation.
        let mut roomy = String::with_capacity(64);
        roomy.push_str("short");
        audit.record_lines(roomy, 1);
        assert_eq!(audit.dropped(), 5);
        // And the queue has room again.
        for i in 0..4 {
            audit.record_lines(message(format!("after {i}")), 1);
        }
        drop(audit);
        assert_eq!(gate.lines().len(), 9, "{:?}", gate.lines());
        assert_eq!(gate.lines()[8], "after 3");
    }
}
