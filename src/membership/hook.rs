//! A rule's decision hook: the app decides. channelgate POSTs the verified
//! claims, the channel, the rule's captures and the socket id as JSON; the
//! app answers 200 with `{"allow": bool, "reason"?: string, "user_info"?:
//! object}`. Any other answer, a timeout or an unreachable app is a fault
//! (503 `hook_unavailable`), never an allow.
//!
//! Invariants:
//! - answers (allow and deny alike) are cached per (user, channel) for the
//!   rule's `ttl`, shortened by the answer's `Cache-Control: max-age`; the
//!   socket id is sent but is not part of the key;
//! - one request to the app per (user, channel) at a time, bounded by
//!   `timeout`, behind a circuit breaker per hook URL; a cached answer is
//!   served after a fault only within `stale_if_error` (default: never);
//! - `user_info` is returned as the app sent it: the caller filters it by
//!   the rule's allow-list before anything is signed; `reason` is cut to
//!   [`MAX_REASON`] printable characters (it goes to the audit log).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerSettings};
use super::memo::{CacheStatus, Fresh, Memo, MemoSettings, Weigh};
use super::{FaultKind, LookupError, client, http_ttl};
use crate::policy::lookup::FactValue;
use crate::upstream::HttpsClient;

/// Largest hook answer read.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;
/// Longest `reason` kept, in characters.
pub(crate) const MAX_REASON: usize = 128;

/// A hook and how it is asked.
#[derive(Debug, Clone)]
pub(crate) struct HookSettings {
    /// Where the question is POSTed.
    pub(crate) url: http::Uri,
    /// How long an answer is reused (shortened by `Cache-Control`).
    pub(crate) ttl: Duration,
    /// The bound on one request to the app.
    pub(crate) timeout: Duration,
    /// Cache bounds and how long past its TTL an answer may be served when
    /// the app fails (zero: never).
    pub(crate) cache: MemoSettings,
    /// When the app counts as down.
    pub(crate) breaker: BreakerSettings,
    /// Headers sent with each call (an `Authorization` the app checks, so
    /// only channelgate can ask it); values are marked sensitive.
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl HookSettings {
    /// The defaults for `url`: a 30 s TTL, a 1 s timeout, no stale answers.
    pub(crate) fn new(url: http::Uri) -> Self {
        Self {
            url,
            ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
            cache: MemoSettings::default(),
            breaker: BreakerSettings::default(),
            headers: Vec::new(),
        }
    }
}

/// What the app is asked: the JSON body of the POST.
#[derive(Debug, Serialize)]
pub(crate) struct Question<'a> {
    /// The verified claims (a JSON object, as verified).
    pub(crate) claims: &'a RawValue,
    /// The channel name.
    pub(crate) channel: &'a str,
    /// The rule's captures by name.
    pub(crate) captures: &'a indexmap::IndexMap<&'a str, &'a str>,
    /// The socket id.
    pub(crate) socket_id: &'a str,
}

/// The app's decision.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Whether the app allows the subscription.
    pub(crate) allow: bool,
    /// The app's reason (for the audit log), printable and cut.
    pub(crate) reason: Option<Box<str>>,
    /// The member's `user_info` the app proposes (filtered by the rule).
    pub(crate) user_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// `{allow, reason, user_info}` for the policy, built once per answer.
    pub(crate) fact: Arc<FactValue>,
}

impl Weigh for Arc<Decision> {
    fn weight(&self) -> u64 {
        let info = self
            .user_info
            .as_ref()
            .map_or(0, |m| m.iter().map(|(k, v)| k.len() as u64 + v.to_string().len() as u64 + 32).sum());
        96 + self.reason.as_ref().map_or(0, |r| r.len() as u64) + 4 * info
    }
}

#[derive(Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    user_info: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A rule's hook, through its cache; see the module docs.
pub(crate) struct Hook {
    client: HttpsClient,
    settings: HookSettings,
    memo: Memo<[u8; 32], Arc<Decision>, LookupError>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("memo", &self.memo).field("breaker", &self.breaker).finish()
    }
}

/// The cache key of (user, channel).
fn key(user: &str, channel: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((user.len() as u64).to_be_bytes());
    hash.update(user);
    hash.update(channel);
    hash.finalize().into()
}

impl Hook {
    /// A hook sending through `client`, with a breaker of its own (or one
    /// shared with the other rules that use the same URL).
    pub(crate) fn new(client: HttpsClient, settings: HookSettings, breaker: Option<Arc<Breaker>>) -> Self {
        let breaker = breaker.unwrap_or_else(|| Arc::new(Breaker::new(settings.breaker)));
        Self { client, memo: Memo::new(settings.cache), breaker, settings }
    }

    /// Its cache (counters for metrics).
    pub(crate) fn memo(&self) -> &Memo<[u8; 32], Arc<Decision>, LookupError> {
        &self.memo
    }

    /// Its circuit breaker.
    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The cached decision for `user` on `channel` at `now`, if fresh
    /// (counted as a cache hit).
    pub(crate) fn cached(&self, user: &str, channel: &str, now: Instant) -> Option<Arc<Decision>> {
        self.memo.hit(&key(user, channel), now)
    }

    /// The app's decision for `user` on `question.channel` at `now`.
    pub(crate) async fn decide(
        &self,
        user: &str,
        question: &Question<'_>,
        now: Instant,
    ) -> Result<(Arc<Decision>, CacheStatus), LookupError> {
        self.memo.get(&key(user, question.channel), now, || self.ask(question, now)).await
    }

    async fn ask(&self, question: &Question<'_>, now: Instant) -> Result<Fresh<Arc<Decision>>, LookupError> {
        let body = serde_json::to_vec(question).map_err(|e| {
            LookupError::unavailable(FaultKind::BadAnswer, format!("encoding the question: {e}"))
        })?;
        let permit = self.breaker.admit(now)?;
        let mut req = http::Request::post(self.settings.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, concat!("channelgate/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &self.settings.headers {
            let mut value = value.clone();
            value.set_sensitive(true);
            req = req.header(name.clone(), value);
        }
        let ttl = self.settings.ttl;
        client::call(
            &self.client,
            req.body(Full::new(Bytes::from(body))),
            self.settings.timeout,
            MAX_ANSWER,
            permit,
            |reply| read_answer(reply, ttl),
        )
        .await
    }
}

fn read_answer(reply: &client::Reply, ttl: Duration) -> Result<Fresh<Arc<Decision>>, LookupError> {
    if reply.status.as_u16() != 200 {
        return Err(LookupError::unavailable(
            FaultKind::BadAnswer,
            format!("the hook answered {} (expected 200 with {{\"allow\": …}})", reply.status.as_u16()),
        ));
    }
    // serde's message may quote the app's values: only its kind and place
    // are logged.
    let answer: Answer = serde_json::from_slice(&reply.body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "has the wrong shape",
            _ => "is not JSON",
        };
        LookupError::unavailable(
            FaultKind::BadAnswer,
            format!(
                "the hook's answer {what} (line {} column {}); expected {{\"allow\": bool, \"reason\"?: string, \"user_info\"?: object}}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let reason = answer
        .reason
        .map(|r| r.chars().filter(|c| !c.is_control()).take(MAX_REASON).collect::<String>().into_boxed_str());
    let fact = Arc::new(FactValue::hook(answer.allow, reason.as_deref(), answer.user_info.as_ref()));
    let decision = Decision { allow: answer.allow, reason, user_info: answer.user_info, fact };
    Ok(Fresh { value: Arc::new(decision), ttl: http_ttl(&reply.headers, ttl) })
}

#[cfg(test)]
mod tests;
