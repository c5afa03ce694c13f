//! Pusher REST API request signing (PROTOCOL.md §4), both ways: signing the
//! requests channelgate sends upstream, and verifying requests an official
//! server SDK sends to channelgate's publish proxy with a local credential.
//!
//! String to sign: `METHOD\nPATH\nQUERY`, where QUERY is every parameter
//! but `auth_signature`, sorted by key, joined as `k=v` with `&`, not
//! percent-encoded. Signatures are lowercase-hex HMAC-SHA256 and compared
//! in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::reason::Reason;
use crate::secret::Secret;

/// The `auth_version` both SDKs send.
pub const AUTH_VERSION: &str = "1.0";

/// Lowercase-hex MD5 of a body.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

fn hmac_hex(secret: &Secret, message: &str) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).ok()?;
    mac.update(message.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

fn canonical(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "auth_signature").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The query string for a request, as pusher-http-node builds it: sorted
/// auth parameters (`body_md5` only when there is a body) and
/// `auth_signature` appended last.
pub fn signed_query(
    method: &str,
    path: &str,
    body: &[u8],
    key: &str,
    secret: &Secret,
    timestamp: u64,
) -> String {
    signed_query_with(method, path, &[], body, key, secret, timestamp)
}

/// Characters of a query value sent as they are; the rest is
/// percent-encoded. The signature covers the decoded values (PROTOCOL.md
/// §4), which is what servers recompute, so encoding never changes it; the
/// comma stays literal because `info=user_count,subscription_count` is how
/// both SDKs send attribute lists.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b',');

/// [`signed_query`] with `extra` query parameters (such as `info` or
/// `filter_by_prefix`; never an auth parameter): sorted in with the auth
/// parameters, signed over their plain values, and sent percent-encoded.
/// `body_md5` is sent only with a body: a GET never carries it (Sockudo
/// refuses it there, and the REST API defines it for bodies only).
pub fn signed_query_with(
    method: &str,
    path: &str,
    extra: &[(String, String)],
    body: &[u8],
    key: &str,
    secret: &Secret,
    timestamp: u64,
) -> String {
    let mut params = vec![
        ("auth_key".to_owned(), key.to_owned()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), AUTH_VERSION.to_owned()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".to_owned(), body_md5(body)));
    }
    params.extend(extra.iter().filter(|(k, _)| !is_auth_param(k)).cloned());
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let signature =
        hmac_hex(secret, &format!("{method}\n{path}\n{}", canonical(&params))).unwrap_or_default();
    let mut query = String::new();
    for (k, v) in &params {
        query.push_str(k);
        query.push('=');
        query.extend(percent_encoding::utf8_percent_encode(v, QUERY_VALUE));
        query.push('&');
    }
    query.push_str("auth_signature=");
    query.push_str(&signature);
    query
}

/// Whether `name` is one of the parameters REST authentication itself uses.
pub fn is_auth_param(name: &str) -> bool {
    matches!(name, "auth_key" | "auth_timestamp" | "auth_version" | "auth_signature" | "body_md5")
}

/// Why an incoming REST request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestAuthError {
    /// A required parameter is missing or repeated.
    #[error("the request lacks a valid `{0}` parameter")]
    Missing(&'static str),
    /// Unknown `auth_key`.
    #[error("unknown auth_key")]
    UnknownKey,
    /// `auth_timestamp` too far from now.
    #[error("auth_timestamp is too far from the current time")]
    Stale,
    /// `body_md5` does not match the body.
    #[error("body_md5 does not match the body")]
    BodyMismatch,
    /// The signature does not verify.
    #[error("invalid auth_signature")]
    BadSignature,
}

impl RestAuthError {
    /// Stable reason code.
    pub fn reason(&self) -> Reason {
        match self {
            RestAuthError::Missing(_) => Reason::MissingAuthParam,
            RestAuthError::UnknownKey => Reason::UnknownKey,
            RestAuthError::Stale => Reason::StaleTimestamp,
            RestAuthError::BodyMismatch => Reason::BodyMd5Mismatch,
            RestAuthError::BadSignature => Reason::InvalidSignature,
        }
    }
}

/// Verifies a signed REST request. `secret_for` maps an `auth_key` to its
/// secret; `now` and `max_skew` bound `auth_timestamp`. Accepts the
/// signature anywhere in the query (the Python SDK sorts it in).
pub fn verify(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    secret_for: impl Fn(&str) -> Option<Secret>,
    now: u64,
    max_skew: u64,
) -> Result<String, RestAuthError> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let one = |name: &'static str| -> Result<&str, RestAuthError> {
        let mut it = params.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Ok(v.as_str()),
            _ => Err(RestAuthError::Missing(name)),
        }
    };
    let key = one("auth_key")?;
    let signature = one("auth_signature")?;
    let timestamp: u64 =
        one("auth_timestamp")?.parse().map_err(|_| RestAuthError::Missing("auth_timestamp"))?;
    if one("auth_version")? != AUTH_VERSION {
        return Err(RestAuthError::Missing("auth_version"));
    }
    let secret = secret_for(key).ok_or(RestAuthError::UnknownKey)?;
    if timestamp.abs_diff(now) > max_skew {
        return Err(RestAuthError::Stale);
    }
    if !body.is_empty() || params.iter().any(|(k, _)| k == "body_md5") {
        let expected = body_md5(body);
        if one("body_md5")? != expected {
            return Err(RestAuthError::BodyMismatch);
        }
    }
    let expected =
        hmac_hex(&secret, &format!("{method}\n{path}\n{}", canonical(&params))).unwrap_or_default();
    if !Secret::new(expected.into_bytes()).ct_eq(signature.as_bytes()) {
        return Err(RestAuthError::BadSignature);
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_from_protocol_md() {
        // rest-01 (Node): POST /apps/1001/events at 1700000000.
        let body = br#"{"name":"my-event","data":"{\"message\":\"hello\"}","channels":["my-channel"]}"#;
        let q = signed_query(
            "POST",
            "/apps/1001/events",
            body,
            "test-key",
            &Secret::new("test-secret-0123456789"),
            1_700_000_000,
        );
        assert_eq!(
            q,
            "auth_key=test-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=856d1e57b41639222010b714c81b17c2\
             &auth_signature=1ee47f3482f9b08831dfe7304f65c78ecf113d427c210e8d8fdba9d22166f878"
        );
    }

    #[test]
    fn verify_refusals() {
        let secret = Secret::new("s3cret");
        let body = b"{}";
        let q = signed_query("POST", "/apps/1/events", body, "k", &secret, 1000);
        let lookup = |k: &str| (k == "k").then(|| Secret::new("s3cret"));
        assert_eq!(verify("POST", "/apps/1/events", &q, body, lookup, 1000, 600), Ok("k".into()));
        assert_eq!(verify("POST", "/apps/1/events", &q, body, lookup, 1601, 600), Err(RestAuthError::Stale));
        assert_eq!(
            verify("POST", "/apps/1/events", &q, b"{ }", lookup, 1000, 600),
            Err(RestAuthError::BodyMismatch)
        );
        assert_eq!(
            verify("POST", "/apps/2/events", &q, body, lookup, 1000, 600),
            Err(RestAuthError::BadSignature)
        );
        assert_eq!(
            verify("POST", "/apps/1/events", &q, body, |_: &str| None::<Secret>, 1000, 600),
            Err(RestAuthError::UnknownKey)
        );
        let doubled = format!("{q}&auth_key=k");
        assert_eq!(
            verify("POST", "/apps/1/events", &doubled, body, lookup, 1000, 600),
            Err(RestAuthError::Missing("auth_key"))
        );
        let upper = q.replace(&q[q.len() - 64..], &q[q.len() - 64..].to_uppercase());
        assert_eq!(
            verify("POST", "/apps/1/events", &upper, body, lookup, 1000, 600),
            Err(RestAuthError::BadSignature)
        );
    }

    #[test]
    fn extra_parameters_are_signed_plain_and_sent_encoded() {
        let secret = Secret::new("s3cret");
        let extra = vec![
            ("info".to_owned(), "user_count,subscription_count".to_owned()),
            ("filter_by_prefix".to_owned(), "presence-a;b@c".to_owned()),
        ];
        let q = signed_query_with("GET", "/apps/1/channels", &extra, b"", "k", &secret, 1000);
        assert!(q.starts_with("auth_key=k&auth_timestamp=1000&auth_version=1.0&filter_by_prefix=presence-a%3Bb%40c&info=user_count,subscription_count&auth_signature="), "{q}");
        assert!(!q.contains("body_md5"), "a GET carries no body_md5: {q}");
        let lookup = |k: &str| (k == "k").then(|| Secret::new("s3cret"));
        assert_eq!(verify("GET", "/apps/1/channels", &q, b"", lookup, 1000, 600), Ok("k".into()));
        // What pusher-http-python 3.3 sends for a GET: body_md5 of the empty
        // body, signed, `auth_signature` sorted in, values unencoded.
        let md5 = body_md5(b"");
        let to_sign = format!(
            "GET\n/apps/1/channels\nauth_key=k&auth_timestamp=1000&auth_version=1.0&body_md5={md5}&info=user_count"
        );
        let sig = hmac_hex(&secret, &to_sign).unwrap();
        let python = format!(
            "auth_key=k&auth_signature={sig}&auth_timestamp=1000&auth_version=1.0&body_md5={md5}&info=user_count"
        );
        assert_eq!(verify("GET", "/apps/1/channels", &python, b"", lookup, 1000, 600), Ok("k".into()));
    }
}
