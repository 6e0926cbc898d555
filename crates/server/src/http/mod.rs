//! HTTP plumbing both transports share (the API's routes and the
//! WebSocket upgrade): the one mapping from service errors to a status and
//! `{"detail": …}`, the OpenAPI document's shared pieces, and what a request
//! says about its caller (bearer credential, address behind trusted proxies).
//! It depends on the service layer only, never on a transport.

pub mod error;
pub mod openapi;

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

/// The `Authorization: Bearer` credential of these headers, if any.
pub fn bearer_header(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The address a request comes from: the connection's peer, or, when that
/// peer is a trusted proxy, the nearest address in `X-Forwarded-For` that
/// is not itself a trusted proxy.
pub fn client_address(trusted_proxies: &[IpAddr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted_proxies.contains(a))
        .unwrap_or(peer)
}
