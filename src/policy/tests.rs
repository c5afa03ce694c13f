//! Policy compile and evaluation tests, data-driven through `check`.

use std::path::PathBuf;

use super::*;
use crate::pusher::{ChannelName, SocketId};

fn compile(yaml: &str) -> Policy {
    compile_with(yaml, DEFAULT_MAX_MEMBER_BYTES)
}

fn compile_with(yaml: &str, max: usize) -> Policy {
    match Policy::from_sources(&[(PathBuf::from("p.yaml"), yaml.to_owned())], max) {
        Ok(p) => p,
        Err(e) => panic!("policy does not compile: {e:#?}"),
    }
}

fn compile_errors(yaml: &str) -> Vec<String> {
    match Policy::from_sources(&[(PathBuf::from("p.yaml"), yaml.to_owned())], 1024) {
        Ok(_) => panic!("expected compile errors"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// Decides `channel` for `claims` and returns (allowed?, rule, data or reason code).
fn check(policy: &Policy, claims: serde_json::Value, channel: &str) -> (bool, Option<String>, String) {
    let token = TokenValue::from_json(&claims);
    let socket = SocketId::parse("1234.5678").unwrap();
    let req = Request { token: &token, socket_id: &socket, origin: Some("https://app.example.com") };
    let d = policy.authorize_channel(&req, &ChannelName::parse(channel).unwrap(), None);
    summarize(d)
}

fn signin(policy: &Policy, claims: serde_json::Value) -> (bool, Option<String>, String) {
    let token = TokenValue::from_json(&claims);
    let socket = SocketId::parse("1234.5678").unwrap();
    let req = Request { token: &token, socket_id: &socket, origin: None };
    summarize(policy.authenticate_user(&req, None))
}

fn summarize(d: Decision) -> (bool, Option<String>, String) {
    match d {
        Decision::Allow { rule, data } => (true, rule.map(|r| r.to_string()), data.unwrap_or_default()),
        Decision::Deny { rule, reason } => {
            (false, rule.map(|r| r.to_string()), reason.reason().as_str().to_owned())
        }
    }
}

const EXAMPLE: &str = r#"
rules:
  - name: own-notifications
    channel: private-user-{user}
    allow: user == token.sub
  - name: chat-rooms
    channel: presence-room-{room}
    allow: room in token.rooms
    presence:
      user_id: token.sub
      user_info: { name: token.name, avatar: token.picture }
  - name: team-secrets
    channel: private-encrypted-team-{team}
    allow: token.team == team && "member" in token.roles
  - name: lobby
    channel: presence-lobby
    allow: true
  - name: origin-bound
    channel: private-origin-{x}
    allow: request.origin == "https://app.example.com" && channel == "private-origin-" + x && socket_id != ""
user:
  id: token.sub
  user_info: { name: token.name }
  watchlist: token.friends
"#;

#[test]
fn own_channel_only() {
    let p = compile(EXAMPLE);
    let alice = serde_json::json!({"sub": "alice"});
    assert_eq!(
        check(&p, alice.clone(), "private-user-alice"),
        (true, Some("own-notifications".into()), String::new())
    );
    assert_eq!(
        check(&p, alice.clone(), "private-user-bob"),
        (false, Some("own-notifications".into()), "rule_denied".into())
    );
    assert_eq!(check(&p, alice, "private-user-alice-admin").2, "rule_denied");
}

#[test]
fn default_deny() {
    let p = compile(EXAMPLE);
    assert_eq!(
        check(&p, serde_json::json!({"sub": "a"}), "private-other"),
        (false, None, "no_rule_matched".into())
    );
    // A private rule never answers for an encrypted channel.
    assert_eq!(check(&p, serde_json::json!({"sub": "a"}), "private-encrypted-user-a").2, "no_rule_matched");
}

#[test]
fn presence_data_is_built_from_claims_in_policy_order() {
    let p = compile(EXAMPLE);
    let claims = serde_json::json!({"sub": "u1", "rooms": ["42", "7"], "picture": "p.png", "name": "Ann", "email": "x@y"});
    let (ok, _, data) = check(&p, claims, "presence-room-42");
    assert!(ok);
    assert_eq!(data, r#"{"user_id":"u1","user_info":{"name":"Ann","avatar":"p.png"}}"#);
}

#[test]
fn absent_user_info_claim_is_left_out() {
    let p = compile(EXAMPLE);
    let (ok, _, data) =
        check(&p, serde_json::json!({"sub": "u1", "rooms": ["1"], "name": "Ann"}), "presence-room-1");
    assert!(ok);
    assert_eq!(data, r#"{"user_id":"u1","user_info":{"name":"Ann"}}"#);
}

#[test]
fn missing_claim_in_allow_denies_with_rule_error() {
    let p = compile(EXAMPLE);
    assert_eq!(check(&p, serde_json::json!({"sub": "u1"}), "presence-room-1").2, "rule_error");
    assert!(!check(&p, serde_json::json!({"sub": "u1", "rooms": "1"}), "presence-room-1").0);
}

#[test]
fn presence_without_user_info_omits_it() {
    let p = compile(EXAMPLE);
    let (ok, _, data) = check(&p, serde_json::json!({"sub": "u9"}), "presence-lobby");
    assert!(ok);
    assert_eq!(data, r#"{"user_id":"u9"}"#);
}

#[test]
fn presence_user_id_must_be_usable() {
    let p = compile(EXAMPLE);
    assert_eq!(check(&p, serde_json::json!({"sub": ["x"]}), "presence-lobby").2, "invalid_user_id");
    assert_eq!(check(&p, serde_json::json!({}), "presence-lobby").2, "invalid_user_id");
    assert_eq!(check(&p, serde_json::json!({"sub": ""}), "presence-lobby").2, "invalid_user_id");
}

#[test]
fn presence_data_over_the_limit_is_refused() {
    let p = compile_with(EXAMPLE, 48);
    let claims = serde_json::json!({"sub": "u1", "rooms": ["1"], "name": "a".repeat(100)});
    assert_eq!(check(&p, claims, "presence-room-1").2, "presence_data_too_large");
    let small = serde_json::json!({"sub": "u1", "rooms": ["1"], "name": "a"});
    assert!(check(&p, small, "presence-room-1").0);
}

#[test]
fn encrypted_team_rule() {
    let p = compile(EXAMPLE);
    let member = serde_json::json!({"sub": "u", "team": "acme", "roles": ["member"]});
    assert!(check(&p, member.clone(), "private-encrypted-team-acme").0);
    assert!(!check(&p, member, "private-encrypted-team-other").0);
    let guest = serde_json::json!({"sub": "u", "team": "acme", "roles": ["guest"]});
    assert_eq!(check(&p, guest, "private-encrypted-team-acme").2, "rule_denied");
}

#[test]
fn request_channel_and_socket_variables() {
    let p = compile(EXAMPLE);
    assert!(check(&p, serde_json::json!({"sub": "a"}), "private-origin-z").0);
}

#[test]
fn signin_builds_user_data() {
    let p = compile(EXAMPLE);
    let (ok, _, data) = signin(&p, serde_json::json!({"sub": "alice", "name": "Alice", "friends": ["bob"]}));
    assert!(ok);
    assert_eq!(data, r#"{"id":"alice","user_info":{"name":"Alice"},"watchlist":["bob"]}"#);
    let (ok, _, data) = signin(&p, serde_json::json!({"sub": "alice", "friends": []}));
    assert!(ok);
    assert_eq!(data, r#"{"id":"alice","user_info":{},"watchlist":[]}"#);
    assert_eq!(signin(&p, serde_json::json!({"sub": "a b"})).2, "invalid_user_id");
}

#[test]
fn signin_without_user_block_is_refused() {
    let p = compile("rules: []\n");
    assert_eq!(signin(&p, serde_json::json!({"sub": "a"})), (false, None, "signin_disabled".into()));
}

#[test]
fn first_matching_rule_decides() {
    let p = compile(
        "rules:\n  - name: deny-all\n    channel: private-{x}\n    allow: false\n  - name: allow\n    channel: private-a\n    allow: true\n",
    );
    assert_eq!(
        check(&p, serde_json::json!({}), "private-a"),
        (false, Some("deny-all".into()), "rule_denied".into())
    );
}

#[test]
fn non_bool_allow_is_an_error() {
    let p = compile("rules:\n  - name: r\n    channel: private-{x}\n    allow: x\n");
    assert_eq!(check(&p, serde_json::json!({}), "private-a").2, "rule_error");
}

#[test]
fn macros_may_bind_their_own_variables() {
    let p =
        compile("rules:\n  - name: r\n    channel: private-{x}\n    allow: token.teams.exists(t, t == x)\n");
    assert!(check(&p, serde_json::json!({"teams": ["a", "b"]}), "private-b").0);
    assert!(!check(&p, serde_json::json!({"teams": ["a"]}), "private-b").0);
    // With any of CEL's whitespace (space, tab, CR, LF, form feed) around
    // the macro's parts.
    for ws in [" ", "\t", "\r\n", "\u{c}", " \n\t "] {
        let allow = format!("token.teams{ws}.{ws}exists{ws}({ws}t{ws},{ws}t == x)");
        let quoted = serde_json::to_string(&allow).unwrap();
        let yaml = format!("rules:\n  - name: r\n    channel: private-{{x}}\n    allow: {quoted}\n");
        let p = compile(&yaml);
        assert!(check(&p, serde_json::json!({"teams": ["a", "b"]}), "private-b").0, "{allow:?}");
        assert!(!check(&p, serde_json::json!({"teams": ["a"]}), "private-b").0, "{allow:?}");
    }
}

#[test]
fn compile_errors_name_file_line_and_rule() {
    let errs = compile_errors(
        "rules:\n  - name: good\n    channel: private-{x}\n    allow: true\n  - name: bad-cel\n    channel: private-a-{x}\n    allow: x ==\n  - name: bad-var\n    channel: private-b-{x}\n    allow: y == x\n  - name: bad-pattern\n    channel: public-{x}\n    allow: true\n  - name: presence-on-private\n    channel: private-c\n    allow: true\n    presence: { user_id: token.sub }\n",
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    // Expression errors point at the expression's own line, not the rule's.
    assert!(
        errs[0].starts_with("p.yaml:7:") && errs[0].contains("rule `bad-cel`") && errs[0].contains("CEL"),
        "{}",
        errs[0]
    );
    assert!(errs[1].starts_with("p.yaml:10:12:") && errs[1].contains("`y`"), "{}", errs[1]);
    assert!(errs[2].starts_with("p.yaml:11") && errs[2].contains("must start with"), "{}", errs[2]);
    assert!(errs[3].starts_with("p.yaml:14") && errs[3].contains("presence"), "{}", errs[3]);
}

#[test]
fn unknown_keys_and_duplicates_are_errors() {
    let errs = compile_errors("rules:\n  - name: a\n    channel: private-a\n    alow: true\n");
    assert!(errs[0].contains("unknown field `alow`") && errs[0].contains("did you mean `allow`"), "{errs:?}");
    let errs = compile_errors(
        "rules:\n  - name: a\n    channel: private-a\n    allow: true\n  - name: a\n    channel: private-b\n    allow: true\n",
    );
    assert!(errs[0].contains("defined twice"), "{errs:?}");
}

#[test]
fn several_broken_rules_are_all_reported() {
    let errs = compile_errors(
        "rules:\n  - name: a\n    channel: private-a\n    alow: true\n  - name: b\n    chanel: private-b\n    allow: true\n",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn trace_records_captures_and_values() {
    let p = compile(EXAMPLE);
    let token = TokenValue::from_json(&serde_json::json!({"sub": "u1", "rooms": ["42"], "name": "Ann"}));
    let socket = SocketId::parse("1.2").unwrap();
    let req = Request { token: &token, socket_id: &socket, origin: None };
    let mut trace = Trace::default();
    let d = p.authorize_channel(&req, &ChannelName::parse("presence-room-42").unwrap(), Some(&mut trace));
    assert!(d.is_allow());
    assert_eq!(trace.rule.as_deref(), Some("chat-rooms"));
    assert_eq!(trace.captures, vec![("room".to_owned(), "42".to_owned())]);
    assert_eq!(trace.skipped.len(), 1);
    assert_eq!(trace.steps[0].what, "allow");
    assert_eq!(trace.steps[0].outcome, Ok("true".to_owned()));
    assert!(trace.steps.iter().any(|s| s.what == "presence.user_info.avatar" && s.outcome.is_err()));
}

#[test]
fn oversized_and_deeply_nested_expressions_are_compile_errors() {
    // Found by the policy fuzz target: long operator chains and deep
    // parentheses overflowed the CEL parser's stack.
    let chain = std::iter::repeat_n("1==", 3000).collect::<String>() + "1";
    let errs =
        compile_errors(&format!("rules:\n  - name: a\n    channel: private-{{x}}\n    allow: {chain}\n"));
    assert!(errs[0].contains("longer than"), "{errs:?}");
    let chain = std::iter::repeat_n("1==", 100).collect::<String>() + "1";
    let errs =
        compile_errors(&format!("rules:\n  - name: a\n    channel: private-{{x}}\n    allow: {chain}\n"));
    assert!(errs[0].contains("operators"), "{errs:?}");
    // Postfix chains nest without brackets or operators (found by the fuzzer too).
    for chain in ["token".to_owned() + &"[0]".repeat(300), "token".to_owned() + &".f()".repeat(300)] {
        let errs =
            compile_errors(&format!("rules:\n  - name: a\n    channel: private-{{x}}\n    allow: {chain}\n"));
        assert!(errs[0].contains("operators"), "{errs:?}");
    }
    let parens = "(".repeat(40) + "true" + &")".repeat(40);
    let errs =
        compile_errors(&format!("rules:\n  - name: a\n    channel: private-{{x}}\n    allow: {parens}\n"));
    assert!(errs[0].contains("nests"), "{errs:?}");
    // Within the limits, compiling and evaluating on a small stack is fine.
    let ok = "(".repeat(8) + "x == \"a\" && true" + &")".repeat(8);
    let p = compile(&format!("rules:\n  - name: a\n    channel: private-{{x}}\n    allow: '{ok}'\n"));
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(&p, serde_json::json!({}), "private-a").0)
        .unwrap();
    assert!(handle.join().unwrap());
}

#[test]
fn lazy_session_claims_decide_as_the_whole_map_does() {
    let policy = compile(
        r#"
rules:
  - name: own
    channel: private-user-{user}
    allow: user == token.sub
  - name: rooms
    channel: presence-room-{room}
    allow: room in token.rooms && token.profile.tier == "gold"
    presence: { user_id: token.sub, user_info: { name: token.name, missing: token.nope } }
  - name: org
    channel: private-org-{org}
    allow: has(token.org) && token["org"] == org && size(token) > 2
  - name: missing
    channel: private-missing
    allow: token.nope == 1
"#,
    );
    let text = r#"{"sub":"u1","rooms":["7"],"name":"Ann","org":"acme","profile":{"tier":"gold"}}"#;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    let socket = SocketId::parse("1234.5678").unwrap();
    for channel in [
        "private-user-u1",
        "private-user-u2",
        "presence-room-7",
        "presence-room-8",
        "private-org-acme",
        "private-org-other",
        "private-missing",
    ] {
        let channel = ChannelName::parse(channel).unwrap();
        let decide = |token: &TokenValue| {
            policy.authorize_channel(&Request { token, socket_id: &socket, origin: None }, &channel, None)
        };
        let lazy = TokenValue::from_json_text(text).unwrap();
        assert_eq!(decide(&lazy), decide(&TokenValue::from_claims(&map)), "{channel:?}");
    }
    // The own-channel rule reads one claim: nothing else is converted.
    let lazy = TokenValue::from_json_text(text).unwrap();
    let channel = ChannelName::parse("private-user-u1").unwrap();
    assert!(
        policy
            .authorize_channel(&Request { token: &lazy, socket_id: &socket, origin: None }, &channel, None)
            .is_allow()
    );
    assert_eq!(lazy.converted(), (1, false));
}

/// Expressions on `token`, each answered through the lazy claims (member
/// lookups, the whole map on demand) and through a map built at once: the
/// same value or the same error, every time.
const TOKEN_EXPRESSIONS: &[&str] = &[
    "has(token.sub)",
    "has(token.missing)",
    "has(token.nested.a)",
    "has(token.nested.missing)",
    "has(token.z)",
    "token.sub",
    "token.missing",
    "token.nested.missing",
    "token[\"sub\"]",
    "token[\"missing\"]",
    "token[1]",
    "token[true]",
    "token[1.0]",
    "size(token)",
    "token.size()",
    "\"sub\" in token",
    "\"x\" in token",
    "1 in token",
    "token == {\"sub\": \"u1\"}",
    "{\"sub\": \"u1\", \"n\": 7, \"rooms\": [\"1\", \"2\"], \"nested\": {\"a\": 1}, \"f\": 1.5, \"t\": true, \"z\": null} == token",
    "token == token",
    "token != {}",
    "token.exists(k, k == \"sub\")",
    "token.all(k, k != \"\")",
    "token.filter(k, k == \"n\").size()",
    "token.map(k, k + \"!\").size()",
    "string(type(token))",
    "[token][0].sub",
    "{\"a\": token}.a.nested.a",
    "(true ? token : {}).rooms",
    "token",
    "token.nested",
    "has(token.rooms) && \"1\" in token.rooms",
    "token.sub + token.missing",
    "token.n + 1",
    "token.f * 2.0",
    "token[token.sub]",
    "token[\"ro\" + \"oms\"][1]",
    "token.rooms.exists(r, r == \"1\")",
    "has(token.nested) && token.nested.a == 1",
    "[{\"a\": 1}].exists(token, has(token.a))",
    "[1].map(token, token + 1)[0]",
];

#[test]
fn lazy_claims_answer_every_expression_as_the_claims_map_does() {
    let text = r#"{"sub":"u1","n":7,"rooms":["1","2"],"nested":{"a":1},"f":1.5,"t":true,"z":null}"#;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    let socket = SocketId::parse("1234.5678").unwrap();
    for expr in TOKEN_EXPRESSIONS {
        // The expression as `allow` (a bool, or a rule error) and as a
        // presence `user_info` value (its JSON, or left out).
        let yaml = format!(
            "rules:\n  - name: allow\n    channel: private-a\n    allow: |-\n      {expr}\n  \
             - name: value\n    channel: presence-v\n    allow: 'true'\n    presence:\n      \
             user_id: '\"u\"'\n      user_info:\n        v: |-\n          {expr}\n"
        );
        let policy = compile(&yaml);
        for channel in ["private-a", "presence-v"] {
            let channel = ChannelName::parse(channel).unwrap();
            let decide = |token: &TokenValue| {
                let mut trace = Trace::default();
                let request = Request { token, socket_id: &socket, origin: None };
                let decision = policy.authorize_channel(&request, &channel, Some(&mut trace));
                let steps: Vec<_> = trace.steps.into_iter().map(|s| (s.what, s.outcome)).collect();
                (decision, steps)
            };
            let lazy = TokenValue::from_json_text(text).unwrap();
            let whole = TokenValue::from_claims(&map);
            assert_eq!(decide(&lazy), decide(&whole), "{expr} on {channel:?}");
        }
    }
}

#[test]
fn expressions_that_read_token_by_member_are_recognised() {
    let by_member = |source: &str| {
        let program = cel::Program::compile(source).unwrap();
        compile::token_read_by_member(program.expression())
    };
    for yes in [
        "token.sub == user",
        "has(token.docs) && doc in token.docs",
        "token[\"org\"] == org",
        "token[token.sub] == 1",
        "token.profile.tier == \"gold\"",
        "[token.a, {\"k\": token.b}].size() > 0",
        "token.rooms.exists(r, r == room)",
        "true",
    ] {
        assert!(by_member(yes), "{yes}");
    }
    for no in [
        "size(token) > 1",
        "token == {}",
        "\"sub\" in token",
        "[token][0].sub == 1",
        "token.exists(k, k == \"a\")",
        "token.size() > 0",
        "(true ? token : {}).sub",
        "[1].exists(token, token == 1)",
        "{\"a\": token}.a.sub",
    ] {
        assert!(!by_member(no), "{no}");
    }
}

#[test]
fn has_on_lazy_claims_converts_one_member() {
    let policy = compile(
        "rules:\n  - name: docs\n    channel: private-doc-{doc}\n    \
         allow: has(token.docs) && doc in token.docs && !has(token.nope) && token[\"org\"] == \"acme\"\n",
    );
    let text = r#"{"sub":"u1","org":"acme","docs":["1","2"],"name":"Ann","rooms":["7"]}"#;
    let socket = SocketId::parse("1234.5678").unwrap();
    let lazy = TokenValue::from_json_text(text).unwrap();
    let request = Request { token: &lazy, socket_id: &socket, origin: None };
    assert!(
        policy.authorize_channel(&request, &ChannelName::parse("private-doc-2").unwrap(), None).is_allow()
    );
    assert!(
        !policy.authorize_channel(&request, &ChannelName::parse("private-doc-3").unwrap(), None).is_allow()
    );
    assert_eq!(lazy.converted(), (2, false), "docs and org, not the whole map");
}

/// The policy line of an expression error, the caret line under the
/// mistake, and the hint.
fn one_error(allow: &str) -> (String, String, String) {
    let errs =
        compile_errors(&format!("rules:\n  - name: r\n    channel: private-{{x}}\n    allow: {allow}\n"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let lines: Vec<&str> = errs[0].lines().collect();
    assert_eq!(lines.len(), 4, "message, expression, caret, hint: {}", errs[0]);
    assert_eq!(lines[1].trim(), allow.trim_matches('"'), "the expression on its own line: {}", errs[0]);
    (lines[0].to_owned(), lines[2].to_owned(), lines[3].trim().to_owned())
}

#[test]
fn a_single_equals_is_pointed_at_with_a_hint_for_double_equals() {
    let (first, caret, hint) = one_error("x = token.sub");
    // `    allow: ` is 11 columns; the `=` is the expression's third character.
    assert!(first.starts_with("p.yaml:4:14: rule `r`: `allow` does not parse as CEL"), "{first}");
    assert_eq!(caret, "      ^", "caret under the `=`");
    assert_eq!(hint, "hint: compare with `==`; a single `=` is not a CEL operator");
    // Inside a quoted scalar the column counts the quote; `=` in a string is no mistake.
    let (first, _, hint) = one_error("\"x = 'a=b'\"");
    assert!(first.starts_with("p.yaml:4:15:"), "{first}");
    assert!(hint.contains("`==`"), "{hint}");
    // Comparisons are not mistaken for a lone `=`.
    compile(
        "rules:\n  - name: r\n    channel: private-{x}\n    allow: x == 'a' && 1 <= 2 && 2 >= 1 && x != 'b'\n",
    );
}

#[test]
fn words_for_logic_get_a_hint_for_the_symbols() {
    let (first, caret, hint) = one_error("x == token.sub and true");
    assert!(first.starts_with("p.yaml:4:27:"), "{first}");
    assert_eq!(caret, "                   ^");
    assert_eq!(hint, "hint: CEL spells logic with symbols: write `&&` for `and`");
    let (_, _, hint) = one_error("x == 'a' or not false");
    assert_eq!(hint, "hint: CEL spells logic with symbols: write `||` for `or`, `!` for `not`");
}

#[test]
fn unknown_functions_are_compile_errors_with_a_caret() {
    let (first, caret, hint) = one_error("token.rooms.includes(x)");
    assert_eq!(first, "p.yaml:4:24: rule `r`: `allow` calls `includes`, which is not a CEL function");
    assert_eq!(caret, "                ^");
    assert!(hint.contains("`x in list`"), "{hint}");
    let (first, _, hint) = one_error("startswith(x, 'a')");
    assert!(first.contains("calls `startswith`"), "{first}");
    assert_eq!(hint, "hint: did you mean `startsWith`?");
    // Every other place an expression is written is checked the same way.
    let errs = compile_errors(
        "rules:\n  - name: p\n    channel: presence-{x}\n    allow: true\n    presence:\n      user_id: token.sub.trim()\nuser:\n  watchlist: token.friends.first()\n",
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with("p.yaml:6:26: rule `p`: `presence.user_id` calls `trim`"), "{}", errs[0]);
    assert!(errs[1].starts_with("p.yaml:8:28: user: `watchlist` calls `first`"), "{}", errs[1]);
}

#[test]
fn standard_functions_pass_the_check_and_evaluate() {
    for f in compile::STANDARD_FUNCTIONS {
        assert!(compile::is_function(f), "`{f}` is offered as a suggestion but is not a CEL function");
    }
    let p = compile(
        "rules:\n  - name: r\n    channel: private-{x}\n    allow: >-\n      x.startsWith('a') && x.endsWith('z') && x.contains('b') && x.matches('^a')\n      && size(x) > 2 && int('3') == 3 && string(1) == '1'\n      && token.rooms.exists(r, r == x) && token.rooms.all(r, size(r) > 0)\n      && token.rooms.filter(r, r == x).map(r, r + '!').size() == 1\n",
    );
    let (allowed, _, why) = check(&p, serde_json::json!({"rooms": ["abz"]}), "private-abz");
    assert!(allowed, "{why}");
}

#[test]
fn an_error_in_a_block_expression_points_at_its_line() {
    let errs = compile_errors(
        "rules:\n  - name: r\n    channel: private-{x}\n    allow: |\n      x == token.sub &&\n        y == 1\n",
    );
    assert!(errs[0].starts_with("p.yaml:6:9: rule `r`: `allow` uses `y`"), "{}", errs[0]);
    assert!(errs[0].contains("\n      y == 1\n      ^"), "{}", errs[0]);
    // A folded expression is one line for CEL: the value's position is kept.
    let errs = compile_errors(
        "rules:\n  - name: r\n    channel: private-{x}\n    allow: >-\n      x == token.sub &&\n      y == 1\n",
    );
    assert!(errs[0].starts_with("p.yaml:5:7: rule `r`: `allow` uses `y`"), "{}", errs[0]);
}

#[test]
fn expression_errors_never_panic_on_odd_text() {
    // Multibyte text, tabs, quotes and unterminated strings around the mistake.
    for allow in [
        "\"é = 'ü'\"",
        "'ß' == token.näme and true",
        "\"x\\t= 1\"",
        "token.a.includes('🙂')",
        "\"'unterminated = \"",
        "zz(1) && yy == 2",
    ] {
        let yaml = format!("rules:\n  - name: r\n    channel: private-{{x}}\n    allow: {allow}\n");
        let errs = compile_errors(&yaml);
        assert!(!errs.is_empty() && errs[0].starts_with("p.yaml:4"), "{allow}: {errs:?}");
    }
    // A name that is not the mistake, only part of it, is no anchor for the caret.
    let errs = compile_errors("rules:\n  - name: r\n    channel: private-{x}\n    allow: token.yy == yy\n");
    assert!(errs[0].starts_with("p.yaml:4:24:"), "{errs:?}");
}

/// The native shapes (`native.rs`) against the interpreter: a decision
/// without a trace may be answered natively, one with a trace is always the
/// interpreter's, so the two must agree on every policy, token and channel.
#[test]
fn native_shapes_decide_as_cel_does() {
    let policy = compile(
        r#"
rules:
  - name: user
    channel: private-user-{user}
    allow: user == token.sub
  - name: org
    channel: private-org-{org:[a-z0-9]+}-announcements
    allow: has(token.org) && token.org == org
  - name: docs
    channel: private-doc-{doc:[0-9]+}
    allow: has(token.docs) && doc in token.docs
  - name: either
    channel: private-either-{x}
    allow: x in token.docs || token.role == 'admin' && !(token.sub != x)
  - name: unguarded
    channel: private-raw-{x}
    allow: x in token.docs
  - name: channel-and-socket
    channel: private-cs-{x}
    allow: channel != 'private-cs-no' && socket_id == '1234.5678' && x != token.sub
  - name: rooms
    channel: presence-room-{room:[0-9]+}
    allow: has(token.rooms) && room in token.rooms
    presence:
      user_id: token.sub
      user_info: { name: token.name, fixed: "'x'", room: room, n: token.n }
user:
  allow: has(token.sub) && token.role != 'banned'
  id: token.sub
  user_info: { name: token.name }
"#,
    );
    let tokens = [
        r#"{"sub":"u1","org":"acme","docs":["1","2","u1"],"rooms":["7"],"name":"Ann","role":"admin"}"#,
        r#"{"sub":"u2","org":"other","docs":["3"],"rooms":["7","8"],"role":"user"}"#,
        r#"{"sub":"u1","docs":[1,2],"rooms":[7],"name":5,"n":1.5}"#,
        r#"{"sub":7,"org":7,"docs":"1","rooms":{"7":true},"name":null,"role":"banned"}"#,
        r#"{"sub":"","docs":["1",2,"3"],"rooms":["7",null],"name":"\u00e9\"q"}"#,
        r#"{"docs":[],"rooms":[]}"#,
        r#"{}"#,
        r#""not an object""#,
        r#"["1"]"#,
    ];
    let channels = [
        "private-user-u1",
        "private-user-u2",
        "private-org-acme-announcements",
        "private-doc-1",
        "private-doc-3",
        "private-either-u1",
        "private-either-9",
        "private-raw-1",
        "private-cs-u2",
        "private-cs-no",
        "presence-room-7",
        "presence-room-8",
        "private-nothing",
    ];
    let socket = SocketId::parse("1234.5678").unwrap();
    let mut decided = 0;
    for text in tokens {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        // Both representations: the verified session's lazy claims and the
        // map `policy test` and `explain` bind.
        let lazy = TokenValue::from_json_text(text);
        for token in lazy.iter().chain([&TokenValue::from_json(&json)]) {
            let req = Request { token, socket_id: &socket, origin: None };
            for channel in channels {
                let channel = ChannelName::parse(channel).unwrap();
                let fast = policy.authorize_channel(&req, &channel, None);
                let cel = policy.authorize_channel(&req, &channel, Some(&mut Trace::default()));
                assert_eq!(fast, cel, "{text} {channel:?}");
                decided += usize::from(fast.is_allow());
            }
            let fast = policy.authenticate_user(&req, None);
            let cel = policy.authenticate_user(&req, Some(&mut Trace::default()));
            assert_eq!(fast, cel, "sign-in {text}");
        }
    }
    assert!(decided > 10, "the table allows something ({decided})");
}

/// Random expressions of the native shapes (and a few that are not), each
/// decided natively and by the interpreter on tokens of every kind: the
/// decisions must be equal (a property test over `native.rs`'s grammar).
#[test]
fn random_native_shapes_decide_as_cel_does() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    fn term(pick: u64) -> &'static str {
        [
            "x",
            "channel",
            "socket_id",
            "'a'",
            "'1'",
            "'private-a'",
            "token.sub",
            "token.n",
            "token.absent",
            "token.docs",
        ][pick as usize]
    }
    fn cond(next: &mut impl FnMut(u64) -> u64, depth: u32) -> String {
        let leaf = depth == 0 || next(3) == 0;
        if leaf {
            return match next(6) {
                0 => format!("has(token.{})", ["sub", "docs", "absent", "nul"][next(4) as usize]),
                1 => format!("{} == {}", term(next(10)), term(next(10))),
                2 => format!("{} != {}", term(next(10)), term(next(10))),
                3 => format!(
                    "{} in token.{}",
                    term(next(10)),
                    ["docs", "mixed", "sub", "obj", "absent"][next(5) as usize]
                ),
                4 => ["true", "false"][next(2) as usize].to_owned(),
                // Not a native shape: the whole expression goes to CEL.
                _ => format!("size({}) > 1", term(next(6))),
            };
        }
        match next(3) {
            0 => format!("({} && {})", cond(next, depth - 1), cond(next, depth - 1)),
            1 => format!("({} || {})", cond(next, depth - 1), cond(next, depth - 1)),
            _ => format!("!({})", cond(next, depth - 1)),
        }
    }
    let tokens = [
        r#"{"sub":"a","docs":["a","1","private-a"],"mixed":["a",1],"obj":{"a":1},"n":1,"nul":null}"#,
        r#"{"sub":"1","docs":[],"mixed":[null,"1"],"obj":{},"n":"a"}"#,
        r#"{"sub":["a"],"docs":"a","n":1.5}"#,
        r#"{}"#,
        r#""a""#,
    ];
    let socket = SocketId::parse("1234.5678").unwrap();
    let mut native_kinds = 0;
    for _ in 0..150 {
        let allow = cond(&mut next, 3);
        let yaml = format!(
            "rules:\n  - name: r\n    channel: private-{{x}}\n    allow: \"{}\"\n",
            allow.replace('"', "\\\"")
        );
        let policy = compile(&yaml);
        native_kinds += usize::from(!allow.contains("size("));
        for text in tokens {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            let lazy = TokenValue::from_json_text(text);
            for token in lazy.iter().chain([&TokenValue::from_json(&json)]) {
                let req = Request { token, socket_id: &socket, origin: None };
                for channel in ["private-a", "private-1", "private-b"] {
                    let channel = ChannelName::parse(channel).unwrap();
                    let fast = policy.authorize_channel(&req, &channel, None);
                    let cel = policy.authorize_channel(&req, &channel, Some(&mut Trace::default()));
                    assert_eq!(fast, cel, "allow: {allow}; token {text}; {channel:?}");
                }
            }
        }
    }
    assert!(native_kinds > 50, "the generator mostly writes native shapes ({native_kinds})");
}
