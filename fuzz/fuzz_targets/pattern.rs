//! `policy::pattern::Pattern::parse` and `Pattern::matches`. The input is
//! `PATTERN \0 CHANNEL`.
//!
//! Properties: never panics; a match only happens for a channel of the
//! pattern's own kind; it returns one capture per capture name, in pattern
//! order; each capture is a slice of the channel; and the pattern's literals
//! with the captures in between spell the whole channel (the pattern is
//! anchored at both ends: nothing is matched by prefix).
#![no_main]

mod common;

use channelgate::policy::pattern::Pattern;
use channelgate::pusher::ChannelName;
use libfuzzer_sys::fuzz_target;

enum Segment<'a> {
    Literal(&'a str),
    Capture,
}

/// Literals and captures of a pattern that compiled (so braces balance).
fn segments(source: &str) -> Vec<Segment<'_>> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut start) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'{' {
            if start < i {
                out.push(Segment::Literal(&source[start..i]));
            }
            let mut depth = 0;
            loop {
                match bytes[i] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            out.push(Segment::Capture);
            start = i;
        } else {
            i += 1;
        }
    }
    if start < bytes.len() {
        out.push(Segment::Literal(&source[start..]));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let parts = common::fields(data, 2);
    let source = common::text(parts[0]);
    let Ok(pattern) = Pattern::parse(&source) else { return };
    assert_eq!(pattern.as_str(), source);
    assert!(source.starts_with(pattern.kind().prefix()));

    let channel_text = common::text(parts[1]);
    let mut channels: Vec<ChannelName> = ChannelName::parse(&channel_text).into_iter().collect();
    // A few channels of each kind, so patterns are also tried against
    // names they must not match.
    for c in ["private-x", "private-encrypted-x", "presence-x", "x", "private-user-alice"] {
        channels.extend(ChannelName::parse(c));
    }
    for channel in &channels {
        let Some(captures) = pattern.matches(channel) else { continue };
        assert_eq!(channel.kind(), pattern.kind(), "{source:?} matched {channel}");
        let names: Vec<&str> = captures.iter().map(|(n, _)| *n).collect();
        let expected: Vec<&str> = pattern.capture_names().iter().map(String::as_str).collect();
        assert_eq!(names, expected);
        let whole = channel.as_str();
        let range = whole.as_ptr() as usize..whole.as_ptr() as usize + whole.len() + 1;
        for (_, value) in &captures {
            assert!(range.contains(&(value.as_ptr() as usize)), "capture is not a slice of the channel");
        }
        let mut values = captures.iter().map(|(_, v)| *v);
        let mut spelled = String::new();
        for segment in segments(&source) {
            match segment {
                Segment::Literal(l) => spelled.push_str(l),
                Segment::Capture => spelled.push_str(values.next().expect("a capture per segment")),
            }
        }
        assert_eq!(spelled, whole, "{source:?} matched {whole:?} not as a whole");
    }
});
