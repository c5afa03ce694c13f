//! Policy tests (`*.test.yaml`), run by `channelgate test` like `opa test`.
//!
//! ```yaml
//! tests:
//!   - name: alice reads her own notifications
//!     claims: { sub: alice }
//!     channel: private-user-alice
//!     expect: allow
//!     rule: own-notifications            # optional
//!   - name: sign-in
//!     claims: { sub: alice, name: Alice }
//!     signin: true
//!     expect: allow
//!     user_data: { id: alice, user_info: { name: Alice } }   # optional
//! ```
//! `channel_data` / `user_data` are compared as JSON values (key order
//! aside); `reason` is the deny reason code.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::value::TokenValue;
use super::{Decision, Policy, Request};
use crate::pusher::{ChannelName, SocketId};
use crate::yaml::{self, SourceError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestFile {
    tests: Vec<Spanned<Case>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    signin: bool,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    expect: Expect,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    channel_data: Option<serde_json::Value>,
    #[serde(default)]
    user_data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

/// The result of one test case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The test's name.
    pub name: String,
    /// Where it is written.
    pub file: PathBuf,
    /// Its line.
    pub line: u64,
    /// `None` when it passed; what differed otherwise.
    pub failure: Option<String>,
}

/// Finds the test files for a path: a `*.test.yaml` file itself, the
/// `*.test.yaml` files of a folder, or `x.test.yaml` beside a policy `x.yaml`.
pub fn test_files(path: &Path) -> Vec<PathBuf> {
    let is_test = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_test(p)).collect())
            .unwrap_or_default();
        files.sort();
        return files;
    }
    if is_test(path) {
        return vec![path.to_owned()];
    }
    let sibling = path.with_extension("test.yaml");
    if sibling.is_file() { vec![sibling] } else { Vec::new() }
}

/// Runs every case of one test file against `policy`.
pub fn run_file(policy: &Policy, file: &Path) -> Result<Vec<Outcome>, Vec<SourceError>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![SourceError::new(file, 0, 0, format!("cannot read: {e}"))])?;
    let doc: TestFile = yaml::from_str(file, &text)?;
    let mut out = Vec::with_capacity(doc.tests.len());
    for case in doc.tests {
        let line = case.referenced.line();
        let case = case.value;
        let failure = run_case(policy, &case).err();
        out.push(Outcome { name: case.name, file: file.to_owned(), line, failure });
    }
    Ok(out)
}

fn run_case(policy: &Policy, case: &Case) -> Result<(), String> {
    let socket = SocketId::parse(case.socket_id.as_deref().unwrap_or("1234.5678"))
        .map_err(|e| format!("bad socket_id in the test: {e}"))?;
    let token = TokenValue::from_claims(&case.claims);
    let request = Request { token: &token, socket_id: &socket, origin: case.origin.as_deref() };
    let decision = match (&case.channel, case.signin) {
        (Some(channel), false) => {
            let channel = ChannelName::parse(channel).map_err(|e| format!("bad channel in the test: {e}"))?;
            policy.authorize_channel(&request, &channel, None)
        }
        (None, true) => policy.authenticate_user(&request, None),
        _ => return Err("a test needs exactly one of `channel` or `signin: true`".into()),
    };
    let got = if decision.is_allow() { Expect::Allow } else { Expect::Deny };
    if got != case.expect {
        let why = match &decision {
            Decision::Deny { reason, .. } => format!(" ({}: {reason})", reason.reason()),
            Decision::Allow { .. } => String::new(),
        };
        return Err(format!(
            "expected {:?}, got {:?}{why}{}",
            case.expect,
            got,
            decision.rule().map(|r| format!(" by rule `{r}`")).unwrap_or_default()
        ));
    }
    if let Some(rule) = &case.rule
        && decision.rule() != Some(rule.as_str())
    {
        return Err(format!("expected rule `{rule}`, got {:?}", decision.rule()));
    }
    match &decision {
        Decision::Deny { reason, .. } => {
            if let Some(expected) = &case.reason
                && reason.reason() != expected.as_str()
            {
                return Err(format!("expected reason `{expected}`, got `{}`", reason.reason()));
            }
        }
        Decision::Allow { data, .. } => {
            let expected = if case.signin { &case.user_data } else { &case.channel_data };
            if let Some(expected) = expected {
                let got: serde_json::Value = data
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| format!("produced invalid JSON: {e}"))?
                    .unwrap_or(serde_json::Value::Null);
                if &got != expected {
                    return Err(format!("expected data {expected}, got {got}"));
                }
            }
        }
    }
    Ok(())
}
