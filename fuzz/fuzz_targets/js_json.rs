//! `pusher::js_json` (JSON.stringify-exact serialization of presence
//! `channel_data` and user `user_data`).
//!
//! Properties: never panics; the output of `to_string` is compact JSON that
//! parses back to an equal value (numbers compared as f64, objects as maps:
//! the documented "modulo number precision beyond f64 and key order"), and
//! serializing that value again gives the same bytes (a fixed point);
//! `write_str` of any string parses back to that string.
#![no_main]

mod common;

use channelgate::pusher::js_json;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64(), y.as_f64());
            x == y || (x.is_some_and(f64::is_nan) && y.is_some_and(f64::is_nan))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let s = common::text(data);
    let mut quoted = String::new();
    js_json::write_str(&mut quoted, &s);
    let back: String = serde_json::from_str(&quoted).expect("write_str output is a JSON string");
    assert_eq!(back, s);

    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let out = js_json::to_string(&value);
        let parsed: Value = match serde_json::from_str(&out) {
            Ok(v) => v,
            Err(e) => panic!("to_string output is not JSON ({e}): {out:?}"),
        };
        assert!(same(&value, &parsed), "round trip changed the value: {out:?}");
        assert_eq!(js_json::to_string(&parsed), out, "not a fixed point");
        let no_space_outside_strings = {
            let mut in_str = false;
            let mut esc = false;
            out.chars().all(|c| {
                if in_str {
                    if esc {
                        esc = false;
                    } else if c == '\\' {
                        esc = true;
                    } else if c == '"' {
                        in_str = false;
                    }
                    true
                } else {
                    if c == '"' {
                        in_str = true;
                    }
                    !c.is_whitespace()
                }
            })
        };
        assert!(no_space_outside_strings, "whitespace in {out:?}");
    }
});
