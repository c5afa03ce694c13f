//! Hostile connections. All of 127.0.0.0/8 is loopback on Linux, so the
//! attackers bind source addresses 127.0.0.2 and up (a few dozen
//! connections each, or one address for the per-IP limit) while the load
//! client and the health prober stay on 127.0.0.1.
//!
//! Each connection is held until the server closes it or the observation
//! window ends, and the time from connect to close is recorded.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What an attacking connection does after connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Sends nothing (on a TLS listener: never starts the handshake).
    Silent,
    /// The first 16 of the 24 bytes of the HTTP/2 preface, then nothing.
    PartialH2Preface,
    /// The whole HTTP/2 preface and an empty SETTINGS frame, then no request.
    H2NoRequest,
    /// A request line and one more header line every 250 ms, never the blank line.
    SlowHeaders,
    /// Completes the TLS handshake, then sends nothing.
    TlsSilent,
    /// Completes the TLS handshake, then slow headers.
    TlsSlowHeaders,
}

/// What happened to one connection.
#[derive(Debug)]
struct Outcome {
    kind: Kind,
    /// Connect (and TLS) failed: the message.
    error: Option<String>,
    /// Time from connect to the server closing it, if it did.
    closed_after: Option<Duration>,
}

/// Per kind: how the connections ended.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub opened: usize,
    pub connect_errors: usize,
    pub first_error: Option<String>,
    /// Times from connect to close, sorted.
    pub closed: Vec<Duration>,
    /// Still open when the observation window ended.
    pub still_open: usize,
}

impl Tally {
    pub fn max_close(&self) -> Duration {
        self.closed.last().copied().unwrap_or_default()
    }

    /// Closed within `limit` of connecting.
    pub fn closed_within(&self, limit: Duration) -> usize {
        self.closed.iter().filter(|d| **d <= limit).count()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} opened, {} closed by the server (max {:.1}s), {} still open",
            self.opened,
            self.closed.len(),
            self.max_close().as_secs_f64(),
            self.still_open
        );
        if self.connect_errors > 0 {
            s.push_str(&format!(
                ", {} failed to connect ({})",
                self.connect_errors,
                self.first_error.as_deref().unwrap_or("")
            ));
        }
        s
    }
}

/// A flood: `plan` connections of each kind, `per_source` per source
/// address starting at `first_source`, each watched for `window`.
#[derive(Clone)]
pub struct Flood {
    pub target: SocketAddr,
    pub plan: Vec<(Kind, usize)>,
    pub first_source: Ipv4Addr,
    pub per_source: usize,
    pub window: Duration,
    /// For the TLS kinds: a client config trusting the gateway.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// New connections a second (none: as fast as they connect). Faster
    /// than the gateway accepts, the kernel's listen queue overflows and
    /// drops handshakes, and those connections reach the gateway seconds
    /// later (SYN-ACK retransmits) — a fact of the kernel, not of the gateway.
    pub pace: Option<u32>,
}

impl Flood {
    /// Opens every connection (at most 256 connecting at once) and waits
    /// until each is closed or its window ends.
    pub async fn run(self) -> BTreeMap<Kind, Tally> {
        let connecting = Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = tokio::task::JoinSet::new();
        let base = u32::from(self.first_source);
        let started = tokio::time::Instant::now();
        let mut i = 0usize;
        for (kind, count) in &self.plan {
            for _ in 0..*count {
                let source = Ipv4Addr::from(base + u32::try_from(i / self.per_source.max(1)).unwrap_or(0));
                let at = match self.pace {
                    Some(per_second) => {
                        started + Duration::from_secs(1) * u32::try_from(i).unwrap_or(0) / per_second.max(1)
                    }
                    None => started,
                };
                i += 1;
                let (target, window, tls, connecting, kind) =
                    (self.target, self.window, self.tls.clone(), connecting.clone(), *kind);
                tasks.spawn(async move {
                    tokio::time::sleep_until(at).await;
                    one(target, source, kind, window, tls, connecting).await
                });
            }
        }
        let mut tally: BTreeMap<Kind, Tally> = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let Ok(o) = r else { continue };
            let t = tally.entry(o.kind).or_default();
            match (o.error, o.closed_after) {
                (Some(e), _) => {
                    t.connect_errors += 1;
                    t.first_error.get_or_insert(e);
                }
                (None, Some(d)) => {
                    t.opened += 1;
                    t.closed.push(d);
                }
                (None, None) => {
                    t.opened += 1;
                    t.still_open += 1;
                }
            }
        }
        for t in tally.values_mut() {
            t.closed.sort();
        }
        tally
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn one(
    target: SocketAddr,
    source: Ipv4Addr,
    kind: Kind,
    window: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    connecting: Arc<tokio::sync::Semaphore>,
) -> Outcome {
    let fail = |e: String| Outcome { kind, error: Some(e), closed_after: None };
    let permit = connecting.acquire_owned().await;
    let stream = match connect(target, source).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + window;
    let closed = match kind {
        Kind::Silent => {
            drop(permit);
            hold(stream, &[], false, deadline).await
        }
        Kind::PartialH2Preface => {
            drop(permit);
            hold(stream, &H2_PREFACE[..16], false, deadline).await
        }
        Kind::H2NoRequest => {
            drop(permit);
            hold(stream, &[H2_PREFACE, H2_EMPTY_SETTINGS].concat(), false, deadline).await
        }
        Kind::SlowHeaders => {
            drop(permit);
            hold(stream, b"POST /pusher/auth HTTP/1.1\r\nHost: 127.0.0.1\r\n", true, deadline).await
        }
        Kind::TlsSilent | Kind::TlsSlowHeaders => {
            let Some(config) = tls else { return fail("no TLS config".into()) };
            let Ok(name) = rustls::pki_types::ServerName::try_from("127.0.0.1") else {
                return fail("server name".into());
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), connector.connect(name, stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return fail(format!("tls: {e}")),
                    Err(_) => return fail("tls handshake timed out".into()),
                };
            drop(permit);
            if kind == Kind::TlsSilent {
                hold(tls, &[], false, deadline).await
            } else {
                hold(tls, b"POST /pusher/auth HTTP/1.1\r\nHost: 127.0.0.1\r\n", true, deadline).await
            }
        }
    };
    Outcome { kind, error: None, closed_after: closed.then(|| started.elapsed()) }
}

/// A TCP connection from `source`.
pub async fn connect(target: SocketAddr, source: Ipv4Addr) -> Result<tokio::net::TcpStream, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket.bind(SocketAddr::from((source, 0))).map_err(|e| format!("bind {source}: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), socket.connect(target)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect from {source}: {e}")),
        Err(_) => Err(format!("connect from {source}: timed out")),
    }
}

/// Sends `first`, then (if `slow`) one header line every 250 ms; reads and
/// discards whatever the server sends. True when the server closed the
/// connection before `deadline`.
async fn hold<S: AsyncRead + AsyncWrite>(
    stream: S,
    first: &[u8],
    slow: bool,
    deadline: tokio::time::Instant,
) -> bool {
    let (mut rd, mut wr) = tokio::io::split(stream);
    if !first.is_empty() && wr.write_all(first).await.is_err() {
        return true;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.tick().await;
    let mut buf = [0u8; 4096];
    let mut n = 0u32;
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            _ = tick.tick(), if slow => {
                n += 1;
                if wr.write_all(format!("X-Slow-{n}: a\r\n").as_bytes()).await.is_err() {
                    return true;
                }
            }
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

/// The kernel's count of handshakes dropped because a listen queue was full
/// (`TcpExt: ListenOverflows`, for the whole network namespace).
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// A rustls client config trusting `root_pem`, offering http/1.1.
pub fn tls_client(root_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
