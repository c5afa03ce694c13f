//! Sessions and memberships that live in the app: session introspection
//! (an opaque cookie asked about at the app's endpoint), PostgreSQL and
//! Redis lookups in policies, a decision hook; against a real PostgreSQL,
//! a real redis-server and a loopback stand-in for the app's endpoints,
//! through the gateway's service in process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::support::{APP_KEY, APP_SECRET, Gateway, eventually, expected_auth, request};

#[path = "../../src/membership/testing/servers.rs"]
mod servers;
use servers::{PgServer, RedisServer};

const ORIGIN: &str = "https://app.example.com";

/// The app's endpoints: `GET /api/me` knows the sessions in `sessions`
/// (cookie `app_session`), `POST /decide` lets only viewers of a document
/// in; `down` makes every endpoint answer 503.
struct AppStub {
    url: String,
    sessions: Arc<Mutex<HashMap<String, Value>>>,
    viewers: Arc<Mutex<Vec<(String, String)>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AppStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AppStub {
    async fn start() -> AppStub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sessions = Arc::new(Mutex::new(HashMap::<String, Value>::new()));
        let viewers = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, v, d, c) = (sessions.clone(), viewers.clone(), down.clone(), calls.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (s, v, d, c) = (s.clone(), v.clone(), d.clone(), c.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (s, v, d, c) = (s.clone(), v.clone(), d.clone(), c.clone());
                            async move {
                                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                let (status, answer) = if d.load(std::sync::atomic::Ordering::SeqCst) {
                                    (503, json!({"message": "down"}))
                                } else if parts.uri.path() == "/api/me" {
                                    let cookie = parts
                                        .headers
                                        .get("cookie")
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("");
                                    let id = cookie.strip_prefix("app_session=").unwrap_or("");
                                    match s.lock().unwrap().get(id) {
                                        Some(claims) => (200, claims.clone()),
                                        None => (401, json!({"message": "Unauthenticated."})),
                                    }
                                } else {
                                    let q: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                    let who = (
                                        q["claims"]["sub"].as_str().unwrap_or("").to_owned(),
                                        q["captures"]["doc"].as_str().unwrap_or("").to_owned(),
                                    );
                                    if v.lock().unwrap().contains(&who) {
                                        (
                                            200,
                                            json!({"allow": true, "user_info": {"name": q["claims"]["name"], "email": "x@y"}}),
                                        )
                                    } else {
                                        (200, json!({"allow": false, "reason": "not_a_viewer"}))
                                    }
                                };
                                let resp = http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap();
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        AppStub { url, sessions, viewers, down, calls, task }
    }

    fn session(&self, id: &str, claims: Value) {
        self.sessions.lock().unwrap().insert(id.to_owned(), claims);
    }
}

const POLICY: &str = r#"
rules:
  - name: rooms
    channel: presence-room-{room:[0-9]+}
    query: { source: db, sql: "SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2",
             params: [room, token.sub], ttl: 1s }
    allow: query.found && query.row.role != "banned"
    presence:
      user_id: token.sub
      user_info: { name: token.name, role: query.row.role }
  - name: teams
    channel: private-team-{team:[a-z]+}
    query: { source: kv, sismember: { key: "team:{team}:members", member: "{token.sub}" }, ttl: 30s }
    allow: query.found
  - name: docs
    channel: presence-doc-{doc:[0-9]+}
    hook: { url: "APP/decide", ttl: 30s, timeout: 1s }
    presence:
      user_id: token.sub
      user_info: { name: hook.user_info.name }
  - name: own
    channel: private-user-{user}
    allow: user == token.sub
"#;

/// A gateway whose sessions come from the app (cookie `app_session`),
/// beside the JWT sessions of the other tests.
async fn gateway(
    dir: tempfile::TempDir,
    app: &AppStub,
    pg: &PgServer,
    redis: &RedisServer,
    pool: usize,
) -> Gateway {
    let path = write_config(dir.path(), app, pg, redis, pool);
    let app = channelgate::app::App::load(&path).unwrap_or_else(|e| panic!("config does not load: {e}"));
    Gateway::serve(dir, app).await
}

fn write_config(
    d: &std::path::Path,
    app: &AppStub,
    pg: &PgServer,
    redis: &RedisServer,
    pool: usize,
) -> std::path::PathBuf {
    std::fs::write(d.join("pusher.secret"), APP_SECRET).unwrap();
    std::fs::write(d.join("jwt.secret"), crate::support::JWT_SECRET).unwrap();
    std::fs::write(d.join("db.url"), pg.url("channelgate_ro")).unwrap();
    std::fs::write(d.join("redis.url"), redis.url()).unwrap();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/main.yaml"), POLICY.replace("APP", &app.url)).unwrap();
    let config = format!(
        r#"listen: 127.0.0.1:0
pusher:
  app_id: "1001"
  key: {APP_KEY}
  secret: {{ file: pusher.secret }}
session:
  token_from: [ {{ header: Authorization }} ]
  jwt:
    algorithms: [HS256]
    secret: {{ file: jwt.secret }}
  introspect:
    url: {app}/api/me
    forward: [ {{ cookie: app_session }} ]
    ttl: 30s
    timeout: 1s
sources:
  db: {{ postgres: {{ url: {{ file: db.url }}, pool: {pool}, timeout: 1s }} }}
  kv: {{ redis: {{ url: {{ file: redis.url }}, timeout: 1s }} }}
cors:
  allowed_origins: [{ORIGIN}]
policies: policies
audit:
  enabled: false
reload:
  watch: false
rate_limit:
  enabled: false
"#,
        app = app.url
    );
    let path = d.join("channelgate.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

fn database() -> PgServer {
    let pg = PgServer::start();
    pg.psql(
        "CREATE TABLE room_members (room_id int, user_id text, role text, PRIMARY KEY (room_id, user_id));
         INSERT INTO room_members VALUES (42, 'alice', 'moderator'), (42, 'mallory', 'banned');
         CREATE ROLE channelgate_ro LOGIN;
         GRANT SELECT ON room_members TO channelgate_ro;",
    );
    pg
}

/// POSTs /pusher/auth for `channel` with the session cookie `cookie` (and
/// an allowed Origin unless `origin` is None).
async fn auth(gw: &Gateway, cookie: Option<&str>, origin: Option<&str>, channel: &str) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("socket_id", "1234.5678"), ("channel_name", channel)])
        .finish();
    let mut req = request("POST", "/pusher/auth").header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("theme=dark; app_session={c}"));
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let (status, _, body) = gw.call(req.body(body).unwrap()).await;
    (status, body)
}

async fn reason(gw: &Gateway, cookie: &str, channel: &str) -> (u16, String) {
    let (status, body) = auth(gw, Some(cookie), Some(ORIGIN), channel).await;
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn the_app_session_postgres_redis_and_the_hook_decide() {
    let (app, pg, redis) = (AppStub::start().await, database(), RedisServer::start());
    redis.cli(&["SADD", "team:blue:members", "alice"]);
    app.session("s-alice", json!({"sub": "alice", "name": "Alice"}));
    app.session("s-bob", json!({"sub": "bob", "name": "Bob"}));
    app.session("s-mallory", json!({"sub": "mallory", "name": "Mallory"}));
    app.session("s-evil", json!({"sub": "alice' OR '1'='1", "name": "Evil"}));
    app.viewers.lock().unwrap().push(("alice".into(), "7".into()));
    let gw = gateway(tempfile::tempdir().unwrap(), &app, &pg, &redis, 4).await;

    // Who: no cookie, a cookie without an allowed Origin, a session the app does not know.
    assert_eq!(auth(&gw, None, Some(ORIGIN), "presence-room-42").await.1["reason"], "token_missing");
    let (status, body) = auth(&gw, Some("s-alice"), None, "presence-room-42").await;
    assert_eq!((status, body["reason"].as_str()), (403, Some("csrf")));
    assert_eq!(reason(&gw, "s-unknown", "presence-room-42").await, (401, "session_rejected".into()));

    // PostgreSQL: a moderator joins with her role in the member data, signed.
    let (status, body) = auth(&gw, Some("s-alice"), Some(ORIGIN), "presence-room-42").await;
    assert_eq!(status, 200, "{body}");
    let channel_data = body["channel_data"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(channel_data).unwrap(),
        json!({"user_id": "alice", "user_info": {"name": "Alice", "role": "moderator"}})
    );
    assert_eq!(body["auth"], expected_auth(&format!("1234.5678:presence-room-42:{channel_data}")));
    assert_eq!(reason(&gw, "s-mallory", "presence-room-42").await, (403, "rule_denied".into()));
    assert_eq!(reason(&gw, "s-bob", "presence-room-42").await, (403, "rule_denied".into()));
    // A value that would change the query if it were its text finds nothing.
    assert_eq!(reason(&gw, "s-evil", "presence-room-42").await, (403, "rule_denied".into()));

    // Redis.
    assert_eq!(auth(&gw, Some("s-alice"), Some(ORIGIN), "private-team-blue").await.0, 200);
    assert_eq!(reason(&gw, "s-bob", "private-team-blue").await, (403, "rule_denied".into()));

    // The hook: the app decides, and only the rule's fields of its user_info are signed.
    let (status, body) = auth(&gw, Some("s-alice"), Some(ORIGIN), "presence-doc-7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(body["channel_data"].as_str().unwrap()).unwrap(),
        json!({"user_id": "alice", "user_info": {"name": "Alice"}})
    );
    assert_eq!(reason(&gw, "s-bob", "presence-doc-7").await, (403, "hook_denied".into()));

    // Rules without lookups work with app sessions too.
    assert_eq!(auth(&gw, Some("s-bob"), Some(ORIGIN), "private-user-bob").await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn answers_are_cached_and_a_membership_change_is_seen_after_the_ttl() {
    let (app, pg, redis) = (AppStub::start().await, database(), RedisServer::start());
    app.session("s-alice", json!({"sub": "alice", "name": "Alice"}));
    let gw = gateway(tempfile::tempdir().unwrap(), &app, &pg, &redis, 4).await;
    for _ in 0..5 {
        assert_eq!(auth(&gw, Some("s-alice"), Some(ORIGIN), "presence-room-42").await.0, 200);
    }
    assert_eq!(app.calls.load(std::sync::atomic::Ordering::SeqCst), 1, "one introspection for five requests");
    let (_, _, metrics) = crate::support::call(
        &gw.runtime,
        channelgate::http::Listener::Admin,
        request("GET", "/metrics").body(String::new()).unwrap(),
    )
    .await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    for line in [
        r#"lookup_answers_total{kind="session",rule="",result="hit"} 4"#,
        r#"lookup_answers_total{kind="session",rule="",result="miss"} 1"#,
        r#"lookup_answers_total{kind="query",rule="rooms",result="hit"} 4"#,
        r#"lookup_answers_total{kind="query",rule="rooms",result="miss"} 1"#,
        r#"lookup_breaker_open{kind="query",rule="rooms"} 0"#,
        r#"lookup_pool_exhausted_total{source="db"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    // The membership ends in the database: refused once the 1 s TTL has passed.
    pg.psql("DELETE FROM room_members WHERE user_id = 'alice'");
    let started = Instant::now();
    eventually("alice is refused after the lookup's TTL", || async {
        reason(&gw, "s-alice", "presence-room-42").await == (403, "rule_denied".into())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop().await;
}

#[tokio::test]
async fn failures_fail_closed_with_503_and_sign_nothing() {
    let (app, pg, redis) = (AppStub::start().await, database(), RedisServer::start());
    app.session("s-alice", json!({"sub": "alice", "name": "Alice"}));
    app.session("s-bob", json!({"sub": "bob", "name": "Bob"}));
    let gw = gateway(tempfile::tempdir().unwrap(), &app, &pg, &redis, 1).await;
    assert_eq!(auth(&gw, Some("s-alice"), Some(ORIGIN), "private-user-alice").await.0, 200);

    // A table locked by another session: the lookup gives up at its 1 s
    // timeout (503), while a rule without the database answers at once.
    let port = pg.port;
    let locker = std::thread::spawn(move || {
        std::process::Command::new(servers::pg_bin().join("psql"))
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "channelgate",
                "-d",
                "postgres",
            ])
            .args([
                "-c",
                "BEGIN; LOCK TABLE room_members IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;",
            ])
            .output()
            .unwrap()
    });
    eventually("the table is locked", || async {
        std::process::Command::new(servers::pg_bin().join("psql"))
            .args(["-X", "-tA", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "channelgate", "-d", "postgres"])
            .args(["-c", "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'room_members'::regclass"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
            .unwrap_or(false)
    })
    .await;
    let slow = async {
        let started = Instant::now();
        let got = auth(&gw, Some("s-alice"), Some(ORIGIN), "presence-room-42").await;
        (got, started.elapsed())
    };
    let quick = async {
        let started = Instant::now();
        let got = auth(&gw, Some("s-bob"), Some(ORIGIN), "private-user-bob").await;
        (got, started.elapsed())
    };
    let (((status, body), slow_took), ((quick_status, _), quick_took)) = tokio::join!(slow, quick);
    assert_eq!((status, body["reason"].as_str()), (503, Some("lookup_unavailable")), "{body}");
    assert!(body.get("auth").is_none() && body.get("channel_data").is_none());
    assert!(slow_took >= Duration::from_millis(900) && slow_took < Duration::from_secs(3), "{slow_took:?}");
    assert_eq!(quick_status, 200);
    assert!(quick_took < Duration::from_millis(500), "an unrelated rule waited {quick_took:?}");
    locker.join().unwrap();

    // The database stops: 503, never a signature.
    drop(pg);
    let (status, body) = auth(&gw, Some("s-bob"), Some(ORIGIN), "presence-room-42").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("lookup_unavailable")), "{body}");

    // The hook's app is down: 503 hook_unavailable; the session endpoint is
    // down: new sessions get 503 session_unavailable, cached ones go on.
    app.down.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reason(&gw, "s-alice", "presence-doc-7").await, (503, "hook_unavailable".into()));
    app.session("s-carol", json!({"sub": "carol"}));
    assert_eq!(reason(&gw, "s-carol", "private-user-carol").await, (503, "session_unavailable".into()));
    assert_eq!(auth(&gw, Some("s-alice"), Some(ORIGIN), "private-user-alice").await.0, 200);
    // Redis stops: 503 for its rule.
    drop(redis);
    assert_eq!(reason(&gw, "s-alice", "private-team-blue").await, (503, "lookup_unavailable".into()));
    gw.stop().await;
}

/// A reload (here a policy edit) keeps what the lookups hold: the session
/// endpoint's, the Redis rule's and the hook's cached answers, their
/// counters, the pool. With the app and Redis down after the reload,
/// answers cached before it still serve; rebuilt objects would have
/// forgotten them and answered 503.
#[tokio::test]
async fn a_reload_keeps_cached_answers_counters_and_pools() {
    let (app, pg, redis) = (AppStub::start().await, database(), RedisServer::start());
    redis.cli(&["SADD", "team:blue:members", "alice"]);
    app.session("s-alice", json!({"sub": "alice", "name": "Alice"}));
    app.viewers.lock().unwrap().push(("alice".into(), "7".into()));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policies/main.yaml");
    let gw = gateway(dir, &app, &pg, &redis, 4).await;
    for channel in ["private-team-blue", "presence-doc-7", "presence-room-42"] {
        assert_eq!(auth(&gw, Some("s-alice"), Some(ORIGIN), channel).await.0, 200, "{channel}");
    }
    let calls = app.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 2, "one introspection and one hook call");
    let open = |m: &str| {
        m.lines()
            .find(|l| l.starts_with(r#"channelgate_lookup_pool_connections{source="db",state="open"}"#))
            .map(str::to_owned)
    };
    let opened = open(&metrics(&gw).await).expect("the pool's gauge");

    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("allow: user == token.sub", "allow: token.sub == user")).unwrap();
    gw.runtime.reload().await.unwrap_or_else(|e| panic!("reload: {e}"));

    app.down.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(redis);
    for channel in ["private-team-blue", "presence-doc-7", "private-user-alice"] {
        let (status, body) = auth(&gw, Some("s-alice"), Some(ORIGIN), channel).await;
        assert_eq!(status, 200, "{channel} after the reload: {body}");
    }
    assert_eq!(app.calls.load(std::sync::atomic::Ordering::SeqCst), calls, "nothing asked the app again");
    let m = metrics(&gw).await;
    for line in [
        r#"lookup_answers_total{kind="session",rule="",result="miss"} 1"#,
        r#"lookup_answers_total{kind="query",rule="teams",result="miss"} 1"#,
        r#"lookup_answers_total{kind="query",rule="teams",result="hit"} 1"#,
        r#"lookup_answers_total{kind="hook",rule="docs",result="hit"} 1"#,
    ] {
        assert!(m.contains(line), "{line} not in:\n{m}");
    }
    assert_eq!(open(&m), Some(opened), "the same pool");
    gw.stop().await;
}

async fn metrics(gw: &Gateway) -> String {
    let (_, _, m) = crate::support::call(
        &gw.runtime,
        channelgate::http::Listener::Admin,
        request("GET", "/metrics").body(String::new()).unwrap(),
    )
    .await;
    m.as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_query_that_could_write_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.yaml"),
        "rules:\n  - name: r\n    channel: private-x-{x}\n    query: { source: db, sql: \"DELETE FROM room_members\" }\n    allow: query.found\n",
    )
    .unwrap();
    let errors = channelgate::policy::Policy::load(&dir.path().join("policies"), 1024).unwrap_err();
    let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("not a SELECT") && text.contains("p.yaml:4"), "{text}");
}

/// `channelgate explain` for alice on presence-room-42 (the binary, off the runtime's thread).
async fn explain(config: &std::path::Path, claims: &std::path::Path) -> std::process::Output {
    let (config, claims) = (config.to_owned(), claims.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_channelgate"))
            .args(["explain", "-c"])
            .arg(&config)
            .arg("--claims")
            .arg(&claims)
            .args(["--channel", "presence-room-42"])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn explain_shows_each_lookup_its_parameters_cache_and_result() {
    let (app, pg, redis) = (AppStub::start().await, database(), RedisServer::start());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &app, &pg, &redis, 2);
    let claims = config.with_file_name("claims.json");
    std::fs::write(&claims, r#"{"sub": "alice", "name": "Alice"}"#).unwrap();
    let out = explain(&config, &claims).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(r#"query:    query of rule rooms (room = "42", token.sub = "alice"), cache miss: 1 row(s): [{"role":"moderator"}]"#),
        "{text}"
    );
    assert!(text.contains("eval:     allow = true") && text.contains("decision: ALLOW"), "{text}");
    // The database is gone: explain says so, and what the request would get.
    drop(pg);
    let out = explain(&config, &claims).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cache -: failed:")
            && text.contains("lookup_unavailable")
            && text.contains("would get 503"),
        "{text}"
    );
}

#[test]
fn the_examples_check_and_their_policy_tests_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in ["examples/memberships", "examples/laravel-session"] {
        let dir = root.join(example);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_channelgate"))
            .arg("check")
            .arg("-c")
            .arg(dir.join("channelgate.yaml"))
            .env("PUSHER_APP_SECRET", "an-app-secret-0123456789abcdef-0123")
            .env("DATABASE_URL", "postgres://channelgate_ro@127.0.0.1:5432/app")
            .env("REDIS_URL", "redis://127.0.0.1:6379/")
            .env("HOOK_AUTHORIZATION", "Bearer a-hook-token")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_channelgate"))
            .arg("test")
            .arg(dir.join("policies"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(" passed, 0 failed"), "{example}: {text}");
    }
}
