//! Real PostgreSQL and redis-server processes on free loopback ports, each
//! stopped by PID on drop. Shared by the unit tests (`membership::testing`)
//! and the integration tests (`tests/it/memberships.rs`, through `#[path]`):
//! it uses std and tempfile only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until 127.0.0.1:`port` accepts, while `child` lives.
fn wait_listening(child: &mut Child, port: u16, what: &str) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 6 s");
}

/// A redis-server on a free loopback port, stopped by PID on drop.
pub(crate) struct RedisServer {
    child: Child,
    pub(crate) port: u16,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs Debian's redis-server)");
        let mut server = RedisServer { child, port };
        wait_listening(&mut server.child, port, "redis-server");
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs `redis-cli` with `args` against this server.
    pub(crate) fn cli(&self, args: &[&str]) {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server of its own (a fresh data directory, trust
/// authentication on 127.0.0.1 only, no Unix socket outside its directory),
/// stopped by PID on drop. When the tests run as root, the server runs as
/// the `postgres` user (PostgreSQL refuses root).
pub(crate) struct PgServer {
    child: Child,
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

/// The directory of PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin).
pub(crate) fn pg_bin() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("PostgreSQL is installed (.ci/run installs Debian's postgresql)")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `program` run as the `postgres` user when we are root.
fn pg_command(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The initialised data directory every test server copies (initdb takes
/// seconds; a copy takes milliseconds). Made once per machine and user.
fn template() -> PathBuf {
    static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let bin = pg_bin();
            let version =
                bin.parent().and_then(|p| p.file_name()).map_or("pg".into(), |n| n.to_string_lossy());
            let root = std::env::temp_dir().join(format!("channelgate-pg-template-{version}"));
            if root.join("data/PG_VERSION").exists() {
                return root.join("data");
            }
            let staging = tempfile::Builder::new().prefix("channelgate-pg-initdb").tempdir().unwrap().keep();
            if running_as_root() {
                chown_postgres(&staging);
            }
            let out = pg_command(&bin.join("initdb"))
                .arg("-D")
                .arg(staging.join("data"))
                .args(["-U", "channelgate", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"])
                .output()
                .unwrap();
            assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
            // Another test process may have won the race; its copy is as good.
            if std::fs::rename(&staging, &root).is_err() {
                let _ = std::fs::remove_dir_all(&staging);
            }
            root.join("data")
        })
        .clone()
}

fn chown_postgres(path: &Path) {
    let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap();
    assert!(status.success(), "chown postgres {}", path.display());
}

impl PgServer {
    pub(crate) fn start() -> PgServer {
        let bin = pg_bin();
        let template = template();
        let dir = tempfile::Builder::new().prefix("channelgate-pg").tempdir().unwrap();
        let status =
            Command::new("cp").arg("-a").arg(&template).arg(dir.path().join("data")).status().unwrap();
        assert!(status.success(), "copying the PostgreSQL template");
        if running_as_root() {
            chown_postgres(dir.path());
        }
        let port = free_port();
        let child = pg_command(&bin.join("postgres"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-F", "-c", "max_connections=40", "-c", "shared_buffers=16MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = PgServer { child, port, _dir: dir };
        wait_listening(&mut server.child, port, "postgres");
        server.psql("SELECT 1");
        server
    }

    pub(crate) fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL as the superuser (`psql`, stops at the first error). A
    /// server that is still starting is retried for a few seconds.
    pub(crate) fn psql(&self, sql: &str) {
        let psql = pg_bin().join("psql");
        let mut last = String::new();
        for _ in 0..100 {
            let out = Command::new(&psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "channelgate", "-d", "postgres", "-c", sql])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if !last.contains("starting up") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("psql {sql:?}: {last}");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for clients).
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        for _ in 0..250 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
