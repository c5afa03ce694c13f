//! The adversarial suite (hardening item 7): forged and malformed tokens,
//! smuggled fields and names, captures that try to leave their rule,
//! oversized and mislabelled bodies. Every case asserts the exact status,
//! the reason code and that nothing signed came back (`auth`,
//! `channel_data`, `user_data`, `shared_secret`). Data-driven: one table per
//! gateway, one runner that reports every mismatch in a single message.
//!
//! Three gateways: the shared HS256 one of `support` (token from the
//! `Authorization` header, the `session` cookie or the `token` form field;
//! leeway 5s; body limit 8 KiB; presence limit 1 KiB), one trusting a single
//! RSA public key (PEM) and one trusting a JWKS file with two keys (`k1`,
//! `k2`). A few `allowed` controls per table show that each refusal is due
//! to its one flaw and not to a broken fixture.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use channelgate::app::App;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{APP_KEY, APP_SECRET, AUDIENCE, Gateway, ISSUER, JWT_SECRET, POLICY, now};

const SOCKET: &str = "1234.5678";
const OWN: &str = "private-user-alice";
/// An origin the test config allows (cookie sessions may require it).
const ORIGIN: &str = "https://app.example.com";
/// Response keys that carry something signed or secret.
const SIGNED_KEYS: [&str; 4] = ["auth", "channel_data", "user_data", "shared_secret"];
/// The body limit of the test gateways (the default).
const BODY_LIMIT: usize = 8 * 1024;
/// The longest token the verifier accepts.
const TOKEN_LIMIT: usize = 8 * 1024;

// ---------------------------------------------------------------- requests

/// What is sent after the headers.
#[derive(Clone)]
enum Payload {
    Bytes(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked`, no `Content-Length`.
    Chunked(Vec<u8>),
    /// A whole HTTP/1.1 request, written as is to a fresh TCP connection.
    Raw(Vec<u8>),
}

#[derive(Clone)]
struct Req {
    method: reqwest::Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    payload: Payload,
}

impl Req {
    fn post(path: impl Into<String>, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Self {
        let headers = content_type.map(|ct| vec![("content-type", ct.to_owned())]).unwrap_or_default();
        Self {
            method: reqwest::Method::POST,
            path: path.into(),
            headers,
            payload: Payload::Bytes(body.into()),
        }
    }

    /// A form to the channel endpoint, as pusher-js sends it.
    fn form(pairs: &[(&str, &str)]) -> Self {
        Self::post("/pusher/auth", Some("application/x-www-form-urlencoded"), encode_form(pairs))
    }

    /// A form to the user (sign-in) endpoint.
    fn user_form(pairs: &[(&str, &str)]) -> Self {
        Self::post("/pusher/user-auth", Some("application/x-www-form-urlencoded"), encode_form(pairs))
    }

    /// A JSON body (raw text) to the channel endpoint.
    fn json(text: &str) -> Self {
        Self::post("/pusher/auth", Some("application/json"), text)
    }

    /// The usual private-channel request for `alice`.
    fn own() -> Self {
        Self::form(&[("socket_id", SOCKET), ("channel_name", OWN)])
    }

    fn raw(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            method: reqwest::Method::POST,
            path: "/pusher/auth".to_owned(),
            headers: Vec::new(),
            payload: Payload::Raw(bytes.into()),
        }
    }

    fn method(mut self, method: reqwest::Method) -> Self {
        self.method = method;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// The token in the `session` cookie, from an allowed origin.
    fn cookie(self, token: &str) -> Self {
        self.header("cookie", format!("session={token}")).header("origin", ORIGIN)
    }

    /// The same body, streamed without a `Content-Length`.
    fn chunked(mut self) -> Self {
        if let Payload::Bytes(bytes) = self.payload {
            self.payload = Payload::Chunked(bytes);
        }
        self
    }
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

// ------------------------------------------------------------------- cases

enum Want {
    /// This status and reason, an error message, nothing signed.
    Refused(u16, &'static str),
    /// A control: 200 with an `auth` signature.
    Allowed,
}

struct Case {
    name: String,
    req: Req,
    want: Want,
}

fn refused(name: impl Into<String>, req: Req, status: u16, reason: &'static str) -> Case {
    Case { name: name.into(), req, want: Want::Refused(status, reason) }
}

fn allowed(name: impl Into<String>, req: Req) -> Case {
    Case { name: name.into(), req, want: Want::Allowed }
}

/// What came back.
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

fn client() -> reqwest::Client {
    // A fresh connection per request: a refusal may leave a body unread,
    // and a reused connection must not turn that into a flaky send error.
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

async fn send(client: &reqwest::Client, addr: SocketAddr, req: &Req) -> Result<Answer, String> {
    if let Payload::Raw(bytes) = &req.payload {
        return send_raw(addr, bytes).await;
    }
    let mut builder = client.request(req.method.clone(), format!("http://{addr}{}", req.path));
    for (name, value) in &req.headers {
        let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes())
            .map_err(|e| format!("test bug: header {name} is not sendable: {e}"))?;
        builder = builder.header(*name, value);
    }
    builder = match &req.payload {
        Payload::Raw(_) => builder,
        Payload::Bytes(bytes) => builder.body(bytes.clone()),
        Payload::Chunked(bytes) => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
            builder.body(reqwest::Body::wrap_stream(tokio_stream::iter(chunks)))
        }
    };
    let resp = builder.send().await.map_err(|e| format!("no response: {e}"))?;
    let status = resp.status().as_u16();
    let www_authenticate =
        resp.headers().get("www-authenticate").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let text = resp.text().await.map_err(|e| format!("body unreadable: {e}"))?;
    Ok(Answer { status, www_authenticate, body: parse_body(&text) })
}

fn parse_body(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    }
}

/// Writes a hand-made HTTP/1.1 request and reads one response
/// (`Content-Length` framed, as every channelgate answer is).
async fn send_raw(addr: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(answer) = parse_raw_response(&buf) {
                return Ok(answer);
            }
            match stream.read(&mut chunk).await {
                Ok(0) => return parse_raw_response(&buf).ok_or_else(|| "connection closed early".to_owned()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return parse_raw_response(&buf).ok_or_else(|| format!("read: {e}")),
            }
        }
    })
    .await;
    read.unwrap_or_else(|_| Err("no complete response within 10s".to_owned()))
}

fn parse_raw_response(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0;
    let mut www_authenticate = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().ok()?;
        } else if name.eq_ignore_ascii_case("www-authenticate") {
            www_authenticate = Some(value.trim().to_owned());
        }
    }
    let body = buf.get(end + 4..end + 4 + length)?;
    Some(Answer { status, www_authenticate, body: parse_body(&String::from_utf8_lossy(body)) })
}

/// What is wrong with `answer` for `want`, if anything.
fn mismatch(want: &Want, answer: &Answer) -> Option<String> {
    let body = &answer.body;
    let signed: Vec<&str> = SIGNED_KEYS.iter().copied().filter(|k| body.get(*k).is_some()).collect();
    match *want {
        Want::Refused(status, reason) => {
            let mut problems = Vec::new();
            if answer.status != status {
                problems.push(format!("status {} (want {status})", answer.status));
            }
            if body.get("reason").and_then(Value::as_str) != Some(reason) {
                problems
                    .push(format!("reason {} (want {reason:?})", body.get("reason").unwrap_or(&Value::Null)));
            }
            if !signed.is_empty() {
                problems.push(format!("SIGNED: carries {signed:?}"));
            }
            if body.get("error").and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push("no error message".to_owned());
            }
            if status == 401 && !answer.www_authenticate.as_deref().is_some_and(|v| v.starts_with("Bearer")) {
                problems.push("401 without WWW-Authenticate: Bearer".to_owned());
            }
            (!problems.is_empty()).then(|| format!("{}; body {body}", problems.join(", ")))
        }
        Want::Allowed => {
            let ok = answer.status == 200 && body.get("auth").is_some_and(Value::is_string);
            (!ok).then(|| format!("control not allowed: status {}, body {body}", answer.status))
        }
    }
}

/// Runs every case against `addr` and returns one line per mismatch.
async fn run_table(label: &str, addr: SocketAddr, cases: &[Case]) -> Vec<String> {
    let client = client();
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for case in cases {
        if !names.insert(case.name.as_str()) {
            failures.push(format!("[{label}] {}: test bug: duplicated case name", case.name));
        }
        match send(&client, addr, &case.req).await {
            Ok(answer) => {
                if let Some(problem) = mismatch(&case.want, &answer) {
                    failures.push(format!("[{label}] {}: {problem}", case.name));
                }
            }
            Err(e) => failures.push(format!("[{label}] {}: {e}", case.name)),
        }
    }
    failures
}

fn refusals(cases: &[Case]) -> usize {
    cases.iter().filter(|c| matches!(c.want, Want::Refused(..))).count()
}

fn assert_table(label: &str, cases: &[Case], failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{label}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------ tokens

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How the third part of a token is made.
enum Sig<'a> {
    /// HMAC with this secret.
    Hmac(Algorithm, &'a [u8]),
    /// RSA with this private key (PKCS#8 PEM).
    Rsa(Algorithm, &'a str),
    /// This text, as is.
    Literal(&'a str),
}

fn sign_part(alg: Algorithm, key: &EncodingKey, input: &str) -> String {
    jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap()
}

/// `header.payload.signature` over already encoded parts.
fn jws_parts(header: &str, payload: &str, sig: Sig<'_>) -> String {
    let input = format!("{header}.{payload}");
    let sig = match sig {
        Sig::Hmac(alg, secret) => sign_part(alg, &EncodingKey::from_secret(secret).unwrap(), &input),
        Sig::Rsa(alg, pem) => sign_part(alg, &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), &input),
        Sig::Literal(text) => text.to_owned(),
    };
    format!("{input}.{sig}")
}

/// A token from raw header and payload bytes (duplicated members, broken
/// JSON and non-UTF-8 stay as written).
fn jws(header: impl AsRef<[u8]>, payload: impl AsRef<[u8]>, sig: Sig<'_>) -> String {
    jws_parts(&b64(header.as_ref()), &b64(payload.as_ref()), sig)
}

const HS_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
const RS_HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

fn hs_key() -> Sig<'static> {
    Sig::Hmac(Algorithm::HS256, JWT_SECRET.as_bytes())
}

/// Valid claims for `alice`, with `set` merged in and `drop` removed.
fn claims(set: Value, drop: &[&str]) -> String {
    let t = now();
    let mut claims = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": t, "exp": t + 600});
    if let Value::Object(set) = set {
        for (k, v) in set {
            claims[k] = v;
        }
    }
    if let Value::Object(map) = &mut claims {
        for k in drop {
            map.remove(*k);
        }
    }
    claims.to_string()
}

/// A correctly signed HS256 token with the given changes to the claims.
fn hs(set: Value) -> String {
    jws(HS_HEADER, claims(set, &[]), hs_key())
}

fn hs_without(drop: &[&str]) -> String {
    jws(HS_HEADER, claims(json!({}), drop), hs_key())
}

/// A correctly signed HS256 token under a header with extra members.
fn hs_header(extra: Value) -> String {
    let mut header = json!({"alg": "HS256", "typ": "JWT"});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            header[k] = v;
        }
    }
    jws(header.to_string(), claims(json!({}), &[]), hs_key())
}

/// An RS256 token signed with `pem`, header members `extra` added.
fn rs(extra: Value, set: Value, pem: &str) -> String {
    rs_alg(Algorithm::RS256, "RS256", extra, set, pem)
}

fn rs_alg(alg: Algorithm, name: &str, extra: Value, set: Value, pem: &str) -> String {
    let mut header = json!({"alg": name, "typ": "JWT"});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            header[k] = v;
        }
    }
    jws(header.to_string(), claims(set, &[]), Sig::Rsa(alg, pem))
}

/// A correctly signed HS256 token exactly `len` bytes long (a padding
/// claim grows it).
fn token_of_len(len: usize) -> String {
    // Each padding byte adds 4/3 of a character; start a little short.
    let bare = hs(json!({"pad": ""})).len();
    let start = (len.saturating_sub(bare) * 3 / 4).saturating_sub(8);
    for pad in start..len {
        let t = hs(json!({"pad": "p".repeat(pad)}));
        if t.len() == len {
            return t;
        }
    }
    panic!("test bug: no token of exactly {len} bytes");
}

/// The attacker's public key as a JWK (the public half of `RSA2_PRIVATE_PEM`).
fn attacker_jwk() -> Value {
    json!({"kty": "RSA", "kid": "k1", "n": RSA2_N, "e": "AQAB"})
}

/// Header members that name keys outside the configuration; the verifier
/// must never fetch or trust them.
fn key_pointers() -> Vec<(&'static str, Value)> {
    vec![
        ("jku", json!({"jku": "https://attacker.example/jwks.json"})),
        ("x5u", json!({"x5u": "https://attacker.example/cert.pem"})),
        ("jwk", json!({"jwk": attacker_jwk()})),
        ("x5c", json!({"x5c": [STANDARD.encode(b"not a certificate but trusted nonetheless?")]})),
    ]
}

// -------------------------------------------------------------- gateways

/// The shared HS256 gateway of `support` (its config switches rate limiting
/// off, so a few hundred requests in a row are not throttled).
async fn hs_gateway() -> Gateway {
    Gateway::start().await
}

fn key_config(key_source: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
pusher:
  app_id: "1001"
  key: {APP_KEY}
  secret: {{ file: pusher.secret }}
session:
  token_from:
    - header: Authorization
  jwt:
    algorithms: [RS256]
    {key_source}
    issuer: {ISSUER}
    audience: {AUDIENCE}
    leeway: 5s
policies: policies
audit:
  enabled: false
reload:
  watch: false
rate_limit:
  enabled: false
"#
    )
}

/// A gateway whose session keys are RSA (RS256 only); stops when dropped.
/// `key_source` is the issuer's key line (`public_key: ...` or
/// `jwks_file: ...`); `files` are written beside the config.
async fn key_gateway(key_source: &str, files: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("pusher.secret"), format!("{APP_SECRET}\n")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/main.yaml"), POLICY).unwrap();
    // Rate limiting off (DESIGN §10) so the table is not throttled.
    let path = dir.path().join("channelgate.yaml");
    std::fs::write(&path, key_config(key_source)).unwrap();
    let app = App::load(&path).unwrap_or_else(|e| panic!("rsa test config does not load: {e}"));
    Gateway::serve(dir, app).await
}

// ------------------------------------------------------- HS256 gateway

/// `alg` games: `none` in every casing, near-miss spellings, algorithms
/// that are real but not allowed, and headers that are not what they seem.
fn algorithm_cases() -> Vec<Case> {
    let body = claims(json!({}), &[]);
    let mut cases = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE", "NoNe"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = jws(&header, &body, Sig::Literal(""));
        cases.push(refused(
            format!("alg {alg}, empty signature"),
            Req::own().bearer(&unsigned),
            401,
            "algorithm_not_allowed",
        ));
    }
    // `none` with a real HMAC over the input: still refused before any crypto.
    let none_signed = jws(r#"{"alg":"none"}"#, &body, hs_key());
    cases.push(refused(
        "alg none with an HMAC signature",
        Req::own().bearer(&none_signed),
        401,
        "algorithm_not_allowed",
    ));
    let none_cookie = jws(r#"{"alg":"NONE"}"#, &body, Sig::Literal(""));
    cases.push(refused(
        "alg NONE in the cookie",
        Req::own().cookie(&none_cookie),
        401,
        "algorithm_not_allowed",
    ));
    for (what, alg) in [
        ("empty alg", ""),
        ("lowercase hs256", "hs256"),
        ("alg with a trailing space", "HS256 "),
        ("alg with a NUL", "HS256\u{0}"),
        ("RS256 on an HMAC gateway", "RS256"),
        ("PS256 on an HMAC gateway", "PS256"),
        ("ES256 on an HMAC gateway", "ES256"),
        ("EdDSA on an HMAC gateway", "EdDSA"),
    ] {
        let header = json!({"alg": alg, "typ": "JWT"}).to_string();
        let t = jws(header, &body, hs_key());
        cases.push(refused(what, Req::own().bearer(&t), 401, "algorithm_not_allowed"));
    }
    // HS512 with the right secret: a real algorithm of the right family, not on the allow-list.
    let hs512 = jws(r#"{"alg":"HS512"}"#, &body, Sig::Hmac(Algorithm::HS512, JWT_SECRET.as_bytes()));
    cases.push(refused(
        "HS512 with the right secret, only HS256 allowed",
        Req::own().bearer(&hs512),
        401,
        "algorithm_not_allowed",
    ));
    for (what, header) in [
        ("alg missing", r#"{"typ":"JWT"}"#.to_owned()),
        ("alg a number", r#"{"alg":256}"#.to_owned()),
        ("alg a list", r#"{"alg":["HS256"]}"#.to_owned()),
        ("alg null", r#"{"alg":null}"#.to_owned()),
        ("alg duplicated (HS256 then none)", r#"{"alg":"HS256","alg":"none"}"#.to_owned()),
        ("alg duplicated (none then HS256)", r#"{"alg":"none","alg":"HS256"}"#.to_owned()),
        ("crit header", r#"{"alg":"HS256","crit":["exp"],"exp":1}"#.to_owned()),
        ("b64 false (unencoded payload)", r#"{"alg":"HS256","b64":false}"#.to_owned()),
        ("kid a number", r#"{"alg":"HS256","kid":1}"#.to_owned()),
    ] {
        let t = jws(header, &body, hs_key());
        cases.push(refused(what, Req::own().bearer(&t), 401, "token_malformed"));
    }
    // Key pointers in the header are ignored: signed with the attacker's
    // secret, they do not verify; signed with ours, they change nothing.
    for (name, pointer) in key_pointers() {
        let mut header = json!({"alg": "HS256", "typ": "JWT"});
        if let Value::Object(extra) = pointer {
            for (k, v) in extra {
                header[k] = v;
            }
        }
        let forged = jws(
            header.to_string(),
            &body,
            Sig::Hmac(Algorithm::HS256, b"attacker-secret-attacker-secret-attacker"),
        );
        cases.push(refused(
            format!("{name} header, attacker's HMAC secret"),
            Req::own().bearer(&forged),
            401,
            "invalid_signature",
        ));
    }
    let all: serde_json::Map<String, Value> =
        key_pointers().into_iter().filter_map(|(_, v)| v.as_object().cloned()).flatten().collect();
    cases.push(allowed(
        "control: jku/x5u/jwk/x5c ignored on a genuine token",
        Req::own().bearer(&hs_header(Value::Object(all))),
    ));
    cases
}

/// Tokens that are not compact JWS: parts, base64, JSON.
fn structure_cases() -> Vec<Case> {
    let header = b64(HS_HEADER.as_bytes());
    let body = claims(json!({}), &[]);
    let payload = b64(body.as_bytes());
    let good = jws(HS_HEADER, &body, hs_key());
    let sig = good.rsplit('.').next().unwrap().to_owned();
    let malformed =
        |what: &str, token: String| refused(what, Req::own().bearer(&token), 401, "token_malformed");

    // A header whose base64 needs padding ("=="), sent padded and signed over the padded text.
    let padded_header = r#"{"alg":"HS256","ab":1}"#;
    assert_eq!(padded_header.len() % 3, 1);
    // A payload whose standard-alphabet base64 holds `+` or `/`.
    let std_payload = (0..3)
        .map(|shift| claims(json!({"x": format!("{}???>>>???>>>", "a".repeat(shift))}), &[]))
        .map(|text| STANDARD_NO_PAD.encode(text))
        .find(|enc| enc.contains(['+', '/']))
        .unwrap();
    vec![
        malformed("one part", "abc".to_owned()),
        malformed("two parts", format!("{header}.{payload}")),
        malformed("four parts", format!("{good}.{sig}")),
        malformed("three empty parts", "..".to_owned()),
        malformed("x.y.z", "x.y.z".to_owned()),
        malformed("leading dot", format!(".{good}")),
        malformed("trailing dot", format!("{good}.")),
        malformed("padded base64 header", jws_parts(&STANDARD.encode(padded_header), &payload, hs_key())),
        malformed("standard-alphabet base64 payload", jws_parts(&header, &std_payload, hs_key())),
        malformed("signature with a `!`", format!("{header}.{payload}.{}!", &sig[1..])),
        malformed("signature padded with `=`", format!("{good}=")),
        malformed("header not JSON", jws("not json", &body, hs_key())),
        malformed("header a JSON array", jws(r#"["HS256"]"#, &body, hs_key())),
        malformed("header a JSON string", jws(r#""HS256""#, &body, hs_key())),
        malformed("payload truncated JSON", jws(HS_HEADER, &body[..body.len() - 1], hs_key())),
        malformed("payload with trailing garbage", jws(HS_HEADER, format!("{body}x"), hs_key())),
        malformed("payload a JSON array", jws(HS_HEADER, r#"[{"sub":"alice"}]"#, hs_key())),
        malformed(
            "payload not UTF-8",
            jws(HS_HEADER, [&body.as_bytes()[..10], b"\xff\xfe", &body.as_bytes()[10..]].concat(), hs_key()),
        ),
        malformed(
            "payload with a lone surrogate",
            jws(HS_HEADER, format!(r#"{{"x":"\ud800",{}"#, &body[1..]), hs_key()),
        ),
        malformed(
            "payload with a duplicated sub",
            jws(HS_HEADER, format!(r#"{{"sub":"bob",{}"#, &body[1..]), hs_key()),
        ),
        refused(
            "empty signature",
            Req::own().bearer(&format!("{header}.{payload}.")),
            401,
            "invalid_signature",
        ),
        // 40 of 43 characters: still canonical base64url, 30 bytes instead of 32.
        refused("truncated signature", Req::own().bearer(&good[..good.len() - 3]), 401, "invalid_signature"),
        refused(
            "alice's signature over bob's payload",
            Req::own()
                .bearer(&format!("{header}.{}.{sig}", b64(claims(json!({"sub": "bob"}), &[]).as_bytes()))),
            401,
            "invalid_signature",
        ),
        refused(
            "signed with another secret",
            Req::own().bearer(&jws(
                HS_HEADER,
                &body,
                Sig::Hmac(Algorithm::HS256, b"not-the-secret-not-the-secret-not-the"),
            )),
            401,
            "invalid_signature",
        ),
        refused(
            "signed with the Pusher secret",
            Req::own().bearer(&jws(HS_HEADER, &body, Sig::Hmac(Algorithm::HS256, APP_SECRET.as_bytes()))),
            401,
            "invalid_signature",
        ),
    ]
}

/// Claim checks: time, issuer, audience, presence and types.
fn claim_cases() -> Vec<Case> {
    let t = now();
    let bad = |what: &str, token: String, reason: &'static str| {
        refused(what, Req::own().bearer(&token), 401, reason)
    };
    vec![
        bad("expired a minute ago", hs(json!({"exp": t - 60})), "token_expired"),
        bad("expired 10s ago, beyond the 5s leeway", hs(json!({"exp": t - 10})), "token_expired"),
        bad("exp 0", hs(json!({"exp": 0})), "token_expired"),
        bad("exp negative", hs(json!({"exp": -1})), "token_expired"),
        allowed("control: expired 1s ago, within the leeway", Req::own().bearer(&hs(json!({"exp": t - 1})))),
        bad("nbf a minute ahead", hs(json!({"nbf": t + 60})), "token_not_yet_valid"),
        bad("nbf 20s ahead, beyond the leeway", hs(json!({"nbf": t + 20})), "token_not_yet_valid"),
        allowed("control: nbf 2s ahead, within the leeway", Req::own().bearer(&hs(json!({"nbf": t + 2})))),
        bad("iat a minute ahead", hs(json!({"iat": t + 60})), "token_not_yet_valid"),
        bad("iat 20s ahead, beyond the leeway", hs(json!({"iat": t + 20})), "token_not_yet_valid"),
        bad(
            "iat a year ahead, exp after it",
            hs(json!({"iat": t + 31_536_000, "exp": t + 31_536_600})),
            "token_not_yet_valid",
        ),
        allowed("control: iat 2s ahead, within the leeway", Req::own().bearer(&hs(json!({"iat": t + 2})))),
        bad("wrong iss", hs(json!({"iss": "https://evil.test"})), "invalid_issuer"),
        bad("iss with a trailing slash", hs(json!({"iss": format!("{ISSUER}/")})), "invalid_issuer"),
        bad("iss in upper case", hs(json!({"iss": ISSUER.to_uppercase()})), "invalid_issuer"),
        bad("iss empty", hs(json!({"iss": ""})), "invalid_issuer"),
        bad("iss missing", hs_without(&["iss"]), "invalid_issuer"),
        bad("wrong aud", hs(json!({"aud": "other-app"})), "invalid_audience"),
        bad("aud in upper case", hs(json!({"aud": AUDIENCE.to_uppercase()})), "invalid_audience"),
        bad("aud list without ours", hs(json!({"aud": ["other-app", "x"]})), "invalid_audience"),
        bad("aud list with ours and a number", hs(json!({"aud": [AUDIENCE, 7]})), "invalid_audience"),
        bad("aud an object", hs(json!({"aud": {"aud": AUDIENCE}})), "invalid_audience"),
        bad("aud missing", hs_without(&["aud"]), "invalid_audience"),
        bad("sub missing", hs_without(&["sub"]), "missing_claim"),
        bad("exp missing", hs_without(&["exp"]), "missing_claim"),
        bad("empty claims object", jws(HS_HEADER, "{}", hs_key()), "missing_claim"),
        bad("sub a number", hs(json!({"sub": 42})), "invalid_claims"),
        bad("sub a float", hs(json!({"sub": 4.2})), "invalid_claims"),
        bad("sub a boolean", hs(json!({"sub": true})), "invalid_claims"),
        bad("sub an array", hs(json!({"sub": ["alice"]})), "invalid_claims"),
        bad("sub an object", hs(json!({"sub": {"id": "alice"}})), "invalid_claims"),
        bad("iss an array", hs(json!({"iss": [ISSUER]})), "invalid_claims"),
        bad("jti a number", hs(json!({"jti": 5})), "invalid_claims"),
        bad("sid an array", hs(json!({"sid": []})), "invalid_claims"),
        bad("exp a string", hs(json!({"exp": (t + 600).to_string()})), "invalid_claims"),
        bad("nbf a string", hs(json!({"nbf": "0"})), "invalid_claims"),
        bad("iat a boolean", hs(json!({"iat": true})), "invalid_claims"),
    ]
}

/// Where the token comes from: absent, ambiguous, oversized.
fn source_cases() -> Vec<Case> {
    let good = hs(json!({}));
    let forged = jws(
        HS_HEADER,
        claims(json!({}), &[]),
        Sig::Hmac(Algorithm::HS256, b"forged-forged-forged-forged-forged-forged"),
    );
    let too_long = token_of_len(TOKEN_LIMIT + 1);
    let longest = token_of_len(TOKEN_LIMIT);
    let huge_in_form = token_of_len(9000);
    vec![
        refused("no token anywhere", Req::own(), 401, "token_missing"),
        refused(
            "token in the query string is not read",
            Req::post(
                format!("/pusher/auth?token={good}"),
                Some("application/x-www-form-urlencoded"),
                format!("socket_id={SOCKET}&channel_name={OWN}"),
            ),
            401,
            "token_missing",
        ),
        refused(
            "Bearer token with a non-ASCII byte",
            Req::own().bearer(&format!("{good}é")),
            401,
            "token_malformed",
        ),
        refused(
            "Authorization: Basic only",
            Req::own().header("authorization", "Basic YWxpY2U6cGFzcw=="),
            401,
            "token_missing",
        ),
        refused(
            "Authorization: Bearer with nothing",
            Req::own().header("authorization", "Bearer "),
            401,
            "token_missing",
        ),
        refused(
            "empty token form field",
            Req::form(&[("socket_id", SOCKET), ("channel_name", OWN), ("token", "")]),
            401,
            "token_missing",
        ),
        refused(
            "Bearer with two tokens",
            Req::own().header("authorization", format!("Bearer {good} {good}")),
            401,
            "token_malformed",
        ),
        refused("Authorization header twice", Req::own().bearer(&good).bearer(&good), 401, "token_malformed"),
        refused(
            "session cookie twice in one header",
            Req::own().header("cookie", format!("session={good}; session={forged}")).header("origin", ORIGIN),
            401,
            "token_malformed",
        ),
        refused(
            "session cookie in two headers",
            Req::own().cookie(&good).header("cookie", format!("session={good}")),
            401,
            "token_malformed",
        ),
        refused(
            "token form field twice",
            Req::form(&[("socket_id", SOCKET), ("channel_name", OWN), ("token", &good), ("token", &forged)]),
            401,
            "token_malformed",
        ),
        // Sources are tried in order and the first one present decides: a
        // bad header never falls through to a good cookie.
        refused(
            "forged bearer beside a genuine cookie",
            Req::own().bearer(&forged).cookie(&good),
            401,
            "invalid_signature",
        ),
        refused("forged token in the cookie", Req::own().cookie(&forged), 401, "invalid_signature"),
        refused(
            "forged token in the form field",
            Req::form(&[("socket_id", SOCKET), ("channel_name", OWN), ("token", &forged)]),
            401,
            "invalid_signature",
        ),
        // Token limit (8 KiB) in a header or cookie: the body stays small.
        refused(
            "genuine token of 8 KiB + 1 in the header",
            Req::own().bearer(&too_long),
            401,
            "token_malformed",
        ),
        refused(
            "genuine token of 8 KiB + 1 in the cookie",
            Req::own().cookie(&too_long),
            401,
            "token_malformed",
        ),
        allowed("control: genuine token of exactly 8 KiB in the header", Req::own().bearer(&longest)),
        // In the form, the body limit (8 KiB) is hit before the token limit.
        refused(
            "9000-byte token in the form field hits the body limit",
            Req::form(&[("socket_id", SOCKET), ("channel_name", OWN), ("token", &huge_in_form)]),
            413,
            "body_too_large",
        ),
        allowed("control: genuine token in the cookie", Req::own().cookie(&good)),
        allowed(
            "control: genuine token in the form field",
            Req::form(&[("socket_id", SOCKET), ("channel_name", OWN), ("token", &good)]),
        ),
    ]
}

/// Duplicated, missing and smuggled request fields.
fn field_cases(t: &str) -> Vec<Case> {
    let f = |pairs: &[(&str, &str)]| Req::form(pairs).bearer(t);
    let uf = |pairs: &[(&str, &str)]| Req::user_form(pairs).bearer(t);
    let batch: Vec<(String, String)> =
        (0..51).map(|i| (format!("channel_name[{i}]"), format!("private-user-alice-{i}"))).collect();
    let mut batch_pairs: Vec<(&str, &str)> = vec![("socket_id", SOCKET)];
    batch_pairs.extend(batch.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    vec![
        refused(
            "socket_id twice",
            f(&[("socket_id", SOCKET), ("socket_id", "9.9"), ("channel_name", OWN)]),
            400,
            "duplicate_field",
        ),
        refused(
            "socket_id twice, same value",
            f(&[("socket_id", SOCKET), ("socket_id", SOCKET), ("channel_name", OWN)]),
            400,
            "duplicate_field",
        ),
        refused(
            "channel_name twice",
            f(&[("socket_id", SOCKET), ("channel_name", OWN), ("channel_name", "private-user-bob")]),
            400,
            "duplicate_field",
        ),
        refused(
            "socket_id twice, once percent-encoded",
            Req::post(
                "/pusher/auth",
                Some("application/x-www-form-urlencoded"),
                format!("socket_id={SOCKET}&socket%5Fid=9.9&channel_name={OWN}"),
            )
            .bearer(t),
            400,
            "duplicate_field",
        ),
        refused(
            "socket_id twice at user-auth",
            uf(&[("socket_id", SOCKET), ("socket_id", "9.9")]),
            400,
            "duplicate_field",
        ),
        refused(
            "JSON with socket_id twice",
            Req::json(&format!(r#"{{"socket_id":"{SOCKET}","socket_id":"9.9","channel_name":"{OWN}"}}"#))
                .bearer(t),
            400,
            "duplicate_field",
        ),
        refused(
            "JSON with channel_name twice",
            Req::json(&format!(
                r#"{{"socket_id":"{SOCKET}","channel_name":"{OWN}","channel_name":"private-user-bob"}}"#
            ))
            .bearer(t),
            400,
            "duplicate_field",
        ),
        refused(
            "channel_name and channel_name[0]",
            f(&[("socket_id", SOCKET), ("channel_name", OWN), ("channel_name[0]", OWN)]),
            400,
            "invalid_field",
        ),
        refused(
            "channel_name[0] twice",
            f(&[("socket_id", SOCKET), ("channel_name[0]", OWN), ("channel_name[0]", "private-user-bob")]),
            400,
            "duplicate_field",
        ),
        refused(
            "channel_name[x]",
            f(&[("socket_id", SOCKET), ("channel_name[x]", OWN)]),
            400,
            "invalid_field",
        ),
        refused("channel_name[]", f(&[("socket_id", SOCKET), ("channel_name[]", OWN)]), 400, "invalid_field"),
        refused(
            "channel_name[-1]",
            f(&[("socket_id", SOCKET), ("channel_name[-1]", OWN)]),
            400,
            "invalid_field",
        ),
        refused(
            "channel_name[99999]",
            f(&[("socket_id", SOCKET), ("channel_name[99999]", OWN)]),
            400,
            "invalid_field",
        ),
        refused("batch of 51 channels", f(&batch_pairs), 400, "batch_too_large"),
        refused(
            "channel_name[0] and channel_name[00]",
            f(&[("socket_id", SOCKET), ("channel_name[0]", OWN), ("channel_name[00]", "private-user-bob")]),
            400,
            "duplicate_field",
        ),
        refused(
            "JSON with socket_id twice, once escaped",
            Req::json(&format!(
                r#"{{"socket_id":"{SOCKET}","socket\u005fid":"9.9","channel_name":"{OWN}"}}"#
            ))
            .bearer(t),
            400,
            "duplicate_field",
        ),
        // Only the body counts: fields in the query string are not read.
        refused(
            "channel_name in the query string only",
            Req::post(
                "/pusher/auth?channel_name=private-user-alice",
                Some("application/x-www-form-urlencoded"),
                format!("socket_id={SOCKET}"),
            )
            .bearer(t),
            400,
            "missing_field",
        ),
        refused("socket_id missing", f(&[("channel_name", OWN)]), 400, "missing_field"),
        refused("channel_name missing", f(&[("socket_id", SOCKET)]), 400, "missing_field"),
        refused("empty form", f(&[]), 400, "missing_field"),
        refused("socket_id missing at user-auth", uf(&[]), 400, "missing_field"),
        refused(
            "JSON socket_id a number",
            Req::json(&format!(r#"{{"socket_id":1234.5678,"channel_name":"{OWN}"}}"#)).bearer(t),
            400,
            "invalid_field",
        ),
        refused(
            "JSON channel_name a list",
            Req::json(&format!(r#"{{"socket_id":"{SOCKET}","channel_name":["{OWN}"]}}"#)).bearer(t),
            400,
            "invalid_field",
        ),
        refused(
            "JSON channel_name null",
            Req::json(&format!(r#"{{"socket_id":"{SOCKET}","channel_name":null}}"#)).bearer(t),
            400,
            "invalid_field",
        ),
        refused(
            "JSON channel_name[0] an object",
            Req::json(&format!(r#"{{"socket_id":"{SOCKET}","channel_name[0]":{{"n":1}}}}"#)).bearer(t),
            400,
            "invalid_field",
        ),
        refused(
            "batch with a forged session fails whole",
            Req::form(&[("socket_id", SOCKET), ("channel_name[0]", OWN)]).bearer(&jws(
                HS_HEADER,
                claims(json!({}), &[]),
                Sig::Hmac(Algorithm::HS256, b"forged-forged-forged-forged-forged-forged"),
            )),
            401,
            "invalid_signature",
        ),
    ]
}

/// Socket ids and channel names that try to smuggle a different string to sign.
fn name_cases(t: &str) -> Vec<Case> {
    let sock = |s: &str| Req::form(&[("socket_id", s), ("channel_name", OWN)]).bearer(t);
    let chan = |c: &str| Req::form(&[("socket_id", SOCKET), ("channel_name", c)]).bearer(t);
    let long_sock = format!("{}.{}", "1".repeat(32), "2".repeat(32));
    assert_eq!(long_sock.len(), 65);
    let own_201 = format!("{OWN}{}", "x".repeat(201 - OWN.len()));
    let bob_200 = format!("private-user-bob{}", "x".repeat(200 - 16));
    assert_eq!((own_201.len(), bob_200.len()), (201, 200));
    let mut cases = Vec::new();
    for (what, s) in [
        ("socket_id without a dot", "1234"),
        ("socket_id with a colon and a channel", "1234.5678:private-user-bob"),
        ("socket_id with a newline", "1234.5678\n"),
        ("socket_id with CRLF", "1234.5678\r\nx: y"),
        ("socket_id with a NUL", "1234.5678\u{0}"),
        ("socket_id in Arabic-Indic digits", "١٢٣٤.٥٦٧٨"),
        ("socket_id in fullwidth digits", "１２３４.５６７８"),
        ("socket_id in superscript digits", "¹²³⁴.⁵⁶⁷⁸"),
        ("socket_id with a leading space", " 1234.5678"),
        ("socket_id with a sign", "+1234.5678"),
        ("socket_id negative", "-1.2"),
        ("socket_id with two dots", "1.2.3"),
        ("socket_id with an exponent", "1e3.5"),
        ("socket_id empty", ""),
        ("socket_id without the left part", ".5678"),
        ("socket_id without the right part", "1234."),
        ("socket_id of 65 bytes", long_sock.as_str()),
    ] {
        cases.push(refused(what, sock(s), 400, "invalid_socket_id"));
    }
    cases.push(refused(
        "user-auth socket_id with ::user:: injection",
        Req::user_form(&[("socket_id", r#"1234.5678::user::{"id":"bob"}"#)]).bearer(t),
        400,
        "invalid_socket_id",
    ));
    for (what, c) in [
        ("channel with a colon", "private-user-alice:x"),
        ("channel with a newline", "private-user-alice\nx"),
        ("channel with a CR", "presence-room-1\r"),
        ("channel with a NUL", "private-user-alice\u{0}"),
        ("channel with a space", "private-user-alice "),
        ("channel #server-to-user-", "#server-to-user-alice"),
        ("channel #server-to-user- with a private prefix", "private-#server-to-user-alice"),
        ("channel with Arabic-Indic digits", "presence-room-١"),
        ("channel with a fullwidth letter", "private-user-ａlice"),
        ("channel with a right-to-left override", "private-user-alice\u{202e}"),
        ("channel with a slash", "private-user-alice/../bob"),
        ("channel with a percent", "private-user-alice%00"),
        ("channel empty", ""),
        ("channel of 201 characters", own_201.as_str()),
    ] {
        cases.push(refused(what, chan(c), 400, "invalid_channel_name"));
    }
    for (what, c) in [
        ("public channel", "my-public-channel"),
        ("upper-case PRIVATE- prefix is public", "PRIVATE-user-alice"),
        ("`private` without a dash is public", "privateuser-alice"),
    ] {
        cases.push(refused(what, chan(c), 400, "public_channel"));
    }
    cases.push(refused("200-character channel of another user", chan(&bob_200), 403, "rule_denied"));
    cases
}

/// Captures that try to escape their rule, presence data over the limit,
/// unusable user ids.
fn policy_cases() -> Vec<Case> {
    let alice = hs(json!({"rooms": ["1"], "team": "acme", "name": "Alice"}));
    let chan = |c: &str| Req::form(&[("socket_id", SOCKET), ("channel_name", c)]).bearer(&alice);
    let presence =
        |token: &str| Req::form(&[("socket_id", SOCKET), ("channel_name", "presence-room-1")]).bearer(token);
    let signin = |token: &str| Req::user_form(&[("socket_id", SOCKET)]).bearer(token);
    let member = |name: Value| hs(json!({"rooms": ["1"], "name": name}));
    let mut cases = Vec::new();
    for (what, c, reason) in [
        ("another user's channel", "private-user-bob", "rule_denied"),
        ("capture escape: private-user-alice-admin", "private-user-alice-admin", "rule_denied"),
        ("capture escape: private-user-alice.admin", "private-user-alice.admin", "rule_denied"),
        ("capture escape: private-user-alice;admin", "private-user-alice;admin", "rule_denied"),
        ("capture escape: private-user-alice@admin", "private-user-alice@admin", "rule_denied"),
        ("capture case: private-user-ALICE", "private-user-ALICE", "rule_denied"),
        ("capture escape: presence-room-1-staff", "presence-room-1-staff", "rule_denied"),
        ("capture escape: presence-room-1;2", "presence-room-1;2", "rule_denied"),
        (
            "capture escape: private-encrypted-team-acme-admin",
            "private-encrypted-team-acme-admin",
            "rule_denied",
        ),
        ("empty capture: private-user-", "private-user-", "no_rule_matched"),
        ("empty capture: presence-room-", "presence-room-", "no_rule_matched"),
        ("kind escape: private-encrypted-user-alice", "private-encrypted-user-alice", "no_rule_matched"),
        ("kind escape: presence-user-alice", "presence-user-alice", "no_rule_matched"),
        ("kind escape: private-room-1", "private-room-1", "no_rule_matched"),
        ("no rule: private-admin", "private-admin", "no_rule_matched"),
    ] {
        cases.push(refused(what, chan(c), 403, reason));
    }
    cases.push(allowed("control: own private channel", chan(OWN)));
    cases.push(allowed("control: own presence room", chan("presence-room-1")));
    // A missing claim makes the expression fail: deny with rule_error.
    cases.push(refused("presence room without a rooms claim", presence(&hs(json!({}))), 403, "rule_error"));
    cases.push(refused(
        "encrypted team without a team claim",
        Req::form(&[("socket_id", SOCKET), ("channel_name", "private-encrypted-team-acme")])
            .bearer(&hs(json!({}))),
        403,
        "rule_error",
    ));
    // presence.max_member_bytes is 1024 (the default); the limit is bytes
    // of the channel_data string as signed.
    cases.push(refused(
        "presence name of 2000 ASCII bytes",
        presence(&member(json!("n".repeat(2000)))),
        403,
        "presence_data_too_large",
    ));
    cases.push(refused(
        "presence name of 520 é (1040 bytes)",
        presence(&member(json!("é".repeat(520)))),
        403,
        "presence_data_too_large",
    ));
    cases.push(refused(
        "presence name of 270 emoji (1080 bytes)",
        presence(&member(json!("😀".repeat(270)))),
        403,
        "presence_data_too_large",
    ));
    cases.push(refused(
        "presence name of 200 control characters (escaped to 1200 bytes)",
        presence(&member(json!("\u{1}".repeat(200)))),
        403,
        "presence_data_too_large",
    ));
    cases.push(allowed("control: presence name of 900 bytes", presence(&member(json!("n".repeat(900))))));
    cases.push(refused(
        "presence with an empty sub",
        presence(&hs(json!({"sub": "", "rooms": ["1"]}))),
        403,
        "invalid_user_id",
    ));
    cases.push(refused(
        "presence with a 201-byte sub",
        presence(&hs(json!({"sub": "u".repeat(201), "rooms": ["1"]}))),
        403,
        "invalid_user_id",
    ));
    for (what, sub) in [
        ("sign-in id with a colon", "alice:admin"),
        ("sign-in id #server-to-user-", "#server-to-user-bob"),
        ("sign-in id with a newline", "alice\nbob"),
        ("sign-in id with a space", "alice bob"),
        ("sign-in id empty", ""),
    ] {
        cases.push(refused(what, signin(&hs(json!({"sub": sub}))), 403, "invalid_user_id"));
    }
    cases.push(allowed("control: sign-in", signin(&hs(json!({"name": "Alice"})))));
    cases
}

/// Content types that are not what they claim, and bodies over the limit.
fn body_cases(t: &str) -> Vec<Case> {
    let form = format!("socket_id={SOCKET}&channel_name={OWN}");
    let as_type = |ct: Option<&str>, body: &str| Req::post("/pusher/auth", ct, body.to_owned()).bearer(t);
    let mut cases = Vec::new();
    for (what, ct) in [
        ("no content type", None),
        ("text/plain", Some("text/plain")),
        ("text/html", Some("text/html; charset=utf-8")),
        ("multipart/form-data", Some("multipart/form-data; boundary=x")),
        ("application/xml", Some("application/xml")),
        ("form type with a suffix", Some("application/x-www-form-urlencoded-evil")),
        ("json type with a suffix", Some("application/jsonx")),
        ("application/problem+json", Some("application/problem+json")),
        ("a list of types", Some("application/json, application/x-www-form-urlencoded")),
        ("empty content type", Some("")),
    ] {
        cases.push(refused(
            format!("content type: {what}"),
            as_type(ct, &form),
            415,
            "unsupported_media_type",
        ));
    }
    cases.push(refused(
        "content type sent twice",
        as_type(Some("application/x-www-form-urlencoded"), &form).header("content-type", "application/json"),
        415,
        "unsupported_media_type",
    ));
    cases.push(allowed(
        "control: form type in another case, with charset",
        as_type(Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"), &form),
    ));
    let json_body = format!(r#"{{"socket_id":"{SOCKET}","channel_name":"{OWN}"}}"#);
    cases.push(refused(
        "JSON body labelled as a form",
        as_type(Some("application/x-www-form-urlencoded"), &json_body),
        400,
        "missing_field",
    ));
    cases.push(refused(
        "form body labelled as JSON",
        as_type(Some("application/json"), &form),
        400,
        "invalid_body",
    ));
    let nested = format!(
        r#"{{"socket_id":"{SOCKET}","channel_name":"{OWN}","x":{}1{}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let many: String = (0..300).map(|i| format!(r#""f{i}":"v","#)).collect();
    let many = format!(r#"{{{many}"socket_id":"{SOCKET}","channel_name":"{OWN}"}}"#);
    for (what, body) in [
        ("JSON array", format!(r#"[{json_body}]"#)),
        ("JSON string", r#""socket_id""#.to_owned()),
        ("JSON null", "null".to_owned()),
        ("JSON truncated", json_body[..json_body.len() - 1].to_owned()),
        ("JSON with trailing garbage", format!("{json_body}{{}}")),
        ("JSON nested 300 deep", nested),
        ("JSON with 302 fields", many),
    ] {
        cases.push(refused(what, Req::json(&body).bearer(t), 400, "invalid_body"));
    }
    cases.push(refused(
        "form with %FF",
        as_type(Some("application/x-www-form-urlencoded"), "socket_id=%FF&channel_name=private-user-alice"),
        400,
        "invalid_body",
    ));
    cases.push(refused(
        "form with a raw 0xFF byte",
        Req::post(
            "/pusher/auth",
            Some("application/x-www-form-urlencoded"),
            [form.as_bytes(), b"&x=\xff"].concat(),
        )
        .bearer(t),
        400,
        "invalid_body",
    ));
    // Near-miss paths are other endpoints (none): nothing is signed there.
    for path in ["/pusher/auth/", "/PUSHER/AUTH", "/pusher/%61uth", "//pusher/auth", "/pusher/auth;x"] {
        let mut req = Req::own().bearer(t);
        req.path = path.to_owned();
        cases.push(refused(format!("path {path}"), req, 404, "not_found"));
    }
    cases.push(refused("GET", Req::own().bearer(t).method(reqwest::Method::GET), 405, "method_not_allowed"));
    cases.push(refused("PUT", Req::own().bearer(t).method(reqwest::Method::PUT), 405, "method_not_allowed"));
    cases.push(refused(
        "DELETE at user-auth",
        Req::user_form(&[("socket_id", SOCKET)]).bearer(t).method(reqwest::Method::DELETE),
        405,
        "method_not_allowed",
    ));

    // Body limit: 8192 bytes.
    let exact = |len: usize| {
        let mut body = format!("{form}&pad=");
        let fill = len - body.len();
        body.push_str(&"x".repeat(fill));
        body
    };
    cases.push(allowed(
        "control: form of exactly 8192 bytes",
        as_type(Some("application/x-www-form-urlencoded"), &exact(BODY_LIMIT)),
    ));
    cases.push(refused(
        "form of 8193 bytes",
        as_type(Some("application/x-www-form-urlencoded"), &exact(BODY_LIMIT + 1)),
        413,
        "body_too_large",
    ));
    cases.push(refused(
        "form of 9000 bytes",
        as_type(Some("application/x-www-form-urlencoded"), &exact(9000)),
        413,
        "body_too_large",
    ));
    cases.push(refused(
        "chunked form of 20000 bytes, no Content-Length",
        as_type(Some("application/x-www-form-urlencoded"), &exact(20_000)).chunked(),
        413,
        "body_too_large",
    ));
    cases.push(refused(
        "JSON of 9000 bytes",
        Req::json(&format!(
            r#"{{"socket_id":"{SOCKET}","channel_name":"{OWN}","pad":"{}"}}"#,
            "x".repeat(9000)
        ))
        .bearer(t),
        413,
        "body_too_large",
    ));
    cases.push(refused(
        "user-auth form of 9000 bytes",
        Req::user_form(&[("socket_id", SOCKET), ("pad", &"x".repeat(9000))]).bearer(t),
        413,
        "body_too_large",
    ));
    cases.push(refused(
        "Content-Length of 1 MB with a short body",
        Req::raw(format!(
            "POST /pusher/auth HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             authorization: Bearer {t}\r\ncontent-length: 1000000\r\nconnection: close\r\n\r\n{form}"
        )),
        413,
        "body_too_large",
    ));
    // The content type is checked before the size.
    cases.push(refused(
        "9000 bytes of text/plain",
        as_type(Some("text/plain"), &exact(9000)),
        415,
        "unsupported_media_type",
    ));
    cases
}

#[tokio::test]
async fn adversarial_requests_to_the_hmac_gateway() {
    let gw = hs_gateway().await;
    let t = hs(json!({}));
    // Time-sensitive cases first: the "within the leeway" controls must be
    // sent within a few seconds of being minted.
    let mut cases = claim_cases();
    cases.extend(algorithm_cases());
    cases.extend(structure_cases());
    cases.extend(source_cases());
    cases.extend(field_cases(&t));
    cases.extend(name_cases(&t));
    cases.extend(policy_cases());
    cases.extend(body_cases(&t));
    let failures = run_table("hmac", gw.addr, &cases).await;
    let n = refusals(&cases);
    assert!(n >= 60, "only {n} adversarial cases");
    assert_table("hmac gateway", &cases, &failures);
    gw.stop().await;
}

// ------------------------------------------------------ RSA gateways

/// HS/RS confusion and key pointers against a gateway that trusts one RSA
/// public key (PEM) and allows RS256 only.
#[tokio::test]
async fn adversarial_requests_to_the_rsa_pem_gateway() {
    let gw = key_gateway("public_key: { file: rsa.pub.pem }", &[("rsa.pub.pem", RSA_PUBLIC_PEM)]).await;
    let body = claims(json!({}), &[]);
    let der = STANDARD
        .decode(RSA_PUBLIC_PEM.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
        .unwrap();
    let hs_with = |alg: Algorithm, name: &str, key: &[u8]| {
        jws(format!(r#"{{"alg":"{name}","typ":"JWT"}}"#), &body, Sig::Hmac(alg, key))
    };
    let mut cases = vec![
        refused(
            "HS256 signed with the PEM public key",
            Req::own().bearer(&hs_with(Algorithm::HS256, "HS256", RSA_PUBLIC_PEM.as_bytes())),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "HS256 signed with the trimmed PEM",
            Req::own().bearer(&hs_with(Algorithm::HS256, "HS256", RSA_PUBLIC_PEM.trim().as_bytes())),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "HS256 signed with the PKCS#1 PEM",
            Req::own().bearer(&hs_with(Algorithm::HS256, "HS256", RSA_PUBLIC_PKCS1_PEM.as_bytes())),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "HS256 signed with the DER public key",
            Req::own().bearer(&hs_with(Algorithm::HS256, "HS256", &der)),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "HS384 signed with the PEM public key",
            Req::own().bearer(&hs_with(Algorithm::HS384, "HS384", RSA_PUBLIC_PEM.as_bytes())),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "HS512 signed with the PEM public key",
            Req::own().bearer(&hs_with(Algorithm::HS512, "HS512", RSA_PUBLIC_PEM.as_bytes())),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "alg none",
            Req::own().bearer(&jws(r#"{"alg":"none"}"#, &body, Sig::Literal(""))),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "PS256 with the right key, only RS256 allowed",
            Req::own().bearer(&rs_alg(Algorithm::PS256, "PS256", json!({}), json!({}), RSA_PRIVATE_PEM)),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "RS512 with the right key, only RS256 allowed",
            Req::own().bearer(&rs_alg(Algorithm::RS512, "RS512", json!({}), json!({}), RSA_PRIVATE_PEM)),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "ES256 header",
            Req::own().bearer(&jws(r#"{"alg":"ES256"}"#, &body, Sig::Literal("AAAA"))),
            401,
            "algorithm_not_allowed",
        ),
        refused(
            "RS256 header over an HMAC made with the PEM",
            Req::own().bearer(&jws(RS_HEADER, &body, Sig::Hmac(Algorithm::HS256, RSA_PUBLIC_PEM.as_bytes()))),
            401,
            "invalid_signature",
        ),
        refused(
            "RS256 signed with another RSA key",
            Req::own().bearer(&rs(json!({}), json!({}), RSA2_PRIVATE_PEM)),
            401,
            "invalid_signature",
        ),
        refused(
            "RS256 with an empty signature",
            Req::own().bearer(&jws(RS_HEADER, &body, Sig::Literal(""))),
            401,
            "invalid_signature",
        ),
        refused(
            "RS256 expired",
            Req::own().bearer(&rs(json!({}), json!({"exp": now() - 60}), RSA_PRIVATE_PEM)),
            401,
            "token_expired",
        ),
        refused(
            "RS256 wrong audience",
            Req::own().bearer(&rs(json!({}), json!({"aud": "other"}), RSA_PRIVATE_PEM)),
            401,
            "invalid_audience",
        ),
    ];
    for (name, pointer) in key_pointers() {
        cases.push(refused(
            format!("{name} header, signed with the attacker's key"),
            Req::own().bearer(&rs(pointer, json!({}), RSA2_PRIVATE_PEM)),
            401,
            "invalid_signature",
        ));
    }
    cases.push(allowed(
        "control: RS256 with the right key",
        Req::own().bearer(&rs(json!({}), json!({}), RSA_PRIVATE_PEM)),
    ));
    cases.push(allowed(
        "control: jwk and jku ignored on a genuine token",
        Req::own().bearer(&rs(
            json!({"jwk": attacker_jwk(), "jku": "https://attacker.example/"}),
            json!({}),
            RSA_PRIVATE_PEM,
        )),
    ));
    cases.push(allowed(
        "control: a single PEM key ignores kid",
        Req::own().bearer(&rs(json!({"kid": "../../../../etc/passwd"}), json!({}), RSA_PRIVATE_PEM)),
    ));
    let failures = run_table("rsa pem", gw.addr, &cases).await;
    assert_table("rsa pem gateway", &cases, &failures);
}

/// `kid` games against a gateway with a JWKS of two keys, `k1` (the key of
/// `RSA_PRIVATE_PEM`) and `k2` (of `RSA2_PRIVATE_PEM`).
#[tokio::test]
async fn adversarial_requests_to_the_jwks_gateway() {
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": RSA1_N, "e": "AQAB"},
        {"kty": "RSA", "kid": "k2", "use": "sig", "alg": "RS256", "n": RSA2_N, "e": "AQAB"},
    ]})
    .to_string();
    let gw = key_gateway("jwks_file: jwks.json", &[("jwks.json", &jwks)]).await;
    let k1 = |kid: Value| rs(json!({"kid": kid}), json!({}), RSA_PRIVATE_PEM);
    let mut cases = Vec::new();
    for (what, kid) in [
        ("kid path traversal", "../../../../etc/passwd"),
        ("kid encoded path traversal", "..%2f..%2f..%2fetc%2fpasswd"),
        ("kid /dev/null", "/dev/null"),
        ("kid file URL", "file:///etc/passwd"),
        ("kid SQL tautology", "k1' OR '1'='1"),
        ("kid SQL drop", "k1\"; DROP TABLE keys; --"),
        ("kid SQL union", "x' UNION SELECT 'secret' --"),
        ("kid with a NUL", "k1\u{0}"),
        ("kid in another case", "K1"),
        ("kid with a space", " k1"),
        ("kid wildcard", "*"),
        ("kid empty", ""),
    ] {
        cases.push(refused(what, Req::own().bearer(&k1(json!(kid))), 401, "unknown_kid"));
    }
    cases.push(refused(
        "kid of 300 characters",
        Req::own().bearer(&k1(json!("k".repeat(300)))),
        401,
        "unknown_kid",
    ));
    cases.push(refused(
        "no kid with two keys",
        Req::own().bearer(&rs(json!({}), json!({}), RSA_PRIVATE_PEM)),
        401,
        "unknown_kid",
    ));
    for (what, kid) in [("kid a number", json!(1)), ("kid null", Value::Null), ("kid a list", json!(["k1"]))]
    {
        cases.push(refused(what, Req::own().bearer(&k1(kid)), 401, "token_malformed"));
    }
    cases.push(refused(
        "kid k2 with the key of k1",
        Req::own().bearer(&k1(json!("k2"))),
        401,
        "invalid_signature",
    ));
    cases.push(refused(
        "kid k1, jwk of the attacker, signed by the attacker",
        Req::own().bearer(&rs(json!({"kid": "k1", "jwk": attacker_jwk()}), json!({}), RSA2_PRIVATE_PEM)),
        401,
        "invalid_signature",
    ));
    cases.push(refused(
        "kid k1, jku of the attacker, signed by the attacker",
        Req::own().bearer(&rs(
            json!({"kid": "k1", "jku": "https://attacker.example/jwks.json"}),
            json!({}),
            RSA2_PRIVATE_PEM,
        )),
        401,
        "invalid_signature",
    ));
    cases.push(refused(
        "kid of the attacker's embedded jwk",
        Req::own().bearer(&rs(
            json!({"kid": "evil", "jwk": {"kty": "RSA", "kid": "evil", "n": RSA2_N, "e": "AQAB"}}),
            json!({}),
            RSA2_PRIVATE_PEM,
        )),
        401,
        "unknown_kid",
    ));
    let body = claims(json!({}), &[]);
    cases.push(refused(
        "HS256 kid k1 signed with k1's PEM",
        Req::own().bearer(&jws(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &body,
            Sig::Hmac(Algorithm::HS256, RSA_PUBLIC_PEM.as_bytes()),
        )),
        401,
        "algorithm_not_allowed",
    ));
    cases.push(refused(
        "HS256 kid k1 signed with k1's modulus",
        Req::own().bearer(&jws(
            r#"{"alg":"HS256","kid":"k1"}"#,
            &body,
            Sig::Hmac(Algorithm::HS256, RSA1_N.as_bytes()),
        )),
        401,
        "algorithm_not_allowed",
    ));
    cases.push(allowed("control: kid k1 with k1", Req::own().bearer(&k1(json!("k1")))));
    cases.push(allowed(
        "control: kid k2 with k2",
        Req::own().bearer(&rs(json!({"kid": "k2"}), json!({}), RSA2_PRIVATE_PEM)),
    ));
    let failures = run_table("jwks", gw.addr, &cases).await;
    assert_table("jwks gateway", &cases, &failures);
}

// -------------------------------------------------------------- key data

/// Modulus (base64url) of `RSA_PUBLIC_PEM`, printed once with `openssl rsa -modulus`.
const RSA1_N: &str = "zax1o9w9IBWDokfSoBILBGO8jYV2Lkv9kANLgfo6y2xJaCqNfa1JLY62YYwdRcHushOOksxJBx-h21hCFtpsVVirVzviDNlinF1tMHhgqc9N97GwJazU4r-lu-WM2U1BMS71BSItnSYFH_eZeVRfT3jkezXKBDtAXt9zhaazKEpgZGye5gXcRyXtsI3kgnnuTxTF_iIe-rZvPw32IYuQmaDhAfJd-m8_IAHjPDonJDp_TgZR-tHL4jg2zY2C-IsZUICowN8fUWJTBA2l6A1HRcGfOYpl-rrKBY0_o3SI91ZKFfkm7GenpwUobZF2vIy10bpcRw-GEC955Ebu0vrZTw";
/// Modulus (base64url) of the public half of `RSA2_PRIVATE_PEM`.
const RSA2_N: &str = "rQ-B4WJU5T94AUHoPMSoq6qKmri9lsCra34ulBVwZO4iYDxaqbp4IIdjGMPSFvSYUc8CViXcO9ZNMlk34MXFrf1iTKWWvFSTnRc8kYKzJTZ0EWyxxf5p-Bbwh_T0su4Y7jlitWVbxqRX-1Hj_K6ftXoYd-g-pk27c4LjqDZNmwjY3fWm8-umVes8ijJbfF2uMjCVUpJlTKSYvw7-XsJulkiCvWfyEpzgB5tIEWzEHPllB42izgcPIdyi1bF-J3PM1VP0JQS2IF6HIW4D1lGu9EL85NYr1HbgrS1ldMeMPDf0DWcrvxmcBdtUO47Dw9slTNang1kpoBbLgmh6JVnmAQ";

// Test-only RSA keys, copied from `src/session/test_keys.rs` (generated once
// with `openssl genpkey`; they protect nothing).

/// RSA 2048 private key (PKCS#8) whose public half the gateways trust.
const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDNrHWj3D0gFYOi
R9KgEgsEY7yNhXYuS/2QA0uB+jrLbEloKo19rUktjrZhjB1Fwe6yE46SzEkHH6Hb
WEIW2mxVWKtXO+IM2WKcXW0weGCpz033sbAlrNTiv6W75YzZTUExLvUFIi2dJgUf
95l5VF9PeOR7NcoEO0Be33OFprMoSmBkbJ7mBdxHJe2wjeSCee5PFMX+Ih76tm8/
DfYhi5CZoOEB8l36bz8gAeM8OickOn9OBlH60cviODbNjYL4ixlQgKjA3x9RYlME
DaXoDUdFwZ85imX6usoFjT+jdIj3VkoV+SbsZ6enBShtkXa8jLXRulxHD4YQL3nk
Ru7S+tlPAgMBAAECggEAAqcE/nWI7haKZTq8cC/Z7W5KwfDWaLL8LskvAGCSknJM
yd7XtTKTuO2vas7Q9dOdzZ3uxK5t8k7A8bTEIcpomrUqfOCyMGzHFrGxwLPRFjm4
diSpfhFv5cRY9IyQ2rfWnDYKi2+V243I+As08wgS4vTan6gnSoeWiwWWhM6jdcHO
9OH9j1whu4Ol+U/l/Idfyf1MK1xKmGfykJC30sD1M7wT5jzf95ApYKoKubynHJ+t
nAFAhQFHhSq7KtNeXIVaKcqA06ohJ7dLVm8EzjiqJNtvvBm5zIEXRp9E8/AWj+n/
cKXLmvL5L7AjHu64zeY6VTFyfIh/gxTVVzeqXATXuQKBgQD0u02Xj9qKXW3G/DAG
D/lSYNCWa/O1F5N7Tth62L9OzBRUajpg0l02wLOVA3WvVWuVSdVdAuRc5/MyeyFx
oEWv+gry/SXPOs+vqi8ZxVexaxzTmxFDTmA20LYNE13Cercop+iTMJcQ/98UbyVW
2FFHbwyl+xHYaYisqTrhXVum0wKBgQDXJMXYCL/Y8geqD+geQYRlN5hsuKymo+M+
dcEbnrFzWa0m+QQQMFHZ3K/UTiiGEfn99zVznDYwazpQe4ImXEulyllFbEGIJIj0
8HbwwtpDMumtAHidfuXq4nQkdPQtONoIUIe694eh/XU/CeW4OVXguV9qMaTVkUoS
MT4TVmruFQKBgB9SqcewPcRf2OES/gKIoNyOT6QxBOw0rEen+8UdYL7xF9kGD5q8
0flkCJgV7UYXpMFixdA1woyxk0ruv4UPglvXoPcgt2oimNpe6dBela67iuD6g+cd
bOsXI3Xg+Ksfkbm+Y+IS4gLm/OJcp2bKIP0HlZLY45vTRg7zSfn2PPjJAoGAeA7R
SQk45fvKQyC1S40MMN+hc6pqzmNOgKB9rsgUBmbYtZLorZAJXSZGCJfFDWwisZKu
hWF66/IqjJcfvgBrRo1w28jZmPuqYeV+ukRCQJW8yQomRN13uGe+oEmTqVi8cz9d
Pvy6967VKuR/CRsVzV4k3MHvVi7JwvUvyuLCsTECgYBMQVHBK1RbOozntaS1gZ/Z
fVRgxHVb6hThJ/vjcoN+n6buS5XlG3OqYSWKSlCy2uG9RdK9dnHTwndYtQoA9KzZ
5/edF/eGFJzMCWXScZ7VG2l4lANUZfLmizX/LQXIvX6ibPPQuY+EdHXhIFmrnBy5
R9wQ+S2BVGgk3b+B9/OU1g==
-----END PRIVATE KEY-----
";

/// Public half of `RSA_PRIVATE_PEM` (SPKI).
const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzax1o9w9IBWDokfSoBIL
BGO8jYV2Lkv9kANLgfo6y2xJaCqNfa1JLY62YYwdRcHushOOksxJBx+h21hCFtps
VVirVzviDNlinF1tMHhgqc9N97GwJazU4r+lu+WM2U1BMS71BSItnSYFH/eZeVRf
T3jkezXKBDtAXt9zhaazKEpgZGye5gXcRyXtsI3kgnnuTxTF/iIe+rZvPw32IYuQ
maDhAfJd+m8/IAHjPDonJDp/TgZR+tHL4jg2zY2C+IsZUICowN8fUWJTBA2l6A1H
RcGfOYpl+rrKBY0/o3SI91ZKFfkm7GenpwUobZF2vIy10bpcRw+GEC955Ebu0vrZ
TwIDAQAB
-----END PUBLIC KEY-----
";

/// Public half of `RSA_PRIVATE_PEM` (PKCS#1).
const RSA_PUBLIC_PKCS1_PEM: &str = "\
-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEAzax1o9w9IBWDokfSoBILBGO8jYV2Lkv9kANLgfo6y2xJaCqNfa1J
LY62YYwdRcHushOOksxJBx+h21hCFtpsVVirVzviDNlinF1tMHhgqc9N97GwJazU
4r+lu+WM2U1BMS71BSItnSYFH/eZeVRfT3jkezXKBDtAXt9zhaazKEpgZGye5gXc
RyXtsI3kgnnuTxTF/iIe+rZvPw32IYuQmaDhAfJd+m8/IAHjPDonJDp/TgZR+tHL
4jg2zY2C+IsZUICowN8fUWJTBA2l6A1HRcGfOYpl+rrKBY0/o3SI91ZKFfkm7Gen
pwUobZF2vIy10bpcRw+GEC955Ebu0vrZTwIDAQAB
-----END RSA PUBLIC KEY-----
";

/// A second RSA 2048 private key: the attacker's, or the JWKS key `k2`.
const RSA2_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCtD4HhYlTlP3gB
Qeg8xKirqoqauL2WwKtrfi6UFXBk7iJgPFqpunggh2MYw9IW9JhRzwJWJdw71k0y
WTfgxcWt/WJMpZa8VJOdFzyRgrMlNnQRbLHF/mn4FvCH9PSy7hjuOWK1ZVvGpFf7
UeP8rp+1ehh36D6mTbtzguOoNk2bCNjd9abz66ZV6zyKMlt8Xa4yMJVSkmVMpJi/
Dv5ewm6WSIK9Z/ISnOAHm0gRbMQc+WUHjaLOBw8h3KLVsX4nc8zVU/QlBLYgXoch
bgPWUa70Qvzk1ivUduCtLWV0x4w8N/QNZyu/GZwF21Q7jsPD2yVM1qeDWSmgFsuC
aHolWeYBAgMBAAECggEABQzdTO76LEB4Z4z9UnyosW3GIrK+cZ5IwlfJ0y92+rMK
VMWeHbLf248n4KqiQGI96bFBT7NGJIbh9NSusUQEO0oYKsVwSymqrxxk+5gVU0Iu
C+4gl/cPL5q3xTfsRiZ1msoY69M75OWZ3a8rmI2eAoVAHour/F1rWXkZ3KhNBnek
zqODycN0f5In9L7JvOdUHSsMUCcpjyeBE52xpBhiFGms7xQtyfNwinYLDq/M/yos
4B6RPA4/eJKqz+ezDJmb7SezaPVGdTSZO5GRawBOfZbvxk4Sgj5+mmj/a6VMITRs
HBpc375CilMAz2qo5RFQl2tEo25+28VlmghNSkWeAQKBgQDi9t5ZTb26xv6A6riO
mDadTVm4wl+UC9Ytvsxr9NZh9gBp7YSltddZzQLdbKK1NRIYzkaqkObfBwzTzeLg
8OoPmWcf0TrKGOvt8KWC4ogmgw6zAL0HL3Bfv0NBzjOyVKDwoqIz0sUjkRuzzkDX
ERRHLuOeL7jieJIRmk5agJj1IQKBgQDDM0dvNbUllNxU9+wMg6Ik+QenmKJ988N6
T7wDFPyw5R3RoikwXnsrFgqX7Fq7c34U1bIkIIy94eeEQxqVaMek52C9e8l2+XO+
lLvKB0zY1jVgrmAco0jqsEKkEQfvQSH7HVZW4UTWnNUo1lGQX8IHC7JgTnRmtXBU
hSDXFWf04QKBgGtcbdd+n8YvhYpD/eNt+z+zrEJqp72nT7w56gcTPSn/rThuY3Xj
q6fOA5HsZpcjMJlNUj4y5xMPCbFTTgQr0fxpC1AQsCeTXF8km5ZrRA47poNkUQaK
GTUhi1YgjXHI+Ix70hCDnj9xz9HhOejCKn51nrRgTKvMbwQmovPKqxAhAoGAUFjr
LnuM9MsxZkgmgYAtXcqju/i36eBMtivb1+jrmmS0wXVePuqlCDcqZR6EumPvoePU
T8qWJBK4mViFuLpIczhKObSaWL6VRf0yzxXyK88AaatdJGyRtwiWZbIc8f59Xj/V
Ki3PiAdGNmkBacwAsaW+5qVkhGJqul+SBPZqtAECgYAYYEzwVpO3O3jfMNZROPjz
Hur6dn3Um8Or2Y4mCj9UbMbZyLHdFSzVs/7s7fWeU0Nmc3Dre65Mtjo+iKgKFRYa
LZzT+CMkhHmUODsYVEAjul6aXGSkhqoTxFMVfHZDZRxa5DSnccBXloYniIq7Tgo2
4DzXfREj0q3vXFEidnP9Jg==
-----END PRIVATE KEY-----
";
