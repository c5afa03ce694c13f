//! Rate limits per client IP and per user (`sub`), with governor's GCRA.
//!
//! The client IP is the peer address, unless the peer is a trusted proxy:
//! then `X-Forwarded-For` is read from the right, skipping trusted proxies,
//! and the first untrusted address is the client. An untrusted peer's
//! `X-Forwarded-For` is ignored, so a client cannot pick its own bucket.
//! Limiter state is bounded by [`RateLimits::retain_recent`], called
//! periodically by the server.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use ipnet::IpNet;

use crate::config::{Rate, RateLimitSettings};

/// The configured limiters.
#[derive(Debug)]
pub struct RateLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    trusted_proxies: Vec<IpNet>,
    clock: DefaultClock,
}

/// A refusal: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Time until a request would be allowed.
    pub retry_after: Duration,
}

fn quota(rate: Rate, burst: u32) -> Option<Quota> {
    let period = rate.period.checked_div(rate.count.max(1))?;
    let burst = NonZeroU32::new(burst.max(1))?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

impl RateLimits {
    /// Builds the limiters; `enabled: false` gives limits that allow all.
    pub fn new(settings: &RateLimitSettings) -> Self {
        let (per_ip, per_user) = if settings.enabled {
            (
                quota(settings.per_ip, settings.per_ip_burst).map(RateLimiter::keyed),
                quota(settings.per_user, settings.per_user_burst).map(RateLimiter::keyed),
            )
        } else {
            (None, None)
        };
        Self {
            per_ip,
            per_user,
            trusted_proxies: settings.trusted_proxies.clone(),
            clock: DefaultClock::default(),
        }
    }

    /// The client's address for a request from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else { return peer };
            for part in value.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(ip),
                    // A malformed chain cannot be trusted at all.
                    Err(_) => return peer,
                }
            }
        }
        hops.into_iter().rev().find(|ip| !self.is_trusted(*ip)).unwrap_or(peer)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Counts one request from `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        match &self.per_ip {
            Some(l) => {
                l.check_key(&ip).map_err(|n| Limited { retry_after: n.wait_time_from(self.clock.now()) })
            }
            None => Ok(()),
        }
    }

    /// Counts one request from user `sub`.
    pub fn check_user(&self, sub: &str) -> Result<(), Limited> {
        match &self.per_user {
            Some(l) => l
                .check_key(&sub.to_owned())
                .map_err(|n| Limited { retry_after: n.wait_time_from(self.clock.now()) }),
            None => Ok(()),
        }
    }

    /// Forgets keys whose buckets are full again, bounding memory.
    pub fn retain_recent(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_user {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trusted: &[&str]) -> RateLimitSettings {
        RateLimitSettings {
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            ..RateLimitSettings::default()
        }
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn untrusted_peer_cannot_choose_its_address() {
        let l = RateLimits::new(&settings(&["10.0.0.0/8"]));
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(l.client_ip(peer, &xff("1.2.3.4")), peer);
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let l = RateLimits::new(&settings(&["10.0.0.0/8", "127.0.0.1/32"]));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // Client-supplied leftmost entries are ignored past the first untrusted hop.
        assert_eq!(
            l.client_ip(peer, &xff("6.6.6.6, 198.51.100.7, 10.1.2.3")),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(l.client_ip(peer, &xff("garbage, 10.1.2.3")), peer);
        assert_eq!(l.client_ip(peer, &HeaderMap::new()), peer);
        assert_eq!(l.client_ip(peer, &xff("10.9.9.9")), peer);
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let s = RateLimitSettings {
            per_ip: Rate { count: 1, period: Duration::from_secs(60) },
            per_ip_burst: 3,
            ..RateLimitSettings::default()
        };
        let l = RateLimits::new(&s);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_ip(ip).is_ok());
        }
        let refused = l.check_ip(ip).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_secs(1) && refused.retry_after <= Duration::from_secs(60)
        );
        // Another address has its own bucket.
        assert!(l.check_ip("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn disabled_allows_everything() {
        let l = RateLimits::new(&RateLimitSettings { enabled: false, ..RateLimitSettings::default() });
        for _ in 0..1000 {
            assert!(l.check_user("a").is_ok());
        }
    }
}
