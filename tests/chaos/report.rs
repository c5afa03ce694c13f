//! PASS/FAIL lines, the counts, the registry of child processes and the
//! watchdog that kills them if the run overruns.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The checks made so far.
#[derive(Default)]
pub struct Report {
    passed: AtomicUsize,
    failed: AtomicUsize,
    scenario: Mutex<String>,
}

impl Report {
    /// Names the scenario that the next checks belong to.
    pub fn scenario(&self, name: &str) {
        *self.scenario.lock().unwrap() = name.to_owned();
        println!("== {name}");
    }

    /// Records one check: `what` is the property, `detail` the evidence.
    pub fn check(&self, what: &str, ok: bool, detail: impl std::fmt::Display) -> bool {
        let scenario = self.scenario.lock().unwrap().clone();
        let detail = detail.to_string();
        let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
        if ok {
            self.passed.fetch_add(1, Ordering::SeqCst);
            println!("PASS {scenario}: {what}{detail}");
        } else {
            self.failed.fetch_add(1, Ordering::SeqCst);
            println!("FAIL {scenario}: {what}{detail}");
        }
        ok
    }

    /// A failed step that ends the scenario early.
    pub fn fail(&self, what: &str, detail: impl std::fmt::Display) {
        self.check(what, false, detail);
    }

    /// An informational line (not counted).
    pub fn note(&self, text: impl std::fmt::Display) {
        println!("     {text}");
    }

    /// (passed, failed).
    pub fn counts(&self) -> (usize, usize) {
        (self.passed.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst))
    }
}

fn children() -> &'static Mutex<Vec<u32>> {
    static CHILDREN: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    CHILDREN.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remembers a child process, so the watchdog can kill it.
pub fn register_child(pid: u32) {
    children().lock().unwrap().push(pid);
}

/// Forgets a child process that has exited.
pub fn forget_child(pid: u32) {
    children().lock().unwrap().retain(|p| *p != pid);
}

/// Sends `signal` (a name such as `TERM`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SIGKILLs every child process still registered.
pub fn kill_all_children() {
    let pids: Vec<u32> = children().lock().unwrap().drain(..).collect();
    for pid in pids {
        signal(pid, "KILL");
    }
}

/// After `deadline`, prints a failure, kills every child and exits 1: a hang
/// in the harness or the gateway must never hang CI.
pub fn start_watchdog(report: Arc<Report>, deadline: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        report.fail(
            "the suite finished before its deadline",
            format!("still running after {}s: killing every process it started", deadline.as_secs()),
        );
        kill_all_children();
        let (passed, failed) = report.counts();
        println!("chaos: {passed} passed, {failed} failed (watchdog)");
        println!("{passed} passed, {failed} failed");
        std::process::exit(1);
    });
}
