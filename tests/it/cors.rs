//! CORS: an allow-list of exact origins, credentialed, correct preflights.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn preflight_from_allowed_origin() {
    let gw = Gateway::start().await;
    let resp = client()
        .request(reqwest::Method::OPTIONS, gw.url("/pusher/auth"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "Authorization, Content-Type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "POST, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "authorization, content-type");
    assert!(h.get_all("vary").iter().any(|v| v == "Origin"));
    gw.stop().await;
}

#[tokio::test]
async fn preflight_refusals() {
    let gw = Gateway::start().await;
    for (origin, method, headers) in [
        ("https://evil.example.com", "POST", "content-type"),
        ("https://app.example.com.evil.com", "POST", "content-type"),
        ("null", "POST", "content-type"),
        ("https://app.example.com", "DELETE", "content-type"),
        ("https://app.example.com", "POST", "x-secret-header"),
    ] {
        let resp = client()
            .request(reqwest::Method::OPTIONS, gw.url("/pusher/auth"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{origin} {method} {headers}");
        assert!(resp.headers().get("access-control-allow-origin").is_none());
    }
    gw.stop().await;
}

#[tokio::test]
async fn responses_carry_cors_headers_only_for_allowed_origins() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    for (origin, allowed) in [("https://app.example.com", true), ("https://evil.example.com", false)] {
        let resp = client()
            .post(gw.url("/pusher/auth"))
            .bearer_auth(&t)
            .header("origin", origin)
            .form(&[("socket_id", "1.2"), ("channel_name", "private-user-alice")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let acao = resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(acao.as_deref(), allowed.then_some(origin));
        assert_ne!(acao.as_deref(), Some("*"));
    }
    gw.stop().await;
}
