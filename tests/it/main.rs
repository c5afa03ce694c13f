//! Integration tests: the real server on 127.0.0.1:0, spoken to over HTTP
//! and HTTPS, and the real binary for the command line. One binary; each
//! module is listed with what it covers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]
// Items of a test binary are `pub` so its modules can share them.
#![allow(unreachable_pub)]

/// Test gateways (with or without the admin listener), token minting,
/// polling, an independent signature check.
mod support;

/// Admin API, revocations (memory and Redis), publish proxy, webhook relay.
mod admin;
/// Forged tokens, smuggled fields, escaping captures, oversized bodies: exact refusals.
mod adversarial;
/// The binary: serve, check, test, explain, token, exit codes.
mod cli;
/// CORS preflight and response headers.
mod cors;
/// Messages that say how to fix a mistake (YAML, CEL, TLS, issuer CAs),
/// `check --fetch`, warnings, policy sets, `--help`, `health`, `deploy/`.
mod guidance;
/// CSRF for cookie sessions, rate limits, header limits, idle connections.
mod hardening;
/// The endpoints: allowed, denied and every 4xx row of DESIGN §1.
mod http_api;
/// A real HTTPS issuer (discovery + JWKS) that goes down, comes back,
/// rotates keys, answers slowly or hugely.
mod issuer;
/// Remote keys (JWKS over HTTPS, OIDC discovery), the token cache, rotation.
mod jwks;
/// Debug and trace logs of the real binary hold no secret and no token.
mod logs;
/// Reload, audit, metrics, admin listener, shutdown, shadow rules, lints.
mod ops;
/// The status/reason table in process: one row per reason.
mod table;
/// HTTPS with rustls, HTTP/1.1 and HTTP/2.
mod tls;
