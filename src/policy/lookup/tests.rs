#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::policy::{Decision, DenyReason, Policy, Request};
use crate::pusher::{ChannelName, SocketId};
use crate::reason::Reason;

fn compile(yaml: &str) -> Policy {
    Policy::from_sources(&[(PathBuf::from("p.yaml"), yaml.to_owned())], 1024)
        .unwrap_or_else(|e| panic!("policy does not compile: {e:#?}"))
}

fn errors(yaml: &str) -> String {
    match Policy::from_sources(&[(PathBuf::from("p.yaml"), yaml.to_owned())], 1024) {
        Ok(_) => panic!("expected compile errors"),
        Err(e) => e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
    }
}

const ROOMS: &str = r#"
rules:
  - name: room-members
    channel: presence-room-{room:[0-9]+}
    query: { source: db, sql: "SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2",
             params: [room, token.sub], ttl: 10s }
    allow: query.found && query.row.role != "banned"
    presence:
      user_info: { name: token.name, role: query.row.role }
  - name: docs
    channel: private-doc-{doc}
    hook: { url: "http://127.0.0.1:3000/pusher/decide", timeout: 500ms, headers: { Authorization: { env: HOOK_AUTH } } }
  - name: teams
    channel: private-team-{team}
    query: { source: kv, sismember: { key: "team:{team}:members", member: "{token.sub}" } }
    allow: query.found
"#;

fn decide(policy: &Policy, claims: serde_json::Value, channel: &str, facts: &Facts) -> Decision {
    let token = crate::policy::TokenValue::from_json(&claims);
    let socket = SocketId::parse("1.2").unwrap();
    let request = Request { token: &token, socket_id: &socket, origin: None };
    policy.authorize_channel_with_facts(&request, &ChannelName::parse(channel).unwrap(), facts, None).0
}

fn rows(rows: serde_json::Value) -> Fact {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_value(rows).unwrap();
    Fact::Found(Arc::new(FactValue::query(&rows, false)))
}

#[test]
fn queries_and_hooks_compile_to_descriptions() {
    let p = compile(ROOMS);
    assert!(p.has_lookups());
    let q = p.rules()[0].query().unwrap();
    assert_eq!(q.source, "db");
    assert_eq!(q.params, vec![ParamRef::Capture("room".into()), ParamRef::Token("sub".into())]);
    assert_eq!(q.ttl, std::time::Duration::from_secs(10));
    assert!(matches!(&q.command, QueryCommand::Sql(sql) if sql.params() == 2));
    let h = p.rules()[1].hook().unwrap();
    assert_eq!(
        (h.timeout, h.ttl),
        (std::time::Duration::from_millis(500), std::time::Duration::from_secs(30))
    );
    assert_eq!(h.headers, vec![("Authorization".to_owned(), "HOOK_AUTH".to_owned())]);
    let t = p.rules()[2].query().unwrap();
    assert_eq!(t.params, vec![ParamRef::Capture("team".into()), ParamRef::Token("sub".into())]);
    assert!(matches!(&t.command, QueryCommand::SisMember { key, member }
        if key.pieces == vec![Piece::Text("team:".into()), Piece::Param(0), Piece::Text(":members".into())]
            && member.pieces == vec![Piece::Param(1)]));
    assert!(!compile("rules: [ { name: a, channel: private-a, allow: 'true' } ]").has_lookups());
}

#[test]
fn mistakes_fail_at_load_with_the_rule_named() {
    let rule = |extra: &str| format!("rules:\n  - name: r\n    channel: private-room-{{room}}\n{extra}");
    for (extra, expect) in [
        ("    query: { source: db, sql: \"DELETE FROM m\" }\n    allow: 'true'\n", "not a SELECT"),
        (
            "    query: { source: db, sql: \"SELECT 1 WHERE $1 = $2\", params: [room] }\n    allow: 'true'\n",
            "2 parameter(s)",
        ),
        (
            "    query: { source: db, sql: \"SELECT 1 WHERE $1 = 'a'\", params: [nope] }\n    allow: 'true'\n",
            "`nope` is not a parameter",
        ),
        (
            "    query: { source: db, sql: \"SELECT 1 WHERE $1 = 'a'\", params: [token.a.b] }\n    allow: 'true'\n",
            "top-level claim",
        ),
        (
            "    query: { source: db, sql: \"SELECT 1 WHERE role = {room}\" }\n    allow: 'true'\n",
            "never written into the SQL",
        ),
        (
            "    query: { source: kv, get: \"k:{room}\", params: [room] }\n    allow: 'true'\n",
            "`params` is for `sql`",
        ),
        ("    query: { source: kv, get: \"k:{oops}\" }\n    allow: 'true'\n", "`oops` is not a parameter"),
        ("    query: { source: kv }\n    allow: 'true'\n", "exactly one of"),
        ("    query: { source: db, sql: \"SELECT 1\", ttl: soon }\n    allow: 'true'\n", "not a duration"),
        ("    hook: { url: \"ftp://x\" }\n", "http:// or https://"),
        ("    hook: { url: \"http://a\", timeout: 0s }\n", "longer than zero"),
        ("    hook: { url: \"http://a\", headers: { \"bad header\": { env: X } } }\n", "not a header name"),
        ("    allow: query.found\n", "`query`, which is not defined here"),
        ("    allow: hook.allow\n", "`hook`, which is not defined here"),
        ("    presence: {}\n", "`allow` is missing"),
    ] {
        let e = errors(&rule(extra));
        assert!(e.contains(expect) && e.contains("rule `r`"), "{extra}:\n{e}");
    }
}

#[test]
fn the_query_decides_with_what_it_found() {
    let p = compile(ROOMS);
    let alice = json!({"sub": "alice", "name": "Alice"});
    let mut facts = Facts::none();
    facts.set_query(0, rows(json!([{"role": "moderator"}])));
    match decide(&p, alice.clone(), "presence-room-42", &facts) {
        Decision::Allow { data: Some(data), .. } => {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&data).unwrap(),
                json!({"user_id": "alice", "user_info": {"name": "Alice", "role": "moderator"}})
            );
        }
        other => panic!("{other:?}"),
    }
    for (found, reason) in
        [(json!([{"role": "banned"}]), Reason::RuleDenied), (json!([]), Reason::RuleDenied)]
    {
        let mut facts = Facts::none();
        facts.set_query(0, rows(found));
        let d = decide(&p, alice.clone(), "presence-room-42", &facts);
        assert!(matches!(&d, Decision::Deny { reason: r, .. } if r.reason() == reason), "{d:?}");
    }
    // A failed source: 503, nothing signed; a refused value: rule_error; no fact at all: rule_error.
    let mut facts = Facts::none();
    facts.set_query(0, Fact::Unavailable("pool exhausted".into()));
    assert!(matches!(decide(&p, alice.clone(), "presence-room-42", &facts),
        Decision::Deny { reason: DenyReason::LookupUnavailable(m), .. } if m == "pool exhausted"));
    let mut facts = Facts::none();
    facts.set_query(0, Fact::Refused("PostgreSQL refused a parameter".into()));
    assert!(matches!(
        decide(&p, alice.clone(), "presence-room-42", &facts),
        Decision::Deny { reason: DenyReason::RuleError(_), .. }
    ));
    assert!(matches!(
        decide(&p, alice, "presence-room-42", &Facts::none()),
        Decision::Deny { reason: DenyReason::RuleError(_), .. }
    ));
    // A rule without lookups needs no facts.
    let plain = compile("rules: [ { name: a, channel: private-a, allow: 'true' } ]");
    assert!(decide(&plain, json!({}), "private-a", &Facts::none()).is_allow());
}

#[test]
fn the_hook_decides_and_its_denial_and_failure_are_named() {
    let p = compile(ROOMS);
    let bob = json!({"sub": "bob"});
    let mut facts = Facts::none();
    facts.set_hook(1, Fact::Found(Arc::new(FactValue::hook(true, None, None))));
    assert!(decide(&p, bob.clone(), "private-doc-7", &facts).is_allow());
    let mut facts = Facts::none();
    facts.set_hook(1, Fact::Found(Arc::new(FactValue::hook(false, Some("not_a_viewer"), None))));
    let d = decide(&p, bob.clone(), "private-doc-7", &facts);
    assert!(
        matches!(&d, Decision::Deny { reason: DenyReason::HookDenied(Some(r)), .. } if r == "not_a_viewer"),
        "{d:?}"
    );
    assert_eq!(d_reason(&d), Reason::HookDenied);
    let mut facts = Facts::none();
    facts.set_hook(1, Fact::Unavailable("timeout".into()));
    assert_eq!(d_reason(&decide(&p, bob, "private-doc-7", &facts)), Reason::HookUnavailable);
    // With its own `allow`, a false hook answer is a plain rule denial, and user_info reaches presence
    // only through the rule's fields.
    let own = compile(
        r#"
rules:
  - name: r
    channel: presence-doc-{doc}
    hook: { url: "http://127.0.0.1:3000/decide" }
    allow: hook.allow && token.verified
    presence: { user_info: { name: hook.user_info.name } }
"#,
    );
    let mut facts = Facts::none();
    let info = json!({"name": "Bob", "email": "bob@example.com"});
    facts.set_hook(0, Fact::Found(Arc::new(FactValue::hook(true, None, info.as_object()))));
    match decide(&own, json!({"sub": "bob", "verified": true}), "presence-doc-1", &facts) {
        Decision::Allow { data: Some(data), .. } => {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&data).unwrap(),
                json!({"user_id": "bob", "user_info": {"name": "Bob"}}),
                "email is not in the allow-list"
            );
        }
        other => panic!("{other:?}"),
    }
    let d = decide(&own, json!({"sub": "bob", "verified": false}), "presence-doc-1", &facts);
    assert_eq!(d_reason(&d), Reason::RuleDenied);
}

fn d_reason(d: &Decision) -> Reason {
    match d {
        Decision::Deny { reason, .. } => reason.reason(),
        Decision::Allow { .. } => panic!("allowed"),
    }
}

#[test]
fn parameters_are_the_requests_values() {
    let p = compile(
        r#"
rules:
  - name: r
    channel: private-room-{room}
    query: { source: db, sql: "SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text",
             params: [room, channel, socket_id, token.sub, token.n, token.absent] }
    allow: query.found
"#,
    );
    let token = crate::policy::TokenValue::from_json(&json!({"sub": "alice", "n": 42}));
    let socket = SocketId::parse("1.2").unwrap();
    let request = Request { token: &token, socket_id: &socket, origin: None };
    let channel = ChannelName::parse("private-room-x'; DROP")
        .unwrap_or_else(|_| ChannelName::parse("private-room-7").unwrap());
    let rules = p.rules_for(&channel);
    assert_eq!(rules.len(), 1);
    let params = p.query_params(rules[0].0, &rules[0].1, &request, &channel);
    let got: Vec<Option<&str>> = params.iter().map(|p| p.as_deref()).collect();
    assert_eq!(got, vec![Some("7"), Some("private-room-7"), Some("1.2"), Some("alice"), Some("42"), None]);
}

#[test]
fn policy_tests_stub_what_a_query_or_hook_finds() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("p.test.yaml");
    std::fs::write(
        &tests,
        r#"
tests:
  - name: a moderator joins
    claims: { sub: alice, name: Alice }
    channel: presence-room-42
    query: { rows: [ { role: moderator } ] }
    expect: allow
    channel_data: { user_id: alice, user_info: { name: Alice, role: moderator } }
  - name: a banned member is refused
    claims: { sub: mallory }
    channel: presence-room-42
    query: { rows: [ { role: banned } ] }
    expect: deny
    reason: rule_denied
  - name: the database is down
    claims: { sub: alice }
    channel: presence-room-42
    query: { unavailable: true }
    expect: deny
    reason: lookup_unavailable
  - name: the app refuses a document
    claims: { sub: bob }
    channel: private-doc-7
    hook: { allow: false, reason: not_a_viewer }
    expect: deny
    reason: hook_denied
  - name: a missing stub is a test failure
    claims: { sub: bob }
    channel: private-doc-7
    expect: allow
"#,
    )
    .unwrap();
    let outcomes = crate::policy::testing::run_file(&compile(ROOMS), &tests).unwrap();
    let failures: Vec<(&str, Option<&str>)> = outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.failure.as_deref()))
        .filter(|(_, f)| f.is_some())
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "a missing stub is a test failure");
    assert!(failures[0].1.unwrap().contains("give the test a `hook:`"), "{failures:?}");
}
