//! Operations: hot reload (file change, SIGHUP, broken files, certificates),
//! the audit log, Prometheus metrics on the admin listener, graceful
//! shutdown with a request in flight, shadow rules, and `check` lints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const FORM: &[(&str, &str)] = &[("socket_id", "1234.5678"), ("channel_name", "private-user-alice")];

/// A gateway run with the full lifecycle (`App::run`, see `AdminGateway`),
/// its config watched for changes.
struct Full(AdminGateway);

impl std::ops::Deref for Full {
    type Target = AdminGateway;
    fn deref(&self) -> &AdminGateway {
        &self.0
    }
}

impl Full {
    async fn start(setup: Setup) -> Full {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &setup);
        let text = std::fs::read_to_string(&config).unwrap().replace("reload:\n  watch: false\n", "");
        std::fs::write(&config, text).unwrap();
        Full(AdminGateway::run(dir, &config).await)
    }

    async fn status(&self, t: &str, channel: &str) -> u16 {
        client()
            .post(format!("http://{}/pusher/auth", self.addr))
            .bearer_auth(t)
            .form(&[("socket_id", "1234.5678"), ("channel_name", channel)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn metrics(&self) -> String {
        client().get(format!("http://{}/metrics", self.admin)).send().await.unwrap().text().await.unwrap()
    }

    fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policies/main.yaml")
    }

    async fn stop(self) {
        self.0.stop().await.unwrap();
    }
}

/// The value of one sample in a text exposition, `None` if absent.
fn sample(exposition: &str, name_and_labels: &str) -> Option<f64> {
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == name_and_labels).then(|| value.parse().ok()).flatten()
    })
}

const DENY_ALICE: &str = "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: user == token.sub && user != \"alice\"\n";

#[tokio::test]
async fn policy_change_on_disk_is_picked_up_and_a_broken_one_is_refused() {
    let gw = Full::start(Setup::default()).await;
    let t = token("alice", json!({}));
    assert_eq!(gw.status(&t, "private-user-alice").await, 200);

    std::fs::write(gw.policy_path(), DENY_ALICE).unwrap();
    eventually("the new policy", || async { gw.status(&t, "private-user-alice").await == 403 }).await;
    let m = gw.metrics().await;
    assert!(sample(&m, r#"channelgate_reloads_total{result="ok"}"#).unwrap() >= 1.0, "{m}");

    // A broken file: the running policy stays, the failure is counted.
    std::fs::write(
        gw.policy_path(),
        "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: user ==\n",
    )
    .unwrap();
    eventually("a failed reload", || async {
        sample(&gw.metrics().await, r#"channelgate_reloads_total{result="error"}"#).is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(gw.status(&t, "private-user-alice").await, 403, "the last good policy is still in force");
    assert_eq!(gw.status(&token("bob", json!({})), "private-user-bob").await, 200);
    gw.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    sighup_reloads(false).await;
}

/// With one CPU (here: pinned with taskset) `serve` runs a single-threaded
/// runtime: the same serving, reload and graceful exit.
#[tokio::test]
async fn sighup_reloads_the_binary_on_one_cpu() {
    sighup_reloads(true).await;
}

async fn sighup_reloads(one_cpu: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    let mut command = if one_cpu {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", env!("CARGO_BIN_EXE_channelgate")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_channelgate"))
    };
    let mut child = command.args(["serve", "--config"]).arg(&config).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id().to_string();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let addr = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let t = token("alice", json!({}));
    let ask = || async {
        client()
            .post(format!("http://{addr}/pusher/auth"))
            .bearer_auth(&t)
            .form(FORM)
            .send()
            .await
            .unwrap()
            .status()
    };
    let before = ask().await;
    // Watching is off in this config: only SIGHUP reloads.
    std::fs::write(dir.path().join("policies/main.yaml"), DENY_ALICE).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unchanged = ask().await;
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    let mut after = unchanged;
    for _ in 0..100 {
        after = ask().await;
        if after == 403 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().unwrap();
    assert_eq!((before.as_u16(), unchanged.as_u16(), after.as_u16()), (200, 200, 403));
    assert!(status.success());
}

fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, reqwest::Certificate) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections() {
    let certs = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_root) = self_signed(certs.path(), "a");
    let (b_cert, b_key, b_root) = self_signed(certs.path(), "b");
    let serving_cert = certs.path().join("tls.crt");
    let serving_key = certs.path().join("tls.key");
    std::fs::copy(&a_cert, &serving_cert).unwrap();
    std::fs::copy(&a_key, &serving_key).unwrap();
    let gw =
        Full::start(Setup { tls: Some((serving_cert.clone(), serving_key.clone())), ..Setup::default() })
            .await;
    let url = format!("https://localhost:{}/healthz", gw.addr.port());
    let trusting = |root: &reqwest::Certificate| {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone())
            .resolve("localhost", gw.addr)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let old_client = trusting(&a_root);
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(&b_root).get(&url).send().await.is_err(), "B is not served yet");

    // Rotate: write the new pair (key first, then certificate).
    std::fs::copy(&b_key, &serving_key).unwrap();
    std::fs::copy(&b_cert, &serving_cert).unwrap();
    eventually("the new certificate", || async { trusting(&b_root).get(&url).send().await.is_ok() }).await;
    // The connection opened before the rotation still works.
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let extra = "http:\n  shutdown_delay: 300ms\n  shutdown_grace: 5s\n";
    let gw = Full::start(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let t = token("alice", json!({}));
    let body = "socket_id=1234.5678&channel_name=private-user-alice";
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /pusher/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    // Let the server start reading the request before shutdown begins.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let admin = gw.admin;
    let AdminGateway { stop, task, dir, .. } = gw.0;
    let _ = stop.unwrap().send(());
    // Readiness turns false at once, while the request is still open.
    eventually("not ready", || async {
        let r = client().get(format!("http://{admin}/readyz")).send().await;
        r.is_ok_and(|r| r.status() == 503)
    })
    .await;
    s.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&expected_auth("1234.5678:private-user-alice")), "{answer}");
    drop(s);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run() did not finish")
        .unwrap()
        .unwrap();
    drop(dir);
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once_and_a_stuck_one_at_the_grace() {
    let extra = "http:\n  shutdown_delay: 0s\n  shutdown_grace: 2s\n";
    let gw = Full::start(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let t = token("alice", json!({}));
    let body = "socket_id=1234.5678&channel_name=private-user-alice";
    let head = format!(
        "POST /pusher/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Three idle keep-alive connections, each after one answered request.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        idle.push(s);
    }
    // One whose body never completes.
    let mut stuck = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stuck.write_all(head.as_bytes()).await.unwrap();
    stuck.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let AdminGateway { stop, task, dir, .. } = gw.0;
    let asked = std::time::Instant::now();
    let _ = stop.unwrap().send(());
    for mut s in idle {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
            .await
            .expect("an idle keep-alive connection was not closed within 1 s of shutdown")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without another byte");
    }
    // The stuck request is waited for until the grace ends, then cut.
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stuck.read(&mut buf))
        .await
        .expect("the stuck connection was not closed at the end of the grace")
        .unwrap_or(0);
    let waited = asked.elapsed();
    assert_eq!(n, 0);
    assert!(waited >= Duration::from_millis(1800), "cut after {waited:?}, before the 2 s grace");
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("run() did not finish after the grace")
        .unwrap()
        .unwrap();
    drop(dir);
}

#[tokio::test]
async fn metrics_are_scraped_from_the_admin_listener_only() {
    let gw = Full::start(Setup::default()).await;
    let t = token("alice", json!({}));
    for _ in 0..3 {
        assert_eq!(gw.status(&t, "private-user-alice").await, 200);
    }
    assert_eq!(gw.status(&t, "private-user-bob").await, 403);
    assert_eq!(gw.status("garbage", "private-user-bob").await, 401);
    let resp = client().get(format!("http://{}/metrics", gw.admin)).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let m = resp.text().await.unwrap();
    assert!(m.trim_end().ends_with("# EOF"), "{m}");
    let get = |k: &str| sample(&m, k).unwrap_or_else(|| panic!("no sample `{k}` in:\n{m}"));
    assert_eq!(
        get(r#"channelgate_decisions_total{kind="channel",rule="own",result="allow",reason=""}"#),
        3.0
    );
    assert_eq!(
        get(r#"channelgate_decisions_total{kind="channel",rule="own",result="deny",reason="rule_denied"}"#),
        1.0
    );
    assert_eq!(
        get(r#"channelgate_decisions_total{kind="channel",rule="",result="deny",reason="token_malformed"}"#),
        1.0
    );
    assert_eq!(get(r#"channelgate_http_requests_total{endpoint="auth",status="200"}"#), 3.0);
    assert_eq!(get(r#"channelgate_request_duration_seconds_count{endpoint="auth"}"#), 5.0);
    // An HS256 token is cached on its second use: miss, miss, hit, hit
    // (and the malformed token misses).
    assert_eq!(get("channelgate_token_cache_hits_total"), 2.0);
    assert_eq!(get("channelgate_token_cache_misses_total"), 3.0);
    // The one session cached, weighed by its token (at least the 512
    // bytes every session is counted, at most the default 4 MiB bound).
    assert_eq!(get("channelgate_token_cache_sessions"), 1.0);
    let bytes = get("channelgate_token_cache_bytes");
    assert!((512.0..=4.0 * 1024.0 * 1024.0).contains(&bytes), "{bytes}");
    assert_eq!(get(&format!(r#"channelgate_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))), 1.0);
    assert_eq!(get("channelgate_ready"), 1.0);
    // Every sample line parses: name{labels} value.
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
    // Not on the public listener.
    let public = client().get(format!("http://{}/metrics", gw.addr)).send().await.unwrap();
    assert_eq!(public.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn audit_events_are_json_without_tokens_and_shadow_rules_do_not_decide() {
    let policy = "rules:\n  - name: strict-candidate\n    channel: private-user-{user}\n    allow: user == token.sub && has(token.verified)\n    shadow: true\n  - name: own\n    channel: private-user-{user}\n    allow: user == token.sub\n";
    let gw = Full::start(Setup { policy: policy.into(), ..Setup::default() }).await;
    let t = token("alice", json!({}));
    assert_eq!(gw.status(&t, "private-user-alice").await, 200, "the shadow rule is not enforced");
    let audit_path = gw.dir.path().join("audit.log");
    eventually("an audit line", || async {
        std::fs::read_to_string(&audit_path).is_ok_and(|s| s.lines().count() >= 1)
    })
    .await;
    let text = std::fs::read_to_string(&audit_path).unwrap();
    assert!(!text.contains(&t) && !text.contains(t.split('.').nth(2).unwrap()), "a token in the audit log");
    let event: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(event["event"], "decision");
    assert_eq!(event["kind"], "channel");
    assert_eq!(event["user"], "alice");
    assert_eq!(event["channel"], "private-user-alice");
    assert_eq!(event["rule"], "own");
    assert_eq!(event["decision"], "allow");
    assert!(event["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(event["latency_us"].as_u64().is_some());
    assert_eq!(
        event["shadow"],
        json!([{"rule": "strict-candidate", "decision": "deny", "reason": "rule_denied"}])
    );
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, r#"channelgate_shadow_decisions_total{rule="strict-candidate",result="deny"}"#),
        Some(1.0),
        "{m}"
    );
    gw.stop().await;
}

/// A batch's decisions reach the writer as one message (#16): still one
/// JSON line per channel, in the batch's order, after the lines before it.
#[tokio::test]
async fn a_batch_is_one_audit_line_per_channel() {
    let policy = "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: user == token.sub\n";
    let gw = Full::start(Setup { policy: policy.into(), ..Setup::default() }).await;
    let t = token("alice", json!({}));
    assert_eq!(gw.status(&t, "private-user-alice").await, 200);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("socket_id", "1234.5678"),
            ("channel_name[0]", "private-user-alice"),
            ("channel_name[1]", "private-user-bob"),
            ("channel_name[2]", "private-nothing"),
        ])
        .finish();
    let resp = client()
        .post(format!("http://{}/pusher/auth", gw.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Bearer {t}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let audit_path = gw.dir.path().join("audit.log");
    eventually("four audit lines", || async {
        std::fs::read_to_string(&audit_path).is_ok_and(|s| s.lines().count() >= 4)
    })
    .await;
    let text = std::fs::read_to_string(&audit_path).unwrap();
    assert!(text.ends_with('\n'), "{text}");
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (e["channel"].as_str().unwrap(), e["decision"].as_str().unwrap(), e["reason"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("private-user-alice", "allow", ""),
            ("private-user-alice", "allow", ""),
            ("private-user-bob", "deny", "rule_denied"),
            ("private-nothing", "deny", "no_rule_matched"),
        ]
    );
    // The batch's lines share its request id, time, client and user.
    assert_ne!(events[0]["request_id"], events[1]["request_id"]);
    for member in ["request_id", "ts", "client", "kind"] {
        assert!(events[1..].iter().all(|e| e[member] == events[1][member]), "{member}: {text}");
    }
    assert!(events.iter().all(|e| e["user"] == "alice" && e["event"] == "decision"), "{text}");
    gw.stop().await;
}

fn check_policy(fixture: &str, extra: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint").join(fixture),
    )
    .unwrap();
    let config = write_config(dir.path(), &Setup { policy, extra_config: extra.into(), ..Setup::default() });
    let out = Command::new(env!("CARGO_BIN_EXE_channelgate"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn check_lints_one_fixture_per_finding() {
    for (fixture, extra, code, needle) in [
        ("shadowed.yaml", "", "shadowed", "rule `settings`"),
        ("overlap.yaml", "", "overlap", "`numeric` and `named`"),
        ("presence-size.yaml", "", "presence-size", "max_member_bytes"),
        ("target-reverb.yaml", "target: reverb\n", "target", "pusher:signin"),
    ] {
        let (status, out) = check_policy(fixture, extra);
        assert_eq!(status, 1, "{fixture}: {out}");
        assert!(out.contains(&format!("warning[{code}]")) && out.contains(needle), "{fixture}: {out}");
        assert!(out.contains("main.yaml:") || code == "target", "{fixture}: findings carry file:line: {out}");
    }
    let (status, out) = check_policy("clean.yaml", "target: sockudo\n");
    assert_eq!(status, 0, "{out}");
    let (status, out) = check_policy("target-reverb.yaml", "target: sockudo\n");
    assert_eq!(status, 0, "{out}");
}

/// The value of a counter sample, 0 when absent.
fn counter(exposition: &str, name_and_labels: &str) -> f64 {
    sample(exposition, name_and_labels).unwrap_or(0.0)
}

#[tokio::test]
async fn a_reload_keeps_rate_limits_and_cached_sessions() {
    let gw = Full::start(Setup {
        rate_limit:
            "rate_limit:\n  per_user: 1/m\n  per_user_burst: 2\n  per_ip: 1000/s\n  per_ip_burst: 1000\n"
                .into(),
        ..Setup::default()
    })
    .await;
    let alice = token("alice", json!({}));
    assert_eq!(gw.status(&alice, "private-user-alice").await, 200);
    assert_eq!(gw.status(&alice, "private-user-alice").await, 200);
    assert_eq!(gw.status(&alice, "private-user-alice").await, 429);
    let hits_before = gw.admin_gateway().sessions.stats().0;
    assert!(hits_before >= 1, "the token was cached");

    // Reload with an unchanged config (a policy edit): the limiter and the
    // cache are the same objects.
    std::fs::write(gw.policy_path(), POLICY.replace("user == token.sub", "token.sub == user")).unwrap();
    eventually("a reload", || async {
        counter(&gw.metrics().await, r#"channelgate_reloads_total{result="ok"}"#) >= 1.0
    })
    .await;
    assert_eq!(gw.status(&alice, "private-user-alice").await, 429, "the 429 survived the reload");
    let bob = token("bob", json!({}));
    assert_eq!(gw.status(&bob, "private-user-bob").await, 200);
    assert_eq!(gw.status(&bob, "private-user-bob").await, 200);
    assert!(gw.admin_gateway().sessions.stats().0 > hits_before, "cache hits keep counting from before");
    gw.stop().await;
}

impl Full {
    fn admin_gateway(&self) -> std::sync::Arc<channelgate::app::Gateway> {
        self.runtime.gateway()
    }
}

#[tokio::test]
async fn a_reload_that_moves_the_policies_watches_the_new_folder() {
    let gw = Full::start(Setup::default()).await;
    let t = token("alice", json!({}));
    assert_eq!(gw.status(&t, "private-user-alice").await, 200);
    // Move the policies: a new folder, named in the (watched) config file.
    let moved = gw.dir.path().join("policies-v2");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::write(moved.join("main.yaml"), POLICY).unwrap();
    let config = gw.dir.path().join("channelgate.yaml");
    let text =
        std::fs::read_to_string(&config).unwrap().replace("policies: policies\n", "policies: policies-v2\n");
    std::fs::write(&config, text).unwrap();
    eventually("the reload that moved the policies", || async {
        counter(&gw.metrics().await, r#"channelgate_reloads_total{result="ok"}"#) >= 1.0
    })
    .await;
    // An edit in the new folder is picked up.
    std::fs::write(moved.join("main.yaml"), DENY_ALICE).unwrap();
    eventually("the edit in the new folder", || async { gw.status(&t, "private-user-alice").await == 403 })
        .await;
    gw.stop().await;
}

#[test]
fn a_relative_config_path_is_watched() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    let text = std::fs::read_to_string(&config).unwrap().replace("reload:\n  watch: false\n", "");
    std::fs::write(&config, text).unwrap();
    // As the README runs it: a path relative to the working directory.
    let mut server = Binary::serve_in(dir.path(), "channelgate.yaml");
    let t = token("alice", json!({}));
    let ask = || {
        let body = "socket_id=1234.5678&channel_name=private-user-alice";
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg(format!("http://{}/pusher/auth", server.addr))
            .args(["-H", &format!("Authorization: Bearer {t}"), "-d", body])
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(ask(), "200");
    std::fs::write(dir.path().join("policies/main.yaml"), DENY_ALICE).unwrap();
    let mut last = String::new();
    for _ in 0..100 {
        last = ask();
        if last == "403" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last, "403", "editing a policy with a relative --config did not reload:\n{}", server.logs());
    assert!(server.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// A reload does its file work off the request threads: with the config
/// file replaced by a FIFO that nobody writes yet, the reload waits on its
/// read while requests on the same one-thread runtime are still answered.
/// Run on a thread of its own under a watchdog, because a reload that read
/// on the runtime thread would block that thread (and any timeout on it).
#[test]
fn a_reload_waiting_on_its_files_does_not_stall_requests() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let config = write_config(dir.path(), &Setup::default());
            let text = std::fs::read_to_string(&config).unwrap();
            let app = channelgate::app::App::load(&config).unwrap_or_else(|e| panic!("{e}"));
            let gw = Gateway::serve(dir, app).await;

            std::fs::remove_file(&config).unwrap();
            let status = Command::new("mkfifo").arg(&config).status().expect("mkfifo");
            assert!(status.success(), "mkfifo: {status}");
            let runtime = gw.runtime.clone();
            let reload = tokio::spawn(async move { runtime.reload().await });
            // Let the reload start and block on its read of the FIFO.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!reload.is_finished(), "the reload waits for its config file");

            let alice = token("alice", json!({}));
            let req = request("POST", "/pusher/auth")
                .header("authorization", format!("Bearer {alice}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("socket_id=1234.5678&channel_name=private-user-alice".to_owned())
                .unwrap();
            let answered = tokio::time::timeout(Duration::from_secs(2), gw.call(req)).await;
            let (status, _, body) = answered.expect("a request answered while the reload waits");
            assert_eq!(status, 200, "{body}");

            // The config arrives: the reload finishes and is in force.
            let writer = std::thread::spawn(move || std::fs::write(&config, text).unwrap());
            let reloaded = tokio::time::timeout(Duration::from_secs(10), reload).await;
            reloaded.expect("the reload finishes once its file is readable").unwrap().unwrap();
            writer.join().unwrap();
            gw.stop().await;
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the runtime thread stalled: a reload blocked it (or the test panicked; see above)");
}
