//! Validated protocol identifiers: socket ids and channel names.
//!
//! Invariants:
//! - A [`SocketId`] is always `^[0-9]+\.[0-9]+$` over ASCII digits only, and at
//!   most [`SocketId::MAX_LEN`] bytes long. This is pusher-http-node's
//!   `validateSocketId` plus a length cap; unlike pusher-http-python, Unicode
//!   digits are rejected.
//! - A [`ChannelName`] is 1..=200 characters from `[A-Za-z0-9_\-=@,.;]`, the
//!   rule both official server SDKs apply. The charset is pure ASCII, so a
//!   valid name never contains `:`, `#`, whitespace or control characters,
//!   and its length in characters equals its length in bytes.
//! - Errors never echo the rejected input: it may be huge or contain control
//!   characters.

use std::fmt;

use crate::reason::Reason;

/// A socket id as Pusher issues them: ASCII digits, `.`, ASCII digits
/// (`^[0-9]+\.[0-9]+$`), nothing else — no Unicode digits, no whitespace or
/// newline, no sign — and at most [`SocketId::MAX_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketId(Box<str>);

impl SocketId {
    /// Longest accepted socket id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `s` as a socket id.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        if s.len() > Self::MAX_LEN {
            return Err(ProtocolError::InvalidSocketId);
        }
        let (left, right) = s.split_once('.').ok_or(ProtocolError::InvalidSocketId)?;
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if digits(left) && digits(right) { Ok(Self(s.into())) } else { Err(ProtocolError::InvalidSocketId) }
    }

    /// The socket id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel name: 1..=200 characters from `[A-Za-z0-9_\-=@,.;]`.
///
/// Names starting with `#` (such as `#server-to-user-<id>`, which only the
/// Channels server may subscribe a connection to) are rejected by the charset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelName {
    name: Box<str>,
    kind: ChannelKind,
}

impl ChannelName {
    /// Longest accepted channel name, in characters (and bytes).
    pub const MAX_LEN: usize = 200;

    /// Validates `s` as a channel name and classifies it by prefix.
    ///
    /// Checks in pusher-http-node's order: empty, then charset, then length.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        if s.is_empty() {
            return Err(ProtocolError::EmptyChannelName);
        }
        if !s.bytes().all(is_channel_byte) {
            return Err(ProtocolError::InvalidChannelChar);
        }
        // All bytes are ASCII here, so bytes == characters.
        if s.len() > Self::MAX_LEN {
            return Err(ProtocolError::ChannelNameTooLong);
        }
        Ok(Self { name: s.into(), kind: ChannelKind::of(s) })
    }

    /// The channel name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The channel kind, decided by the name's prefix.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The name, without copying it.
    pub fn into_string(self) -> String {
        self.name.into_string()
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `[A-Za-z0-9_\-=@,.;]`
fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// The kind of a channel, decided by its name's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// No recognised prefix; never needs (or gets) a signature.
    Public,
    /// `private-`
    Private,
    /// `presence-`
    Presence,
    /// `private-encrypted-`
    PrivateEncrypted,
}

impl ChannelKind {
    /// Classifies a channel name. `private-encrypted-` is checked before
    /// `private-`.
    fn of(name: &str) -> Self {
        [Self::PrivateEncrypted, Self::Presence, Self::Private]
            .into_iter()
            .find(|kind| name.starts_with(kind.prefix()))
            .unwrap_or(Self::Public)
    }

    /// The name prefix of this kind (`""` for [`ChannelKind::Public`]).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Public => "",
            Self::Private => "private-",
            Self::Presence => "presence-",
            Self::PrivateEncrypted => "private-encrypted-",
        }
    }

    /// A stable lowercase name: `public`, `private`, `presence`,
    /// `private-encrypted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Presence => "presence",
            Self::PrivateEncrypted => "private-encrypted",
        }
    }
}

/// A socket id or channel name failed validation. Messages never include the
/// offending input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The socket id is not `^[0-9]+\.[0-9]+$` (ASCII) or is too long.
    #[error("socket_id must be two ASCII-digit groups joined by '.'")]
    InvalidSocketId,
    /// The channel name is empty.
    #[error("channel name is empty")]
    EmptyChannelName,
    /// The channel name has a character outside `[A-Za-z0-9_\-=@,.;]`.
    #[error("channel name contains a character outside [A-Za-z0-9_-=@,.;]")]
    InvalidChannelChar,
    /// The channel name is longer than 200 characters.
    #[error("channel name is longer than 200 characters")]
    ChannelNameTooLong,
}

impl ProtocolError {
    /// A stable machine-readable code: `invalid_socket_id` or
    /// `invalid_channel_name` (for every channel-name variant).
    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidSocketId => Reason::InvalidSocketId,
            Self::EmptyChannelName | Self::InvalidChannelChar | Self::ChannelNameTooLong => {
                Reason::InvalidChannelName
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_id_table() {
        let accepted = ["1.2", "0.0", "1234.5678", "00012.00034", "999999999999999.999999999999999"];
        for s in accepted {
            let id = SocketId::parse(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"));
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), s);
        }
        let too_long = format!("{}.{}", "1".repeat(32), "2".repeat(32)); // 65 bytes
        let rejected = [
            "",
            "1234",
            "1234.",
            ".5678",
            ".",
            "abc.def",
            "1234.5678\n",
            "1234.5678\r\n",
            "\n1234.5678",
            "١٢٣.٤٥٦",
            "１.２",
            "+1.2",
            "-1.2",
            "1.2.3",
            " 1.2",
            "1.2 ",
            "1 .2",
            "1,2",
            "1:2",
            "1.2\0",
            "0x1.0x2",
            "1e3.4",
            "1.2:private-foo",
            &too_long,
        ];
        for s in rejected {
            assert_eq!(SocketId::parse(s), Err(ProtocolError::InvalidSocketId), "{s:?} accepted");
        }
        let max = format!("{}.{}", "1".repeat(32), "2".repeat(31)); // 64 bytes
        assert!(SocketId::parse(&max).is_ok());
    }

    #[test]
    fn channel_name_lengths() {
        let ok = format!("private-{}", "x".repeat(192));
        assert_eq!(ok.len(), 200);
        assert_eq!(ChannelName::parse(&ok).map(|c| c.kind()), Ok(ChannelKind::Private));
        let long = format!("private-{}", "x".repeat(193));
        assert_eq!(ChannelName::parse(&long), Err(ProtocolError::ChannelNameTooLong));
        assert_eq!(ChannelName::parse(""), Err(ProtocolError::EmptyChannelName));
        // A bad character wins over the length check, as in pusher-http-node.
        let long_bad = format!("private-{}#", "x".repeat(300));
        assert_eq!(ChannelName::parse(&long_bad), Err(ProtocolError::InvalidChannelChar));
    }

    #[test]
    fn channel_name_charset() {
        for s in [
            "private-a_b-c=d@e,f.g;h",
            "private-UPPER-lower-0123456789",
            "my-public-channel",
            "private-",
            ";",
        ] {
            let c = ChannelName::parse(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"));
            assert_eq!(c.as_str(), s);
            assert_eq!(c.to_string(), s);
        }
        for s in [
            "#server-to-user-x",
            "#server-to-user-1",
            "presence-ü",
            "private-İ",
            "éééé",
            "private-foo\0",
            "private-foo:bar",
            "private-foo\n",
            "private-foo bar",
            "private-foo/bar",
            "private-foo*",
            "private-foo%20",
            "private-foo+bar",
            "private-(x)",
            "private-foo|bar",
            "private-~x",
            "private-１",
        ] {
            assert_eq!(ChannelName::parse(s), Err(ProtocolError::InvalidChannelChar), "{s:?} accepted");
        }
    }

    #[test]
    fn channel_kinds() {
        let kind = |s: &str| ChannelName::parse(s).map(|c| c.kind());
        assert_eq!(kind("private-foo"), Ok(ChannelKind::Private));
        assert_eq!(kind("private-"), Ok(ChannelKind::Private));
        assert_eq!(kind("private-encrypted-foo"), Ok(ChannelKind::PrivateEncrypted));
        assert_eq!(kind("private-encrypted-"), Ok(ChannelKind::PrivateEncrypted));
        assert_eq!(kind("private-encrypted"), Ok(ChannelKind::Private));
        assert_eq!(kind("presence-room"), Ok(ChannelKind::Presence));
        assert_eq!(kind("presence-"), Ok(ChannelKind::Presence));
        assert_eq!(kind("presence"), Ok(ChannelKind::Public));
        assert_eq!(kind("private"), Ok(ChannelKind::Public));
        assert_eq!(kind("Private-foo"), Ok(ChannelKind::Public));
        assert_eq!(kind("my-public"), Ok(ChannelKind::Public));
        for k in
            [ChannelKind::Public, ChannelKind::Private, ChannelKind::Presence, ChannelKind::PrivateEncrypted]
        {
            if k != ChannelKind::Public {
                assert_eq!(kind(&format!("{}x", k.prefix())), Ok(k));
            }
        }
        assert_eq!(ChannelKind::Public.prefix(), "");
        assert_eq!(ChannelKind::Public.as_str(), "public");
        assert_eq!(ChannelKind::Private.as_str(), "private");
        assert_eq!(ChannelKind::Presence.as_str(), "presence");
        assert_eq!(ChannelKind::PrivateEncrypted.as_str(), "private-encrypted");
    }

    #[test]
    fn errors_have_stable_reasons_and_never_echo_input() {
        assert_eq!(ProtocolError::InvalidSocketId.reason(), "invalid_socket_id");
        for e in [
            ProtocolError::EmptyChannelName,
            ProtocolError::InvalidChannelChar,
            ProtocolError::ChannelNameTooLong,
        ] {
            assert_eq!(e.reason(), "invalid_channel_name");
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.ends_with('.'), "{msg:?}");
        }
        assert_eq!(
            ProtocolError::InvalidSocketId.to_string(),
            "socket_id must be two ASCII-digit groups joined by '.'"
        );
        let hostile = "private-\u{1b}[31mEVIL";
        let err = ChannelName::parse(hostile).unwrap_err();
        assert!(!err.to_string().contains("EVIL"));
        let err = SocketId::parse("1.2\u{1b}[31mEVIL").unwrap_err();
        assert!(!err.to_string().contains("EVIL"));
    }
}
