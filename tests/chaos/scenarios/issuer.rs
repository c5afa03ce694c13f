//! The identity provider misbehaving (DESIGN §11 "Faults"):
//! - keys never fetched, or stale and the token's `kid` unknown → 503
//!   `jwks_unavailable` with `Retry-After`; background retry with backoff
//!   (1 s → 10 s), so a `kid` first seen during an outage is accepted within
//!   about 10 s of the issuer's return and readiness comes back by itself;
//! - issuer down, `kid` known → served from the last good keys;
//! - a key removed, or replaced under the same `kid` → the sessions it
//!   verified (cached) are dropped → 401.
//!
//! The load (HS256 tokens and tokens of a key the issuer always publishes)
//! must be answered correctly throughout; the scenario's own probes carry
//! the rotating keys.

use std::time::{Duration, Instant};

use crate::gateway::{Remote, Secrets, Spec};
use crate::issuer::{Issuer, SigningKey};
use crate::load::{Answer, Session, ask_own};
use crate::report::Report;
use crate::scenarios::{Run, hs_sessions, took, until};

/// A `kid` first seen during an outage must be accepted within this long
/// after the issuer is back (backoff capped at 10 s, plus a margin).
const RECOVERY: Duration = Duration::from_secs(12);
/// How long each outage lasts.
const OUTAGE: Duration = Duration::from_secs(2);

fn spec(issuer: &Issuer) -> Spec {
    Spec {
        remote: Some(Remote { issuer: issuer.url.clone(), ca_pem: issuer.ca_pem.clone() }),
        ..Spec::default()
    }
}

/// HS256 sessions and sessions of the issuer's `stable` key, for the load.
fn load_sessions(secrets: &Secrets, issuer: &Issuer, stable: &SigningKey) -> anyhow::Result<Vec<Session>> {
    let mut sessions = hs_sessions(secrets, 0, 20)?;
    for n in 0..20 {
        sessions.push(stable.mint(&issuer.url, n)?);
    }
    Ok(sessions)
}

fn is_jwks_unavailable(a: &Answer) -> bool {
    a.status == 503
        && a.reason() == "jwks_unavailable"
        && a.retry_after.as_deref().is_some_and(|v| v.parse::<u64>().is_ok())
}

fn brief_with_retry(a: &Answer) -> String {
    format!("{}, Retry-After {:?}, {} ms", a.brief(), a.retry_after, a.took.as_millis())
}

/// Successful fetches of the issuer's keys so far (from `/readyz`).
async fn fetches_ok(run: &Run<'_>) -> u64 {
    run.gw.readyz().await.ok().and_then(|(_, b)| b["issuers"][0]["fetches_ok"].as_u64()).unwrap_or(0)
}

/// Polls `s`'s own channel until it is a correct 200.
async fn accepted_within(run: &Run<'_>, s: &Session, within: Duration) -> Option<Duration> {
    let base = run.base();
    until(within, || async { matches!(ask_own(&run.client, &base, &run.signer, s).await, Ok((_, true))) })
        .await
}

/// Item 1 of #11: the issuer is down when the gateway starts, then comes up.
pub async fn cold_start(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let mut issuer = Issuer::new().await?;
    let stable = SigningKey::generate("stable")?;
    issuer.set_keys(&[&stable]);
    let sessions = load_sessions(secrets, &issuer, &stable)?;
    let probe = stable.mint(&issuer.url, 500)?;
    let run = Run::begin(r, &spec(&issuer), secrets, sessions, &["jwks_unavailable"], false).await?;

    let (status, body) = run.gw.readyz().await?;
    r.check(
        "/readyz is 503 while the issuer's keys were never fetched",
        status == 503,
        format!("{status} {body}"),
    );
    let (a, _) = ask_own(&run.client, &run.base(), &run.signer, &probe).await?;
    r.check(
        "a token of that issuer gets 503 jwks_unavailable with Retry-After",
        is_jwks_unavailable(&a),
        brief_with_retry(&a),
    );
    // Several failed fetches (the first retries come after 1 s and 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    issuer.up().await?;
    // Only the background retry fetches here (the probe above and the load
    // use a known issuer whose keys are simply missing).
    let ready = run.gw.wait_ready(RECOVERY).await;
    r.check(
        "once the issuer is up, /readyz turns 200 by itself within ~10 s",
        ready.is_ok(),
        match &ready {
            Ok(d) => format!("after {:.1}s", d.as_secs_f64()),
            Err(e) => e.to_string(),
        },
    );
    let recovered = accepted_within(&run, &probe, Duration::from_secs(2)).await;
    r.check("then its tokens are accepted", recovered.is_some(), took(recovered, Duration::from_secs(2)));
    if recovered.is_some() {
        run.load.expect_503(&[]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    run.finish("after the issuer came up").await;
    issuer.down().await;
    Ok(())
}

/// Items 2 and 3 of #11: five outages; during each, a token with a new
/// `kid` arrives; after each, the issuer publishes a rotated key set (in
/// the third, one key is also replaced under the same `kid`).
pub async fn outages(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let mut issuer = Issuer::new().await?;
    let stable = SigningKey::generate("stable")?;
    let mut current = SigningKey::generate("r0")?;
    issuer.set_keys(&[&stable, &current]);
    issuer.up().await?;
    let sessions = load_sessions(secrets, &issuer, &stable)?;
    let run = Run::begin(r, &spec(&issuer), secrets, sessions, &[], true).await?;
    let base = run.base();

    // A session of the current key, verified (and cached) before the outage.
    let mut cached = current.mint(&issuer.url, 600)?;
    let (a, ok) = ask_own(&run.client, &base, &run.signer, &cached).await?;
    r.check("a token of the first rotating key is accepted", ok, a.brief());
    let mut n = 601;
    for cycle in 1..=5 {
        let next = SigningKey::generate(&format!("r{cycle}"))?;
        let first_seen = next.mint(&issuer.url, n)?;
        n += 1;

        issuer.down().await;
        let (a, _) = ask_own(&run.client, &base, &run.signer, &first_seen).await?;
        r.check(
            &format!("outage {cycle}: a kid first seen during the outage gets 503 jwks_unavailable with Retry-After"),
            is_jwks_unavailable(&a),
            brief_with_retry(&a),
        );
        let (a, ok) = ask_own(&run.client, &base, &run.signer, &cached).await?;
        let fresh = current.mint(&issuer.url, n)?;
        n += 1;
        let (b, ok_fresh) = ask_own(&run.client, &base, &run.signer, &fresh).await?;
        r.check(
            &format!("outage {cycle}: tokens of a known kid are served from the last good keys"),
            ok && ok_fresh,
            format!("cached session {}, new token {}", a.brief(), b.brief()),
        );
        tokio::time::sleep(OUTAGE).await;

        // Back, rotated: the previous key is gone. In the third outage the
        // previous key is replaced under its own kid instead (and kept).
        let replaced = if cycle == 3 { Some(SigningKey::generate(&current.kid)?) } else { None };
        match &replaced {
            Some(k) => issuer.set_keys(&[&stable, k, &next]),
            None => issuer.set_keys(&[&stable, &next]),
        }
        let fetched = fetches_ok(&run).await;
        issuer.up().await?;
        let up = Instant::now();
        let recovered = if cycle % 2 == 1 {
            // Nothing but the background retry may fetch: no token with an
            // unknown kid arrives until the keys are fresh again.
            let fresh = until(RECOVERY, || async {
                fetches_ok(&run).await > fetched
                    && run.gw.readyz().await.is_ok_and(|(_, b)| b["issuers"][0]["stale"] == false)
            })
            .await;
            r.check(
                &format!("outage {cycle}: after the issuer is back, the background retry fetches the keys within ~10 s"),
                fresh.is_some(),
                took(fresh, RECOVERY),
            );
            match fresh {
                Some(_) => accepted_within(&run, &first_seen, Duration::from_secs(1)).await,
                None => None,
            }
        } else {
            // A client retrying the refused token.
            accepted_within(&run, &first_seen, RECOVERY).await
        };
        r.check(
            &format!(
                "outage {cycle}: after the issuer is back, the kid first seen during the outage is accepted"
            ),
            recovered.is_some(),
            format!("{:.1}s after the issuer came back", up.elapsed().as_secs_f64()),
        );
        if recovered.is_none() {
            r.note("the key set did not recover; the remaining outages are skipped");
            break;
        }
        let (a, ok) = ask_own(&run.client, &base, &run.signer, &cached).await?;
        let what = if replaced.is_some() { "replaced under the same kid" } else { "removed" };
        r.check(
            &format!("outage {cycle}: a cached session of the key {what} is refused (401)"),
            !ok && a.status == 401,
            format!("{} ({:.1}s after the issuer came back)", a.brief(), up.elapsed().as_secs_f64()),
        );
        if let Some(k) = &replaced {
            let t = k.mint(&issuer.url, n)?;
            n += 1;
            let (a, ok) = ask_own(&run.client, &base, &run.signer, &t).await?;
            r.check(&format!("outage {cycle}: a token of the replacing key is accepted"), ok, a.brief());
        }
        let (status, body) = run.gw.readyz().await?;
        let issuer_status = &body["issuers"][0];
        r.check(
            &format!("outage {cycle}: /readyz is 200 and the keys are no longer stale"),
            status == 200 && issuer_status["stale"] == false,
            format!("{status} stale={} keys={}", issuer_status["stale"], issuer_status["keys"]),
        );
        cached = first_seen;
        current = next;
        // Past the refetch interval (1 s), so the next outage's new kid
        // triggers a fetch.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    run.finish("after five outages").await;
    issuer.down().await;
    Ok(())
}

/// The issuer answers after 5 s (the gateway's fetch timeout is 3 s).
pub async fn slow(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let mut issuer = Issuer::new().await?;
    let stable = SigningKey::generate("stable")?;
    let new = SigningKey::generate("s1")?;
    issuer.set_keys(&[&stable]);
    issuer.up().await?;
    let sessions = load_sessions(secrets, &issuer, &stable)?;
    let run = Run::begin(r, &spec(&issuer), secrets, sessions, &[], true).await?;
    let before = run.load.stats();

    issuer.set_keys(&[&stable, &new]);
    issuer.set_delay(Duration::from_secs(5));
    let probe = new.mint(&issuer.url, 700)?;
    let (a, _) = ask_own(&run.client, &run.base(), &run.signer, &probe).await?;
    r.check(
        "a new kid while the issuer is slow gets 503 jwks_unavailable with Retry-After, within the fetch timeout (3 s) + 1 s",
        is_jwks_unavailable(&a) && a.took <= Duration::from_secs(4),
        brief_with_retry(&a),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = run.load.stats();
    let slowest = during.latencies_us[before.latencies_us.len()..].iter().max().copied().unwrap_or(0);
    r.check(
        "requests with known keys are not held up by the slow issuer (each answered within 1 s)",
        slowest <= 1_000_000,
        format!("slowest {} ms over {} requests", slowest / 1000, during.requests - before.requests),
    );
    issuer.set_delay(Duration::ZERO);
    let recovered = accepted_within(&run, &probe, RECOVERY).await;
    r.check(
        "once the issuer is fast again, the new kid is accepted within ~10 s",
        recovered.is_some(),
        took(recovered, RECOVERY),
    );
    run.finish("after the slow issuer").await;
    issuer.down().await;
    Ok(())
}

/// The issuer's JWKS becomes a 5 MiB document.
pub async fn huge(r: &Report, secrets: &Secrets) -> anyhow::Result<()> {
    let mut issuer = Issuer::new().await?;
    let stable = SigningKey::generate("stable")?;
    let new = SigningKey::generate("h1")?;
    issuer.set_keys(&[&stable]);
    issuer.up().await?;
    let sessions = load_sessions(secrets, &issuer, &stable)?;
    let run = Run::begin(r, &spec(&issuer), secrets, sessions, &[], true).await?;

    issuer.set_keys(&[&stable, &new]);
    issuer.set_huge(true);
    let fetches = issuer.jwks_requests();
    let probe = new.mint(&issuer.url, 800)?;
    let (a, _) = ask_own(&run.client, &run.base(), &run.signer, &probe).await?;
    r.check(
        "a new kid while the JWKS is 5 MiB gets 503 jwks_unavailable with Retry-After",
        is_jwks_unavailable(&a),
        brief_with_retry(&a),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    r.check(
        "the 5 MiB JWKS was requested (and refused) while known keys kept serving",
        issuer.jwks_requests() > fetches,
        format!("{} JWKS requests", issuer.jwks_requests() - fetches),
    );
    issuer.set_huge(false);
    let recovered = accepted_within(&run, &probe, RECOVERY).await;
    r.check(
        "once the JWKS is normal again, the new kid is accepted within ~10 s",
        recovered.is_some(),
        took(recovered, RECOVERY),
    );
    run.finish("after the 5 MiB JWKS").await;
    issuer.down().await;
    Ok(())
}
