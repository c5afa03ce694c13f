//! The auth endpoints: parse → session → policy → sign.
//!
//! Order of checks, so the status tells a client what to do: malformed
//! input (400) before the session (401) before the policy (403). Nothing is
//! signed unless the policy allowed it; every decision leaves one audit line.

use std::time::Instant;

use http::request::Parts;

use super::error::ApiError;
use super::request::Fields;
use crate::app::{Gateway, Runtime};
use crate::audit::{Event, ShadowOutcome, now_rfc3339};
use crate::policy::{Decision, Request, ShadowResult};
use crate::pusher::{ChannelKind, ChannelName, SignError, SocketId, js_json};
use crate::revocation::Check;
use crate::session::{Session, TokenOrigin, extract_token};
use crate::telemetry::{DecisionLabels, ScopeLabels, ShadowLabels};
use std::sync::Arc;

/// What a request did, for the audit event.
#[derive(Debug)]
pub struct Audit {
    /// The request id.
    pub request_id: String,
    /// When the request started.
    pub started: Instant,
    /// Whether a decision event was already recorded for this request.
    pub recorded: bool,
    /// Verified `sub`, when there is one.
    pub user: Option<String>,
    /// Channel(s) asked for.
    pub channel: Option<String>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// The client address (after trusted proxies).
    pub client: Option<std::net::IpAddr>,
}

impl Audit {
    /// A new record for a request.
    pub fn new(request_id: String, started: Instant) -> Self {
        Self { request_id, started, recorded: false, user: None, channel: None, rule: None, client: None }
    }

    /// Records one decision: an audit event and the decision metrics.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        rt: &Runtime,
        kind: &'static str,
        channel: Option<&str>,
        rule: Option<&str>,
        denial: Option<(&str, &str)>,
        shadow: &[ShadowResult],
    ) {
        self.recorded = true;
        let (decision, reason, detail) = match denial {
            None => ("allow", "", ""),
            Some((reason, detail)) => ("deny", reason, detail),
        };
        let reason_label: &'static str = match denial {
            None => "",
            Some((r, _)) => static_reason(r),
        };
        rt.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                kind,
                rule: rule.unwrap_or("").to_owned(),
                result: decision,
                reason: reason_label,
            })
            .inc();
        for s in shadow {
            rt.metrics
                .shadow
                .get_or_create(&ShadowLabels {
                    rule: s.rule.to_string(),
                    result: if s.allow { "allow" } else { "deny" },
                })
                .inc();
        }
        let shadow_out: Vec<ShadowOutcome<'_>> = shadow
            .iter()
            .map(|s| ShadowOutcome {
                rule: &s.rule,
                decision: if s.allow { "allow" } else { "deny" },
                reason: s.reason,
            })
            .collect();
        tracing::debug!(
            request_id = %self.request_id,
            user = self.user.as_deref().unwrap_or(""),
            channel = channel.unwrap_or(""),
            rule = rule.unwrap_or(""),
            decision,
            reason,
            "decision"
        );
        if rt.audit.enabled() {
            rt.audit.record(&Event {
                ts: now_rfc3339(),
                event: "decision",
                request_id: &self.request_id,
                kind,
                client: self.client,
                user: self.user.as_deref(),
                channel,
                rule,
                decision,
                reason,
                detail,
                latency_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
                shadow: &shadow_out,
            });
        }
    }
}

/// Reason codes are a closed set of static strings; this maps one back to
/// its `'static` form for a metric label (unknown codes become `other`).
fn static_reason(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "no_rule_matched",
        "rule_denied",
        "rule_error",
        "invalid_user_id",
        "presence_data_too_large",
        "signin_disabled",
        "encryption_not_configured",
        "csrf",
        "rate_limited",
        "jwks_unavailable",
        "user_revoked",
        "revocation_unavailable",
        "token_missing",
        "token_malformed",
        "algorithm_not_allowed",
        "unknown_kid",
        "invalid_signature",
        "token_expired",
        "token_not_yet_valid",
        "invalid_issuer",
        "unknown_issuer",
        "invalid_audience",
        "missing_claim",
        "invalid_claims",
    ];
    CODES.iter().find(|c| **c == code).copied().unwrap_or("other")
}

/// `POST /pusher/auth`: one channel, or a batch (`channel_name[N]`).
pub async fn channel_auth(
    rt: &Runtime,
    gw: &Gateway,
    parts: &Parts,
    fields: &Fields,
    audit: &mut Audit,
) -> Result<String, ApiError> {
    let socket = SocketId::parse(fields.required("socket_id")?).map_err(|e| ApiError::protocol(&e))?;
    let single = fields.one("channel_name")?;
    let batch = fields.batch_channels(gw.http.max_batch_channels)?;
    match (single, batch.is_empty()) {
        (Some(name), true) => {
            let channel = parse_channel(name)?;
            audit.channel = Some(channel.as_str().to_owned());
            let session = session(rt, gw, parts, fields, audit).await?;
            let request = Request { token: &session.derived, socket_id: &socket, origin: origin(parts) };
            decide(rt, gw, &request, &socket, &channel, audit).map(|auth| auth.to_json())
        }
        (None, false) => {
            audit.channel = Some(batch.join(","));
            let session = session(rt, gw, parts, fields, audit).await?;
            let request = Request { token: &session.derived, socket_id: &socket, origin: origin(parts) };
            let mut out = String::from("{");
            for (i, name) in batch.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                js_json::write_str(&mut out, name);
                out.push(':');
                let result = parse_channel(name).and_then(|c| decide(rt, gw, &request, &socket, &c, audit));
                match result {
                    Ok(auth) => out.push_str(&auth.to_json()),
                    Err(e) => {
                        let entry = serde_json::json!({
                            "status": e.status().as_u16(),
                            "error": e.message(),
                            "reason": e.reason(),
                        });
                        out.push_str(&entry.to_string());
                    }
                }
            }
            out.push('}');
            Ok(out)
        }
        (Some(_), false) => Err(ApiError::bad_request(
            "invalid_field",
            "send either `channel_name` or `channel_name[N]` fields, not both",
        )),
        (None, true) => Err(ApiError::bad_request("missing_field", "`channel_name` is missing")),
    }
}

/// `POST /pusher/user-auth`: sign-in.
pub async fn user_auth(
    rt: &Runtime,
    gw: &Gateway,
    parts: &Parts,
    fields: &Fields,
    audit: &mut Audit,
) -> Result<String, ApiError> {
    let socket = SocketId::parse(fields.required("socket_id")?).map_err(|e| ApiError::protocol(&e))?;
    let session = session(rt, gw, parts, fields, audit).await?;
    let request = Request { token: &session.derived, socket_id: &socket, origin: origin(parts) };
    let decision = gw.policy.authenticate_user(&request, None);
    let denial = deny_parts(&decision);
    audit.record(rt, "signin", None, None, denial.as_ref().map(|(r, d)| (*r, d.as_str())), &[]);
    match decision {
        Decision::Allow { data: Some(user_data), .. } => {
            Ok(gw.signer.authenticate_user(&socket, &user_data).to_json())
        }
        Decision::Allow { data: None, .. } => {
            Err(ApiError::denied(&crate::policy::DenyReason::InvalidUserId("no user data".into()), None))
        }
        Decision::Deny { reason, rule } => Err(ApiError::denied(&reason, rule.as_deref())),
    }
}

fn parse_channel(name: &str) -> Result<ChannelName, ApiError> {
    let channel = ChannelName::parse(name).map_err(|e| ApiError::protocol(&e))?;
    if channel.kind() == ChannelKind::Public {
        return Err(ApiError::bad_request(
            "public_channel",
            "public channels need no authorization; only private-, presence- and private-encrypted- channels are signed",
        ));
    }
    Ok(channel)
}

fn origin(parts: &Parts) -> Option<&str> {
    parts.headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// Finds and verifies the session token, then applies the per-user limit.
///
/// A token that came from a cookie is sent by the browser on its own, so a
/// cookie session also needs an allowed `Origin` (or `Referer`): otherwise
/// any site could make a visitor's browser ask for their channels (CSRF).
/// Header and form tokens are put there by the app's own script.
async fn session(
    rt: &Runtime,
    gw: &Gateway,
    parts: &Parts,
    fields: &Fields,
    audit: &mut Audit,
) -> Result<Arc<Session<crate::policy::TokenValue>>, ApiError> {
    let (token, origin) =
        extract_token(&gw.token_sources, &parts.headers, &fields.pairs).map_err(ApiError::Unauthorized)?;
    if origin == TokenOrigin::Cookie && !same_site_request(gw, &parts.headers) {
        return Err(ApiError::Forbidden {
            reason: "csrf",
            message: "a cookie session needs an allowed Origin".into(),
            rule: None,
        });
    }
    let session = gw.sessions.authenticate(token).await.map_err(ApiError::from_auth)?;
    let sub = session.derived.claim_str("sub");
    audit.user = sub.map(str::to_owned);
    match rt.revocations.check(|name| session.derived.claim_str(name)) {
        Check::Clear => {}
        Check::Revoked => {
            return Err(ApiError::Forbidden {
                reason: "user_revoked",
                message: "this user or session has been revoked".into(),
                rule: None,
            });
        }
        Check::Unavailable => {
            return Err(ApiError::Unavailable {
                reason: "revocation_unavailable",
                message: "revocations cannot be checked right now; retry later".into(),
                retry_after_secs: 2,
            });
        }
    }
    if let Some(sub) = sub {
        gw.limits.check_user(sub).map_err(|l| {
            rt.metrics.rate_limited.get_or_create(&ScopeLabels { scope: "user" }).inc();
            ApiError::limited(l)
        })?;
    }
    Ok(session)
}

/// Whether `Origin` (or, without it, the origin of `Referer`) is allowed.
fn same_site_request(gw: &Gateway, headers: &http::HeaderMap) -> bool {
    let origin = match headers.get(http::header::ORIGIN) {
        Some(o) => o.to_str().ok().map(str::to_owned),
        None => headers
            .get(http::header::REFERER)
            .and_then(|r| r.to_str().ok())
            .and_then(|r| url::Url::parse(r).ok())
            .map(|u| u.origin().ascii_serialization()),
    };
    origin.is_some_and(|o| gw.cors.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(&o)))
}

/// Decides one channel and signs it when allowed.
fn decide(
    rt: &Runtime,
    gw: &Gateway,
    request: &Request<'_>,
    socket: &SocketId,
    channel: &ChannelName,
    audit: &mut Audit,
) -> Result<crate::pusher::ChannelAuth, ApiError> {
    if channel.kind() == ChannelKind::PrivateEncrypted && !gw.signer.has_master_key() {
        tracing::warn!(channel = %channel, "encrypted channel requested but no encryption_master_key is configured");
        let detail = "no encryption_master_key is configured";
        audit.record(
            rt,
            "channel",
            Some(channel.as_str()),
            None,
            Some(("encryption_not_configured", detail)),
            &[],
        );
        return Err(ApiError::Forbidden {
            reason: "encryption_not_configured",
            message: "encrypted channels are not enabled on this gateway".into(),
            rule: None,
        });
    }
    let (decision, shadow) = gw.policy.authorize_channel_with_shadow(request, channel, None);
    audit.rule = decision.rule().map(str::to_owned);
    let denial = deny_parts(&decision);
    audit.record(
        rt,
        "channel",
        Some(channel.as_str()),
        decision.rule(),
        denial.as_ref().map(|(r, d)| (*r, d.as_str())),
        &shadow,
    );
    match decision {
        Decision::Allow { data, .. } => {
            gw.signer.authorize_channel(socket, channel, data.as_deref()).map_err(|e| match e {
                SignError::PublicChannel => {
                    ApiError::bad_request("public_channel", "public channels are not signed")
                }
                SignError::NoMasterKey => ApiError::Forbidden {
                    reason: "encryption_not_configured",
                    message: "encrypted channels are not enabled on this gateway".into(),
                    rule: None,
                },
            })
        }
        Decision::Deny { reason, rule } => Err(ApiError::denied(&reason, rule.as_deref())),
    }
}

/// The reason code and operator detail of a denial; `None` for an allow.
fn deny_parts(decision: &Decision) -> Option<(&'static str, String)> {
    match decision {
        Decision::Allow { .. } => None,
        Decision::Deny { reason, .. } => Some((reason.code(), reason.to_string())),
    }
}
