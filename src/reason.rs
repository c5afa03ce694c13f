//! Every stable reason code channelgate puts in an error body, a batch
//! entry, an audit line or a metric label: one closed enum, so a code is
//! never a free-form string, and each variant has exactly one HTTP status
//! (chosen in `http/error.rs`, the only place that maps reasons to
//! statuses). A few codes appear under two variants because two endpoints
//! answer them with different statuses (`invalid_user_id`: a policy denial
//! on the auth endpoints, a malformed path on the admin and REST APIs).
//!
//! This module depends on nothing: `session`, `policy` and `pusher` name
//! their refusals with it without depending on `http`.

use std::fmt;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        /// A stable reason code (see the module documentation).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, for tables and tests.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The code as it appears on the wire and in logs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }
        }
    };
}

reasons! {
    // ---- malformed requests (400) -------------------------------------------
    /// `socket_id` is not two ASCII-digit groups joined by `.`.
    InvalidSocketId = "invalid_socket_id",
    /// A channel name is empty, too long or has a character outside the set.
    InvalidChannelName = "invalid_channel_name",
    /// A public channel needs no authorization.
    PublicChannel = "public_channel",
    /// A required field is absent.
    MissingField = "missing_field",
    /// A field is sent more than once.
    DuplicateField = "duplicate_field",
    /// A field has the wrong shape.
    InvalidField = "invalid_field",
    /// The body is not what the endpoint takes.
    InvalidBody = "invalid_body",
    /// Too many channels (auth) or events (REST) in one batch.
    BatchTooLarge = "batch_too_large",
    // ---- sessions (401) -------------------------------------------------------
    /// No token in any configured source.
    TokenMissing = "token_missing",
    /// Not a well-formed compact JWS.
    TokenMalformed = "token_malformed",
    /// `alg` refused.
    AlgorithmNotAllowed = "algorithm_not_allowed",
    /// `kid` names no key of the issuer.
    UnknownKid = "unknown_kid",
    /// The signature does not verify (a session token, or a REST request).
    InvalidSignature = "invalid_signature",
    /// `exp` passed.
    TokenExpired = "token_expired",
    /// `nbf` or `iat` in the future.
    TokenNotYetValid = "token_not_yet_valid",
    /// `iss` refused.
    InvalidIssuer = "invalid_issuer",
    /// `iss` matches no configured issuer.
    UnknownIssuer = "unknown_issuer",
    /// `aud` refused.
    InvalidAudience = "invalid_audience",
    /// A required claim is absent.
    MissingClaim = "missing_claim",
    /// A registered claim has the wrong type.
    InvalidClaims = "invalid_claims",
    // ---- decisions (403) ------------------------------------------------------
    /// No rule matches the channel.
    NoRuleMatched = "no_rule_matched",
    /// The matching rule's `allow` is false.
    RuleDenied = "rule_denied",
    /// An expression failed or gave the wrong type.
    RuleError = "rule_error",
    /// The session gives no usable user id.
    InvalidUserId = "invalid_user_id",
    /// The presence member data is over the limit.
    PresenceDataTooLarge = "presence_data_too_large",
    /// Sign-in has no `user:` block.
    SigninDisabled = "signin_disabled",
    /// An encrypted channel without a master key.
    EncryptionNotConfigured = "encryption_not_configured",
    /// A cookie session without an allowed `Origin`.
    Csrf = "csrf",
    /// The user, token or session is revoked.
    UserRevoked = "user_revoked",
    /// A refused CORS preflight.
    CorsRefused = "cors_refused",
    // ---- protocol-level refusals ------------------------------------------------
    /// No such endpoint (404).
    NotFound = "not_found",
    /// Wrong method (405).
    MethodNotAllowed = "method_not_allowed",
    /// The body did not arrive in time (408).
    RequestTimeout = "request_timeout",
    /// The body is over the limit (413).
    BodyTooLarge = "body_too_large",
    /// Neither form-encoded nor JSON (415).
    UnsupportedMediaType = "unsupported_media_type",
    /// Over a rate limit (429).
    RateLimited = "rate_limited",
    /// Issuer keys unavailable: never fetched, or stale and the kid unknown (503).
    JwksUnavailable = "jwks_unavailable",
    /// Revocations cannot be checked (503).
    RevocationUnavailable = "revocation_unavailable",
    /// A bug: a handler panicked (500).
    Internal = "internal",
    // ---- admin API ----------------------------------------------------------------
    /// The admin API is off (no `admin.token`) (404).
    AdminApiDisabled = "admin_api_disabled",
    /// Missing or wrong admin bearer token (401).
    AdminToken = "admin_token",
    /// A user id in a path is not one (400).
    MalformedUserId = "invalid_user_id",
    /// `ttl` is not a duration in range (400).
    InvalidTtl = "invalid_ttl",
    /// No such revocation (404).
    NotRevoked = "not_revoked",
    // ---- publish proxy (REST) ---------------------------------------------------
    /// Not a REST endpoint the proxy serves (404).
    UnknownEndpoint = "unknown_endpoint",
    /// A REST authentication parameter is missing or repeated (401).
    MissingAuthParam = "missing_auth_param",
    /// Unknown local `auth_key` (401).
    UnknownKey = "unknown_key",
    /// `auth_timestamp` too far from now (401).
    StaleTimestamp = "stale_timestamp",
    /// `body_md5` does not match the body (401).
    BodyMd5Mismatch = "body_md5_mismatch",
    /// A local key used with another app id (403).
    AppIdMismatch = "app_id_mismatch",
    /// A query parameter the endpoint does not take (400).
    UnknownParameter = "unknown_parameter",
    /// A query parameter given twice (400).
    DuplicateParameter = "duplicate_parameter",
    /// A query parameter with an invalid value (400).
    InvalidParameter = "invalid_parameter",
    /// An event name that is empty or too long (400).
    InvalidEventName = "invalid_event_name",
    /// Event `data` that is not a string (400).
    InvalidData = "invalid_data",
    /// Event `data` over the limit (413).
    PayloadTooLarge = "payload_too_large",
    /// Too many channels for one event (400).
    TooManyChannels = "too_many_channels",
    /// An encrypted event to more than one channel (400).
    EncryptedMultipleChannels = "encrypted_multiple_channels",
    /// An encrypted event without a master key (400).
    PublishEncryptionNotConfigured = "encryption_not_configured",
    /// An SDK-sealed payload that does not open with the local key (400).
    UndecryptablePayload = "undecryptable_payload",
    /// No randomness for a nonce (503).
    RngUnavailable = "rng_unavailable",
    /// `pusher.api_url` is not configured (503).
    NoApiUrl = "no_api_url",
    /// The upstream did not answer in time (504).
    UpstreamTimeout = "upstream_timeout",
    /// The upstream could not be reached, or answered with a failure (502).
    UpstreamUnreachable = "upstream_unreachable",
    // ---- webhooks (401) -----------------------------------------------------------
    /// Missing or wrong `X-Pusher-Key`.
    InvalidWebhookKey = "invalid_webhook_key",
    /// Missing or wrong `X-Pusher-Signature`.
    InvalidWebhookSignature = "invalid_webhook_signature",
    /// `time_ms` outside `webhooks.max_age`.
    StaleWebhook = "stale_webhook",
}

/// Lets tests and tables compare with the code as written.
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_shared_only_on_purpose() {
        let mut seen: std::collections::BTreeMap<&str, Vec<Reason>> = Default::default();
        for r in Reason::ALL {
            let code = r.as_str();
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
            seen.entry(code).or_default().push(*r);
        }
        let shared: Vec<(&str, Vec<Reason>)> = seen.into_iter().filter(|(_, v)| v.len() > 1).collect();
        assert_eq!(
            shared,
            vec![
                (
                    "encryption_not_configured",
                    vec![Reason::EncryptionNotConfigured, Reason::PublishEncryptionNotConfigured]
                ),
                ("invalid_user_id", vec![Reason::InvalidUserId, Reason::MalformedUserId]),
            ]
        );
    }
}
