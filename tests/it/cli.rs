//! The built binary: exit codes (0 ok, 1 failures, 2 usage, 78 config),
//! messages a person can act on, and the README's quickstart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_channelgate"))
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.env_remove("CHANNELGATE_CONFIG").output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

pub const QUICKSTART: &str = "examples/quickstart/channelgate.yaml";

#[test]
fn quickstart_config_passes_check() {
    let (code, out, err) = run(bin().current_dir(root()).args(["check", "--config", QUICKSTART]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok:"), "{out}");
}

#[test]
fn example_policies_pass_their_tests() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "expected at least three example policy sets, found {dirs:?}");
    dirs.push(root().join("examples/laravel-echo/policies"));
    let mut cmd = bin();
    cmd.arg("test").args(&dirs);
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{out}{err}");
    let last = out.lines().last().unwrap_or("");
    assert!(last.ends_with(" passed, 0 failed"), "{out}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 15, "only {passed} policy tests: {out}");
}

#[test]
fn quickstart_policy_tests_via_config() {
    let (code, out, err) = run(bin().current_dir(root()).args(["test", "--config", QUICKSTART]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
}

#[test]
fn failing_policy_test_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("p.test.yaml"),
        "tests:\n  - name: wrong expectation\n    claims: { sub: a }\n    channel: private-user-b\n    expect: allow\n",
    )
    .unwrap();
    let (code, out, _) = run(bin().arg("test").arg(dir.path()));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("wrong expectation") && out.contains("rule_denied"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("0 passed, 1 failed"), "{out}");
}

#[test]
fn broken_config_reports_every_error_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Setup::default());
    let path = dir.path().join("channelgate.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("  app_id:", "  app_idd:").replace("    leeway: 5s", "    leway: 5s");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("unknown field `app_idd`"), "{err}");
    assert!(err.contains("did you mean `app_id`?"), "{err}");
    assert!(err.contains("leway"), "both sections' errors are reported: {err}");
    assert!(err.contains("channelgate.yaml:"), "errors carry file:line: {err}");
}

#[test]
fn semantic_errors_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Setup::default());
    let path = dir.path().join("channelgate.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{ file: pusher.secret }", "{ env: CHANNELGATE_TEST_UNSET_VAR }")
        .replace("listen: 127.0.0.1:0", "listen: nowhere")
        .replace("[HS256]", "[HS256, RS256]")
        .replace("https://app.example.com]", "https://app.example.com/path]");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("master.key"), "c2hvcnQ=").unwrap();
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 78, "{err}");
    for needle in [
        "CHANNELGATE_TEST_UNSET_VAR` is not set",
        "listen `nowhere`",
        "`RS256` cannot be verified",
        "not an origin",
        "must decode to 32 bytes",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
    assert!(!err.contains("c2hvcnQ"), "an error echoed the master key: {err}");
}

#[test]
fn broken_policy_names_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        policy: "rules:\n  - name: ok\n    channel: private-{x}\n    allow: true\n  - name: broken\n    channel: private-a-{x}\n    allow: x ==\n".into(),
        ..Setup::default()
    };
    write_config(dir.path(), &setup);
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(dir.path().join("channelgate.yaml")));
    assert_eq!(code, 78, "{err}");
    // The expression's own line (7), not the rule's (5).
    assert!(err.contains("main.yaml:7:16: rule `broken`"), "{err}");
}

#[test]
fn inline_secret_is_refused_in_production() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Setup::default());
    let path = dir.path().join("channelgate.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("{ file: pusher.secret }", "{ value: inline-secret-xyz }");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 78);
    assert!(err.contains("mode: development"), "{err}");
    assert!(!err.contains("inline-secret-xyz"), "{err}");
}

#[test]
fn usage_error_exits_2() {
    let (code, _, _) = run(bin().args(["explain", "--config", QUICKSTART]).current_dir(root()));
    assert_eq!(code, 2);
    let (code, _, _) = run(bin().arg("frobnicate"));
    assert_eq!(code, 2);
}

#[test]
fn token_refuses_a_production_config() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Setup::default());
    let (code, out, err) =
        run(bin().args(["token", "--sub", "a", "--config"]).arg(dir.path().join("channelgate.yaml")));
    assert_eq!(code, 78, "{out}{err}");
    assert!(out.is_empty());
    assert!(err.contains("development"), "{err}");
}

fn quickstart_token(sub: &str, claims: &[&str]) -> String {
    let mut cmd = bin();
    cmd.current_dir(root()).args(["token", "--config", QUICKSTART, "--sub", sub]);
    for c in claims {
        cmd.args(["--claim", c]);
    }
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

#[test]
fn explain_shows_rule_captures_values_and_decision() {
    let t = quickstart_token("alice", &["name=Alice", r#"rooms=["42"]"#]);
    assert_eq!(t.split('.').count(), 3);
    let (code, out, err) = run(bin().current_dir(root()).args([
        "explain",
        "--config",
        QUICKSTART,
        "--token",
        &t,
        "--channel",
        "presence-room-42",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "rule:     chat-rooms",
        "capture:  room = \"42\"",
        "eval:     allow = true",
        "decision: ALLOW",
        "channel_data",
    ] {
        assert!(out.contains(needle), "missing `{needle}`:\n{out}");
    }
    let claims = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(claims.path(), r#"{"sub": "alice"}"#).unwrap();
    let (code, out, _) = run(bin()
        .current_dir(root())
        .args(["explain", "--config", QUICKSTART, "--channel", "private-user-bob", "--claims"])
        .arg(claims.path()));
    assert_eq!(code, 1);
    assert!(out.contains("decision: DENY (rule_denied"), "{out}");
    assert!(out.trim_end().ends_with("; the request would get 403"), "{out}");
    let (code, out, _) = run(bin()
        .current_dir(root())
        .args(["explain", "--config", QUICKSTART, "--channel", "private-nothing", "--claims"])
        .arg(claims.path()));
    assert_eq!(code, 1);
    assert!(out.contains("skipped:") && out.contains("no_rule_matched"), "{out}");
}

/// The README's first command and its curl, end to end with the binary.
#[test]
fn readme_quickstart_serves_a_signed_response() {
    let dir = tempfile::tempdir().unwrap();
    // Same config, but on an ephemeral port so tests never collide.
    let qs = root().join("examples/quickstart");
    let text = std::fs::read_to_string(qs.join("channelgate.yaml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    copy_dir(&qs.join("policies"), &dir.path().join("policies"));
    std::fs::write(dir.path().join("channelgate.yaml"), text).unwrap();
    let mut child = bin()
        .args(["serve", "--log-format", "json", "--config"])
        .arg(dir.path().join("channelgate.yaml"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The listen line carries the bound address.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let addr = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    let t = quickstart_token("alice", &[]);
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{addr}/pusher/auth"),
            "-H",
            &format!("Authorization: Bearer {t}"),
        ])
        .args(["-d", "socket_id=1234.5678", "-d", "channel_name=private-user-alice"])
        .output();
    // Stop the server by PID before asserting, so a failure never leaks it.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let out = out.expect("curl is installed");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(body["auth"].as_str().unwrap().starts_with("quickstart-key:"), "{body}");
    assert_eq!(body["auth"].as_str().unwrap().len(), "quickstart-key:".len() + 64);
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_secret_written_inline_as_a_string_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &Setup::default());
    let path = dir.path().join("channelgate.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap().replace("{ file: pusher.secret }", "plain-text-secret-9c1d");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 78);
    assert!(err.contains("a bare string is not read as a secret"), "{err}");
    assert!(!err.contains("plain-text-secret-9c1d") && !out.contains("plain-text-secret-9c1d"), "{err}");
}

#[test]
fn ed25519_is_accepted_as_an_algorithm_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Setup::default());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(dir.path().join("ed.pem"), key.public_key_pem()).unwrap();
    let with = |algorithms: &str| {
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("algorithms: [HS256]", &format!("algorithms: [{algorithms}]"))
            .replace("secret: { file: jwt.secret }", "public_key: { file: ed.pem }");
        std::fs::write(&config, text).unwrap();
        run(bin().arg("check").arg("--config").arg(&config))
    };
    let (code, out, err) = with("Ed25519");
    assert_eq!(code, 0, "{out}{err}");
    write_config(dir.path(), &Setup::default());
    let (code, _, err) = with("Ed448");
    assert_eq!(code, 78);
    assert!(err.contains("`Ed448` is not supported") && err.contains("Ed25519"), "{err}");
}

#[test]
fn publish_client_and_webhook_signing_mistakes_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "admin:\n  listen: 127.0.0.1:0\npublish:\n  clients:\n    - key: same-as-real\n      secret: { file: jwt.secret }\n      encryption_master_key: { file: master.key }\n    - key: bad-id\n      secret: { file: jwt.secret }\n      app_id: \"12/3\"\n    - key: bad-id\n      secret: { file: jwt.secret }\nwebhooks:\n  forward_to: http://127.0.0.1:9/hooks\n  sign_with: nobody\n";
    write_config(dir.path(), &Setup { extra_config: extra.into(), ..Setup::default() });
    let path = dir.path().join("channelgate.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "  secret: { file: pusher.secret }\n",
        "  secret: { file: pusher.secret }\n  api_url: http://127.0.0.1:9\n",
    );
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 78, "{err}");
    for needle in [
        "publish client encryption_master_key is the real pusher.encryption_master_key",
        "publish client app_id `12/3` must be 1 to 64 letters, digits",
        "publish client key `bad-id` is listed twice",
        "webhooks.sign_with `nobody` is not a publish client key",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
    assert!(!err.contains(MASTER_KEY_B64), "an error echoed the master key: {err}");

    // A local master key needs the real one to re-seal with.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("local.master"), "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=").unwrap();
    let extra = "admin:\n  listen: 127.0.0.1:0\npublish:\n  clients:\n    - key: sdk\n      secret: { file: jwt.secret }\n      encryption_master_key: { file: local.master }\n";
    write_config(dir.path(), &Setup { extra_config: extra.into(), master_key: false, ..Setup::default() });
    let path = dir.path().join("channelgate.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "  secret: { file: pusher.secret }\n",
        "  secret: { file: pusher.secret }\n  api_url: http://127.0.0.1:9\n",
    );
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("a local encryption_master_key needs pusher.encryption_master_key"), "{err}");
}

/// The README's server-SDK examples are the files the e2e suite runs
/// (`tests/e2e/sdk.mjs`), word for word, and so is the Laravel policy rule.
#[test]
fn readme_shows_the_server_sdk_examples_that_the_e2e_suite_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (file, lang) in
        [("examples/server-sdk/publish.js", "js"), ("examples/server-sdk/publish.py", "python")]
    {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let block = format!("```{lang}\n{text}```\n");
        assert!(readme.contains(&block), "README.md does not show {file} as it is");
    }
    let laravel = std::fs::read_to_string(root().join("examples/laravel-echo/README.md")).unwrap();
    let policy = std::fs::read_to_string(root().join("examples/laravel-echo/policies/laravel.yaml")).unwrap();
    for line in ["channel: presence-chat.{room:[0-9]+}", "user_info: { id: token.sub, name: token.name }"] {
        assert!(
            laravel.contains(line) && policy.contains(line),
            "the Laravel example and its policy differ on `{line}`"
        );
    }
}

/// build.rs links the binary with packed relative relocations: the loader
/// reads a few KiB of them at start instead of 1 MiB (44,000 entries of
/// `.rela.dyn`), which stayed resident. Without the packing, nearly every
/// relocation is a `RELA` one and `RELACOUNT` is in the tens of thousands.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_packs_its_relative_relocations() {
    if std::env::var_os("CHANNELGATE_NO_RELR").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let out = Command::new("readelf").args(["-dW", env!("CARGO_BIN_EXE_channelgate")]).output().unwrap();
    assert!(out.status.success(), "readelf: {}", String::from_utf8_lossy(&out.stderr));
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let value = |tag: &str| {
        dynamic
            .lines()
            .find(|l| l.contains(&format!("({tag})")))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
    };
    // A linker without `-z pack-relative-relocs` (binutils before 2.38)
    // ignores it with a warning: build with CHANNELGATE_NO_RELR=1 there.
    assert!(value("RELR").is_some(), "no DT_RELR (binutils 2.38 or lld 15 needed): {dynamic}");
    let size: u64 = value("RELRSZ").and_then(|v| v.parse().ok()).expect("RELRSZ");
    let rela: u64 = value("RELASZ").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(rela < 64 * 1024, "RELASZ {rela} bytes: relative relocations were not packed");
    assert!(size < 64 * 1024, "RELRSZ {size} bytes");
}
