#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::membership::lookup::{Command, Lookup, Params};
use crate::membership::memo::{CacheStatus, MemoSettings};
use crate::membership::testing::RedisServer;
use crate::policy::lookup::{QueryCommand, Template};

/// Placeholders `room` → 0, `token.sub` → 1.
fn names(name: &str) -> Result<usize, String> {
    match name {
        "room" => Ok(0),
        "token.sub" => Ok(1),
        other => Err(format!("unknown `{other}`")),
    }
}

fn template(text: &str) -> Template {
    Template::parse(text, names).unwrap()
}

fn params(room: &str, sub: &str) -> Params {
    vec![Some(room.into()), Some(sub.into())].into_boxed_slice()
}

fn source(server: &RedisServer) -> Redis {
    let mut s = RedisSettings::new(Secret::new(server.url().into_bytes()));
    s.timeout = Duration::from_millis(500);
    Redis::new(&s).unwrap()
}

fn sismember() -> QueryCommand {
    QueryCommand::SisMember { key: template("room:{room}:members"), member: template("{token.sub}") }
}

#[test]
fn templates_bind_placeholders_and_keep_literal_braces() {
    let t = template("{{tenant}}:room:{room}:{ token.sub }");
    assert_eq!(render(&t, &params("42", "alice"), true).unwrap(), "{tenant}:room:42:alice");
    for (bad, expect) in [
        ("room:{room", "without its `}`"),
        ("room}", "without its `{`"),
        ("room:{}", "empty placeholder"),
        ("room:{nope}", "unknown `nope`"),
        ("", "empty template"),
    ] {
        let err = Template::parse(bad, names).unwrap_err();
        assert!(err.contains(expect), "{bad:?}: {err}");
    }
}

#[test]
fn a_value_cannot_move_a_key_to_another_record() {
    let key = template("user:{token.sub}:rooms");
    for evil in ["1:admins", "a b", "*", "x{y}", "", "new\nline", "a\\b"] {
        let err = render(&key, &params("1", evil), true).unwrap_err();
        assert!(matches!(err, LookupError::BadParameter(_)), "{evil:?}");
    }
    // A member or field is one whole argument: any text.
    assert_eq!(render(&template("{token.sub}"), &params("1", "a:b c"), false).unwrap(), "a:b c");
    // A missing value denies.
    let missing: Params = vec![Some("1".into()), None].into_boxed_slice();
    assert!(matches!(render(&key, &missing, true), Err(LookupError::BadParameter(_))));
}

#[tokio::test]
async fn sismember_get_and_hget_against_a_real_server() {
    let server = RedisServer::start();
    server.cli(&["SADD", "room:42:members", "alice", "a:b c"]);
    server.cli(&["SET", "user:alice:role", "moderator"]);
    server.cli(&["HSET", "room:42:roles", "alice", "owner"]);
    let redis = source(&server);
    let now = Instant::now();
    let rows = redis.run(&sismember(), &params("42", "alice"), now).await.unwrap();
    assert_eq!(rows.first().unwrap()["member"], true);
    assert!(redis.run(&sismember(), &params("42", "bob"), now).await.unwrap().rows.is_empty());
    assert!(redis.run(&sismember(), &params("42", "a:b c"), now).await.unwrap().found());
    let get = QueryCommand::Get { key: template("user:{token.sub}:role") };
    assert_eq!(
        redis.run(&get, &params("", "alice"), now).await.unwrap().first().unwrap()["value"],
        "moderator"
    );
    assert!(!redis.run(&get, &params("", "bob"), now).await.unwrap().found());
    let hget = QueryCommand::HGet { key: template("room:{room}:roles"), field: template("{token.sub}") };
    assert_eq!(
        redis.run(&hget, &params("42", "alice"), now).await.unwrap().first().unwrap()["value"],
        "owner"
    );
    assert!(!redis.run(&hget, &params("7", "alice"), now).await.unwrap().found());
    // A key of another type is the source's fault, named by Redis's code.
    server.cli(&["SADD", "user:carol:role", "x"]);
    let err = redis.run(&get, &params("", "carol"), now).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
}

#[tokio::test]
async fn a_huge_value_is_cut() {
    let server = RedisServer::start();
    server.cli(&["SET", "user:alice:role", &"é".repeat(20_000)]);
    let mut s = RedisSettings::new(Secret::new(server.url().into_bytes()));
    s.limits = Limits { max_rows: 1, max_bytes: 1001 };
    let redis = Redis::new(&s).unwrap();
    let get = QueryCommand::Get { key: template("user:{token.sub}:role") };
    let rows = redis.run(&get, &params("", "alice"), Instant::now()).await.unwrap();
    assert!(rows.truncated);
    assert_eq!(rows.first().unwrap()["value"].as_str().unwrap().len(), 1000, "cut at a character boundary");
}

#[tokio::test]
async fn a_paused_or_missing_server_fails_closed_in_time() {
    let server = RedisServer::start();
    let redis = source(&server);
    let now = Instant::now();
    assert!(!redis.run(&sismember(), &params("1", "alice"), now).await.unwrap().found());
    // CLIENT PAUSE holds every client's commands: the lookup times out.
    server.cli(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let started = std::time::Instant::now();
    let err = redis.run(&sismember(), &params("1", "alice"), now).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::Timeout, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.cli(&["CLIENT", "UNPAUSE"]);
    drop(server);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut s = RedisSettings::new(Secret::new(format!("redis://:hunter2@127.0.0.1:{port}/").into_bytes()));
    s.breaker = BreakerSettings { failures: 2, open_for: Duration::from_secs(5) };
    let down = Redis::new(&s).unwrap();
    for _ in 0..2 {
        let err = down.run(&sismember(), &params("1", "alice"), now).await.unwrap_err();
        assert!(err.is_fault() && !err.to_string().contains("hunter2"), "{err}");
    }
    let err = down.run(&sismember(), &params("1", "alice"), now).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::BreakerOpen, .. }), "{err:?}");
}

#[tokio::test]
async fn a_lookup_sees_a_membership_change_after_its_ttl() {
    let server = RedisServer::start();
    server.cli(&["SADD", "room:42:members", "alice"]);
    let lookup = Lookup::new(
        Command::Redis { source: Arc::new(source(&server)), command: sismember() },
        Duration::from_secs(5),
        MemoSettings::default(),
    );
    let t = Instant::now();
    let alice = params("42", "alice");
    assert!(lookup.run(&alice, t).await.unwrap().0.rows.found());
    server.cli(&["SREM", "room:42:members", "alice"]);
    let (rows, status) = lookup.run(&alice, t + Duration::from_secs(4)).await.unwrap();
    assert!(rows.rows.found() && status == CacheStatus::Hit);
    let (rows, status) = lookup.run(&alice, t + Duration::from_secs(5)).await.unwrap();
    assert!(!rows.rows.found() && status == CacheStatus::Miss);
}
