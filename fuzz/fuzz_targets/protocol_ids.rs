//! `pusher::SocketId::parse` and `pusher::ChannelName::parse`, checked
//! against plain reference implementations of the documented rules:
//! a socket id is ASCII digits `.` ASCII digits, at most 64 bytes; a channel
//! name is 1..=200 characters of `[A-Za-z0-9_\-=@,.;]`, and its kind is
//! decided by the prefix (`private-encrypted-` before `private-`).
#![no_main]

mod common;

use channelgate::pusher::{ChannelKind, ChannelName, SocketId};
use libfuzzer_sys::fuzz_target;

fn socket_id_ok(s: &str) -> bool {
    let Some((l, r)) = s.split_once('.') else { return false };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    s.len() <= 64 && digits(l) && digits(r)
}

fn channel_ok(s: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c);
    (1..=200).contains(&s.chars().count()) && s.chars().all(allowed)
}

fn kind_of(s: &str) -> ChannelKind {
    if s.starts_with("private-encrypted-") {
        ChannelKind::PrivateEncrypted
    } else if s.starts_with("private-") {
        ChannelKind::Private
    } else if s.starts_with("presence-") {
        ChannelKind::Presence
    } else {
        ChannelKind::Public
    }
}

fuzz_target!(|data: &[u8]| {
    let s = common::text(data);
    match SocketId::parse(&s) {
        Ok(id) => {
            assert!(socket_id_ok(&s), "accepted socket id {s:?}");
            assert_eq!(id.as_str(), s);
            assert!(!id.as_str().contains([':', '\n', '\r']));
        }
        Err(e) => {
            assert!(!socket_id_ok(&s), "refused socket id {s:?}");
            assert_eq!(e.reason(), "invalid_socket_id");
        }
    }
    match ChannelName::parse(&s) {
        Ok(c) => {
            assert!(channel_ok(&s), "accepted channel {s:?}");
            assert_eq!(c.as_str(), s);
            assert_eq!(c.kind(), kind_of(&s));
            assert!(c.as_str().starts_with(c.kind().prefix()));
        }
        Err(e) => {
            assert!(!channel_ok(&s), "refused channel {s:?}");
            assert_eq!(e.reason(), "invalid_channel_name");
        }
    }
});
