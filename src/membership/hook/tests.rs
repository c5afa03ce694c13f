#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::membership::breaker::BreakerState;
use crate::membership::testing::{App, client, respond};

/// The app: allows members of room 42 (the `room` capture) whose claims say
/// `"role": "member"`, with user_info; denies others with a reason. While
/// `status` is not 0, it answers that status instead.
async fn app(status: Arc<AtomicU16>) -> App {
    App::start(move |r| {
        let status = status.clone();
        async move {
            let forced = status.load(Ordering::SeqCst);
            if forced != 0 {
                return respond(forced, "{}", &[]);
            }
            let q: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            if q["captures"]["room"] == "42" && q["claims"]["role"] == "member" {
                let body = json!({"allow": true, "user_info": {"name": q["claims"]["name"], "secret": "x"}});
                respond(200, &body.to_string(), &[])
            } else {
                respond(200, r#"{"allow": false, "reason": "not a member\n of this room"}"#, &[])
            }
        }
    })
    .await
}

fn hook(app: &App, tune: impl FnOnce(&mut HookSettings)) -> Hook {
    let mut s = HookSettings::new(app.url.clone());
    tune(&mut s);
    Hook::new(client(), s, None)
}

struct Ask {
    claims: Box<RawValue>,
    channel: String,
    captures: Vec<(String, String)>,
    socket_id: String,
}

fn ask(claims: serde_json::Value, room: &str, socket_id: &str) -> Ask {
    Ask {
        claims: RawValue::from_string(claims.to_string()).unwrap(),
        channel: format!("presence-room-{room}"),
        captures: vec![("room".into(), room.into())],
        socket_id: socket_id.into(),
    }
}

async fn decide(
    h: &Hook,
    user: &str,
    a: &Ask,
    now: Instant,
) -> Result<(Arc<Decision>, CacheStatus), LookupError> {
    let captures: IndexMap<&str, &str> = a.captures.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let q = Question { claims: &a.claims, channel: &a.channel, captures: &captures, socket_id: &a.socket_id };
    h.decide(user, &q, now).await
}

fn member() -> serde_json::Value {
    json!({"sub": "alice", "role": "member", "name": "Alice"})
}

#[tokio::test]
async fn the_app_gets_claims_channel_captures_and_socket_id_and_decides() {
    let app = app(Arc::new(AtomicU16::new(0))).await;
    let token = http::HeaderValue::from_static("Bearer hook-token");
    let h = hook(&app, |s| s.headers = vec![(http::header::AUTHORIZATION, token)]);
    let t = Instant::now();
    let (d, status) = decide(&h, "alice", &ask(member(), "42", "1.2"), t).await.unwrap();
    assert_eq!(status, CacheStatus::Miss);
    assert!(d.allow);
    assert_eq!(
        serde_json::Value::Object(d.user_info.clone().unwrap()),
        json!({"name": "Alice", "secret": "x"})
    );
    let received = app.received();
    assert_eq!(received[0].method, http::Method::POST);
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert_eq!(received[0].headers["authorization"], "Bearer hook-token");
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        body,
        json!({"claims": member(), "channel": "presence-room-42", "captures": {"room": "42"}, "socket_id": "1.2"})
    );

    let (d, _) = decide(&h, "alice", &ask(json!({"sub": "alice"}), "7", "1.2"), t).await.unwrap();
    assert!(!d.allow);
    assert_eq!(d.reason.as_deref(), Some("not a member of this room"), "control characters are dropped");
}

#[tokio::test]
async fn answers_are_cached_per_user_and_channel_for_the_ttl() {
    let app = app(Arc::new(AtomicU16::new(0))).await;
    let h = hook(&app, |s| s.ttl = Duration::from_secs(10));
    let t = Instant::now();
    decide(&h, "alice", &ask(member(), "42", "1.2"), t).await.unwrap();
    // Another socket of the same user: the cached answer.
    let (_, status) =
        decide(&h, "alice", &ask(member(), "42", "3.4"), t + Duration::from_secs(9)).await.unwrap();
    assert_eq!(status, CacheStatus::Hit);
    // Denials are cached too.
    decide(&h, "alice", &ask(member(), "7", "1.2"), t).await.unwrap();
    assert_eq!(decide(&h, "alice", &ask(member(), "7", "1.2"), t).await.unwrap().1, CacheStatus::Hit);
    // Another user, or the TTL over: the app is asked.
    assert_eq!(decide(&h, "bob", &ask(member(), "42", "1.2"), t).await.unwrap().1, CacheStatus::Miss);
    let later = t + Duration::from_secs(10);
    assert_eq!(decide(&h, "alice", &ask(member(), "42", "1.2"), later).await.unwrap().1, CacheStatus::Miss);
    assert_eq!(app.received().len(), 4);
    // No confusion between a user ending where a channel begins.
    assert_ne!(key("ab", "c"), key("a", "bc"));
}

#[tokio::test]
async fn anything_but_a_200_decision_is_a_fault() {
    let t = Instant::now();
    let cases = [
        (500, r#"{"allow": true}"#),
        (403, r#"{"allow": false}"#),
        (200, r#"{"allowed": true}"#),
        (200, r#"{"allow": "yes"}"#),
        (200, r#"{"allow": true, "user_info": [1]}"#),
        (200, "true"),
        (200, "<html>"),
    ];
    for (status, body) in cases {
        let app = App::start(move |_| async move { respond(status, body, &[]) }).await;
        let err = decide(&hook(&app, |_| {}), "alice", &ask(member(), "42", "1.2"), t).await.unwrap_err();
        assert!(
            matches!(err, LookupError::Unavailable { kind: FaultKind::BadAnswer, .. }),
            "{status} {body}: {err:?}"
        );
        assert!(!err.to_string().contains("yes"), "the app's values are not logged: {err}");
    }
    let silent = App::start(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        respond(200, "{}", &[])
    })
    .await;
    let h = hook(&silent, |s| s.timeout = Duration::from_millis(200));
    let err = decide(&h, "alice", &ask(member(), "42", "1.2"), t).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::Timeout, .. }), "{err:?}");
}

#[tokio::test]
async fn a_fault_serves_a_cached_answer_only_within_stale_if_error() {
    let t = Instant::now();
    for (stale, at, served) in [(0, 31, false), (30, 59, true), (30, 60, false)] {
        let status = Arc::new(AtomicU16::new(0));
        let app = app(status.clone()).await;
        let h = hook(&app, |s| s.cache.stale_if_error = Duration::from_secs(stale));
        decide(&h, "alice", &ask(member(), "42", "1.2"), t).await.unwrap();
        status.store(502, Ordering::SeqCst);
        let got = decide(&h, "alice", &ask(member(), "42", "1.2"), t + Duration::from_secs(at)).await;
        match (served, got) {
            (true, Ok((d, CacheStatus::Stale))) => assert!(d.allow),
            (false, Err(e)) => assert!(e.is_fault()),
            (_, other) => panic!("stale_if_error {stale}s at {at}s: {other:?}"),
        }
    }
}

#[tokio::test]
async fn hooks_sharing_a_url_share_a_breaker() {
    let status = Arc::new(AtomicU16::new(500));
    let app = app(status.clone()).await;
    let settings = HookSettings {
        breaker: BreakerSettings { failures: 2, open_for: Duration::from_secs(5) },
        ..HookSettings::new(app.url.clone())
    };
    let breaker = Arc::new(Breaker::new(settings.breaker));
    let a = Hook::new(client(), settings.clone(), Some(breaker.clone()));
    let b = Hook::new(client(), settings, Some(breaker.clone()));
    let t = Instant::now();
    decide(&a, "alice", &ask(member(), "1", "1.2"), t).await.unwrap_err();
    decide(&a, "alice", &ask(member(), "2", "1.2"), t).await.unwrap_err();
    assert_eq!(breaker.state(t), BreakerState::Open);
    let err = decide(&b, "bob", &ask(member(), "42", "1.2"), t).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::BreakerOpen, .. }), "{err:?}");
    assert_eq!(app.received().len(), 2);
}

#[tokio::test]
async fn concurrent_requests_for_one_user_and_channel_ask_once() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (signal, held) = (arrived.clone(), gate.clone());
    let app = App::start(move |_| {
        let (signal, held) = (signal.clone(), held.clone());
        async move {
            signal.notify_one();
            let _ = held.acquire().await;
            respond(200, r#"{"allow": true}"#, &[])
        }
    })
    .await;
    let h = hook(&app, |_| {});
    let t = Instant::now();
    let a = ask(member(), "42", "1.2");
    let asks = futures_util::future::join_all((0..10).map(|_| decide(&h, "alice", &a, t)));
    let release = async {
        arrived.notified().await;
        gate.add_permits(100);
    };
    let (answers, ()) = tokio::join!(asks, release);
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|(d, _)| d.allow)));
    assert_eq!(app.received().len(), 1);
}
