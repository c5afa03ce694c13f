//! A gateway on an ephemeral loopback port with an explicit shutdown handle
//! (optionally with the admin listener), token minting, polling.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use channelgate::app::App;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;

pub const APP_KEY: &str = "it-key";
pub const APP_SECRET: &str = "it-pusher-secret-0123456789abcdef";
pub const JWT_SECRET: &str = "it-jwt-secret-0123456789abcdef-0123456789";
pub const MASTER_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "it-app";

pub const POLICY: &str = r#"
rules:
  - name: own
    channel: private-user-{user}
    allow: user == token.sub
  - name: rooms
    channel: presence-room-{room}
    allow: room in token.rooms
    presence:
      user_id: token.sub
      user_info: { name: token.name }
  - name: team
    channel: private-encrypted-team-{team}
    allow: token.team == team
user:
  id: token.sub
  user_info: { name: token.name }
"#;

/// Options for a test gateway.
pub struct Setup {
    pub extra_config: String,
    pub master_key: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub policy: String,
    /// The `rate_limit:` block; off by default so tests may send bursts.
    pub rate_limit: String,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            extra_config: String::new(),
            master_key: true,
            tls: None,
            policy: POLICY.to_owned(),
            rate_limit: "rate_limit:\n  enabled: false\n".to_owned(),
        }
    }
}

/// A running gateway. Dropping it stops the server. Requests go to it in
/// process ([`Gateway::call`], `post_form`) or over its socket (`addr`).
pub struct Gateway {
    pub addr: std::net::SocketAddr,
    /// The running service, for in-process calls.
    pub runtime: std::sync::Arc<channelgate::app::Runtime>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &setup);
        let app = match App::load(&config) {
            Ok(app) => app,
            Err(e) => panic!("test config does not load: {e}"),
        };
        Self::serve(dir, app).await
    }

    /// Serves an `app` already loaded from a config in `dir` (kept until
    /// the gateway is dropped), without the admin listener.
    pub async fn serve(dir: tempfile::TempDir, app: App) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let runtime = app.runtime.clone();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = rx.await;
        }));
        Self { addr, runtime, _dir: dir, stop: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `req` to the public listener's service in process (no
    /// socket: `tower::ServiceExt::oneshot`), as from 127.0.0.1.
    pub async fn call(
        &self,
        req: http::Request<String>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        call(&self.runtime, channelgate::http::Listener::Public, req).await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A gateway run with the full lifecycle (`App::run`): the public and the
/// admin listener, file watching, the shutdown sequence.
pub struct AdminGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), String>>,
    /// The running service (its current gateway changes on reload).
    pub runtime: std::sync::Arc<channelgate::app::Runtime>,
}

impl AdminGateway {
    /// Runs the config at `config` (written in `dir`) on two ephemeral
    /// loopback ports.
    pub async fn run(dir: tempfile::TempDir, config: &Path) -> Self {
        let app = App::load(config).unwrap_or_else(|e| panic!("{e}"));
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let runtime = app.runtime.clone();
        let task = tokio::spawn(app.run(public, Some(admin), async {
            let _ = rx.await;
        }));
        Self { addr, admin: admin_addr, dir, stop: Some(tx), task, runtime }
    }

    /// Signals shutdown and waits for `App::run` to return; `Err` if it
    /// panicked. `App::run` itself must return `Ok` (a clean stop).
    pub async fn stop(mut self) -> Result<(), tokio::task::JoinError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.map(|stopped| assert_eq!(stopped, Ok(()), "App::run stopped with an error"))
    }
}

/// Polls until `f` holds (every 50 ms, at most 10 s); panics naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Writes a production-mode config whose secrets come from files.
pub fn write_config(dir: &Path, setup: &Setup) -> PathBuf {
    std::fs::write(dir.join("pusher.secret"), format!("{APP_SECRET}\n")).unwrap();
    std::fs::write(dir.join("jwt.secret"), JWT_SECRET).unwrap();
    std::fs::write(dir.join("master.key"), MASTER_KEY_B64).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/main.yaml"), &setup.policy).unwrap();
    let master = if setup.master_key { "  encryption_master_key: { file: master.key }\n" } else { "" };
    let tls = match &setup.tls {
        Some((cert, key)) => format!("tls:\n  cert: {}\n  key: {}\n", cert.display(), key.display()),
        None => String::new(),
    };
    let text = format!(
        r#"listen: 127.0.0.1:0
{tls}pusher:
  app_id: "1001"
  key: {APP_KEY}
  secret: {{ file: pusher.secret }}
{master}session:
  token_from:
    - header: Authorization
    - cookie: session
    - form: token
  jwt:
    algorithms: [HS256]
    secret: {{ file: jwt.secret }}
    issuer: {ISSUER}
    audience: {AUDIENCE}
    leeway: 5s
cors:
  allowed_origins: [https://app.example.com]
policies: policies
audit:
  to: {{ file: audit.log }}
reload:
  watch: false
{rate_limit}{extra}"#,
        rate_limit = setup.rate_limit,
        extra = setup.extra_config
    );
    let path = dir.join("channelgate.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A valid HS256 session token with the given extra claims.
pub fn token(sub: &str, extra: serde_json::Value) -> String {
    let mut claims = serde_json::json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600,
    });
    if let serde_json::Value::Object(extra) = extra {
        for (k, v) in extra {
            claims[k] = v;
        }
    }
    sign_token(&claims, JWT_SECRET)
}

pub fn sign_token(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// HMAC-SHA256 hex computed here, independently of the crate's signer.
pub fn expected_auth(string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    format!("{APP_KEY}:{}", hex::encode(mac.finalize().into_bytes()))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Sends `req` to a listener's service of `runtime` in process, as from
/// 127.0.0.1: status, headers and the body as JSON (or a JSON string).
pub async fn call(
    runtime: &std::sync::Arc<channelgate::app::Runtime>,
    role: channelgate::http::Listener,
    req: http::Request<String>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let req = req.map(|body| http_body_util::Full::new(bytes::Bytes::from(body)));
    let service = channelgate::http::service(runtime.clone(), peer, role);
    let resp = service.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (parts.status.as_u16(), parts.headers, json)
}

/// A request to the public listener (for [`Gateway::call`]).
pub fn request(method: &str, path: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(path).header("host", "gateway.test")
}

/// POSTs a form (as pusher-js does) with an optional bearer token, in
/// process.
pub async fn post_form(
    gw: &Gateway,
    path: &str,
    bearer: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut req = request("POST", path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    gw.call(req.body(body).unwrap()).await
}

pub async fn split(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, headers, json)
}

/// The real binary serving a config, its stderr collected; stopped by PID
/// (SIGTERM, then SIGKILL) when dropped, so a failing test never leaks it.
pub struct Binary {
    child: std::process::Child,
    /// The public listener's address, from the `listening on` line.
    pub addr: SocketAddr,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Binary {
    /// Runs `channelgate serve --config CONFIG` and waits (at most 30 s)
    /// for its `listening on` line.
    pub fn serve(config: &Path) -> Self {
        Self::serve_under(&[], config)
    }

    /// The same with the working directory `cwd` and `config` relative to
    /// it, as the README runs it.
    pub fn serve_in(cwd: &Path, config: &str) -> Self {
        Self::spawn(&[], Path::new(config), Some(cwd))
    }

    /// The same, run by a wrapper command (`prlimit …`, `taskset …`).
    pub fn serve_under(wrapper: &[&str], config: &Path) -> Self {
        Self::spawn(wrapper, config, None)
    }

    fn spawn(wrapper: &[&str], config: &Path, cwd: Option<&Path>) -> Self {
        let bin = env!("CARGO_BIN_EXE_channelgate");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => std::process::Command::new(bin),
        };
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { return };
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Ok(addr) = rest.split([' ', '"', ')']).next().unwrap_or("").parse()
                {
                    let _ = tx.send(addr);
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let mut binary = Self { child, addr: "127.0.0.1:0".parse().unwrap(), logs };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => binary.addr = addr,
            Err(_) => panic!("the gateway did not listen within 30 s:\n{}", binary.logs()),
        }
        binary
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits at most `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
