//! Conversions between JSON (claims, `user_info` output) and CEL values.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;
use cel::common::traits::{Container, Indexer, Iterable, Sizer, Zeroer};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt, Type,
};
use cel::common::value::{BuiltinRef, CowVal, Val};
use cel::{ExecutionError, objects::Key};

/// Converts a JSON value (token claims) to a CEL value. Integers become
/// `int` (or `uint` above `i64::MAX`), other numbers `double`.
pub fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(o) => object_to_cel(o),
    }
}

/// Converts a JSON object to a CEL map.
pub fn object_to_cel(o: &serde_json::Map<String, serde_json::Value>) -> Value {
    let map: HashMap<Key, Value> =
        o.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v))).collect();
    Value::from(map)
}

/// The verified claims as the CEL variable `token`, in the interpreter's
/// own representation. Built once per verified session (and kept with it in
/// the token cache); every evaluation borrows it, so binding `token` copies
/// nothing, however many claims the token carries.
///
/// A session's claims are converted lazily: the payload text is split into
/// its members once, and a member becomes a CEL value the first time an
/// expression reads it: `token.NAME` (the interpreter looks the qualified
/// name up as a variable first), `has(token.NAME)` or `token["NAME"]` (the
/// lazy claims are a map value whose lookups convert one member). The whole
/// map is built only when `token` is used as a whole (`size(token)`, `in`,
/// comprehensions, equality, returned as a value). Either way a value is
/// converted at most once per session.
///
/// `Debug` prints nothing of the claims.
pub struct TokenValue(Repr);

enum Repr {
    /// Verified claims, converted on first use.
    Lazy(LazyClaims),
    /// Claims (always an object in a verified token).
    Map(CelMap<'static>),
    /// Anything else (policy tests may bind any JSON value).
    Other(Box<dyn Val>),
}

/// A JSON object's text and where its members are. A cached session keeps
/// one of these per token (the token cache holds thousands), so a member
/// is kept in 48 bytes: spans of `u32` and its value's cell.
struct LazyClaims {
    /// The object's text, followed by the decoded names of the members
    /// whose names have escapes (rare), so that every name is a span of it.
    text: Box<str>,
    /// The length of the object's text in `text`.
    json_len: u32,
    members: Vec<LazyMember>,
    whole: std::sync::OnceLock<Box<CelMap<'static>>>,
}

struct LazyMember {
    /// The name, without quotes or escapes, in `text`.
    name: Span,
    /// The member's value, as JSON text in `text`.
    raw: Span,
    /// [`short_word`] of the name: most lookups compare this word only.
    word: u64,
    val: std::sync::OnceLock<Box<dyn Val>>,
}

/// A range of a [`LazyClaims`]'s text, in 8 bytes.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `None` past `u32::MAX` (claims text is a few KiB at most).
    fn of(range: std::ops::Range<usize>) -> Option<Self> {
        Some(Self { start: u32::try_from(range.start).ok()?, end: u32::try_from(range.end).ok()? })
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl LazyClaims {
    fn parse(json: &str) -> Option<Self> {
        let base = json.as_ptr() as usize;
        let offset = |s: &str| s.as_ptr() as usize - base;
        let raw: Vec<(KeyName<'_>, &serde_json::value::RawValue)> =
            serde_json::from_str::<RawMembers<'_>>(json).ok()?.0;
        // Names with escapes are appended, decoded, after the object.
        let mut text = String::from(json);
        let mut members = Vec::with_capacity(raw.len());
        for (KeyName(name), value) in raw {
            let name = match name {
                std::borrow::Cow::Borrowed(n) => offset(n)..offset(n) + n.len(),
                std::borrow::Cow::Owned(n) => {
                    text.push_str(&n);
                    text.len() - n.len()..text.len()
                }
            };
            let at = offset(value.get());
            members.push(LazyMember {
                word: short_word(&text[name.clone()]),
                name: Span::of(name)?,
                raw: Span::of(at..at + value.get().len())?,
                val: std::sync::OnceLock::new(),
            });
        }
        let json_len = u32::try_from(json.len()).ok()?;
        Some(Self { text: text.into_boxed_str(), json_len, members, whole: std::sync::OnceLock::new() })
    }

    /// The object's text.
    fn json(&self) -> &str {
        &self.text[..self.json_len as usize]
    }

    /// The member `name`'s value (the last one, as in a JSON map, should a
    /// name repeat: verified tokens never repeat one).
    fn member(&self, name: &str) -> Option<&(dyn Val + 'static)> {
        // Once the whole map exists (`has(token.x)` builds it), members are
        // read from it rather than converted a second time.
        if let Some(whole) = self.whole.get() {
            let (_, value) = whole
                .inner()
                .iter()
                .find(|(key, _)| matches!(key, CelMapKey::String(k) if k.inner() == name))?;
            return Some(value.as_ref());
        }
        let word = short_word(name);
        let member = self
            .members
            .iter()
            .rev()
            .find(|m| m.word == word && (name.len() <= 7 || &self.text[m.name.range()] == name))?;
        let val = member.val.get_or_init(|| {
            serde_json::from_str::<ValOf>(&self.text[member.raw.range()])
                .map_or_else(|_| Box::new(CelNull) as Box<dyn Val>, |v| v.0.boxed())
        });
        Some(val.as_ref())
    }

    fn whole(&self) -> &CelMap<'static> {
        // The text was split into members already: it is a JSON object.
        self.whole.get_or_init(|| {
            Box::new(match serde_json::from_str::<ValOf>(self.json()) {
                Ok(ValOf(Parsed::Map(map))) => map,
                _ => CelMap::from(HashMap::new()),
            })
        })
    }
}

/// The lazy claims as a CEL map, bound as `token` in expressions that only
/// select its members (`has(token.x)`, `token.x` of an absent claim): a
/// lookup converts one member. Every other capability is answered by the
/// whole map, built on first need, so a mistaken binding would still
/// compute right — but whatever recognises a map by its Rust type
/// (conversion to `Value`, the other side of `==`) sees one only once it
/// is built: expressions that use `token` as a value are bound to the map
/// itself.
impl std::fmt::Debug for LazyClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyClaims(..)")
    }
}

impl Val for LazyClaims {
    fn get_type(&self) -> &Type {
        <Self as Val>::cel_type()
    }

    fn cel_type() -> &'static Type {
        <CelMap<'static> as Val>::cel_type()
    }

    fn as_container(&self) -> Option<&dyn Container> {
        self.whole().as_container()
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn as_iterable<'b, 'v>(&'b self) -> Option<&'b (dyn Iterable + 'v)>
    where
        Self: 'v,
    {
        self.whole().as_iterable()
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        self.whole().as_sizer()
    }

    fn as_zeroer(&self) -> Option<&dyn Zeroer> {
        self.whole().as_zeroer()
    }

    fn equals(&self, other: &dyn Val) -> bool {
        self.whole().equals(other)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        self.whole().clone_as_boxed()
    }

    fn as_builtin<'b, 'v>(&'b self) -> BuiltinRef<'b, 'v>
    where
        Self: 'v,
    {
        // Asked of every value a field is selected on (is it an optional?):
        // answering with the map would build it. Expressions that use
        // `token` as a value get the map itself ([`TokenValue::as_val`]).
        match self.whole.get() {
            Some(whole) => BuiltinRef::Map(whole),
            None => BuiltinRef::Other,
        }
    }
}

impl Indexer for LazyClaims {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        // A string key is a member name: looked up in the index (a missing
        // one is `NoSuchKey`, as in the map). Other keys go to the map,
        // which knows their errors.
        match idx.downcast_ref::<CelString>() {
            Some(name) => match self.member(name.inner()) {
                Some(value) => Ok(CowVal::Borrowed(value)),
                None => Err(ExecutionError::NoSuchKey(Arc::new(name.inner().to_owned()))),
            },
            None => Indexer::get(self.whole(), idx),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A name's length and its first seven bytes in one word: equal words
/// mean equal names for names of up to seven bytes (claim names mostly are).
fn short_word(name: &str) -> u64 {
    let mut word = [0u8; 8];
    word[0] = name.len().min(255) as u8;
    for (slot, byte) in word[1..].iter_mut().zip(name.bytes()) {
        *slot = byte;
    }
    u64::from_le_bytes(word)
}

/// A JSON object's members, borrowed from its text.
struct RawMembers<'de>(Vec<(KeyName<'de>, &'de serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for RawMembers<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> serde::de::Visitor<'de> for MembersVisitor {
            type Value = RawMembers<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<RawMembers<'de>, A::Error> {
                let mut members = Vec::with_capacity(16);
                while let Some(entry) =
                    access.next_entry::<KeyName<'de>, &'de serde_json::value::RawValue>()?
                {
                    members.push(entry);
                }
                Ok(RawMembers(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

impl TokenValue {
    /// The claims object as a CEL map. Integers become `int` (or `uint`
    /// above `i64::MAX`), other numbers `double`, as [`json_to_cel`] does.
    pub fn from_claims(claims: &serde_json::Map<String, serde_json::Value>) -> Self {
        Self(Repr::Map(object_to_val(claims)))
    }

    /// Verified claims, read from their JSON text straight into CEL values
    /// (no intermediate JSON value). `None` if the text is not a JSON object.
    pub fn from_json_text(json: &str) -> Option<Self> {
        LazyClaims::parse(json).map(|lazy| Self(Repr::Lazy(lazy)))
    }

    /// Verified claims whose members were already located in their text
    /// (by the token check): nothing is read again. `members` gives, in
    /// order, each name's range (unescaped, between its quotes) and its
    /// value's range. `None` if a range does not fit the text.
    pub fn from_located_members(
        json: &str,
        members: impl ExactSizeIterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)>,
    ) -> Option<Self> {
        let mut located = Vec::with_capacity(members.len());
        for (name, raw) in members {
            if json.get(name.clone()).is_none() || json.get(raw.clone()).is_none_or(str::is_empty) {
                return None;
            }
            located.push(LazyMember {
                word: short_word(&json[name.clone()]),
                name: Span::of(name)?,
                raw: Span::of(raw)?,
                val: std::sync::OnceLock::new(),
            });
        }
        Some(Self(Repr::Lazy(LazyClaims {
            text: json.into(),
            json_len: u32::try_from(json.len()).ok()?,
            members: located,
            whole: std::sync::OnceLock::new(),
        })))
    }

    /// Any JSON value (tests and `explain` bind non-object tokens too).
    pub fn from_json(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Object(o) => Self::from_claims(o),
            other => Self(Repr::Other(json_to_val(other))),
        }
    }

    /// The claim `name` when it is a string (`sub`, `jti`, a session id).
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        <&str>::try_from(self.member(name)?).ok()
    }

    /// The top-level claim `name`, converted on first use.
    pub(crate) fn member(&self, name: &str) -> Option<&dyn Val> {
        match &self.0 {
            Repr::Lazy(lazy) => lazy.member(name),
            Repr::Map(map) => {
                // Claim sets are small: a scan costs less than hashing the name.
                let (_, value) = map
                    .inner()
                    .iter()
                    .find(|(key, _)| matches!(key, CelMapKey::String(k) if k.inner() == name))?;
                Some(value.as_ref())
            }
            Repr::Other(_) => None,
        }
    }

    /// Whether the claims have a top-level member `name` (CEL's
    /// `has(token.NAME)`); `None` when the token is not an object (CEL
    /// errors then).
    pub(crate) fn has_member(&self, name: &str) -> Option<bool> {
        match &self.0 {
            Repr::Lazy(_) | Repr::Map(_) => Some(self.member(name).is_some()),
            Repr::Other(_) => None,
        }
    }

    /// The value for an expression that reads `token` only through its
    /// members: lookups convert one member, not the whole map.
    pub(crate) fn as_member_lookups(&self) -> &dyn Val {
        match &self.0 {
            Repr::Lazy(lazy) => lazy,
            Repr::Map(map) => map,
            Repr::Other(other) => other.as_ref(),
        }
    }

    /// How much of a lazy value was converted: members, and whether the
    /// whole map was built.
    #[cfg(test)]
    pub(crate) fn converted(&self) -> (usize, bool) {
        match &self.0 {
            Repr::Lazy(lazy) => {
                (lazy.members.iter().filter(|m| m.val.get().is_some()).count(), lazy.whole.get().is_some())
            }
            _ => (0, true),
        }
    }

    /// The value, for binding.
    pub(crate) fn as_val(&self) -> &dyn Val {
        match &self.0 {
            Repr::Lazy(lazy) => lazy.whole(),
            Repr::Map(map) => map,
            Repr::Other(other) => other.as_ref(),
        }
    }
}

impl std::fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenValue(..)")
    }
}

/// A JSON value read as a CEL value, with the numbers of [`json_to_cel`].
/// Within an object, a later duplicate member replaces an earlier one (as
/// in `serde_json::Value`; the token's top level has none).
struct ValOf(Parsed);

enum Parsed {
    Map(CelMap<'static>),
    Other(Box<dyn Val>),
}

impl Parsed {
    fn boxed(self) -> Box<dyn Val> {
        match self {
            Parsed::Map(map) => Box::new(map),
            Parsed::Other(val) => val,
        }
    }
}

impl<'de> serde::Deserialize<'de> for ValOf {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};

        struct ValVisitor;

        impl<'de> Visitor<'de> for ValVisitor {
            type Value = ValOf;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(Box::new(CelNull))))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(Box::new(CelBool::from(v)))))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(Box::new(CelInt::from(v)))))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(match i64::try_from(v) {
                    Ok(i) => Box::new(CelInt::from(i)),
                    Err(_) => Box::new(CelUInt::from(v)),
                })))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(Box::new(CelDouble::from(v)))))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(Box::new(CelString::from(v.to_owned())))))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ValOf, E> {
                Ok(ValOf(Parsed::Other(Box::new(CelString::from(v)))))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValOf, A::Error> {
                let mut items: Vec<Box<dyn Val>> = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<ValOf>()? {
                    items.push(item.0.boxed());
                }
                Ok(ValOf(Parsed::Other(Box::new(CelList::from(items)))))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<ValOf, A::Error> {
                let mut map: HashMap<CelMapKey<'static>, Box<dyn Val>> =
                    HashMap::with_capacity(access.size_hint().unwrap_or(8));
                while let Some(key) = access.next_key::<String>()? {
                    let value = access.next_value::<ValOf>()?;
                    map.insert(CelMapKey::from(key), value.0.boxed());
                }
                Ok(ValOf(Parsed::Map(CelMap::from(map))))
            }
        }

        deserializer.deserialize_any(ValVisitor)
    }
}

/// A member name, borrowed from the text when it has no escapes.
struct KeyName<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> serde::de::Visitor<'de> for NameVisitor {
            type Value = KeyName<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<KeyName<'de>, E> {
                Ok(KeyName(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyName<'de>, E> {
                Ok(KeyName(std::borrow::Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

fn object_to_val(o: &serde_json::Map<String, serde_json::Value>) -> CelMap<'static> {
    let mut map: HashMap<CelMapKey<'static>, Box<dyn Val>> = HashMap::with_capacity(o.len());
    for (k, v) in o {
        map.insert(CelMapKey::from(k.clone()), json_to_val(v));
    }
    CelMap::from(map)
}

fn json_to_val(v: &serde_json::Value) -> Box<dyn Val> {
    match v {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        serde_json::Value::String(s) => Box::new(CelString::from(s.clone())),
        serde_json::Value::Array(a) => Box::new(CelList::from(a.iter().map(json_to_val).collect::<Vec<_>>())),
        serde_json::Value::Object(o) => Box::new(object_to_val(o)),
    }
}

/// Converts a CEL value to JSON for `user_info`/`watchlist`. Map keys come
/// out sorted (CEL maps have no order). Values with no JSON form
/// (functions, bytes, non-finite doubles) give `None`.
pub fn cel_to_json(v: &Value) -> Option<serde_json::Value> {
    Some(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Value::Number(serde_json::Number::from_f64(*f)?),
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(cel_to_json).collect::<Option<_>>()?),
        Value::Map(m) => {
            let mut entries: Vec<(String, serde_json::Value)> =
                m.map.iter().map(|(k, v)| Some((key_string(k), cel_to_json(v)?))).collect::<Option<_>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().collect())
        }
        _ => return None,
    })
}

fn key_string(k: &Key) -> String {
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.as_str().to_owned(),
    }
}

/// A short, value-free description of a CEL value's type, for error messages
/// and audit lines (claim values never go there).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values() {
        let j: serde_json::Value = serde_json::json!({
            "b": [1, "x", true, null, 1.5],
            "a": {"z": 1, "y": {"k": "v"}},
            "big": 18446744073709551615u64
        });
        let back = cel_to_json(&json_to_cel(&j)).unwrap();
        // Keys come back sorted; values are equal.
        assert_eq!(back, j);
        let keys: Vec<&String> = back.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "big"]);
    }

    #[test]
    fn claims_read_from_text_equal_claims_converted_from_json() {
        let text = r#"{"sub":"u\u00e9","n":-3,"big":18446744073709551615,"f":1.5,"ok":true,"none":null,
            "rooms":["1","2"],"nested":{"a":[1,{"b":"c"}]},"dup":{"k":1,"k":2}}"#;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
        let from_text = TokenValue::from_json_text(text).unwrap();
        let from_map = TokenValue::from_claims(&map);
        assert!(from_text.as_val().equals(from_map.as_val()));
        assert_eq!(from_text.claim_str("sub"), Some("u\u{e9}"));
        assert_eq!(from_text.claim_str("n"), None);
        let other = TokenValue::from_json_text(r#"{"sub":"someone else"}"#).unwrap();
        assert!(!other.as_val().equals(from_map.as_val()));
        assert!(TokenValue::from_json_text("[1]").is_none());
        assert!(TokenValue::from_json_text("{").is_none());
    }

    #[test]
    fn located_members_are_read_as_the_split_text() {
        let text = r#"{ "sub" : "u1", "rooms":["1", "2"] ,"p":{"t":"g"},"n":7 }"#;
        let find = |s: &str| {
            let i = text.find(s).unwrap();
            i..i + s.len()
        };
        let members = [
            (find("sub"), find(r#""u1""#)),
            (find("rooms"), find(r#"["1", "2"]"#)),
            (find(r#"p""#).start..find(r#"p""#).start + 1, find(r#"{"t":"g"}"#)),
            (find(r#"n""#).start..find(r#"n""#).start + 1, find("7")),
        ];
        let located = TokenValue::from_located_members(text, members.clone().into_iter()).unwrap();
        let split = TokenValue::from_json_text(text).unwrap();
        assert_eq!(located.converted(), (0, false));
        assert_eq!(located.claim_str("sub"), Some("u1"));
        assert!(located.member("p").unwrap().equals(split.member("p").unwrap()));
        assert!(located.as_val().equals(split.as_val()));
        // Ranges that do not fit the text are refused, not trusted.
        let mut outside = members.clone();
        outside[3].1 = text.len()..text.len() + 2;
        assert!(TokenValue::from_located_members(text, outside.into_iter()).is_none());
        let mut empty = members;
        empty[0].1 = 3..3;
        assert!(TokenValue::from_located_members(text, empty.into_iter()).is_none());
    }

    /// A cached session keeps its claims' members (the token cache holds
    /// thousands of sessions of a dozen claims each): 72 bytes a member
    /// before, which put 11 members in a 896-byte allocation, not 640.
    #[test]
    fn a_member_of_cached_claims_is_kept_in_48_bytes() {
        assert!(std::mem::size_of::<LazyMember>() <= 48, "{}", std::mem::size_of::<LazyMember>());
        assert!(std::mem::size_of::<LazyClaims>() <= 64, "{}", std::mem::size_of::<LazyClaims>());
    }

    #[test]
    fn member_names_that_share_a_prefix_are_told_apart() {
        let text = r#"{"organization_1":"a","organization_2":"b","o":"c","o\u0000":"d","":"e"}"#;
        let lazy = TokenValue::from_json_text(text).unwrap();
        assert_eq!(lazy.claim_str("organization_1"), Some("a"));
        assert_eq!(lazy.claim_str("organization_2"), Some("b"));
        assert_eq!(lazy.claim_str("organization_3"), None);
        assert_eq!(lazy.claim_str("o"), Some("c"));
        assert_eq!(lazy.claim_str("o\u{0}"), Some("d"));
        assert_eq!(lazy.claim_str(""), Some("e"));
    }

    #[test]
    fn lazy_claims_convert_members_on_first_use() {
        let text = r#"{"sub":"u1","na\u006de":"Ann","rooms":["1","2"],"n":7}"#;
        let lazy = TokenValue::from_json_text(text).unwrap();
        assert_eq!(lazy.converted(), (0, false));
        assert_eq!(lazy.claim_str("sub"), Some("u1"));
        assert_eq!(lazy.claim_str("name"), Some("Ann"), "escaped member names are decoded");
        assert_eq!(lazy.claim_str("n"), None, "not a string");
        assert!(lazy.member("missing").is_none());
        assert_eq!(lazy.converted(), (3, false));
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
        assert!(lazy.as_val().equals(TokenValue::from_claims(&map).as_val()));
        assert_eq!(lazy.converted(), (3, true));
        // Read from the whole map from now on: no member is converted again.
        assert_eq!(lazy.claim_str("name"), Some("Ann"));
        assert!(lazy.member("rooms").is_some());
        assert_eq!(lazy.converted(), (3, true));
        assert!(TokenValue::from_json_text("[]").is_none());
    }
}
