//! `cors:`, `http:` and `rate_limit:`.

use std::time::Duration;

use super::Ctx;
use crate::config::raw;
use crate::config::{Cors, HttpSettings, Rate, RateLimitSettings};

/// `cors:` (no origin allowed by default).
pub(super) fn cors(cx: &mut Ctx<'_>, raw: Option<&raw::Cors>) -> Cors {
    match raw {
        None => Cors {
            allowed_origins: Vec::new(),
            allowed_headers: default_headers(),
            max_age: Duration::from_secs(600),
        },
        Some(c) => {
            let mut origins = Vec::new();
            for o in &c.allowed_origins {
                match normalize_origin(&o.value) {
                    Some(n) => origins.push(n),
                    None => cx.hint(
                        o,
                        format!("cors.allowed_origins: `{}` is not an origin", o.value),
                        "write `https://app.example.com` (scheme, host, optional port; no path; `*` is not allowed)",
                    ),
                }
            }
            let mut headers = default_headers();
            for h in &c.allowed_headers {
                let h = h.to_ascii_lowercase();
                if !headers.contains(&h) {
                    headers.push(h);
                }
            }
            let max_age = cx.duration("cors.max_age", &c.max_age, Duration::from_secs(600));
            Cors { allowed_origins: origins, allowed_headers: headers, max_age }
        }
    }
}

/// `http:`: paths, limits and timeouts.
pub(super) fn settings(cx: &mut Ctx<'_>, raw: Option<&raw::Http>) -> HttpSettings {
    let mut http = HttpSettings::default();
    if let Some(h) = raw {
        for (target, value) in
            [(&mut http.auth_path, &h.auth_path), (&mut http.user_auth_path, &h.user_auth_path)]
        {
            if let Some(v) = value {
                if v.value.starts_with('/') && !v.value.contains(['?', '#', ' ']) {
                    *target = v.value.clone();
                } else {
                    cx.at(v, format!("`{}` is not a path (it must start with `/`)", v.value));
                }
            }
        }
        if let Some(n) = h.max_body_bytes {
            http.max_body_bytes = n.clamp(256, 1 << 20);
        }
        http.shutdown_grace = cx.duration("http.shutdown_grace", &h.shutdown_grace, http.shutdown_grace);
        http.shutdown_delay = cx.duration("http.shutdown_delay", &h.shutdown_delay, http.shutdown_delay);
        if let Some(n) = h.max_header_bytes {
            http.max_header_bytes = n.clamp(8 * 1024, 1 << 20);
        }
        if let Some(n) = h.max_batch_channels {
            http.max_batch_channels = n.clamp(1, 1000);
        }
        if let Some(n) = h.max_connections {
            http.max_connections = n.max(1);
        }
        if let Some(n) = h.max_connections_per_ip {
            http.max_connections_per_ip = n;
        }
        http.header_read_timeout =
            cx.duration("http.header_read_timeout", &h.header_read_timeout, http.header_read_timeout);
        http.keep_alive_timeout =
            cx.duration("http.keep_alive_timeout", &h.keep_alive_timeout, http.keep_alive_timeout);
        if let Some(v) = h.keep_alive_timeout.as_ref().filter(|_| http.keep_alive_timeout.is_zero()) {
            cx.hint(
                v,
                "http.keep_alive_timeout must be longer than 0",
                "write e.g. `75s`: longer than the idle timeout of the proxy in front",
            );
            http.keep_alive_timeout = HttpSettings::default().keep_alive_timeout;
        }
        http.request_timeout = cx.duration("http.request_timeout", &h.request_timeout, http.request_timeout);
        http.tls_handshake_timeout =
            cx.duration("http.tls_handshake_timeout", &h.tls_handshake_timeout, http.tls_handshake_timeout);
    }
    http
}

pub(super) fn rate_limit(cx: &mut Ctx<'_>, raw: Option<&raw::RateLimit>) -> RateLimitSettings {
    let mut s = RateLimitSettings::default();
    let Some(raw) = raw else { return s };
    if let Some(e) = raw.enabled {
        s.enabled = e;
    }
    for (target, value, what) in
        [(&mut s.per_ip, &raw.per_ip, "per_ip"), (&mut s.per_user, &raw.per_user, "per_user")]
    {
        if let Some(v) = value {
            match Rate::parse(&v.value) {
                Some(r) => *target = r,
                None => cx.hint(
                    v,
                    format!("rate_limit.{what}: `{}` is not a rate", v.value),
                    "write e.g. `50/s`, `600/m`",
                ),
            }
        }
    }
    if let Some(b) = raw.per_ip_burst {
        s.per_ip_burst = b.max(1);
    }
    if let Some(b) = raw.per_user_burst {
        s.per_user_burst = b.max(1);
    }
    for p in &raw.trusted_proxies {
        let parsed = p
            .value
            .parse::<ipnet::IpNet>()
            .or_else(|_| p.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => s.trusted_proxies.push(net),
            Err(_) => cx.hint(
                p,
                format!("rate_limit.trusted_proxies: `{}` is not a CIDR", p.value),
                "write e.g. `10.0.0.0/8` or `127.0.0.1`",
            ),
        }
    }
    s
}

fn default_headers() -> Vec<String> {
    ["authorization", "content-type", "x-csrf-token", "x-requested-with", "x-socket-id"]
        .map(str::to_owned)
        .to_vec()
}

/// `https://App.example.com:443/` → `https://app.example.com:443`. No path,
/// query, credentials or wildcard.
fn normalize_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || s.contains('*') {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    (origin != "null").then_some(origin)
}
