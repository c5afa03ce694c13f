//! What a newcomer trips over, through the built binary: every message that
//! says how to fix a mistake (YAML, CEL, TLS files, issuer certificates),
//! `check --fetch` against a real HTTPS issuer, warnings at `check`, `serve`
//! start and reload, `explain` reporting the real status, policy sets,
//! `--help`, `token --claim`, `health`, and the `deploy/` example.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;

use crate::cli::{QUICKSTART, bin, root, run};
use crate::support::{Setup, write_config};

/// A config from `write_config` with its `session.jwt` block replaced.
fn config_with_jwt(dir: &Path, jwt: &str) -> PathBuf {
    let path = write_config(dir, &Setup::default());
    let text = std::fs::read_to_string(&path).unwrap();
    let (start, end) = (text.find("  jwt:\n").unwrap(), text.find("cors:").unwrap());
    std::fs::write(&path, format!("{}{jwt}{}", &text[..start], &text[end..])).unwrap();
    path
}

fn check(config: &Path, extra: &[&str]) -> (i32, String, String) {
    run(bin().arg("check").arg("-c").arg(config).args(extra))
}

// ---- YAML, CEL and TLS file mistakes --------------------------------------

#[test]
fn yaml_mistakes_say_where_the_key_belongs_and_name_tabs_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &Setup::default());
    let good = std::fs::read_to_string(&path).unwrap();

    // A key written one level too shallow.
    std::fs::write(&path, good.replace("    leeway: 5s\n", "  fetch_timeout: 5s\n")).unwrap();
    let (code, _, err) = check(&path, &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("unknown field `fetch_timeout`"), "{err}");
    assert!(
        err.contains("hint: `fetch_timeout` belongs under `session.jwt`: indent it below `jwt:`"),
        "{err}"
    );

    // A tab in the indentation.
    std::fs::write(&path, good.replace("  key: it-key\n", "\tkey: it-key\n")).unwrap();
    let tab_line = good.lines().position(|l| l == "  key: it-key").unwrap() + 1;
    let (code, _, err) = check(&path, &[]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!(
            "hint: line {tab_line} is indented with a tab (column 1); YAML indents with spaces only"
        )),
        "{err}"
    );

    // A key written twice: both lines, and no library option.
    std::fs::write(&path, good.replace("policies: policies\n", "policies: policies\npolicies: other\n"))
        .unwrap();
    let first = good.lines().position(|l| l == "policies: policies").unwrap() + 1;
    let (code, _, err) = check(&path, &[]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(&format!(":{}:1: `policies` is written twice in the same mapping", first + 1)),
        "{err}"
    );
    assert!(
        err.contains(&format!("hint: keep one of the two `policies:` lines (the other is line {first})")),
        "{err}"
    );
    assert!(!err.contains("DuplicateKeyPolicy") && !err.contains("Options"), "{err}");
}

#[test]
fn a_keep_alive_timeout_of_zero_is_refused_with_the_value_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "http:\n  keep_alive_timeout: 0s\n";
    let path = write_config(dir.path(), &Setup { extra_config: extra.into(), ..Setup::default() });
    let (code, _, err) = check(&path, &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("http.keep_alive_timeout must be longer than 0"), "{err}");
    assert!(err.contains("longer than the idle timeout of the proxy in front"), "{err}");
}

#[test]
fn cel_mistakes_fail_check_at_the_allow_line_with_a_caret_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "rules:\n  - name: own\n    channel: private-user-{user}\n    allow: user = token.sub\n  - name: rooms\n    channel: private-room-{room}\n    allow: token.rooms.includes(room)\n  - name: both\n    channel: private-both-{x}\n    allow: x == token.sub and true\n";
    let path = write_config(dir.path(), &Setup { policy: policy.into(), ..Setup::default() });
    let (code, _, err) = check(&path, &[]);
    assert_eq!(code, 78, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}:\n{err}"))
    };

    let i = at("main.yaml:4:17: rule `own`: `allow` does not parse as CEL");
    assert_eq!(lines[i + 1], "    user = token.sub", "{err}");
    assert_eq!(lines[i + 2], "         ^", "{err}");
    assert_eq!(lines[i + 3], "  hint: compare with `==`; a single `=` is not a CEL operator", "{err}");

    // `includes` would only fail at request time (rule_error); it fails check.
    let i = at("main.yaml:7:24: rule `rooms`: `allow` calls `includes`, which is not a CEL function");
    assert_eq!(lines[i + 1], "    token.rooms.includes(room)", "{err}");
    assert_eq!(lines[i + 2], "                ^", "{err}");
    assert!(lines[i + 3].contains("`x in list`"), "{err}");

    let i = at("main.yaml:10:27: rule `both`");
    assert_eq!(lines[i + 3], "  hint: CEL spells logic with symbols: write `&&` for `and`", "{err}");
}

fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn tls_file_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "tls");
    let (_, other_key) = self_signed(dir.path(), "other");
    for (c, k, needle) in [
        (&cert, &cert, "tls.key `{k}`: this file holds a certificate, not a private key"),
        (&key, &key, "tls.cert `{c}`: this file holds a private key, not a certificate"),
        (&cert, &other_key, "the key in `{k}` does not belong to the certificate in `{c}`"),
    ] {
        let conf = tempfile::tempdir().unwrap();
        let path =
            write_config(conf.path(), &Setup { tls: Some((c.clone(), k.clone())), ..Setup::default() });
        let (code, _, err) = check(&path, &[]);
        assert_eq!(code, 78, "{err}");
        let needle = needle.replace("{k}", &k.display().to_string()).replace("{c}", &c.display().to_string());
        assert!(err.contains(&needle), "missing `{needle}` in:\n{err}");
    }
    let conf = tempfile::tempdir().unwrap();
    let path = write_config(conf.path(), &Setup { tls: Some((cert, key)), ..Setup::default() });
    assert_eq!(check(&path, &[]).0, 0);
}

// ---- warnings --------------------------------------------------------------

#[test]
fn check_warns_about_an_issuer_without_issuer_or_audience() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        config_with_jwt(dir.path(), "  jwt:\n    algorithms: [HS256]\n    secret: { file: jwt.secret }\n");
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("warning: session.jwt: no `issuer` is set, so tokens of any issuer"), "{err}");
    assert!(err.contains("warning: session.jwt: no `audience` is set"), "{err}");
    assert!(err.contains("2 warning(s) in "), "{err}");
    assert!(out.is_empty(), "{out}");
}

/// A key source URL with credentials is refused, and the message does not
/// print them (the URL would otherwise be logged and shown by /readyz).
#[test]
fn check_refuses_a_key_source_url_with_credentials_without_printing_them() {
    for (jwt, says) in [
        (
            "  jwt:\n    algorithms: [RS256]\n    jwks_url: https://bob:hunter2@idp.example/jwks\n",
            "session.jwt.jwks_url holds a user name or password",
        ),
        (
            "  jwt:\n    algorithms: [RS256]\n    discovery: true\n    issuer: https://bob:hunter2@idp.example/\n",
            "session.jwt: issuer holds a user name or password",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = config_with_jwt(dir.path(), jwt);
        let (code, out, err) = check(&path, &[]);
        assert_eq!(code, 78, "{out}{err}");
        assert!(err.contains(says), "{err}");
        assert!(err.contains("drop the credentials"), "{err}");
        assert!(!err.contains("hunter2") && !out.contains("hunter2"), "the password is printed:\n{out}{err}");
    }
}

/// A `channelgate serve` child on an ephemeral port, its stderr lines on a
/// channel; stopped by PID on drop.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl Served {
    fn start(config: &Path) -> Served {
        Self::start_with_env(config, &[])
    }

    fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Served {
        let mut child = bin()
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("CHANNELGATE_CONFIG")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut served = Served { child, lines, addr: String::new() };
        let line = served.wait_for("listening on http://");
        served.addr =
            line.split("listening on http://").nth(1).unwrap().split(' ').next().unwrap().to_owned();
        served
    }

    /// The next stderr line containing `needle` (lines before it are skipped).
    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with `{needle}`: {e}"),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_logs_warnings_at_start_and_lint_warnings_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_jwt(
        dir.path(),
        "  jwt:\n    algorithms: [HS256]\n    secret: { file: jwt.secret }\n    issuer: https://issuer.test\n",
    );
    // Watch the files (the SIGHUP handler is installed at a moment no log
    // line marks; the watcher is in place once a request was answered).
    let text = std::fs::read_to_string(&path).unwrap().replace("reload:\n  watch: false\n", "");
    std::fs::write(&path, text).unwrap();
    let served = Served::start(&path);
    let line = served.wait_for("no `audience` is set");
    assert!(line.contains("WARN"), "{line}");
    let (code, _, err) = run(bin().args(["health", "--url", &format!("http://{}/healthz", served.addr)]));
    assert_eq!(code, 0, "{err}");

    // A reload with a shadowed rule logs the lint, as `check` prints it.
    let policy = dir.path().join("policies/main.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let shadowed = text.replace(
        "rules:\n",
        "rules:\n  - name: everything\n    channel: private-{anything}\n    allow: \"false\"\n",
    );
    std::fs::write(&policy, shadowed).unwrap();
    served.wait_for("configuration reloaded");
    let line = served.wait_for("warning[shadowed]");
    assert!(line.contains("rule `own`") && line.contains("never reached"), "{line}");
}

// ---- issuer keys: check --fetch and explain ---------------------------------

/// An HTTPS JWKS server on 127.0.0.1 (its own thread and runtime) serving
/// one ES256 key on every path; stopped on drop.
struct TlsJwks {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsJwks {
    fn start(chain_pem: &str, key_pem: &str) -> TlsJwks {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .map(Result::unwrap)
                .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = kp.public_key_raw().to_vec();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let body = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])}]})
        .to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => r.unwrap(),
                        _ = &mut stopped => return,
                    };
                    let (acceptor, body) = (acceptor.clone(), body.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let svc =
                            hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                                let body = body.clone();
                                async move {
                                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                        http_body_util::Full::new(bytes::Bytes::from(body)),
                                    ))
                                }
                            });
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                    });
                }
            });
        });
        TlsJwks { port, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for TlsJwks {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A CA and a localhost certificate it signs: (CA pem, leaf pem, leaf key pem).
fn ca_and_leaf() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn jwks_config(dir: &Path, url: &str, ca_file: Option<&str>) -> PathBuf {
    let ca = ca_file.map(|c| format!("    ca_file: {c}\n")).unwrap_or_default();
    config_with_jwt(
        dir,
        &format!(
            "  jwt:\n    algorithms: [ES256]\n    jwks_url: {url}\n    issuer: https://issuer.test\n    audience: it-app\n{ca}"
        ),
    )
}

#[test]
fn check_fetch_explains_an_untrusted_issuer_ca_and_passes_with_ca_file() {
    let (ca, leaf, leaf_key) = ca_and_leaf();
    let issuer = TlsJwks::start(&leaf, &leaf_key);
    let url = format!("https://localhost:{}/jwks", issuer.port);
    let dir = tempfile::tempdir().unwrap();

    // Without --fetch the config is valid: the mistake only shows when fetching.
    let path = jwks_config(dir.path(), &url, None);
    assert_eq!(check(&path, &[]).0, 0);
    let (code, out, err) = check(&path, &["--fetch"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("error: fetching the keys of {url}")), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("(hint: the issuer's certificate is signed by a CA this machine does not trust: give that CA's certificate (PEM) as `session.jwt.ca_file`)"), "{err}");
    assert!(err.contains("1 failed fetch(es)"), "{err}");

    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    let path = jwks_config(dir.path(), &url, Some("ca.pem"));
    let (code, out, err) = check(&path, &["--fetch"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("fetch:    {url} (issuer https://issuer.test): ok, 1 key(s)")), "{out}");
    assert!(out.contains("ok: "), "{out}");
}

#[test]
fn check_fetch_explains_a_self_signed_ca_served_as_the_issuers_certificate() {
    // What `openssl req -x509` makes by default: a self-signed CA:TRUE certificate.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let issuer = TlsJwks::start(&cert.pem(), &key.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.pem"), cert.pem()).unwrap();
    let url = format!("https://localhost:{}/jwks", issuer.port);
    let path = jwks_config(dir.path(), &url, Some("idp.pem"));
    let (code, _, err) = check(&path, &["--fetch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("CaUsedAsEndEntity"), "{err}");
    assert!(err.contains("presents a CA certificate (basicConstraints CA:TRUE) as its own"), "{err}");
}

#[test]
fn the_certificate_recipe_makes_a_ca_and_a_server_certificate_that_work() {
    let certs = tempfile::tempdir().unwrap();
    let status = Command::new("sh")
        .arg(root().join("deploy/certs.sh"))
        .arg(certs.path())
        .args(["localhost", "127.0.0.1"])
        .status()
        .expect("sh is installed");
    assert!(status.success(), "deploy/certs.sh failed: is openssl installed? (apt-get install openssl)");
    let read = |f: &str| std::fs::read_to_string(certs.path().join(f)).unwrap();
    // The identity provider serves the recipe's server certificate; channelgate trusts its CA.
    let issuer = TlsJwks::start(&read("tls.crt"), &read("tls.key"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{}/jwks", issuer.port);
    let ca = certs.path().join("ca.crt").display().to_string();
    let path = jwks_config(dir.path(), &url, Some(&ca));
    let (code, out, err) = check(&path, &["--fetch"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok, 1 key(s)"), "{out}");
    // And channelgate serves HTTPS with the same files.
    let conf = tempfile::tempdir().unwrap();
    let tls = Some((certs.path().join("tls.crt"), certs.path().join("tls.key")));
    let path = write_config(conf.path(), &Setup { tls, ..Setup::default() });
    let (code, out, err) = check(&path, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn explain_reports_the_status_the_server_sends_and_the_last_fetch_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/jwks", closed_port());
    let path = jwks_config(dir.path(), &url, None);
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "it-app",
        "exp": crate::support::now() + 600});
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let (code, out, err) =
        run(bin().args(["explain", "--channel", "private-user-alice", "--token", &token, "-c"]).arg(&path));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("reason jwks_unavailable); the request would get 503"), "{out}");
    assert!(!out.contains("would get 401"), "{out}");
    let keys = out.lines().find(|l| l.starts_with("keys:")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        keys.contains(&format!(
            "{url} (issuer https://issuer.test): none; last fetch error: cannot fetch {url}"
        )),
        "{keys}"
    );
    assert!(
        keys.contains("Connection refused") && keys.contains("hint: nothing accepts connections"),
        "{keys}"
    );
}

// ---- the command line ------------------------------------------------------

#[test]
fn test_runs_each_policy_set_of_a_folder_with_its_own_tests() {
    // This repository's own folder of sets.
    let (code, out, err) = run(bin().current_dir(root()).args(["test", "policies"]));
    assert_eq!(code, 0, "{out}{err}");
    for set in ["chat", "notifications", "teams"] {
        assert!(out.contains(&format!("ok    policies/{set}/{set}.test.yaml:")), "{set}:\n{out}");
    }
    let last = out.lines().last().unwrap();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(last.ends_with(" passed, 0 failed") && passed >= 30, "{out}");

    // A broken set: its errors come before the summary, on the same stream.
    let dir = tempfile::tempdir().unwrap();
    for set in ["a-good", "b-broken"] {
        std::fs::create_dir_all(dir.path().join(set)).unwrap();
    }
    std::fs::write(
        dir.path().join("a-good/p.yaml"),
        "rules:\n  - name: r\n    channel: private-{x}\n    allow: \"true\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a-good/p.test.yaml"),
        "tests:\n  - name: any\n    channel: private-a\n    expect: allow\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b-broken/p.yaml"),
        "rules:\n  - name: r\n    channel: private-{x}\n    allow: x =\n",
    )
    .unwrap();
    let (code, out, _) = run(bin().arg("test").arg(dir.path()));
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let error =
        lines.iter().position(|l| l.starts_with("error: ") && l.contains("b-broken/p.yaml:4")).unwrap();
    let fail = lines.iter().position(|l| l.starts_with("FAIL  ") && l.contains("b-broken")).unwrap();
    assert!(lines.iter().any(|l| l.starts_with("ok    ") && l.contains("a-good/p.test.yaml")), "{out}");
    assert!(error < fail && fail < lines.len() - 1, "{out}");
    assert_eq!(lines[lines.len() - 1], "1 passed, 1 failed", "{out}");

    // A folder with no policy at all says so.
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = run(bin().arg("test").arg(empty.path()));
    assert_eq!(code, 1);
    assert!(out.contains("no policy file (*.yaml) in this folder or its subfolders"), "{out}");
}

#[test]
fn test_takes_dash_c_like_the_other_commands() {
    let (code, out, err) = run(bin().current_dir(root()).args(["test", "-c", QUICKSTART]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with(" passed, 0 failed\n"), "{out}");
}

#[test]
fn help_gives_exit_codes_and_an_example_for_every_command() {
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("Exit codes:") && out.contains("78  invalid configuration"), "{out}");
    for cmd in ["serve", "check", "test", "explain", "token", "health"] {
        let (code, out, _) = run(bin().args([cmd, "--help"]));
        assert_eq!(code, 0, "{cmd}");
        assert!(out.contains("Example"), "{cmd} --help has no example:\n{out}");
        assert!(out.contains("Exit codes:"), "{cmd} --help has no exit codes:\n{out}");
        assert!(out.contains(&format!("channelgate {cmd}")), "{cmd} example:\n{out}");
    }
    let (_, out, _) = run(bin().args(["explain", "--help"]));
    assert!(out.contains("<--claims <FILE>|--token <JWT>> <--channel <NAME>|--signin>"), "{out}");
    let (_, out, _) = run(bin().args(["test", "--help"]));
    assert!(out.contains("-c, --config <CONFIG>"), "{out}");
}

#[test]
fn explain_without_a_claims_file_says_how_to_write_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("claims.json");
    let (code, _, err) = run(bin()
        .current_dir(root())
        .args(["explain", "-c", QUICKSTART, "--channel", "private-user-alice", "--claims"])
        .arg(&missing));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("hint: the file holds the token's claims as a JSON object"), "{err}");
    assert!(
        err.contains(&format!("echo '{{\"sub\": \"alice\", \"rooms\": [\"42\"]}}' > {}", missing.display())),
        "{err}"
    );
}

#[test]
fn token_refuses_a_claim_that_starts_like_json_but_is_not() {
    let token = |claim: &str| {
        run(bin().current_dir(root()).args(["token", "-c", QUICKSTART, "--sub", "a", "--claim", claim]))
    };
    let (code, out, err) = token("rooms=[42");
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "no token printed: {out}");
    assert!(err.contains("--claim `rooms=[42`: `[42` starts like JSON but does not parse"), "{err}");
    assert!(err.contains("rooms='\"[42\"'"), "{err}");
    for (claim, name, want) in [
        (r#"rooms=["42"]"#, "rooms", serde_json::json!(["42"])),
        ("name=Alice", "name", serde_json::json!("Alice")),
        ("n=7", "n", serde_json::json!(7)),
        (r#"raw="[42""#, "raw", serde_json::json!("[42")),
    ] {
        let (code, out, err) = token(claim);
        assert_eq!(code, 0, "{claim}: {err}");
        let payload = out.trim().split('.').nth(1).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
        )
        .unwrap();
        assert_eq!(payload[name], want, "{claim}");
    }
}

#[test]
fn health_is_ok_against_a_running_gateway_and_fails_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &Setup::default());
    let served = Served::start(&path);
    let url = format!("http://{}/healthz", served.addr);
    let (code, out, err) = run(bin().args(["health", "--url", &url]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("healthy: {url} answered 200"));
    // The environment variable the Dockerfile sets is the default.
    let (code, _, err) = run(bin().arg("health").env("CHANNELGATE_HEALTH_URL", &url));
    assert_eq!(code, 0, "{err}");
    drop(served);
    let (code, out, err) = run(bin().args(["health", "--timeout", "1s", "--url", &url]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.starts_with(&format!("unhealthy: {url}: ")) && err.contains("Connection refused"), "{err}");
    let (code, _, err) = run(bin().args(["health", "--url", "ftp://127.0.0.1/healthz"]));
    assert_eq!(code, 2, "{err}");
}

// ---- deploy/ ---------------------------------------------------------------

/// deploy/ copied to a temporary folder, its `/run/secrets/` mount made
/// a folder of the copy holding the files the config names.
fn deploy_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(&secrets).unwrap();
    for f in ["policies/app.yaml", "policies/app.test.yaml"] {
        std::fs::copy(root().join("deploy").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(secrets.join("pusher_master_key"), crate::support::MASTER_KEY_B64).unwrap();
    let text = std::fs::read_to_string(root().join("deploy/channelgate.yaml")).unwrap();
    assert!(text.contains("{ file: /run/secrets/pusher_master_key }"), "deploy reads a secret from a file");
    assert!(text.contains("{ env: PUSHER_APP_SECRET }"), "deploy reads a secret from the environment");
    let text = text.replace("/run/secrets/", &format!("{}/", secrets.display()));
    let path = dir.path().join("channelgate.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn the_deploy_example_passes_check_and_its_tests_and_matches_the_dockerfile() {
    let (dir, path) = deploy_copy();
    let (code, out, err) =
        run(bin().arg("check").arg("-c").arg(&path).env("PUSHER_APP_SECRET", "deploy-test-secret"));
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(bin().arg("check").arg("-c").arg(&path).env_remove("PUSHER_APP_SECRET"));
    assert_eq!(code, 78);
    assert!(err.contains("`PUSHER_APP_SECRET` is not set"), "{err}");
    let (code, out, _) = run(bin().arg("test").arg(dir.path().join("policies")));
    assert_eq!(code, 0, "{out}");

    let config = std::fs::read_to_string(&path).unwrap();
    for needle in ["listen: 0.0.0.0:8080", "algorithms: [RS256]", "jwks_url: https://", "# tls:"] {
        assert!(config.contains(needle), "deploy/channelgate.yaml lacks `{needle}`");
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for needle in [
        "EXPOSE 8080",
        "ENV CHANNELGATE_HEALTH_URL=http://127.0.0.1:8080/healthz",
        r#"CMD ["/usr/local/bin/channelgate", "health""#,
        r#"-v "$PWD/deploy:/etc/channelgate:ro""#,
        "-e PUSHER_APP_SECRET",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks `{needle}`");
    }
    assert!(!dockerfile.contains("busybox"), "the health check needs no shell");
}

#[test]
fn the_deploy_example_serves_and_answers_the_containers_health_check() {
    let (_dir, path) = deploy_copy();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    std::fs::write(&path, text).unwrap();
    let served = Served::start_with_env(&path, &[("PUSHER_APP_SECRET", "deploy-test-secret")]);
    let url = format!("http://{}/healthz", served.addr);
    let (code, out, err) = run(bin().arg("health").env("CHANNELGATE_HEALTH_URL", &url));
    assert_eq!(code, 0, "{out}{err}");
    // Not ready until the issuer's keys are fetched (there is no issuer here): /readyz says 503.
    let (code, _, err) = run(bin().args(["health", "--url", &format!("http://{}/readyz", served.addr)]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("503"), "{err}");
}
