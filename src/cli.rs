//! The command line: `serve`, `check`, `test`, `explain`, `token`.
//!
//! Exit codes (DESIGN §10): 0 ok, 1 test or check failures (and runtime
//! failures such as a port in use), 2 usage errors, 78 invalid config.
//! Printing to stdout is this module's product, hence the lint allowance.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, EXIT_CONFIG, Mode};
use crate::policy::TokenValue;
use crate::policy::{Decision, Policy, Request, Trace, testing};
use crate::pusher::{ChannelName, SocketId};
use crate::session::KeySet;

/// channelgate: the Pusher auth endpoint, done once and done right.
#[derive(Debug, Parser)]
#[command(name = "channelgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the auth endpoints.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CHANNELGATE_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Validate the config and the policies without serving.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run policy tests (`*.test.yaml`).
    Test {
        /// Config file, for the policy folder and the presence size limit.
        #[arg(long, env = "CHANNELGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Policy folders, policy files or test files (default: the config's policies).
        paths: Vec<PathBuf>,
    },
    /// Show how the policy decides one channel (or sign-in) for some claims.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// A JSON file of claims (taken as verified).
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        claims: Option<PathBuf>,
        /// A JWT, verified with the config's keys first.
        #[arg(long)]
        token: Option<String>,
        /// The channel to decide.
        #[arg(long, required_unless_present = "signin")]
        channel: Option<String>,
        /// Decide sign-in (`pusher.signin()`) instead of a channel.
        #[arg(long, conflicts_with = "channel")]
        signin: bool,
        /// The socket id to sign for.
        #[arg(long, default_value = "1234.5678")]
        socket_id: String,
    },
    /// Mint a development HS256 token (only with `mode: development`).
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
        Command::Check { config } => check(&config.config),
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

fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s)", e.0.len());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let target = config.target;
    match App::from_config(config) {
        Ok(app) => {
            let gw = app.gateway();
            let findings = crate::policy::lint::lint(&gw.policy, target);
            for f in &findings {
                eprintln!("{f}");
            }
            let rules = gw.policy.rules().len();
            if !findings.is_empty() {
                eprintln!("{} warning(s) in {}", findings.len(), path.display());
                return ExitCode::FAILURE;
            }
            println!(
                "ok: {} is valid ({rules} rule(s), sign-in {})",
                path.display(),
                if gw.policy.signin_enabled() { "enabled" } else { "disabled" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} error(s)", e.0.len());
            ExitCode::from(EXIT_CONFIG)
        }
    }
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
                return ExitCode::from(2);
            }
        }
    } else {
        paths.to_vec()
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for target in &targets {
        // A test file tests the policies of its folder.
        let policy_path = if testing::test_files(target).first() == Some(target) {
            target.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)
        } else {
            target.clone()
        };
        let policy = match Policy::load(&policy_path, max_member_bytes) {
            Ok(p) => p,
            Err(errors) => {
                for e in &errors {
                    eprintln!("error: {e}");
                }
                failed += 1;
                continue;
            }
        };
        let files = testing::test_files(target);
        if files.is_empty() {
            eprintln!("warning: no *.test.yaml for {}", target.display());
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
                        eprintln!("error: {e}");
                    }
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 && passed > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
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
                    .map_err(|e| e.to_string())
            });
            match parsed {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            }
        }
        (None, Some(token)) => match verify_for_explain(gw, token) {
            Ok(c) => {
                println!("token:    valid (would be accepted)");
                c.as_map().clone()
            }
            Err(e) => {
                println!("token:    refused: {e} (reason {}); the request would get 401", e.reason());
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            eprintln!("error: give --claims or --token");
            return ExitCode::from(2);
        }
    };
    let socket = match SocketId::parse(socket_id) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --socket-id: {e}");
            return ExitCode::from(2);
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
        Decision::Deny { reason, .. } => {
            println!("decision: DENY ({}: {reason})", reason.code());
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
        KeySet::Secret(s) => Some((i, s.secret())),
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
            return ExitCode::from(2);
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
        claims.insert(k.to_owned(), value);
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
