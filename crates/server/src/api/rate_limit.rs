//! Rate limiting: per client address, and per bearer token on
//! authenticated routes. Writes that create state (registration, party
//! creation, joins) get a tighter quota than the rest, and so does every
//! check of an operator credential (see [`ClientQuota`]); over quota is a
//! 429 with `Retry-After`.
//!
//! The client address is the connection's peer, or, when that peer is a
//! configured trusted proxy, the nearest address in `X-Forwarded-For` that
//! is not itself a trusted proxy. Limits count it as a [`ClientKey`]: IPv6
//! clients per /64, so one subscriber cannot mint a bucket per address.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::http::{bearer_header, client_address, error::ApiError};
use crate::{
    config::Config,
    net::{ClientAddr, ClientKey},
};

/// Forget idle addresses every this many requests, so the maps stay small.
const PRUNE_EVERY: u64 = 8192;

fn quota(per_second: u32, burst_factor: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_second.saturating_mul(burst_factor)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// The limiters, shared by all requests.
#[derive(Debug)]
pub struct RateLimits {
    writes: DefaultKeyedRateLimiter<ClientKey>,
    reads: DefaultKeyedRateLimiter<ClientKey>,
    tokens: DefaultKeyedRateLimiter<u64>,
    trusted_proxies: Vec<IpAddr>,
    requests: AtomicU64,
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        Self {
            writes: DefaultKeyedRateLimiter::keyed(quota(config.rate_limit_writes_per_sec, 4)),
            reads: DefaultKeyedRateLimiter::keyed(quota(config.rate_limit_reads_per_sec, 2)),
            tokens: DefaultKeyedRateLimiter::keyed(quota(config.rate_limit_token_per_sec, 2)),
            trusted_proxies: config.trusted_proxies.clone(),
            requests: AtomicU64::new(0),
        }
    }

    /// The client the request comes from, seen through trusted proxies.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        ClientKey::of(self.client_address(peer, headers))
    }

    /// The address the request comes from, seen through trusted proxies.
    fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(&self.trusted_proxies, peer, headers)
    }

    /// `Ok` when the request may go on, else how many seconds until it may.
    fn check(&self, client: ClientKey, token: Option<&str>, strict: bool) -> Result<(), u64> {
        if self.requests.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.writes.retain_recent();
            self.reads.retain_recent();
            self.tokens.retain_recent();
        }
        let limiter = if strict { &self.writes } else { &self.reads };
        limiter
            .check_key(&client)
            .map_err(|n| wait(n, limiter.clock()))?;
        if let Some(token) = token {
            let mut hasher = DefaultHasher::new();
            token.hash(&mut hasher);
            self.tokens
                .check_key(&hasher.finish())
                .map_err(|n| wait(n, self.tokens.clock()))?;
        }
        Ok(())
    }
}

/// Whole seconds until a refused request may be tried again.
fn wait(
    not_until: governor::NotUntil<governor::clock::QuantaInstant>,
    clock: &governor::clock::DefaultClock,
) -> u64 {
    let wait = not_until.wait_time_from(clock.now());
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The client a request comes from and the limits it counts against, left
/// in the request's extensions by [`limit`] for checks a route makes
/// itself. Absent when rate limiting is off.
#[derive(Debug, Clone)]
pub struct ClientQuota {
    limits: Arc<RateLimits>,
    client: ClientKey,
}

impl ClientQuota {
    /// Spends one request of the client's strict (write) quota: `Err` with
    /// the seconds to wait when none is left. Operator credential checks
    /// call it before comparing, whatever the outcome, so guessing a key
    /// goes no faster than the write rate.
    pub fn spend_strict(&self) -> Result<(), u64> {
        let writes = &self.limits.writes;
        writes
            .check_key(&self.client)
            .map_err(|n| wait(n, writes.clock()))
    }
}

/// Routes that create state. The relay routes are not listed: every check
/// of an operator credential spends a strict request itself
/// ([`ClientQuota::spend_strict`]), on every route that checks one.
fn is_strict(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (matches!(
            path,
            "/auth/register" | "/auth/challenge" | "/auth/register/key" | "/parties"
        ) || path.ends_with("/join")
            || path.ends_with("/invites"))
}

/// The 429 answer.
pub fn too_many(retry_after: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit exceeded; retry in {retry_after} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    response
}

/// The middleware: answers 429 instead of calling the route when over quota.
pub async fn limit(
    State(limits): State<Arc<RateLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(ConnectInfo(ClientAddr(addr))) = request.extensions().get::<ConnectInfo<ClientAddr>>()
    else {
        return next.run(request).await;
    };
    let client = limits.client(addr.ip(), request.headers());
    let strict = is_strict(request.method(), request.uri().path());
    let token = bearer_header(request.headers());
    if let Err(retry_after) = limits.check(client, token, strict) {
        return too_many(retry_after);
    }
    request
        .extensions_mut()
        .insert(ClientQuota { limits, client });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> RateLimits {
        let mut config = Config::defaults();
        config.trusted_proxies = trusted.iter().map(|a| a.parse().unwrap()).collect();
        RateLimits::new(&config)
    }

    #[test]
    fn state_creating_writes_are_strict() {
        assert!(is_strict(&Method::POST, "/auth/register"));
        assert!(is_strict(&Method::POST, "/parties"));
        assert!(is_strict(&Method::POST, "/parties/abc/join"));
        assert!(!is_strict(&Method::GET, "/parties/abc"));
        assert!(!is_strict(&Method::POST, "/parties/abc/peers/p/heartbeat"));
    }

    fn key(address: &str) -> ClientKey {
        ClientKey::of(address.parse().unwrap())
    }

    #[test]
    fn a_burst_is_allowed_then_refused_per_address() {
        let limits = limits(&[]);
        let a = key("192.0.2.1");
        let b = key("192.0.2.2");
        for _ in 0..20 {
            assert!(limits.check(a, None, true).is_ok());
        }
        let wait = limits.check(a, None, true).unwrap_err();
        assert!(wait >= 1);
        assert!(
            limits.check(b, None, true).is_ok(),
            "addresses are limited apart"
        );
        assert!(
            limits.check(a, None, false).is_ok(),
            "reads have their own quota"
        );
    }

    #[test]
    fn tokens_are_limited_whatever_the_address() {
        let limits = limits(&[]);
        let mut refused = false;
        for i in 0..300u32 {
            let address = ClientKey::of(IpAddr::from(i.to_be_bytes()));
            refused |= limits.check(address, Some("one-token"), false).is_err();
        }
        assert!(
            refused,
            "200 requests/s per token with bursts of 200 cannot take 300 at once"
        );
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_slash_64() {
        let limits = limits(&[]);
        for i in 0..20u16 {
            let address = format!("2001:db8:1:2:{i:x}::1");
            assert!(limits.check(key(&address), None, true).is_ok());
        }
        assert!(
            limits
                .check(key("2001:db8:1:2:ffff::9"), None, true)
                .is_err()
        );
        assert!(limits.check(key("2001:db8:1:3::1"), None, true).is_ok());
    }

    #[test]
    fn strict_spending_shares_the_write_quota() {
        let limits = Arc::new(limits(&[]));
        let quota = ClientQuota {
            limits: limits.clone(),
            client: key("192.0.2.7"),
        };
        for _ in 0..20 {
            assert!(quota.spend_strict().is_ok());
        }
        assert!(quota.spend_strict().unwrap_err() >= 1);
        assert!(limits.check(key("192.0.2.7"), None, true).is_err());
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();

        let untrusted = limits(&[]);
        assert_eq!(
            untrusted.client(proxy, &headers),
            ClientKey::of(proxy),
            "a header anyone can send is ignored"
        );

        let trusted = limits(&["10.0.0.1", "10.0.0.2"]);
        assert_eq!(trusted.client(proxy, &headers), key("203.0.113.9"));

        let one = limits(&["10.0.0.1"]);
        assert_eq!(
            one.client(proxy, &headers),
            key("10.0.0.2"),
            "the nearest untrusted hop"
        );
    }
}
