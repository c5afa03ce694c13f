//! The policy loader (`Policy::from_sources`: YAML, channel patterns, CEL
//! compilation with checked variable names) and evaluation
//! (`authorize_channel`, `authenticate_user`) with fuzzed claims.
//!
//! Input: `POLICY_YAML \0 CLAIMS_JSON \0 CHANNEL \0 SOCKET_ID \0 ORIGIN`.
//! An empty POLICY_YAML evaluates the repository's example policies
//! (compiled once) instead, so the claims, channel and origin get fuzzed
//! against real rules. Claims that are not JSON become `{}`; an invalid
//! socket id becomes `1234.5678`; an empty origin is none.
//!
//! Properties: never panics (evaluation is documented as panic-free);
//! the first rule whose pattern matches the channel decides, and no rule
//! matching means `no_rule_matched`; an allowed channel is never public and
//! carries `channel_data` exactly when it is a presence channel, within
//! `max_member_bytes`, with a non-empty `user_id` of at most 200 bytes; a
//! sign-in is refused without a `user:` block, and an allowed one has an
//! `id` from the channel-name character set; evaluating with a trace gives
//! the same decision.
#![no_main]

mod common;

use std::path::PathBuf;
use std::sync::LazyLock;

use channelgate::policy::TokenValue;
use channelgate::policy::{Decision, DenyReason, Policy, Request, Trace};
use channelgate::pusher::{ChannelKind, ChannelName, SocketId};
use libfuzzer_sys::fuzz_target;

const MAX_MEMBER_BYTES: usize = 1024;

static EXAMPLES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    let sets: [(&str, &str); 4] = [
        ("quickstart.yaml", include_str!("../../examples/quickstart/policies/quickstart.yaml")),
        ("chat.yaml", include_str!("../../policies/chat/chat.yaml")),
        ("notifications.yaml", include_str!("../../policies/notifications/notifications.yaml")),
        ("teams.yaml", include_str!("../../policies/teams/teams.yaml")),
    ];
    sets.iter()
        .map(|(name, text)| {
            Policy::from_sources(&[(PathBuf::from(name), (*text).to_owned())], MAX_MEMBER_BYTES)
                .unwrap_or_else(|e| panic!("example policy {name} does not compile: {e:?}"))
        })
        .collect()
});

fn is_channel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-=@,.;".contains(c)
}

fn check_channel(policy: &Policy, request: &Request<'_>, channel: &ChannelName) {
    let decision = policy.authorize_channel(request, channel, None);
    let mut trace = Trace::default();
    assert_eq!(policy.authorize_channel(request, channel, Some(&mut trace)), decision, "trace changes it");

    let first = policy.rules().iter().find(|r| r.pattern().matches(channel).is_some());
    match (&decision, first) {
        (Decision::Deny { rule: None, reason: DenyReason::NoRuleMatched }, None) => return,
        (_, Some(rule)) => assert_eq!(decision.rule(), Some(rule.name()), "not the first matching rule"),
        (d, None) => panic!("{d:?} although no rule matches"),
    }
    if let Decision::Allow { data, .. } = &decision {
        assert_ne!(channel.kind(), ChannelKind::Public);
        assert_eq!(data.is_some(), channel.kind() == ChannelKind::Presence, "{decision:?}");
        if let Some(data) = data {
            assert!(data.len() <= policy.max_member_bytes());
            let v: serde_json::Value = serde_json::from_str(data).expect("channel_data is JSON");
            let id = v.get("user_id").and_then(serde_json::Value::as_str).expect("user_id string");
            assert!(!id.is_empty() && id.len() <= 200);
        }
    }
}

fn check_signin(policy: &Policy, request: &Request<'_>) {
    let decision = policy.authenticate_user(request, None);
    let mut trace = Trace::default();
    assert_eq!(policy.authenticate_user(request, Some(&mut trace)), decision, "trace changes it");
    if !policy.signin_enabled() {
        assert_eq!(decision, Decision::Deny { rule: None, reason: DenyReason::SigninDisabled });
        return;
    }
    if let Decision::Allow { data, .. } = &decision {
        let data = data.as_deref().expect("sign-in user_data");
        let v: serde_json::Value = serde_json::from_str(data).expect("user_data is JSON");
        let id = v.get("id").and_then(serde_json::Value::as_str).expect("id string");
        assert!(!id.is_empty() && id.len() <= 200 && id.chars().all(is_channel_char), "id {id:?}");
        if let Some(w) = v.get("watchlist") {
            assert!(w.as_array().is_some_and(|a| a.iter().all(serde_json::Value::is_string)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parts = common::fields(data, 5);
    let claims = serde_json::from_slice::<serde_json::Value>(parts[1])
        .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()));
    let token = TokenValue::from_json(&claims);
    let socket_id = SocketId::parse(&common::text(parts[3]))
        .unwrap_or_else(|_| SocketId::parse("1234.5678").expect("valid socket id"));
    let origin = common::text(parts[4]);
    let request =
        Request { token: &token, socket_id: &socket_id, origin: (!origin.is_empty()).then_some(origin.as_str()) };
    let channel = ChannelName::parse(&common::text(parts[2])).ok();

    let compiled;
    let policies: &[Policy] = if parts[0].is_empty() {
        &EXAMPLES
    } else {
        let Ok(text) = std::str::from_utf8(parts[0]) else { return };
        match Policy::from_sources(&[(PathBuf::from("fuzz.yaml"), text.to_owned())], MAX_MEMBER_BYTES) {
            Ok(p) => {
                compiled = [p];
                &compiled
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                for e in &errors {
                    let _ = e.to_string();
                }
                return;
            }
        }
    };
    for policy in policies {
        if let Some(channel) = &channel {
            check_channel(policy, &request, channel);
        }
        check_signin(policy, &request);
    }
});
