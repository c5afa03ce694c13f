//! Helpers shared by the fuzz targets (each target includes this with
//! `mod common;`, so not every item is used by every target).
#![allow(dead_code)]

/// Splits `data` at NUL bytes into at most `n` parts; missing parts are
/// empty. The last part keeps any further NULs. Seeds stay readable text
/// with `\0` between the fields.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == 0).collect();
    out.resize(n, &[]);
    out
}

/// `bytes` as text: the valid UTF-8 prefix semantics are not interesting
/// here, so invalid sequences become U+FFFD.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Test-only public keys (generated for the fuzz targets; their private
/// halves were used once to sign the seed tokens and are not kept).
pub const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmOciM/VzlLmv4KNLeFCz
CD8tsw/+jMLZQOTcO3tw4z2piDbW34nBisDkmfjrMAUcZB7n4wluUAW45etEYsQ3
nV/5IXhYTk0iYtrSCIPvE0joKRzlRKaff0hIvAEuSsJdvtpHGTzWm0NW2nSh1XPJ
kH4DtCowxOS86AZGEEKbyGfd3VWSGmaf2ZwC2FPQPSmpsWNH05hanGl6kSCAZQLO
qO6E0T/HR+JAVBenLauJHTuTC1z05hdzZjsw/46mokcXxOxhsh/Jzj58vMslmVCS
Y1zhr5ODHXcy2rzeVDtWm5wN0N1nkGK/LH+Yj5cVbG5BmpxztIUhHq6f0fx/GmEX
BQIDAQAB
-----END PUBLIC KEY-----
";

/// EC P-256 public key (ES256), test-only.
pub const EC_P256_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFE0YAJVPiV0Rn1kau05xHubv7Q0P
ix9rwZ/lwJAa59aMGBIChGU1UK1Ve5d+qBb5GvOccCwmedORzQ27++JEMg==
-----END PUBLIC KEY-----
";

/// The HMAC secret of the HS issuer in the token targets (test-only).
pub const HS_SECRET: &[u8] = b"channelgate-fuzz-hs-secret-not-a-real-key";

/// "now" for token verification, so seed tokens (exp 1700003600) are valid.
pub const NOW: u64 = 1_700_000_000;

/// Checks `one`/`required`/`batch_channels` against a plain count, then runs
/// the values through the protocol parsers as the handlers do.
pub fn check_fields(fields: &channelgate::http::request::Fields) {
    for (name, _) in fields.pairs.iter().take(32) {
        let count = fields.pairs.iter().filter(|(k, _)| k == name).count();
        match (fields.one(name), count) {
            (Ok(Some(v)), 1) => {
                let expected = &fields.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                assert_eq!(Some(v), *expected);
                assert_eq!(fields.required(name).ok(), Some(v));
            }
            (Err(e), n) if n > 1 => {
                assert_eq!(e.reason(), "duplicate_field");
                assert!(fields.required(name).is_err());
            }
            (other, n) => panic!("one({name:?}) = {other:?} for a field sent {n} times"),
        }
    }
    let absent = "channelgate-fuzz-absent";
    if !fields.pairs.iter().any(|(k, _)| k == absent) {
        assert!(matches!(fields.one(absent), Ok(None)));
        assert_eq!(fields.required(absent).map_err(|e| e.reason().as_str()), Err("missing_field"));
    }
    match fields.batch_channels(50) {
        Ok(channels) => {
            let n = fields.pairs.iter().filter(|(k, _)| k.starts_with("channel_name[")).count();
            assert_eq!(channels.len(), n);
            for c in channels {
                let _ = channelgate::pusher::ChannelName::parse(c);
            }
        }
        Err(e) => assert!(
            matches!(e.reason().as_str(), "invalid_field" | "duplicate_field" | "batch_too_large"),
            "{}",
            e.reason()
        ),
    }
    if let Ok(Some(s)) = fields.one("socket_id") {
        let _ = channelgate::pusher::SocketId::parse(s);
    }
    if let Ok(Some(c)) = fields.one("channel_name") {
        let _ = channelgate::pusher::ChannelName::parse(c);
    }
}
