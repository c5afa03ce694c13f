//! Checks the `pusher` module against every applicable case of
//! `tests/fixtures/vectors.json` (captured from pusher-http-node 5.3.4 and
//! pusher-http-python 3.3.4, see PROTOCOL.md).
//!
//! Invariant: the Node SDK is the reference. Our signatures, serialized
//! `channel_data`/`user_data` and response bodies must equal its output byte
//! for byte; our validation must reject everything it rejects, and accept
//! what it accepts unless the input contains non-ASCII. Section sizes are
//! asserted so a truncated fixture fails loudly.

// Test-only helpers outside `#[test]` fns: failing loudly is their job.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use channelgate::pusher::{
    ChannelKind, ChannelName, MasterKey, ProtocolError, SignError, Signer, SocketId, js_json,
};
use channelgate::secret::Secret;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors.json");
    let text = std::fs::read_to_string(path).expect("read vectors.json");
    serde_json::from_str(&text).expect("parse vectors.json")
}

/// The value at a `/`-separated JSON pointer, or a panic naming the case.
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or_else(|| panic!("missing {pointer} in {}", case_id(v)))
}

/// The string at `pointer`.
fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer).as_str().unwrap_or_else(|| panic!("{pointer} is not a string in {}", case_id(v)))
}

fn case_id(v: &Value) -> &str {
    v.get("id").and_then(Value::as_str).unwrap_or("<no id>")
}

/// A top-level array section, checked to hold exactly `count` cases.
fn section<'a>(root: &'a Value, name: &str, count: usize) -> &'a [Value] {
    let cases = at(root, &format!("/{name}")).as_array().unwrap_or_else(|| panic!("{name} is not an array"));
    assert_eq!(cases.len(), count, "{name}: wrong number of cases");
    cases
}

/// The signer for the fixture's `app` section, with or without its master key.
fn signer(root: &Value, with_master_key: bool) -> Signer {
    let master_key = with_master_key.then(|| {
        MasterKey::from_base64(text(root, "/app/encryption_master_key_base64")).expect("fixture master key")
    });
    Signer::new(text(root, "/app/key"), Secret::new(text(root, "/app/secret")), master_key)
}

fn socket(case: &Value) -> SocketId {
    SocketId::parse(text(case, "/socket_id"))
        .unwrap_or_else(|e| panic!("{}: socket_id rejected: {e}", case_id(case)))
}

fn channel(case: &Value) -> ChannelName {
    ChannelName::parse(text(case, "/channel_name"))
        .unwrap_or_else(|e| panic!("{}: channel_name rejected: {e}", case_id(case)))
}

#[test]
fn private_channel() {
    let root = fixture();
    let signer = signer(&root, false);
    for case in section(&root, "private_channel", 60) {
        let id = case_id(case);
        let channel = channel(case);
        assert_eq!(channel.kind(), ChannelKind::Private, "{id}");
        assert_eq!(
            signer.hmac_hex(text(case, "/string_to_sign").as_bytes()),
            text(case, "/signature_hex"),
            "{id}"
        );
        let auth =
            signer.authorize_channel(&socket(case), &channel, None).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(auth.auth, text(case, "/expected_response/auth"), "{id}");
        assert_eq!(auth.to_json(), text(case, "/node_response_json"), "{id}");
    }
}

#[test]
fn presence_channel() {
    let root = fixture();
    let signer = signer(&root, false);
    for case in section(&root, "presence_channel", 60) {
        let id = case_id(case);
        let channel = channel(case);
        assert_eq!(channel.kind(), ChannelKind::Presence, "{id}");
        let data = js_json::to_string(at(case, "/channel_data_input"));
        assert_eq!(data, text(case, "/node/channel_data"), "{id}");
        let auth = signer
            .authorize_channel(&socket(case), &channel, Some(&data))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(auth.auth, text(case, "/node/auth"), "{id}");
        assert_eq!(auth.to_json(), text(case, "/node/response_json"), "{id}");
    }
}

#[test]
fn private_encrypted_channel() {
    let root = fixture();
    let signer = signer(&root, true);
    let mut with_data = 0;
    for case in section(&root, "private_encrypted_channel", 30) {
        let id = case_id(case);
        let channel = channel(case);
        assert_eq!(channel.kind(), ChannelKind::PrivateEncrypted, "{id}");
        let data = case.get("channel_data_input").map(js_json::to_string);
        if let Some(data) = &data {
            with_data += 1;
            assert_eq!(data, text(case, "/expected_response/channel_data"), "{id}");
        }
        let auth = signer
            .authorize_channel(&socket(case), &channel, data.as_deref())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(auth.auth, text(case, "/expected_response/auth"), "{id}");
        let shared = text(case, "/expected_response/shared_secret");
        assert_eq!(shared, text(case, "/shared_secret_b64"), "{id}");
        assert_eq!(auth.shared_secret.as_deref(), Some(shared), "{id}");
        assert_eq!(auth.to_json(), text(case, "/node_response_json"), "{id}");
    }
    assert_eq!(with_data, 2, "encrypted cases carrying channel_data");
}

#[test]
fn user_authentication() {
    let root = fixture();
    let signer = signer(&root, false);
    for case in section(&root, "user_authentication", 40) {
        let id = case_id(case);
        let data = js_json::to_string(at(case, "/user_data_input"));
        assert_eq!(data, text(case, "/node/user_data"), "{id}");
        let auth = signer.authenticate_user(&socket(case), &data);
        assert_eq!(auth.auth, text(case, "/node/auth"), "{id}");
        assert_eq!(auth.to_json(), text(case, "/node/response_json"), "{id}");
    }
}

#[test]
fn master_key_from_fixture() {
    let root = fixture();
    let key_hex = text(&root, "/app/encryption_master_key_hex");
    assert_eq!(text(&root, "/master_key_validation/base64_32_bytes/node/result"), key_hex);
    let bytes: [u8; 32] = hex::decode(key_hex).expect("hex key").try_into().expect("32 bytes");
    // The same key from bytes and from base64 derives the same shared secret.
    let socket = SocketId::parse("1234.5678").expect("socket");
    let channel = ChannelName::parse("private-encrypted-foo").expect("channel");
    let from_bytes = Signer::new("k", Secret::new("s"), Some(MasterKey::from_bytes(bytes)));
    let a = from_bytes.authorize_channel(&socket, &channel, None);
    let b = signer(&root, true).authorize_channel(&socket, &channel, None);
    assert_eq!(a.expect("auth").shared_secret, b.expect("auth").shared_secret);
}

/// `invalid_inputs.<section>`: we reject everything Node rejects; we accept
/// what Node accepts unless it is non-ASCII. Non-string inputs cannot reach
/// our parsers and are skipped. Returns the number of string inputs checked.
fn check_invalid_inputs(
    root: &Value,
    section: &str,
    parse: impl Fn(&str) -> Result<(), ProtocolError>,
) -> usize {
    let cases = at(root, &format!("/invalid_inputs/{section}"))
        .as_array()
        .unwrap_or_else(|| panic!("invalid_inputs.{section} is not an array"));
    let mut checked = 0;
    for case in cases {
        let Some(input) = case.get("input").and_then(Value::as_str) else {
            continue;
        };
        checked += 1;
        let node_accepts = at(case, "/node/accepted").as_bool() == Some(true);
        let ours = parse(input);
        if node_accepts && input.is_ascii() {
            assert!(ours.is_ok(), "{section}: {input:?} accepted by node, rejected by us");
        } else {
            assert!(ours.is_err(), "{section}: {input:?} rejected by node, accepted by us");
        }
    }
    checked
}

#[test]
fn invalid_socket_ids() {
    let root = fixture();
    let checked = check_invalid_inputs(&root, "socket_ids", |s| SocketId::parse(s).map(drop));
    assert_eq!(checked, 19, "string socket ids in invalid_inputs");
}

#[test]
fn invalid_channel_names() {
    let root = fixture();
    let checked = check_invalid_inputs(&root, "channel_names", |s| ChannelName::parse(s).map(drop));
    assert_eq!(checked, 19, "channel names in invalid_inputs");
}

/// Edge cases we check, and those that do not apply to this API (with why).
const EDGE_CASES_CHECKED: &[&str] = &[
    "channel_200_chars",
    "channel_201_chars",
    "encrypted_without_master_key",
    "presence_data_empty_array",
    "presence_data_empty_object",
    "presence_data_empty_string",
    "presence_data_null",
    "presence_data_string",
    "presence_data_zero",
    "presence_without_data",
    "public_channel_signed",
    "socket_id_unicode_digits",
    "user_data_id_300",
    "user_data_id_with_space",
    "user_data_unicode_id",
];
const EDGE_CASES_NOT_APPLICABLE: &[&str] = &[
    // No app id in this API.
    "app_id_non_numeric",
    // SDK API aliasing.
    "deprecated_authenticate_alias_same",
    // A Rust string cannot hold a lone surrogate.
    "json_lone_surrogate",
    // Its channel name is non-ASCII, which ChannelName rejects.
    "shared_secret_channel_unicode_bytes",
    // Validating the user-data object is the caller's job.
    "user_data_id_number",
];

#[test]
fn edge_cases_are_all_accounted_for() {
    let root = fixture();
    let present: BTreeSet<&str> =
        at(&root, "/edge_cases").as_object().expect("edge_cases object").keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = EDGE_CASES_CHECKED.iter().chain(EDGE_CASES_NOT_APPLICABLE).copied().collect();
    assert_eq!(present, known);
}

#[test]
fn edge_cases() {
    let root = fixture();
    let signer = signer(&root, true);
    let node = |name: &str| at(&root, &format!("/edge_cases/{name}/node")).clone();
    // The edge cases were generated with socket 1.1.
    let socket = SocketId::parse("1.1").expect("socket");

    // 200 characters: accepted and signed; 201: rejected.
    let long = format!("private-{}", "x".repeat(192));
    assert_eq!(long.len(), 200);
    let channel = ChannelName::parse(&long).expect("200-char channel");
    let auth = signer.authorize_channel(&socket, &channel, None).expect("auth");
    assert_eq!(auth.auth, text(&node("channel_200_chars"), "/result/auth"));
    assert_eq!(at(&node("channel_201_chars"), "/accepted"), false);
    assert_eq!(ChannelName::parse(&format!("{long}x")), Err(ProtocolError::ChannelNameTooLong));

    // Node signs public channels; we refuse.
    assert_eq!(at(&node("public_channel_signed"), "/accepted"), true);
    let public = ChannelName::parse("my-public-channel").expect("public channel");
    assert_eq!(public.kind(), ChannelKind::Public);
    assert_eq!(signer.authorize_channel(&socket, &public, None), Err(SignError::PublicChannel));

    assert_eq!(at(&node("encrypted_without_master_key"), "/accepted"), false);
    let encrypted = ChannelName::parse("private-encrypted-foo").expect("channel");
    let keyless = Signer::new("test-key", Secret::new("test-secret-0123456789"), None);
    assert_eq!(keyless.authorize_channel(&socket, &encrypted, None), Err(SignError::NoMasterKey));

    // Python accepts Unicode digits; Node and we do not.
    for s in ["١٢٣.٤٥٦", "１.２"] {
        assert_eq!(SocketId::parse(s), Err(ProtocolError::InvalidSocketId), "{s}");
    }

    // Presence data: whatever Node returned as channel_data (or nothing) is
    // signed to the same auth, and the body matches Node's key order.
    let presence = ChannelName::parse("presence-x").expect("channel");
    for name in [
        "presence_data_empty_array",
        "presence_data_empty_object",
        "presence_data_empty_string",
        "presence_data_null",
        "presence_data_string",
        "presence_data_zero",
        "presence_without_data",
    ] {
        let result = at(&node(name), "/result").clone();
        let data = result.get("channel_data").and_then(Value::as_str);
        let auth = signer.authorize_channel(&socket, &presence, data).expect("presence auth");
        assert_eq!(auth.auth, text(&result, "/auth"), "{name}");
        assert_eq!(auth.to_json(), js_json::to_string(&result), "{name}");
    }
    // The non-empty ones are exactly JSON.stringify of the value.
    for (name, input) in [
        ("presence_data_empty_array", "[]"),
        ("presence_data_empty_object", "{}"),
        ("presence_data_string", "\"str\""),
    ] {
        let value: Value = serde_json::from_str(input).expect("json");
        assert_eq!(js_json::to_string(&value), text(&node(name), "/result/channel_data"), "{name}");
    }

    // User data Node accepts (long, spaced, non-ASCII ids).
    for name in ["user_data_id_300", "user_data_id_with_space", "user_data_unicode_id"] {
        let result = at(&node(name), "/result").clone();
        let user_data = text(&result, "/user_data");
        let value: Value = serde_json::from_str(user_data).expect("user_data json");
        assert_eq!(js_json::to_string(&value), user_data, "{name}");
        let auth = signer.authenticate_user(&socket, user_data);
        assert_eq!(auth.auth, text(&result, "/auth"), "{name}");
    }
}

/// REST request signing: our query string equals pusher-http-node's for every
/// captured request, and our verifier accepts both SDKs' requests (Python
/// puts `auth_signature` elsewhere and sends a different body).
#[test]
fn rest_api_requests() {
    use channelgate::pusher::rest;
    let root = fixture();
    let cases = at(&root, "/rest_api/cases").as_array().expect("cases");
    assert_eq!(cases.len(), 11);
    let secret = Secret::new(text(&root, "/app/secret"));
    let key = text(&root, "/app/key");
    for case in cases {
        let ts: u64 = text(case, "/auth_timestamp").parse().expect("timestamp");
        let node = at(case, "/node");
        let query = rest::signed_query(
            text(node, "/method"),
            text(node, "/path"),
            text(node, "/body").as_bytes(),
            key,
            &secret,
            ts,
        );
        assert_eq!(query, text(node, "/query"), "{}", case_id(case));
        for sdk in ["/node", "/python"] {
            let c = at(case, sdk);
            let lookup = |k: &str| (k == key).then(|| Secret::new(text(&root, "/app/secret")));
            let verified = rest::verify(
                text(c, "/method"),
                text(c, "/path"),
                text(c, "/query"),
                text(c, "/body").as_bytes(),
                lookup,
                ts,
                600,
            );
            // Python 3.3.4 signs terminate_connections without the /apps/{id}
            // prefix (PROTOCOL.md §4); its capture is checked on its own path.
            assert_eq!(verified.as_deref(), Ok(key), "{} {sdk}", case_id(case));
        }
    }
}

/// Encrypted payloads: with the captured nonce, our `data` field equals
/// pusher-http-node's byte for byte, and Python's ciphertext for its
/// plaintext.
#[test]
fn encrypted_payloads() {
    use base64::Engine;
    use channelgate::pusher::crypto;
    let root = fixture();
    let cases = section(&root, "encrypted_payloads", 6);
    let master =
        MasterKey::from_base64(text(&root, "/app/encryption_master_key_base64")).expect("master key");
    for case in cases {
        let key = master.shared_secret_bytes(text(case, "/channel"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(key),
            text(case, "/shared_secret_b64"),
            "{}",
            case_id(case)
        );
        let nonce: [u8; 24] =
            hex::decode(text(case, "/nonce_hex")).expect("hex").try_into().expect("24 bytes");
        let node =
            crypto::encrypt_with_nonce(&key, &nonce, text(case, "/node/plaintext_encrypted").as_bytes());
        assert_eq!(node.as_deref(), Some(text(case, "/node/event_data_field")), "{}", case_id(case));
        let python =
            crypto::encrypt_with_nonce(&key, &nonce, text(case, "/python/plaintext_encrypted").as_bytes())
                .expect("encrypt");
        let ours: Value = serde_json::from_str(&python).expect("json");
        assert_eq!(ours["ciphertext"], text(case, "/python/ciphertext_b64"), "{}", case_id(case));
    }
}
