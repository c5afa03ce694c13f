//! Strict YAML loading with positions.
//!
//! Config and policy files are deserialized straight from the text with
//! serde-saphyr (never through a `Value`), so every error keeps its
//! file:line:column. serde stops at the first error of a document; to report
//! more than one, a failed document gets a second, lenient pass that checks
//! each top-level section (and each list item of sections that are lists)
//! on its own, so a typo in `pusher:` and another in `session:` are both
//! reported in one run.

pub(crate) mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

/// An error located in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when unknown.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// The offending text with a caret under the error, on lines of its own.
    pub snippet: Option<String>,
}

impl SourceError {
    /// An error at a location.
    pub fn new(file: &Path, line: u64, column: u64, message: impl Into<String>) -> Self {
        let message = message.into();
        let hint = hint_for(&message);
        Self { file: file.to_owned(), line, column, message, hint, snippet: None }
    }

    /// Adds the offending line of text (one line) with a caret under the
    /// 1-based `column` of it.
    #[must_use]
    pub fn with_caret(mut self, text_line: &str, column: usize) -> Self {
        let pad: String = text_line
            .chars()
            .take(column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        self.snippet = Some(format!("    {text_line}\n    {pad}^"));
        self
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Deserializes `text` (the contents of `file`) into `T`, strictly.
pub(crate) fn from_str<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Vec<SourceError>> {
    match serde_saphyr::from_str::<T>(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let first = saphyr_error(file, &e);
            let mut errors = vec![first.clone()];
            errors.extend(
                lenient_pass::<T>(file, text)
                    .into_iter()
                    .filter(|(range, _)| !range.contains(&first.line))
                    .map(|(_, e)| e),
            );
            let mut schema = None;
            for e in &mut errors {
                explain::<T>(e, text, &mut schema);
            }
            Err(errors)
        }
    }
}

/// Converts a serde-saphyr error into a located error, without the snippet.
fn saphyr_error(file: &Path, e: &serde_saphyr::Error) -> SourceError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let message = e.without_snippet().to_string();
    // serde-saphyr appends " at line X column Y" in some messages; keep the text readable.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    SourceError::new(file, line, column, message)
}

fn is_missing_field(message: &str) -> bool {
    message.starts_with("missing field")
}

/// Second pass over a document that failed: each top-level section (and each
/// item of a list section) is checked alone, so one error does not hide the
/// others. Positions are those of the section or item; each error comes with
/// the line range of its section or item, so the caller can drop the one the
/// strict pass already reported.
fn lenient_pass<T: DeserializeOwned>(file: &Path, text: &str) -> Vec<(std::ops::Range<u64>, SourceError)> {
    type Sections = serde_json::Map<String, serde_json::Value>;
    let Ok(top) = serde_saphyr::from_str::<IndexMap<String, Spanned<serde_json::Value>>>(text) else {
        return Vec::new();
    };
    let Ok(lists) = serde_saphyr::from_str::<IndexMap<String, MaybeList>>(text) else {
        return Vec::new();
    };
    let starts: Vec<u64> = top.values().map(|v| v.referenced.line()).collect();
    let mut out = Vec::new();
    for (i, (key, value)) in top.iter().enumerate() {
        let section = starts[i]..starts.get(i + 1).copied().unwrap_or(u64::MAX);
        if let Some(MaybeList(Some(items))) = lists.get(key) {
            for (j, item) in items.iter().enumerate() {
                let start = item.referenced.line();
                let end = items.get(j + 1).map_or(section.end, |n| n.referenced.line());
                let mut one = Sections::new();
                one.insert(key.clone(), serde_json::Value::Array(vec![item.value.clone()]));
                if let Some(e) = check::<T>(one) {
                    out.push((start..end, SourceError::new(file, start, item.referenced.column(), e)));
                }
            }
            continue;
        }
        let mut one = Sections::new();
        one.insert(key.clone(), value.value.clone());
        if let Some(e) = check::<T>(one) {
            out.push((
                section,
                SourceError::new(file, value.referenced.line(), value.referenced.column(), e),
            ));
        }
    }
    out
}

/// A section's list items with their positions, or `None` for a section
/// that is not a list. Hand-written (not `untagged`) so items keep spans.
struct MaybeList(Option<Vec<Spanned<serde_json::Value>>>);

impl<'de> serde::Deserialize<'de> for MaybeList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<MaybeList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<Spanned<serde_json::Value>>()? {
                    items.push(item);
                }
                Ok(MaybeList(Some(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<MaybeList, A::Error> {
                while a.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(MaybeList(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
            fn visit_none<E>(self) -> Result<MaybeList, E> {
                Ok(MaybeList(None))
            }
        }
        d.deserialize_any(V)
    }
}

fn check<T: DeserializeOwned>(section: serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let value = serde_json::Value::Object(section);
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(_) => None,
        Err(e) => {
            let inner = e.inner().to_string();
            if is_missing_field(&inner) && e.path().iter().count() <= 1 {
                return None;
            }
            Some(format!("{}: {inner}", e.path()))
        }
    }
}

/// Rewrites parser messages into plain language and adds a hint where the
/// mistake is recognisable: a key written twice, a tab in the indentation,
/// a key that is valid one level deeper or shallower (or elsewhere).
fn explain<T: DeserializeOwned>(e: &mut SourceError, text: &str, schema: &mut Option<Vec<schema::Entry>>) {
    if let Some(key) = duplicate_key(&e.message) {
        let key = key.to_owned();
        e.message = format!("`{key}` is written twice in the same mapping");
        e.hint = Some(match first_occurrence(text, e.line, &key) {
            Some(first) => format!("keep one of the two `{key}:` lines (the other is line {first})"),
            None => format!("keep one `{key}`"),
        });
        return;
    }
    if let Some((line, column)) = tab_indent(text, e) {
        e.hint = Some(format!(
            "line {line} is indented with a tab (column {column}); YAML indents with spaces only"
        ));
        return;
    }
    if let Some((key, expected)) = unknown_field(&e.message) {
        let schema = schema.get_or_insert_with(schema::entries::<T>);
        if let Some(hint) = placement_hint(schema, key, &expected) {
            e.hint = Some(hint);
        }
    }
}

/// `duplicate mapping key: NAME, set …` → `NAME`.
fn duplicate_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("duplicate mapping key: ")?;
    Some(rest.split(", set ").next().unwrap_or(rest).trim())
}

/// The line (1-based) of the first `key:` at the same indentation as line
/// `dup`, above it.
fn first_occurrence(text: &str, dup: u64, key: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    let dup_index = usize::try_from(dup).ok()?.checked_sub(1)?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let target = indent(lines.get(dup_index)?);
    let is_key = |l: &str| {
        let t = l.trim_start().trim_start_matches("- ");
        t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))
            || t.strip_prefix(&format!("\"{key}\"")).is_some_and(|r| r.trim_start().starts_with(':'))
    };
    (0..dup_index).rev().find(|&i| indent(lines[i]) == target && is_key(lines[i])).map(|i| i as u64 + 1)
}

/// Where a tab indents a line near the error (or anywhere, when the parser
/// complains about a tab): 1-based line and column.
fn tab_indent(text: &str, e: &SourceError) -> Option<(u64, u64)> {
    let lines: Vec<&str> = text.lines().collect();
    let leading_tab = |i: usize| {
        let line = lines.get(i)?;
        let lead = &line[..line.len() - line.trim_start().len()];
        lead.find('\t').map(|c| (i as u64 + 1, c as u64 + 1))
    };
    let at = usize::try_from(e.line).unwrap_or(0).saturating_sub(1);
    if let Some(found) = (at.saturating_sub(1)..=at + 1).find_map(leading_tab) {
        return Some(found);
    }
    if e.message.contains("tab") { (0..lines.len()).find_map(leading_tab) } else { None }
}

/// `unknown field `k`, expected one of a, b` → (`k`, [a, b]).
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.split("unknown field `").nth(1)?;
    let (key, rest) = rest.split_once('`')?;
    let list = rest.split("expected one of ").nth(1).or_else(|| rest.split("expected ").nth(1)).unwrap_or("");
    let expected =
        list.split(',').map(|e| e.trim().trim_matches('`')).filter(|e| !e.is_empty()).collect::<Vec<_>>();
    Some((key, expected))
}

/// Where `key` belongs, when it is a valid key elsewhere in the document:
/// one level deeper or shallower than where it is written (an indentation
/// mistake), or anywhere else.
fn placement_hint(schema: &[schema::Entry], key: &str, expected: &[&str]) -> Option<String> {
    let mut expected: Vec<&str> = expected.to_vec();
    expected.sort_unstable();
    let here: Vec<&[&'static str]> = schema
        .iter()
        .filter(|e| match &e.kind {
            schema::Kind::Section(fields) => {
                let mut f = fields.clone();
                f.sort_unstable();
                !f.is_empty() && f == expected
            }
            _ => false,
        })
        .map(|e| e.keys.as_slice())
        .collect();
    let candidates: Vec<&[&'static str]> =
        schema.iter().filter(|e| e.keys.last() == Some(&key)).map(|e| &e.keys[..e.keys.len() - 1]).collect();
    // The path as the reference writes it, `[]` marking list items.
    let name =
        |p: &[&str]| schema.iter().find(|e| e.keys == p).map_or_else(|| p.join("."), schema::Entry::path);
    for h in &here {
        for p in &candidates {
            if p.len() == h.len() + 1 && p.starts_with(h) {
                let last = p.last().copied().unwrap_or_default();
                return Some(format!("`{key}` belongs under `{}`: indent it below `{last}:`", name(p)));
            }
        }
        for p in &candidates {
            if p.len() + 1 == h.len() && h.starts_with(p) {
                let last = h.last().copied().unwrap_or_default();
                return Some(if p.is_empty() {
                    format!("`{key}` is a top-level key: move it out of `{}`, without indentation", name(h))
                } else {
                    format!(
                        "`{key}` belongs to `{}`, not `{}`: indent it as far as `{last}:`",
                        name(p),
                        name(h)
                    )
                });
            }
        }
    }
    let p = candidates.first()?;
    Some(if p.is_empty() {
        format!("`{key}` is a top-level key")
    } else {
        format!("`{key}` is a key of `{}`", name(p))
    })
}

/// A hint for common serde messages: the closest expected field for an
/// unknown one.
fn hint_for(message: &str) -> Option<String> {
    let rest =
        message.split("unknown field `").nth(1).or_else(|| message.split("unknown variant `").nth(1))?;
    let (unknown, rest) = rest.split_once('`')?;
    let list = rest.split("expected one of ").nth(1).or_else(|| rest.split("expected ").nth(1))?;
    let best = list
        .split(',')
        .map(|e| e.trim().trim_matches('`'))
        .filter(|e| !e.is_empty())
        .map(|e| (strsim(unknown, e), e))
        .filter(|(d, _)| *d <= 2 + unknown.len() / 4)
        .min_by_key(|(d, _)| *d)?;
    Some(format!("did you mean `{}`?", best.1))
}

/// Levenshtein distance (small strings only).
fn strsim(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        inner: Option<Inner>,
        other: Option<Inner>,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn unknown_field_has_line_column_and_hint() {
        let errs = from_str::<Doc>(Path::new("f.yaml"), "name: x\ninner:\n  prot: 1\n").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].column), (3, 3));
        assert!(errs[0].message.contains("unknown field `prot`"), "{}", errs[0].message);
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `port`?"));
        assert!(errs[0].to_string().starts_with("f.yaml:3:3: "));
    }

    #[test]
    fn every_section_is_reported() {
        let text = "name: x\ninner:\n  prot: 1\nother:\n  port: big\nitems:\n  - port: 1\n  - port: -1\n";
        let errs = from_str::<Doc>(Path::new("f.yaml"), text).unwrap_err();
        let lines: Vec<u64> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 5, 8], "{errs:#?}");
    }

    #[test]
    fn a_key_written_too_shallow_is_told_where_it_belongs() {
        let errs = from_str::<Doc>(Path::new("f.yaml"), "name: x\nport: 1\n").unwrap_err();
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("`port` belongs under `inner`: indent it below `inner:`"),
            "{errs:?}"
        );
        let errs = from_str::<Nested>(Path::new("f.yaml"), "outer: {}\nport: 1\n").unwrap_err();
        assert_eq!(errs[0].hint.as_deref(), Some("`port` is a key of `outer.inner`"), "{errs:?}");
        let errs = from_str::<Nested>(Path::new("f.yaml"), "outer:\n  port: 1\n").unwrap_err();
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("`port` belongs under `outer.inner`: indent it below `inner:`"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_key_written_too_deep_is_told_where_it_belongs() {
        let errs = from_str::<Nested>(Path::new("f.yaml"), "outer:\n  inner:\n    level: 1\n").unwrap_err();
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("`level` belongs to `outer`, not `outer.inner`: indent it as far as `inner:`"),
            "{errs:?}"
        );
        let errs = from_str::<Nested>(Path::new("f.yaml"), "outer:\n  top: 1\n").unwrap_err();
        assert_eq!(
            errs[0].hint.as_deref(),
            Some("`top` is a top-level key: move it out of `outer`, without indentation"),
            "{errs:?}"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        outer: Outer,
        #[serde(default)]
        top: Option<u8>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Option<Inner>,
        #[serde(default)]
        level: Option<u8>,
    }

    #[test]
    fn a_duplicate_key_is_named_with_both_lines_and_no_library_option() {
        let errs = from_str::<Doc>(Path::new("f.yaml"), "name: x\ninner:\n  port: 1\nname: y\n").unwrap_err();
        assert_eq!(errs[0].message, "`name` is written twice in the same mapping", "{errs:?}");
        assert_eq!(errs[0].hint.as_deref(), Some("keep one of the two `name:` lines (the other is line 1)"));
        assert!(!errs[0].to_string().contains("Policy"), "{}", errs[0]);
    }

    #[test]
    fn a_tab_in_the_indentation_is_pointed_at() {
        for text in ["name: x\ninner:\n\tport: 1\n", "name: x\n\tinner: {}\n"] {
            let errs = from_str::<Doc>(Path::new("f.yaml"), text).unwrap_err();
            let hint = errs[0].hint.as_deref().unwrap_or_default();
            assert!(hint.contains("indented with a tab") && hint.contains("spaces only"), "{errs:?}");
            let line = text.lines().position(|l| l.starts_with('\t')).unwrap() + 1;
            assert!(hint.starts_with(&format!("line {line} ")), "{errs:?}");
        }
    }

    #[test]
    fn a_misspelt_choice_gets_a_did_you_mean() {
        let errs = from_str::<WithChoice>(Path::new("f.yaml"), "to: stdot\n").unwrap_err();
        assert!(errs[0].message.contains("unknown variant `stdot`"), "{errs:?}");
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `stdout`?"), "{errs:?}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct WithChoice {
        to: Choice,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Choice {
        Stdout,
        Stderr,
    }

    #[test]
    fn syntax_error_is_located() {
        let errs = from_str::<Doc>(Path::new("f.yaml"), "name: [x\n").unwrap_err();
        assert!(errs[0].line >= 1, "{errs:?}");
    }
}
