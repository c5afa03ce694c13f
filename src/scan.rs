//! Byte scans of the request path, eight bytes at a time.
//!
//! The texts scanned per request are short (form parts, channel and rule
//! names, audit fields: below where a vectorized loop starts) or long but
//! checked for a few byte classes only (the bearer token). A byte loop costs
//! five to nine instructions a byte there; these scans test a word (u64,
//! SWAR) in about two a byte, without early exit, and finish the last
//! 0–7 bytes one at a time. Each function answers exactly what its byte
//! predicate (`*_byte`) answers for every byte, which the tests check
//! exhaustively over every byte value at every offset.
//!
//! The word tests rely on one identity: `(w - ONES·n) & !w & HIGH` is non-zero
//! exactly when some byte of `w` is below `n` (for n ≤ 0x80): the lowest
//! such byte borrows and has its top bit clear; with no such byte nothing
//! borrows and no byte can be both ≥ 0x80 + n and below 0x80. With n = 1
//! it finds a zero byte, and `w ^ ONES·b` has a zero byte where `w` has `b`.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Non-zero when a byte of `w` is below `n` (n ≤ 0x80).
fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH
}

/// Non-zero when a byte of `w` is `b`.
fn has(w: u64, b: u8) -> u64 {
    below(w ^ (ONES * u64::from(b)), 1)
}

/// Whether some byte of `bytes` is in the class: `word` tests eight bytes,
/// `byte` one.
fn any(bytes: &[u8], word: impl Fn(u64) -> u64, byte: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        let mut w = [0; 8];
        w.copy_from_slice(chunk);
        found |= word(u64::from_le_bytes(w));
    }
    found != 0 || chunks.remainder().iter().any(|&b| byte(b))
}

fn json_escape_byte(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether a JSON string of `bytes` needs an escape: `"`, `\` or a byte
/// below U+0020.
pub(crate) fn needs_json_escape(bytes: &[u8]) -> bool {
    any(bytes, |w| below(w, 0x20) | has(w, b'"') | has(w, b'\\'), json_escape_byte)
}

fn form_coded_byte(b: u8) -> bool {
    b >= 0x80 || b == b'%' || b == b'+'
}

/// Whether a form part needs more than a copy: a `%`, a `+` or a byte
/// outside ASCII.
pub(crate) fn form_coded(bytes: &[u8]) -> bool {
    any(bytes, |w| (w & HIGH) | has(w, b'%') | has(w, b'+'), form_coded_byte)
}

fn outside_visible_byte(b: u8) -> bool {
    !(0x20..0x7f).contains(&b)
}

/// Whether a byte is outside visible ASCII and the space (0x20–0x7e).
/// A tab is outside too: callers that accept tabs look again.
pub(crate) fn outside_visible(bytes: &[u8]) -> bool {
    any(bytes, |w| below(w, 0x20) | (w & HIGH) | has(w, 0x7f), outside_visible_byte)
}

fn blank_byte(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether `bytes` holds a space or a tab.
pub(crate) fn has_blank(bytes: &[u8]) -> bool {
    any(bytes, |w| has(w, b' ') | has(w, b'\t'), blank_byte)
}

/// `a == b`, a word at a time. `==` on slices calls libc's `bcmp`, whose
/// call and setup cost more than comparing a channel name's dozen bytes
/// (perf: 5 % of a batch's CPU, rule prefixes and metric labels).
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0;
    for (x, y) in (&mut wa).zip(&mut wb) {
        diff |= word(x) ^ word(y);
    }
    diff |= tail(wa.remainder()) ^ tail(wb.remainder());
    diff == 0
}

/// `s` starts with `prefix` ([`eq`]).
pub(crate) fn starts_with(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len()).is_some_and(|head| eq(head, prefix))
}

/// `s` ends with `suffix` ([`eq`]).
pub(crate) fn ends_with(s: &[u8], suffix: &[u8]) -> bool {
    s.len().checked_sub(suffix.len()).and_then(|at| s.get(at..)).is_some_and(|end| eq(end, suffix))
}

fn word(chunk: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(chunk);
    u64::from_le_bytes(w)
}

/// The last 0–7 bytes as a word (a byte loop: a short copy would be a
/// `memcpy` call).
fn tail(bytes: &[u8]) -> u64 {
    bytes.iter().enumerate().fold(0, |w, (i, &b)| w | (u64::from(b) << (8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every offset of texts up to 24 bytes long, over
    /// backgrounds inside and outside each class (borrows, high bytes).
    fn exhaustive(scan: fn(&[u8]) -> bool, byte: fn(u8) -> bool) {
        for background in [b'a', b' ', b'\t', 0x00, 0x1f, 0x21, 0x7e, 0x7f, 0x80, 0xff, b'%', b'"', b'\\'] {
            for len in 0..24 {
                let mut bytes = vec![background; len];
                let naive = |b: &[u8]| b.iter().any(|&b| byte(b));
                assert_eq!(scan(&bytes), naive(&bytes), "{background:#x} x {len}");
                for at in 0..len {
                    for b in 0..=255u8 {
                        bytes[at] = b;
                        assert_eq!(scan(&bytes), naive(&bytes), "{background:#x} x {len}, {b:#x} at {at}");
                    }
                    bytes[at] = background;
                }
            }
        }
    }

    /// Random texts drawn from the boundary bytes, so that several bytes of
    /// a word interact (borrows from one byte into the next).
    fn random(scan: fn(&[u8]) -> bool, byte: fn(u8) -> bool) {
        const PICK: [u8; 16] =
            [0x00, 0x01, 0x09, 0x1f, 0x20, 0x21, 0x22, 0x25, 0x2b, 0x5c, 0x5d, 0x7e, 0x7f, 0x80, 0xa0, 0xff];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let len = (next() % 20) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|_| if next() % 4 == 0 { PICK[(next() % 16) as usize] } else { b'a' }).collect();
            assert_eq!(scan(&bytes), bytes.iter().any(|&b| byte(b)), "{bytes:?}");
        }
    }

    #[test]
    fn word_comparisons_answer_as_slices_do() {
        let texts: Vec<Vec<u8>> = (0..20)
            .flat_map(|len| {
                let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                let mut variants = vec![base.clone()];
                for at in 0..len {
                    for b in [0u8, b'b', 0x80, 0xff] {
                        let mut v = base.clone();
                        v[at] = b;
                        variants.push(v);
                    }
                }
                variants
            })
            .collect();
        for a in &texts {
            for b in &texts {
                assert_eq!(eq(a, b), a == b, "{a:?} {b:?}");
                assert_eq!(starts_with(a, b), a.starts_with(b), "{a:?} {b:?}");
                assert_eq!(ends_with(a, b), a.ends_with(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn each_scan_answers_as_its_byte_test() {
        random(needs_json_escape, json_escape_byte);
        random(form_coded, form_coded_byte);
        random(outside_visible, outside_visible_byte);
        random(has_blank, blank_byte);
        exhaustive(needs_json_escape, json_escape_byte);
        exhaustive(form_coded, form_coded_byte);
        exhaustive(outside_visible, outside_visible_byte);
        exhaustive(has_blank, blank_byte);
    }
}
