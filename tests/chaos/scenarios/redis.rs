//! Redis, the shared revocation store, goes down and comes back:
//! - `on_store_error: deny` → 503 `revocation_unavailable` (and not ready)
//!   while it is down, served again after it is back;
//! - `allow` → served throughout from the last known set (a revoked user
//!   stays refused);
//! - on reconnect the gateway resyncs: a revocation written to Redis while
//!   the gateway was cut off (so never published to it) is enforced.

use std::time::Duration;

use serde_json::json;

use crate::gateway::{REDIS_PREFIX, Secrets, Spec};
use crate::load::{Session, ask_own, hs_session};
use crate::redis::Redis;
use crate::report::Report;
use crate::scenarios::{Run, hs_sessions, took, until};

const RESYNC: Duration = Duration::from_secs(12);

pub async fn outage(r: &Report, secrets: &Secrets, on_error: &'static str) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut redis = Redis::start(data.path()).await?;
    let spec = Spec { redis: Some((redis.port, on_error)), ..Spec::default() };
    let deny = on_error == "deny";
    let run = Run::begin(r, &spec, secrets, hs_sessions(secrets, 0, 20)?, &[], true).await?;
    let base = run.base();
    let revoked = hs_session(&secrets.jwt, 900)?;
    let revoked_offline = hs_session(&secrets.jwt, 901)?;
    let plain = hs_session(&secrets.jwt, 3)?;

    // A revocation through the admin API (written to Redis, published).
    let resp = reqwest::Client::new()
        .post(run.gw.admin_url("/admin/revocations"))
        .bearer_auth(&secrets.admin)
        .json(&json!({"sub": revoked.sub, "ttl": "1h"}))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    r.check("a revocation through the admin API is stored", resp.status().is_success(), resp.status());
    let answer = |s: &Session| {
        let (client, base, signer, s) = (run.client.clone(), base.clone(), run.signer.clone(), s.clone());
        async move { ask_own(&client, &base, &signer, &s).await }
    };
    let (a, _) = answer(&revoked).await?;
    r.check(
        "the revoked user is refused (403 user_revoked)",
        a.status == 403 && a.reason() == "user_revoked",
        a.brief(),
    );

    redis.down().await?;
    if deny {
        run.load.expect_503(&["revocation_unavailable"]);
        let refused = until(Duration::from_secs(5), || async {
            answer(&plain).await.is_ok_and(|(a, _)| a.status == 503 && a.reason() == "revocation_unavailable")
        })
        .await;
        r.check(
            "with Redis down, requests get 503 revocation_unavailable",
            refused.is_some(),
            took(refused, Duration::from_secs(5)),
        );
        let (status, body) = run.gw.readyz().await?;
        r.check("with Redis down, /readyz is 503", status == 503, format!("{status} {body}"));
    } else {
        // Let the gateway notice, then decide from the last known set.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (a, ok) = answer(&plain).await?;
        r.check("with Redis down, requests are still served", ok, a.brief());
        let (a, _) = answer(&revoked).await?;
        r.check(
            "with Redis down, the revoked user stays refused (403 user_revoked)",
            a.status == 403 && a.reason() == "user_revoked",
            a.brief(),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // While the gateway cannot see it, another replica revokes a user.
    let key = format!("{REDIS_PREFIX}revoked:sub:{}", revoked_offline.sub);
    let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 3600;
    let reply = redis.write_offline(&["SET", &key, &expires.to_string(), "EX", "3600"]).await?;
    anyhow::ensure!(reply == "+OK", "writing the revocation: {reply}");
    redis.up().await?;

    let served = until(RESYNC, || async { answer(&plain).await.is_ok_and(|(_, ok)| ok) }).await;
    r.check("after Redis is back, requests are served again", served.is_some(), took(served, RESYNC));
    let enforced = until(RESYNC, || async {
        answer(&revoked_offline).await.is_ok_and(|(a, _)| a.status == 403 && a.reason() == "user_revoked")
    })
    .await;
    r.check(
        "after Redis is back, a revocation written during the outage is enforced (resync on reconnect)",
        enforced.is_some(),
        took(enforced, RESYNC),
    );
    let (a, _) = answer(&revoked).await?;
    r.check(
        "the user revoked before the outage is still refused",
        a.status == 403 && a.reason() == "user_revoked",
        a.brief(),
    );
    if served.is_some() {
        run.load.expect_503(&[]);
    }
    let ready = run.gw.wait_ready(Duration::from_secs(5)).await;
    r.check("/readyz is 200 again", ready.is_ok(), ready.err().map(|e| e.to_string()).unwrap_or_default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.finish("after the Redis outage").await;
    redis.down().await?;
    Ok(())
}
