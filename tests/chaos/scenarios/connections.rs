//! Hostile connections (DESIGN §11): a silent or slow connection is closed
//! `http.header_read_timeout` after accept, whatever the protocol path
//! (nothing sent, a partial HTTP/2 preface, an HTTP/2 connection without a
//! request, slow headers, TLS that goes silent after the handshake); one
//! client address opening more than `http.max_connections_per_ip` is
//! refused beyond it. Meanwhile the load and the health probes, from
//! 127.0.0.1, are served as usual, and afterwards file descriptors and RSS
//! come back.
//!
//! RSS: a process that once held two thousand connections keeps some of the
//! pages their state took (measured: about 2.5 MiB for 2,000 silent
//! connections, with mimalloc and with glibc's malloc alike, while the heap
//! in use returns to its baseline under valgrind's massif; an HTTP/2
//! connection's buffers alone are about 25 KiB, and where the allocator
//! lands after a flood varies by several MiB from one flood to the next).
//! So the floods run more than once: the baseline is the highest settled
//! RSS after the first floods, and the last flood must leave RSS within 10 %
//! of it — a fault that leaves anything behind (a leak, state kept per
//! connection) grows it flood after flood and fails.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::attack::{Flood, Kind, Tally, listen_overflows, tls_client};
use crate::gateway::{HEADER_TIMEOUT, Secrets, Spec};
use crate::report::Report;
use crate::scenarios::{Run, hs_sessions, took, until};

/// Scheduling margin on top of a timeout (two thousand timers fire at once
/// on a shared machine).
const MARGIN: Duration = Duration::from_secs(2);
/// How long a flood's connections are watched: long enough for a
/// connection whose handshake the kernel dropped from a full listen queue
/// to arrive (SYN-ACK retransmits after 1, 3 and 7 s) and be reaped.
const WINDOW: Duration = Duration::from_secs(12);
/// New connections a second in the big floods: about what a debug build
/// on a busy machine accepts, so that the listen queue rarely overflows.
const PACE: u32 = 2_500;

fn describe(kind: Kind, tls_listener: bool) -> &'static str {
    match kind {
        Kind::Silent if tls_listener => "connections that never start the TLS handshake",
        Kind::Silent => "silent connections (no byte sent)",
        Kind::PartialH2Preface => "connections sending a partial HTTP/2 preface",
        Kind::H2NoRequest => "HTTP/2 connections (preface + SETTINGS) that send no request",
        Kind::SlowHeaders => "slow-header connections (a header line every 250 ms)",
        Kind::TlsSilent => "TLS connections silent after the handshake",
        Kind::TlsSlowHeaders => "slow-header connections over TLS",
    }
}

/// Each kind: every connection closed by the server within the window, and
/// at least 95 % of them within the timeout + margin of connecting (the rest
/// reached the gateway late, through the kernel's listen-queue retries).
fn check_reaped(
    r: &Report,
    plan: &[(Kind, usize)],
    tally: &BTreeMap<Kind, Tally>,
    tls_listener: bool,
    overflows: Option<u64>,
) {
    let limit = HEADER_TIMEOUT + MARGIN;
    for (kind, want) in plan {
        let empty = Tally::default();
        let t = tally.get(kind).unwrap_or(&empty);
        let timeout = if tls_listener && *kind == Kind::Silent {
            "tls_handshake_timeout"
        } else {
            "header_read_timeout"
        };
        let in_time = t.closed_within(limit);
        let mut detail = format!("{}; {in_time} within {}s", t.summary(), limit.as_secs());
        if let Some(n) = overflows.filter(|n| *n > 0) {
            detail
                .push_str(&format!("; the kernel dropped {n} handshakes from full listen queues meanwhile"));
        }
        r.check(
            &format!(
                "{want} {} are closed within {timeout} ({}s) of accept",
                describe(*kind, tls_listener),
                HEADER_TIMEOUT.as_secs(),
            ),
            t.opened == *want && t.closed.len() == *want && in_time * 100 >= want * 95,
            detail,
        );
    }
}

/// Waits for the gateway's open files to come back near `before`.
async fn fds_back(r: &Report, run: &Run<'_>, before: usize) {
    let mut now = 0;
    let back = until(Duration::from_secs(5), || {
        now = run.gw.fd_count().unwrap_or(usize::MAX);
        std::future::ready(now <= before + 16)
    })
    .await;
    r.check(
        "the gateway's open file descriptors come back",
        back.is_some(),
        format!("{before} before, {now} after ({})", took(back, Duration::from_secs(5))),
    );
}

/// 2,000 silent and 200 slow-header connections on the plain listener.
pub async fn plain(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let mut run = Run::begin(r, &Spec::default(), secrets, hs_sessions(secrets, 0, 20)?, &[], true).await?;
    let fds = run.gw.fd_count()?;
    let plan = vec![
        (Kind::Silent, 1200),
        (Kind::PartialH2Preface, 400),
        (Kind::H2NoRequest, 400),
        (Kind::SlowHeaders, 200),
    ];
    let flood = Flood {
        target: run.gw.public,
        plan: plan.clone(),
        first_source: Ipv4Addr::new(127, 0, 0, 2),
        per_source: 50,
        window: WINDOW,
        tls: None,
        pace: Some(PACE),
    };
    let first = flood.clone().run().await;
    check_reaped(r, &plan, &first, false, None);
    fds_back(r, &run, fds).await;
    run.rebaseline("after a first flood of the same size").await?;
    let _ = flood.clone().run().await;
    fds_back(r, &run, fds).await;
    run.rebaseline_max("after a second flood of the same size").await?;
    let overflows = listen_overflows();
    let tally = flood.run().await;
    let overflows = listen_overflows().zip(overflows).map(|(after, before)| after.saturating_sub(before));
    check_reaped(r, &plan, &tally, false, overflows);
    fds_back(r, &run, fds).await;
    run.finish("after 2,200 hostile connections").await;
    Ok(())
}

/// Silent connections on a TLS listener: before and after the handshake.
pub async fn tls(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let spec = Spec { tls: true, ..Spec::default() };
    let mut run = Run::begin(r, &spec, secrets, hs_sessions(secrets, 0, 20)?, &[], true).await?;
    let root = run.gw.tls_root.clone().unwrap_or_default();
    let fds = run.gw.fd_count()?;
    let plan = vec![(Kind::Silent, 200), (Kind::TlsSilent, 300), (Kind::TlsSlowHeaders, 50)];
    let flood = Flood {
        target: run.gw.public,
        plan: plan.clone(),
        first_source: Ipv4Addr::new(127, 0, 1, 2),
        per_source: 50,
        window: WINDOW,
        tls: Some(tls_client(&root)?),
        pace: Some(PACE),
    };
    let first = flood.clone().run().await;
    check_reaped(r, &plan, &first, true, None);
    fds_back(r, &run, fds).await;
    run.rebaseline("after a first flood of the same size").await?;
    let overflows = listen_overflows();
    let tally = flood.run().await;
    let overflows = listen_overflows().zip(overflows).map(|(after, before)| after.saturating_sub(before));
    check_reaped(r, &plan, &tally, true, overflows);
    fds_back(r, &run, fds).await;
    run.finish("after 550 hostile TLS connections").await;
    Ok(())
}

/// One address opens 100 connections with `max_connections_per_ip: 64`.
pub async fn per_ip(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    const LIMIT: usize = 64;
    const OPENED: usize = 100;
    // A long header timeout, so that held connections and refused ones
    // cannot be confused.
    let spec = Spec {
        http: vec![("max_connections_per_ip", LIMIT.to_string()), ("header_read_timeout", "8s".into())],
        ..Spec::default()
    };
    let run = Run::begin(r, &spec, secrets, hs_sessions(secrets, 0, 20)?, &[], true).await?;
    let attacker = Ipv4Addr::new(127, 0, 3, 1);
    let neighbour = Ipv4Addr::new(127, 0, 3, 2);
    let fds = run.gw.fd_count()?;
    let flood = tokio::spawn(
        Flood {
            target: run.gw.public,
            plan: vec![(Kind::Silent, OPENED)],
            first_source: attacker,
            per_source: OPENED,
            window: Duration::from_secs(5),
            tls: None,
            pace: None,
        }
        .run(),
    );
    // Once the gateway holds the attacker's connections:
    let held =
        until(Duration::from_secs(3), || std::future::ready(run.gw.fd_count().unwrap_or(0) >= fds + LIMIT))
            .await;
    let healthz = run.gw.url("/healthz");
    let from = |ip: Ipv4Addr| {
        let url = healthz.clone();
        async move {
            let client = reqwest::Client::builder()
                .local_address(std::net::IpAddr::V4(ip))
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(2))
                .build()?;
            anyhow::Ok(client.get(url).send().await.map(|r| r.status().as_u16()))
        }
    };
    let same = from(attacker).await?;
    let other = from(neighbour).await?;
    r.check(
        "while one address holds its limit, another address is served",
        held.is_some() && matches!(other, Ok(200)),
        format!("held: {}; other address: {other:?}", took(held, Duration::from_secs(3))),
    );
    r.check(
        "a further connection from the address at its limit is refused",
        same.is_err(),
        format!("{same:?}"),
    );
    let tally = flood.await?;
    let t = tally.get(&Kind::Silent).cloned().unwrap_or_default();
    let refused = t.closed_within(Duration::from_millis(1500)) + t.connect_errors;
    r.check(
        &format!("of {OPENED} connections from one address, those beyond {LIMIT} are refused at once"),
        refused >= OPENED - LIMIT && OPENED - refused <= LIMIT,
        format!("{refused} refused within 1.5 s; {}", t.summary()),
    );
    let again = until(Duration::from_secs(5), || async { matches!(from(attacker).await, Ok(Ok(200))) }).await;
    r.check(
        "once its connections are closed, the address is served again",
        again.is_some(),
        took(again, Duration::from_secs(5)),
    );
    run.finish("after the per-address flood").await;
    Ok(())
}

/// The gateway runs out of file descriptors (an open-files limit of 256 and
/// 400 silent connections, the rest waiting in the listen backlog): the
/// accept loop must back off (one warning per streak, not one per failed
/// accept), survive, reap the silent connections by itself and serve again
/// while the attackers still hold their sockets.
pub async fn fd_limit(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    const NOFILE: u32 = 256;
    const RECOVERY: Duration = Duration::from_secs(12);
    let spec = Spec { nofile: Some(NOFILE), ..Spec::default() };
    let run = Run::begin(r, &spec, secrets, hs_sessions(secrets, 0, 20)?, &[], true).await?;
    let fds = run.gw.fd_count()?;
    let warnings_before = run.gw.log_count("accept failed");
    // New connections wait in the backlog while no descriptor is free.
    run.health.excuse(true);
    let flood = tokio::spawn(
        Flood {
            target: run.gw.public,
            plan: vec![(Kind::Silent, 400)],
            first_source: Ipv4Addr::new(127, 0, 4, 2),
            per_source: 50,
            window: RECOVERY + MARGIN * 2,
            tls: None,
            pace: None,
        }
        .run(),
    );
    // Out of descriptors once the gateway holds nearly its limit.
    let exhausted = until(Duration::from_secs(5), || {
        std::future::ready(run.gw.fd_count().unwrap_or(0) + 8 >= NOFILE as usize)
    })
    .await;
    r.check(
        "the flood exhausts the gateway's file descriptors",
        exhausted.is_some(),
        took(exhausted, Duration::from_secs(5)),
    );
    let healthz = [run.gw.url("/healthz"), run.gw.admin_url("/healthz")];
    let client =
        run.gw.client_builder()?.pool_max_idle_per_host(0).timeout(Duration::from_secs(1)).build()?;
    let recovered = until(RECOVERY, || async {
        for url in &healthz {
            if !client.get(url).send().await.is_ok_and(|r| r.status() == 200) {
                return false;
            }
        }
        true
    })
    .await;
    r.check(
        "while the attackers still hold their sockets, the gateway reaps them and both listeners answer again",
        recovered.is_some() && !run.gw.exited(),
        took(recovered, RECOVERY),
    );
    // The attackers let go (handshakes still queued complete and close now);
    // from then on every probe counts again.
    flood.abort();
    let _ = flood.await;
    fds_back(r, &run, fds).await;
    run.health.excuse(false);
    let warnings = run.gw.log_count("accept failed") - warnings_before;
    r.check(
        "the accept loop backs off while out of descriptors (a few `accept failed` lines, not one per attempt)",
        warnings <= 10,
        format!("{warnings} lines"),
    );
    // A second of ordinary traffic after the fault, for the health prober.
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.finish("after running out of file descriptors").await;
    Ok(())
}
