//! The scenarios, in the order they run, and what every scenario shares: a
//! gateway with the health prober and the load running, an RSS baseline
//! taken after warm-up, and the closing checks.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::gateway::{Gateway, Secrets, Spec};
use crate::health::Prober;
use crate::load::{Load, Session, Signer};
use crate::report::Report;

/// Silent, slow and too many connections.
mod connections;
/// Issuer down → up with rotation, a cold start, a slow and a huge issuer.
mod issuer;
/// Redis down → up with `on_store_error: deny` and `allow`.
mod redis;
/// Config and policy rewrites with SIGHUP.
mod reload;

type Scenario<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// Every scenario, in order, with its time budget in seconds (a scenario
/// that overruns it has hung).
const SCENARIOS: [(&str, u64); 11] = [
    ("issuer-cold-start", 60),
    ("issuer-outages", 120),
    ("issuer-slow", 60),
    ("issuer-huge", 60),
    ("redis-deny", 60),
    ("redis-allow", 60),
    ("reloads", 90),
    ("connections", 60),
    ("connections-tls", 60),
    ("connections-per-ip", 60),
    ("connections-fd-limit", 60),
];

fn scenario<'a>(name: &str, r: &'a Report, s: &'a Secrets) -> Scenario<'a> {
    match name {
        "issuer-cold-start" => Box::pin(issuer::cold_start(r, s)),
        "issuer-outages" => Box::pin(issuer::outages(r, s)),
        "issuer-slow" => Box::pin(issuer::slow(r, s)),
        "issuer-huge" => Box::pin(issuer::huge(r, s)),
        "redis-deny" => Box::pin(redis::outage(r, s, "deny")),
        "redis-allow" => Box::pin(redis::outage(r, s, "allow")),
        "reloads" => Box::pin(reload::rewrites(r, s)),
        "connections" => Box::pin(connections::plain(r, s)),
        "connections-tls" => Box::pin(connections::tls(r, s)),
        "connections-per-ip" => Box::pin(connections::per_ip(r, s)),
        "connections-fd-limit" => Box::pin(connections::fd_limit(r, s)),
        other => Box::pin(std::future::ready(Err(anyhow::anyhow!("no scenario {other}")))),
    }
}

/// Runs the scenarios whose name contains one of `filters` (all without filters).
pub async fn run_all(r: &Report, filters: &[String]) {
    let secrets = match Secrets::generate() {
        Ok(s) => s,
        Err(e) => return r.fail("setup: random secrets", e),
    };
    for (name, budget) in SCENARIOS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        r.scenario(name);
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(budget), scenario(name, r, &secrets)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => r.fail("the scenario ran to its end", format!("{e:#}")),
            Err(_) => r.fail(
                "the scenario finished within its time budget",
                format!("still running after {budget}s: something hung; its processes were killed"),
            ),
        }
        r.note(format!("{name} took {:.1}s", started.elapsed().as_secs_f64()));
    }
}

/// Load workers and their pace: 4 × 40 requests a second.
const WORKERS: usize = 4;
const PER_WORKER: u32 = 40;
/// Load before the RSS baseline is taken (every session used at least
/// twice, so the token cache holds them all); the baseline is the highest
/// reading of its last half second.
const WARM_UP: Duration = Duration::from_millis(2500);
/// How long RSS may take to come back after a fault.
const RSS_SETTLE: Duration = Duration::from_secs(10);

/// A gateway under load and watched.
pub struct Run<'a> {
    pub r: &'a Report,
    pub gw: Gateway,
    pub client: reqwest::Client,
    pub signer: Signer,
    pub load: Load,
    pub health: Prober,
    baseline_kib: u64,
}

impl<'a> Run<'a> {
    /// Starts a gateway on `spec` (waiting for readiness if `ready`), the
    /// health prober and the load over `sessions`, which may meet a 503 with
    /// one of `expect_503`; warms up and takes the RSS baseline.
    pub async fn begin(
        r: &'a Report,
        spec: &Spec,
        secrets: &Secrets,
        sessions: Vec<Session>,
        expect_503: &[&'static str],
        ready: bool,
    ) -> anyhow::Result<Run<'a>> {
        let gw = Gateway::start(spec, secrets).await?;
        if ready {
            gw.wait_ready(Duration::from_secs(15)).await?;
        }
        let health = Prober::start(
            vec![("public".into(), gw.url("/healthz")), ("admin".into(), gw.admin_url("/healthz"))],
            gw.tls_root.clone(),
        );
        let client = gw.client()?;
        let signer = Signer::new(&secrets.pusher);
        let load = Load::start(client.clone(), gw.url(""), signer.clone(), sessions, WORKERS, PER_WORKER);
        load.expect_503(expect_503);
        tokio::time::sleep(WARM_UP - Duration::from_millis(500)).await;
        let mut baseline_kib = 0;
        for _ in 0..5 {
            baseline_kib = baseline_kib.max(gw.rss_kib()?);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        r.note(format!(
            "gateway pid {}, RSS after warm-up {baseline_kib} KiB (anonymous {} KiB, file-backed {} KiB)",
            gw.pid(),
            gw.anon_kib()?,
            gw.file_kib()?
        ));
        Ok(Run { r, gw, client, signer, load, health, baseline_kib })
    }

    /// The public listener's base URL.
    pub fn base(&self) -> String {
        self.gw.url("")
    }

    /// Raises the RSS baseline to the settled RSS after `what`, if higher.
    pub async fn rebaseline_max(&mut self, what: &str) -> anyhow::Result<()> {
        let before = self.baseline_kib;
        self.rebaseline(what).await?;
        self.baseline_kib = self.baseline_kib.max(before);
        Ok(())
    }

    /// Takes the RSS baseline again, after `what` (noted in the report),
    /// once RSS has settled: four readings 500 ms apart within 0.5 % of
    /// each other (at most 20 s).
    pub async fn rebaseline(&mut self, what: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut readings: Vec<u64> = Vec::new();
        let baseline_kib = loop {
            readings.push(self.gw.rss_kib()?);
            let last = &readings[readings.len().saturating_sub(4)..];
            let (lo, hi) = (last.iter().min().copied().unwrap_or(0), last.iter().max().copied().unwrap_or(0));
            if (last.len() == 4 && hi - lo <= hi / 200) || started.elapsed() > Duration::from_secs(20) {
                break hi;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        self.r.note(format!(
            "RSS baseline taken again {what}: {baseline_kib} KiB (was {} KiB; anonymous {} KiB)",
            self.baseline_kib,
            self.gw.anon_kib()?
        ));
        self.baseline_kib = baseline_kib;
        Ok(())
    }

    /// Checks that RSS comes back within 10 % of the baseline (waiting up to
    /// 10 s for freed memory to be returned).
    pub async fn rss_back(&self, after: &str) {
        let limit = self.baseline_kib + self.baseline_kib / 10;
        let started = Instant::now();
        let mut now = 0;
        while started.elapsed() < RSS_SETTLE {
            match self.gw.rss_kib() {
                Ok(kib) => now = kib,
                Err(_) => break,
            }
            if now <= limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let peak = self.gw.peak_rss_kib().unwrap_or(0);
        self.r.check(
            &format!("RSS back within 10 % of the warm baseline {after}"),
            now > 0 && now <= limit,
            format!(
                "baseline {} KiB, peak {peak} KiB, now {now} KiB (anonymous {} KiB)",
                self.baseline_kib,
                self.gw.anon_kib().unwrap_or(0)
            ),
        );
    }

    /// The closing checks: RSS, every load answer, health throughout, exit
    /// on SIGTERM.
    pub async fn finish(self, after: &str) {
        self.rss_back(after).await;
        let stats = self.load.stop().await;
        self.r.check(
            "every auth answer under load was correct (signatures recomputed; 503 only where documented)",
            stats.failures == 0 && stats.correct > 0,
            stats.summary(),
        );
        let health = self.health.stop().await;
        self.r.check(
            "/healthz answered 200 within 1 s throughout, public and admin listener",
            health.failures == 0 && health.probes > 0,
            health.summary(),
        );
        self.gw.stop(self.r).await;
    }
}

/// `count` HS256 sessions starting at user `from`.
pub fn hs_sessions(secrets: &Secrets, from: usize, count: usize) -> anyhow::Result<Vec<Session>> {
    (from..from + count).map(|n| crate::load::hs_session(&secrets.jwt, n)).collect()
}

/// Polls `f` every 100 ms until it holds or `within` passes; the time it took.
pub async fn until<F, Fut>(within: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if f().await {
            return Some(started.elapsed());
        }
        if started.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Some(d)` as "after 1.2 s", `None` as "not within N s".
pub fn took(d: Option<Duration>, within: Duration) -> String {
    match d {
        Some(d) => format!("after {:.1}s", d.as_secs_f64()),
        None => format!("not within {}s", within.as_secs()),
    }
}
