//! Advice for problems whose cause lies outside channelgate — an issuer's
//! certificate, a URL, the network — and warnings about settings that are
//! valid but accept more than their author probably meant.
//!
//! - [`fetch_error_hint`] reads an issuer-key fetch error (the text of the
//!   error chain: hyper, rustls, webpki) and says how to fix it; it is
//!   appended to the error where the chain is built (`session::remote`), so
//!   logs, `/readyz`, `explain` and `check --fetch` all show it;
//! - [`issuer_warnings`] flags issuers without `issuer` or `audience`;
//! - [`log_warnings`] logs those and the policy lints at `serve` start and
//!   after each reload.

use crate::app::Gateway;
use crate::session::IssuerSettings;

/// How to fix a failed fetch of issuer keys, recognised from the text of
/// its error chain. `None` when nothing specific is recognised.
pub(crate) fn fetch_error_hint(chain: &str) -> Option<&'static str> {
    const HINTS: &[(&[&str], &str)] = &[
        (
            &["UnknownIssuer"],
            "the issuer's certificate is signed by a CA this machine does not trust: \
             give that CA's certificate (PEM) as `session.jwt.ca_file`",
        ),
        (
            &["CaUsedAsEndEntity"],
            "the issuer's server presents a CA certificate (basicConstraints CA:TRUE) as its own, \
             which TLS refuses: serve a certificate issued by that CA for the host (CA:FALSE) and \
             give the CA as `session.jwt.ca_file` (README, \"Certificates\")",
        ),
        (
            &["NotValidForName"],
            "the issuer's certificate does not name this host: the URL's host must be one of the \
             certificate's subjectAltNames",
        ),
        (
            &["Expired", "NotValidYet"],
            "the issuer's certificate is outside its validity dates (or this machine's clock is wrong)",
        ),
        (
            &["InvalidContentType", "corrupt message"],
            "the server did not answer with TLS: is the URL https:// on a plain-HTTP port?",
        ),
        (
            &["Connection refused", "ConnectionRefused"],
            "nothing accepts connections there: check the URL's host and port, and that the issuer runs",
        ),
        (
            &["dns error", "failed to lookup address", "Name or service not known"],
            "the host name does not resolve: check the URL",
        ),
        (
            &["timed out"],
            "no answer in time: check the URL and the network, or raise `session.jwt.fetch_timeout`",
        ),
        (
            &["answered 404"],
            "no such document: check the URL (`jwks_url`, or `issuer` for discovery, which fetches \
             `{issuer}/.well-known/openid-configuration`)",
        ),
        (
            &["answered 401", "answered 403"],
            "the issuer refuses to serve its keys without credentials: use its public JWKS URL",
        ),
    ];
    HINTS.iter().find(|(needles, _)| needles.iter().any(|n| chain.contains(n))).map(|(_, hint)| *hint)
}

/// `chain` followed by its hint, if any (never twice).
pub(crate) fn with_fetch_hint(chain: String) -> String {
    match fetch_error_hint(&chain) {
        Some(hint) if !chain.contains("(hint: ") => format!("{chain} (hint: {hint})"),
        _ => chain,
    }
}

/// Issuers that accept tokens of any issuer or any audience.
pub(crate) fn issuer_warnings(issuers: &[IssuerSettings]) -> Vec<String> {
    let several = issuers.len() > 1;
    let mut out = Vec::new();
    for (i, issuer) in issuers.iter().enumerate() {
        let label = if several { format!("session.jwt[{i}]") } else { "session.jwt".to_owned() };
        if issuer.issuer.is_none() {
            out.push(format!(
                "{label}: no `issuer` is set, so tokens of any issuer signed with these keys are \
                 accepted; set it to the `iss` your identity provider writes"
            ));
        }
        if issuer.audience.is_empty() {
            out.push(format!(
                "{label}: no `audience` is set, so tokens issued for any audience (another app of the \
                 same identity provider) are accepted; set it to this app's `aud`"
            ));
        }
    }
    out
}

/// Logs the configuration's warnings and the policy's lint findings, as
/// `channelgate check` prints them: at `serve` start and after a reload.
pub(crate) fn log_warnings(gw: &Gateway) {
    for warning in issuer_warnings(gw.sessions.verifier().issuers()) {
        tracing::warn!("{warning}");
    }
    for finding in crate::policy::lint::lint(&gw.policy, gw.target) {
        tracing::warn!(code = finding.code, "{finding}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_errors_get_hints() {
        for (chain, needle) in [
            (
                "cannot fetch https://localhost:1/jwks: client error (Connect): invalid peer certificate: UnknownIssuer",
                "`session.jwt.ca_file`",
            ),
            (
                "client error (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                "CA:TRUE",
            ),
            ("invalid peer certificate: NotValidForNameContext { expected: .. }", "subjectAltNames"),
            ("client error (Connect): tcp connect error: Connection refused (os error 111)", "host and port"),
            ("received corrupt message of type InvalidContentType", "plain-HTTP"),
            ("cannot fetch https://x/jwks: timed out", "fetch_timeout"),
            ("https://x/.well-known/openid-configuration answered 404", "openid-configuration"),
        ] {
            let hint = fetch_error_hint(chain).unwrap_or_else(|| panic!("no hint for {chain}"));
            assert!(hint.contains(needle), "{chain} → {hint}");
        }
        assert_eq!(fetch_error_hint("the document is not a JWKS"), None);
    }

    #[test]
    fn a_hint_is_appended_once() {
        let once = with_fetch_hint("invalid peer certificate: UnknownIssuer".into());
        assert!(once.ends_with("`session.jwt.ca_file`)"), "{once}");
        assert_eq!(with_fetch_hint(once.clone()), once);
        assert_eq!(with_fetch_hint("other".into()), "other");
    }

    #[test]
    fn issuers_without_issuer_or_audience_are_warned_about() {
        let issuer = |iss: Option<&str>, aud: &[&str]| IssuerSettings {
            issuer: iss.map(str::to_owned),
            audience: aud.iter().map(|a| (*a).to_owned()).collect(),
            algorithms: vec![jsonwebtoken::Algorithm::HS256],
            leeway: IssuerSettings::DEFAULT_LEEWAY,
            required_claims: IssuerSettings::default_required_claims(),
            keys: crate::session::KeySet::from_secret(crate::secret::Secret::new(vec![7; 32])),
        };
        assert!(issuer_warnings(&[issuer(Some("https://idp"), &["app"])]).is_empty());
        let w = issuer_warnings(&[issuer(None, &[])]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("session.jwt: no `issuer`") && w[1].starts_with("session.jwt: no `audience`")
        );
        let w = issuer_warnings(&[issuer(Some("a"), &["x"]), issuer(Some("b"), &[])]);
        assert_eq!(w, vec![w[0].clone()]);
        assert!(w[0].starts_with("session.jwt[1]: no `audience`"), "{w:?}");
    }
}
