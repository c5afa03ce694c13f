//! channelgate: an authorization gateway for Pusher Channels and
//! Pusher-protocol servers (Sockudo, Soketi, Laravel Reverb).
//!
//! Layout (see ARCHITECTURE.md):
//! - [`config`]: `channelgate.yaml` → validated [`config::Config`];
//! - [`session`]: session tokens (JWT) → verified [`session::Claims`];
//! - [`policy`]: YAML + CEL rules → [`policy::Decision`];
//! - [`pusher`]: socket ids, channel names and signatures, byte-compatible
//!   with the official SDKs;
//! - [`http`]: the endpoints, CORS, the error table, the server;
//! - [`app`]: wiring; [`cli`]: the command line.
#![forbid(unsafe_code)]

// The public surface: what the binary, the integration tests, the benches
// and the fuzz targets use. Everything else is crate-private, so an unused
// item is dead code the compiler reports.
pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod jwks;
pub mod policy;
pub mod pusher;
pub mod reason;
pub mod secret;
pub mod session;

mod admin;
mod audit;
mod diagnose;
mod membership;
mod publish;
mod revocation;
mod scan;
mod telemetry;
#[cfg(test)]
mod tidy;
mod tls;
mod upstream;
mod webhook;
mod yaml;
