//! Pusher channel-authorization and user-authentication signatures, and the
//! response bodies pusher-http-node returns for them (PROTOCOL.md 2.1–2.5).
//!
//! Invariants:
//! - `auth` is always `"<app key>:<lowercase hex HMAC-SHA256(secret, message)>"`
//!   where the message is `"<socket>:<channel>[:<channel_data>]"` or
//!   `"<socket>::user::<user_data>"`, over exactly the bytes returned in the
//!   response.
//! - Public channels are never signed; `private-encrypted-` channels are only
//!   authorized when a master key is configured, and always get a
//!   `shared_secret`.
//! - Neither the app secret nor the master key ever appears in `Debug` output
//!   or an error message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::js_json::write_str;
use super::protocol::{ChannelKind, ChannelName, SocketId};
use crate::secret::Secret;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The 32-byte encryption master key used to derive the `shared_secret` of
/// `private-encrypted-` channels. `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct MasterKey(Secret);

impl MasterKey {
    /// Length of the key in bytes.
    pub const LEN: usize = 32;

    /// Parses the key from standard base64 with padding (url-safe and
    /// unpadded forms are rejected, as by the official SDKs). It must decode to
    /// exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD.decode(s.as_bytes()).map_err(|_| MasterKeyError::InvalidBase64)?;
        if bytes.len() != Self::LEN {
            return Err(MasterKeyError::WrongLength(bytes.len()));
        }
        Ok(Self(Secret::new(bytes)))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Secret::new(b.to_vec()))
    }

    /// Whether both are the same key (constant time).
    pub fn same_key(&self, other: &MasterKey) -> bool {
        self.0.ct_eq(other.0.expose())
    }

    /// `base64(SHA-256(channel_name_utf8 || master_key))`, standard alphabet
    /// with padding.
    fn shared_secret(&self, channel: &ChannelName) -> String {
        STANDARD.encode(self.shared_secret_bytes(channel.as_str()))
    }

    /// The raw 32-byte shared secret of a channel (the NaCl secretbox key
    /// for its events). Takes the name as text so `#`-free channel names
    /// from the REST API can be used too.
    pub fn shared_secret_bytes(&self, channel: &str) -> [u8; 32] {
        Sha256::new().chain_update(channel.as_bytes()).chain_update(self.0.expose()).finalize().into()
    }
}

/// The encryption master key could not be parsed. Messages never include the
/// key.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasterKeyError {
    /// Not standard base64 with padding.
    #[error("encryption master key must be standard base64 with padding")]
    InvalidBase64,
    /// Valid base64 that decodes to the given number of bytes instead of 32.
    #[error("encryption master key must decode to 32 bytes, got {0}")]
    WrongLength(usize),
}

/// A channel could not be authorized.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    /// Public channels need no authorization and are never signed.
    #[error("public channels are not signed")]
    PublicChannel,
    /// A `private-encrypted-` channel needs a master key and none is set.
    #[error("encrypted channel requested but no encryption master key is configured")]
    NoMasterKey,
}

/// Signs channel authorizations and user authentications for one Pusher app.
/// `Debug` shows the app key but never the secret or master key.
#[derive(Clone, Debug)]
pub struct Signer {
    app_key: String,
    /// HMAC-SHA256 already keyed with the app secret (the key's inner and
    /// outer blocks hashed once, not per signature).
    mac: KeyedMac,
    master_key: Option<MasterKey>,
}

/// A keyed HMAC state; `Debug` shows nothing of it.
#[derive(Clone)]
struct KeyedMac(HmacSha256);

impl std::fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedMac(..)")
    }
}

impl Signer {
    /// A signer for the app with this key and secret, optionally able to
    /// authorize `private-encrypted-` channels.
    pub fn new(app_key: impl Into<String>, secret: Secret, master_key: Option<MasterKey>) -> Self {
        Self { app_key: app_key.into(), mac: KeyedMac(hmac_sha256(secret.expose())), master_key }
    }

    /// The app key (the part of `auth` before the `:`).
    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    /// The encryption master key, if configured.
    pub fn master_key(&self) -> Option<&MasterKey> {
        self.master_key.as_ref()
    }

    /// Whether a master key is configured (encrypted channels enabled).
    pub fn has_master_key(&self) -> bool {
        self.master_key.is_some()
    }

    /// Lowercase-hex HMAC-SHA256 of `message` keyed with the app secret.
    pub fn hmac_hex(&self, message: &[u8]) -> String {
        let mut mac = self.mac.0.clone();
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    /// `"<app key>:<hmac hex>"` of the message made of `parts` one after
    /// the other (so the message is never assembled in memory).
    fn auth_for(&self, parts: &[&str]) -> String {
        let mut mac = self.mac.0.clone();
        for part in parts {
            mac.update(part.as_bytes());
        }
        let mut hex_digest = [0u8; 64];
        let mut out = String::with_capacity(self.app_key.len() + 1 + hex_digest.len());
        out.push_str(&self.app_key);
        out.push(':');
        // 32 bytes always fit in 64 hex digits, which are ASCII.
        if hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex_digest).is_ok()
            && let Ok(digits) = std::str::from_utf8(&hex_digest)
        {
            out.push_str(digits);
        }
        out
    }

    /// Channel authorization. `channel_data` is the exact, already serialized
    /// presence data string (or `None`); it is signed and returned verbatim.
    ///
    /// Signs `"<socket>:<channel>"` or `"<socket>:<channel>:<channel_data>"`.
    /// `private-encrypted-` channels also get `shared_secret`
    /// (`base64(SHA-256(channel_name || master_key))`).
    ///
    /// # Errors
    /// [`SignError::PublicChannel`] for public channels;
    /// [`SignError::NoMasterKey`] for an encrypted channel without a master
    /// key.
    pub fn authorize_channel(
        &self,
        socket: &SocketId,
        channel: &ChannelName,
        channel_data: Option<&str>,
    ) -> Result<ChannelAuth, SignError> {
        let shared_secret = match channel.kind() {
            ChannelKind::Public => return Err(SignError::PublicChannel),
            ChannelKind::Private | ChannelKind::Presence => None,
            ChannelKind::PrivateEncrypted => {
                Some(self.master_key.as_ref().ok_or(SignError::NoMasterKey)?.shared_secret(channel))
            }
        };
        let auth = match channel_data {
            Some(data) => self.auth_for(&[socket.as_str(), ":", channel.as_str(), ":", data]),
            None => self.auth_for(&[socket.as_str(), ":", channel.as_str()]),
        };
        Ok(ChannelAuth { auth, channel_data: channel_data.map(str::to_owned), shared_secret })
    }

    /// User authentication (`pusher.signin()`): signs
    /// `"<socket>::user::<user_data>"`. `user_data` is the exact serialized
    /// string returned to the client.
    pub fn authenticate_user(&self, socket: &SocketId, user_data: &str) -> UserAuth {
        UserAuth {
            auth: self.auth_for(&[socket.as_str(), "::user::", user_data]),
            user_data: user_data.to_owned(),
        }
    }
}

/// HMAC-SHA256 keyed with `key`, built without a fallible constructor: the
/// key is normalized to one block exactly as RFC 2104 does (hashed if longer
/// than the block, then zero-padded), which leaves the MAC unchanged.
pub(crate) fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    let mut block = Key::<HmacSha256>::default();
    if key.len() > block.len() {
        let digest = Sha256::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as KeyInit>::new(&block)
}

/// A successful channel authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelAuth {
    /// `"<app key>:<hex signature>"`.
    pub auth: String,
    /// The signed presence data string, returned verbatim.
    pub channel_data: Option<String>,
    /// For `private-encrypted-` channels: the per-channel key, base64.
    pub shared_secret: Option<String>,
}

impl ChannelAuth {
    /// The response body exactly as pusher-http-node serializes it: keys
    /// `channel_data` (if any), `auth`, `shared_secret` (if any); compact;
    /// strings escaped as `JSON.stringify` does.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(
            96 + self.channel_data.as_ref().map_or(0, |d| d.len() + 24)
                + self.shared_secret.as_ref().map_or(0, |s| s.len() + 20),
        );
        out.push('{');
        if let Some(data) = &self.channel_data {
            out.push_str("\"channel_data\":");
            write_str(&mut out, data);
            out.push(',');
        }
        out.push_str("\"auth\":");
        write_str(&mut out, &self.auth);
        if let Some(secret) = &self.shared_secret {
            out.push_str(",\"shared_secret\":");
            write_str(&mut out, secret);
        }
        out.push('}');
        out
    }
}

/// A successful user authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAuth {
    /// `"<app key>:<hex signature>"`.
    pub auth: String,
    /// The signed user data string, returned verbatim.
    pub user_data: String,
}

impl UserAuth {
    /// The response body as pusher-http-node serializes it:
    /// `{"auth":…,"user_data":…}`, compact.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.auth.len() + self.user_data.len() + 40);
        out.push_str("{\"auth\":");
        write_str(&mut out, &self.auth);
        out.push_str(",\"user_data\":");
        write_str(&mut out, &self.user_data);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key_bytes() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn signer(master: bool) -> Signer {
        Signer::new(
            "test-key",
            Secret::new("test-secret-0123456789"),
            master.then(|| MasterKey::from_bytes(key_bytes())),
        )
    }

    fn sock(s: &str) -> SocketId {
        SocketId::parse(s).unwrap()
    }

    fn chan(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    #[test]
    fn hmac_matches_fallible_constructor_for_all_key_lengths() {
        for len in [0, 1, 22, 32, 63, 64, 65, 100, 200] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut reference = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
            reference.update(b"message");
            let mut ours = hmac_sha256(&key);
            ours.update(b"message");
            assert_eq!(ours.finalize().into_bytes(), reference.finalize().into_bytes(), "{len}");
        }
    }

    #[test]
    fn private_channel_example() {
        let auth = signer(false).authorize_channel(&sock("1234.5678"), &chan("private-foo"), None).unwrap();
        assert_eq!(auth.auth, "test-key:7384e3cac0110d1ef3cab96a31c10758077632f958a15213e51840084412ae36");
        assert_eq!(
            auth.to_json(),
            "{\"auth\":\"test-key:7384e3cac0110d1ef3cab96a31c10758077632f958a15213e51840084412ae36\"}"
        );
    }

    #[test]
    fn encrypted_channel_example() {
        let auth =
            signer(true).authorize_channel(&sock("1234.5678"), &chan("private-encrypted-foo"), None).unwrap();
        assert_eq!(auth.shared_secret.as_deref(), Some("E3I6KxLwqP1Rr/p1676Vpnrw23CkRdS5bkX5NazRkeY="));
        assert_eq!(
            auth.to_json(),
            "{\"auth\":\"test-key:b8a4d6146bb201e51fd922224d8610b47c74673ad40083de4c2201be08ce53ee\",\
             \"shared_secret\":\"E3I6KxLwqP1Rr/p1676Vpnrw23CkRdS5bkX5NazRkeY=\"}"
        );
    }

    #[test]
    fn refusals() {
        let s = sock("1.1");
        assert_eq!(
            signer(true).authorize_channel(&s, &chan("my-public-channel"), None),
            Err(SignError::PublicChannel)
        );
        assert_eq!(
            signer(false).authorize_channel(&s, &chan("private-encrypted-foo"), None),
            Err(SignError::NoMasterKey)
        );
        assert!(!signer(false).has_master_key());
        assert!(signer(true).has_master_key());
        assert_eq!(signer(true).app_key(), "test-key");
    }

    #[test]
    fn channel_data_and_user_data_are_signed_and_escaped() {
        let s = signer(false);
        let auth = s.authorize_channel(&sock("1.1"), &chan("presence-x"), Some("{}")).unwrap();
        assert_eq!(auth.auth, format!("test-key:{}", s.hmac_hex(b"1.1:presence-x:{}")));
        assert_eq!(auth.to_json(), format!("{{\"channel_data\":\"{{}}\",\"auth\":\"{}\"}}", auth.auth));
        let user = s.authenticate_user(&sock("1.1"), "{\"id\":\"a\"}");
        assert_eq!(user.auth, format!("test-key:{}", s.hmac_hex(b"1.1::user::{\"id\":\"a\"}")));
        assert_eq!(
            user.to_json(),
            format!("{{\"auth\":\"{}\",\"user_data\":\"{{\\\"id\\\":\\\"a\\\"}}\"}}", user.auth)
        );
    }

    #[test]
    fn master_key_validation() {
        // vectors.json master_key_validation, base64 cases.
        let k = MasterKey::from_base64(KEY_B64).unwrap();
        assert_eq!(k.0.expose(), key_bytes());
        let b31 = STANDARD.encode(&key_bytes()[..31]);
        assert_eq!(MasterKey::from_base64(&b31).unwrap_err(), MasterKeyError::WrongLength(31));
        let b33 = STANDARD.encode([7u8; 33]);
        assert_eq!(MasterKey::from_base64(&b33).unwrap_err(), MasterKeyError::WrongLength(33));
        assert_eq!(MasterKey::from_base64("").unwrap_err(), MasterKeyError::WrongLength(0));
        let unpadded = KEY_B64.trim_end_matches('=');
        assert_eq!(MasterKey::from_base64(unpadded).unwrap_err(), MasterKeyError::InvalidBase64);
        let std_ff = STANDARD.encode([0xffu8; 32]);
        assert!(MasterKey::from_base64(&std_ff).is_ok());
        let urlsafe = std_ff.replace('/', "_").replace('+', "-");
        assert_ne!(urlsafe, std_ff);
        assert_eq!(MasterKey::from_base64(&urlsafe).unwrap_err(), MasterKeyError::InvalidBase64);
        for bad in [" AAEC", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "!!!!"] {
            assert_eq!(MasterKey::from_base64(bad).unwrap_err(), MasterKeyError::InvalidBase64);
        }
        // Messages never include the key.
        let err = MasterKey::from_base64(&b31).unwrap_err();
        assert!(!err.to_string().contains(&b31[..8]));
        assert_eq!(err.to_string(), "encryption master key must decode to 32 bytes, got 31");
        assert_eq!(
            MasterKeyError::InvalidBase64.to_string(),
            "encryption master key must be standard base64 with padding"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let bytes = [0xabu8; 32];
        let key = MasterKey::from_bytes(bytes);
        let s = Signer::new("the-app-key", Secret::new("hunter2-very-secret"), Some(key.clone()));
        for dbg in [format!("{s:?}"), format!("{key:?}"), format!("{s:#?}")] {
            assert!(!dbg.contains("hunter2"), "{dbg}");
            assert!(!dbg.contains("171"), "{dbg}"); // 0xab as a decimal byte
            assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
            assert!(!dbg.contains("q6ur"), "{dbg}"); // base64 of 0xab bytes
        }
        assert!(format!("{s:?}").contains("the-app-key"));
    }
}
