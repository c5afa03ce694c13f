//! The real `redis-server` (Debian's), on a free loopback port, with its
//! data in an append-only file in a temporary folder so that a restart keeps
//! what was written; started, stopped and restarted by PID.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::Process;

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    server: Option<Process>,
}

impl Redis {
    /// Starts a server on a free port with its data in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Redis> {
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
        let mut r = Redis { port, dir: dir.to_owned(), server: None };
        r.up().await?;
        Ok(r)
    }

    /// (Re)starts the server on its port; returns once it answers PING.
    pub async fn up(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        self.server = Some(spawn(self.port, &self.dir)?);
        wait_for_ping(self.port).await
    }

    /// Stops the server (SIGTERM, by PID) and waits for it to exit.
    pub async fn down(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else { return Ok(()) };
        server.signal("TERM");
        if server.wait(Duration::from_secs(5)).await.is_none() {
            server.kill().await;
            bail!("redis-server did not stop on SIGTERM");
        }
        Ok(())
    }

    /// Writes `args` into the data set while the gateway's server is down:
    /// a second server on another port loads the same append-only file,
    /// runs the command and stops, so the next `up` starts with it.
    pub async fn write_offline(&self, args: &[&str]) -> anyhow::Result<String> {
        anyhow::ensure!(self.server.is_none(), "write_offline needs the server down");
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
        let mut server = spawn(port, &self.dir)?;
        let result = async {
            wait_for_ping(port).await?;
            command(port, args).await
        }
        .await;
        server.signal("TERM");
        if server.wait(Duration::from_secs(5)).await.is_none() {
            server.kill().await;
        }
        result
    }
}

fn spawn(port: u16, dir: &Path) -> anyhow::Result<Process> {
    let mut cmd = std::process::Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
        .args(["--appendfsync", "always", "--daemonize", "no", "--logfile", "redis.log"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(Process::spawn(cmd, "redis-server (apt-get install redis-server)")?.0)
}

async fn wait_for_ping(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        match command(port, &["PING"]).await {
            Ok(r) if r == "+PONG" => return Ok(()),
            Ok(r) => last = r,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("redis-server on port {port} did not answer PING: {last}"))
}

/// One RESP command on a new connection; the first line of the reply.
async fn command(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let io = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 512];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(String::from_utf8_lossy(&got).lines().next().unwrap_or_default().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), io).await.map_err(|_| anyhow!("redis timed out"))?
}
