//! Secret values: the Pusher app secret, the encryption master key, JWT
//! shared secrets. A [`Secret`] never prints its contents: `Debug` and
//! `Display` both show `[redacted]`, so a secret that ends up in a log line
//! or an error message by accident still leaks nothing.

use std::fmt;

use subtle::ConstantTimeEq;

/// Secret bytes (UTF-8 text for app secrets, raw bytes for keys).
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps the given bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into().into_boxed_slice())
    }

    /// The secret bytes. Call sites are the few places that use the secret
    /// (HMAC keys, key derivation); never format them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison with another byte string.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.len() == other.len() && bool::from(self.0.ct_eq(other))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_bytes() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        let s = Secret::new("abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"abcd"));
    }
}
