//! Where the session token comes from: a header (`Authorization: Bearer` or
//! a custom header carrying the bare token), a cookie, or a form field of
//! the request body, tried in the configured order.
//!
//! Invariants:
//! - The first source that holds a non-empty token wins; an empty value
//!   counts as absent.
//! - Ambiguity is refused, never resolved by picking one: a header sent
//!   twice, a cookie set twice or a form field sent twice is
//!   [`AuthError::Malformed`].
//! - The token is returned borrowed from the request; it is never logged.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderName};

use super::AuthError;

/// One configured place to look for the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header. `authorization` carries `Bearer <token>`; any
    /// other header carries the bare token.
    Header(HeaderName),
    /// A cookie, by name (case-sensitive).
    Cookie(String),
    /// A field of the (already decoded) form body.
    Form(String),
}

/// The kind of source a token was found in (cookie sessions need an
/// `Origin` check against CSRF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    /// A request header.
    Header,
    /// A cookie.
    Cookie,
    /// A form field.
    Form,
}

/// Tries `sources` in order; the first source that is present wins.
///
/// For the `authorization` header the value must be `Bearer <token>` (scheme
/// case-insensitive, one or more spaces); another scheme counts as absent.
/// Other headers carry the bare token. A header present twice →
/// [`AuthError::Malformed`]. Cookies: every `Cookie` header is parsed,
/// `name=value` pairs separated by `;`; the same cookie twice → `Malformed`.
/// Form: `form` holds the decoded key/value pairs of the body; a field
/// present twice → `Malformed`. An empty value counts as absent. Nothing
/// found → [`AuthError::MissingToken`].
pub fn extract_token<'a>(
    sources: &[TokenSource],
    headers: &'a HeaderMap,
    form: &'a [(String, String)],
) -> Result<(&'a str, TokenOrigin), AuthError> {
    for source in sources {
        let found = match source {
            TokenSource::Header(name) => {
                from_header(headers, name)?.map(|token| (token, TokenOrigin::Header))
            }
            TokenSource::Cookie(name) => {
                from_cookies(headers, name)?.map(|token| (token, TokenOrigin::Cookie))
            }
            TokenSource::Form(name) => from_form(form, name)?.map(|token| (token, TokenOrigin::Form)),
        };
        if let Some(found) = found {
            return Ok(found);
        }
    }
    Err(AuthError::MissingToken)
}

/// The token in header `name`, if any.
fn from_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = visible_ascii(value.as_bytes()).ok_or(AuthError::Malformed)?.trim_matches([' ', '\t']);
    if *name == AUTHORIZATION {
        return bearer_token(value);
    }
    Ok((!value.is_empty()).then_some(value))
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1).
fn bearer_token(value: &str) -> Result<Option<&str>, AuthError> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Ok(None);
    }
    // A word scan (`crate::scan`): `str::contains` with a char set walks a
    // 600-byte token one decoded char at a time.
    if crate::scan::has_blank(token.as_bytes()) {
        return Err(AuthError::Malformed);
    }
    Ok(Some(token))
}

/// The header value as text when every byte is visible ASCII, a space or a
/// tab: what `HeaderValue::to_str` accepts (which tests a byte at a time).
/// A word scan first; only a value with a tab or worse is looked at again.
fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    if crate::scan::outside_visible(bytes) && bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b >= 0x7f) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// The value of cookie `name` over all `Cookie` headers, if any.
fn from_cookies<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&byte| byte == b';') {
            let Some((key, value)) = split_pair(pair) else {
                continue;
            };
            if key != name.as_bytes() {
                continue;
            }
            let value = unquote(value);
            if value.is_empty() {
                continue;
            }
            if found.is_some() {
                return Err(AuthError::Malformed);
            }
            found = Some(std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?);
        }
    }
    Ok(found)
}

/// Splits `name=value` (spaces around either trimmed).
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&byte| byte == b'=')?;
    let (key, value) = pair.split_at(eq);
    Some((key.trim_ascii(), value.get(1..)?.trim_ascii()))
}

/// Strips the optional double quotes of a cookie value (RFC 6265 §4.1.1).
fn unquote(value: &[u8]) -> &[u8] {
    value.strip_prefix(b"\"").and_then(|inner| inner.strip_suffix(b"\"")).unwrap_or(value)
}

/// The value of form field `name`, if any.
fn from_form<'a>(form: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut matches = form.iter().filter(|(key, _)| key == name);
    match (matches.next(), matches.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(AuthError::Malformed),
        (Some((_, value)), None) => Ok((!value.is_empty()).then_some(value.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn auth() -> TokenSource {
        TokenSource::Header(AUTHORIZATION)
    }

    fn cookie(name: &str) -> TokenSource {
        TokenSource::Cookie(name.to_owned())
    }

    fn form_field(name: &str) -> TokenSource {
        TokenSource::Form(name.to_owned())
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn bearer_header() {
        let h = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(extract_token(&[auth()], &h, &[]), Ok(("abc.def.ghi", TokenOrigin::Header)));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_allows_several_spaces() {
        for value in ["bearer t1", "BEARER t1", "BeArEr   t1", "Bearer t1  "] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(extract_token(&[auth()], &h, &[]), Ok(("t1", TokenOrigin::Header)), "{value}");
        }
    }

    #[test]
    fn other_authorization_schemes_and_empty_bearer_are_absent() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Bearerabc", "", "Token t1"] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(extract_token(&[auth()], &h, &[]), Err(AuthError::MissingToken), "{value}");
        }
    }

    #[test]
    fn bearer_token_with_inner_space_is_malformed() {
        let h = headers(&[("authorization", "Bearer abc def")]);
        assert_eq!(extract_token(&[auth()], &h, &[]), Err(AuthError::Malformed));
    }

    #[test]
    fn header_bytes_are_checked_as_to_str_checks_them() {
        for b in 0..=255u8 {
            let mut value = b"Bearer abc".to_vec();
            value.insert(8, b);
            let expected = http::HeaderValue::from_bytes(&value).map(|v| v.to_str().is_ok());
            let Ok(expected) = expected else { continue };
            assert_eq!(visible_ascii(&value).is_some(), expected, "byte {b:#x}");
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, http::HeaderValue::from_bytes(&value).unwrap());
            let got = extract_token(&[auth()], &headers, &[]);
            if !expected {
                assert_eq!(got, Err(AuthError::Malformed), "byte {b:#x}");
            } else if b == b' ' || b == b'\t' {
                assert_eq!(got, Err(AuthError::Malformed), "blank inside the token: byte {b:#x}");
            } else {
                assert_eq!(got.unwrap().0.len(), 4, "byte {b:#x}");
            }
        }
    }

    #[test]
    fn duplicated_header_is_malformed() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]);
        assert_eq!(extract_token(&[auth()], &h, &[]), Err(AuthError::Malformed));
        let custom = TokenSource::Header(HeaderName::from_static("x-session"));
        let h = headers(&[("x-session", "a"), ("x-session", "b")]);
        assert_eq!(extract_token(&[custom], &h, &[]), Err(AuthError::Malformed));
    }

    #[test]
    fn custom_header_carries_the_bare_token() {
        let custom = TokenSource::Header(HeaderName::from_static("x-session"));
        let h = headers(&[("x-session", "tok.en.x")]);
        assert_eq!(
            extract_token(std::slice::from_ref(&custom), &h, &[]),
            Ok(("tok.en.x", TokenOrigin::Header))
        );
        let h = headers(&[("x-session", "")]);
        assert_eq!(extract_token(&[custom], &h, &[]), Err(AuthError::MissingToken));
    }

    #[test]
    fn cookie_among_others_and_across_headers() {
        let h = headers(&[("cookie", "a=1; session=tok; b=2")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Ok(("tok", TokenOrigin::Cookie)));
        let h = headers(&[("cookie", "a=1"), ("cookie", "b=2;session=tok2")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Ok(("tok2", TokenOrigin::Cookie)));
        let h = headers(&[("cookie", "session=\"quoted\"")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Ok(("quoted", TokenOrigin::Cookie)));
    }

    #[test]
    fn cookie_names_are_exact() {
        let h = headers(&[("cookie", "Session=x; session_old=y; xsession=z")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Err(AuthError::MissingToken));
    }

    #[test]
    fn duplicated_cookie_is_malformed_and_empty_cookie_absent() {
        let h = headers(&[("cookie", "session=a; session=b")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Err(AuthError::Malformed));
        let h = headers(&[("cookie", "session=a"), ("cookie", "session=b")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Err(AuthError::Malformed));
        let h = headers(&[("cookie", "session=; other=1")]);
        assert_eq!(extract_token(&[cookie("session")], &h, &[]), Err(AuthError::MissingToken));
    }

    #[test]
    fn form_field_source() {
        let f = form(&[("socket_id", "1.2"), ("token", "t.o.k")]);
        assert_eq!(
            extract_token(&[form_field("token")], &HeaderMap::new(), &f),
            Ok(("t.o.k", TokenOrigin::Form))
        );
        let f = form(&[("token", "a"), ("token", "b")]);
        assert_eq!(extract_token(&[form_field("token")], &HeaderMap::new(), &f), Err(AuthError::Malformed));
        let f = form(&[("token", "")]);
        assert_eq!(
            extract_token(&[form_field("token")], &HeaderMap::new(), &f),
            Err(AuthError::MissingToken)
        );
    }

    #[test]
    fn sources_are_tried_in_order() {
        let h = headers(&[("authorization", "Bearer from-header"), ("cookie", "session=from-cookie")]);
        let f = form(&[("token", "from-form")]);
        let all = [auth(), cookie("session"), form_field("token")];
        assert_eq!(extract_token(&all, &h, &f), Ok(("from-header", TokenOrigin::Header)));
        let reversed = [form_field("token"), cookie("session"), auth()];
        assert_eq!(extract_token(&reversed, &h, &f), Ok(("from-form", TokenOrigin::Form)));
        let cookie_first = [cookie("session"), auth()];
        assert_eq!(extract_token(&cookie_first, &h, &f), Ok(("from-cookie", TokenOrigin::Cookie)));
    }

    #[test]
    fn absent_or_empty_source_falls_through() {
        let h = headers(&[("authorization", "Bearer "), ("cookie", "session=c")]);
        assert_eq!(extract_token(&[auth(), cookie("session")], &h, &[]), Ok(("c", TokenOrigin::Cookie)));
    }

    #[test]
    fn nothing_configured_or_found_is_missing() {
        assert_eq!(extract_token(&[], &HeaderMap::new(), &[]), Err(AuthError::MissingToken));
        assert_eq!(
            extract_token(&[auth(), cookie("s"), form_field("t")], &HeaderMap::new(), &[]),
            Err(AuthError::MissingToken)
        );
    }
}
