//! The publish proxy: an app's official server SDK, configured with a
//! *local* key and secret and pointed at channelgate's admin listener,
//! triggers events unchanged; channelgate checks the local signature,
//! validates, encrypts `private-encrypted-*` payloads, re-signs with the
//! real secret and forwards to `pusher.api_url`. The app never holds the
//! Pusher secret or the encryption master key.
//!
//! Limits (as the SDKs and Pusher enforce them): at most 100 channels per
//! event, 10 events per batch, event names up to 200 characters, `data` up
//! to `publish.max_payload_bytes` (10 KiB by default); an encrypted channel
//! must be the event's only channel. For encrypted channels the plaintext is
//! the request's `data` string byte for byte, so subscribers receive the
//! same value as on any other channel.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::app::Gateway;
use crate::pusher::{ChannelKind, ChannelName, SocketId, crypto, js_json, rest};

/// Most channels per event.
const MAX_CHANNELS: usize = 100;
/// Most events per batch.
const MAX_BATCH: usize = 10;
/// Longest event name.
const MAX_EVENT_NAME: usize = 200;
/// Largest accepted request body.
pub const MAX_BODY: usize = 256 * 1024;
/// Largest clock skew accepted on `auth_timestamp`.
const MAX_SKEW_SECS: u64 = 600;

/// A refusal: status, reason code, message.
#[derive(Debug)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable reason code.
    pub reason: &'static str,
    /// For a person.
    pub message: String,
}

fn bad(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status: StatusCode::BAD_REQUEST, reason, message: message.into() }
}

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/apps/{id}/events`.
    Events,
    /// `/apps/{id}/batch_events`.
    BatchEvents,
}

/// Routes `/apps/{app_id}/events` and `/apps/{app_id}/batch_events`.
pub fn route(path: &str, app_id: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/apps/")?;
    let (id, tail) = rest.split_once('/')?;
    if id != app_id {
        return None;
    }
    match tail {
        "events" => Some(Endpoint::Events),
        "batch_events" => Some(Endpoint::BatchEvents),
        _ => None,
    }
}

/// Checks the local signature and prepares the body to forward.
pub fn prepare(
    gw: &Gateway,
    endpoint: Endpoint,
    path: &str,
    query: &str,
    body: &[u8],
    now: u64,
) -> Result<Bytes, Refusal> {
    let Some(settings) = &gw.publish else {
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            reason: "not_found",
            message: "publishing is not enabled".into(),
        });
    };
    rest::verify(
        "POST",
        path,
        query,
        body,
        |key| settings.clients.iter().find(|(k, _)| k == key).map(|(_, s)| s.clone()),
        now,
        MAX_SKEW_SECS,
    )
    .map_err(|e| Refusal {
        status: StatusCode::UNAUTHORIZED,
        reason: e.reason(),
        message: e.to_string(),
    })?;
    let mut doc: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(bad("invalid_body", "the body is not a JSON object")),
    };
    let mut changed = false;
    match endpoint {
        Endpoint::Events => changed |= prepare_event(gw, &mut doc, settings.max_payload_bytes, false)?,
        Endpoint::BatchEvents => {
            let Some(Value::Array(items)) = doc.get_mut("batch") else {
                return Err(bad("invalid_body", "`batch` must be a list of events"));
            };
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(bad("batch_too_large", format!("a batch holds 1 to {MAX_BATCH} events")));
            }
            for item in items.iter_mut() {
                let Value::Object(event) = item else {
                    return Err(bad("invalid_body", "a batch item is not an object"));
                };
                changed |= prepare_event(gw, event, settings.max_payload_bytes, true)?;
            }
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
    event: &mut Map<String, Value>,
    max_payload: usize,
    batch: bool,
) -> Result<bool, Refusal> {
    let name = event.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() || name.chars().count() > MAX_EVENT_NAME {
        return Err(bad("invalid_event_name", format!("`name` must be 1 to {MAX_EVENT_NAME} characters")));
    }
    let Some(data) = event.get("data").and_then(Value::as_str) else {
        return Err(bad("invalid_data", "`data` must be a string (the REST API's shape)"));
    };
    if data.len() > max_payload {
        return Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: "payload_too_large",
            message: format!("`data` is over {max_payload} bytes"),
        });
    }
    if let Some(socket) = event.get("socket_id")
        && socket.as_str().is_none_or(|s| SocketId::parse(s).is_err())
    {
        return Err(bad("invalid_socket_id", "`socket_id` is not a socket id"));
    }
    let channels: Vec<String> = if batch {
        match event.get("channel").and_then(Value::as_str) {
            Some(c) => vec![c.to_owned()],
            None => return Err(bad("invalid_channel_name", "a batch event needs `channel`")),
        }
    } else {
        match (event.get("channels"), event.get("channel")) {
            (Some(Value::Array(list)), None) => list
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("invalid_channel_name", "`channels` must hold strings"))?,
            (None, Some(Value::String(c))) => vec![c.clone()],
            _ => return Err(bad("invalid_channel_name", "give `channels` (a list) or `channel`")),
        }
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(bad("too_many_channels", format!("an event goes to 1 to {MAX_CHANNELS} channels")));
    }
    let mut encrypted = None;
    for c in &channels {
        if let Some(user) = c.strip_prefix("#server-to-user-") {
            // sendToUser: the id follows the channel-name charset.
            let valid = !user.is_empty()
                && user.len() <= 200
                && user.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-=@,.;".contains(ch));
            if !valid {
                return Err(bad("invalid_channel_name", "invalid `#server-to-user-` channel"));
            }
            continue;
        }
        let channel = ChannelName::parse(c).map_err(|e| bad(e.reason(), e.to_string()))?;
        if channel.kind() == ChannelKind::PrivateEncrypted {
            encrypted = Some(channel);
        }
    }
    let Some(channel) = encrypted else { return Ok(false) };
    if channels.len() > 1 {
        return Err(bad("encrypted_multiple_channels", "an encrypted event must go to exactly one channel"));
    }
    let Some(master) = gw.signer.master_key() else {
        return Err(bad("encryption_not_configured", "no encryption_master_key is configured"));
    };
    let key = master.shared_secret_bytes(channel.as_str());
    let sealed = crypto::encrypt(&key, data.as_bytes()).ok_or_else(|| Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        reason: "rng_unavailable",
        message: "could not draw a nonce".into(),
    })?;
    event.insert("data".into(), Value::String(sealed));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/apps/1001/events", "1001"), Some(Endpoint::Events));
        assert_eq!(route("/apps/1001/batch_events", "1001"), Some(Endpoint::BatchEvents));
        assert_eq!(route("/apps/1002/events", "1001"), None);
        assert_eq!(route("/apps/1001/events/x", "1001"), None);
        assert_eq!(route("/apps/1001/channels", "1001"), None);
    }
}
