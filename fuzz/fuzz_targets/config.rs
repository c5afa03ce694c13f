//! The YAML config loader: `Config::from_str` (strict serde-saphyr parse,
//! the lenient second pass that reports every broken section, and
//! validation).
//!
//! The config is validated as if read from `/nonexistent/channelgate.yaml`,
//! so relative paths never reach a file. Absolute paths would be read, so an
//! input naming an existing file that is not a directory (`/dev/zero`,
//! `/proc/...`) is skipped before validation; directories (`policies: /`)
//! are allowed, so a config can validate fully. Secrets come from inline
//! `value:`s or from `CHANNELGATE_FUZZ_*` variables that this target sets
//! at start when they are unset (other variables named in an input are only
//! read).
//!
//! Properties: never panics; an error list is never empty; no error message
//! and no `Debug` of a valid config shows a secret taken from the
//! environment; in a valid config every configured JWT algorithm is one the
//! issuer's key can verify (no HS/RS confusion by config) and the Pusher key
//! holds no `:`.
#![no_main]

mod common;

use std::path::Path;

use channelgate::config::Config;
use libfuzzer_sys::fuzz_target;

/// Environment secrets the seeds use; the values are canaries that must
/// never be echoed.
const ENV: [(&str, &str); 3] = [
    ("CHANNELGATE_FUZZ_PUSHER_SECRET", "fuzz-canary-pusher-secret-5b1d"),
    ("CHANNELGATE_FUZZ_JWT_SECRET", "fuzz-canary-jwt-secret-9c2e"),
    // 32 bytes, base64.
    ("CHANNELGATE_FUZZ_MASTER_KEY", "ZnV6ei1jYW5hcnktbWFzdGVyLWtleS0zMi1ieXRlcyE="),
];

fn collect_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k);
                collect_strings(v, out);
            }
        }
        _ => {}
    }
}

/// Whether validating `text` could read a file outside the nonexistent
/// config folder.
fn may_read_a_file(text: &str) -> bool {
    let parsed = if text.contains('!') {
        None // tags could make the typed parse read a scalar differently
    } else {
        serde_saphyr::from_str::<serde_json::Value>(text).ok()
    };
    let Some(value) = parsed else {
        // Unknown shape: only text that cannot spell an absolute path.
        return text.contains(['/', '\\']);
    };
    let mut strings = Vec::new();
    collect_strings(&value, &mut strings);
    strings
        .iter()
        .filter(|s| Path::new(s).is_absolute())
        .any(|s| std::fs::metadata(s).is_ok_and(|m| !m.is_dir()) || s.contains('\0'))
}

fuzz_target!(
    init: {
        for (name, value) in ENV {
            if std::env::var_os(name).is_none() {
                // SAFETY: runs once before fuzzing starts, while this process
                // has one thread.
                unsafe { std::env::set_var(name, value) };
            }
        }
    },
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        if may_read_a_file(text) {
            return;
        }
        let leaks = |shown: &str| {
            ENV.iter().any(|(name, canary)| {
                std::env::var(name).is_ok_and(|v| v == *canary) && !text.contains(canary) && shown.contains(canary)
            })
        };
        match Config::from_str(Path::new("/nonexistent/channelgate.yaml"), text) {
            Ok(config) => {
                let debug = format!("{config:?}");
                assert!(!leaks(&debug), "Debug of a config shows a secret");
                assert!(!config.signer.app_key().contains(':'));
                for issuer in &config.issuers {
                    assert!(!issuer.algorithms.is_empty());
                    for alg in &issuer.algorithms {
                        assert!(issuer.keys.supports(*alg), "{alg:?} configured for a key that cannot verify it");
                    }
                }
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "an empty error list");
                let shown = errors.to_string();
                assert!(!leaks(&shown), "an error shows a secret: {shown}");
            }
        }
    }
);
