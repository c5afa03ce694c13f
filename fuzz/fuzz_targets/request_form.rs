//! `http::request::parse_form` (the body pusher-js sends) and what the
//! handlers do with the fields: `one`, `required`, `batch_channels`, then
//! `SocketId`/`ChannelName` parsing.
//!
//! Properties: never panics; a decoded form is exactly `form_urlencoded`'s
//! pairs and holds no U+FFFD, and a form is refused only when those pairs
//! would hold one; `one` is `Some` for a field sent once and a
//! `duplicate_field` error for one sent twice; `batch_channels` returns one
//! value per `channel_name[N]` field, or a 400 reason.
#![no_main]

mod common;

use channelgate::http::request::parse_form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_form(data) {
        Ok(fields) => {
            let expected: Vec<(String, String)> =
                form_urlencoded::parse(data).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            assert_eq!(fields.pairs, expected, "parse_form differs from form_urlencoded");
            for (k, v) in &fields.pairs {
                assert!(!k.contains('\u{FFFD}') && !v.contains('\u{FFFD}'));
            }
            common::check_fields(&fields);
        }
        Err(e) => {
            assert_eq!(e.reason(), "invalid_body");
            // Refused only when a lossy decode would have put U+FFFD in.
            assert!(
                form_urlencoded::parse(data).any(|(k, v)| k.contains('\u{FFFD}') || v.contains('\u{FFFD}')),
                "parse_form refused a form form_urlencoded decodes cleanly"
            );
        }
    }
});
