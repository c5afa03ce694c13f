//! The key tree of a YAML document type, read from its own `Deserialize`
//! implementation, so that nothing else has to list the keys by hand.
//!
//! A [`Walker`] is a serde `Deserializer` that offers, at each level, a
//! mapping with one entry: the next key of the path being explored, or a
//! probe key nobody uses. A `deny_unknown_fields` struct refuses the probe
//! by calling `Error::unknown_field(probe, FIELDS)`, and an enum
//! `Error::unknown_variant(probe, VARIANTS)`; the walker's error type keeps
//! those lists instead of formatting them. Each field found is explored the
//! same way, from the root, until only leaves (strings, numbers, secrets,
//! free-form maps) are left. Serde calls are the only input, so the tree
//! follows every field added to, renamed in or removed from the raw types.
//!
//! Used for the configuration reference's drift test and for the
//! "belongs under …" hints of [`crate::yaml`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// A key no document type uses.
const PROBE: &str = "\u{1}channelgate-schema-probe";
/// Deepest path explored (the real types are 4 levels deep).
const MAX_DEPTH: usize = 8;
/// Most entries produced (a guard against recursive types).
const MAX_ENTRIES: usize = 1000;

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A mapping with these keys.
    Section(Vec<&'static str>),
    /// One of these names (a string, or a one-key mapping).
    Choice(Vec<&'static str>),
    /// A mapping with keys of the author's choosing.
    Map,
    /// A value: a string, number, boolean, secret source or list of them.
    Value,
}

/// One key of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The keys from the root, e.g. `["session", "jwt", "issuer"]`.
    pub keys: Vec<&'static str>,
    /// For each key, whether its value is a list of what follows.
    pub lists: Vec<bool>,
    /// What it holds.
    pub kind: Kind,
}

impl Entry {
    /// The dotted path with `[]` after list keys: `publish.clients[].key`.
    pub(crate) fn path(&self) -> String {
        let mut out = String::new();
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(k);
            if self.lists.get(i).copied().unwrap_or(false) {
                out.push_str("[]");
            }
        }
        out
    }
}

/// Every key of `T`, parents before children, in declaration order. The
/// root itself is the first entry (with no keys).
pub(crate) fn entries<T: DeserializeOwned>() -> Vec<Entry> {
    let mut out = Vec::new();
    let mut queue: VecDeque<Vec<&'static str>> = VecDeque::from([Vec::new()]);
    while let Some(keys) = queue.pop_front() {
        if out.len() >= MAX_ENTRIES {
            break;
        }
        let lists = RefCell::new(vec![false; keys.len() + 1]);
        let walker = Walker { keys: &keys, depth: 0, lists: &lists };
        let kind = match T::deserialize(walker) {
            Err(Found::Fields(fields)) => Kind::Section(fields.to_vec()),
            Err(Found::Variants(variants)) => Kind::Choice(variants.to_vec()),
            Err(Found::MapValue) => Kind::Map,
            Err(Found::Leaf) | Ok(_) => Kind::Value,
        };
        if let Kind::Section(fields) = &kind
            && keys.len() < MAX_DEPTH
        {
            for f in fields {
                let mut next = keys.clone();
                next.push(f);
                queue.push_back(next);
            }
        }
        // lists[d] is set while deserializing the value of keys[d - 1].
        let lists = lists.into_inner().into_iter().skip(1).collect();
        out.push(Entry { keys, lists, kind });
    }
    out
}

/// What a walk found at the end of its path (as serde's error type).
#[derive(Debug)]
enum Found {
    Fields(&'static [&'static str]),
    Variants(&'static [&'static str]),
    MapValue,
    Leaf,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Found::Leaf
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        if field == PROBE { Found::Fields(expected) } else { Found::Leaf }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        if variant == PROBE { Found::Variants(expected) } else { Found::Leaf }
    }
}

/// Scalars and the rest end the walk: they are leaves.
macro_rules! leaves {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found::Leaf)
        })*
    };
}

/// Deserializes one level of the explored path.
#[derive(Clone, Copy)]
struct Walker<'a> {
    keys: &'a [&'static str],
    depth: usize,
    lists: &'a RefCell<Vec<bool>>,
}

impl Walker<'_> {
    fn key(&self) -> &'static str {
        self.keys.get(self.depth).copied().unwrap_or(PROBE)
    }

    fn at_end(&self) -> bool {
        self.depth >= self.keys.len()
    }
}

impl<'de> de::Deserializer<'de> for Walker<'_> {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Found> {
        v.visit_map(OneEntry { walker: self, done: false })
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Found> {
        v.visit_map(OneEntry { walker: self, done: false })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Found> {
        v.visit_map(OneEntry { walker: self, done: false })
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Found> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Found> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Found> {
        if let Ok(mut lists) = self.lists.try_borrow_mut()
            && let Some(slot) = lists.get_mut(self.depth)
        {
            *slot = true;
        }
        v.visit_seq(OneElement { walker: Some(self) })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Found> {
        v.visit_enum(de::value::StrDeserializer::<Found>::new(PROBE))
    }

    leaves! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, Found> {
        Err(Found::Leaf)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Found> {
        Err(Found::Leaf)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Found> {
        Err(Found::Leaf)
    }
}

/// A mapping of one entry: the path's next key (or the probe) and its value.
struct OneEntry<'a> {
    walker: Walker<'a>,
    done: bool,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = Found;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Found> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        seed.deserialize(self.walker.key().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Found> {
        if self.walker.at_end() {
            // A free-form map took the probe key: its values are the author's.
            return Err(Found::MapValue);
        }
        seed.deserialize(Walker { depth: self.walker.depth + 1, ..self.walker })
    }
}

/// A list of one element, explored at the same depth.
struct OneElement<'a> {
    walker: Option<Walker<'a>>,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = Found;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Found> {
        match self.walker.take() {
            Some(w) => seed.deserialize(w).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        inner: Option<serde_saphyr::Spanned<Inner>>,
        #[serde(default)]
        items: Vec<Inner>,
        #[serde(default)]
        tags: Vec<serde_saphyr::Spanned<String>>,
        #[serde(default)]
        free: indexmap::IndexMap<String, String>,
        #[serde(default)]
        pick: Option<Pick>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
        #[serde(default)]
        on: Option<bool>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Pick {
        Stdout,
        File(String),
    }

    #[test]
    fn walks_every_key_through_options_lists_and_spans() {
        let got: Vec<(String, Kind)> = entries::<Doc>().into_iter().map(|e| (e.path(), e.kind)).collect();
        let want = vec![
            ("".to_owned(), Kind::Section(vec!["name", "inner", "items", "tags", "free", "pick"])),
            ("name".to_owned(), Kind::Value),
            ("inner".to_owned(), Kind::Section(vec!["port", "on"])),
            ("items[]".to_owned(), Kind::Section(vec!["port", "on"])),
            ("tags[]".to_owned(), Kind::Value),
            ("free".to_owned(), Kind::Map),
            ("pick".to_owned(), Kind::Choice(vec!["stdout", "file"])),
            ("inner.port".to_owned(), Kind::Value),
            ("inner.on".to_owned(), Kind::Value),
            ("items[].port".to_owned(), Kind::Value),
            ("items[].on".to_owned(), Kind::Value),
        ];
        assert_eq!(got, want);
    }
}
