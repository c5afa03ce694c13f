//! Hardening: CSRF for cookie sessions, rate limits, header limits, and
//! 10,000 idle keep-alive connections that must not starve new requests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const FORM: &[(&str, &str)] = &[("socket_id", "1234.5678"), ("channel_name", "private-user-alice")];

async fn with_cookie(
    gw: &Gateway,
    token: &str,
    origin: Option<&str>,
    referer: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req =
        client().post(gw.url("/pusher/auth")).header("cookie", format!("session={token}")).form(FORM);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(r) = referer {
        req = req.header("referer", r);
    }
    let (s, _, b) = split(req.send().await.unwrap()).await;
    (s, b)
}

#[tokio::test]
async fn cookie_sessions_need_an_allowed_origin() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    let (s, b) = with_cookie(&gw, &t, None, None).await;
    assert_eq!((s, b["reason"].as_str()), (403, Some("csrf")), "{b}");
    assert!(b.get("auth").is_none());
    let (s, b) = with_cookie(&gw, &t, Some("https://evil.example.com"), None).await;
    assert_eq!((s, b["reason"].as_str()), (403, Some("csrf")), "{b}");
    let (s, b) = with_cookie(&gw, &t, Some("null"), None).await;
    assert_eq!((s, b["reason"].as_str()), (403, Some("csrf")), "{b}");
    let (s, b) = with_cookie(&gw, &t, Some("https://app.example.com"), None).await;
    assert_eq!(s, 200, "{b}");
    // Without Origin, the Referer's origin counts.
    let (s, b) = with_cookie(&gw, &t, None, Some("https://app.example.com/chat?room=1")).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = with_cookie(&gw, &t, None, Some("https://evil.example.com/app.example.com")).await;
    assert_eq!(s, 403);
    gw.stop().await;
}

#[tokio::test]
async fn bearer_and_form_tokens_are_not_subject_to_csrf() {
    let gw = Gateway::start().await;
    let t = token("alice", json!({}));
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&t), FORM).await;
    assert_eq!(s, 200, "{b}");
    let mut form = FORM.to_vec();
    form.push(("token", &t));
    let (s, _, b) = post_form(&gw, "/pusher/auth", None, &form).await;
    assert_eq!(s, 200, "{b}");
    gw.stop().await;
}

#[tokio::test]
async fn per_ip_limit_answers_429_with_retry_after() {
    let gw = Gateway::with(Setup {
        rate_limit:
            "rate_limit:\n  per_ip: 1/m\n  per_ip_burst: 3\n  per_user: 1000/s\n  per_user_burst: 1000\n"
                .into(),
        ..Setup::default()
    })
    .await;
    let t = token("alice", json!({}));
    for _ in 0..3 {
        let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&t), FORM).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, h, b) = post_form(&gw, "/pusher/auth", Some(&t), FORM).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["reason"], "rate_limited");
    assert!(b.get("auth").is_none());
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // X-Forwarded-For from an untrusted peer does not buy a new bucket.
    let resp = client()
        .post(gw.url("/pusher/auth"))
        .bearer_auth(&t)
        .header("x-forwarded-for", "198.51.100.1")
        .form(FORM)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // Health checks are never limited.
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn trusted_proxy_forwards_the_client_address() {
    let gw = Gateway::with(Setup {
        rate_limit: "rate_limit:\n  per_ip: 1/m\n  per_ip_burst: 1\n  trusted_proxies: [127.0.0.1/32]\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let t = token("alice", json!({}));
    for (client_ip, want) in [("198.51.100.1", 200), ("198.51.100.1", 429), ("198.51.100.2", 200)] {
        let resp = client()
            .post(gw.url("/pusher/auth"))
            .bearer_auth(&t)
            .header("x-forwarded-for", format!("6.6.6.6, {client_ip}"))
            .form(FORM)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{client_ip}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn per_user_limit_follows_sub_across_addresses() {
    let gw = Gateway::with(Setup {
        rate_limit:
            "rate_limit:\n  per_ip: 1000/s\n  per_ip_burst: 1000\n  per_user: 1/m\n  per_user_burst: 2\n"
                .into(),
        ..Setup::default()
    })
    .await;
    let alice = token("alice", json!({}));
    let bob = token("bob", json!({}));
    let bob_form = [("socket_id", "1234.5678"), ("channel_name", "private-user-bob")];
    assert_eq!(post_form(&gw, "/pusher/auth", Some(&alice), FORM).await.0, 200);
    assert_eq!(post_form(&gw, "/pusher/auth", Some(&alice), FORM).await.0, 200);
    let (s, _, b) = post_form(&gw, "/pusher/auth", Some(&alice), FORM).await;
    assert_eq!((s, b["reason"].as_str()), (429, Some("rate_limited")));
    assert_eq!(post_form(&gw, "/pusher/auth", Some(&bob), &bob_form).await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let gw = Gateway::start().await;
    let resp = client().get(gw.url("/healthz")).header("x-pad", "a".repeat(40 * 1024)).send().await.unwrap();
    assert_eq!(resp.status(), 431);
    gw.stop().await;
}

/// Opens `n` keep-alive connections, each after one answered request.
async fn open_idle(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut conns = Vec::with_capacity(n);
    let mut buf = vec![0u8; 1024];
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let read = s.read(&mut buf).await.unwrap();
        assert!(buf[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..read]));
        conns.push(s);
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_do_not_block_new_requests() {
    const IDLE: usize = 10_000;
    // The server runs as its own process so the two sides' sockets do not
    // share one file-descriptor limit.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(hard >= IDLE as u64 + 512, "the hard open-files limit ({hard}) is too low for this test");
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let extra = "http:\n  header_read_timeout: 120s\n  max_connections: 20000\n  max_connections_per_ip: 0\n";
    let config = write_config(dir.path(), &Setup { extra_config: extra.into(), ..Setup::default() });
    let mut child = Command::new(env!("CARGO_BIN_EXE_channelgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    /// Stops the server by PID if the test fails before it does.
    struct Kill(Option<u32>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            }
        }
    }
    let mut guard = Kill(Some(child.id()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    // Drain the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let started = Instant::now();
    let mut idle = open_idle(addr, IDLE).await;
    let opened_in = started.elapsed();

    let t = token("alice", json!({}));
    let probe = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::Client::new().post(format!("http://{addr}/pusher/auth")).bearer_auth(&t).form(FORM).send(),
    )
    .await
    .expect("a new request was not served while 10,000 connections were idle")
    .unwrap();
    let latency = probe.elapsed();
    assert_eq!(resp.status(), 200);
    // The idle connections are still open and still served.
    for s in idle.iter_mut().step_by(1000) {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    println!("opened {IDLE} idle connections in {opened_in:?}; a new request took {latency:?}");
    drop(idle);
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    guard.0 = None;
    assert!(child.wait().unwrap().success());
}

/// Reads until the peer closes or `limit` passes; true when it closed.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (false, got),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let extra = "http:\n  header_read_timeout: 1s\n  request_timeout: 1s\n  tls_handshake_timeout: 1s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;

    // Slowloris: headers that never end.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /pusher/auth HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let (closed, _) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a connection with unfinished headers stayed open past the header timeout");

    // A body that never arrives: 408 with a reason, then the connection ends.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /pusher/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nsocket_id=1",
    )
    .await
    .unwrap();
    let (_, got) = closed_within(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn tls_handshake_timeout_closes_silent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let gw = Gateway::with(Setup {
        tls: Some((cert, key)),
        extra_config: "http:\n  tls_handshake_timeout: 1s\n".into(),
        ..Setup::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (closed, _) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a silent TLS connection stayed open past the handshake timeout");
    gw.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let gw = Gateway::with(Setup {
        extra_config: "http:\n  max_connections: 2\n  header_read_timeout: 30s\n".into(),
        ..Setup::default()
    })
    .await;
    let mut held = open_idle(gw.addr, 2).await;
    // The third connection is accepted by the kernel but not served.
    let mut third = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await.is_err());
    // Freeing a slot lets it through.
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    gw.stop().await;
}

#[tokio::test]
async fn connections_without_a_request_are_closed_after_the_header_timeout_on_every_path() {
    let extra = "http:\n  header_read_timeout: 1s\n  request_timeout: 5s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let limit = Duration::from_secs(4);

    // Plain TCP that sends nothing (the HTTP/1-or-2 detection read used to
    // wait forever).
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_within(&mut s, limit).await.0, "a silent connection stayed open");

    // Half an HTTP/2 preface.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_within(&mut s, limit).await.0, "a partial HTTP/2 preface held the connection");

    // A whole preface and an empty SETTINGS frame, then no stream.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    assert!(closed_within(&mut s, limit).await.0, "an HTTP/2 connection without a request stayed open");

    // Control: a request whose body arrives after the header timeout (but
    // within request_timeout) is not cut: the deadline ends at the head.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let t = token("alice", json!({}));
    let body = "socket_id=1234.5678&channel_name=private-user-alice";
    let head = format!(
        "POST /pusher/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(body.as_bytes()).await.unwrap();
    let (_, got) = closed_within(&mut s, limit).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn tls_that_goes_silent_after_the_handshake_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let gw = Gateway::with(Setup {
        tls: Some((cert, key)),
        extra_config: "http:\n  tls_handshake_timeout: 5s\n  header_read_timeout: 1s\n".into(),
        ..Setup::default()
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("the handshake completes");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(4), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => continue, // the server's HTTP/2 settings, if any
            Err(_) => break false,
        }
    };
    assert!(closed, "a TLS connection silent after the handshake stayed open");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    gw.stop().await;
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `GET /healthz` on `s`; the status line's code, or `None` when the
/// server closed the connection without an answer.
async fn health_on(s: &mut tokio::net::TcpStream) -> Option<u16> {
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => std::str::from_utf8(&buf[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

#[tokio::test]
async fn one_address_holds_at_most_max_connections_per_ip() {
    let extra = "http:\n  max_connections_per_ip: 3\n  header_read_timeout: 30s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let mut held = open_idle(gw.addr, 3).await;
    let mut fourth = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(health_on(&mut fourth).await, None, "a fourth connection from one address was served");
    // Another address has its own allowance.
    let mut other = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(health_on(&mut other).await, Some(200));
    // The held connections still work, and closing one frees a slot.
    assert_eq!(health_on(&mut held[0]).await, Some(200));
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        again = health_on(&mut s).await;
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(again, Some(200), "a freed slot was not given back");
    gw.stop().await;

    // Trusted proxies carry many clients: exempt.
    let gw = Gateway::with(Setup {
        extra_config: extra.into(),
        rate_limit: "rate_limit:\n  enabled: false\n  trusted_proxies: [127.0.0.1/32]\n".into(),
        ..Setup::default()
    })
    .await;
    let mut many = open_idle(gw.addr, 6).await;
    assert_eq!(health_on(&mut many[5]).await, Some(200));
    gw.stop().await;
}

#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "http:\n  header_read_timeout: 30s\n  max_connections_per_ip: 0\n";
    let config = write_config(dir.path(), &Setup { extra_config: extra.into(), ..Setup::default() });
    // Few descriptors: the connections below exhaust them.
    let mut server = Binary::serve_under(&["prlimit", "--nofile=64:64"], &config);
    let mut conns = Vec::new();
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(server.addr).await {
            Ok(s) => conns.push(s),
            Err(_) => break,
        }
    }
    // Accepting fails for two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warnings = server.logs().matches("accept failed").count();
    assert!((1..=3).contains(&warnings), "{warnings} accept warnings in 2 s:\n{}", server.logs());
    drop(conns);
    let mut served = false;
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(server.addr).await
            && health_on(&mut s).await == Some(200)
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "not serving again after descriptors were freed:\n{}", server.logs());
    assert!(server.logs().contains("accepting connections again"), "{}", server.logs());
    let exit = server.terminate(Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

/// Reads until `text` has arrived; false when the connection ends first.
async fn read_until(s: &mut tokio::net::TcpStream, text: &str) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(text) {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_header_timeout_is_kept_for_the_next_request() {
    // Proxies (nginx upstream keep-alive, AWS load balancers: 60 s idle)
    // reuse a connection long after its last answer; a server that closes
    // it sooner races their next request, which they answer 502. The
    // header timeout bounds only the first head; later ones have the
    // keep-alive timeout (default 75 s).
    let extra = "http:\n  header_read_timeout: 1s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(HEALTH).await.unwrap();
    assert!(read_until(&mut s, r#"{"status":"ok"}"#).await);
    // Idle for more than twice the header timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(HEALTH).await.unwrap();
    assert!(read_until(&mut s, r#"{"status":"ok"}"#).await, "the idle keep-alive connection was closed");
    let metrics = gw.runtime.metrics.render();
    assert!(
        !metrics.lines().any(|l| l.starts_with(r#"channelgate_connections_closed_total{reason="idle"}"#)),
        "no idle close was counted"
    );
    gw.stop().await;
}

/// An HTTP/2 client connection (prior knowledge) to `addr`, and the task
/// that drives it, which ends when the connection closes.
async fn h2_connect<B>(
    addr: std::net::SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<B>, tokio::task::JoinHandle<hyper::Result<()>>)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(conn))
}

#[tokio::test]
async fn an_http2_connection_without_a_stream_for_the_keep_alive_timeout_gets_goaway_and_closes() {
    // Before, an HTTP/2 connection that had opened one stream was kept for
    // as long as its peer answered pings: browsers that keep their
    // sessions filled the connection cap.
    let extra = "http:\n  header_read_timeout: 1s\n  keep_alive_timeout: 1s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let (mut sender, conn) = h2_connect(gw.addr).await;
    let health = || {
        hyper::Request::get(format!("http://{}/healthz", gw.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // Streams 600 ms apart keep it open past its first timeout.
    for i in 0..3 {
        let resp = sender.send_request(health()).await.unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert_eq!(resp.status(), 200, "stream {i}");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // Then no stream: GOAWAY and a close about a second after the last answer.
    let quiet = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(quiet.elapsed() >= Duration::from_millis(200), "closed too early: {:?}", quiet.elapsed());
    assert!(sender.send_request(health()).await.is_err(), "the closed connection took a stream");
    let metrics = gw.runtime.metrics.render();
    assert!(
        metrics.lines().any(|l| l == r#"channelgate_connections_closed_total{reason="idle"} 1"#),
        "counted as idle:\n{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_http2_stream_the_client_resets_does_not_keep_its_connection_busy() {
    let extra = "http:\n  header_read_timeout: 1s\n  keep_alive_timeout: 1s\n  request_timeout: 30s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let (mut sender, conn) = h2_connect(gw.addr).await;
    let health = hyper::Request::get(format!("http://{}/healthz", gw.addr))
        .body(http_body_util::Either::Left(http_body_util::Empty::<bytes::Bytes>::new()))
        .unwrap();
    assert_eq!(sender.send_request(health).await.unwrap().status(), 200);
    // A request whose body never comes (the server waits up to the 30 s
    // request timeout), then reset by the client.
    let never =
        futures_util::stream::pending::<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>();
    let auth = hyper::Request::post(format!("http://{}/pusher/auth", gw.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Either::Right(http_body_util::StreamBody::new(never)))
        .unwrap();
    let pending = tokio::spawn(sender.send_request(auth));
    tokio::time::sleep(Duration::from_millis(300)).await;
    pending.abort();
    // Idle from then on: GOAWAY and closed within about a second, not
    // after the abandoned request's 30 s.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the reset stream kept the HTTP/2 connection busy");
    gw.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_must_send_each_head_within_the_keep_alive_timeout_of_the_last_response() {
    let extra = "http:\n  header_read_timeout: 1s\n  keep_alive_timeout: 1s\n  request_timeout: 5s\n";
    let gw = Gateway::with(Setup { extra_config: extra.into(), ..Setup::default() }).await;
    let idle = || {
        let metrics = gw.runtime.metrics.render();
        let line =
            metrics.lines().find(|l| l.starts_with(r#"channelgate_connections_closed_total{reason="idle"}"#));
        line.and_then(|l| l.rsplit(' ').next()).map_or(0, |n| n.parse::<u64>().unwrap())
    };
    const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    // Requests 600 ms apart keep a connection open past its first
    // timeout: each head arrives within 1 s of the previous response.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for i in 0..3 {
        s.write_all(HEALTH).await.unwrap();
        assert!(read_until(&mut s, r#"{"status":"ok"}"#).await, "request {i} was not answered");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(idle(), 0);
    // Then silence: closed about a second after the last response.
    let waited = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await.0,
        "an idle keep-alive connection stayed open"
    );
    assert!(waited.elapsed() >= Duration::from_millis(200), "closed too early: {:?}", waited.elapsed());

    // Slow headers on a later request: a header line every 300 ms.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(HEALTH).await.unwrap();
    assert!(read_until(&mut s, r#"{"status":"ok"}"#).await);
    let answered = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow second head held the connection");
    assert!(answered.elapsed() < Duration::from_secs(4), "closed late: {:?}", answered.elapsed());
    // Both are counted as idle, neither as a connection without a request.
    assert_eq!(idle(), 2);
    gw.stop().await;
}
