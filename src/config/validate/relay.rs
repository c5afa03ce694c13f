//! `publish:`, `webhooks:` and `revocation:` — the parts that keep secrets
//! out of app code.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::raw;
use crate::config::{
    OnStoreError, PublishClient, PublishSettings, RevocationSettings, RevocationStore, WebhookSettings,
};
use crate::pusher::MasterKey;

/// `publish:`: the local credentials of the publish proxy. `master_key` is
/// the real encryption master key, if valid.
pub(super) fn publish(
    cx: &mut Ctx<'_>,
    raw: &raw::File,
    master_key: Option<&MasterKey>,
) -> Option<PublishSettings> {
    raw.publish.as_ref().map(|p| {
        let mut clients: Vec<PublishClient> = Vec::new();
        for c in &p.value.clients {
            if c.key.value.is_empty() || c.key.value.contains(':') || c.key.value == p_key_value(raw) {
                cx.hint(
                    &c.key,
                    "publish client key must be non-empty, hold no `:` and differ from pusher.key",
                    "use a local key of your own",
                );
                continue;
            }
            if clients.iter().any(|known| known.key == c.key.value) {
                cx.at(&c.key, format!("publish client key `{}` is listed twice", c.key.value));
                continue;
            }
            let app_id = c.app_id.as_ref().and_then(|id| {
                let valid = !id.value.is_empty()
                    && id.value.len() <= 64
                    && id.value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if valid {
                    Some(id.value.clone())
                } else {
                    cx.hint(
                        id,
                        format!(
                            "publish client app_id `{}` must be 1 to 64 letters, digits, `-` or `_`",
                            id.value
                        ),
                        "the Python SDK accepts digits only, e.g. \"424242\"",
                    );
                    None
                }
            });
            let local_master = c.encryption_master_key.as_ref().and_then(|src| {
                let bytes = cx.secret("publish.clients.encryption_master_key", src)?;
                let text = String::from_utf8_lossy(bytes.expose()).trim().to_owned();
                let key = match MasterKey::from_base64(&text) {
                    Ok(k) => k,
                    Err(e) => {
                        cx.hint(
                            src,
                            format!("publish.clients.encryption_master_key: {e}"),
                            "generate one with `openssl rand -base64 32`",
                        );
                        return None;
                    }
                };
                match master_key {
                    None if p_master_configured(raw) => None,
                    None => {
                        cx.at(
                            src,
                            "a local encryption_master_key needs pusher.encryption_master_key \
                             (the real key payloads are re-sealed with)",
                        );
                        None
                    }
                    Some(real) if real.same_key(&key) => {
                        cx.hint(
                            src,
                            "publish client encryption_master_key is the real pusher.encryption_master_key",
                            "give the app a local key of its own: the real one must never leave channelgate",
                        );
                        None
                    }
                    Some(_) => Some(key),
                }
            });
            if let Some(secret) = cx.secret("publish.clients.secret", &c.secret) {
                clients.push(PublishClient {
                    key: c.key.value.clone(),
                    secret,
                    app_id,
                    master_key: local_master,
                });
            }
        }
        if clients.is_empty() {
            cx.at(p, "publish: list at least one client { key, secret }");
        }
        PublishSettings {
            clients,
            timeout: cx.duration("publish.timeout", &p.value.timeout, Duration::from_secs(5)),
            retries: p.value.retries.unwrap_or(2).min(5),
            max_payload_bytes: p.value.max_payload_bytes.unwrap_or(10 * 1024).clamp(1, 1 << 20),
        }
    })
}

/// `webhooks:`: the relay; `sign_with` names one of `publish`'s clients.
pub(super) fn webhooks(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<raw::Webhooks>>,
    publish: Option<&PublishSettings>,
) -> Option<WebhookSettings> {
    raw.and_then(|w| {
        let path = w.value.path.as_ref().map_or_else(|| "/pusher/webhooks".to_owned(), |p| p.value.clone());
        if !path.starts_with('/') {
            cx.at(w, format!("webhooks.path `{path}` must start with `/`"));
        }
        let forward_to = match url::Url::parse(&w.value.forward_to.value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                cx.at(
                    &w.value.forward_to,
                    format!("webhooks.forward_to `{}` is not an http(s) URL", w.value.forward_to.value),
                );
                None
            }
        };
        let sign_with = w.value.sign_with.as_ref().and_then(|name| {
            let client = publish.and_then(|p| p.clients.iter().find(|c| c.key == name.value));
            match client {
                Some(c) => Some((c.key.clone(), c.secret.clone())),
                None => {
                    cx.hint(
                        name,
                        format!("webhooks.sign_with `{}` is not a publish client key", name.value),
                        "name one of publish.clients[].key: the app validates webhooks with that key and secret",
                    );
                    None
                }
            }
        });
        Some(WebhookSettings {
            path,
            sign_with,
            forward_to: forward_to?,
            max_age: cx.duration("webhooks.max_age", &w.value.max_age, Duration::from_secs(300)),
            timeout: cx.duration("webhooks.timeout", &w.value.timeout, Duration::from_secs(5)),
        })
    })
}

fn p_key_value(raw: &raw::File) -> String {
    raw.pusher.value.key.value.clone()
}

/// Whether `pusher.encryption_master_key` is given (valid or not: an
/// invalid one has its own error already).
fn p_master_configured(raw: &raw::File) -> bool {
    raw.pusher.value.encryption_master_key.is_some()
}

pub(super) fn revocation(cx: &mut Ctx<'_>, raw: Option<&raw::Revocation>) -> RevocationSettings {
    let mut s = RevocationSettings {
        store: RevocationStore::Memory,
        default_ttl: Duration::from_secs(24 * 3600),
        on_store_error: OnStoreError::Deny,
        session_claim: "sid".to_owned(),
    };
    let Some(raw) = raw else { return s };
    s.default_ttl = cx.duration("revocation.default_ttl", &raw.default_ttl, s.default_ttl);
    if let Some(c) = &raw.session_claim {
        s.session_claim = c.clone();
    }
    if let Some(mode) = &raw.on_store_error {
        match mode.value.as_str() {
            "deny" => s.on_store_error = OnStoreError::Deny,
            "allow" => s.on_store_error = OnStoreError::Allow,
            other => cx.hint(
                mode,
                format!("revocation.on_store_error `{other}` is unknown"),
                "use `deny` (default) or `allow`",
            ),
        }
    }
    match raw.store.as_ref().map(|s| s.value.as_str()) {
        None | Some("memory") => {}
        Some("redis") => match &raw.redis_url {
            None => {
                if let Some(store) = &raw.store {
                    cx.hint(
                        store,
                        "revocation.store: redis needs `redis_url`",
                        "redis_url: { env: REDIS_URL }",
                    );
                }
            }
            Some(src) => {
                // Redis URLs may carry a password, so they are secrets; a
                // plain URL without one may also be written inline.
                if let Some(url) = cx.secret("revocation.redis_url", src) {
                    let text = String::from_utf8_lossy(url.expose()).into_owned();
                    if redis::Client::open(text.as_str()).is_err() {
                        cx.at(src, "revocation.redis_url is not a redis:// URL");
                    }
                    s.store = RevocationStore::Redis {
                        url,
                        prefix: raw.key_prefix.clone().unwrap_or_else(|| "channelgate:".to_owned()),
                    };
                }
            }
        },
        Some(other) => {
            if let Some(store) = &raw.store {
                cx.hint(store, format!("revocation.store `{other}` is unknown"), "use `memory` or `redis`");
            }
        }
    }
    s
}
