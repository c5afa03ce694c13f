//! Secrets never reach the logs (hardening item 9). The real binary serves
//! at `debug` and `trace` level (text and JSON); allowed, denied and invalid
//! requests go through every token source; then stdout and stderr must hold
//! neither the Pusher secret, the encryption master key (base64, hex, byte
//! list), the JWT secret, any JWT sent (whole, payload part, signature
//! part), a returned `shared_secret` nor a claim value no rule uses. They
//! must hold the refusal and decision lines, so the test cannot pass on an
//! empty log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{
    APP_SECRET, AUDIENCE, ISSUER, JWT_SECRET, MASTER_KEY_B64, Setup, now, sign_token, token, write_config,
};

const SOCKET: &str = "1234.5678";
const ORIGIN: &str = "https://app.example.com";
/// A claim value no rule reads: it has no business in a log line.
const PRIVATE_CLAIM: &str = "claim-value-never-logged@example.com";

/// The gateway process; killed (if still running) when dropped, so a
/// failing assertion never leaves it behind.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    /// Stops the process with SIGTERM (graceful drain) and waits for it;
    /// SIGKILL after 10 s. Async, so the runtime can close the clients'
    /// connections meanwhile (otherwise the drain waits for them).
    async fn terminate(&mut self) -> String {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("exited with {status} after SIGTERM ({sent:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!("did not stop within 10s of SIGTERM ({sent:?}); killed")
    }
}

/// Both output streams of the process, ANSI escapes removed.
fn read_logs(out: &Path, err: &Path) -> String {
    let text = format!(
        "{}\n{}",
        std::fs::read_to_string(err).unwrap_or_default(),
        std::fs::read_to_string(out).unwrap_or_default()
    );
    strip_ansi(&text)
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte(@..~)
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address from the `listening on http://ADDR ` line.
fn listening_addr(logs: &str) -> Option<String> {
    let start = logs.find("listening on http://")? + "listening on http://".len();
    let rest = &logs[start..];
    let end = rest.find([' ', '"', '\n', ')']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

fn spawn(dir: &Path, level: &str, json_format: bool) -> (Server, PathBuf, PathBuf) {
    // support's config switches rate limiting off.
    let config = write_config(dir, &Setup::default());
    let out_path = dir.join("stdout.log");
    let err_path = dir.join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_channelgate"));
    cmd.arg("serve").arg("--config").arg(&config);
    if json_format {
        cmd.args(["--log-format", "json"]);
    }
    cmd.env_remove("CHANNELGATE_CONFIG")
        .env("RUST_LOG", level)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let child = cmd.spawn().unwrap();
    (Server { child }, out_path, err_path)
}

fn wait_for_addr(server: &mut Server, out: &Path, err: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = read_logs(out, err);
        if let Some(addr) = listening_addr(&logs) {
            return addr;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the gateway exited ({status}) before listening:\n{logs}");
        }
        assert!(Instant::now() < deadline, "no `listening on` line within 30s:\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request and what it must get; the status check makes sure each path
/// (allowed, denied, invalid) really ran.
struct Sent {
    what: &'static str,
    want: u16,
    got: u16,
    body: Value,
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Drives the requests; returns them, the JWTs sent and every returned
/// `shared_secret`.
async fn drive(base: &str) -> (Vec<Sent>, Vec<String>) {
    let http1 = reqwest::Client::builder().build().unwrap();
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let claims = json!({"rooms": ["1"], "team": "acme", "name": "Alice", "email": PRIVATE_CLAIM});
    let alice = token("alice", claims.clone());
    let bob_big = token("bob", json!({"rooms": ["1"], "name": "n".repeat(2000), "email": PRIVATE_CLAIM}));
    let expired = sign_token(
        &json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() - 60, "email": PRIVATE_CLAIM}),
        JWT_SECRET,
    );
    let forged = sign_token(
        &json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "email": PRIVATE_CLAIM}),
        "forged-forged-forged-forged-forged-forged",
    );
    let wrong_aud = sign_token(
        &json!({"sub": "alice", "iss": ISSUER, "aud": "other", "exp": now() + 600, "email": PRIVATE_CLAIM}),
        JWT_SECRET,
    );
    let none = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    };
    // Claims of the wrong type make rule expressions fail; the failure
    // must not quote the claim's value.
    let odd_rooms = token("carol", json!({"rooms": PRIVATE_CLAIM, "name": "Carol"}));
    let odd_team = token("carol", json!({"team": [PRIVATE_CLAIM]}));
    let in_cookie = token("alice", claims.clone());
    let in_form = token("alice", claims.clone());
    let in_json = token("alice", claims.clone());
    let jwts = vec![
        alice.clone(),
        bob_big.clone(),
        expired.clone(),
        forged.clone(),
        wrong_aud.clone(),
        none.clone(),
        in_cookie.clone(),
        in_form.clone(),
        in_json.clone(),
        odd_rooms.clone(),
        odd_team.clone(),
    ];

    let auth = format!("{base}/pusher/auth");
    let user_auth = format!("{base}/pusher/user-auth");
    let form_ct = "application/x-www-form-urlencoded";
    let own = form(&[("socket_id", SOCKET), ("channel_name", "private-user-alice")]);
    let plan: Vec<(&'static str, u16, reqwest::RequestBuilder)> = vec![
        (
            "allowed private, bearer",
            200,
            http1.post(&auth).bearer_auth(&alice).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "allowed presence, bearer",
            200,
            http1
                .post(&auth)
                .bearer_auth(&alice)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "presence-room-1")])),
        ),
        (
            "allowed encrypted, bearer",
            200,
            http1
                .post(&auth)
                .bearer_auth(&alice)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "private-encrypted-team-acme")])),
        ),
        (
            "allowed user-auth, bearer",
            200,
            http1
                .post(&user_auth)
                .bearer_auth(&alice)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET)])),
        ),
        (
            "allowed private, cookie",
            200,
            http1
                .post(&auth)
                .header("cookie", format!("theme=dark; session={in_cookie}"))
                .header("origin", ORIGIN)
                .header("content-type", form_ct)
                .body(own.clone()),
        ),
        (
            "allowed private, form field",
            200,
            http1.post(&auth).header("content-type", form_ct).body(form(&[
                ("socket_id", SOCKET),
                ("channel_name", "private-user-alice"),
                ("token", &in_form),
            ])),
        ),
        (
            "allowed private, JSON body with token field",
            200,
            http1
                .post(&auth)
                .json(&json!({"socket_id": SOCKET, "channel_name": "private-user-alice", "token": in_json})),
        ),
        (
            "allowed batch, bearer",
            200,
            http1.post(&auth).bearer_auth(&alice).header("content-type", form_ct).body(form(&[
                ("socket_id", SOCKET),
                ("channel_name[0]", "private-user-alice"),
                ("channel_name[1]", "private-user-bob"),
            ])),
        ),
        (
            "allowed private, HTTP/2",
            200,
            h2c.post(&auth).bearer_auth(&alice).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "denied: another user's channel",
            403,
            http1
                .post(&auth)
                .bearer_auth(&alice)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "private-user-bob")])),
        ),
        (
            "denied: no rule",
            403,
            http1
                .post(&auth)
                .bearer_auth(&alice)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "private-admin")])),
        ),
        (
            "denied: presence data too large",
            403,
            http1
                .post(&auth)
                .bearer_auth(&bob_big)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "presence-room-1")])),
        ),
        (
            "denied: rule error on a claim of the wrong type (string rooms)",
            403,
            http1
                .post(&auth)
                .bearer_auth(&odd_rooms)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "presence-room-1")])),
        ),
        (
            "denied: rule on a claim of the wrong type (list team)",
            403,
            http1
                .post(&auth)
                .bearer_auth(&odd_team)
                .header("content-type", form_ct)
                .body(form(&[("socket_id", SOCKET), ("channel_name", "private-encrypted-team-acme")])),
        ),
        (
            "invalid: expired token",
            401,
            http1.post(&auth).bearer_auth(&expired).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "invalid: forged token",
            401,
            http1.post(&auth).bearer_auth(&forged).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "invalid: forged token in the cookie",
            401,
            http1
                .post(&auth)
                .header("cookie", format!("session={forged}"))
                .header("origin", ORIGIN)
                .header("content-type", form_ct)
                .body(own.clone()),
        ),
        (
            "invalid: expired token in the form field",
            401,
            http1.post(&auth).header("content-type", form_ct).body(form(&[
                ("socket_id", SOCKET),
                ("channel_name", "private-user-alice"),
                ("token", &expired),
            ])),
        ),
        (
            "invalid: wrong audience",
            401,
            http1.post(&auth).bearer_auth(&wrong_aud).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "invalid: alg none",
            401,
            http1.post(&auth).bearer_auth(&none).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "invalid: forged token over HTTP/2",
            401,
            h2c.post(&auth).bearer_auth(&forged).header("content-type", form_ct).body(own.clone()),
        ),
        (
            "invalid: bad socket id with a good token",
            400,
            http1.post(&auth).bearer_auth(&alice).header("content-type", form_ct).body(form(&[
                ("socket_id", "1234.5678:private-user-bob"),
                ("channel_name", "private-user-alice"),
            ])),
        ),
        (
            "invalid: batch with an injected newline and a forged token",
            401,
            http1.post(&auth).bearer_auth(&forged).header("content-type", form_ct).body(form(&[
                ("socket_id", SOCKET),
                ("channel_name[0]", "private-x\nINJECTED-LOG-LINE level=ERROR"),
            ])),
        ),
        (
            "invalid: body over the limit with the token in it",
            413,
            http1.post(&auth).header("content-type", form_ct).body(form(&[
                ("socket_id", SOCKET),
                ("channel_name", "private-user-alice"),
                ("token", &alice),
                ("pad", &"x".repeat(9000)),
            ])),
        ),
        (
            "invalid: wrong content type",
            415,
            http1.post(&auth).bearer_auth(&alice).header("content-type", "text/plain").body(own.clone()),
        ),
        ("invalid: no token", 401, http1.post(&auth).header("content-type", form_ct).body(own.clone())),
    ];

    let mut sent = Vec::new();
    for (what, want, request) in plan {
        let (got, body) = match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => (0, Value::String(format!("no response: {e}"))),
        };
        sent.push(Sent { what, want, got, body });
    }
    (sent, jwts)
}

/// Strings that must not appear in any log line, with what each one is.
fn forbidden(jwts: &[String], sent: &[Sent]) -> Vec<(String, String)> {
    let master = STANDARD.decode(MASTER_KEY_B64).unwrap();
    let mut needles = vec![
        ("the Pusher secret".to_owned(), APP_SECRET.to_owned()),
        ("the Pusher secret's bytes".to_owned(), format!("{:?}", APP_SECRET.as_bytes())),
        ("the master key (base64)".to_owned(), MASTER_KEY_B64.to_owned()),
        ("the master key (hex)".to_owned(), hex::encode(&master)),
        ("the master key (HEX)".to_owned(), hex::encode_upper(&master)),
        ("the master key's bytes".to_owned(), format!("{master:?}")),
        ("the JWT secret".to_owned(), JWT_SECRET.to_owned()),
        ("the JWT secret (base64)".to_owned(), STANDARD.encode(JWT_SECRET)),
        ("a claim value no rule uses".to_owned(), PRIVATE_CLAIM.to_owned()),
    ];
    for (i, jwt) in jwts.iter().enumerate() {
        let parts: Vec<&str> = jwt.split('.').collect();
        needles.push((format!("JWT #{i}"), jwt.clone()));
        needles.push((format!("JWT #{i}'s payload part"), parts[1].to_owned()));
        if parts[2].len() >= 16 {
            needles.push((format!("JWT #{i}'s signature part"), parts[2].to_owned()));
        }
    }
    for s in sent {
        if let Some(secret) = s.body.get("shared_secret").and_then(Value::as_str) {
            needles.push((format!("the shared_secret returned to `{}`", s.what), secret.to_owned()));
        }
    }
    needles
}

async fn secrets_stay_out_of_logs(level: &str, json_format: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, out, err) = spawn(dir.path(), level, json_format);
    let addr = wait_for_addr(&mut server, &out, &err);
    let (sent, jwts) = drive(&format!("http://{addr}")).await;
    let stopped = server.terminate().await;
    let logs = read_logs(&out, &err);
    let label = format!("RUST_LOG={level}{}", if json_format { ", --log-format json" } else { "" });

    let mut problems = Vec::new();
    for s in &sent {
        if s.got != s.want {
            problems
                .push(format!("request `{}`: status {} (want {}), body {}", s.what, s.got, s.want, s.body));
        }
    }
    if !sent.iter().any(|s| s.body.get("shared_secret").is_some()) {
        problems
            .push("no shared_secret was returned, so its absence from the logs proves nothing".to_owned());
    }
    for (what, needle) in forbidden(&jwts, &sent) {
        if let Some(at) = logs.find(&needle) {
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            problems.push(format!("LEAK of {what}: {}", &logs[line_start..line_end]));
        }
    }
    if logs.lines().any(|line| line.starts_with("INJECTED-LOG-LINE")) {
        problems.push("a request field started its own log line (log injection)".to_owned());
    }
    // The log is not empty: the level took effect, and decisions and
    // refusals were recorded.
    for expected in [
        "listening on",
        "DEBUG",
        "private-user-alice",
        "private-user-bob",
        "rule_denied",
        "no_rule_matched",
        "presence_data_too_large",
        "token_expired",
        "invalid_signature",
        "invalid_audience",
        "algorithm_not_allowed",
        "invalid_socket_id",
        "body_too_large",
        "unsupported_media_type",
        "token_missing",
    ] {
        if !logs.contains(expected) {
            problems.push(format!("the logs lack `{expected}`"));
        }
    }
    assert!(problems.is_empty(), "{label} ({stopped}):\n{}\n--- logs ---\n{logs}", problems.join("\n"));
}

#[tokio::test]
async fn debug_logs_hold_no_secret_and_no_token() {
    secrets_stay_out_of_logs("debug", false).await;
}

#[tokio::test]
async fn trace_logs_hold_no_secret_and_no_token() {
    secrets_stay_out_of_logs("trace", false).await;
}

#[tokio::test]
async fn json_debug_logs_hold_no_secret_and_no_token() {
    secrets_stay_out_of_logs("debug", true).await;
}
