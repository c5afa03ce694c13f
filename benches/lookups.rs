//! What a policy lookup costs a request (criterion, and a latency sample):
//!
//! - `lookup/plain_rule`: one request through `channelgate::http::handle`
//!   (in process, audit off) for a rule without a lookup;
//! - `lookup/cached_query`: the same request for a rule whose PostgreSQL
//!   query result is in its cache (the difference is what a cached lookup
//!   adds: binding the parameters, the cache, the `query` variable);
//! - then, outside criterion, 2,000 requests that each miss the cache (a
//!   distinct room per request) against a real PostgreSQL on loopback:
//!   their p50/p99 latency beside the plain rule's.
//!
//! `cargo bench --bench lookups`. Needs PostgreSQL's programs (Debian's
//! `postgresql`); the server runs on a free loopback port in a temporary
//! directory and is stopped by PID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs, unreachable_pub)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::Criterion;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use channelgate::app::App;

#[path = "../src/membership/testing/servers.rs"]
mod servers;

const HS_SECRET: &[u8] = b"benchmark-jwt-secret-0123456789abcdef";

const POLICY: &str = r#"
rules:
  - name: plain
    channel: private-plain-{room:[0-9]+}
    allow: room == "42" && token.sub == "alice"
  - name: members
    channel: private-room-{room:[0-9]+}
    query: { source: db, sql: "SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2",
             params: [room, token.sub], ttl: 1h }
    allow: query.found && query.row.role != "banned"
"#;

struct Bench {
    runtime: std::sync::Arc<channelgate::app::Runtime>,
    rt: tokio::runtime::Runtime,
    token: String,
    _pg: servers::PgServer,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start() -> Bench {
        let pg = servers::PgServer::start();
        pg.psql(
            "CREATE TABLE room_members (room_id int, user_id text, role text, PRIMARY KEY (room_id, user_id));
             INSERT INTO room_members SELECT r, 'alice', 'member' FROM generate_series(1, 5000) AS r;
             CREATE ROLE channelgate_ro LOGIN; GRANT SELECT ON room_members TO channelgate_ro;",
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("policies")).unwrap();
        std::fs::write(d.join("policies/bench.yaml"), POLICY).unwrap();
        std::fs::write(d.join("pusher"), "0123456789abcdef0123456789abcdef").unwrap();
        std::fs::write(d.join("jwt"), HS_SECRET).unwrap();
        std::fs::write(d.join("db"), pg.url("channelgate_ro")).unwrap();
        std::fs::write(
            d.join("channelgate.yaml"),
            "listen: 127.0.0.1:0\npusher: { app_id: \"1\", key: bench-key, secret: { file: pusher } }\n\
             session: { jwt: { algorithms: [HS256], secret: { file: jwt } } }\n\
             sources: { db: { postgres: { url: { file: db }, pool: 4, timeout: 1s } } }\n\
             policies: policies\naudit: { enabled: false }\nreload: { watch: false }\nrate_limit: { enabled: false }\n",
        )
        .unwrap();
        let app = App::load(&d.join("channelgate.yaml")).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"sub": "alice", "name": "Alice", "iat": now, "exp": now + 3600});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(HS_SECRET).unwrap(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Bench { runtime: app.runtime.clone(), rt, token, _pg: pg, _dir: dir }
    }

    fn request(&self, channel: &str) -> u16 {
        let body = Bytes::from(format!("socket_id=123456.7654321&channel_name={channel}"));
        let req = http::Request::post("/pusher/auth")
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", body.len())
            .body(Full::new(body))
            .unwrap();
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let resp = self.rt.block_on(channelgate::http::handle(self.runtime.clone(), peer, req)).unwrap();
        assert_eq!(resp.status(), 200, "{channel}");
        resp.status().as_u16()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let bench = Bench::start();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("lookup");
        g.bench_function("plain_rule", |b| b.iter(|| black_box(bench.request("private-plain-42"))));
        bench.request("private-room-42");
        g.bench_function("cached_query", |b| b.iter(|| black_box(bench.request("private-room-42"))));
        g.finish();
    }
    c.final_summary();

    // Uncached: each request a new parameter tuple, so each asks PostgreSQL.
    let sample = |channel: &dyn Fn(usize) -> String| {
        let mut took: Vec<Duration> = (1..=2000)
            .map(|i| {
                let started = Instant::now();
                black_box(bench.request(&channel(i)));
                started.elapsed()
            })
            .collect();
        took.sort();
        took
    };
    let plain = sample(&|_| "private-plain-42".to_owned());
    let uncached = sample(&|i| format!("private-room-{}", 2000 + i));
    for (name, s) in [("plain rule", &plain), ("uncached query (PostgreSQL on loopback)", &uncached)] {
        println!(
            "lookup/{name}: p50 {:?}, p99 {:?}, max {:?} over {} requests",
            percentile(s, 0.5),
            percentile(s, 0.99),
            s[s.len() - 1],
            s.len()
        );
    }
}
