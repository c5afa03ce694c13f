//! The health prober: `GET /healthz` on the public and the admin listener
//! every 200 ms, each on a new connection (so a starved accept loop shows),
//! each required to answer 200 within 1 s. It runs on its own thread and
//! runtime so that the suite's own load and floods cannot delay it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest a health answer may take.
pub const LIMIT: Duration = Duration::from_secs(1);
const EVERY: Duration = Duration::from_millis(200);

/// What the prober saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub probes: u64,
    pub failures: u64,
    /// Failures while excused (a fault under which new connections cannot
    /// be served, such as exhausted file descriptors).
    pub excused: u64,
    pub examples: Vec<String>,
    /// Slowest answer per target, in ms.
    pub max_ms: Vec<(String, u128)>,
}

impl Stats {
    pub fn summary(&self) -> String {
        let max: Vec<String> = self.max_ms.iter().map(|(t, ms)| format!("{t} max {ms} ms")).collect();
        let mut s = format!("{} probes, {} failed; {}", self.probes, self.failures, max.join(", "));
        if self.excused > 0 {
            s.push_str(&format!("; {} failed while excused", self.excused));
        }
        if !self.examples.is_empty() {
            s.push_str(&format!("; first failures: {}", self.examples.join(" | ")));
        }
        s
    }
}

pub struct Prober {
    stop: Arc<AtomicBool>,
    excused: Arc<AtomicBool>,
    done: Option<tokio::sync::oneshot::Receiver<Stats>>,
}

impl Prober {
    /// Probes each `(label, url)`; `root` is the PEM to trust for https.
    pub fn start(targets: Vec<(String, String)>, root: Option<String>) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let excused = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (flag, excuse) = (stop.clone(), excused.clone());
        std::thread::spawn(move || {
            let stats = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(probe(targets, root, flag, excuse)),
                Err(e) => {
                    Stats { failures: 1, examples: vec![format!("no runtime: {e}")], ..Stats::default() }
                }
            };
            let _ = tx.send(stats);
        });
        Prober { stop, excused, done: Some(rx) }
    }

    /// While set, failures are counted apart and not held against the gateway.
    pub fn excuse(&self, on: bool) {
        self.excused.store(on, Ordering::SeqCst);
    }

    /// Stops probing and returns what was seen.
    pub async fn stop(mut self) -> Stats {
        self.stop.store(true, Ordering::SeqCst);
        let Some(rx) = self.done.take() else { return Stats::default() };
        match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(stats)) => stats,
            _ => Stats { failures: 1, examples: vec!["the prober did not stop".into()], ..Stats::default() },
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn probe(
    targets: Vec<(String, String)>,
    root: Option<String>,
    stop: Arc<AtomicBool>,
    excused: Arc<AtomicBool>,
) -> Stats {
    let mut stats =
        Stats { max_ms: targets.iter().map(|(t, _)| (t.clone(), 0)).collect(), ..Stats::default() };
    let client = match crate::gateway::client_builder(root.as_deref())
        .and_then(|b| Ok(b.pool_max_idle_per_host(0).timeout(LIMIT).build()?))
    {
        Ok(c) => c,
        Err(e) => {
            stats.failures = 1;
            stats.examples.push(format!("no client: {e}"));
            return stats;
        }
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        for (i, (label, url)) in targets.iter().enumerate() {
            let t0 = Instant::now();
            // A probe begun or ended during an excused fault is excused.
            let excused_at_start = excused.load(Ordering::SeqCst);
            let result = client.get(url).send().await;
            let took = t0.elapsed();
            stats.probes += 1;
            stats.max_ms[i].1 = stats.max_ms[i].1.max(took.as_millis());
            let failure = match result {
                Ok(r) if r.status() == 200 && took <= LIMIT => None,
                Ok(r) => Some(format!("{} after {} ms", r.status(), took.as_millis())),
                Err(e) => Some(format!("{} after {} ms", short_error(&e), took.as_millis())),
            };
            if failure.is_some() && (excused_at_start || excused.load(Ordering::SeqCst)) {
                stats.excused += 1;
            } else if let Some(f) = failure {
                stats.failures += 1;
                if stats.examples.len() < 5 {
                    stats.examples.push(format!("{label} at {:.1}s: {f}", started.elapsed().as_secs_f64()));
                }
            }
        }
    }
    stats
}

/// The innermost cause of a reqwest error, on one line.
pub fn short_error(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}
