//! Channel-name patterns: `private-user-{user}`, `presence-room-{room:[0-9]+}`.
//!
//! A pattern is compiled once, at load, into an anchored regular expression
//! with one named group per capture. Invariants:
//! - the pattern starts with a literal prefix that fixes its channel kind
//!   (`private-`, `presence-` or `private-encrypted-`), and a pattern only
//!   matches channels of that kind: `private-{x}` never matches
//!   `private-encrypted-x`, so a broad private rule cannot hand out an
//!   encryption key by accident;
//! - a plain `{name}` capture matches one or more channel-name characters;
//!   `{name:REGEX}` narrows it; at most one plain capture per pattern, so the
//!   split of a channel into captures is never ambiguous;
//! - the whole channel name must match (`^…$`); nothing is matched by prefix.
//!
//! The usual shapes are matched without the regex: a literal channel, and a
//! literal prefix (and suffix) around one capture that is plain
//! (`private-user-{user}`) or one character class repeated
//! (`private-doc-{doc:[0-9]+}`) — anchored at both ends, such a capture is
//! whatever lies between the literals, and a channel name holds only
//! channel-name characters. Other patterns first check their literal
//! prefix. A test holds both ways to the same answers.

use std::fmt;

use regex::Regex;

use crate::pusher::{ChannelKind, ChannelName};

/// Characters a channel name may hold (spec/PROTOCOL.md §3), as a regex class.
const CHANNEL_CHARS: &str = r"[A-Za-z0-9_\-=@,.;]";

/// Variable names that a capture may not take: they are policy variables or
/// CEL words.
const RESERVED: &[&str] = &[
    "token",
    "channel",
    "socket_id",
    "request",
    "in",
    "true",
    "false",
    "null",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A compiled channel pattern.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    kind: ChannelKind,
    regex: Regex,
    captures: Vec<String>,
    shape: Shape,
}

/// How a channel is matched.
#[derive(Clone, Debug)]
enum Shape {
    /// The pattern is one literal.
    Literal(String),
    /// `prefix{capture}suffix` with a plain capture (any channel-name
    /// characters: `class` is `None`) or a `[class]+` one: the capture is
    /// what lies between, non-empty, each byte in the class.
    Around { prefix: String, suffix: String, class: Option<ByteClass> },
    /// Anything else: the regex, after the literal prefix.
    Regex { prefix: String },
}

/// Why a pattern does not compile. The message is for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

fn err(msg: impl Into<String>) -> PatternError {
    PatternError(msg.into())
}

enum Segment<'a> {
    Literal(&'a str),
    Capture { name: &'a str, regex: Option<&'a str> },
}

impl Pattern {
    /// Compiles a pattern.
    pub fn parse(source: &str) -> Result<Self, PatternError> {
        let segments = split(source)?;
        let prefix = match segments.first() {
            Some(Segment::Literal(lit)) => *lit,
            _ => "",
        };
        let kind = if prefix.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if prefix.starts_with("private-") {
            ChannelKind::Private
        } else if prefix.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            return Err(err("a pattern must start with `private-`, `presence-` or `private-encrypted-`; \
                 public channels need no authorization"));
        };

        let mut re = String::from("^");
        let mut captures: Vec<String> = Vec::new();
        let mut plain = 0;
        let mut previous_was_capture = false;
        for segment in &segments {
            match segment {
                Segment::Literal(lit) => {
                    if let Some(c) = lit.chars().find(|c| !is_channel_char(*c)) {
                        return Err(err(format!(
                            "`{}` cannot appear in a channel name, so this pattern never matches",
                            c.escape_default()
                        )));
                    }
                    re.push_str(&regex::escape(lit));
                    previous_was_capture = false;
                }
                Segment::Capture { name, regex } => {
                    if previous_was_capture {
                        return Err(err(format!(
                            "capture `{name}` follows another capture directly; \
                             put a literal between them so the split is unambiguous"
                        )));
                    }
                    check_capture_name(name)?;
                    if captures.iter().any(|c| c == name) {
                        return Err(err(format!("capture `{name}` appears twice")));
                    }
                    match regex {
                        None => {
                            plain += 1;
                            re.push_str(&format!("(?P<{name}>{CHANNEL_CHARS}+)"));
                        }
                        Some(inner) => {
                            if inner.contains("(?P<") || inner.contains("(?<") {
                                return Err(err(format!(
                                    "the regex of `{name}` may not declare named groups"
                                )));
                            }
                            if let Err(e) = Regex::new(inner) {
                                return Err(err(format!("the regex of `{name}` is invalid: {e}")));
                            }
                            re.push_str(&format!("(?P<{name}>(?:{inner}))"));
                        }
                    }
                    captures.push((*name).to_owned());
                    previous_was_capture = true;
                }
            }
        }
        if plain > 1 {
            return Err(err("more than one plain `{capture}`: the channel could be split between them in \
                 several ways; give all but one a regex, e.g. `{team:[a-z0-9]+}`"));
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| err(format!("pattern does not compile: {e}")))?;
        let around = |prefix: &str, regex: Option<&str>, suffix: &str| {
            let class = match regex {
                None => None,
                Some(regex) => Some(ByteClass::of_repeated_class(regex)?),
            };
            Some(Shape::Around { prefix: prefix.to_owned(), suffix: suffix.to_owned(), class })
        };
        let shape = match segments.as_slice() {
            [Segment::Literal(all)] => Some(Shape::Literal((*all).to_owned())),
            [Segment::Literal(prefix), Segment::Capture { regex, .. }] => around(prefix, *regex, ""),
            [Segment::Literal(prefix), Segment::Capture { regex, .. }, Segment::Literal(suffix)] => {
                around(prefix, *regex, suffix)
            }
            _ => None,
        };
        let shape = shape.unwrap_or_else(|| Shape::Regex { prefix: prefix.to_owned() });
        Ok(Self { source: source.to_owned(), kind, regex, captures, shape })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The channel kind this pattern matches.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Capture names, in pattern order.
    pub fn capture_names(&self) -> &[String] {
        &self.captures
    }

    /// Matches a channel; returns the captures in pattern order.
    pub fn matches<'c>(&self, channel: &'c ChannelName) -> Option<Captures<'_, 'c>> {
        if channel.kind() != self.kind {
            return None;
        }
        let name = channel.as_str();
        match &self.shape {
            // Word comparisons (`crate::scan`): `==` and `strip_prefix` call
            // `bcmp`, which costs more than these short names.
            Shape::Literal(literal) => {
                crate::scan::eq(name.as_bytes(), literal.as_bytes()).then(|| Captures::Many(Vec::new()))
            }
            Shape::Around { prefix, suffix, class } => {
                let (bytes, prefix, suffix) = (name.as_bytes(), prefix.as_bytes(), suffix.as_bytes());
                if bytes.len() < prefix.len() + suffix.len()
                    || !crate::scan::starts_with(bytes, prefix)
                    || !crate::scan::ends_with(bytes, suffix)
                {
                    return None;
                }
                // Channel names are ASCII: every index is a char boundary.
                let capture = name.get(prefix.len()..name.len() - suffix.len())?;
                // Every character of a channel name is a channel-name
                // character: a plain capture only has to be non-empty.
                if capture.is_empty() || class.as_ref().is_some_and(|class| !class.holds_all(capture)) {
                    return None;
                }
                let capture_name = self.captures.first()?;
                Some(Captures::One([(capture_name.as_str(), capture)]))
            }
            Shape::Regex { prefix } => {
                if !crate::scan::starts_with(name.as_bytes(), prefix.as_bytes()) {
                    return None;
                }
                self.matches_by_regex(channel).map(Captures::Many)
            }
        }
    }

    /// [`Pattern::matches`] by the regex alone.
    fn matches_by_regex<'c>(&self, channel: &'c ChannelName) -> Option<Vec<(&str, &'c str)>> {
        if channel.kind() != self.kind {
            return None;
        }
        let caps = self.regex.captures(channel.as_str())?;
        let mut out = Vec::with_capacity(self.captures.len());
        for name in &self.captures {
            let m = caps.name(name)?;
            out.push((name.as_str(), m.as_str()));
        }
        Some(out)
    }
}

/// A match's captures, in pattern order: a slice. The common patterns have
/// one capture, kept inline (no allocation per channel decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captures<'p, 'c> {
    /// One capture.
    One([(&'p str, &'c str); 1]),
    /// None, or several (regex patterns).
    Many(Vec<(&'p str, &'c str)>),
}

impl<'p, 'c> std::ops::Deref for Captures<'p, 'c> {
    type Target = [(&'p str, &'c str)];

    fn deref(&self) -> &Self::Target {
        match self {
            Captures::One(one) => one,
            Captures::Many(many) => many,
        }
    }
}

impl<'a, 'p, 'c> IntoIterator for &'a Captures<'p, 'c> {
    type Item = &'a (&'p str, &'c str);
    type IntoIter = std::slice::Iter<'a, (&'p str, &'c str)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Pattern {
    /// Up to `n` channel names this pattern matches, drawn deterministically
    /// from `rng`: plain captures take a few representative values, regex
    /// captures random strings of their regex. For `channelgate check`.
    pub fn samples(&self, rng: &mut rand::rngs::StdRng, n: usize) -> Vec<ChannelName> {
        const PLAIN: &[&str] =
            &["x", "abc", "42", "a-b", "u_1", "x.y", "Z=1", "a@b", "m;n", "x-admin", "1-staff"];
        let Ok(segments) = split(&self.source) else { return Vec::new() };
        let generators: Vec<Option<rand_regex::Regex>> = segments
            .iter()
            .map(|s| match s {
                Segment::Capture { regex: Some(r), .. } => rand_regex::Regex::compile(r, 6).ok(),
                _ => None,
            })
            .collect();
        let mut out: Vec<ChannelName> = Vec::new();
        for attempt in 0..n * 4 {
            if out.len() >= n {
                break;
            }
            let mut name = String::new();
            for (segment, generator) in segments.iter().zip(&generators) {
                match (segment, generator) {
                    (Segment::Literal(l), _) => name.push_str(l),
                    (Segment::Capture { regex: None, .. }, _) => name.push_str(PLAIN[attempt % PLAIN.len()]),
                    (Segment::Capture { regex: Some(_), .. }, Some(g)) => {
                        name.push_str(&rand::RngExt::sample::<String, _>(rng, g));
                    }
                    (Segment::Capture { regex: Some(_), .. }, None) => return out,
                }
            }
            if let Ok(c) = ChannelName::parse(&name)
                && self.matches(&c).is_some()
                && !out.contains(&c)
            {
                out.push(c);
            }
        }
        out
    }
}

/// A set of ASCII bytes: a capture regex that is one bracketed class
/// repeated (`[0-9]+`, `[a-z0-9_-]+`), matched without the regex.
#[derive(Clone, Copy, Debug)]
struct ByteClass(u128);

impl ByteClass {
    /// The class of a regex that is exactly `[ITEMS]+`, where each item is
    /// an ASCII letter, digit or channel-name punctuation, or a range of
    /// letters or digits (`a-z`); `None` for anything else (negation,
    /// escapes, other repetitions), which the regex then matches.
    fn of_repeated_class(regex: &str) -> Option<Self> {
        let items = regex.strip_prefix('[')?.strip_suffix("]+")?.as_bytes();
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"_=@,.;".contains(&b);
        let mut set = 0u128;
        let mut i = 0;
        while i < items.len() {
            let b = items[i];
            if b == b'-' && (i == 0 || i == items.len() - 1) {
                // A `-` first or last is itself.
                set |= 1 << b;
                i += 1;
            } else if !plain(b) {
                return None;
            } else if items.get(i + 1) == Some(&b'-') && i + 2 < items.len() {
                let end = items[i + 2];
                let same_kind = (b.is_ascii_digit() && end.is_ascii_digit())
                    || (b.is_ascii_lowercase() && end.is_ascii_lowercase())
                    || (b.is_ascii_uppercase() && end.is_ascii_uppercase());
                if !same_kind || end < b {
                    return None;
                }
                for c in b..=end {
                    set |= 1 << c;
                }
                i += 3;
            } else {
                set |= 1 << b;
                i += 1;
            }
        }
        (set != 0).then_some(Self(set))
    }

    /// Whether every byte of `s` is in the class.
    fn holds_all(&self, s: &str) -> bool {
        s.bytes().all(|b| b < 128 && self.0 & (1 << b) != 0)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-=@,.;".contains(c)
}

fn check_capture_name(name: &str) -> Result<(), PatternError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(err(format!(
            "capture name `{name}` must be lowercase letters, digits and `_`, starting with a letter"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(err(format!("capture name `{name}` is reserved; choose another")));
    }
    Ok(())
}

/// Splits a pattern into literals and `{...}` captures. Braces inside a
/// capture's regex nest (`{id:[0-9]{2,4}}`).
fn split(source: &str) -> Result<Vec<Segment<'_>>, PatternError> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    let mut literal_start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                if literal_start < i {
                    out.push(Segment::Literal(&source[literal_start..i]));
                }
                let start = i + 1;
                let mut depth = 1;
                let mut j = start;
                while j < bytes.len() && depth > 0 {
                    match bytes[j] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if depth != 0 {
                    return Err(err("a `{` is never closed"));
                }
                let body = &source[start..j - 1];
                let (name, regex) = match body.split_once(':') {
                    Some((n, r)) => (n, Some(r)),
                    None => (body, None),
                };
                if regex.is_some_and(str::is_empty) {
                    return Err(err(format!("capture `{name}` has an empty regex")));
                }
                out.push(Segment::Capture { name, regex });
                i = j;
                literal_start = i;
            }
            b'}' => return Err(err("a `}` has no matching `{`")),
            _ => i += 1,
        }
    }
    if literal_start < bytes.len() {
        out.push(Segment::Literal(&source[literal_start..]));
    }
    if out.is_empty() {
        return Err(err("the pattern is empty"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    fn caps(pattern: &str, ch: &str) -> Option<Vec<(String, String)>> {
        let p = Pattern::parse(pattern).unwrap();
        let c = channel(ch);
        p.matches(&c).map(|v| v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect())
    }

    #[test]
    fn plain_capture_takes_the_rest() {
        assert_eq!(
            caps("private-user-{user}", "private-user-alice"),
            Some(vec![("user".into(), "alice".into())])
        );
        // A capture is greedy but anchored: the policy compares it to claims.
        assert_eq!(
            caps("private-user-{user}", "private-user-alice-admin"),
            Some(vec![("user".into(), "alice-admin".into())])
        );
        assert_eq!(caps("private-user-{user}", "private-user-"), None);
        assert_eq!(caps("private-user-{user}", "private-users-x"), None);
    }

    #[test]
    fn regex_capture_narrows() {
        assert_eq!(
            caps("presence-room-{room:[0-9]+}", "presence-room-42"),
            Some(vec![("room".into(), "42".into())])
        );
        assert_eq!(caps("presence-room-{room:[0-9]+}", "presence-room-1-staff"), None);
        assert_eq!(caps("presence-room-{room:[0-9]{2,3}}", "presence-room-4"), None);
        assert_eq!(
            caps("presence-room-{room:[0-9]{2,3}}", "presence-room-404"),
            Some(vec![("room".into(), "404".into())])
        );
    }

    #[test]
    fn two_captures_with_a_regex() {
        assert_eq!(
            caps("private-team-{team:[a-z]+}-doc-{doc}", "private-team-acme-doc-1-2"),
            Some(vec![("team".into(), "acme".into()), ("doc".into(), "1-2".into())])
        );
    }

    #[test]
    fn kind_is_fixed_by_the_prefix() {
        assert_eq!(caps("private-{x}", "private-encrypted-x"), None);
        assert!(caps("private-encrypted-{x}", "private-encrypted-x").is_some());
        assert_eq!(caps("private-{x}", "presence-x"), None);
        assert_eq!(caps("presence-{x}", "presence-x").map(|v| v.len()), Some(1));
    }

    #[test]
    fn literal_only_pattern() {
        assert_eq!(caps("private-lobby", "private-lobby"), Some(vec![]));
        assert_eq!(caps("private-lobby", "private-lobby2"), None);
        // A `.` in a literal is a literal dot, not "any character".
        assert_eq!(caps("private-a.b", "private-axb"), None);
    }

    #[test]
    fn the_shapes_match_as_the_regex_does() {
        let patterns = [
            "private-doc-{doc:[0-9]+}",
            "presence-room-{room:[0-9]+}",
            "private-org-{org:[a-z0-9]+}-announcements",
            "private-org-{org:[a-z0-9-]+}-x",
            "private-{x:[-a-z]+}",
            "private-{x:[a-zA-Z_.]+}",
            "private-{x:[0-9a-f]+}-y",
            "private-{x:[a-c-]+}",
            "private-{x:[=@,;]+}",
            "private-{x:[a-]+}",
            "private-{x:[^a-z]+}",
            "private-{x:[a-z]*}",
            "private-{x:[0-9]+}-{y:[a-z]+}",
            "private-user-{user}",
            "private-org-{org}-announcements",
            "private-{x}",
            "private-encrypted-{x}",
            "presence-{x}",
            "presence-lobby",
            "private-a.b",
            "private-{x}-",
            "private-doc-{doc:[0-9]+}",
            "presence-room-{room:[0-9]{2,3}}",
            "private-team-{team:[a-z]+}-doc-{doc}",
            "private-{a:[a-z]+}-x-{b}-y",
            "presence-t-{tenant:[a-z0-9]+}-room-{room}",
        ];
        let mut channels: Vec<String> = [
            "private-user-alice",
            "private-user-",
            "private-user-a",
            "private-users-x",
            "private-org-acme-announcements",
            "private-org--announcements",
            "private-org-announcements",
            "private-org-a-announcements-announcements",
            "private-encrypted-x",
            "private-x-",
            "private--",
            "presence-lobby",
            "presence-lobby2",
            "private-a.b",
            "private-axb",
            "private-doc-100",
            "private-doc-1a",
            "presence-room-404",
            "presence-room-4",
            "private-team-acme-doc-1-2",
            "private-abc-x-1-y",
            "presence-t-acme-room-7",
            "presence-x",
            "private-x",
            "private-org-acme-x",
            "private-org-a-c-x",
            "private-org--x",
            "private-ab-",
            "private--ab",
            "private-Ab_c.D",
            "private-0fa-y",
            "private-0fg-y",
            "private-=@,;",
            "private-a-a",
            "private-a",
            "private-ABC",
            "private-9",
            "private-12abc",
        ]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        for p in patterns {
            channels.extend(
                Pattern::parse(p).unwrap().samples(&mut rng, 20).iter().map(|c| c.as_str().to_owned()),
            );
        }
        for p in patterns {
            let pattern = Pattern::parse(p).unwrap();
            for c in &channels {
                let c = channel(c);
                assert_eq!(
                    pattern.matches(&c).map(|m| m.to_vec()),
                    pattern.matches_by_regex(&c),
                    "{p} on {}",
                    c.as_str()
                );
            }
        }
    }

    #[test]
    fn the_usual_patterns_need_no_regex() {
        let shape = |p: &str| Pattern::parse(p).unwrap().shape;
        assert!(matches!(shape("presence-lobby"), Shape::Literal(_)));
        assert!(matches!(shape("private-user-{user}"), Shape::Around { class: None, .. }));
        for p in ["private-doc-{doc:[0-9]+}", "private-org-{org:[a-z0-9-]+}-announcements"] {
            assert!(matches!(shape(p), Shape::Around { class: Some(_), .. }), "{p}");
        }
        for p in ["private-{x:[0-9]{2}}", "private-{x:\\d+}", "private-{x:[^a]+}", "private-{a:[a-z]+}-{b}"] {
            assert!(matches!(shape(p), Shape::Regex { .. }), "{p}");
        }
    }

    #[test]
    fn compile_errors() {
        for (p, needle) in [
            ("my-{x}", "must start with"),
            ("{x}", "must start with"),
            ("private-{a}-{b}", "more than one plain"),
            ("private-{a:[a-z]+}{b}", "directly"),
            ("private-{a}-{a:[0-9]+}", "twice"),
            ("private-{token}", "reserved"),
            ("private-{Bad}", "lowercase"),
            ("private-{x:(}", "invalid"),
            ("private-{x:(?P<y>a)}", "named groups"),
            ("private-{x", "never closed"),
            ("private-x}", "no matching"),
            ("private-a b-{x}", "cannot appear"),
            ("private-{x:}", "empty regex"),
            ("", "empty"),
        ] {
            let e = Pattern::parse(p).unwrap_err();
            assert!(e.0.contains(needle), "{p}: {}", e.0);
        }
    }
}
