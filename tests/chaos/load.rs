//! The load client: a few workers sending, at a steady pace, what pusher-js
//! sends — a user's own private channel, a presence room, someone else's
//! channel, a user sign-in and a batch of the three — and checking every
//! answer: each `auth` recomputed here as HMAC-SHA256 with the Pusher secret
//! over exactly the returned `channel_data`/`user_data`, which must be what
//! the policy makes of the token's own claims. A 503 counts as correct only
//! while the scenario says that reason is expected (the documented faults).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::gateway::{APP_KEY, AUDIENCE};
use crate::health::short_error;

/// Longest an auth request may wait before it counts as hung.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(8);

/// A session token and what the policy should make of it.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub sub: String,
    pub name: String,
    /// A presence room in the token's `rooms`.
    pub room: String,
}

/// The claims of user `n` (`{tag}-user-{n}`) for `issuer`, and the session
/// they describe (without its token).
pub fn claims(issuer: &str, n: usize, tag: &str) -> (Value, Session) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let sub = format!("{tag}-user-{n}");
    let name = format!("User {n} “{tag}”");
    let room = (n % 7).to_string();
    let claims = json!({
        "iss": issuer, "aud": AUDIENCE, "sub": sub, "name": name,
        "rooms": [room, (100 + n % 13).to_string()],
        "iat": now, "exp": now + 3600,
    });
    (claims, Session { token: String::new(), sub, name, room })
}

/// An HS256 session token of user `n` from the suite's HS256 issuer.
pub fn hs_session(secret: &str, n: usize) -> anyhow::Result<Session> {
    let (claims, session) = claims(crate::gateway::HS_ISSUER, n, "hs");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())?,
    )?;
    Ok(Session { token, ..session })
}

/// Recomputes signatures with the Pusher secret.
#[derive(Clone)]
pub struct Signer {
    secret: String,
}

impl Signer {
    pub fn new(secret: &str) -> Self {
        Self { secret: secret.to_owned() }
    }

    /// `key:hex(HMAC-SHA256(secret, message))`.
    pub fn auth(&self, message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).expect("any key length");
        mac.update(message.as_bytes());
        format!("{APP_KEY}:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// The presence `channel_data` the policy must produce, as `JSON.stringify` writes it.
pub fn channel_data(s: &Session) -> String {
    format!(r#"{{"user_id":{},"user_info":{{"name":{}}}}}"#, json!(s.sub), json!(s.name))
}

/// The sign-in `user_data` the policy must produce.
pub fn user_data(s: &Session) -> String {
    format!(r#"{{"id":{},"user_info":{{"name":{}}}}}"#, json!(s.sub), json!(s.name))
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
    pub took: Duration,
}

impl Answer {
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }

    /// `status reason` for messages.
    pub fn brief(&self) -> String {
        let reason = self.reason();
        if reason.is_empty() { self.status.to_string() } else { format!("{} {reason}", self.status) }
    }
}

/// POSTs a form to `url` with `token` as the bearer token.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    form: &[(String, String)],
) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let send = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send();
    let resp = match tokio::time::timeout(REQUEST_LIMIT, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => anyhow::bail!("{} after {} ms", short_error(&e), started.elapsed().as_millis()),
        Err(_) => anyhow::bail!("no answer within {}s", REQUEST_LIMIT.as_secs()),
    };
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = match tokio::time::timeout(REQUEST_LIMIT, resp.text()).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => anyhow::bail!("reading the body: {}", short_error(&e)),
        Err(_) => anyhow::bail!("the body did not arrive within {}s", REQUEST_LIMIT.as_secs()),
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer { status, retry_after, body, took: started.elapsed() })
}

/// Asks for `private-user-{sub}` with `s`'s token; checks a 200 fully.
/// Returns the answer and whether it is a correct 200.
pub async fn ask_own(
    client: &reqwest::Client,
    base: &str,
    signer: &Signer,
    s: &Session,
) -> anyhow::Result<(Answer, bool)> {
    let socket = "4242.4242".to_owned();
    let channel = format!("private-user-{}", s.sub);
    let form = [("socket_id".to_owned(), socket.clone()), ("channel_name".to_owned(), channel.clone())];
    let a = post(client, &format!("{base}/pusher/auth"), &s.token, &form).await?;
    let ok = a.status == 200 && a.body == json!({ "auth": signer.auth(&format!("{socket}:{channel}")) });
    Ok((a, ok))
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Own,
    Presence,
    Foreign,
    SignIn,
    Batch,
}

const KINDS: [Kind; 5] = [Kind::Own, Kind::Presence, Kind::Foreign, Kind::SignIn, Kind::Batch];

/// Counts and examples.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub correct: u64,
    /// Documented 503s, by reason.
    pub unavailable: BTreeMap<String, u64>,
    pub failures: u64,
    pub examples: Vec<String>,
    pub latencies_us: Vec<u64>,
}

impl Stats {
    fn record(&mut self, took: Duration, outcome: Result<Option<String>, String>) {
        self.requests += 1;
        self.latencies_us.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        match outcome {
            Ok(None) => self.correct += 1,
            Ok(Some(reason)) => *self.unavailable.entry(reason).or_default() += 1,
            Err(e) => {
                self.failures += 1;
                if self.examples.len() < 5 {
                    self.examples.push(e);
                }
            }
        }
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v[i.min(v.len() - 1)] as f64 / 1000.0
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} requests, {} correct, {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms",
            self.requests,
            self.correct,
            self.failures,
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0)
        );
        if !self.unavailable.is_empty() {
            let u: Vec<String> = self.unavailable.iter().map(|(r, n)| format!("{n}× 503 {r}")).collect();
            s.push_str(&format!(", {}", u.join(", ")));
        }
        if !self.examples.is_empty() {
            s.push_str(&format!("; first failures: {}", self.examples.join(" | ")));
        }
        s
    }
}

/// The running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<Mutex<Stats>>,
    expected_503: Arc<Mutex<Vec<&'static str>>>,
}

impl Load {
    /// `workers` workers, each sending `per_second` requests a second to
    /// `base` (the public listener's URL), over the sessions in turn.
    pub fn start(
        client: reqwest::Client,
        base: String,
        signer: Signer,
        sessions: Vec<Session>,
        workers: usize,
        per_second: u32,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let expected_503 = Arc::new(Mutex::new(Vec::new()));
        let sessions = Arc::new(sessions);
        let counter = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let w = Worker {
                    client: client.clone(),
                    base: base.clone(),
                    signer: signer.clone(),
                    sessions: sessions.clone(),
                    counter: counter.clone(),
                    expected_503: expected_503.clone(),
                };
                let (stop, stats) = (stop.clone(), stats.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::SeqCst) {
                        tick.tick().await;
                        let (took, outcome) = w.one().await;
                        stats.lock().unwrap().record(took, outcome);
                    }
                })
            })
            .collect();
        Load { stop, tasks, stats, expected_503 }
    }

    /// From now on a 503 with one of these reasons is a correct answer.
    pub fn expect_503(&self, reasons: &[&'static str]) {
        *self.expected_503.lock().unwrap() = reasons.to_vec();
    }

    /// What was seen so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap().clone()
    }

    /// Stops the workers (each finishes its request) and returns the stats.
    pub async fn stop(mut self) -> Stats {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(REQUEST_LIMIT + Duration::from_secs(2), t).await.is_err() {
                self.stats.lock().unwrap().record(Duration::ZERO, Err("a worker did not stop".into()));
            }
        }
        self.stats.lock().unwrap().clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Worker {
    client: reqwest::Client,
    base: String,
    signer: Signer,
    sessions: Arc<Vec<Session>>,
    counter: Arc<AtomicU64>,
    expected_503: Arc<Mutex<Vec<&'static str>>>,
}

impl Worker {
    async fn one(&self) -> (Duration, Result<Option<String>, String>) {
        let n = usize::try_from(self.counter.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
        let kind = KINDS[n % KINDS.len()];
        let s = &self.sessions[(n / KINDS.len()) % self.sessions.len()];
        let other = &self.sessions[(n / KINDS.len() + 1) % self.sessions.len()];
        let socket = format!("{}.{}", 1000 + n % 9000, 100_000 + n % 900_000);
        let own = format!("private-user-{}", s.sub);
        let room = format!("presence-room-{}", s.room);
        let foreign = format!("private-user-{}", other.sub);
        let field = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let (path, form) = match kind {
            Kind::Own => ("/pusher/auth", vec![field("socket_id", &socket), field("channel_name", &own)]),
            Kind::Presence => {
                ("/pusher/auth", vec![field("socket_id", &socket), field("channel_name", &room)])
            }
            Kind::Foreign => {
                ("/pusher/auth", vec![field("socket_id", &socket), field("channel_name", &foreign)])
            }
            Kind::SignIn => ("/pusher/user-auth", vec![field("socket_id", &socket)]),
            Kind::Batch => (
                "/pusher/auth",
                vec![
                    field("socket_id", &socket),
                    field("channel_name[0]", &own),
                    field("channel_name[1]", &room),
                    field("channel_name[2]", &foreign),
                ],
            ),
        };
        let expected_before = self.expected_503.lock().unwrap().clone();
        let started = Instant::now();
        let answer = match post(&self.client, &format!("{}{path}", self.base), &s.token, &form).await {
            Ok(a) => a,
            Err(e) => return (started.elapsed(), Err(format!("{kind:?} {}: {e}", s.sub))),
        };
        if answer.status == 503 {
            let reason = answer.reason().to_owned();
            let expected_after = self.expected_503.lock().unwrap().clone();
            let expected = expected_before.iter().chain(&expected_after).any(|r| *r == reason);
            let retry_after_ok = reason != "jwks_unavailable" || answer.retry_after.is_some();
            return if expected && retry_after_ok {
                (answer.took, Ok(Some(reason)))
            } else if expected {
                (answer.took, Err(format!("{kind:?}: 503 {reason} without Retry-After")))
            } else {
                (answer.took, Err(format!("{kind:?} {}: unexpected 503 {}", s.sub, answer.body)))
            };
        }
        let sig = &self.signer;
        let private = |channel: &str| json!({ "auth": sig.auth(&format!("{socket}:{channel}")) });
        let presence = || {
            let data = channel_data(s);
            json!({ "auth": sig.auth(&format!("{socket}:{room}:{data}")), "channel_data": data })
        };
        let ok = match kind {
            Kind::Own => answer.status == 200 && answer.body == private(&own),
            Kind::Presence => answer.status == 200 && answer.body == presence(),
            Kind::Foreign => answer.status == 403 && answer.reason() == "rule_denied",
            Kind::SignIn => {
                let data = user_data(s);
                answer.status == 200
                    && answer.body
                        == json!({ "auth": sig.auth(&format!("{socket}::user::{data}")), "user_data": data })
            }
            Kind::Batch => {
                let b = &answer.body;
                answer.status == 200
                    && b.as_object().is_some_and(|m| m.len() == 3)
                    && b[&own] == private(&own)
                    && b[&room] == presence()
                    && b[&foreign]["status"] == 403
                    && b[&foreign]["reason"] == "rule_denied"
            }
        };
        if ok {
            (answer.took, Ok(None))
        } else {
            let mut body = answer.body.to_string();
            body.truncate(300);
            (answer.took, Err(format!("{kind:?} {}: {} {body}", s.sub, answer.status)))
        }
    }
}
