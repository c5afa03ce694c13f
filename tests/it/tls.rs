//! HTTPS with rustls: a certificate made here (rcgen), trusted by the test
//! client only; HTTP/1.1 and HTTP/2 through ALPN.

use serde_json::json;

use crate::support::*;

fn cert_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, reqwest::Certificate) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key, reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
}

#[tokio::test]
async fn https_with_http1_and_http2() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, root) = cert_files(certs.path());
    let gw = Gateway::with(Setup { tls: Some((cert, key)), ..Setup::default() }).await;
    let url = format!("https://localhost:{}/pusher/auth", gw.addr.port());
    let t = token("alice", json!({}));
    for http2 in [false, true] {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone())
            .resolve("localhost", gw.addr);
        builder = if http2 { builder.http2_prior_knowledge() } else { builder.http1_only() };
        let client = builder.build().unwrap();
        let resp = client
            .post(&url)
            .bearer_auth(&t)
            .form(&[("socket_id", "1234.5678"), ("channel_name", "private-user-alice")])
            .send()
            .await
            .unwrap();
        let want = if http2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 };
        assert_eq!(resp.version(), want);
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["auth"], expected_auth("1234.5678:private-user-alice"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn plain_http_to_a_tls_listener_gets_no_answer() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, _) = cert_files(certs.path());
    let gw = Gateway::with(Setup { tls: Some((cert, key)), ..Setup::default() }).await;
    let result = client().get(format!("http://{}/healthz", gw.addr)).send().await;
    assert!(result.is_err(), "plain HTTP was answered on the TLS port");
    gw.stop().await;
}
