//! The Pusher Channels authorization protocol: input validation, signatures
//! and the exact JSON bytes the official Node SDK (pusher-http-node) returns.
//!
//! Invariants:
//! - Only validated inputs ([`SocketId`], [`ChannelName`]) reach the signer,
//!   so nothing that could smuggle a `:` separator or a control character is
//!   ever signed.
//! - The string that is signed and the string returned to the client are
//!   byte-identical (PROTOCOL.md 2.6): callers serialize presence and user data
//!   once with [`js_json`] and pass that same string to the signer.
//! - Secrets (app secret, encryption master key) never appear in `Debug`
//!   output or error messages.

pub mod crypto;
pub mod js_json;
pub mod protocol;
pub mod rest;
pub mod sign;

pub use protocol::{ChannelKind, ChannelName, ProtocolError, SocketId};
pub use sign::{ChannelAuth, MasterKey, MasterKeyError, SignError, Signer, UserAuth};
pub(crate) use sign::{HmacSha256, hmac_sha256};
