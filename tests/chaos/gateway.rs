//! The gateway under test: the real binary (`CHANNELGATE_BIN`, else the one
//! cargo built for this test) with a production-mode config in a temporary
//! folder, both listeners on ephemeral loopback ports (read back from its
//! log), its stderr kept for later checks, stopped by PID.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::process::Process;
use crate::report::Report;

pub const APP_ID: &str = "1001";
pub const APP_KEY: &str = "chaos-app-key";
pub const HS_ISSUER: &str = "https://hs.chaos.test";
pub const AUDIENCE: &str = "chaos-app";
/// Redis keys of the revocation mirror start with this.
pub const REDIS_PREFIX: &str = "chaos:";
/// `http.header_read_timeout` and `http.tls_handshake_timeout` of every scenario
/// unless it sets its own.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Fresh random secrets, one set per run.
#[derive(Clone)]
pub struct Secrets {
    pub pusher: String,
    pub jwt: String,
    pub admin: String,
}

impl Secrets {
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self { pusher: random_hex(32)?, jwt: random_hex(32)?, admin: random_hex(24)? })
    }
}

pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

/// An issuer whose keys the gateway fetches (OIDC discovery over HTTPS).
#[derive(Clone)]
pub struct Remote {
    pub issuer: String,
    pub ca_pem: String,
}

/// A deliberately broken rewrite (the reload scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    None,
    /// The policy file is not YAML.
    PolicyYaml,
    /// A CEL expression does not compile.
    PolicyCel,
    /// An unknown config key.
    ConfigUnknownKey,
    /// The Pusher secret file does not exist.
    ConfigMissingSecret,
    /// Half a config file, as a crashed editor might leave it.
    ConfigTruncated,
}

/// What a gateway's config holds.
#[derive(Clone)]
pub struct Spec {
    pub remote: Option<Remote>,
    pub tls: bool,
    /// `revocation:` with Redis on this port and this `on_store_error`.
    pub redis: Option<(u16, &'static str)>,
    /// Extra `http:` settings, e.g. `("max_connections_per_ip", "64")`.
    pub http: Vec<(&'static str, String)>,
    /// The version of the `probe` rule (`private-probe-N` is allowed for N
    /// only) and of the extra CORS origin `https://vN.chaos.test`.
    pub version: u32,
    pub broken: Broken,
    /// Run under `prlimit --nofile=N:N` (a low open-files limit).
    pub nofile: Option<u32>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            remote: None,
            tls: false,
            redis: None,
            http: Vec::new(),
            version: 0,
            broken: Broken::None,
            nofile: None,
        }
    }
}

impl Spec {
    fn config(&self) -> String {
        let mut c = String::from("listen: 127.0.0.1:0\n");
        if self.tls {
            c.push_str("tls:\n  cert: secrets/tls.crt\n  key: secrets/tls.key\n");
        }
        c.push_str("admin:\n  listen: 127.0.0.1:0\n  token: { file: secrets/admin }\n");
        let secret =
            if self.broken == Broken::ConfigMissingSecret { "secrets/missing" } else { "secrets/pusher" };
        c.push_str(&format!(
            "pusher:\n  app_id: \"{APP_ID}\"\n  key: {APP_KEY}\n  secret: {{ file: {secret} }}\n"
        ));
        if self.broken == Broken::ConfigUnknownKey {
            c.push_str("  clustr: mt1\n");
        }
        c.push_str("session:\n  token_from:\n    - header: Authorization\n  jwt:\n");
        c.push_str(&format!(
            "    - algorithms: [HS256]\n      secret: {{ file: secrets/jwt }}\n      issuer: {HS_ISSUER}\n      audience: {AUDIENCE}\n"
        ));
        if let Some(remote) = &self.remote {
            // A short refetch interval and refresh floor so that recovery is
            // observable in seconds; the issuer itself asks for an hour of
            // caching, as real IdPs do.
            c.push_str(&format!(
                "    - algorithms: [ES256]\n      discovery: true\n      issuer: {}\n      audience: {AUDIENCE}\n      ca_file: secrets/issuer-ca.pem\n      refresh_min: 1s\n      refetch_interval: 1s\n      fetch_timeout: 3s\n",
                remote.issuer
            ));
        }
        c.push_str(&format!(
            "cors:\n  allowed_origins: [https://app.chaos.test, https://v{}.chaos.test]\n",
            self.version
        ));
        c.push_str("policies: policies/\n");
        c.push_str("rate_limit: { enabled: false }\n");
        c.push_str("audit:\n  to: { file: audit.log }\n");
        c.push_str("reload: { watch: false }\n");
        let secs = HEADER_TIMEOUT.as_secs();
        let mut http = vec![
            ("header_read_timeout", format!("{secs}s")),
            ("tls_handshake_timeout", format!("{secs}s")),
            ("shutdown_grace", "2s".to_owned()),
        ];
        for (k, v) in &self.http {
            http.retain(|(key, _)| key != k);
            http.push((k, v.clone()));
        }
        c.push_str("http:\n");
        for (k, v) in http {
            c.push_str(&format!("  {k}: {v}\n"));
        }
        if let Some((_, on_error)) = self.redis {
            c.push_str(&format!(
                "revocation:\n  store: redis\n  redis_url: {{ file: secrets/redis-url }}\n  key_prefix: \"{REDIS_PREFIX}\"\n  on_store_error: {on_error}\n"
            ));
        }
        if self.broken == Broken::ConfigTruncated {
            c.truncate(c.len() / 2);
        }
        c
    }

    fn policy(&self) -> String {
        let allow = if self.broken == Broken::PolicyCel {
            format!("v == \"{}\" &&", self.version)
        } else {
            format!("v == \"{}\"", self.version)
        };
        let mut p = format!(
            r#"# The chaos suite's policy: what a page load asks for.
rules:
  - name: own
    channel: private-user-{{user}}
    allow: user == token.sub
  - name: rooms
    channel: presence-room-{{room:[0-9]+}}
    allow: room in token.rooms
    presence:
      user_id: token.sub
      user_info: {{ name: token.name }}
  - name: probe
    channel: private-probe-{{v:[0-9]+}}
    allow: '{allow}'
user:
  id: token.sub
  user_info: {{ name: token.name }}
"#
        );
        if self.broken == Broken::PolicyYaml {
            p.push_str("  - name: [unclosed\n");
        }
        p
    }
}

/// A running gateway process.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// PEM of the self-signed certificate of the public listener (with TLS).
    pub tls_root: Option<String>,
    process: Process,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the binary on `spec` and waits until both listeners are bound.
    /// `nofile` runs it under `prlimit --nofile`.
    pub async fn start(spec: &Spec, secrets: &Secrets) -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets_dir)?;
        std::fs::create_dir_all(dir.path().join("policies"))?;
        std::fs::write(secrets_dir.join("pusher"), format!("{}\n", secrets.pusher))?;
        std::fs::write(secrets_dir.join("jwt"), &secrets.jwt)?;
        std::fs::write(secrets_dir.join("admin"), &secrets.admin)?;
        if let Some(remote) = &spec.remote {
            std::fs::write(secrets_dir.join("issuer-ca.pem"), &remote.ca_pem)?;
        }
        if let Some((port, _)) = spec.redis {
            std::fs::write(secrets_dir.join("redis-url"), format!("redis://127.0.0.1:{port}/"))?;
        }
        let tls_root = if spec.tls {
            let ck =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
            std::fs::write(secrets_dir.join("tls.crt"), ck.cert.pem())?;
            std::fs::write(secrets_dir.join("tls.key"), ck.key_pair.serialize_pem())?;
            Some(ck.cert.pem())
        } else {
            None
        };
        write_files(dir.path(), spec)?;

        let bin = binary();
        let config = dir.path().join("channelgate.yaml");
        let mut cmd = match spec.nofile {
            // prlimit sets the limit and execs the binary (same PID).
            Some(n) => {
                let mut c = std::process::Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&bin);
                c
            }
            None => std::process::Command::new(&bin),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(Stdio::piped());
        let (process, stderr) = Process::spawn(cmd, &bin.display().to_string())?;
        let stderr = stderr.ok_or_else(|| anyhow!("no stderr pipe"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<(SocketAddr, SocketAddr)>();
        let (log2, file) = (log.clone(), dir.path().join("gateway.log"));
        std::thread::spawn(move || read_log(stderr, &log2, &file, tx));
        let mut gw = Gateway {
            dir,
            public: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_root,
            process,
            log,
        };
        match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok((public, admin))) => {
                gw.public = public;
                gw.admin = admin;
                Ok(gw)
            }
            Ok(Err(_)) => {
                let status = gw.process.wait(Duration::from_secs(5)).await;
                bail!("the gateway exited before listening ({status:?}); its log ends:\n{}", gw.log_tail(15))
            }
            Err(_) => bail!("the gateway did not listen within 20s; its log ends:\n{}", gw.log_tail(15)),
        }
    }

    /// Rewrites the config and policy files for `spec` (no reload by itself).
    pub fn rewrite(&self, spec: &Spec) -> anyhow::Result<()> {
        write_files(self.dir.path(), spec)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn scheme(&self) -> &'static str {
        if self.tls_root.is_some() { "https" } else { "http" }
    }

    /// A URL on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme(), self.public)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A client for the public listener (trusting its certificate).
    pub fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        client_builder(self.tls_root.as_deref())
    }

    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        Ok(self.client_builder()?.build()?)
    }

    /// `VmRSS` in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmRSS")
    }

    /// `VmHWM` (peak RSS) in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmHWM")
    }

    /// `RssAnon` (heap, stacks: memory the process holds) in KiB.
    pub fn anon_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "RssAnon")
    }

    /// `RssFile` (mapped pages of the binary and libraries) in KiB.
    pub fn file_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "RssFile")
    }

    /// Open file descriptors.
    pub fn fd_count(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }

    /// Whether the process has exited.
    pub fn exited(&self) -> bool {
        self.process.status().is_some()
    }

    pub fn sighup(&self) -> bool {
        self.process.signal("HUP")
    }

    /// Log lines that contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// The last `n` log lines, indented.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].iter().map(|l| format!("       | {l}\n")).collect()
    }

    /// Waits until `/readyz` on the admin listener answers 200.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<Duration> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < within {
            match client.get(self.admin_url("/readyz")).send().await {
                Ok(r) if r.status() == 200 => return Ok(started.elapsed()),
                Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("not ready within {within:?}: {last}")
    }

    /// `/readyz` on the admin listener: (status, body).
    pub async fn readyz(&self) -> anyhow::Result<(u16, serde_json::Value)> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let resp = client.get(self.admin_url("/readyz")).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or_default()))
    }

    /// The value of one metric sample, e.g. `channelgate_reloads_total{result="ok"}`.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let text = client.get(self.admin_url("/metrics")).send().await?.text().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse::<f64>().ok()))
            .unwrap_or(0.0))
    }

    /// SIGTERM, then checks that it exits 0 within the drain grace plus a
    /// margin; SIGKILL otherwise.
    pub async fn stop(mut self, report: &Report) {
        let within = Duration::from_secs(6);
        let sent = self.process.signal("TERM");
        let started = Instant::now();
        match self.process.wait(within).await {
            Some(status) => {
                report.check(
                    "exits 0 on SIGTERM",
                    sent && status.success(),
                    format!("{status} after {} ms", started.elapsed().as_millis()),
                );
            }
            None => {
                report.fail(
                    "exits 0 on SIGTERM",
                    format!(
                        "still running {}s after SIGTERM; killed; log ends:\n{}",
                        within.as_secs(),
                        self.log_tail(8)
                    ),
                );
                self.process.kill().await;
            }
        }
    }
}

/// The binary under test.
pub fn binary() -> PathBuf {
    match std::env::var_os("CHANNELGATE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_channelgate")),
    }
}

/// A reqwest client builder trusting `root` (PEM) for https.
pub fn client_builder(root: Option<&str>) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut b = reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false);
    if let Some(pem) = root {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    Ok(b)
}

/// Config through a temporary file and a rename (as deploy tools do), the
/// policy in place (as an editor does).
fn write_files(dir: &Path, spec: &Spec) -> anyhow::Result<()> {
    let tmp = dir.join(".channelgate.yaml.tmp");
    std::fs::write(&tmp, spec.config())?;
    std::fs::rename(&tmp, dir.join("channelgate.yaml"))?;
    std::fs::write(dir.join("policies/main.yaml"), spec.policy())?;
    Ok(())
}

fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))
}

/// Reads the gateway's stderr (on a thread of its own): keeps the lines (the
/// most recent 100,000), copies them to `file`, and reports the two listen
/// addresses once seen.
fn read_log(
    stderr: std::process::ChildStderr,
    log: &Mutex<Vec<String>>,
    file: &Path,
    tx: tokio::sync::oneshot::Sender<(SocketAddr, SocketAddr)>,
) {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(stderr);
    let mut out = std::fs::File::create(file).ok();
    let (mut public, mut admin) = (None, None);
    let mut tx = Some(tx);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
        if let Some(f) = out.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        if admin.is_none() {
            admin = address_after(&line, "admin listener on http://");
        }
        if public.is_none() {
            public = address_after(&line, "listening on http://")
                .or(address_after(&line, "listening on https://"));
        }
        if let (Some(p), Some(a)) = (public, admin)
            && let Some(tx) = tx.take()
        {
            let _ = tx.send((p, a));
        }
        let mut log = log.lock().unwrap();
        if log.len() >= 100_000 {
            log.drain(..50_000);
        }
        log.push(line);
    }
}

fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == ')').unwrap_or(rest.len());
    rest[..end].parse().ok()
}
