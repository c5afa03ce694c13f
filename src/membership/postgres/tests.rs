#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::membership::lookup::{Command, Lookup, Params};
use crate::membership::memo::{CacheStatus, MemoSettings};
use crate::membership::testing::PgServer;
use crate::policy::readonly::prove;

/// A server with the schema of the examples and a role that may only read.
fn server() -> PgServer {
    let pg = PgServer::start();
    pg.psql(
        "CREATE TABLE room_members (room_id int, user_id text, role text, PRIMARY KEY (room_id, user_id));
         INSERT INTO room_members VALUES (42, 'alice', 'member'), (42, 'mallory', 'banned'), (7, 'bob', 'owner');
         CREATE TYPE mood AS ENUM ('happy', 'sad');
         CREATE DOMAIN handle AS text;
         CREATE TABLE kinds (b bool, i2 smallint, i4 int, i8 bigint, f4 real, f8 float8, t text, v varchar(9),
           c char(3), j json, jb jsonb, u uuid, m mood, h handle, n numeric, nul text);
         INSERT INTO kinds VALUES (true, 2, 4, 9007199254740993, 1.5, 2.25, 'text', 'var', 'ab',
           '{\"a\": [1]}', '{\"b\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'sad', 'al', 3.14, NULL);
         CREATE SEQUENCE s;
         CREATE ROLE channelgate_ro LOGIN;
         GRANT SELECT ON room_members, kinds TO channelgate_ro;
         GRANT USAGE ON SEQUENCE s TO channelgate_ro;",
    );
    pg
}

fn source(pg: &PgServer, tune: impl FnOnce(&mut PostgresSettings)) -> Postgres {
    let mut s = PostgresSettings::new(Secret::new(pg.url("channelgate_ro").into_bytes()));
    s.timeout = Duration::from_secs(2);
    tune(&mut s);
    Postgres::new(&s).unwrap()
}

fn params(values: &[Option<&str>]) -> Params {
    values.iter().map(|v| v.map(Into::into)).collect()
}

const ROLE: &str = "SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2";

#[tokio::test]
async fn values_are_bound_parameters_read_as_the_columns_types() {
    let pg = server();
    let db = source(&pg, |_| {});
    let sql = prove(ROLE).unwrap();
    let now = Instant::now();
    let rows = db.query(&sql, &params(&[Some("42"), Some("alice")]), now).await.unwrap();
    assert_eq!(rows.rows, vec![json!({"role": "member"}).as_object().unwrap().clone()]);
    assert!(rows.found() && !rows.truncated);
    assert!(!db.query(&sql, &params(&[Some("42"), Some("bob")]), now).await.unwrap().found());
    // A value that would change the query if it were text of it.
    for evil in ["alice' OR '1'='1", "alice'; DROP TABLE room_members; --", "$2"] {
        assert!(!db.query(&sql, &params(&[Some("42"), Some(evil)]), now).await.unwrap().found(), "{evil}");
    }
    // NULL matches nothing.
    assert!(!db.query(&sql, &params(&[Some("42"), None]), now).await.unwrap().found());
    // A value the column's type refuses denies; the source stays healthy.
    for bad in ["forty-two", "1 OR 1=1", "99999999999"] {
        let err = db.query(&sql, &params(&[Some(bad), Some("alice")]), now).await.unwrap_err();
        assert!(matches!(err, LookupError::BadParameter(_)), "{bad}: {err:?}");
        assert!(!err.to_string().contains(bad), "the value is not in the message: {err}");
    }
    assert_eq!(db.breaker().stats().0, 0);
    pg.psql("SELECT count(*) FROM room_members");
}

#[tokio::test]
async fn columns_become_json_values_and_unread_types_name_the_cast() {
    let pg = server();
    let db = source(&pg, |_| {});
    let now = Instant::now();
    let sql = prove("SELECT b, i2, i4, i8, f4, f8, t, v, c, j, jb, u, m, h, nul FROM kinds").unwrap();
    let rows = db.query(&sql, &[], now).await.unwrap();
    assert_eq!(
        serde_json::Value::Object(rows.first().unwrap().clone()),
        json!({"b": true, "i2": 2, "i4": 4, "i8": 9007199254740993_i64, "f4": 1.5, "f8": 2.25, "t": "text",
               "v": "var", "c": "ab ", "j": {"a": [1]}, "jb": {"b": null},
               "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "m": "sad", "h": "al", "nul": null})
    );
    let err = db.query(&prove("SELECT n FROM kinds").unwrap(), &[], now).await.unwrap_err();
    assert!(err.to_string().contains("`n::text`"), "{err}");
    let rows = db.query(&prove("SELECT n::text AS n FROM kinds").unwrap(), &[], now).await.unwrap();
    assert_eq!(rows.first().unwrap()["n"], "3.14");
}

#[tokio::test]
async fn a_huge_result_is_cut() {
    let pg = server();
    let now = Instant::now();
    let db = source(&pg, |_| {});
    let rows =
        db.query(&prove("SELECT x FROM generate_series(1, 100000) AS x").unwrap(), &[], now).await.unwrap();
    assert_eq!((rows.rows.len(), rows.truncated), (100, true));
    assert_eq!(rows.rows[99]["x"], 100);
    let small = source(&pg, |s| s.limits = Limits { max_rows: 1000, max_bytes: 10_000 });
    let wide = prove("SELECT repeat('x', 1000) AS t FROM generate_series(1, 50)").unwrap_err();
    assert!(wide.0.contains("`repeat`"), "repeat is not on the list: {wide}");
    let wide = prove("SELECT lpad('', 1000, 'x') AS t FROM generate_series(1, 50)").unwrap();
    let rows = small.query(&wide, &[], now).await.unwrap();
    assert!(rows.truncated && rows.rows.len() < 10, "{}", rows.rows.len());
    // The connection is clean after a cut: the next query works.
    assert_eq!(small.query(&prove("SELECT 1 AS one").unwrap(), &[], now).await.unwrap().rows.len(), 1);
}

#[tokio::test]
async fn connections_are_read_only_and_bounded_in_time_behind_the_proof() {
    let pg = server();
    let db = source(&pg, |s| s.timeout = Duration::from_millis(500));
    let now = Instant::now();
    // The proof refuses these; if one slipped through, the connection would.
    let err = db.query(&ReadOnlySql::unproven("SELECT nextval('s')", 0), &[], now).await.unwrap_err();
    assert!(err.to_string().contains("25006"), "read-only transaction: {err}");
    let started = std::time::Instant::now();
    let err = db.query(&ReadOnlySql::unproven("SELECT pg_sleep(5)::text", 0), &[], now).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::Timeout, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The pool is usable afterwards.
    let sql = prove(ROLE).unwrap();
    assert!(db.query(&sql, &params(&[Some("7"), Some("bob")]), now).await.unwrap().found());
}

#[tokio::test]
async fn an_exhausted_pool_fails_closed_within_the_timeout() {
    let pg = server();
    let db = source(&pg, |s| {
        s.pool = 1;
        s.timeout = Duration::from_millis(300);
    });
    let held = db.pool.get().await.unwrap();
    let started = std::time::Instant::now();
    let err = db.query(&prove("SELECT 1 AS one").unwrap(), &[], Instant::now()).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::PoolExhausted, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(db.pool_stats().2, 1);
    assert_eq!(db.breaker().stats().0, 0, "an exhausted pool does not open the breaker");
    drop(held);
    assert!(db.query(&prove("SELECT 1 AS one").unwrap(), &[], Instant::now()).await.is_ok());
}

#[tokio::test]
async fn a_database_that_is_down_fails_closed_and_opens_the_breaker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut s =
        PostgresSettings::new(Secret::new(format!("postgres://ro:pw@127.0.0.1:{port}/app").into_bytes()));
    s.breaker = BreakerSettings { failures: 2, open_for: Duration::from_secs(5) };
    let db = Postgres::new(&s).unwrap();
    let sql = prove("SELECT 1 AS one").unwrap();
    let now = Instant::now();
    for _ in 0..2 {
        let err = db.query(&sql, &[], now).await.unwrap_err();
        assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::Unreachable, .. }), "{err:?}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
    let err = db.query(&sql, &[], now).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::BreakerOpen, .. }), "{err:?}");
}

#[test]
fn a_url_is_checked_without_echoing_it() {
    for (url, expect) in [
        ("postgres://u:hunter2@127.0.0.1:notaport/db", "not valid"),
        ("host=127.0.0.1 password=hunter2 sslmode=require", "sslmode=require"),
    ] {
        let err = Postgres::new(&PostgresSettings::new(Secret::new(url.as_bytes().to_vec()))).unwrap_err();
        assert!(err.0.contains(expect) && !err.0.contains("hunter2"), "{url}: {err}");
    }
}

#[tokio::test]
async fn a_lookup_caches_per_parameter_tuple_until_its_ttl() {
    let pg = server();
    let db = Arc::new(source(&pg, |_| {}));
    let lookup = Lookup::new(
        Command::Sql { source: db, sql: prove(ROLE).unwrap() },
        Duration::from_secs(30),
        MemoSettings::default(),
    );
    let t = Instant::now();
    let alice = params(&[Some("42"), Some("alice")]);
    let (rows, status) = lookup.run(&alice, t).await.unwrap();
    assert!(rows.rows.found() && status == CacheStatus::Miss);
    // The membership ends in the database: the cached answer holds until the TTL.
    pg.psql("DELETE FROM room_members WHERE user_id = 'alice'");
    let (rows, status) = lookup.run(&alice, t + Duration::from_secs(29)).await.unwrap();
    assert!(rows.rows.found() && status == CacheStatus::Hit);
    let (rows, status) = lookup.run(&alice, t + Duration::from_secs(30)).await.unwrap();
    assert!(!rows.rows.found() && status == CacheStatus::Miss);
    // Another tuple is another entry.
    let (rows, status) = lookup.run(&params(&[Some("7"), Some("bob")]), t).await.unwrap();
    assert!(rows.rows.found() && status == CacheStatus::Miss);
}

#[tokio::test]
async fn a_slow_source_does_not_hold_up_another() {
    let pg = server();
    let slow = source(&pg, |s| {
        s.pool = 1;
        s.timeout = Duration::from_secs(3);
    });
    let fast = source(&pg, |_| {});
    let now = Instant::now();
    let sleeping = ReadOnlySql::unproven("SELECT pg_sleep(2)::text AS slept", 0);
    let quick = prove(ROLE).unwrap();
    let alice = params(&[Some("42"), Some("alice")]);
    let started = std::time::Instant::now();
    tokio::select! {
        _ = slow.query(&sleeping, &[], now) => panic!("the slow query finished first"),
        rows = fast.query(&quick, &alice, now) => assert!(rows.unwrap().found()),
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}
