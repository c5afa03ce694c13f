//! The command line: `serve`, `check`, `test`, `explain`, `token`, `health`.
//!
//! Exit codes (DESIGN §10): 0 ok, 1 test or check failures (and runtime
//! failures such as a port in use), 2 usage errors, 78 invalid config.
//! Printing to stdout is this module's product, hence the lint allowance.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, EXIT_CONFIG, Mode};
use crate::policy::TokenValue;
use crate::policy::{Decision, Policy, Request, Trace, testing};
use crate::pusher::{ChannelName, SocketId};
use crate::session::KeySet;

/// Exit code of a usage error (as clap's own).
const EXIT_USAGE: u8 = 2;

const TOP_HELP: &str = "\
Examples:
  channelgate serve -c examples/quickstart/channelgate.yaml
  channelgate check -c channelgate.yaml --fetch
  channelgate test policies/
  channelgate explain -c channelgate.yaml --claims claims.json --channel presence-room-42
  channelgate token -c examples/quickstart/channelgate.yaml --sub alice --claim 'rooms=[\"42\"]'
  channelgate health --url http://127.0.0.1:8080/healthz

Exit codes:
  0   ok
  1   check warnings or failed --fetch, failed tests, explain refused, health not ok,
      runtime failures (a port in use)
  2   usage errors
  78  invalid configuration or policies (every error is printed with file:line)";

/// channelgate: the Pusher auth endpoint, done once and done right.
#[derive(Debug, Parser)]
#[command(name = "channelgate", version, about, after_help = TOP_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the auth endpoints until SIGTERM or SIGINT, then drain.
    #[command(after_help = concat!(
        "Example:\n  channelgate serve -c /etc/channelgate/channelgate.yaml --log-format json\n\n",
        "Exit codes: 0 after a graceful shutdown, 1 runtime failure (a port in use),\n",
        "78 invalid configuration. Logs go to stderr; RUST_LOG sets the level."
    ))]
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CHANNELGATE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate the config and the policies without serving; print warnings.
    #[command(after_help = concat!(
        "Examples:\n  channelgate check -c channelgate.yaml\n",
        "  channelgate check -c channelgate.yaml --fetch   # also fetch the issuers' keys once\n\n",
        "Exit codes: 0 valid with no warning, 1 warnings (lints, no issuer/audience) or a\n",
        "failed --fetch, 78 invalid configuration or policies."
    ))]
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also fetch each remote issuer's keys (OIDC discovery, JWKS) once
        /// and report, so a wrong URL or CA shows before `serve`.
        #[arg(long)]
        fetch: bool,
    },
    /// Run policy tests (`*.test.yaml`).
    #[command(after_help = concat!(
        "A folder holding policy files is one policy set, tested with the *.test.yaml\n",
        "files beside them; a folder of such folders runs each set with its own tests.\n\n",
        "Examples:\n  channelgate test policies/\n  channelgate test policies/chat/chat.test.yaml\n",
        "  channelgate test -c channelgate.yaml   # the config's policies\n\n",
        "Exit codes: 0 every test passed, 1 a test failed (or none ran, or a set does\n",
        "not compile), 2 usage errors, 78 invalid configuration."
    ))]
    Test {
        /// Config file, for the policy folder and the presence size limit.
        #[arg(long, short, env = "CHANNELGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Policy folders, policy files or test files (default: the config's policies).
        paths: Vec<PathBuf>,
    },
    /// Show how the policy decides one channel (or sign-in) for some claims.
    #[command(
        group(ArgGroup::new("session").required(true).args(["claims", "token"])),
        group(ArgGroup::new("request").required(true).args(["channel", "signin"])),
        after_help = concat!(
            "Give the claims (--claims FILE or --token JWT) and what to decide (--channel NAME\n",
            "or --signin).\n\n",
            "Example:\n  echo '{\"sub\": \"alice\", \"rooms\": [\"42\"]}' > claims.json\n",
            "  channelgate explain -c channelgate.yaml --claims claims.json --channel presence-room-42\n\n",
            "Exit codes: 0 allowed, 1 refused (with the status the server would send),\n",
            "2 usage errors, 78 invalid configuration."
        )
    )]
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// A JSON file holding the claims as an object, taken as verified.
        #[arg(long, value_name = "FILE")]
        claims: Option<PathBuf>,
        /// A JWT, verified with the config's keys first (remote keys are fetched).
        #[arg(long, value_name = "JWT")]
        token: Option<String>,
        /// The channel to decide.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        /// Decide sign-in (`pusher.signin()`) instead of a channel.
        #[arg(long)]
        signin: bool,
        /// The socket id to sign for.
        #[arg(long, default_value = "1234.5678")]
        socket_id: String,
    },
    /// Mint a development HS256 token (only with `mode: development`).
    #[command(after_help = concat!(
        "Example:\n  channelgate token -c examples/quickstart/channelgate.yaml --sub alice \\\n",
        "      --claim name=Alice --claim 'rooms=[\"42\"]' --ttl 2h\n\n",
        "A claim value is JSON when it parses as JSON (42, true, [\"a\"], {\"k\": 1});\n",
        "anything else is a string. A value that starts like JSON ([, {, \") but does not\n",
        "parse is an error.\n\n",
        "Exit codes: 0 printed a token, 2 usage errors, 78 not a development config."
    ))]
    Token {
        #[command(flatten)]
        config: ConfigArg,
        /// The `sub` claim.
        #[arg(long)]
        sub: String,
        /// Extra claims, `name=value` (a JSON value, or else a string).
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// Lifetime.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
    },
    /// Ask a running gateway whether it is healthy (for container health checks).
    #[command(after_help = concat!(
        "Examples:\n  channelgate health                                   # $CHANNELGATE_HEALTH_URL\n",
        "  channelgate health --url http://127.0.0.1:9090/readyz   # the admin listener\n\n",
        "Exit codes: 0 the URL answered 2xx, 1 anything else (refused, timeout, 503),\n",
        "2 usage errors."
    ))]
    Health {
        /// The URL to GET; healthy when it answers 2xx.
        #[arg(long, env = "CHANNELGATE_HEALTH_URL", default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "2s")]
        timeout: humantime::Duration,
    },
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Config file.
    #[arg(long, short, env = "CHANNELGATE_CONFIG", default_value = "channelgate.yaml")]
    config: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => serve(&config.config, log_format),
        Command::Check { config, fetch } => check(&config.config, fetch),
        Command::Test { config, paths } => test(config.as_deref(), &paths),
        Command::Explain { config, claims, token, channel, signin, socket_id } => explain(
            &config.config,
            claims.as_deref(),
            token.as_deref(),
            channel.as_deref(),
            signin,
            &socket_id,
        ),
        Command::Token { config, sub, claims, ttl } => token(&config.config, &sub, &claims, ttl.into()),
        Command::Health { url, timeout } => health(&url, timeout.into()),
    }
}

fn init_tracing(format: LogFormat) {
    crate::telemetry::init_tracing(match format {
        LogFormat::Text => crate::telemetry::LogFormat::Text,
        LogFormat::Json => crate::telemetry::LogFormat::Json,
    });
}

fn config_failed(errors: &crate::config::ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    eprintln!("{} error(s); nothing was started", errors.0.len());
    ExitCode::from(EXIT_CONFIG)
}

fn serve(path: &Path, format: LogFormat) -> ExitCode {
    init_tracing(format);
    let app = match App::load(path) {
        Ok(app) => app,
        Err(e) => return config_failed(&e),
    };
    // Policy expressions are bounded at load (policy::compile), and request
    // threads get a generous stack for the CEL evaluator's recursion. With
    // one CPU (a pinned sidecar, `cpus: 1`), a single-threaded runtime on such
    // a thread does the same work without the work-stealing scheduler's
    // bookkeeping and cross-thread wake-ups.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_cpu {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().thread_stack_size(8 << 20).enable_all().build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if one_cpu {
        let thread = std::thread::Builder::new()
            .name("channelgate".into())
            .stack_size(8 << 20)
            .spawn(move || serve_on(&runtime, app));
        return match thread.map(std::thread::JoinHandle::join) {
            Ok(Ok(code)) => code,
            Ok(Err(_)) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: cannot start the server thread: {e}");
                ExitCode::FAILURE
            }
        };
    }
    serve_on(&runtime, app)
}

fn serve_on(runtime: &tokio::runtime::Runtime, app: App) -> ExitCode {
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(app.listen()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", app.listen());
                return ExitCode::FAILURE;
            }
        };
        let admin = match app.admin_listen() {
            None => None,
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("error: cannot listen on {addr} (admin): {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let addr = listener.local_addr().unwrap_or(app.listen());
        let gw = app.gateway();
        let tls = app.runtime.tls().is_some();
        let scheme = if tls { "https" } else { "http" };
        if !tls && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "serving plain HTTP on a non-loopback address; configure `tls` unless a TLS proxy is in front");
        }
        if gw.mode == Mode::Development {
            tracing::warn!("mode: development — inline secrets allowed and rule names shown in errors; never use in production");
        }
        if let Some(a) = admin.as_ref().and_then(|l| l.local_addr().ok()) {
            if !a.ip().is_loopback() {
                tracing::warn!(addr = %a, "the admin listener is not on loopback; keep it off the public network");
            }
            tracing::info!("admin listener on http://{a} (/healthz, /readyz, /metrics)");
        }
        tracing::info!(
            "channelgate listening on {scheme}://{addr} (channel auth {}, user auth {})",
            gw.http.auth_path,
            gw.http.user_auth_path
        );
        crate::diagnose::log_warnings(&gw);
        drop(gw);
        match app.run(listener, admin, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(EXIT_CONFIG)
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

fn check(path: &Path, fetch: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s)", e.0.len());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let target = config.target;
    let app = match App::from_config(config) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s)", e.0.len());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let gw = app.gateway();
    let issuer_warnings = crate::diagnose::issuer_warnings(gw.sessions.verifier().issuers());
    for w in &issuer_warnings {
        eprintln!("warning: {w}");
    }
    let findings = crate::policy::lint::lint(&gw.policy, target);
    for f in &findings {
        eprintln!("{f}");
    }
    let fetch_failures = if fetch { fetch_keys(&gw) } else { 0 };
    let warnings = issuer_warnings.len() + findings.len();
    if warnings > 0 || fetch_failures > 0 {
        let mut what = Vec::new();
        if warnings > 0 {
            what.push(format!("{warnings} warning(s)"));
        }
        if fetch_failures > 0 {
            what.push(format!("{fetch_failures} failed fetch(es)"));
        }
        eprintln!("{} in {}", what.join(" and "), path.display());
        return ExitCode::FAILURE;
    }
    println!(
        "ok: {} is valid ({} rule(s), sign-in {})",
        path.display(),
        gw.policy.rules().len(),
        if gw.policy.signin_enabled() { "enabled" } else { "disabled" }
    );
    ExitCode::SUCCESS
}

/// Fetches each remote issuer's keys once, printing the outcome; returns
/// the number of failures.
fn fetch_keys(gw: &crate::app::Gateway) -> usize {
    let remotes: Vec<_> = gw.remote_issuers().collect();
    if remotes.is_empty() {
        println!(
            "fetch:    no issuer fetches its keys (they come from `secret`, `public_key` or `jwks_file`)"
        );
        return 0;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return remotes.len();
        }
    };
    let mut failures = 0;
    for (issuer, remote) in remotes {
        let who = issuer.map_or_else(String::new, |i| format!(" (issuer {i})"));
        let result = rt.block_on(remote.refresh());
        let status = remote.status();
        match result {
            Ok(_) => println!("fetch:    {}{who}: ok, {} key(s)", status.source, status.keys),
            Err((e, _)) => {
                failures += 1;
                eprintln!(
                    "error: fetching the keys of {}{who} failed: {}",
                    status.source,
                    crate::diagnose::with_fetch_hint(e.to_string())
                );
            }
        }
    }
    failures
}

fn test(config: Option<&Path>, paths: &[PathBuf]) -> ExitCode {
    let (default_policies, max_member_bytes) = match config {
        Some(path) => match Config::load(path) {
            Ok(c) => (Some(c.policies.clone()), c.max_member_bytes),
            Err(e) => return config_failed(&e),
        },
        None => (None, crate::policy::DEFAULT_MAX_MEMBER_BYTES),
    };
    let targets: Vec<PathBuf> = if paths.is_empty() {
        match default_policies {
            Some(p) => vec![p],
            None => {
                eprintln!("error: give policy paths or --config");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    } else {
        paths.to_vec()
    };
    // Everything is reported on stdout, in order, so load errors come
    // before the summary however the output is captured.
    let (mut passed, mut failed) = (0usize, 0usize);
    for target in &targets {
        let sets = match policy_sets(target) {
            Ok(sets) => sets,
            Err(e) => {
                println!("error: {e}");
                failed += 1;
                continue;
            }
        };
        for (policy_path, files) in sets {
            let policy = match Policy::load(&policy_path, max_member_bytes) {
                Ok(p) => p,
                Err(errors) => {
                    for e in &errors {
                        println!("error: {e}");
                    }
                    println!(
                        "FAIL  {}: the policies do not compile ({} error(s) above)",
                        policy_path.display(),
                        errors.len()
                    );
                    failed += 1;
                    continue;
                }
            };
            if files.is_empty() {
                println!("warning: no *.test.yaml beside {}", policy_path.display());
            }
            for file in files {
                match testing::run_file(&policy, &file) {
                    Ok(outcomes) => {
                        for o in outcomes {
                            match &o.failure {
                                None => {
                                    passed += 1;
                                    println!("ok    {}:{}  {}", o.file.display(), o.line, o.name);
                                }
                                Some(why) => {
                                    failed += 1;
                                    println!("FAIL  {}:{}  {}: {why}", o.file.display(), o.line, o.name);
                                }
                            }
                        }
                    }
                    Err(errors) => {
                        for e in &errors {
                            println!("error: {e}");
                        }
                        failed += 1;
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 && passed > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The policy sets a path names, each with its test files: a test file
/// (the policies of its folder), a policy file (with `x.test.yaml` beside
/// it), a folder holding policy files (with its `*.test.yaml`), or a folder
/// of such folders (each, at any depth, a set of its own).
fn policy_sets(target: &Path) -> Result<Vec<(PathBuf, Vec<PathBuf>)>, String> {
    if !target.exists() {
        return Err(format!("{}: no such file or folder", target.display()));
    }
    if target.is_file() {
        if testing::test_files(target).first().map(PathBuf::as_path) == Some(target) {
            let folder = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            return Ok(vec![(folder.to_owned(), vec![target.to_owned()])]);
        }
        return Ok(vec![(target.to_owned(), testing::test_files(target))]);
    }
    let mut sets = Vec::new();
    collect_sets(target, 0, &mut sets);
    if sets.is_empty() {
        return Err(format!(
            "{}: no policy file (*.yaml) in this folder or its subfolders",
            target.display()
        ));
    }
    Ok(sets)
}

fn collect_sets(dir: &Path, depth: usize, sets: &mut Vec<(PathBuf, Vec<PathBuf>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    if paths.iter().any(|p| crate::policy::is_policy_file(p)) {
        sets.push((dir.to_owned(), testing::test_files(dir)));
        return;
    }
    if depth < 8 {
        for p in paths.iter().filter(|p| p.is_dir()) {
            collect_sets(p, depth + 1, sets);
        }
    }
}

fn explain(
    path: &Path,
    claims_file: Option<&Path>,
    token: Option<&str>,
    channel: Option<&str>,
    signin: bool,
    socket_id: &str,
) -> ExitCode {
    let app = match App::load(path) {
        Ok(app) => app,
        Err(e) => return config_failed(&e),
    };
    let gw = &app.gateway();
    let claims = match (claims_file, token) {
        (Some(file), _) => {
            let parsed = std::fs::read(file).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b)
                    .map_err(|e| format!("not a JSON object of claims: {e}"))
            });
            match parsed {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: --claims {}: {e}", file.display());
                    eprintln!(
                        "  hint: the file holds the token's claims as a JSON object, e.g.\n    \
                         echo '{{\"sub\": \"alice\", \"rooms\": [\"42\"]}}' > {}",
                        file.display()
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        (None, Some(token)) => {
            let verified = verify_for_explain(gw, token);
            for (issuer, remote) in gw.remote_issuers() {
                let status = remote.status();
                let who = issuer.map_or_else(String::new, |i| format!(" (issuer {i})"));
                match (&status.last_error, status.loaded) {
                    (None, _) => println!("keys:     {}{who}: {} key(s)", status.source, status.keys),
                    (Some(e), true) => {
                        println!(
                            "keys:     {}{who}: {} key(s), stale; last fetch error: {e}",
                            status.source, status.keys
                        );
                    }
                    (Some(e), false) => {
                        println!("keys:     {}{who}: none; last fetch error: {e}", status.source)
                    }
                }
            }
            match verified {
                Ok(c) => {
                    println!("token:    valid (would be accepted)");
                    c.as_map().clone()
                }
                Err(e) => {
                    let refusal = crate::http::error::ApiError::from(e);
                    println!(
                        "token:    refused: {} (reason {}); the request would get {}",
                        refusal.message(),
                        refusal.reason(),
                        refusal.status().as_u16()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, None) => {
            eprintln!("error: give --claims or --token");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let socket = match SocketId::parse(socket_id) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --socket-id: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cel_token = TokenValue::from_claims(&claims);
    let request = Request { token: &cel_token, socket_id: &socket, origin: None };
    let mut trace = Trace::default();
    let (decision, channel) = if signin {
        println!("request:  sign-in, socket {socket}");
        (gw.policy.authenticate_user(&request, Some(&mut trace)), None)
    } else {
        let name = channel.unwrap_or_default();
        let channel = match ChannelName::parse(name) {
            Ok(c) => c,
            Err(e) => {
                println!("channel:  refused before the policy: {e} (400 {})", e.reason());
                return ExitCode::FAILURE;
            }
        };
        println!("request:  channel {channel} ({}), socket {socket}", channel.kind().as_str());
        (gw.policy.authorize_channel(&request, &channel, Some(&mut trace)), Some(channel))
    };
    for s in &trace.skipped {
        println!("skipped:  {s}");
    }
    if let Some(rule) = &trace.rule {
        println!("rule:     {rule}");
    }
    for (name, value) in &trace.captures {
        println!("capture:  {name} = {value:?}");
    }
    for step in &trace.steps {
        match &step.outcome {
            Ok(v) => println!("eval:     {} = {}  ({})", step.what, v, step.source),
            Err(e) => println!("eval:     {} failed: {e}  ({})", step.what, step.source),
        }
    }
    match decision {
        Decision::Allow { data, .. } => {
            let body = match (&channel, &data) {
                (Some(c), data) => {
                    gw.signer.authorize_channel(&socket, c, data.as_deref()).map(|a| a.to_json())
                }
                (None, Some(d)) => Ok(gw.signer.authenticate_user(&socket, d).to_json()),
                (None, None) => Ok(String::new()),
            };
            match body {
                Ok(body) => {
                    println!("decision: ALLOW");
                    println!("response: {body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("decision: allowed by the policy, but not signed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Decision::Deny { reason, rule } => {
            let status = crate::http::error::ApiError::denied(&reason, rule.as_deref()).status();
            println!(
                "decision: DENY ({}: {reason}); the request would get {}",
                reason.reason(),
                status.as_u16()
            );
            ExitCode::FAILURE
        }
    }
}

fn token(path: &Path, sub: &str, extra: &[String], ttl: Duration) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return config_failed(&e),
    };
    if config.mode != Mode::Development {
        eprintln!(
            "error: `channelgate token` only mints tokens for a config with `mode: development`; \
             {} looks like a production config",
            path.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let Some((issuer, secret)) = config.issuers.iter().find_map(|i| match &i.keys {
        crate::config::KeySpec::Static(KeySet::Secret(s)) => Some((i, s.secret())),
        _ => None,
    }) else {
        eprintln!("error: no issuer with an HS `secret` to sign with");
        return ExitCode::from(EXIT_CONFIG);
    };
    let Some(alg) = issuer.algorithms.iter().copied().find(|a| {
        matches!(
            a,
            jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512
        )
    }) else {
        eprintln!("error: the issuer allows no HS algorithm");
        return ExitCode::from(EXIT_CONFIG);
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), sub.into());
    if let Some(iss) = &issuer.issuer {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = issuer.audience.first() {
        claims.insert("aud".into(), aud.clone().into());
    }
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs()).into());
    for kv in extra {
        let Some((k, v)) = kv.split_once('=') else {
            eprintln!("error: --claim `{kv}` is not NAME=VALUE");
            return ExitCode::from(EXIT_USAGE);
        };
        match claim_value(v) {
            Ok(value) => {
                claims.insert(k.to_owned(), value);
            }
            Err(e) => {
                eprintln!("error: --claim `{kv}`: {e}");
                eprintln!(
                    "  hint: write valid JSON (e.g. {k}='[\"42\"]'), or a JSON string for the text itself ({k}='\"{}\"')",
                    v.replace('"', "\\\"")
                );
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let key = match jsonwebtoken::EncodingKey::from_secret(secret.expose()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: cannot use the secret: {e}");
            return ExitCode::FAILURE;
        }
    };
    match jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot sign: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A `--claim` value: JSON when it parses as JSON, else a string. A value
/// that starts like JSON (`[`, `{`, `"`) but does not parse is a mistake,
/// not a string that happens to start with a bracket.
fn claim_value(v: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str(v) {
        Ok(value) => Ok(value),
        Err(e) if v.trim_start().starts_with(['[', '{', '"']) => {
            Err(format!("`{v}` starts like JSON but does not parse: {e}"))
        }
        Err(_) => Ok(serde_json::Value::String(v.to_owned())),
    }
}

/// `GET url`; healthy on 2xx. For container health checks (the distroless
/// image has no shell, curl or wget).
fn health(url: &str, timeout: Duration) -> ExitCode {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --url `{url}` is not a URL: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        eprintln!("error: --url `{url}` is not an http(s) URL");
        return ExitCode::from(EXIT_USAGE);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unhealthy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        let client = crate::upstream::https_client(&[])?;
        let req = http::Request::get(uri)
            .header(http::header::USER_AGENT, concat!("channelgate-health/", env!("CARGO_PKG_VERSION")))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, client.request(req)).await {
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(timeout))),
            Ok(Err(e)) => Err(error_chain(&e)),
            Ok(Ok(resp)) => Ok(resp.status()),
        }
    });
    match outcome {
        Ok(status) if status.is_success() => {
            println!("healthy: {url} answered {}", status.as_u16());
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Verifies a token for `explain`, fetching remote issuer keys first.
fn verify_for_explain(
    gw: &crate::app::Gateway,
    token: &str,
) -> Result<crate::session::Claims, crate::session::AuthError> {
    if gw.remote_issuers().next().is_some()
        && let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build()
    {
        rt.block_on(gw.refresh_keys_once());
    }
    gw.sessions.verifier().verify(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
