//! The auth endpoints: parse → session → policy → sign.
//!
//! Order of checks, so the status tells a client what to do: malformed
//! input (400) before the session (401) before the policy (403). Nothing is
//! signed unless the policy allowed it. A handler records nothing itself: it
//! returns an [`Outcome`] — its answer and one [`Decided`] per decision —
//! and `http::handle` writes the audit events and metrics.

use std::sync::Arc;

use bytes::Bytes;

use super::error::ApiError;
use super::request::{self, Fields};
use super::{Ctx, cors};
use crate::membership::introspect::{Credential, Introspector, SessionAnswer};
use crate::policy::{Decision, DenyReason, Request, ShadowResult, TokenValue};
use crate::pusher::{ChannelAuth, ChannelKind, ChannelName, SignError, SocketId, js_json};
use crate::reason::Reason;
use crate::revocation::Check;
use crate::session::{Session, TokenOrigin, extract_token};
use crate::telemetry::ScopeLabels;

/// What a request did: its answer, the decisions behind it, and the verified
/// user, if any.
pub(crate) struct Outcome {
    /// A 200 JSON body, a response built elsewhere, or a refusal.
    pub answer: Result<Answer, ApiError>,
    /// One entry per decision: each channel asked for (also a refusal before
    /// the policy, such as an invalid session, once the channel is known),
    /// or the sign-in.
    pub decisions: Vec<Decided>,
    /// The verified `sub`.
    pub user: Option<String>,
}

/// A successful answer.
pub(crate) enum Answer {
    /// 200 with this JSON body.
    Json(String),
    /// A response built by another part (CORS preflight, readiness, relay).
    Response(http::Response<super::Body>),
}

/// One decision, as the audit log and the metrics see it.
pub(crate) struct Decided {
    /// Channel authorization or sign-in.
    pub kind: Kind,
    /// The channel (for a refusal before the policy in a batch: the
    /// channels, comma-separated).
    pub channel: Option<String>,
    /// The deciding rule.
    pub rule: Option<Arc<str>>,
    /// The reason and operator detail of a denial; `None` for an allow.
    pub denial: Option<(Reason, String)>,
    /// What shadow rules would have decided.
    pub shadow: Vec<ShadowResult>,
}

/// What was decided.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Channel authorization.
    Channel,
    /// User sign-in.
    Signin,
}

impl Kind {
    /// The audit log's and the metrics' `kind`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Signin => "signin",
        }
    }
}

impl Outcome {
    fn new() -> Self {
        Self { answer: Err(ApiError::not_found()), decisions: Vec::new(), user: None }
    }

    /// A 200 JSON answer, no decision.
    pub(crate) fn answer(body: String) -> Self {
        Self { answer: Ok(Answer::Json(body)), ..Self::new() }
    }

    /// A response built elsewhere, no decision.
    pub(crate) fn response(resp: http::Response<super::Body>) -> Self {
        Self { answer: Ok(Answer::Response(resp)), ..Self::new() }
    }

    /// A refusal, no decision.
    pub(crate) fn refused(e: ApiError) -> Self {
        Self { answer: Err(e), ..Self::new() }
    }

    fn refuse(mut self, e: ApiError) -> Self {
        self.answer = Err(e);
        self
    }

    /// A refusal before the policy (session, CSRF, rate limit, body) of a
    /// request whose subject is known: a decision too, except for malformed
    /// input (400), which decides nothing.
    fn refuse_deciding(mut self, kind: Kind, channel: Option<&str>, e: ApiError) -> Self {
        if !e.is_malformed_request() {
            self.decisions.push(Decided {
                kind,
                channel: channel.map(str::to_owned),
                rule: None,
                denial: Some((e.reason(), String::new())),
                shadow: Vec::new(),
            });
        }
        self.refuse(e)
    }
}

impl From<Result<http::Response<super::Body>, ApiError>> for Outcome {
    fn from(r: Result<http::Response<super::Body>, ApiError>) -> Self {
        match r {
            Ok(resp) => Outcome::response(resp),
            Err(e) => Outcome::refused(e),
        }
    }
}

/// Counts the request against its client address's rate limit.
fn check_ip(cx: &Ctx<'_>) -> Result<(), ApiError> {
    cx.gw.limits.check_ip(cx.client).map_err(|l| {
        cx.rt.metrics.rate_limited.get_or_create(&ScopeLabels { scope: "ip" }).inc();
        ApiError::limited(l)
    })
}

async fn read_fields<B>(cx: &Ctx<'_>, body: B) -> Result<Fields, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    request::read(&cx.parts.headers, body, cx.gw.http.max_body_bytes, cx.gw.http.request_timeout).await
}

/// `POST /pusher/auth`: one channel, or a batch (`channel_name[N]`).
pub(crate) async fn channel_auth<B>(cx: &Ctx<'_>, body: B) -> Outcome
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let out = Outcome::new();
    if let Err(e) = check_ip(cx) {
        return out.refuse(e);
    }
    let fields = match read_fields(cx, body).await {
        Ok(f) => f,
        Err(e) => return out.refuse(e),
    };
    let parsed = (|| {
        let socket = SocketId::parse(fields.required("socket_id")?).map_err(|e| ApiError::from(&e))?;
        let single = fields.one("channel_name")?;
        let batch = fields.batch_channels(cx.gw.http.max_batch_channels)?;
        Ok::<_, ApiError>((socket, single, batch))
    })();
    let (socket, single, batch) = match parsed {
        Ok(p) => p,
        Err(e) => return out.refuse(e),
    };
    match (single, batch.is_empty()) {
        (Some(name), true) => match parse_channel(name) {
            Ok(channel) => one_channel(cx, &fields, socket, channel, out).await,
            Err(e) => out.refuse(e),
        },
        (None, false) => batch_channels(cx, &fields, socket, &batch, out).await,
        (Some(_), false) => out.refuse(ApiError::new(
            Reason::InvalidField,
            "send either `channel_name` or `channel_name[N]` fields, not both",
        )),
        (None, true) => out.refuse(ApiError::new(Reason::MissingField, "`channel_name` is missing")),
    }
}

async fn one_channel(
    cx: &Ctx<'_>,
    fields: &Fields,
    socket: SocketId,
    channel: ChannelName,
    mut out: Outcome,
) -> Outcome {
    let session = match session(cx, fields, &mut out).await {
        Ok(s) => s,
        Err(e) => return out.refuse_deciding(Kind::Channel, Some(channel.as_str()), e),
    };
    let request = Request { token: session.token(), socket_id: &socket, origin: origin(cx) };
    let answer = decide(cx, &request, &socket, channel, &mut out).await;
    out.answer = answer.map(|auth| Answer::Json(auth.to_json()));
    out
}

/// A batch: one session check for all, then one decision per channel; the
/// answer maps each channel to its signature or its refusal.
async fn batch_channels(
    cx: &Ctx<'_>,
    fields: &Fields,
    socket: SocketId,
    batch: &[&str],
    mut out: Outcome,
) -> Outcome {
    let session = match session(cx, fields, &mut out).await {
        Ok(s) => s,
        Err(e) => return out.refuse_deciding(Kind::Channel, Some(&batch.join(",")), e),
    };
    let request = Request { token: session.token(), socket_id: &socket, origin: origin(cx) };
    let mut body = String::from("{");
    out.decisions.reserve(batch.len());
    for (i, name) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        js_json::write_str(&mut body, name);
        body.push(':');
        let decided = match parse_channel(name) {
            Ok(c) => decide(cx, &request, &socket, c, &mut out).await,
            Err(e) => Err(e),
        };
        match decided {
            Ok(auth) => body.push_str(&auth.to_json()),
            Err(e) => e.batch_entry(&mut body),
        }
    }
    body.push('}');
    out.answer = Ok(Answer::Json(body));
    out
}

/// `POST /pusher/user-auth`: sign-in.
pub(crate) async fn user_auth<B>(cx: &Ctx<'_>, body: B) -> Outcome
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut out = Outcome::new();
    if let Err(e) = check_ip(cx) {
        return out.refuse_deciding(Kind::Signin, None, e);
    }
    let fields = match read_fields(cx, body).await {
        Ok(f) => f,
        Err(e) => return out.refuse_deciding(Kind::Signin, None, e),
    };
    let socket = match fields.required("socket_id").and_then(|s| SocketId::parse(s).map_err(|e| (&e).into()))
    {
        Ok(s) => s,
        Err(e) => return out.refuse(e),
    };
    let session = match session(cx, &fields, &mut out).await {
        Ok(s) => s,
        Err(e) => return out.refuse_deciding(Kind::Signin, None, e),
    };
    let request = Request { token: session.token(), socket_id: &socket, origin: origin(cx) };
    let decision = cx.gw.policy.authenticate_user(&request, None);
    out.decisions.push(Decided {
        kind: Kind::Signin,
        channel: None,
        rule: None,
        denial: denial(&decision),
        shadow: Vec::new(),
    });
    out.answer = match decision {
        Decision::Allow { data: Some(user_data), .. } => {
            Ok(Answer::Json(cx.gw.signer.authenticate_user(&socket, &user_data).to_json()))
        }
        Decision::Allow { data: None, .. } => {
            Err(ApiError::denied(&DenyReason::InvalidUserId("no user data".into()), None))
        }
        Decision::Deny { reason, rule } => Err(ApiError::denied(&reason, rule.as_deref())),
    };
    out
}

fn parse_channel(name: &str) -> Result<ChannelName, ApiError> {
    let channel = ChannelName::parse(name).map_err(|e| ApiError::from(&e))?;
    if channel.kind() == ChannelKind::Public {
        return Err(ApiError::new(
            Reason::PublicChannel,
            "public channels need no authorization; only private-, presence- and private-encrypted- channels are signed",
        ));
    }
    Ok(channel)
}

fn origin<'a>(cx: &'a Ctx<'_>) -> Option<&'a str> {
    cx.header(http::header::ORIGIN)
}

/// A verified session: a JWT's (kept in the token cache), or the app's
/// answer about a session cookie (kept by the introspector).
pub(crate) enum SessionRef {
    /// A verified token.
    Jwt(Arc<Session<TokenValue>>),
    /// Claims from the app's session endpoint.
    App(Arc<TokenValue>),
}

impl SessionRef {
    /// The claims as the policy's `token`.
    pub(crate) fn token(&self) -> &TokenValue {
        match self {
            SessionRef::Jwt(s) => &s.derived,
            SessionRef::App(t) => t,
        }
    }
}

/// Finds and verifies the session, checks revocations, then applies the
/// per-user limit.
///
/// A JWT is looked for in `session.token_from`; with `session.introspect`,
/// a request without one (or any request, when no JWT issuer is configured)
/// is asked about at the app's session endpoint with the forwarded cookies
/// and headers.
///
/// A session sent in a cookie is sent by the browser on its own, so a
/// cookie session also needs an allowed `Origin` (or `Referer`): otherwise
/// any site could make a visitor's browser ask for their channels (CSRF).
/// Header and form tokens are put there by the app's own script.
async fn session(cx: &Ctx<'_>, fields: &Fields, out: &mut Outcome) -> Result<SessionRef, ApiError> {
    let gw = cx.gw;
    let introspect = gw.lookups.introspect.as_ref().map(|(_, i)| i);
    let jwt = if introspect.is_some() && gw.sessions.verifier().issuers().is_empty() {
        Err(crate::session::AuthError::MissingToken)
    } else {
        extract_token(&gw.token_sources, &cx.parts.headers, &fields.pairs)
    };
    let session = match (jwt, introspect) {
        (Ok((token, origin)), _) => {
            if origin == TokenOrigin::Cookie && !same_site_request(cx) {
                return Err(ApiError::new(Reason::Csrf, "a cookie session needs an allowed Origin"));
            }
            SessionRef::Jwt(gw.sessions.authenticate(token, cx.now).await?)
        }
        (Err(crate::session::AuthError::MissingToken), Some(introspector)) => {
            SessionRef::App(introspected(cx, introspector).await?)
        }
        (Err(e), _) => return Err(e.into()),
    };
    let token = session.token();
    let sub = token.claim_str("sub");
    out.user = sub.map(str::to_owned);
    match cx.rt.revocations.check(|name| token.claim_str(name)) {
        Check::Clear => {}
        Check::Revoked => {
            return Err(ApiError::new(Reason::UserRevoked, "this user or session has been revoked"));
        }
        Check::Unavailable => {
            return Err(ApiError::revocations_unavailable(
                "revocations cannot be checked right now; retry later",
            ));
        }
    }
    if let Some(sub) = sub {
        gw.limits.check_user(sub).map_err(|l| {
            cx.rt.metrics.rate_limited.get_or_create(&ScopeLabels { scope: "user" }).inc();
            ApiError::limited(l)
        })?;
    }
    Ok(session)
}

/// Asks the app's session endpoint (through its cache) who the forwarded
/// cookies and headers belong to.
async fn introspected(cx: &Ctx<'_>, introspector: &Introspector) -> Result<Arc<TokenValue>, ApiError> {
    let Some(credential) = Credential::from_request(&cx.parts.headers, introspector.forward()) else {
        return Err(crate::session::AuthError::MissingToken.into());
    };
    if credential.cookie.is_some() && !same_site_request(cx) {
        return Err(ApiError::new(Reason::Csrf, "a cookie session needs an allowed Origin"));
    }
    let now = tokio::time::Instant::from_std(cx.now.instant);
    match introspector.introspect(&credential, now).await {
        Ok((SessionAnswer::Claims(_, token), _)) => Ok(token),
        Ok((SessionAnswer::NoSession, _)) => {
            Err(ApiError::new(Reason::SessionRejected, "the app knows no such session; sign in again"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "session endpoint failed; refusing (session_unavailable)");
            Err(ApiError::session_unavailable("the app's session endpoint is unavailable; retry later"))
        }
    }
}

/// Whether `Origin` (or, without it, the origin of `Referer`) is allowed.
fn same_site_request(cx: &Ctx<'_>) -> bool {
    if cx.parts.headers.contains_key(http::header::ORIGIN) {
        return cors::allowed_origin(cx.gw, &cx.parts.headers).is_some();
    }
    cx.header(http::header::REFERER)
        .and_then(|r| url::Url::parse(r).ok())
        .map(|u| u.origin().ascii_serialization())
        .is_some_and(|o| cx.gw.cors.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(&o)))
}

/// Decides one channel, notes the decision, and signs when allowed.
async fn decide(
    cx: &Ctx<'_>,
    request: &Request<'_>,
    socket: &SocketId,
    channel: ChannelName,
    out: &mut Outcome,
) -> Result<ChannelAuth, ApiError> {
    let gw = cx.gw;
    if channel.kind() == ChannelKind::PrivateEncrypted && !gw.signer.has_master_key() {
        tracing::warn!(channel = %channel, "encrypted channel requested but no encryption_master_key is configured");
        out.decisions.push(Decided {
            kind: Kind::Channel,
            channel: Some(channel.into_string()),
            rule: None,
            denial: Some((Reason::EncryptionNotConfigured, "no encryption_master_key is configured".into())),
            shadow: Vec::new(),
        });
        return Err(not_configured());
    }
    let (decision, shadow) = if gw.policy.has_lookups() {
        let now = tokio::time::Instant::from_std(cx.now.instant);
        let (facts, _) = crate::app::lookups::gather(gw, request, &channel, now, false).await;
        gw.policy.authorize_channel_with_facts(request, &channel, &facts, None)
    } else {
        gw.policy.authorize_channel_with_shadow(request, &channel, None)
    };
    let answer = match &decision {
        Decision::Allow { data, .. } => {
            gw.signer.authorize_channel(socket, &channel, data.as_deref()).map_err(|e| match e {
                SignError::PublicChannel => {
                    ApiError::new(Reason::PublicChannel, "public channels are not signed")
                }
                SignError::NoMasterKey => not_configured(),
            })
        }
        Decision::Deny { reason, rule } => Err(ApiError::denied(reason, rule.as_deref())),
    };
    out.decisions.push(Decided {
        kind: Kind::Channel,
        channel: Some(channel.into_string()),
        rule: decision.rule_arc(),
        denial: denial(&decision),
        shadow,
    });
    answer
}

fn not_configured() -> ApiError {
    ApiError::new(Reason::EncryptionNotConfigured, "encrypted channels are not enabled on this gateway")
}

/// The reason and operator detail of a denial; `None` for an allow.
fn denial(decision: &Decision) -> Option<(Reason, String)> {
    match decision {
        Decision::Allow { .. } => None,
        Decision::Deny { reason, .. } => Some((reason.reason(), reason.to_string())),
    }
}
