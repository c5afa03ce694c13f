//! jsonwebtoken 12's two crypto backends, verifying the same tokens with the
//! same keys: the evidence behind channelgate's choice of aws-lc-rs (see
//! ARCHITECTURE.md). The keys in `keys/` exist for this benchmark only.
//!
//!     cargo bench --manifest-path bench/jwt-backends/Cargo.toml

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::hint::black_box;

const RS: &str = include_str!("../keys/rs256.pem");
const RSP: &str = include_str!("../keys/rs256.pub.pem");
const ES: &str = include_str!("../keys/es256.pem");
const ESP: &str = include_str!("../keys/es256.pub.pem");

fn bench(c: &mut Criterion) {
    let providers: [(&str, &'static CryptoProvider); 2] = [
        ("aws_lc_rs", &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER),
        ("rust_crypto", &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER),
    ];
    let msg = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTAwMDAwNDIiLCJuYW1lIjoiVXNlciA0MiIsImV4cCI6MTc5OTk5OTk5OX0";
    for (pname, p) in providers {
        for (alg, ek, dk) in [
            (Algorithm::HS256, EncodingKey::from_secret(b"secret-0123456789abcdef0123456789").unwrap(), DecodingKey::from_secret(b"secret-0123456789abcdef0123456789").unwrap()),
            (Algorithm::RS256, EncodingKey::from_rsa_pem(RS.as_bytes()).unwrap(), DecodingKey::from_rsa_pem(RSP.as_bytes()).unwrap()),
            (Algorithm::ES256, EncodingKey::from_ec_pem(ES.as_bytes()).unwrap(), DecodingKey::from_ec_pem(ESP.as_bytes()).unwrap()),
        ] {
            let signer = (p.signer_factory)(&alg, &ek).unwrap();
            let sig = signer.try_sign(msg).unwrap();
            c.bench_function(&format!("{pname}/{alg:?}/verify"), |b| {
                b.iter(|| {
                    let v = (p.verifier_factory)(&alg, &dk).unwrap();
                    v.verify(black_box(msg), black_box(&sig)).unwrap()
                })
            });
        }
    }
}
criterion_group!(benches, bench);
criterion_main!(benches);
