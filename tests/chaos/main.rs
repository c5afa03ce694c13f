//! The chaos suite (issue #11): the real channelgate binary, under a steady
//! load of auth requests whose every answer is checked, while faults are
//! injected one scenario at a time — the issuer down and back five times with
//! key rotation, a cold start with the issuer down, a slow and a huge issuer,
//! Redis down and back (`on_store_error: deny` and `allow`), twenty config and
//! policy rewrites with SIGHUP, floods of silent and slow connections (plain
//! and TLS) and one client opening too many connections.
//!
//! Every scenario starts its own gateway process (so a hang in one cannot
//! spoil the next), a health prober on its own thread (`/healthz` on the
//! public and the admin listener must answer within 1 s throughout), and
//! checks RSS (`/proc/PID/status`) before and after the fault and a clean
//! exit on SIGTERM. Every wait is bounded; a watchdog thread kills every
//! process the suite started and exits if the whole run overruns.
//!
//! One `PASS`/`FAIL` line per check; the last line is `N passed, M failed`;
//! the exit status is non-zero on any failure.
//!
//! ```sh
//! cargo test --test chaos                      # every scenario (also part of `cargo test`)
//! cargo test --test chaos -- issuer redis      # scenarios whose name contains a word
//! CHANNELGATE_BIN=target/release/channelgate cargo test --test chaos
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]
// Items of a test binary are `pub` so its modules can share them.
#![allow(unreachable_pub)]

/// Silent, slow-header and TLS-silent connections from many loopback sources.
mod attack;
/// The gateway process: config, start, addresses, signals, RSS, logs.
mod gateway;
/// The health prober: `/healthz` on both listeners, on its own thread.
mod health;
/// The OpenID Provider: HTTPS with a private CA, discovery, JWKS; down, up, slow, huge.
mod issuer;
/// The load client: concurrent auth requests, each answer checked.
mod load;
/// Child processes by PID: reaped by a thread, signalled with kill(1).
mod process;
/// `redis-server` started and stopped by PID.
mod redis;
/// PASS/FAIL lines and the counts.
mod report;
/// The scenarios.
mod scenarios;

use std::sync::Arc;
use std::time::{Duration, Instant};

use report::Report;

/// The whole run may not take longer than this (a hang must never hang CI).
const SUITE_DEADLINE: Duration = Duration::from_secs(600);

fn main() -> std::process::ExitCode {
    // Words that are not libtest flags select scenarios by name.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let report = Arc::new(Report::default());
    // The floods hold thousands of sockets on both sides; the gateway
    // inherits the limit (as a service with LimitNOFILE would set it).
    match rlimit::increase_nofile_limit(20_000) {
        Ok(n) if n >= 8_000 => {}
        Ok(n) => println!("note: open-files limit is {n}; the connection floods need about 5,000"),
        Err(e) => println!("note: cannot raise the open-files limit: {e}"),
    }
    report::start_watchdog(report.clone(), SUITE_DEADLINE);

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            println!("FAIL setup: cannot build the runtime: {e}");
            println!("0 passed, 1 failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    runtime.block_on(scenarios::run_all(&report, &filters));
    // Children are killed on drop; the runtime's shutdown reaps them.
    runtime.shutdown_timeout(Duration::from_secs(5));
    report::kill_all_children();
    let (passed, failed) = report.counts();
    println!("chaos: {passed} passed, {failed} failed in {:.0}s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    if failed > 0 || passed == 0 && filters.is_empty() {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
