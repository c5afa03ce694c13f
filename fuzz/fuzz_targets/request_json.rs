//! `http::request::parse_json` (a JSON auth request body) and the field
//! accessors the handlers use.
//!
//! Properties: never panics; a 400 says `invalid_body` or `invalid_field`;
//! a decoded body holds at most 256 fields, and agrees with serde_json's own
//! reading of the object: every string member is there (the last of
//! duplicated members wins in serde_json, and is the last pair here), and
//! every pair's name is a member.
#![no_main]

mod common;

use channelgate::http::request::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reference = serde_json::from_slice::<serde_json::Value>(data).ok();
    match parse_json(data) {
        Ok(fields) => {
            assert!(fields.pairs.len() <= 256);
            let Some(serde_json::Value::Object(object)) = reference else {
                panic!("parse_json accepted a body serde_json does not read as an object");
            };
            for (k, _) in &fields.pairs {
                assert!(object.contains_key(k), "pair {k:?} is not a member");
            }
            for (k, v) in &object {
                if let serde_json::Value::String(s) = v {
                    let last = fields.pairs.iter().rev().find(|(name, _)| name == k).map(|(_, v)| v);
                    assert_eq!(last, Some(s), "member {k:?}");
                }
            }
            common::check_fields(&fields);
        }
        Err(e) => {
            assert!(matches!(e.reason().as_str(), "invalid_body" | "invalid_field"), "{}", e.reason());
            if e.reason() == "invalid_field" {
                let Some(serde_json::Value::Object(object)) = reference else {
                    panic!("invalid_field for a body that is not an object");
                };
                assert!(object.keys().any(|k| k == "socket_id"
                    || k == "channel_name"
                    || k.starts_with("channel_name[")));
            }
        }
    }
});
