//! JSON serialization that reproduces JavaScript's `JSON.stringify` byte for
//! byte, for [`serde_json::Value`].
//!
//! pusher-http-node serializes presence `channel_data` and user-auth
//! `user_data` with `JSON.stringify`; to produce the same strings (and so the
//! same signatures) we emulate it exactly (PROTOCOL.md 2.6):
//!
//! - no whitespace at all;
//! - strings: only `"`, `\` and U+0000–U+001F are escaped (`\b \t \n \f \r`
//!   short forms, otherwise `\u00XX` with lowercase hex); everything else,
//!   including non-ASCII, U+2028/U+2029 and U+007F, is written raw;
//! - object keys in JavaScript property order: array-index keys (canonical
//!   decimal, below 2^32 − 1) first in ascending numeric order, then the other
//!   keys in insertion order (serde_json's `preserve_order` keeps it);
//! - numbers as JavaScript's `Number.prototype.toString` prints the f64 value
//!   (via `ryu_js`); non-finite values (which a `Value` cannot normally hold)
//!   become `null`, as in JavaScript.
//!
//! Invariant: the output is valid JSON that parses back to an equal value
//! (modulo number precision beyond f64 and key order).
//!
//! Serialization recurses once per nesting level; values parsed by
//! serde_json are limited to depth 128, so the stack stays small.

use serde_json::{Map, Number, Value};

/// Serializes `value` exactly as JavaScript's `JSON.stringify(value)` would.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value);
    out
}

/// Appends `value` to `out` as [`to_string`] writes it.
pub fn write(out: &mut String, value: &Value) {
    write_value(out, value);
}

/// Appends `s` as a quoted JSON string, escaped as `JSON.stringify` escapes
/// it.
pub fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    // Most strings need no escape: one scan of eight bytes at a time tells.
    if !crate::scan::needs_json_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        // Every byte that needs escaping is ASCII, so `i` is a char boundary.
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_number(out: &mut String, n: &Number) {
    match n.as_f64() {
        Some(f) if f.is_finite() => {
            if f == 0.0 {
                // JavaScript prints -0 as "0".
                out.push('0');
            } else {
                out.push_str(ryu_js::Buffer::new().format_finite(f));
            }
        }
        _ => out.push_str("null"),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    // JS property order: array indices ascending, then insertion order.
    let mut indexed: Vec<(u32, &String, &Value)> = Vec::new();
    let mut named: Vec<(&String, &Value)> = Vec::with_capacity(map.len());
    for (key, value) in map {
        match array_index(key) {
            Some(idx) => indexed.push((idx, key, value)),
            None => named.push((key, value)),
        }
    }
    indexed.sort_by_key(|&(idx, _, _)| idx);
    out.push('{');
    let entries = indexed.into_iter().map(|(_, k, v)| (k, v)).chain(named);
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// The numeric value of `key` if JavaScript treats it as an array index:
/// canonical decimal (no sign, no leading zeros except `"0"` itself) and
/// below 2^32 − 1.
fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    if n < u64::from(u32::MAX) { u32::try_from(n).ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn js(text: &str) -> String {
        to_string(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn compact_and_raw_unicode() {
        assert_eq!(js(r#"{"user_id": "José", "user_info": null}"#), r#"{"user_id":"José","user_info":null}"#);
        assert_eq!(js(r#"[1, [2, [3]], {}, [], true, false]"#), r#"[1,[2,[3]],{},[],true,false]"#);
        assert_eq!(js(r#""😀 日本 ключ""#), "\"😀 日本 ключ\"");
    }

    #[test]
    fn string_escapes() {
        let mut out = String::new();
        write_str(
            &mut out,
            "q\"b\\s/<>&\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{1}\u{7f}\u{2028}\u{2029}\u{feff}\u{a0}é",
        );
        assert_eq!(
            out,
            "\"q\\\"b\\\\s/<>&\\b\\f\\n\\r\\t\\u0000\\u001f\\u0001\u{7f}\u{2028}\u{2029}\u{feff}\u{a0}é\""
        );
        let mut out = String::new();
        write_str(&mut out, "");
        assert_eq!(out, "\"\"");
        let mut out = String::from("x");
        write_str(&mut out, "\u{1a}");
        assert_eq!(out, "x\"\\u001a\"");
    }

    #[test]
    fn key_order_is_js_property_order() {
        assert_eq!(
            js(r#"{"10": "x", "2": "y", "a": "z", "1": "w"}"#),
            r#"{"1":"w","2":"y","10":"x","a":"z"}"#
        );
        assert_eq!(js(r#"{"b": 1, "a": 2}"#), r#"{"b":1,"a":2}"#);
        // Not array indices: leading zero, sign, too big (2^32 - 1), spaces.
        assert_eq!(
            js(r#"{"z": 0, "01": 1, "-1": 2, "4294967295": 3, "4294967294": 4, " 1": 5, "0": 6, "1.5": 7}"#),
            r#"{"0":6,"4294967294":4,"z":0,"01":1,"-1":2,"4294967295":3," 1":5,"1.5":7}"#
        );
        assert_eq!(js(r#"{"": 1, "x": {"3": 1, "b": 2, "2": 3}}"#), r#"{"":1,"x":{"2":3,"3":1,"b":2}}"#);
    }

    #[test]
    fn array_index_rule() {
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("4294967294"), Some(4_294_967_294));
        assert_eq!(array_index("4294967295"), None);
        assert_eq!(array_index("99999999999"), None);
        assert_eq!(array_index("00"), None);
        assert_eq!(array_index("+1"), None);
        assert_eq!(array_index("１"), None);
        assert_eq!(array_index(""), None);
    }

    #[test]
    fn numbers_as_javascript_prints_them() {
        assert_eq!(
            js("[1.0, 1, -0.5, 1e-7, 2.5e-5, 1e21, 1e+21, 1.5, 10, -7, 0, -0, -0.0, 12345678901, 1e20]"),
            "[1,1,-0.5,1e-7,0.000025,1e+21,1e+21,1.5,10,-7,0,0,0,12345678901,100000000000000000000]"
        );
        assert_eq!(to_string(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(to_string(&json!(i64::MIN)), "-9223372036854776000");
        assert_eq!(to_string(&json!(0.1)), "0.1");
        assert_eq!(to_string(&json!(5e-324)), "5e-324");
        assert_eq!(to_string(&json!(1.2345678901234568e20)), "123456789012345680000");
        assert_eq!(to_string(&json!(1.7976931348623157e308)), "1.7976931348623157e+308");
    }

    /// Without serde_json's `float_roundtrip` feature, `from_str` may parse a
    /// decimal to a neighbouring f64 (1 ulp off), and the output then differs
    /// from what Node produces for the same JSON text.
    #[test]
    fn parsed_floats_round_trip_exactly() {
        assert_eq!(js("123456789012345680000"), "123456789012345680000");
        assert_eq!(
            js("[0.30000000000000004, 2.2250738585072014e-308]"),
            "[0.30000000000000004,2.2250738585072014e-308]"
        );
    }

    #[test]
    fn round_trips() {
        let v = json!({"user_id": "a\"\\\n\u{0}é😀", "user_info": {"n": [1.5, null, {"k": true}]}});
        let back: Value = serde_json::from_str(&to_string(&v)).unwrap();
        assert_eq!(back, v);
    }
}
