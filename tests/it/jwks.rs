//! Remote keys against a real JWKS server on loopback (HTTPS with a private
//! CA, and OIDC discovery): first fetch and readiness, the verified-token
//! cache, key rotation, garbage answers, the issuer going down, and a flood
//! of bogus kids that must not turn into a flood of fetches.

use std::sync::Arc;
use std::time::Duration;

use channelgate::app::{App, Gateway as AppGateway};
use serde_json::json;

use crate::issuer::{Answer, Issuer, jwks, jwt_block, mint, mint_with, signing_key, use_jwt_block};
use crate::support::{APP_KEY, AdminGateway, Gateway, Setup, eventually, expected_auth, write_config};

/// A gateway whose single issuer is `issuer`, through discovery.
struct Running {
    gw: Arc<AppGateway>,
    addr: std::net::SocketAddr,
    _server: Gateway,
}

async fn start_gateway(issuer: &Issuer, refetch_interval: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("ca.pem"), &issuer.ca_pem).unwrap();
    use_jwt_block(&config, &jwt_block(&issuer.url, refetch_interval));
    let app = match App::load(&config) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    let gw = app.gateway();
    let server = Gateway::serve(dir, app).await;
    Running { gw, addr: server.addr, _server: server }
}

async fn ask(addr: std::net::SocketAddr, token: &str, sub: &str) -> (u16, serde_json::Value) {
    let channel = format!("private-user-{sub}");
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/pusher/auth"))
        .bearer_auth(token)
        .form(&[("socket_id", "1234.5678"), ("channel_name", channel.as_str())])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new().get(format!("http://{addr}/readyz")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn unreachable_issuer_means_not_ready_and_503() {
    let issuer = Issuer::start().await; // answers 503 to the JWKS request
    let k1 = signing_key("k1");
    let run = start_gateway(&issuer, "30s").await;
    eventually("a first failed fetch", || async { issuer.hits() >= 1 }).await;
    let (status, body) = readyz(run.addr).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["issuers"][0]["loaded"], false);
    assert!(body["issuers"][0]["last_error"].as_str().unwrap().contains("503"), "{body}");
    let (status, body) = ask(run.addr, &mint(&k1, &issuer.url, "alice"), "alice").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("jwks_unavailable")), "{body}");
    assert!(body.get("auth").is_none());
}

#[tokio::test]
async fn discovery_cache_rotation_garbage_and_downtime() {
    let mut issuer = Issuer::start().await;
    let (k1, k2) = (signing_key("k1"), signing_key("k2"));
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let run = start_gateway(&issuer, "200ms").await;
    let addr = run.addr;
    eventually("ready after the first fetch", || async { readyz(addr).await.0 == 200 }).await;

    // A page joining ten channels: one verification, nine cache hits.
    let t1 = mint(&k1, &issuer.url, "alice");
    let (hits_before, misses_before) = run.gw.sessions.stats();
    for _ in 0..10 {
        let (status, body) = ask(addr, &t1, "alice").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["auth"], expected_auth("1234.5678:private-user-alice"));
    }
    let (hits, misses) = run.gw.sessions.stats();
    assert_eq!((hits - hits_before, misses - misses_before), (9, 1));
    assert!(body_has_key(&run, "k1"));

    // Rotation: the issuer now publishes only k2. A k2 token triggers one refetch.
    issuer.set(jwks(&[&k2], "max-age=3600"));
    // Refetches are at most one per refetch_interval (200 ms here; the
    // counting is tested on a paused clock in src/jwks.rs).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let fetches = issuer.hits();
    let t2 = mint(&k2, &issuer.url, "bob");
    let (status, body) = ask(addr, &t2, "bob").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issuer.hits(), fetches + 1);
    // k1 left the key set: its cached session is dropped, and it is refused.
    let (status, body) = ask(addr, &t1, "alice").await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("unknown_kid")), "{body}");

    // Garbage from the issuer: the last good keys keep serving, and readiness says stale.
    issuer.set(Answer::Garbage);
    run.gw.refresh_keys_once().await;
    let (status, body) = ask(addr, &t2, "bob").await;
    assert_eq!(status, 200, "{body}");
    let (status, ready) = readyz(addr).await;
    assert_eq!(status, 200, "stale keys keep the gateway ready: {ready}");
    assert_eq!(ready["issuers"][0]["stale"], true, "{ready}");
    assert!(ready["issuers"][0]["last_error"].is_string(), "{ready}");

    // The issuer goes down altogether: still served from the last good keys.
    issuer.go_down();
    run.gw.refresh_keys_once().await;
    let t3 = mint(&k2, &issuer.url, "carol");
    let (status, body) = ask(addr, &t3, "carol").await;
    assert_eq!(status, 200, "{body}");
    let (_, ready) = readyz(addr).await;
    assert_eq!(ready["issuers"][0]["keys"], 1);
    assert!(!ready.to_string().contains(k2.jwk["x"].as_str().unwrap()), "readiness shows key material");
    let _ = APP_KEY;
}

fn body_has_key(run: &Running, kid: &str) -> bool {
    run.gw.remote_issuers().any(|(_, r)| r.has_kid(kid))
}

/// POSTs a channel auth request; status, `Retry-After` and body.
async fn ask_full(
    addr: std::net::SocketAddr,
    token: &str,
    sub: &str,
) -> (u16, Option<u64>, serde_json::Value) {
    let channel = format!("private-user-{sub}");
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/pusher/auth"))
        .bearer_auth(token)
        .form(&[("socket_id", "1234.5678"), ("channel_name", channel.as_str())])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry_after, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_kid_first_seen_during_an_outage_is_accepted_soon_after_recovery() {
    let mut issuer = Issuer::start().await;
    let (k1, k2) = (signing_key("k1"), signing_key("k2"));
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let run = start_gateway(&issuer, "200ms").await;
    let addr = run.addr;
    eventually("ready", || async { readyz(addr).await.0 == 200 }).await;
    assert_eq!(ask(addr, &mint(&k1, &issuer.url, "alice"), "alice").await.0, 200);

    issuer.go_down();
    // Past the refetch interval, so the unknown kid below causes a refetch
    // (which fails).
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The issuer rotated to k2 while unreachable: k2 may well exist, so this
    // is "retry later" (503), not "your session is bad" (401).
    let t2 = mint(&k2, &issuer.url, "bob");
    let (status, retry_after, body) = ask_full(addr, &t2, "bob").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("jwks_unavailable")), "{body}");
    assert!(retry_after.is_some_and(|s| (1..=10).contains(&s)), "Retry-After: {retry_after:?}");
    assert!(body.get("auth").is_none());
    // Known kids are still served from the last good keys.
    assert_eq!(ask(addr, &mint(&k1, &issuer.url, "carol"), "carol").await.0, 200);

    issuer.set(jwks(&[&k1, &k2], "max-age=3600"));
    issuer.come_up().await;
    let back = std::time::Instant::now();
    let mut last = (0, serde_json::Value::Null);
    while back.elapsed() < Duration::from_secs(15) {
        last = ask(addr, &t2, "bob").await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 200, "k2 still refused {:?} after the issuer came back: {}", back.elapsed(), last.1);
    assert!(back.elapsed() < Duration::from_secs(12), "recovery took {:?}", back.elapsed());
    assert_eq!(last.1["auth"], expected_auth("1234.5678:private-user-bob"));
    let (_, ready) = readyz(addr).await;
    assert_eq!(ready["issuers"][0]["stale"], false, "{ready}");
}

#[tokio::test]
async fn rotation_drops_cached_sessions_signed_by_a_replaced_key() {
    let issuer = Issuer::start().await;
    let old = signing_key("k1");
    issuer.set(jwks(&[&old], "max-age=3600"));
    let run = start_gateway(&issuer, "30s").await;
    let addr = run.addr;
    eventually("ready", || async { readyz(addr).await.0 == 200 }).await;
    // One token names the kid, one names none (accepted: the set has one key).
    let with_kid = mint(&old, &issuer.url, "alice");
    let without_kid = mint_with(&old, None, &issuer.url, "bob");
    for (token, sub) in [(&with_kid, "alice"), (&without_kid, "bob")] {
        for _ in 0..2 {
            assert_eq!(ask(addr, token, sub).await.0, 200);
        }
    }
    let (hits, _) = run.gw.sessions.stats();
    assert_eq!(hits, 2, "both sessions are cached");

    // The issuer replaces the key under the same kid (and it is still the
    // only key, so a kid-less token would select it).
    let new = signing_key("k1");
    issuer.set(jwks(&[&new], "max-age=3600"));
    run.gw.refresh_keys_once().await;
    for (token, sub) in [(&with_kid, "alice"), (&without_kid, "bob")] {
        let (status, body) = ask(addr, token, sub).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("invalid_signature")), "{sub}: {body}");
    }
    assert_eq!(ask(addr, &mint(&new, &issuer.url, "alice"), "alice").await.0, 200);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_stops_startup() {
    let issuer = Issuer::start().await;
    let k1 = signing_key("k1");
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("ca.pem"), &issuer.ca_pem).unwrap();
    // Configured with a trailing slash; the document says it without.
    let configured = format!("{}/", issuer.url);
    use_jwt_block(&config, &jwt_block(&configured, "30s"));
    let gw = AdminGateway::run(dir, &config).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), gw.task)
        .await
        .expect("the gateway kept running with an issuer that can never match a token");
    let message = stopped.unwrap().unwrap_err();
    assert!(message.contains(&format!("`{configured}`")), "{message}");
    assert!(message.contains(&format!("`{}`", issuer.url)), "{message}");
    assert!(message.contains("equal exactly"), "{message}");

    // The same slash on both sides is fine.
    issuer.set_discovery_issuer(&configured);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("ca.pem"), &issuer.ca_pem).unwrap();
    use_jwt_block(&config, &jwt_block(&configured, "30s"));
    let gw = AdminGateway::run(dir, &config).await;
    let addr = gw.addr;
    eventually("ready", || async { readyz(addr).await.0 == 200 }).await;
    assert_eq!(ask(addr, &mint(&k1, &configured, "alice"), "alice").await.0, 200);
    gw.stop().await.unwrap();
}

/// GET `url` with a one-second limit: `None` when no answer came in time.
async fn get_within_a_second(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    client.get(url).send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn an_issuer_down_at_start_then_up_is_served_and_sigterm_still_exits() {
    let mut issuer = Issuer::start_down().await;
    let k1 = signing_key("k1");
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("ca.pem"), &issuer.ca_pem).unwrap();
    use_jwt_block(&config, &jwt_block(&issuer.url, "30s"));
    let mut server = crate::support::Binary::serve(&config);
    let base = format!("http://{}", server.addr);

    // Down for a while: several failed fetches; alive but not ready.
    let down = std::time::Instant::now();
    while down.elapsed() < Duration::from_millis(2500) {
        assert_eq!(get_within_a_second(&format!("{base}/healthz")).await, Some(200));
        assert_eq!(get_within_a_second(&format!("{base}/readyz")).await, Some(503));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Up: ready by itself, and every probe answered within a second
    // throughout (the first success after failures used to deadlock).
    issuer.come_up().await;
    let up = std::time::Instant::now();
    loop {
        let health = get_within_a_second(&format!("{base}/healthz")).await;
        assert_eq!(
            health,
            Some(200),
            "no health answer {:?} after the issuer came back:\n{}",
            up.elapsed(),
            server.logs()
        );
        if get_within_a_second(&format!("{base}/readyz")).await == Some(200) {
            break;
        }
        assert!(up.elapsed() < Duration::from_secs(12), "not ready 12 s after the issuer came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = ask(server.addr, &mint(&k1, &issuer.url, "alice"), "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"], expected_auth("1234.5678:private-user-alice"));
    for _ in 0..5 {
        assert_eq!(get_within_a_second(&format!("{base}/healthz")).await, Some(200));
    }
    let exit = server.terminate(Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "SIGTERM: {exit:?}\n{}", server.logs());
}

#[tokio::test]
async fn a_slow_or_huge_issuer_never_holds_up_known_sessions() {
    let issuer = Issuer::start().await;
    let (k1, k2) = (signing_key("k1"), signing_key("k2"));
    issuer.set(jwks(&[&k1], "max-age=3600"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    std::fs::write(dir.path().join("ca.pem"), &issuer.ca_pem).unwrap();
    use_jwt_block(&config, &format!("{}    fetch_timeout: 1s\n", jwt_block(&issuer.url, "200ms")));
    let app = App::load(&config).unwrap();
    let gw = app.gateway();
    let server = Gateway::serve(dir, app).await;
    let addr = server.addr;
    eventually("ready", || async { readyz(addr).await.0 == 200 }).await;

    // Slow: every answer takes 5 s, the fetch limit is 1 s.
    issuer.set_delay(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = std::time::Instant::now();
    let (status, _, body) = ask_full(addr, &mint(&k2, &issuer.url, "bob"), "bob").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("jwks_unavailable")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "an unknown kid waited {:?}", started.elapsed());
    let started = std::time::Instant::now();
    assert_eq!(ask(addr, &mint(&k1, &issuer.url, "alice"), "alice").await.0, 200);
    assert!(started.elapsed() < Duration::from_millis(500), "a known kid waited {:?}", started.elapsed());

    // Huge: a 5 MiB JWKS is cut off; the last good keys stay.
    issuer.set_delay(Duration::ZERO);
    let filler: Vec<serde_json::Value> = (0..40_000).map(|i| json!({"kty": "oct", "kid": format!("pad-{i:08}"), "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})).collect();
    let huge = json!({"keys": filler}).to_string();
    assert!(huge.len() > 5 << 20, "{}", huge.len());
    issuer.set(Answer::Jwks { body: huge, cache_control: "max-age=3600" });
    gw.refresh_keys_once().await;
    let status = gw.key_status();
    assert!(status[0].1.last_error.as_deref().is_some_and(|e| e.contains("reading the body")), "{status:?}");
    assert_eq!(status[0].1.keys, 1);
    assert_eq!(ask(addr, &mint(&k1, &issuer.url, "carol"), "carol").await.0, 200);
    drop(server);
}
