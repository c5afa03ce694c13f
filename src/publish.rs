//! The publish proxy: an app's official server SDK (npm `pusher`, PyPI
//! `pusher`, …), configured with a *local* key, secret and master key and
//! pointed at channelgate's admin listener, calls the Pusher REST API
//! unchanged; channelgate checks the local signature, validates, opens
//! payloads the SDK sealed for `private-encrypted-*` channels and re-seals
//! them with the real master key, re-signs with the real secret and
//! forwards to `pusher.api_url`, then passes the answer back (status and
//! body). The app never holds the Pusher secret or the encryption master key.
//!
//! Endpoints (the REST API the SDKs call; anything else under `/apps/` or
//! `/users/` is 404 `unknown_endpoint`, never forwarded):
//! - `POST /apps/{id}/events`, `POST /apps/{id}/batch_events` (also
//!   `#server-to-user-*` channels: `sendToUser`);
//! - `GET /apps/{id}/channels` (`info`, `filter_by_prefix`),
//!   `GET /apps/{id}/channels/{name}` (`info`),
//!   `GET /apps/{id}/channels/{name}/users`;
//! - `POST /apps/{id}/users/{user}/terminate_connections`, and the same
//!   without the `/apps/{id}` prefix, which pusher-http-python 3.3 sends.
//!
//! `{id}` is the client's local `app_id` (or the real one when it has
//! none); the request goes to the real app. GETs are forwarded without
//! `body_md5` even when the SDK signed one (the Python SDK does; Sockudo
//! refuses it on a GET, and the REST API defines it for bodies only).
//!
//! Encrypted channels: a `data` that is a sealed payload
//! (`{"nonce","ciphertext"}`) must open with the key the SDK derives from
//! the client's local master key — SHA-256 of the channel name and the key —
//! or the request is refused (400 `undecryptable_payload`); the plaintext is
//! re-sealed with the real master key, byte for byte. Any other `data` is
//! plaintext and sealed as it is, for SDKs that can send it.
//!
//! Limits (as the SDKs and Pusher enforce them): at most 100 channels per
//! event, 10 events per batch, event names up to 200 characters, `data` up
//! to `publish.max_payload_bytes` (10 KiB by default); an encrypted channel
//! must be the event's only channel.

pub(crate) mod proxy;

use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value};

use crate::app::Gateway;
use crate::config::PublishClient;
use crate::http::error::ApiError;
use crate::pusher::{ChannelKind, ChannelName, SocketId, crypto, js_json, rest};
use crate::reason::Reason;

/// Most channels per event.
const MAX_CHANNELS: usize = 100;
/// Most events per batch.
const MAX_BATCH: usize = 10;
/// Longest event name.
const MAX_EVENT_NAME: usize = 200;
/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 256 * 1024;
/// Largest clock skew accepted on `auth_timestamp`.
const MAX_SKEW_SECS: u64 = 600;

fn bad(reason: Reason, message: impl Into<String>) -> ApiError {
    ApiError::new(reason, message.into())
}

/// Which REST endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /apps/{id}/events`.
    Events,
    /// `POST /apps/{id}/batch_events`.
    BatchEvents,
    /// `GET /apps/{id}/channels`.
    Channels,
    /// `GET /apps/{id}/channels/{name}`.
    Channel,
    /// `GET /apps/{id}/channels/{name}/users`.
    ChannelUsers,
    /// `POST /apps/{id}/users/{user}/terminate_connections`.
    TerminateUser,
}

impl Endpoint {
    /// The one method the endpoint takes.
    pub(crate) fn method(self) -> Method {
        match self {
            Endpoint::Events | Endpoint::BatchEvents | Endpoint::TerminateUser => Method::POST,
            Endpoint::Channels | Endpoint::Channel | Endpoint::ChannelUsers => Method::GET,
        }
    }

    /// Name in the audit log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Events => "events",
            Endpoint::BatchEvents => "batch_events",
            Endpoint::Channels => "channels",
            Endpoint::Channel => "channel",
            Endpoint::ChannelUsers => "channel_users",
            Endpoint::TerminateUser => "terminate_user_connections",
        }
    }

    /// Query parameters (besides authentication's) the endpoint accepts.
    fn params(self) -> &'static [&'static str] {
        match self {
            Endpoint::Channels => &["filter_by_prefix", "info"],
            Endpoint::Channel => &["info"],
            _ => &[],
        }
    }
}

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The `{id}` in the path; `None` for `/users/{user}/terminate_connections`.
    pub app_id: Option<String>,
    /// The channel name or user id in the path, if any.
    pub subject: Option<String>,
}

/// Whether `path` is the publish proxy's to answer (`/apps/…`, `/users/…`).
pub(crate) fn is_proxy_path(path: &str) -> bool {
    path.starts_with("/apps/") || path.starts_with("/users/")
}

/// Routes a proxy path; an unknown one is 404 `unknown_endpoint`.
pub(crate) fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let routed = |endpoint, app_id: &str, subject: Option<&str>| Route {
        endpoint,
        app_id: Some(app_id.to_owned()),
        subject: subject.map(str::to_owned),
    };
    let nonempty = |s: &&str| !s.is_empty();
    match segments.as_slice() {
        ["apps", id, "events"] if nonempty(id) => Ok(routed(Endpoint::Events, id, None)),
        ["apps", id, "batch_events"] if nonempty(id) => Ok(routed(Endpoint::BatchEvents, id, None)),
        ["apps", id, "channels"] if nonempty(id) => Ok(routed(Endpoint::Channels, id, None)),
        ["apps", id, "channels", name] if nonempty(id) => Ok(routed(Endpoint::Channel, id, Some(name))),
        ["apps", id, "channels", name, "users"] if nonempty(id) => {
            Ok(routed(Endpoint::ChannelUsers, id, Some(name)))
        }
        ["apps", id, "users", user, "terminate_connections"] if nonempty(id) => {
            Ok(routed(Endpoint::TerminateUser, id, Some(user)))
        }
        // pusher-http-python 3.3's terminate_user_connections.
        ["users", user, "terminate_connections"] => {
            Ok(Route { endpoint: Endpoint::TerminateUser, app_id: None, subject: Some((*user).to_owned()) })
        }
        _ => Err(ApiError::new(Reason::UnknownEndpoint, "not a REST endpoint the publish proxy serves")),
    }
}

/// A verified request, ready to be re-signed and forwarded.
#[derive(Debug)]
pub(crate) struct Forward {
    /// The local key that signed it.
    pub key: String,
    /// The path on the real app (`/apps/{real id}/…`).
    pub path: String,
    /// Query parameters to forward (besides authentication's).
    pub params: Vec<(String, String)>,
    /// The body to forward (empty for a GET).
    pub body: Bytes,
}

/// Whether `s` is a user id as the REST API takes it (the channel-name
/// charset, 1 to 200 characters).
fn valid_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c))
}

/// Checks the local signature of a routed request (whose method is
/// `route.endpoint.method()`), then prepares what to forward. On a refusal
/// after the signature verified, the local key is returned with it.
pub(crate) fn prepare(
    gw: &Gateway,
    route: &Route,
    path: &str,
    query: &str,
    body: &[u8],
    now: u64,
) -> Result<Forward, (ApiError, Option<String>)> {
    let Some(settings) = &gw.publish else {
        return Err((ApiError::new(Reason::NotFound, "publishing is not enabled"), None));
    };
    let method = route.endpoint.method();
    let key = rest::verify(
        method.as_str(),
        path,
        query,
        body,
        |key| settings.clients.iter().find(|c| c.key == key).map(|c| c.secret.clone()),
        now,
        MAX_SKEW_SECS,
    )
    .map_err(|e| (ApiError::from(e), None))?;
    let Some(client) = settings.clients.iter().find(|c| c.key == key) else {
        // verify found the key a moment ago.
        return Err((ApiError::new(Reason::UnknownKey, "unknown auth_key"), None));
    };
    prepare_verified(gw, client, settings.max_payload_bytes, route, query, body)
        .map_err(|r| (r, Some(client.key.clone())))
}

fn prepare_verified(
    gw: &Gateway,
    client: &PublishClient,
    max_payload: usize,
    route: &Route,
    query: &str,
    body: &[u8],
) -> Result<Forward, ApiError> {
    let expected = client.app_id.as_deref().unwrap_or(&gw.app_id);
    if let Some(id) = &route.app_id
        && id != expected
    {
        return Err(ApiError::new(
            Reason::AppIdMismatch,
            format!("publish client `{}` publishes to app `{expected}`, not `{id}`", client.key),
        ));
    }
    let params = params(route.endpoint, query)?;
    let real = &gw.app_id;
    let subject = route.subject.as_deref().unwrap_or_default();
    let (path, body) = match route.endpoint {
        Endpoint::Events | Endpoint::BatchEvents => {
            let tail = if route.endpoint == Endpoint::Events { "events" } else { "batch_events" };
            (format!("/apps/{real}/{tail}"), prepare_events(gw, client, max_payload, route.endpoint, body)?)
        }
        Endpoint::Channels | Endpoint::Channel | Endpoint::ChannelUsers => {
            if !body.is_empty() {
                return Err(bad(Reason::InvalidBody, "a GET carries no body"));
            }
            let path = match route.endpoint {
                Endpoint::Channels => format!("/apps/{real}/channels"),
                endpoint => {
                    let channel = ChannelName::parse(subject).map_err(|e| ApiError::from(&e))?;
                    let users = if endpoint == Endpoint::ChannelUsers { "/users" } else { "" };
                    format!("/apps/{real}/channels/{}{users}", channel.as_str())
                }
            };
            (path, Bytes::new())
        }
        Endpoint::TerminateUser => {
            if !valid_user_id(subject) {
                return Err(bad(
                    Reason::MalformedUserId,
                    "a user id is 1 to 200 characters of [A-Za-z0-9_-=@,.;]",
                ));
            }
            if !matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(m)) if m.is_empty()) {
                return Err(bad(Reason::InvalidBody, "terminate_connections takes the body `{}`"));
            }
            (format!("/apps/{real}/users/{subject}/terminate_connections"), Bytes::from_static(b"{}"))
        }
    };
    Ok(Forward { key: client.key.clone(), path, params, body })
}

/// The request's query parameters other than authentication's, checked
/// against what the endpoint takes.
fn params(endpoint: Endpoint, query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if rest::is_auth_param(&k) {
            continue;
        }
        if !endpoint.params().contains(&k.as_ref()) {
            let allowed = endpoint.params().join(", ");
            let allowed = if allowed.is_empty() { "none".to_owned() } else { allowed };
            return Err(bad(
                Reason::UnknownParameter,
                format!("unknown query parameter `{k:.40}` (this endpoint takes: {allowed})"),
            ));
        }
        if out.iter().any(|(known, _)| *known == k) {
            return Err(bad(Reason::DuplicateParameter, format!("`{k}` is given twice")));
        }
        let valid = match k.as_ref() {
            "info" => {
                !v.is_empty()
                    && v.len() <= 200
                    && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b',')
            }
            _ => v.len() <= 200 && v.chars().all(|c| c.is_ascii_alphanumeric() || "_-=@,.;#".contains(c)),
        };
        if !valid {
            return Err(bad(Reason::InvalidParameter, format!("`{k}` has an invalid value")));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// Validates an events or batch body; opens and re-seals, or seals,
/// encrypted-channel payloads.
fn prepare_events(
    gw: &Gateway,
    client: &PublishClient,
    max_payload: usize,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<Bytes, ApiError> {
    let mut doc: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(bad(Reason::InvalidBody, "the body is not a JSON object")),
    };
    let mut changed = false;
    if endpoint == Endpoint::Events {
        changed |= prepare_event(gw, client, &mut doc, max_payload, false)?;
    } else {
        let Some(Value::Array(items)) = doc.get_mut("batch") else {
            return Err(bad(Reason::InvalidBody, "`batch` must be a list of events"));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(bad(Reason::BatchTooLarge, format!("a batch holds 1 to {MAX_BATCH} events")));
        }
        for item in items.iter_mut() {
            let Value::Object(event) = item else {
                return Err(bad(Reason::InvalidBody, "a batch item is not an object"));
            };
            changed |= prepare_event(gw, client, event, max_payload, true)?;
        }
    }
    if changed {
        Ok(Bytes::from(js_json::to_string(&Value::Object(doc))))
    } else {
        Ok(Bytes::copy_from_slice(body))
    }
}

/// Validates one event; encrypts its `data` in place for an encrypted
/// channel. Returns whether it changed the event.
fn prepare_event(
    gw: &Gateway,
    client: &PublishClient,
    event: &mut Map<String, Value>,
    max_payload: usize,
    batch: bool,
) -> Result<bool, ApiError> {
    let name = event.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() || name.chars().count() > MAX_EVENT_NAME {
        return Err(bad(
            Reason::InvalidEventName,
            format!("`name` must be 1 to {MAX_EVENT_NAME} characters"),
        ));
    }
    let Some(data) = event.get("data").and_then(Value::as_str) else {
        return Err(bad(Reason::InvalidData, "`data` must be a string (the REST API's shape)"));
    };
    if data.len() > max_payload {
        return Err(ApiError::new(Reason::PayloadTooLarge, format!("`data` is over {max_payload} bytes")));
    }
    if let Some(socket) = event.get("socket_id")
        && socket.as_str().is_none_or(|s| SocketId::parse(s).is_err())
    {
        return Err(bad(Reason::InvalidSocketId, "`socket_id` is not a socket id"));
    }
    let channels: Vec<String> = if batch {
        match event.get("channel").and_then(Value::as_str) {
            Some(c) => vec![c.to_owned()],
            None => return Err(bad(Reason::InvalidChannelName, "a batch event needs `channel`")),
        }
    } else {
        match (event.get("channels"), event.get("channel")) {
            (Some(Value::Array(list)), None) => list
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(Reason::InvalidChannelName, "`channels` must hold strings"))?,
            (None, Some(Value::String(c))) => vec![c.clone()],
            _ => return Err(bad(Reason::InvalidChannelName, "give `channels` (a list) or `channel`")),
        }
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(bad(Reason::TooManyChannels, format!("an event goes to 1 to {MAX_CHANNELS} channels")));
    }
    let mut encrypted = None;
    for c in &channels {
        if let Some(user) = c.strip_prefix("#server-to-user-") {
            // sendToUser: the id follows the channel-name charset.
            let valid = !user.is_empty()
                && user.len() <= 200
                && user.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-=@,.;".contains(ch));
            if !valid {
                return Err(bad(Reason::InvalidChannelName, "invalid `#server-to-user-` channel"));
            }
            continue;
        }
        let channel = ChannelName::parse(c).map_err(|e| ApiError::from(&e))?;
        if channel.kind() == ChannelKind::PrivateEncrypted {
            encrypted = Some(channel);
        }
    }
    let Some(channel) = encrypted else { return Ok(false) };
    if channels.len() > 1 {
        return Err(bad(
            Reason::EncryptedMultipleChannels,
            "an encrypted event must go to exactly one channel",
        ));
    }
    let Some(master) = gw.signer.master_key() else {
        return Err(bad(Reason::PublishEncryptionNotConfigured, "no encryption_master_key is configured"));
    };
    let opened;
    let plaintext: &[u8] = if crypto::looks_sealed(data) {
        // Sealed by the SDK with the client's local master key.
        let Some(local) = &client.master_key else {
            return Err(bad(
                Reason::UndecryptablePayload,
                format!(
                    "the payload is sealed, but publish client `{}` has no encryption_master_key to open it",
                    client.key
                ),
            ));
        };
        opened = crypto::open(&local.shared_secret_bytes(channel.as_str()), data).map_err(|e| {
            bad(
                Reason::UndecryptablePayload,
                format!("{e} (publish client `{}`, channel {})", client.key, channel.as_str()),
            )
        })?;
        &opened
    } else {
        data.as_bytes()
    };
    let key = master.shared_secret_bytes(channel.as_str());
    let sealed = crypto::encrypt(&key, plaintext)
        .ok_or_else(|| ApiError::new(Reason::RngUnavailable, "could not draw a nonce"))?;
    event.insert("data".into(), Value::String(sealed));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(path: &str) -> Option<(Endpoint, Option<&'static str>, Option<String>)> {
        let r = route(path).ok()?;
        let id = r.app_id.map(|id| &*Box::leak(id.into_boxed_str()));
        Some((r.endpoint, id, r.subject))
    }

    #[test]
    fn routes() {
        assert_eq!(routed("/apps/1001/events"), Some((Endpoint::Events, Some("1001"), None)));
        assert_eq!(routed("/apps/1001/batch_events"), Some((Endpoint::BatchEvents, Some("1001"), None)));
        assert_eq!(routed("/apps/7/channels"), Some((Endpoint::Channels, Some("7"), None)));
        assert_eq!(
            routed("/apps/7/channels/presence-a"),
            Some((Endpoint::Channel, Some("7"), Some("presence-a".into())))
        );
        assert_eq!(
            routed("/apps/7/channels/presence-a/users"),
            Some((Endpoint::ChannelUsers, Some("7"), Some("presence-a".into())))
        );
        assert_eq!(
            routed("/apps/7/users/alice/terminate_connections"),
            Some((Endpoint::TerminateUser, Some("7"), Some("alice".into())))
        );
        assert_eq!(
            routed("/users/alice/terminate_connections"),
            Some((Endpoint::TerminateUser, None, Some("alice".into())))
        );
        for unknown in [
            "/apps/1001/events/x",
            "/apps//events",
            "/apps/1001",
            "/apps/1001/",
            "/apps/1001/channels/a/users/b",
            "/apps/1001/users/alice",
            "/users/alice",
            "/apps/1001/revocations",
        ] {
            let r = route(unknown).err().map(|r| r.reason());
            assert_eq!(r, Some(Reason::UnknownEndpoint), "{unknown}");
        }
        assert!(is_proxy_path("/apps/x") && is_proxy_path("/users/x") && !is_proxy_path("/admin/users"));
        assert_eq!(Endpoint::Channel.method(), Method::GET);
        assert_eq!(Endpoint::TerminateUser.method(), Method::POST);
    }

    #[test]
    fn query_parameters_are_checked_per_endpoint() {
        let ok = params(
            Endpoint::Channels,
            "auth_key=k&info=user_count,subscription_count&filter_by_prefix=presence-",
        );
        assert_eq!(
            ok.ok(),
            Some(vec![
                ("info".to_owned(), "user_count,subscription_count".to_owned()),
                ("filter_by_prefix".to_owned(), "presence-".to_owned())
            ])
        );
        for (endpoint, query, reason) in [
            (Endpoint::Channel, "filter_by_prefix=a", "unknown_parameter"),
            (Endpoint::ChannelUsers, "info=user_count", "unknown_parameter"),
            (Endpoint::Events, "info=user_count", "unknown_parameter"),
            (Endpoint::Channels, "info=a&info=b", "duplicate_parameter"),
            (Endpoint::Channels, "info=", "invalid_parameter"),
            (Endpoint::Channels, "info=User_Count", "invalid_parameter"),
            (Endpoint::Channels, "filter_by_prefix=a%0Ab", "invalid_parameter"),
        ] {
            assert_eq!(params(endpoint, query).err().map(|r| r.reason().as_str()), Some(reason), "{query}");
        }
    }
}
