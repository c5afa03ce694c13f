//! End-to-end encrypted event payloads (PROTOCOL.md §5): NaCl secretbox
//! (XSalsa20-Poly1305) with the channel's shared secret as key, the way the
//! official SDKs encrypt, so pusher-js decrypts them with the
//! `shared_secret` channelgate handed out; and opening the payloads an
//! official server SDK sealed (with a publish client's local master key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{Aead, KeyInit};

use super::js_json;

/// Encrypts `plaintext` for a channel whose shared secret is `key`, with
/// `nonce`, and returns the event's `data` string:
/// `{"nonce":"<b64>","ciphertext":"<b64>"}` (compact, as pusher-http-node).
pub fn encrypt_with_nonce(key: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8]) -> Option<String> {
    let cipher = XSalsa20Poly1305::new(key.into());
    let ciphertext = cipher.encrypt(nonce.into(), plaintext).ok()?;
    let mut out = String::with_capacity(64 + ciphertext.len() * 4 / 3);
    out.push_str("{\"nonce\":");
    js_json::write_str(&mut out, &STANDARD.encode(nonce));
    out.push_str(",\"ciphertext\":");
    js_json::write_str(&mut out, &STANDARD.encode(ciphertext));
    out.push('}');
    Some(out)
}

/// Encrypts with a fresh random nonce from the operating system's RNG;
/// `None` if the RNG fails (never encrypt with a predictable nonce).
pub fn encrypt(key: &[u8; 32], plaintext: &[u8]) -> Option<String> {
    let mut nonce = [0u8; 24];
    rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut nonce).ok()?;
    encrypt_with_nonce(key, &nonce, plaintext)
}

/// Whether an event's `data` is a sealed payload rather than plaintext: a
/// JSON object with a `nonce` and a `ciphertext` member, the shape both
/// official SDKs send (Node compact, Python with spaces).
pub fn looks_sealed(data: &str) -> bool {
    let data = data.trim_start();
    if !data.starts_with('{') {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        nonce: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        ciphertext: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe>(data).is_ok_and(|p| p.nonce.is_some() && p.ciphertext.is_some())
}

/// Why a sealed payload could not be opened. Deliberately coarse: a
/// refusal says "does not open", never which check failed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not `{"nonce": <b64 of 24 bytes>, "ciphertext": <b64>}`.
    #[error("the payload is not {{\"nonce\", \"ciphertext\"}} in standard base64")]
    Malformed,
    /// The authentication tag does not verify with this key (sealed with
    /// another key, for another channel, or altered).
    #[error("the payload does not open with this channel's key")]
    WrongKey,
}

/// Opens a sealed event `data` string with a channel's shared secret `key`
/// and returns the plaintext bytes exactly as they were sealed.
pub fn open(key: &[u8; 32], data: &str) -> Result<Vec<u8>, OpenError> {
    #[derive(serde::Deserialize)]
    struct Sealed<'a> {
        #[serde(borrow)]
        nonce: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        ciphertext: std::borrow::Cow<'a, str>,
    }
    let sealed: Sealed<'_> = serde_json::from_str(data).map_err(|_| OpenError::Malformed)?;
    let nonce: [u8; 24] = STANDARD
        .decode(sealed.nonce.as_bytes())
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(OpenError::Malformed)?;
    let ciphertext = STANDARD.decode(sealed.ciphertext.as_bytes()).map_err(|_| OpenError::Malformed)?;
    XSalsa20Poly1305::new(key.into())
        .decrypt((&nonce).into(), ciphertext.as_slice())
        .map_err(|_| OpenError::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_nonces_differ_and_decrypt() {
        let key = [7u8; 32];
        let a = encrypt(&key, b"hello").unwrap();
        let b = encrypt(&key, b"hello").unwrap();
        assert_ne!(a, b);
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        let nonce = STANDARD.decode(v["nonce"].as_str().unwrap()).unwrap();
        let ct = STANDARD.decode(v["ciphertext"].as_str().unwrap()).unwrap();
        let cipher = XSalsa20Poly1305::new((&key).into());
        let nonce: [u8; 24] = nonce.try_into().unwrap();
        assert_eq!(cipher.decrypt((&nonce).into(), ct.as_slice()).unwrap(), b"hello");
    }

    #[test]
    fn sealed_payloads_open_with_their_key_only() {
        let key = [7u8; 32];
        let sealed = encrypt(&key, b"{\"a\":1}").unwrap();
        assert!(looks_sealed(&sealed));
        assert_eq!(open(&key, &sealed).unwrap(), b"{\"a\":1}");
        assert_eq!(open(&[8u8; 32], &sealed), Err(OpenError::WrongKey));
        // The Python SDK's spacing, and its own vector (PROTOCOL.md §5).
        let spaced =
            sealed.replace(",\"ciphertext\":", ", \"ciphertext\": ").replace("{\"nonce\":", "{\"nonce\": ");
        assert_eq!(open(&key, &spaced).unwrap(), b"{\"a\":1}");
        for bad in [
            "{}",
            "not json",
            r#"{"nonce":"AAAA","ciphertext":"AAAA"}"#,
            r#"{"nonce":1,"ciphertext":"AAAA"}"#,
            r#"{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","ciphertext":"%%%"}"#,
        ] {
            assert_eq!(open(&key, bad), Err(OpenError::Malformed), "{bad}");
        }
        for plain in ["hello", "\"quoted\"", r#"{"nonce":"x"}"#, r#"[1,2]"#, r#"{"text":"hi"}"#, ""] {
            assert!(!looks_sealed(plain), "{plain}");
        }
        assert!(looks_sealed(r#" {"ciphertext":"x","nonce":"y","extra":1}"#));
    }
}
