//! Per-client-address rate limiting. Writes that create state (registration,
//! party creation, joins, relay registration) get a tighter quota than the
//! rest; over quota is a 429 with `Retry-After`.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use super::error::ApiError;

const fn per_second(rate: u32) -> NonZeroU32 {
    match NonZeroU32::new(rate) {
        Some(rate) => rate,
        None => NonZeroU32::MIN,
    }
}

/// State-creating writes: 5 per second per address, bursts of 20.
const STRICT: Quota = Quota::per_second(per_second(5)).allow_burst(per_second(20));
/// Everything else: 200 per second per address, bursts of 400.
const GENERAL: Quota = Quota::per_second(per_second(200)).allow_burst(per_second(400));
/// Forget idle addresses every this many requests, so the maps stay small.
const PRUNE_EVERY: u64 = 8192;

/// The limiters, shared by all requests.
#[derive(Debug)]
pub struct RateLimits {
    strict: DefaultKeyedRateLimiter<IpAddr>,
    general: DefaultKeyedRateLimiter<IpAddr>,
    requests: AtomicU64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            strict: DefaultKeyedRateLimiter::keyed(STRICT),
            general: DefaultKeyedRateLimiter::keyed(GENERAL),
            requests: AtomicU64::new(0),
        }
    }
}

fn is_strict(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (matches!(path, "/auth/register" | "/parties" | "/relays") || path.ends_with("/join"))
}

impl RateLimits {
    /// `Ok` when `ip` may go on, else how many seconds until it may.
    fn check(&self, ip: IpAddr, strict: bool) -> Result<(), u64> {
        if self.requests.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.strict.retain_recent();
            self.general.retain_recent();
        }
        let limiter = if strict { &self.strict } else { &self.general };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The middleware: answers 429 instead of calling the route when over quota.
pub async fn limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return next.run(request).await;
    };
    let strict = is_strict(request.method(), request.uri().path());
    match limits.check(addr.ip(), strict) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_creating_writes_are_strict() {
        assert!(is_strict(&Method::POST, "/auth/register"));
        assert!(is_strict(&Method::POST, "/parties"));
        assert!(is_strict(&Method::POST, "/parties/abc/join"));
        assert!(is_strict(&Method::POST, "/relays"));
        assert!(!is_strict(&Method::GET, "/parties/abc"));
        assert!(!is_strict(&Method::POST, "/parties/abc/peers/p/heartbeat"));
    }

    #[test]
    fn a_burst_is_allowed_then_refused_per_address() {
        let limits = RateLimits::default();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..20 {
            assert!(limits.check(a, true).is_ok());
        }
        let wait = limits.check(a, true).unwrap_err();
        assert!(wait >= 1);
        assert!(limits.check(b, true).is_ok(), "addresses are limited apart");
        assert!(limits.check(a, false).is_ok(), "reads have their own quota");
    }
}
