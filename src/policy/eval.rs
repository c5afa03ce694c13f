//! Evaluating a compiled policy. Pure: no I/O, no clock, no panics.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::Value;
use cel::common::types::{CelMap, CelMapKey, CelNull, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;

use super::lookup::{Fact, Facts, ParamRef, Params, param_of};
use super::native::{self, Native};
use super::value::{TokenValue, cel_to_json, type_name};
use super::{Expression, Policy, Rule};
use crate::pusher::{ChannelName, SocketId, js_json};
use crate::reason::Reason;

/// Longest user id we sign (presence `user_id` and sign-in `id`).
const MAX_USER_ID_BYTES: usize = 200;

/// The facts a decision may use, besides the channel.
pub struct Request<'a> {
    /// The verified claims (`token`).
    pub token: &'a TokenValue,
    /// The requesting socket (`socket_id`).
    pub socket_id: &'a SocketId,
    /// The request's `Origin` header, if any (`request.origin`).
    pub origin: Option<&'a str>,
}

/// The outcome of evaluating a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed. `data` is the exact string to return and sign: the presence
    /// `channel_data`, or the sign-in `user_data`; `None` for private channels.
    Allow {
        /// The rule that allowed (`None` for sign-in).
        rule: Option<Arc<str>>,
        /// `channel_data` / `user_data`, serialized.
        data: Option<String>,
    },
    /// Refused.
    Deny {
        /// The rule that decided, if one matched.
        rule: Option<Arc<str>>,
        /// Why.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether this allows.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The deciding rule's name, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow { rule, .. } | Decision::Deny { rule, .. } => rule.as_deref(),
        }
    }

    /// The deciding rule's name, shared.
    pub fn rule_arc(&self) -> Option<Arc<str>> {
        match self {
            Decision::Allow { rule, .. } | Decision::Deny { rule, .. } => rule.clone(),
        }
    }
}

/// What a `shadow: true` rule would have decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowResult {
    /// The shadow rule.
    pub rule: Arc<str>,
    /// Whether it would have allowed.
    pub allow: bool,
    /// Its deny reason (`None` when it would allow).
    pub reason: Option<Reason>,
}

impl ShadowResult {
    fn from_decision(rule: Arc<str>, d: &Decision) -> Self {
        match d {
            Decision::Allow { .. } => Self { rule, allow: true, reason: None },
            Decision::Deny { reason, .. } => Self { rule, allow: false, reason: Some(reason.reason()) },
        }
    }
}

/// Why a policy refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No rule's pattern matched the channel (default deny).
    NoRuleMatched,
    /// The matching rule's `allow` was false.
    RuleDenied,
    /// An expression failed or gave the wrong type. The text names the
    /// expression and the CEL error, never a claim value.
    RuleError(String),
    /// The user id expression gave no usable id.
    InvalidUserId(String),
    /// The presence `channel_data` is larger than the member-size limit.
    PresenceDataTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Sign-in has no `user:` block.
    SigninDisabled,
    /// The rule's data source failed (503, fail closed); the text is for
    /// operators.
    LookupUnavailable(String),
    /// The rule's decision hook failed (503, fail closed).
    HookUnavailable(String),
    /// The decision hook answered `allow: false`, with the app's reason.
    HookDenied(Option<String>),
}

impl DenyReason {
    /// Stable reason code for the error body and the audit log.
    pub fn reason(&self) -> Reason {
        match self {
            DenyReason::NoRuleMatched => Reason::NoRuleMatched,
            DenyReason::RuleDenied => Reason::RuleDenied,
            DenyReason::RuleError(_) => Reason::RuleError,
            DenyReason::InvalidUserId(_) => Reason::InvalidUserId,
            DenyReason::PresenceDataTooLarge { .. } => Reason::PresenceDataTooLarge,
            DenyReason::SigninDisabled => Reason::SigninDisabled,
            DenyReason::LookupUnavailable(_) => Reason::LookupUnavailable,
            DenyReason::HookUnavailable(_) => Reason::HookUnavailable,
            DenyReason::HookDenied(_) => Reason::HookDenied,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoRuleMatched => f.write_str("no rule matches this channel"),
            DenyReason::RuleDenied => f.write_str("the policy refuses this channel"),
            DenyReason::RuleError(m) => write!(f, "the policy could not decide: {m}"),
            DenyReason::InvalidUserId(m) => write!(f, "no usable user id: {m}"),
            DenyReason::PresenceDataTooLarge { size, max } => {
                write!(f, "presence data is {size} bytes, over the {max}-byte member limit")
            }
            DenyReason::SigninDisabled => f.write_str("user sign-in is not enabled"),
            DenyReason::LookupUnavailable(m) => write!(f, "the rule's data source is unavailable: {m}"),
            DenyReason::HookUnavailable(m) => write!(f, "the rule's decision hook is unavailable: {m}"),
            DenyReason::HookDenied(Some(r)) => write!(f, "the decision hook refuses: {r}"),
            DenyReason::HookDenied(None) => f.write_str("the decision hook refuses"),
        }
    }
}

/// What an evaluation looked at, for `channelgate explain`. It may hold
/// claim values: it is printed for the person who supplied the claims and
/// never logged.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Rules tried before the deciding one, with why they did not match.
    pub skipped: Vec<String>,
    /// The rule that matched.
    pub rule: Option<String>,
    /// Captures of the matching pattern.
    pub captures: Vec<(String, String)>,
    /// Each expression evaluated.
    pub steps: Vec<TraceStep>,
}

/// One evaluated expression.
#[derive(Debug, Clone)]
pub struct TraceStep {
    /// Which expression (`allow`, `presence.user_info.name`, ...).
    pub what: String,
    /// Its source text.
    pub source: String,
    /// The value (as JSON-ish text) or the error.
    pub outcome: Result<String, String>,
}

impl Policy {
    /// Decides whether `request` may join `channel`, and builds the presence
    /// `channel_data` when it may.
    pub fn authorize_channel(
        &self,
        request: &Request<'_>,
        channel: &ChannelName,
        trace: Option<&mut Trace>,
    ) -> Decision {
        self.authorize_channel_with_shadow(request, channel, trace).0
    }

    /// Like [`Policy::authorize_channel`], and also reports what each
    /// matching `shadow: true` rule would have decided. Shadow rules are
    /// evaluated but never decide: evaluation goes on to the next rule.
    pub fn authorize_channel_with_shadow(
        &self,
        request: &Request<'_>,
        channel: &ChannelName,
        trace: Option<&mut Trace>,
    ) -> (Decision, Vec<ShadowResult>) {
        self.authorize_channel_with_facts(request, channel, &Facts::none(), trace)
    }

    /// The rules `channel` is decided by, in order, with their captures:
    /// every matching shadow rule before the deciding rule, then the
    /// deciding rule (the first matching rule that is not a shadow). Their
    /// lookups and hooks are what [`Policy::authorize_channel_with_facts`]
    /// needs.
    pub fn rules_for<'c>(&self, channel: &'c ChannelName) -> Vec<(usize, Vec<(&str, &'c str)>)> {
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(captures) = rule.pattern.matches(channel) {
                out.push((i, captures.to_vec()));
                if !rule.shadow {
                    break;
                }
            }
        }
        out
    }

    /// The values of rule `rule`'s query parameters for this request (see
    /// [`ParamRef`]): a capture, the channel, the socket id, a top-level
    /// claim (`None` when absent, `null`, or not a scalar).
    pub fn query_params(
        &self,
        rule: usize,
        captures: &[(&str, &str)],
        request: &Request<'_>,
        channel: &ChannelName,
    ) -> Params {
        let Some(spec) = self.rules.get(rule).and_then(|r| r.query.as_ref()) else {
            return Box::default();
        };
        spec.params
            .iter()
            .map(|p| match p {
                ParamRef::Capture(name) => {
                    captures.iter().find(|(c, _)| c == name).map(|(_, v)| Box::<str>::from(*v))
                }
                ParamRef::Channel => Some(channel.as_str().into()),
                ParamRef::SocketId => Some(request.socket_id.as_str().into()),
                ParamRef::Token(claim) => param_of(request.token.member(claim)),
            })
            .collect()
    }

    /// The claims as JSON (for a decision hook's question): the whole map,
    /// converted from the session's CEL value.
    pub fn claims_json(&self, request: &Request<'_>) -> serde_json::Value {
        let vars = Vars::new(request, None, &[]);
        let mut ctx = scope(&self.root);
        ctx.set_variable_resolver(&vars);
        self.token_program
            .execute(&ctx)
            .ok()
            .and_then(|v| cel_to_json(&v))
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()))
    }

    /// Like [`Policy::authorize_channel_with_shadow`], with what the rules'
    /// lookups and hooks found: a rule whose fact is missing or failed
    /// denies (503 `lookup_unavailable`/`hook_unavailable` when its source
    /// failed), and nothing is signed.
    pub fn authorize_channel_with_facts(
        &self,
        request: &Request<'_>,
        channel: &ChannelName,
        facts: &Facts,
        mut trace: Option<&mut Trace>,
    ) -> (Decision, Vec<ShadowResult>) {
        let mut shadows = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let Some(captures) = rule.pattern.matches(channel) else {
                if let Some(t) = trace.as_deref_mut() {
                    t.skipped.push(format!("{}: `{}` does not match", rule.name, rule.pattern.as_str()));
                }
                continue;
            };
            if rule.shadow {
                let d = self.decide_rule(index, rule, &captures, request, channel, facts, None);
                let result = ShadowResult::from_decision(rule.name.clone(), &d);
                if let Some(t) = trace.as_deref_mut() {
                    t.skipped.push(format!(
                        "{}: shadow rule, would {} (not enforced)",
                        rule.name,
                        match result.reason {
                            None => "allow".to_owned(),
                            Some(reason) => format!("deny ({reason})"),
                        }
                    ));
                }
                shadows.push(result);
                continue;
            }
            if let Some(t) = trace.as_deref_mut() {
                t.rule = Some(rule.name.to_string());
                t.captures = captures.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            }
            return (self.decide_rule(index, rule, &captures, request, channel, facts, trace), shadows);
        }
        (Decision::Deny { rule: None, reason: DenyReason::NoRuleMatched }, shadows)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_rule(
        &self,
        index: usize,
        rule: &Rule,
        captures: &[(&str, &str)],
        request: &Request<'_>,
        channel: &ChannelName,
        facts: &Facts,
        mut trace: Option<&mut Trace>,
    ) -> Decision {
        let deny = |reason| Decision::Deny { rule: Some(rule.name.clone()), reason };
        let query = match (&rule.query, facts.query(index)) {
            (None, _) => None,
            (Some(_), Some(Fact::Found(v))) => Some(v.value()),
            (Some(_), Some(Fact::Unavailable(m))) => return deny(DenyReason::LookupUnavailable(m.clone())),
            (Some(_), Some(Fact::Refused(m))) => return deny(DenyReason::RuleError(format!("query: {m}"))),
            (Some(_), None) => return deny(DenyReason::RuleError("the rule's query was not run".into())),
        };
        let hook = match (&rule.hook, facts.hook(index)) {
            (None, _) => None,
            (Some(_), Some(Fact::Found(v))) => Some(v.value()),
            (Some(_), Some(Fact::Unavailable(m))) => return deny(DenyReason::HookUnavailable(m.clone())),
            (Some(_), Some(Fact::Refused(m))) => return deny(DenyReason::RuleError(format!("hook: {m}"))),
            (Some(_), None) => return deny(DenyReason::RuleError("the rule's hook was not asked".into())),
        };
        let vars = Vars { query, hook, ..Vars::new(request, Some(channel.as_str()), captures) };
        let mut ctx = scope(&self.root);
        ctx.set_variable_resolver(&vars);
        let env = native::Env {
            token: request.token,
            socket_id: request.socket_id.as_str(),
            channel: Some(channel.as_str()),
            captures,
        };

        match eval_bool_fast(&ctx, &vars, &env, "allow", &rule.allow, trace.as_deref_mut()) {
            Ok(true) => {}
            Ok(false) if rule.hook_decides => {
                let reason = hook.and_then(|h| h.claim_str("reason")).map(str::to_owned);
                return deny(DenyReason::HookDenied(reason));
            }
            Ok(false) => return deny(DenyReason::RuleDenied),
            Err(e) => return deny(DenyReason::RuleError(e)),
        }
        let Some(presence) = &rule.presence else {
            return Decision::Allow { rule: Some(rule.name.clone()), data: None };
        };
        let user_id =
            match eval_user_id(&ctx, &vars, &env, "presence.user_id", &presence.user_id, false, &mut trace) {
                Ok(id) => id,
                Err(e) => return deny(DenyReason::InvalidUserId(e)),
            };
        // `JSON.stringify({user_id, user_info})`, written as it goes: neither
        // key is an array index, so they keep this order.
        let mut channel_data = String::with_capacity(128);
        channel_data.push_str("{\"user_id\":");
        js_json::write_str(&mut channel_data, &user_id);
        if let Some(fields) = &presence.user_info {
            let info = eval_fields(&ctx, &vars, &env, "presence.user_info", fields, trace);
            channel_data.push_str(",\"user_info\":");
            js_json::write(&mut channel_data, &serde_json::Value::Object(info));
        }
        channel_data.push('}');
        if channel_data.len() > self.max_member_bytes {
            return deny(DenyReason::PresenceDataTooLarge {
                size: channel_data.len(),
                max: self.max_member_bytes,
            });
        }
        Decision::Allow { rule: Some(rule.name.clone()), data: Some(channel_data) }
    }

    /// Decides whether `request` may sign in, and builds its `user_data`.
    pub fn authenticate_user(&self, request: &Request<'_>, mut trace: Option<&mut Trace>) -> Decision {
        let Some(user) = &self.user else {
            return Decision::Deny { rule: None, reason: DenyReason::SigninDisabled };
        };
        let vars = Vars::new(request, None, &[]);
        let mut ctx = scope(&self.root);
        ctx.set_variable_resolver(&vars);
        let env = native::Env {
            token: request.token,
            socket_id: request.socket_id.as_str(),
            channel: None,
            captures: &[],
        };
        let deny = |reason| Decision::Deny { rule: None, reason };
        if let Some(allow) = &user.allow {
            match eval_bool_fast(&ctx, &vars, &env, "user.allow", allow, trace.as_deref_mut()) {
                Ok(true) => {}
                Ok(false) => return deny(DenyReason::RuleDenied),
                Err(e) => return deny(DenyReason::RuleError(e)),
            }
        }
        let id = match eval_user_id(&ctx, &vars, &env, "user.id", &user.id, true, &mut trace) {
            Ok(id) => id,
            Err(e) => return deny(DenyReason::InvalidUserId(e)),
        };
        let mut data = serde_json::Map::new();
        data.insert("id".into(), serde_json::Value::String(id));
        if let Some(fields) = &user.user_info {
            let info = eval_fields(&ctx, &vars, &env, "user.user_info", fields, trace.as_deref_mut());
            data.insert("user_info".into(), serde_json::Value::Object(info));
        }
        if let Some(watchlist) = &user.watchlist {
            match eval(&ctx, &vars, "user.watchlist", watchlist, trace).and_then(|v| string_list(&v)) {
                Ok(list) => {
                    data.insert("watchlist".into(), serde_json::Value::Array(list));
                }
                // An absent claim leaves the watchlist out, as for user_info fields.
                Err(e) => tracing::debug!(error = %e, "watchlist left out"),
            }
        }
        Decision::Allow { rule: None, data: Some(js_json::to_string(&serde_json::Value::Object(data))) }
    }
}

/// A scope for one evaluation whose variables may borrow the request for
/// `'a` (the root context holds functions only, so it can be borrowed as a
/// context of any shorter lifetime).
fn scope<'a>(root: &'a cel::Context<'static, 'static>) -> cel::Context<'a, 'a> {
    let root: &'a cel::Context<'a, 'a> = root;
    root.new_inner_scope()
}

/// The variables of one evaluation, resolved when an expression reads
/// them: `token` and `token.NAME` are borrowed from the session (nothing is
/// copied), the strings borrow the request. Capture names never collide with the
/// globals (the compiler refuses such patterns).
struct Vars<'r, 'a> {
    request: &'r Request<'a>,
    channel: Option<&'r str>,
    captures: &'r [(&'r str, &'r str)],
    /// What the rule's query found (`query`), if it has one.
    query: Option<&'r TokenValue>,
    /// What the rule's hook answered (`hook`), if it has one.
    hook: Option<&'r TokenValue>,
    /// The expression being evaluated reads `token` by member only
    /// ([`Expression::token_by_member`]): `token` is then the lazy claims.
    token_by_member: std::sync::atomic::AtomicBool,
}

impl<'r, 'a> Vars<'r, 'a> {
    fn new(request: &'r Request<'a>, channel: Option<&'r str>, captures: &'r [(&'r str, &'r str)]) -> Self {
        Self {
            request,
            channel,
            captures,
            query: None,
            hook: None,
            token_by_member: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl VariableResolver for Vars<'_, '_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "token" => {
                Some(CowVal::Borrowed(if self.token_by_member.load(std::sync::atomic::Ordering::Relaxed) {
                    self.request.token.as_member_lookups()
                } else {
                    self.request.token.as_val()
                }))
            }
            // `token.NAME` is looked up as a qualified variable before
            // `token`: answering it converts one claim, not the whole map.
            // An absent claim falls through to `token` and its usual error.
            qualified if qualified.starts_with("token.") => {
                let name = &qualified["token.".len()..];
                if name.contains('.') {
                    return None;
                }
                self.request.token.member(name).map(CowVal::Borrowed)
            }
            "query" => self.query.map(|q| CowVal::Borrowed(q.as_val())),
            "hook" => self.hook.map(|h| CowVal::Borrowed(h.as_val())),
            qualified if qualified.starts_with("query.") || qualified.starts_with("hook.") => {
                let (fact, name) = match qualified.split_once('.') {
                    Some(("query", name)) => (self.query?, name),
                    Some((_, name)) => (self.hook?, name),
                    None => return None,
                };
                if name.contains('.') {
                    return None;
                }
                fact.member(name).map(CowVal::Borrowed)
            }
            "socket_id" => Some(CowVal::owned(CelString::from(self.request.socket_id.as_str()))),
            "channel" => self.channel.map(|c| CowVal::owned(CelString::from(c))),
            "request" => {
                let origin: Box<dyn Val + 'b> = match self.request.origin {
                    Some(o) => Box::new(CelString::from(o)),
                    None => Box::new(CelNull),
                };
                let mut map: HashMap<CelMapKey<'b>, Box<dyn Val + 'b>> = HashMap::with_capacity(1);
                map.insert(CelMapKey::from("origin"), origin);
                Some(CowVal::owned(CelMap::from(map)))
            }
            name => self
                .captures
                .iter()
                .find(|(capture, _)| *capture == name)
                .map(|(_, value)| CowVal::owned(CelString::from(*value))),
        }
    }
}

fn eval(
    ctx: &cel::Context<'_, '_>,
    vars: &Vars<'_, '_>,
    what: &str,
    expr: &Expression,
    trace: Option<&mut Trace>,
) -> Result<Value, String> {
    vars.token_by_member.store(expr.token_by_member, std::sync::atomic::Ordering::Relaxed);
    let result = expr.program.execute(ctx).map_err(|e| format!("`{what}` failed: {e}"));
    if let Some(t) = trace {
        t.steps.push(TraceStep {
            what: what.to_owned(),
            source: expr.source.clone(),
            outcome: match &result {
                Ok(v) => Ok(cel_to_json(v).map_or_else(|| format!("<{}>", type_name(v)), |j| j.to_string())),
                Err(e) => Err(e.clone()),
            },
        });
    }
    result
}

fn eval_bool(
    ctx: &cel::Context<'_, '_>,
    vars: &Vars<'_, '_>,
    what: &str,
    expr: &Expression,
    trace: Option<&mut Trace>,
) -> Result<bool, String> {
    match eval(ctx, vars, what, expr, trace)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("`{what}` gave a {}, not a bool", type_name(&other))),
    }
}

/// `expr` as a bool: by its native form when that gives a definite answer
/// (and no trace is asked for, whose steps are the interpreter's), else by
/// CEL.
fn eval_bool_fast(
    ctx: &cel::Context<'_, '_>,
    vars: &Vars<'_, '_>,
    env: &native::Env<'_>,
    what: &str,
    expr: &Expression,
    trace: Option<&mut Trace>,
) -> Result<bool, String> {
    if trace.is_none()
        && let Some(Native::Cond(cond)) = &expr.native
        && let Some(answer) = cond.eval(env)
    {
        return Ok(answer);
    }
    eval_bool(ctx, vars, what, expr, trace)
}

/// `expr`'s string by its native form, when it is a string term that
/// evaluates to a string.
fn native_str<'e>(env: &native::Env<'e>, expr: &'e Expression) -> Option<&'e str> {
    match &expr.native {
        Some(Native::Term(term)) => term.eval(env),
        _ => None,
    }
}

/// A presence `user_id` or sign-in `id`: natively when the expression names
/// a string, else by CEL; checked by [`checked_user_id`] either way.
fn eval_user_id(
    ctx: &cel::Context<'_, '_>,
    vars: &Vars<'_, '_>,
    env: &native::Env<'_>,
    what: &str,
    expr: &Expression,
    signin: bool,
    trace: &mut Option<&mut Trace>,
) -> Result<String, String> {
    if trace.is_none()
        && let Some(id) = native_str(env, expr)
    {
        return checked_user_id(id.to_owned(), signin);
    }
    eval(ctx, vars, what, expr, trace.as_deref_mut()).and_then(|v| user_id_string(&v, signin))
}

/// Evaluates `user_info` fields; a field whose expression fails (an absent
/// claim) is left out.
fn eval_fields(
    ctx: &cel::Context<'_, '_>,
    vars: &Vars<'_, '_>,
    env: &native::Env<'_>,
    what: &str,
    fields: &[(String, Expression)],
    mut trace: Option<&mut Trace>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::with_capacity(fields.len());
    for (name, expr) in fields {
        if trace.is_none()
            && let Some(value) = native_str(env, expr)
        {
            out.insert(name.clone(), serde_json::Value::String(value.to_owned()));
            continue;
        }
        let label = format!("{what}.{name}");
        match eval(ctx, vars, &label, expr, trace.as_deref_mut()) {
            Ok(v) => match cel_to_json(&v) {
                Some(j) => {
                    out.insert(name.clone(), j);
                }
                None => tracing::debug!(field = %label, "user_info field has no JSON form; left out"),
            },
            Err(e) => tracing::debug!(field = %label, error = %e, "user_info field left out"),
        }
    }
    out
}

/// A user id from a CEL value: a non-empty string (or an integer, written in
/// decimal). Sign-in ids must also be usable in `#server-to-user-<id>`, so
/// they are held to the channel-name character set.
fn user_id_string(v: &Value, signin: bool) -> Result<String, String> {
    let id = match v {
        Value::String(s) => s.as_str().to_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        other => return Err(format!("the id is a {}, not a string", type_name(other))),
    };
    checked_user_id(id, signin)
}

/// The checks of every user id, however it was evaluated.
fn checked_user_id(id: String, signin: bool) -> Result<String, String> {
    if id.is_empty() {
        return Err("the id is empty".into());
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Err(format!("the id is longer than {MAX_USER_ID_BYTES} bytes"));
    }
    if signin && !id.chars().all(|c| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c)) {
        return Err("a sign-in id may only hold A-Z a-z 0-9 and _-=@,.;".into());
    }
    Ok(id)
}

fn string_list(v: &Value) -> Result<Vec<serde_json::Value>, String> {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(serde_json::Value::String(s.as_str().to_owned())),
                other => Err(format!("watchlist holds a {}, not a string", type_name(other))),
            })
            .collect(),
        other => Err(format!("watchlist is a {}, not a list", type_name(other))),
    }
}
