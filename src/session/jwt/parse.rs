//! Reading a compact JWS without trusting it: the structure, the JOSE
//! header, and the payload's members in one serde pass, without building a
//! JSON value. Nothing here verifies anything; `jwt.rs` does, with what
//! these types give it.
//!
//! Invariants: every member name is checked for duplicates in linear time
//! (the input is unauthenticated); strings are decoded, never skipped as
//! raw text (a lone surrogate makes the token malformed); `crit` and an
//! unencoded payload (`b64: false`) are refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::super::keys::parse_algorithm;
use super::super::{AuthError, MemberSpan};

/// Largest token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A structurally valid token, not yet verified.
pub(super) struct ParsedToken<'a> {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
    /// `header.payload`, the signed bytes.
    pub(super) signing_input: &'a str,
    pub(super) signature: Vec<u8>,
    /// The payload's JSON text (not yet checked to be an object).
    pub(super) payload: String,
}

impl<'a> ParsedToken<'a> {
    pub(super) fn parse(token: &'a str) -> Result<Self, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(AuthError::Malformed)?;
        if payload.contains('.') {
            return Err(AuthError::Malformed);
        }

        let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
        // JSON text is UTF-8; checked first because skipping a member's value
        // (`IgnoredAny`) does not look inside its strings (fuzzer: a header
        // with invalid UTF-8 in `typ` was accepted).
        let header_json = std::str::from_utf8(&header_json).map_err(|_| AuthError::Malformed)?;
        let header: Header =
            serde_json::from_str::<HeaderResult>(header_json).map_err(|_| AuthError::Malformed)?.0?;
        let alg = header.alg;
        let kid = header.kid;

        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| AuthError::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| AuthError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| AuthError::Malformed)?;
        Ok(Self { alg, kid, signing_input, signature, payload })
    }
}

/// The JOSE header members that matter; any other member is skipped (but
/// still refused when duplicated).
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

/// A header, or why it is refused: a malformed header, or `alg` that is
/// `none` or unknown ([`AuthError::AlgorithmNotAllowed`]).
struct HeaderResult(Result<Header, AuthError>);

impl<'de> Deserialize<'de> for HeaderResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;

        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = HeaderResult;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JOSE header")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<HeaderResult, A::Error> {
                let mut seen: Vec<Name<'de>> = Vec::with_capacity(4);
                let mut alg: Option<Value> = None;
                let mut kid: Option<Value> = None;
                let mut refused = false;
                while let Some(name) = access.next_key::<Name<'de>>()? {
                    match name.0.as_ref() {
                        "alg" => alg = Some(access.next_value()?),
                        "kid" => kid = Some(access.next_value()?),
                        // No JWS extension is understood, so a critical one
                        // cannot be honored (RFC 7515 §4.1.11).
                        "crit" => {
                            access.next_value::<de::IgnoredAny>()?;
                            refused = true;
                        }
                        // An unencoded payload (RFC 7797) is not a JWT.
                        "b64" => refused |= access.next_value::<Value>()? != Value::Bool(true),
                        _ => {
                            access.next_value::<de::IgnoredAny>()?;
                        }
                    }
                    seen.push(name);
                }
                if has_duplicates(seen.iter().map(|n| n.0.as_ref())) {
                    return Err(de::Error::custom("duplicated member"));
                }
                // In this order: `alg` (a string), then its value, then the
                // other members.
                let Some(Value::String(alg)) = alg else {
                    return Ok(HeaderResult(Err(AuthError::Malformed)));
                };
                if alg.eq_ignore_ascii_case("none") {
                    return Ok(HeaderResult(Err(AuthError::AlgorithmNotAllowed)));
                }
                let Some(alg) = parse_algorithm(&alg) else {
                    return Ok(HeaderResult(Err(AuthError::AlgorithmNotAllowed)));
                };
                let kid = match kid {
                    None => None,
                    Some(Value::String(kid)) => Some(kid),
                    Some(_) => return Ok(HeaderResult(Err(AuthError::Malformed))),
                };
                if refused {
                    return Ok(HeaderResult(Err(AuthError::Malformed)));
                }
                Ok(HeaderResult(Ok(Header { alg, kid })))
            }
        }

        deserializer.deserialize_map(HeaderVisitor)
    }
}

/// Whether a name repeats. A token is unauthenticated input of up to 8 KiB
/// (about a thousand members), so beyond a handful of names this takes
/// linear time (a hash set), never pairwise comparisons; the usual dozen
/// claims are compared pairwise, without allocating.
pub(in crate::session) fn has_duplicates<'a, I>(names: I) -> bool
where
    I: ExactSizeIterator<Item = &'a str> + Clone,
{
    const PAIRWISE: usize = 16;
    if names.len() <= PAIRWISE {
        // Compared by a word that holds a short name whole (its length and
        // first seven bytes) and the full text only when the words agree:
        // most claim names are 3 bytes long, and a `memcmp` call per pair
        // was most of this.
        let mut words = [0u64; PAIRWISE];
        for (word, name) in words.iter_mut().zip(names.clone()) {
            *word = short_word(name);
        }
        return names.clone().enumerate().any(|(i, a)| {
            names.clone().zip(&words).take(i).any(|(b, word)| *word == words[i] && (a.len() <= 7 || a == b))
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.into_iter().any(|name| !seen.insert(name))
}

/// A name's length and its first seven bytes in one word: equal words
/// mean equal names for names of up to seven bytes.
fn short_word(name: &str) -> u64 {
    let mut word = [0u8; 8];
    word[0] = name.len().min(255) as u8;
    for (slot, byte) in word[1..].iter_mut().zip(name.bytes()) {
        *slot = byte;
    }
    u64::from_le_bytes(word)
}

/// A member name, borrowed from the input when it has no escapes.
struct Name<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

/// The payload read for the checks in one pass, without building a JSON
/// value: every member's name (all distinct, or the token is malformed),
/// the registered claims' values, and for any other member only whether it
/// is `null` (for `required_claims`).
pub(super) struct Payload<'a> {
    members: Vec<(Name<'a>, Member<'a>)>,
    /// Where each of [`READ_CLAIMS`] is in `members`: the checks look them
    /// up a dozen times.
    read: [Option<usize>; READ_CLAIMS.len()],
}

/// Registered claims whose values the checks read.
pub(in crate::session) const READ_CLAIMS: [&str; 8] =
    ["sub", "iss", "jti", "sid", "exp", "nbf", "iat", "aud"];

/// The position of `name` in [`READ_CLAIMS`].
pub(in crate::session) fn read_claim(name: &str) -> Option<usize> {
    Some(match name {
        "sub" => 0,
        "iss" => 1,
        "jti" => 2,
        "sid" => 3,
        "exp" => 4,
        "nbf" => 5,
        "iat" => 6,
        "aud" => 7,
        _ => return None,
    })
}

/// A member's value, as far as the checks care.
pub(super) enum Member<'a> {
    Null,
    String(std::borrow::Cow<'a, str>),
    Number(serde_json::Number),
    /// An array of strings only (`aud`).
    Strings(Vec<std::borrow::Cow<'a, str>>),
    /// Anything else.
    Other,
}

impl<'a> Payload<'a> {
    pub(super) fn parse(json: &'a str) -> Result<Self, AuthError> {
        serde_json::from_str::<Payload<'a>>(json).map_err(|_| AuthError::Malformed)
    }

    pub(super) fn get(&self, name: &str) -> Option<&Member<'a>> {
        match read_claim(name) {
            Some(i) => self.read[i].and_then(|at| self.members.get(at)).map(|(_, m)| m),
            None => self.members.iter().find(|(n, _)| n.0 == name).map(|(_, m)| m),
        }
    }

    /// Where each member's name (without its quotes) and value are in
    /// `json`, the text this payload was read from, found from the names
    /// the check borrowed from it, so the session's claims need not read the
    /// payload a second time. `None` when a name has escapes (it was
    /// decoded, not borrowed) or anything is not where the JSON grammar puts
    /// it (the claims are then split from the text).
    pub(super) fn member_spans(&self, json: &str) -> Option<Box<[MemberSpan]>> {
        let bytes = json.as_bytes();
        let base = json.as_ptr() as usize;
        let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let names = self
            .members
            .iter()
            .map(|(name, _)| {
                let std::borrow::Cow::Borrowed(name) = &name.0 else { return None };
                let start = (name.as_ptr() as usize).checked_sub(base)?;
                let end = start.checked_add(name.len())?;
                let quoted =
                    start >= 1 && bytes.get(start - 1) == Some(&b'"') && bytes.get(end) == Some(&b'"');
                quoted.then_some(start..end)
            })
            .collect::<Option<Vec<_>>>()?;
        let mut spans = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            // `"name"` ws `:` ws value ws (`,` ws `"next"` | `}` ws end)
            let mut start = name.end + 1;
            while bytes.get(start).is_some_and(is_ws) {
                start += 1;
            }
            if bytes.get(start) != Some(&b':') {
                return None;
            }
            start += 1;
            while bytes.get(start).is_some_and(is_ws) {
                start += 1;
            }
            let (mut end, separator) = match names.get(i + 1) {
                Some(next) => (next.start - 1, b','),
                None => (bytes.len(), b'}'),
            };
            while end > start && is_ws(&bytes[end - 1]) {
                end -= 1;
            }
            if end <= start || bytes[end - 1] != separator {
                return None;
            }
            end -= 1;
            while end > start && is_ws(&bytes[end - 1]) {
                end -= 1;
            }
            if end <= start {
                return None;
            }
            spans.push(MemberSpan { name: name.clone(), value: start..end });
        }
        Some(spans.into_boxed_slice())
    }

    pub(super) fn string(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Member::String(s)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn time(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Some(Member::Number(n)) => n.as_f64(),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Payload<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;

        impl<'de> Visitor<'de> for PayloadVisitor {
            type Value = Payload<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Payload<'de>, A::Error> {
                let mut members: Vec<(Name<'de>, Member<'de>)> = Vec::with_capacity(16);
                let mut read = [None; READ_CLAIMS.len()];
                while let Some(name) = access.next_key::<Name<'de>>()? {
                    let value = match read_claim(&name.0) {
                        Some(i) => {
                            read[i] = Some(members.len());
                            access.next_value::<Member<'de>>()?
                        }
                        None => access.next_value::<NullOrOther>()?.0,
                    };
                    members.push((name, value));
                }
                // A duplicated `iss` or `sub` would let two parsers read
                // different values.
                if has_duplicates(members.iter().map(|(n, _)| n.0.as_ref())) {
                    return Err(de::Error::custom("duplicated member"));
                }
                Ok(Payload { members, read })
            }
        }

        deserializer.deserialize_map(PayloadVisitor)
    }
}

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;

        impl<'de> Visitor<'de> for MemberVisitor {
            type Value = Member<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Member<'de>, E> {
                Ok(Member::Null)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Member<'de>, E> {
                Ok(Member::Other)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Member<'de>, E> {
                Ok(Member::Number(v.into()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Member<'de>, E> {
                Ok(Member::Number(v.into()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Member<'de>, E> {
                Ok(serde_json::Number::from_f64(v).map_or(Member::Other, Member::Number))
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Member<'de>, E> {
                Ok(Member::String(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Member<'de>, E> {
                Ok(Member::String(std::borrow::Cow::Owned(v.to_owned())))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Member<'de>, A::Error> {
                let mut strings = Vec::new();
                let mut only_strings = true;
                while let Some(item) = seq.next_element::<Member<'de>>()? {
                    match item {
                        Member::String(s) if only_strings => strings.push(s),
                        _ => only_strings = false,
                    }
                }
                Ok(if only_strings { Member::Strings(strings) } else { Member::Other })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Member<'de>, A::Error> {
                while access.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Member::Other)
            }
        }

        deserializer.deserialize_any(MemberVisitor)
    }
}

/// A value skipped over, remembering only whether it was `null`. Strings
/// are visited (decoded), not skipped as raw text: a lone surrogate escape
/// anywhere in the payload makes the token malformed, as a JSON value
/// parse would (the adversarial suite holds this).
struct NullOrOther(Member<'static>);

impl<'de> Deserialize<'de> for NullOrOther {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SkipVisitor;

        impl<'de> Visitor<'de> for SkipVisitor {
            type Value = NullOrOther;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<NullOrOther, E> {
                Ok(NullOrOther(Member::Null))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NullOrOther, E> {
                Ok(NullOrOther(Member::Other))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NullOrOther, E> {
                Ok(NullOrOther(Member::Other))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<NullOrOther, E> {
                Ok(NullOrOther(Member::Other))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<NullOrOther, E> {
                Ok(NullOrOther(Member::Other))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<NullOrOther, E> {
                Ok(NullOrOther(Member::Other))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NullOrOther, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(NullOrOther(Member::Other))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<NullOrOther, A::Error> {
                while access.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(NullOrOther(Member::Other))
            }
        }

        deserializer.deserialize_any(SkipVisitor)
    }
}
