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

pub mod admin;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod diagnose;
pub mod http;
pub mod policy;
pub mod publish;
pub mod pusher;
pub mod reason;
pub mod revocation;
pub mod secret;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod webhook;
pub mod yaml;
