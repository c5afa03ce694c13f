//! End-to-end encrypted event payloads (PROTOCOL.md §5): NaCl secretbox
//! (XSalsa20-Poly1305) with the channel's shared secret as key, the way the
//! official SDKs encrypt, so pusher-js decrypts them with the
//! `shared_secret` channelgate handed out.

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
}
