#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use super::*;
use crate::membership::breaker::BreakerState;
use crate::membership::testing::{App, client, respond};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn cookie(name: &str) -> Forward {
    Forward::Cookie(name.to_owned())
}

fn cred(cookie_header: &str) -> Credential {
    Credential::from_request(&headers(&[("cookie", cookie_header)]), &[cookie("sess")]).unwrap()
}

/// The app: `sess=alice` → 200 with claims (and `cache_control`, if any),
/// any other session → 401; the status is overridden while `status` is not 0.
async fn app(status: Arc<AtomicU16>, cache_control: Option<&'static str>) -> App {
    App::start(move |r| {
        let status = status.clone();
        async move {
            let forced = status.load(Ordering::SeqCst);
            if forced != 0 {
                return respond(forced, "{}", &[]);
            }
            let cookie = r.headers.get("cookie").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            if cookie == "sess=alice" {
                let extra: Vec<(&str, &str)> = cache_control.iter().map(|c| ("cache-control", *c)).collect();
                respond(200, r#"{"sub":"alice","rooms":[1,2]}"#, &extra)
            } else {
                respond(401, r#"{"message":"Unauthenticated."}"#, &[])
            }
        }
    })
    .await
}

fn introspector(app: &App, tune: impl FnOnce(&mut IntrospectSettings)) -> Introspector {
    let mut s = IntrospectSettings::new(app.url.clone(), vec![cookie("sess")]);
    tune(&mut s);
    Introspector::new(client(), s)
}

fn claims(answer: &SessionAnswer) -> serde_json::Value {
    match answer {
        SessionAnswer::Claims(json, _) => serde_json::from_str(json).unwrap(),
        SessionAnswer::NoSession => panic!("no session"),
    }
}

#[test]
fn the_credential_is_exactly_the_configured_cookies_and_headers() {
    let forward = [cookie("sess"), Forward::Header(HeaderName::from_static("x-session"))];
    let c = Credential::from_request(
        &headers(&[("cookie", "a=1; sess=s1 ; b=2"), ("cookie", "Sess=no; sess=s2"), ("x-session", "h")]),
        &forward,
    )
    .unwrap();
    assert_eq!(c.cookie.as_ref().unwrap(), "sess=s1; sess=s2");
    assert_eq!(c.headers, vec![(HeaderName::from_static("x-session"), HeaderValue::from_static("h"))]);
    // Nothing forwarded: no credential, and the app is not asked.
    assert!(Credential::from_request(&headers(&[("cookie", "session=x; xsess=y")]), &forward).is_none());
    // The digest covers what is forwarded, and only that.
    assert_eq!(cred("sess=a; other=1").digest, cred("other=2; sess=a").digest);
    assert_ne!(cred("sess=a").digest, cred("sess=b").digest);
    let x_session = [Forward::Header(HeaderName::from_static("x-session"))];
    let by_header = Credential::from_request(&headers(&[("x-session", "sess=a")]), &x_session);
    assert_ne!(by_header.unwrap().digest, cred("sess=a").digest);
    assert_eq!(format!("{:?}", cred("sess=secret")), "Credential(redacted)");
}

#[tokio::test]
async fn a_session_is_the_apps_json_object_cached_per_credential() {
    let app = app(Arc::new(AtomicU16::new(0)), None).await;
    let i = introspector(&app, |_| {});
    let t = Instant::now();
    let (answer, status) = i.introspect(&cred("theme=dark; sess=alice"), t).await.unwrap();
    assert_eq!(status, CacheStatus::Miss);
    assert_eq!(claims(&answer), serde_json::json!({"sub": "alice", "rooms": [1, 2]}));
    let (_, status) = i.introspect(&cred("sess=alice"), t + Duration::from_secs(29)).await.unwrap();
    assert_eq!(status, CacheStatus::Hit);
    let received = app.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, http::Method::GET);
    assert_eq!(received[0].headers["cookie"], "sess=alice", "only the configured cookie is forwarded");
    assert_eq!(received[0].headers["accept"], "application/json");
    // After the TTL the app is asked again.
    let (_, status) = i.introspect(&cred("sess=alice"), t + Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, CacheStatus::Miss);
    assert_eq!(app.received().len(), 2);
}

#[tokio::test]
async fn the_apps_max_age_shortens_the_ttl_and_no_store_disables_it() {
    let app5 = app(Arc::new(AtomicU16::new(0)), Some("private, max-age=5")).await;
    let i = introspector(&app5, |_| {});
    let t = Instant::now();
    i.introspect(&cred("sess=alice"), t).await.unwrap();
    assert_eq!(
        i.introspect(&cred("sess=alice"), t + Duration::from_secs(4)).await.unwrap().1,
        CacheStatus::Hit
    );
    assert_eq!(
        i.introspect(&cred("sess=alice"), t + Duration::from_secs(5)).await.unwrap().1,
        CacheStatus::Miss
    );

    let no_store = app(Arc::new(AtomicU16::new(0)), Some("no-store")).await;
    let i = introspector(&no_store, |_| {});
    i.introspect(&cred("sess=alice"), t).await.unwrap();
    assert_eq!(i.introspect(&cred("sess=alice"), t).await.unwrap().1, CacheStatus::Miss);
    assert_eq!(no_store.received().len(), 2);
}

#[tokio::test]
async fn no_session_is_answered_but_not_kept() {
    let app = app(Arc::new(AtomicU16::new(0)), None).await;
    let i = introspector(&app, |_| {});
    let t = Instant::now();
    for _ in 0..2 {
        let (answer, status) = i.introspect(&cred("sess=mallory"), t).await.unwrap();
        assert_eq!((answer, status), (SessionAnswer::NoSession, CacheStatus::Miss));
    }
    assert_eq!(app.received().len(), 2, "a 401 is asked again: the user may have signed in since");
    // 403 means the same.
    let forbidden = self::app(Arc::new(AtomicU16::new(403)), None).await;
    let answer = introspector(&forbidden, |_| {}).introspect(&cred("sess=alice"), t).await.unwrap().0;
    assert_eq!(answer, SessionAnswer::NoSession);
}

#[tokio::test]
async fn anything_but_200_with_an_object_or_401_403_is_a_fault() {
    let t = Instant::now();
    for (status, body) in [(500, "{}"), (302, ""), (404, "{}"), (200, "[1]"), (200, "not json"), (200, "")] {
        let app = App::start(move |_| async move { respond(status, body, &[]) }).await;
        let err = introspector(&app, |_| {}).introspect(&cred("sess=alice"), t).await.unwrap_err();
        assert!(
            matches!(err, LookupError::Unavailable { kind: FaultKind::BadAnswer, .. }),
            "{status} {body:?}: {err:?}"
        );
    }
    let huge =
        App::start(|_| async { respond(200, &format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_ANSWER)), &[]) })
            .await;
    let err = introspector(&huge, |_| {}).introspect(&cred("sess=alice"), t).await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn a_silent_app_times_out_and_a_missing_one_is_unreachable() {
    let silent = App::start(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        respond(200, "{}", &[])
    })
    .await;
    let i = introspector(&silent, |s| s.timeout = Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = i.introspect(&cred("sess=alice"), Instant::now()).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::Timeout, .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/api/me").parse().unwrap();
    let i = Introspector::new(client(), IntrospectSettings::new(url, vec![cookie("sess")]));
    let err = i.introspect(&cred("sess=alice"), Instant::now()).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::Unreachable, .. }), "{err:?}");
    assert!(!err.to_string().contains("alice"), "{err}");
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_faults_and_a_probe_closes_it() {
    let status = Arc::new(AtomicU16::new(500));
    let app = app(status.clone(), None).await;
    let i = introspector(&app, |s| {
        s.breaker = BreakerSettings { failures: 3, open_for: Duration::from_secs(10) }
    });
    let t = Instant::now();
    for n in 0..3 {
        i.introspect(&cred(&format!("sess=u{n}")), t).await.unwrap_err();
    }
    let err = i.introspect(&cred("sess=alice"), t).await.unwrap_err();
    assert!(matches!(err, LookupError::Unavailable { kind: FaultKind::BreakerOpen, .. }), "{err:?}");
    assert_eq!(app.received().len(), 3, "an open breaker does not call the app");
    // The app is back; after `open_for` one probe goes through and closes it.
    status.store(0, Ordering::SeqCst);
    let later = Instant::now() + Duration::from_secs(10);
    assert_eq!(i.breaker().state(later), BreakerState::HalfOpen);
    let (answer, _) = i.introspect(&cred("sess=alice"), later).await.unwrap();
    assert_eq!(claims(&answer)["sub"], "alice");
    assert_eq!(i.breaker().state(Instant::now()), BreakerState::Closed);
}

#[tokio::test]
async fn a_cached_session_is_served_after_a_fault_only_within_stale_if_error() {
    let t = Instant::now();
    for (stale, at, served) in [(0, 31, false), (60, 31, true), (60, 89, true), (60, 90, false)] {
        let status = Arc::new(AtomicU16::new(0));
        let app = app(status.clone(), None).await;
        let i = introspector(&app, |s| s.cache.stale_if_error = Duration::from_secs(stale));
        i.introspect(&cred("sess=alice"), t).await.unwrap();
        status.store(503, Ordering::SeqCst);
        let got = i.introspect(&cred("sess=alice"), t + Duration::from_secs(at)).await;
        if served {
            let (answer, cache) = got.unwrap();
            assert_eq!((claims(&answer)["sub"].as_str(), cache), (Some("alice"), CacheStatus::Stale));
        } else {
            assert!(got.unwrap_err().is_fault(), "stale_if_error {stale}s at {at}s");
        }
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_credential_ask_the_app_once() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (signal, held) = (arrived.clone(), gate.clone());
    let app = App::start(move |_| {
        let (signal, held) = (signal.clone(), held.clone());
        async move {
            signal.notify_one();
            let _ = held.acquire().await;
            respond(200, r#"{"sub":"alice"}"#, &[])
        }
    })
    .await;
    let i = introspector(&app, |_| {});
    let t = Instant::now();
    let c = cred("sess=alice");
    // join_all polls every request once before any can finish: all twenty
    // have joined the flight when the app sees its request.
    let asks = futures_util::future::join_all((0..20).map(|_| i.introspect(&c, t)));
    let release = async {
        arrived.notified().await;
        gate.add_permits(100);
    };
    let (answers, ()) = tokio::join!(asks, release);
    assert!(answers.iter().all(|a| matches!(a, Ok((SessionAnswer::Claims(..), CacheStatus::Miss)))));
    assert_eq!(app.received().len(), 1);
    assert_eq!(i.memo().counts().misses, 20);
}
