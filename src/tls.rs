//! rustls server configuration from PEM files. ALPN offers HTTP/2 and
//! HTTP/1.1; the aws-lc-rs provider is used (the same crypto backend as the
//! JWT verification). Errors say which file is wrong and how, in words a
//! person can act on (a certificate given as the key, a key that belongs to
//! another certificate).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("tls.cert `{path}`: {message}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The key file is unreadable or holds no private key.
    #[error("tls.key `{path}`: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The private key is not the certificate's.
    #[error(
        "tls: the key in `{key}` does not belong to the certificate in `{cert}` \
         (give the private key the certificate was issued for; compare \
         `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)"
    )]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the pair for another reason.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the server config from a PEM certificate chain and a PEM key.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |message: String| TlsError::Cert { path: cert.display().to_string(), message };
    let key_err = |message: String| TlsError::Key { path: key.display().to_string(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err(match pem_kind(cert) {
            Some(PemKind::PrivateKey) => {
                "this file holds a private key, not a certificate (are tls.cert and tls.key swapped?)".into()
            }
            _ => "no certificate found (expected `-----BEGIN CERTIFICATE-----`)".into(),
        }));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match (&e, pem_kind(key)) {
        (rustls::pki_types::pem::Error::NoItemsFound, Some(PemKind::Certificate)) => key_err(
            "this file holds a certificate, not a private key (are tls.cert and tls.key swapped?)".into(),
        ),
        (rustls::pki_types::pem::Error::NoItemsFound, _) => {
            key_err("no private key found (expected `-----BEGIN PRIVATE KEY-----` or an RSA/EC key)".into())
        }
        _ => key_err(e.to_string()),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::Mismatch { cert: cert.display().to_string(), key: key.display().to_string() }
            }
            e => TlsError::Rustls(e),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a PEM file mainly holds, judged by its armour lines.
#[derive(Debug, PartialEq, Eq)]
enum PemKind {
    Certificate,
    PrivateKey,
}

fn pem_kind(path: &Path) -> Option<PemKind> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        Some(PemKind::Certificate)
    } else if text.contains("PRIVATE KEY-----") {
        Some(PemKind::PrivateKey)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        assert!(server_config(&cert, &key).is_ok());
    }

    #[test]
    fn swapped_files_are_named_for_what_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let e = server_config(&cert, &cert).unwrap_err().to_string();
        assert!(e.starts_with("tls.key `") && e.contains("a.crt`"), "{e}");
        assert!(e.contains("this file holds a certificate, not a private key"), "{e}");
        let e = server_config(&key, &key).unwrap_err().to_string();
        assert!(e.starts_with("tls.cert `") && e.contains("a.key`"), "{e}");
        assert!(e.contains("this file holds a private key, not a certificate"), "{e}");
        assert!(!e.contains("BEGIN PRIVATE KEY-----\n"), "no key material in errors: {e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let e = server_config(&cert, &other_key).unwrap_err().to_string();
        assert!(
            e.contains("the key in `") && e.contains("b.key` does not belong to the certificate in `"),
            "{e}"
        );
        assert!(e.contains("a.crt`"), "{e}");
    }
}
